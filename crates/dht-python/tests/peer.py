"""A DHT node in its own process, driven over stdin: an OpenDHT script, written against
OpenDHT's Python API, that also runs on rdht (``python peer.py rdht``) -- the one-line change.

    python peer.py MODULE      MODULE: opendht (2.4.12 or 4.x) or rdht

One command per line; each gets one reply line starting with "re"; listen notifications come
at any time as lines starting with "ev". Keys are names (hashed with InfoHash.get), data hex.

  start                -> re start PORT      (one runner on 127.0.0.1 and ::1, any port)
  boot HOST PORT       -> re ok
  put KEY DATA         -> re put 1|0
  get KEY              -> re get DATA...
  listen KEY           -> re ok; then: ev listen KEY DATA 0|1 (1: expired)
  id                   -> re id NODEID
  quit                 -> re bye, then exit
"""
import importlib
import os
import sys
import threading

dht = importlib.import_module(sys.argv[1] if len(sys.argv) > 1 else "opendht")
out_lock = threading.Lock()
runner = None


def say(*words):
    with out_lock:
        sys.stdout.write(" ".join(str(w) for w in words) + "\n")
        sys.stdout.flush()


def node_id(r):
    i = r.getNodeId()
    return i.decode() if isinstance(i, bytes) else str(i)  # 2.4.12 gives bytes, 4.x InfoHash


def main():
    global runner
    for line in sys.stdin:
        w = line.split()
        if not w:
            continue
        cmd = w[0]
        try:
            if cmd == "start":
                runner = dht.DhtRunner()
                runner.run(port=0, ipv4="127.0.0.1", ipv6="::1")
                say("re start", runner.getBound().getPort())
            elif cmd == "boot":
                runner.bootstrap(w[1], w[2])
                say("re ok")
            elif cmd == "put":
                ok = runner.put(dht.InfoHash.get(w[1]), dht.Value(bytes.fromhex(w[2])))
                say("re put", 1 if ok else 0)
            elif cmd == "get":
                vals = runner.get(dht.InfoHash.get(w[1]))
                say("re get", *[bytes(v.data).hex() for v in vals])
            elif cmd == "listen":
                k = w[1]

                def cb(v, expired, k=k):
                    say("ev listen", k, bytes(v.data).hex(), 1 if expired else 0)
                    return True

                runner.listen(dht.InfoHash.get(k), cb)
                say("re ok")
            elif cmd == "id":
                say("re id", node_id(runner))
            elif cmd == "quit":
                break
            else:
                say("re error unknown", cmd)
        except Exception as e:  # a harness error is a reply, never a hang
            say("re error", type(e).__name__, str(e).replace("\n", " "))
    if runner is not None:
        runner.shutdown()
        if dht.__name__ == "opendht":
            # OpenDHT's join() can deadlock with the GIL held (2.4.12): leave without it.
            say("re bye")
            os._exit(0)
        runner.join()
    say("re bye")


if __name__ == "__main__":
    main()
