"""Put/get latency and put+get pairs per second through Python, on N nodes in one process on
loopback. The same script runs on rdht and on OpenDHT (that is the point):

    python bench.py MODULE [NODES] [PAIRS]       MODULE: rdht or opendht

Each pair: a blocking put of a fresh 32-byte value at a fresh key on one node, then a blocking
get of it on another. A listen on a third node times the listen callback against the put's end.
Prints one JSON line. With RDHT_OWN_THREADS=1, rdht's runners get a thread each (as OpenDHT's)
instead of sharing one.
"""
import importlib
import json
import os
import random
import statistics
import sys
import threading
import time

dht = importlib.import_module(sys.argv[1] if len(sys.argv) > 1 else "rdht")
NODES = int(sys.argv[2]) if len(sys.argv) > 2 else 100
PAIRS = int(sys.argv[3]) if len(sys.argv) > 3 else 2000


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))] if xs else float("nan")


def main():
    rng = random.Random(1)
    nodes = []
    for _ in range(NODES):
        r = dht.DhtRunner()
        if os.environ.get("RDHT_OWN_THREADS"):  # rdht only: a thread per runner, as OpenDHT
            cfg = dht.DhtConfig()
            cfg.setSharedThread(False)
            r.run(port=0, ipv4="127.0.0.1", ipv6="::1", config=cfg)
        else:
            r.run(port=0, ipv4="127.0.0.1", ipv6="::1")
        nodes.append(r)
    port0 = str(nodes[0].getBound().getPort())
    for r in nodes[1:]:
        r.bootstrap("127.0.0.1", port0)
    # Warm-up until puts succeed from a few nodes (routing tables filled).
    end = time.monotonic() + 30
    while time.monotonic() < end:
        if all(r.put(dht.InfoHash.get("warm-%d" % i), dht.Value(b"w")) for i, r in enumerate(nodes[:5])):
            break
    time.sleep(2)
    put_lat, get_lat, listen_lag, misses = [], [], [], 0
    start = time.perf_counter()
    for i in range(PAIRS):
        a, b, c = rng.sample(nodes, 3)
        key = dht.InfoHash.get("bench-%d-%d" % (os.getpid(), i))
        data = bytes(rng.getrandbits(8) for _ in range(32))
        heard = []
        ev = threading.Event()

        def cb(v, expired, heard=heard, ev=ev):
            heard.append(time.perf_counter())
            ev.set()
            return True

        tok = c.listen(key, cb) if i % 10 == 0 else None
        t0 = time.perf_counter()
        a.put(key, dht.Value(data))
        t1 = time.perf_counter()
        vals = b.get(key)
        t2 = time.perf_counter()
        put_lat.append(t1 - t0)
        get_lat.append(t2 - t1)
        if not any(bytes(v.data) == data for v in vals):
            misses += 1
        if tok is not None:
            if ev.wait(5):
                listen_lag.append(heard[0] - t1)
            c.cancelListen(tok)
    elapsed = time.perf_counter() - start
    ms = lambda x: round(x * 1000, 3)
    print(json.dumps({
        "module": dht.__name__ + ("/own-threads" if os.environ.get("RDHT_OWN_THREADS") else ""),
        "version": getattr(dht, "__version__", "2.4.12"),
        "nodes": NODES,
        "pairs": PAIRS,
        "pairs_per_s": round(PAIRS / elapsed, 1),
        "put_ms_p50": ms(pct(put_lat, 50)), "put_ms_p99": ms(pct(put_lat, 99)),
        "get_ms_p50": ms(pct(get_lat, 50)), "get_ms_p99": ms(pct(get_lat, 99)),
        "listen_after_put_ms_p50": ms(pct(listen_lag, 50)),
        "missed_gets": misses,
        "put_ms_mean": ms(statistics.mean(put_lat)), "get_ms_mean": ms(statistics.mean(get_lat)),
    }), flush=True)
    for r in nodes:
        r.shutdown()
    if dht.__name__ == "opendht":
        os._exit(0)  # OpenDHT's join() can deadlock holding the GIL
    for r in nodes:
        r.join()


if __name__ == "__main__":
    main()
