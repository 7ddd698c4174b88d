"""DhtRunner on loopback: run, bootstrap, get/put/listen in blocking and callback forms,
cancel, signed and encrypted puts, node info, logs and stats, shutdown with pending work."""

import errno
import queue
import socket
import threading

import pytest

import rdht as dht
from conftest import LOOP4, LOOP6, wait_for


def test_run_bound_node_id(nodes):
    r = nodes.new()
    assert r.isRunning()
    b4, b6 = r.getBound(), r.getBound(10)
    assert b4.getFamily() == 2 and b4.isLoopback() and b4.getPort() > 0
    assert b6.getFamily() == 10 and b6.getPort() == b4.getPort()
    assert r.getNodeId() and isinstance(r.getNodeId(), dht.InfoHash)
    assert not r.getId()  # no identity
    assert not r.getPublicKey()
    r4 = nodes.new(ipv6="")  # IPv4 only
    assert r4.getBound().getFamily() == 2 and str(r4.getBound(10)) == "[invalid address]"
    with pytest.raises(RuntimeError, match="already running"):
        r.run()


def test_run_on_fixed_port_and_config(nodes):
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    probe.bind((LOOP4, 0))
    port = probe.getsockname()[1]
    probe.close()
    cfg = dht.DhtConfig()
    node_id = dht.InfoHash.get("fixed id")
    cfg.setNodeId(node_id)
    cfg.setNetwork(0)
    cfg.setRateLimit(-1, -1)
    cfg.setMaintainStorage(False)
    cfg.setPeerDiscovery(False, False)
    cfg.setBootstrapMode(False)
    cfg.setProxyInfo("")
    with pytest.raises(NotImplementedError):
        cfg.setProxyInfo("proxy.example:8000")
    r = nodes.new(port=port, config=cfg)
    assert r.getBound().getPort() == port and r.getNodeId() == node_id
    bound = dht.DhtConfig()
    bound.setBound(dht.SockAddr(LOOP4, 0), None)
    r2 = nodes.new(ipv4="", ipv6="", config=bound)
    assert r2.getBound().isLoopback() and not r2.getBound(10)


def test_put_get_blocking(pair):
    a, b = pair
    key = dht.InfoHash.get("blocking")
    v = dht.Value(b"world")
    assert a.put(key, v) is True
    assert v.id != 0  # the put's id is written back into the value
    got = b.get(key)
    assert isinstance(got, list) and [x.data for x in got] == [b"world"]
    assert got[0].id == v.id
    # filter runs in Python; where goes to the network
    assert a.put(key, dht.Value(b"second")) is True
    assert {x.data for x in b.get(key)} == {b"world", b"second"}
    assert [x.data for x in b.get(key, filter=lambda x: x.data == b"second")] == [b"second"]
    assert [x.data for x in b.get(key, where=dht.Where().id(v.id))] == [b"world"]


def test_get_put_callbacks_run_on_the_runner_thread(pair):
    a, b = pair
    key = dht.InfoHash.get("callbacks")
    main = threading.get_ident()
    events = queue.Queue()

    def put_done(ok, nodes):
        events.put(("put", ok, isinstance(nodes, list), threading.get_ident()))

    assert a.put(key, dht.Value(b"cb"), put_done) is None
    kind, ok, is_list, tid = events.get(timeout=10)
    assert (kind, ok, is_list) == ("put", True, True) and tid != main

    def on_value(v):
        events.put(("value", v.data, threading.get_ident()))
        return True

    def on_done(ok, nodes):
        events.put(("done", ok, threading.get_ident()))

    token = b.get(key, on_value, on_done)
    assert isinstance(token, dht.GetToken)
    assert events.get(timeout=10)[:2] == ("value", b"cb")
    kind, ok, tid = events.get(timeout=10)
    assert (kind, ok) == ("done", True) and tid != main


def test_runners_share_a_thread_unless_asked(nodes):
    own = dht.DhtConfig()
    own.setSharedThread(False)
    a, b = nodes.network(2)
    c = nodes.new(bootstrap=a, config=own)
    d = nodes.new(bootstrap=a, config=own)
    key = dht.InfoHash.get("threads")
    assert a.put(key, dht.Value(b"t"))
    tids = queue.Queue()
    for r in (a, b, c, d):
        r.get(key, lambda v: True, lambda ok, n: tids.put(threading.get_ident()))
    got = [tids.get(timeout=10) for _ in range(4)]
    # the done callbacks arrive in any order: two on the shared thread, one each on c's and d's
    assert len(set(got)) == 3 and threading.get_ident() not in got
    # the runners on separate threads work together (and with the shared ones)
    assert [v.data for v in c.get(key)] == [b"t"]
    assert d.put(key, dht.Value(b"u")) and {v.data for v in b.get(key)} == {b"t", b"u"}


def test_get_callback_false_stops_and_reports_done(nodes):
    a, b = nodes.network(2)
    key = dht.InfoHash.get("stop early")
    for i in range(5):
        assert a.put(key, dht.Value(b"v%d" % i))
    seen, done = [], queue.Queue()
    b.get(key, lambda v: seen.append(v.data) and False, lambda ok, n: done.put(ok))
    assert done.get(timeout=10) is True
    assert len(seen) == 1


def test_get_cancel_reports_done_false(pair):
    a, b = pair
    key = dht.InfoHash.get("cancel get")
    done = queue.Queue()
    token = b.get(key, lambda v: True, lambda ok, n: done.put(ok))
    b.cancelGet(token)
    assert done.get(timeout=10) in (False, True)  # it may have finished first; it reports once
    assert done.empty()


def test_listen_and_cancel(pair):
    a, b = pair
    key = dht.InfoHash.get("listen")
    heard = queue.Queue()

    def cb(v, expired):
        heard.put((v.data, expired, threading.get_ident()))
        return True

    token = b.listen(key, cb)
    assert isinstance(token, dht.ListenToken) and token.key == key
    assert a.put(key, dht.Value(b"one"))
    data, expired, tid = heard.get(timeout=10)
    assert (data, expired) == (b"one", False) and tid != threading.get_ident()
    b.cancelListen(token)
    assert token.cancelled
    # after the cancel, a new put is heard by a second listener but not the first
    second = queue.Queue()
    b.listen(key, lambda v, e: second.put(v.data) or True)
    assert second.get(timeout=10) == b"one"  # the stored value
    assert a.put(key, dht.Value(b"two"))
    wait_for(lambda: b"two" in list(second.queue), 10, "the second listener")
    assert heard.empty()


def test_listen_callback_false_cancels(pair):
    a, b = pair
    key = dht.InfoHash.get("listen once")
    heard = []
    token = b.listen(key, lambda v, e: heard.append(v.data) and False)
    assert a.put(key, dht.Value(b"1"))
    wait_for(lambda: heard, 10, "the first value")
    wait_for(lambda: token.cancelled, 10, "the cancel")
    assert a.put(key, dht.Value(b"2"))
    # a get by the same node sees the value, so the listen would have had it by now
    assert {v.data for v in b.get(key)} == {b"1", b"2"}
    assert heard == [b"1"]


def test_permanent_put_and_cancel_put(pair):
    a, b = pair
    key = dht.InfoHash.get("permanent")
    v = dht.Value(b"perm")
    assert a.put(key, v, permanent=True)
    assert [x.data for x in b.get(key)] == [b"perm"]
    assert f"id:{v.id:x}" in a.getStorageLog()
    a.cancelPut(key, v)
    # no longer announced, and the local copy at `a` is gone
    wait_for(lambda: f"id:{v.id:x}" not in a.getStorageLog(), 10, "the local copy to go")


def test_put_signed_and_owner(nodes):
    ident = dht.Identity.generate()
    a = nodes.new(id=ident)
    b = nodes.new(bootstrap=a)
    wait_for(lambda: b.getStatus() == "connected")
    assert a.getId() == ident.publickey.getId()
    assert a.getPublicKey() == ident.publickey
    key = dht.InfoHash.get("signed")
    v = dht.Value(b"mine")
    assert a.putSigned(key, v) is True
    got = b.get(key)
    assert len(got) == 1 and got[0].is_signed
    assert got[0].owner == ident.publickey and len(got[0].signature) == 64
    assert got[0].owner.getId() == ident.publickey.getId()
    # without an identity a signed put fails (upstream: False)
    assert b.putSigned(key, dht.Value(b"x")) is False


def test_put_encrypted(nodes):
    alice, bob = dht.Identity.generate(), dht.Identity.generate()
    a = nodes.new(id=alice)
    b = nodes.new(bootstrap=a, id=bob)
    wait_for(lambda: b.getStatus() == "connected")
    key = dht.InfoHash.get("secret")
    assert a.putEncrypted(key, dht.Value(b"for bob"), bob.publickey) is True
    got = b.get(key)
    assert [v.data for v in got] == [b"for bob"]
    assert got[0].owner == alice.publickey
    # a third node without bob's key sees only ciphertext
    c = nodes.new(bootstrap=a)
    wait_for(lambda: c.getStatus() == "connected")
    seen = c.get(key)
    assert len(seen) == 1 and seen[0].data == b"" and seen[0].is_encrypted
    with pytest.raises(ValueError):
        a.putEncrypted(key, dht.Value(b"x"), None)
    with pytest.raises(ValueError):
        a.putEncrypted(key, dht.Value(b"x"), bob.publickey.getLongId())
    with pytest.raises(TypeError):
        a.putEncrypted(key, dht.Value(b"x"), "bob")


def test_ping(nodes):
    a = nodes.new()
    b = nodes.new()
    assert b.ping(a.getBound()) is True
    assert b.ping(a.getBound(10)) is True
    got = queue.Queue()
    b.ping(a.getBound(), lambda ok: got.put(ok))
    assert got.get(timeout=10) is True
    # nobody listens there
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((LOOP4, 0))
    dead = dht.SockAddr(LOOP4, s.getsockname()[1])
    s.close()
    assert b.ping(dead) is False
    assert dht.DhtRunner().ping(a.getBound()) is False  # not running: False (upstream #193)


def test_bootstrap_by_name_and_bad_host(nodes):
    a = nodes.new()
    b = nodes.new()
    b.bootstrap("localhost", a.getBound().getPort())
    wait_for(lambda: b.getStatus() == "connected", 10, "bootstrap by name")
    with pytest.raises(OSError):
        b.bootstrap("no-such-host.invalid", "4222")
    with pytest.raises(ValueError):
        b.bootstrap(LOOP4, "not a port")


def test_logs_and_stats(pair):
    a, b = pair
    key = dht.InfoHash.get("logs")
    assert a.put(key, dht.Value(b"x"))
    stats = a.getNodeMessageStats()
    assert len(stats) == 5 and all(isinstance(n, int) for n in stats) and sum(stats) > 0
    assert sum(a.getNodeMessageStats()) <= sum(stats)  # reset on read
    assert str(b.getNodeId())[:8] in a.getRoutingTablesLog(2) or a.getRoutingTablesLog(2)
    assert isinstance(a.getRoutingTablesLog(10), str)
    a.listen(key, lambda v, e: True)  # a listen keeps its search
    wait_for(lambda: str(key) in a.getSearchesLog(), 10, "the search in the log")
    storage = a.getStorageLog() + b.getStorageLog()
    assert str(key) in storage
    s = a.getStats()
    assert s["nodes4"] >= 1 and s["sent"]["put"] >= 1
    assert a.getStatus(2) == "connected"
    assert isinstance(a.getPublicAddress(), list)
    a.enableLogging()
    a.disableLogging()
    a.enableFileLogging("/dev/null")
    with pytest.raises(ValueError):
        a.getRoutingTablesLog(99)


def test_register_type(nodes):
    import datetime
    r = dht.DhtRunner()
    r.registerType(dht.ValueType(20, "short", datetime.timedelta(seconds=30)))
    r.run(ipv4=LOOP4, ipv6=LOOP6)
    nodes.all.append(r)
    assert r.isRunning()


def test_shutdown_with_pending_operations(nodes, hole):
    a = nodes.new()
    a.bootstrap(LOOP4, hole)  # a peer that never answers: the operations stay pending
    key = dht.InfoHash.get("pending")
    done, shut = queue.Queue(), queue.Queue()
    a.get(key, lambda v: True, lambda ok, n: done.put(("get", ok)))
    a.listen(key, lambda v, e: True)
    a.put(key, dht.Value(b"p"), lambda ok, n: done.put(("put", ok)))
    a.shutdown(lambda: shut.put(threading.get_ident()))
    assert not a.isRunning()
    a.join()
    assert shut.get(timeout=10) != threading.get_ident()
    results = dict([done.get(timeout=10), done.get(timeout=10)])
    assert set(results) == {"get", "put"}  # every done callback ran once
    # calls after shutdown raise
    with pytest.raises(RuntimeError, match="not running"):
        a.get(key)
    with pytest.raises(RuntimeError, match="not running"):
        a.put(key, dht.Value(b"late"))
    with pytest.raises(RuntimeError, match="not running"):
        a.listen(key, lambda v, e: True)
    # and it can run again
    a.run(ipv4=LOOP4, ipv6=LOOP6)
    assert a.isRunning()


def test_blocking_get_ends_when_runner_stops(nodes):
    a = nodes.new()
    b = nodes.new(bootstrap=a)
    wait_for(lambda: b.getStatus() == "connected")
    result = queue.Queue()
    key = dht.InfoHash.get("interrupted get")
    t = threading.Thread(target=lambda: result.put(b.get(key)))
    t.start()
    b.join()  # stops at once
    t.join(10)
    assert not t.is_alive() and isinstance(result.get(timeout=1), list)


def test_network_of_python_nodes(nodes):
    net = nodes.network(8)
    key = dht.InfoHash.get("everyone")
    for i, r in enumerate(net):
        assert r.put(key, dht.Value(b"from %d" % i))
    want = {b"from %d" % i for i in range(len(net))}
    for r in net:
        assert {v.data for v in r.get(key)} == want
