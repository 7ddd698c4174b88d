#!/usr/bin/python3
"""Real OpenDHT nodes driven over stdin for interop tests: Debian's python3-opendht (OpenDHT
2.4.12) under /usr/bin/python3 (Debian's module does not load in other interpreters), or the
`opendht` 4.4.2 wheel from PyPI under a venv's python. Binds loopback only.
One command per line; each gets exactly one reply line starting with "re"; listen notifications
come at any time as lines starting with "ev". Data and keys are hex.

  start N                     -> re start PORT... (N new runners on 127.0.0.1 and ::1)
  boot I HOST PORT            -> re ok
  put I KEY DATA              -> re put 1|0
  get I KEY                   -> re get DATA...
  listen I KEY                -> re ok; then: ev listen I KEY DATA 0|1 (1: expired)
  id I                        -> re id NODEID
  nodes I                     -> re nodes COUNT (good IPv4 nodes in the routing table)
  quit                        -> re bye, then exit
"""
import sys
import threading

import opendht as dht

out_lock = threading.Lock()
runners = []


def say(*words):
    with out_lock:
        sys.stdout.write(" ".join(str(w) for w in words) + "\n")
        sys.stdout.flush()


def key_of(h):
    return dht.InfoHash(h.encode())


def main():
    for line in sys.stdin:
        w = line.split()
        if not w:
            continue
        cmd = w[0]
        try:
            if cmd == "start":
                ports = []
                for _ in range(int(w[1])):
                    r = dht.DhtRunner()
                    r.run(port=0, ipv4="127.0.0.1", ipv6="::1")
                    runners.append(r)
                    ports.append(r.getBound().getPort())
                say("re start", *ports)
            elif cmd == "boot":
                runners[int(w[1])].bootstrap(w[2], w[3])
                say("re ok")
            elif cmd == "put":
                v = dht.Value(bytes.fromhex(w[3]))
                ok = runners[int(w[1])].put(key_of(w[2]), v)
                say("re put", 1 if ok else 0)
            elif cmd == "get":
                vals = runners[int(w[1])].get(key_of(w[2]))
                say("re get", *[bytes(v.data).hex() for v in vals])
            elif cmd == "listen":
                i, k = int(w[1]), w[2]

                def cb(v, expired, i=i, k=k):
                    say("ev listen", i, k, bytes(v.data).hex(), 1 if expired else 0)
                    return True

                runners[i].listen(key_of(k), cb)
                say("re ok")
            elif cmd == "id":
                nid = runners[int(w[1])].getNodeId()  # bytes in 2.4.12, an InfoHash in 4.x
                say("re id", nid.decode() if isinstance(nid, bytes) else str(nid))
            elif cmd == "nodes":
                log = runners[int(w[1])].getRoutingTablesLog(2)  # AF_INET
                good = sum(1 for l in log.splitlines() if l.strip().startswith("Node ") and "[good]" in l)
                say("re nodes", good)
            elif cmd == "quit":
                break
            else:
                say("re error unknown", cmd)
        except Exception as e:  # a harness error is a reply, never a hang
            say("re error", type(e).__name__, str(e).replace("\n", " "))
    for r in runners:
        r.shutdown()
    for r in runners:
        r.join()
    say("re bye")


if __name__ == "__main__":
    main()
