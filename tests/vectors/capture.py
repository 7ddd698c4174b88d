#!/usr/bin/python3
"""Drives real OpenDHT 2.4.12 nodes on loopback so that tcpdump can capture their datagrams.

Run through capture.sh, which starts tcpdump and Debian's dhtnode (node A, port 4301) first.
Needs Debian's python3-opendht and python3-msgpack, under /usr/bin/python3.

Nodes: A = Debian's dhtnode on 4301; B (4302) and C (4303) = DhtRunner from python3-opendht;
R (4304) = a raw UDP socket sending hand-built requests, for the error replies and `refresh`,
which the Python binding cannot make a C++ node send (it has no permanent put).
"""
import socket
import threading
import time

import msgpack
import opendht as dht

A = ("127.0.0.1", 4301)


def big_data(n):
    return bytes((i * 31 + 7) % 256 for i in range(n))


def wait(cond, timeout=10.0):
    end = time.time() + timeout
    while time.time() < end:
        if cond():
            return True
        time.sleep(0.05)
    raise SystemExit("timed out")


def put(node, key, value):
    ev = threading.Event()
    node.put(key, value, lambda ok, nodes: ev.set())
    ev.wait(10)


def get(node, key):
    ev = threading.Event()
    out = []
    node.get(key, lambda v: out.append(v) or True, lambda ok, nodes: ev.set())
    ev.wait(10)
    return out


b = dht.DhtRunner()
b.run(port=4302)
c = dht.DhtRunner()
c.run(port=4303)
b.bootstrap("127.0.0.1", "4301")
b.bootstrap("::1", "4301")
c.bootstrap("127.0.0.1", "4301")
time.sleep(3)

k1 = dht.InfoHash.get("golden-small")
k2 = dht.InfoHash.get("golden-32k")
k3 = dht.InfoHash.get("golden-listen")

small = dht.Value(b"hello opendht")
small.id = 0x1111
put(b, k1, small)

large = dht.Value(big_data(32 * 1024))
large.id = 0x3232
put(b, k2, large)

got = get(c, k1)
assert any(bytes(v.data) == b"hello opendht" for v in got), got
got = get(c, k2)
assert any(bytes(v.data) == big_data(32 * 1024) for v in got), "32k value not found"

heard = []
c.listen(k3, lambda v, expired: heard.append(bytes(v.data)) or True)
time.sleep(1)
pushed = dht.Value(b"pushed to listener")
pushed.id = 0x3333
put(b, k3, pushed)
wait(lambda: b"pushed to listener" in heard)
time.sleep(1)

# Raw requests from R.
rid = bytes(range(1, 21))
r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
r.bind(("127.0.0.1", 4304))
r.settimeout(3)
tid = [100]


def raw_hash(h):
    s = h.toString()
    return bytes.fromhex(s.decode() if isinstance(s, bytes) else s)


def ask(q, a):
    tid[0] += 1
    msg = {"a": dict(a, id=rid), "q": q, "t": tid[0], "y": "q", "v": "o2"}
    r.sendto(msgpack.packb(msg, use_bin_type=True), A)
    data, _ = r.recvfrom(65536)
    return msgpack.unpackb(data, raw=False, strict_map_key=False)


ask("ping", {})
key1 = raw_hash(k1)
rep = ask("get", {"h": key1})
token = rep["r"]["token"]
ask("refresh", {"h": key1, "vid": 0x1111, "token": token})
ask("refresh", {"h": bytes(range(50, 70)), "vid": 1, "token": token})
bad = {"id": 0x4444, "dat": {"body": {"type": 0, "data": b"x"}}}
ask("put", {"h": key1, "values": [bad], "token": b"not a token"})
ask("get", {"h": bytes(20)})
zero = {"id": 0, "dat": {"body": {"type": 0, "data": b"x"}}}
ask("put", {"h": key1, "values": [zero], "token": token})
ask("find", {"target": key1, "w": [2, 10]})

b.join()
c.join()
print("capture scenario complete")
