#!/usr/bin/python3
"""The loopback workload of `cargo bench -p dht-tests --bench loopback`, on real OpenDHT nodes.

Usage: opendht_bench.py N SECS PAIRS SEED. Starts N DhtRunners on 127.0.0.1/::1 in this process
(each joins through a random earlier one), lets them settle, then measures what the Rust bench
measures on ours, and prints one line of key=value figures (times in ms). Run under /usr/bin/python3.
"""
import os
import random
import sys
import threading
import time

import opendht as dht


WARM_UP = 4
WARM_UP_NETWORK = 0x5741524D


def status_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def rss_kib():
    return status_kib("VmRSS")


def pct(xs, p):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    return xs[min(len(xs) - 1, int(len(xs) * p / 100))] * 1e3


def main():
    n, secs, pairs, seed = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    rnd = random.Random(seed)
    # Rate limits off on both sides (as `dhtnode -U`): 100 nodes on 127.0.0.1 are one address to
    # each other, and a per-address limit meant for a real network would throttle the workload.
    config = dht.DhtConfig()
    config.setRateLimit(-1, -1)
    # Warm-up, as the Rust bench: a few runners on a network of their own put and get once and
    # are kept, so pages of code and first allocations are in the baseline of the memory figures.
    warm_config = dht.DhtConfig()
    warm_config.setNetwork(WARM_UP_NETWORK)
    warm = []
    for i in range(WARM_UP):
        r = dht.DhtRunner()
        r.run(port=0, ipv4="127.0.0.1", ipv6="::1", config=warm_config)
        if i > 0:
            r.bootstrap("127.0.0.1", str(warm[0].getBound().getPort()))
        warm.append(r)
    time.sleep(2)
    wk = dht.InfoHash.get("warm-up")
    ev = threading.Event()
    warm[1].put(wk, dht.Value(b"warm"), lambda ok, nodes: ev.set())
    ev.wait(10)
    ev = threading.Event()
    warm[2].get(wk, lambda v: True, lambda ok, nodes: ev.set())
    ev.wait(10)
    base = rss_kib()
    base_anon = status_kib("RssAnon")
    rs = []
    for i in range(n):
        r = dht.DhtRunner()
        r.run(port=0, ipv4="127.0.0.1", ipv6="::1", config=config)
        if i > 0:
            r.bootstrap("127.0.0.1", str(rs[rnd.randrange(i)].getBound().getPort()))
        rs.append(r)
    time.sleep(float(os.environ.get("SETTLE", "5")))
    per_node = (rss_kib() - base) / n
    anon_per_node = (status_kib("RssAnon") - base_anon) / n

    def timed_put(r, key, data):
        ev = threading.Event()
        t0 = time.perf_counter()
        out = {}

        def done(ok, nodes):
            out["t"] = time.perf_counter() - t0
            ev.set()

        r.put(key, dht.Value(data), done)
        ev.wait(30)
        return out.get("t", 30.0)

    def timed_get(r, key):
        ev = threading.Event()
        t0 = time.perf_counter()
        out = {}

        def cb(v):
            out.setdefault("first", time.perf_counter() - t0)
            return True

        def done(ok, nodes):
            out["done"] = time.perf_counter() - t0
            ev.set()

        r.get(key, cb, done)
        ev.wait(30)
        return out.get("first"), out.get("done", 30.0)

    ops = 200
    put_t, get_t, first_t, missing = [], [], [], 0
    keys = []
    for i in range(ops):
        key = dht.InfoHash.get("bench %d %d" % (seed, i))
        keys.append(key)
        put_t.append(timed_put(rs[rnd.randrange(n)], key, b"v%d" % i))
    for key in keys:
        f, d = timed_get(rs[rnd.randrange(n)], key)
        get_t.append(d)
        if f is None:
            missing += 1
        else:
            first_t.append(f)

    # Listen: a listener on one node, a put on another; time from put to notification.
    listen_t = []
    for i in range(50):
        key = dht.InfoHash.get("listen %d %d" % (seed, i))
        ev = threading.Event()
        box = {}

        def cb(v, expired, box=box, ev=ev):
            if not expired and "t0" in box:
                box.setdefault("t", time.perf_counter() - box["t0"])
                ev.set()
            return True

        rs[rnd.randrange(n)].listen(key, cb)
        time.sleep(0.05)  # let the listen reach its nodes
        box["t0"] = time.perf_counter()
        rs[rnd.randrange(n)].put(key, dht.Value(b"l%d" % i))
        ev.wait(10)
        listen_t.append(box.get("t", 10.0))

    # 60 KiB values: get done.
    big_t = []
    for i in range(20):
        key = dht.InfoHash.get("big %d %d" % (seed, i))
        timed_put(rs[rnd.randrange(n)], key, bytes(rnd.getrandbits(8) for _ in range(60 * 1024)))
        big_t.append(timed_get(rs[rnd.randrange(n)], key)[1])

    # Throughput: PAIRS chains of (put on a random node, then get of that key on another).
    lock = threading.Lock()
    state = {"pairs": 0, "stop": False, "seq": 0}
    finished = threading.Semaphore(0)

    def chain(c):
        def start():
            with lock:
                if state["stop"]:
                    finished.release()
                    return
                state["seq"] += 1
                s = state["seq"]
            key = dht.InfoHash.get("pair %d %d %d" % (seed, c, s))
            a, b = rs[rnd.randrange(n)], rs[rnd.randrange(n)]

            def get_done(ok, nodes):
                with lock:
                    state["pairs"] += 1
                start()

            def put_done(ok, nodes):
                b.get(key, lambda v: True, get_done)

            a.put(key, dht.Value(b"p"), put_done)

        start()

    cpu0, t0 = time.process_time(), time.perf_counter()
    for c in range(pairs):
        chain(c)
    time.sleep(secs)
    with lock:
        state["stop"] = True
        done_pairs = state["pairs"]
    cpu1, t1 = time.process_time(), time.perf_counter()
    for _ in range(pairs):
        finished.acquire(timeout=30)
    rate = done_pairs / (t1 - t0)
    cpu_per_pair = (cpu1 - cpu0) / max(done_pairs, 1) * 1e3

    print(
        "put_p50=%.3f put_p99=%.3f get_p50=%.3f get_p99=%.3f first_p50=%.3f missing=%d "
        "listen_p50=%.3f big_get_p50=%.3f big_get_p99=%.3f pairs_per_s=%.1f cpu_ms_per_pair=%.3f "
        "rss_kib_per_node=%.1f anon_kib_per_node=%.1f"
        % (
            pct(put_t, 50), pct(put_t, 99), pct(get_t, 50), pct(get_t, 99), pct(first_t, 50), missing,
            pct(listen_t, 50), pct(big_t, 50), pct(big_t, 99), rate, cpu_per_pair, per_node,
            anon_per_node,
        ),
        flush=True,
    )
    # Shutting down 100 runners with callbacks in flight can hang the binding: leave at once.
    os._exit(0)


if __name__ == "__main__":
    main()
