"""Interop with real OpenDHT Python nodes in separate processes, both directions: Debian's
python3-opendht 2.4.12 under /usr/bin/python3, and the opendht 4.4.2 wheel in the venv named by
RDHT_OPENDHT4_PYTHON (run-tests.sh makes it). And the same OpenDHT script (peer.py) run on
rdht in another process. A missing OpenDHT is a skip with its reason, or a failure when
DHT_REQUIRE_OPENDHT=1. Loopback only: OpenDHT binds 0.0.0.0 but is given only loopback peers."""

import os
import queue
import subprocess
import sys
import threading
import time

import pytest

import rdht as dht
from conftest import LOOP4, wait_for

HERE = os.path.dirname(os.path.abspath(__file__))
REQUIRE = os.environ.get("DHT_REQUIRE_OPENDHT") == "1"


def _python_with_opendht(python):
    if not python or not os.path.exists(python):
        return None, f"{python or 'no interpreter given'} not found"
    r = subprocess.run([python, "-c", "import opendht"], capture_output=True, timeout=60)
    if r.returncode != 0:
        return None, f"{python} cannot import opendht: {r.stderr.decode(errors='replace').strip()[-200:]}"
    return python, None


FLAVOURS = {
    "opendht-2.4.12": ("/usr/bin/python3", "opendht",
                       "apt-get install -y python3-opendht"),
    "opendht-4.4.2": (os.environ.get("RDHT_OPENDHT4_PYTHON"), "opendht",
                      "a venv with pip install opendht==4.4.2, named by RDHT_OPENDHT4_PYTHON"),
    "rdht-process": (sys.executable, "rdht", None),
}


class Peer:
    """One peer.py process."""

    def __init__(self, python, module):
        self.p = subprocess.Popen([python, "-u", os.path.join(HERE, "peer.py"), module],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True, cwd=HERE)
        self.replies, self.events = queue.Queue(), queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.p.stdout:
            w = line.split()
            if w[:1] == ["ev"]:
                self.events.put(w[1:])
            elif w[:1] == ["re"]:
                self.replies.put(w[1:])

    def cmd(self, line, timeout=20):
        self.p.stdin.write(line + "\n")
        self.p.stdin.flush()
        try:
            r = self.replies.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"peer gave no reply to {line!r} in {timeout}s") from None
        assert r[:1] != ["error"], f"peer error on {line!r}: {r}"
        return r

    def close(self):
        try:
            self.cmd("quit", timeout=15)
        except (AssertionError, BrokenPipeError, OSError):
            pass
        try:
            self.p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.p.kill()
            self.p.wait()


@pytest.fixture(params=list(FLAVOURS))
def peer(request):
    python, module, how = FLAVOURS[request.param]
    if module == "opendht":
        python, why = _python_with_opendht(python)
        if python is None:
            msg = f"{request.param} absent ({why}); install: {how}"
            print(f"SKIP: {msg}")
            if REQUIRE:
                pytest.fail(msg + " (DHT_REQUIRE_OPENDHT=1)")
            pytest.skip(msg)
    p = Peer(python, module)
    p.port = int(p.cmd("start")[1])
    yield p
    p.close()


def retry(fn, what, timeout=20):
    return wait_for(fn, timeout, what)


def test_theirs_bootstraps_from_ours(nodes, peer):
    ours = nodes.new()
    peer.cmd(f"boot {LOOP4} {ours.getBound().getPort()}")
    # their put reaches us
    retry(lambda: peer.cmd("put t2o 7468656972")[1] == "1", "their put")
    retry(lambda: [v.data for v in ours.get(dht.InfoHash.get("t2o"))] == [b"their"], "our get")
    # our put reaches them
    assert ours.put(dht.InfoHash.get("o2t"), dht.Value(b"ours"))
    retry(lambda: peer.cmd("get o2t")[1:] == [b"ours".hex()], "their get")


def test_ours_bootstraps_from_theirs(nodes, peer):
    ours = nodes.new()
    ours.bootstrap(LOOP4, str(peer.port))
    wait_for(lambda: ours.getStatus() == "connected", 20, "our node to connect to theirs")
    their_id = peer.cmd("id")[1]
    assert len(their_id) == 40
    # a listen on each side hears a put on the other
    peer.cmd("listen heard-by-them")
    heard = queue.Queue()
    ours.listen(dht.InfoHash.get("heard-by-us"), lambda v, e: heard.put((v.data, e)) or True)
    assert ours.put(dht.InfoHash.get("heard-by-them"), dht.Value(b"to them"))
    ev = peer.events.get(timeout=20)
    assert ev == ["listen", "heard-by-them", b"to them".hex(), "0"]
    retry(lambda: peer.cmd("put heard-by-us " + b"to us".hex())[1] == "1", "their put")
    assert heard.get(timeout=20) == (b"to us", False)
    # values of several sizes, both ways (60 KiB goes in many datagrams)
    for size in (10, 32 * 1024, 60 * 1024):
        data = bytes((i * 7) % 256 for i in range(size))
        k = f"size-{size}"
        assert ours.put(dht.InfoHash.get(k + "-o"), dht.Value(data))
        retry(lambda: peer.cmd(f"get {k}-o")[1:] == [data.hex()], f"their get of {size} B")
        retry(lambda: peer.cmd(f"put {k}-t {data.hex()}")[1] == "1", f"their put of {size} B")
        retry(lambda: [v.data for v in ours.get(dht.InfoHash.get(k + "-t"))] == [data],
              f"our get of {size} B")


def test_mixed_network(nodes, peer):
    """Three of ours and the peer: every value put anywhere is got everywhere."""
    ours = nodes.network(3)
    peer.cmd(f"boot {LOOP4} {ours[0].getBound().getPort()}")
    for i, r in enumerate(ours):
        r.bootstrap(LOOP4, str(peer.port))
    retry(lambda: peer.cmd("put mixed " + b"from-peer".hex())[1] == "1", "their put")
    for i, r in enumerate(ours):
        assert r.put(dht.InfoHash.get("mixed"), dht.Value(b"from-%d" % i))
    want = {b"from-peer"} | {b"from-%d" % i for i in range(3)}
    for r in ours:
        retry(lambda r=r: {v.data for v in r.get(dht.InfoHash.get("mixed"))} == want, "our get")
    retry(lambda: {bytes.fromhex(x) for x in peer.cmd("get mixed")[1:]} == want, "their get")
