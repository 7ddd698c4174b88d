"""Where rdht is better than upstream's module (opendht-bindings.md §4.6), and bad input:
each test names the upstream bug or complaint it guards against."""

import errno
import gc
import queue
import socket
import sys
import threading

import pytest

import rdht as dht
from conftest import LOOP4, LOOP6, wait_for


def test_blocking_get_releases_the_gil(nodes, hole):
    a = nodes.new()
    a.bootstrap(LOOP4, hole)  # a peer that never answers: the get waits (about 10 s)
    started, result = threading.Event(), queue.Queue()

    def getter():
        started.set()
        result.put(a.get(dht.InfoHash.get("never")))

    t = threading.Thread(target=getter)
    t.start()
    started.wait(5)
    # The main thread runs Python while the getter blocks: the GIL was released.
    n = 0
    for _ in range(100_000):
        n += 1
    assert t.is_alive() and n == 100_000
    a.join()
    t.join(10)
    assert result.get(timeout=1) == []


def test_shutdown_join_never_deadlocks(nodes):
    # Upstream 2.4.12 hangs in 3 of 8 runs: join() holds the GIL while the runner thread waits
    # for it to run the shutdown callback.
    for _ in range(10):
        r = nodes.new()
        ran = []
        r.shutdown(lambda: ran.append(sum(range(10_000))))
        r.join()
        assert ran and not r.isRunning()


def test_run_on_a_port_in_use_raises_oserror(nodes):
    # Upstream aborts the interpreter (uncaught C++ exception).
    taken = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    taken.bind((LOOP4, 0))
    try:
        r = dht.DhtRunner()
        with pytest.raises(OSError) as e:
            r.run(port=taken.getsockname()[1], ipv4=LOOP4)
        assert e.value.errno == errno.EADDRINUSE
        assert not r.isRunning()
        r.run(ipv4=LOOP4)  # the runner is still usable
        nodes.all.append(r)
    finally:
        taken.close()


def test_cancel_listen_on_ipv4_only_nodes(nodes):
    # Upstream's listen token is 0 on single-stack runners, so cancelListen does nothing.
    a = nodes.new(ipv6="")
    b = nodes.new(ipv6="", bootstrap=a)
    wait_for(lambda: b.getStatus() == "connected")
    key = dht.InfoHash.get("v4 only")
    first, second = queue.Queue(), queue.Queue()
    token = b.listen(key, lambda v, e: first.put(v.data) or True)
    assert a.put(key, dht.Value(b"one"))
    assert first.get(timeout=10) == b"one"
    b.cancelListen(token)
    b.listen(key, lambda v, e: second.put(v.data) or True)
    assert second.get(timeout=10) == b"one"
    assert a.put(key, dht.Value(b"two"))
    assert second.get(timeout=10) == b"two"
    assert first.empty()


def test_each_runner_has_its_own_config(nodes):
    # Upstream: run(id=...) writes the identity into the shared default config, and every later
    # run() without a config reuses it.
    ident = dht.Identity.generate()
    cfg = dht.DhtConfig()
    a = nodes.new(id=ident, config=cfg)
    b = nodes.new(config=cfg)  # the same config object: run(id=) did not change it
    c = nodes.new()
    assert a.getId() == ident.publickey.getId()
    assert not b.getId() and not c.getId()


def test_blocking_call_inside_a_callback_raises(nodes):
    # Upstream: the callback waits for a done callback only its own thread could run: hang.
    a, b = nodes.network(2)
    own = dht.DhtConfig()
    own.setSharedThread(False)
    c = nodes.new(config=own)
    key = dht.InfoHash.get("reentrant")
    assert a.put(key, dht.Value(b"x"))
    errors = queue.Queue()

    def cb(v):
        for call in (lambda: a.get(key), lambda: a.put(key, dht.Value(b"y")), a.join,
                     a.getStorageLog):
            try:
                call()
                errors.put(None)
            except RuntimeError as e:
                errors.put(str(e))
        # `b` shares `a`'s thread: a blocking call on it raises too
        try:
            b.getStorageLog()
            errors.put(None)
        except RuntimeError as e:
            errors.put(str(e))
        # a blocking call on a runner with its own thread is fine (a get would wait for `a`)
        errors.put(("other", isinstance(c.getStorageLog(), str)))
        return False

    a.get(key, cb)
    for _ in range(5):
        assert "would deadlock" in errors.get(timeout=10)
    assert errors.get(timeout=10) == ("other", True)
    assert a.isRunning() and a.get(key)  # the runner is fine


def test_callback_exceptions_are_reported_not_fatal(pair, monkeypatch):
    a, b = pair
    key = dht.InfoHash.get("raising")
    assert a.put(key, dht.Value(b"x"))
    reported = queue.Queue()
    monkeypatch.setattr(sys, "unraisablehook", lambda u: reported.put(u.exc_value))
    done = queue.Queue()

    def bad(v):
        raise ValueError("boom")

    b.get(key, bad, lambda ok, n: done.put(ok))
    assert isinstance(reported.get(timeout=10), ValueError)
    assert done.get(timeout=10) is True  # a raising callback stops the get, as returning False
    b.listen(key, lambda v, e: 1 / 0)
    assert isinstance(reported.get(timeout=10), ZeroDivisionError)
    assert [v.data for v in b.get(key)] == [b"x"]  # the runner still works


def test_bad_input(pair):
    a, b = pair
    key = dht.InfoHash.get("bad input")
    with pytest.raises(TypeError, match="InfoHash"):
        a.put("key", dht.Value(b"x"))
    with pytest.raises(TypeError, match="Value"):
        a.put(key, b"raw bytes")
    with pytest.raises(ValueError, match="zero"):
        a.get(dht.InfoHash())
    with pytest.raises(TypeError):
        a.get(key, get_cb=5)
    with pytest.raises(TypeError):
        a.listen(key, "not callable")
    with pytest.raises(TypeError):
        a.cancelListen("token")
    with pytest.raises(TypeError):
        a.ping("127.0.0.1")
    with pytest.raises(ValueError):
        a.ping(dht.SockAddr())
    with pytest.raises(ValueError):
        a.run(ipv4="not an address")
    with pytest.raises(OverflowError):
        dht.DhtRunner().run(port=70000)


def test_oversize_values_raise_and_large_values_work(pair):
    a, b = pair
    key = dht.InfoHash.get("big")
    too_big = dht.Value(b"x" * (64 * 1024 + 1))
    with pytest.raises(ValueError, match="larger than"):
        a.put(key, too_big)
    with pytest.raises(ValueError, match="larger than"):
        a.put(key, too_big, lambda ok, n: None)
    big = dht.Value(bytes(range(256)) * 240)  # 60 KiB: split into many datagrams
    assert a.put(key, big)
    assert [v.data for v in b.get(key)] == [big.data]


def test_dropping_a_running_runner_does_not_hang():
    r = dht.DhtRunner()
    r.run(ipv4=LOOP4)
    r.listen(dht.InfoHash.get("k"), lambda v, e: True)
    del r
    gc.collect()
    r2 = dht.DhtRunner()
    r2.run(ipv4=LOOP4)
    r2.shutdown()
    r2.join()
