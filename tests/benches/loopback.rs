//! The side-by-side loopback benchmark: N = 100 of our nodes (dht-mio runners on 2 pool threads,
//! then a thread per runner, then dht-smol nodes on smol's executor; each in a process of its own) and
//! the same workload on N = 100 real OpenDHT nodes, 2.4.12 (Debian's python3-opendht) and 4.4.2
//! (the PyPI wheel, its interpreter as in `dht_tests::opendht::Version::python`), each in one
//! process, `tests/py/opendht_bench.py`), printed in columns side by side.
//!
//! `cargo bench -p dht-tests --bench loopback` (env: `BENCH_N`, `BENCH_SECS` for the throughput
//! phase, default 20, `BENCH_PAIRS`, default 16, `BENCH_POOLS`: our nodes on that many shared
//! threads, default 2, next to a thread per node; `BENCH_ONLY=ours|opendht`; `BENCH_OPENDHT`:
//! which OpenDHT versions, default `2.4.12,4.4.2`; `BENCH_ROUNDS`, default 3: how many times
//! dht-mio on pools and each OpenDHT are measured, in turns, each figure of those columns being
//! the median of its rounds). Figures:
//! put done and get done p50/p99, get's first value p50, listen notification p50, get done of
//! 60 KiB values, pairs (put, then get of that key elsewhere) per second with 16 chains running
//! at once and the process CPU per pair, and the resident memory each node adds.
//!
//! `BENCH_KINDS=1` also prints, for ours, the datagrams of each kind sent per pair;
//! `BENCH_NO_AMP=1` runs our nodes without the anti-amplification guard (to see its cost).
//! `BENCH_CHILD=2 BENCH_MEMORY_ONLY=1` runs one configuration only as far as its memory figures
//! (RSS, its anonymous part, the live heap and its blocks per node) and ends there, its nodes
//! alive, for a heap profiler; with `BENCH_PAUSE=1` it then waits for a line on stdin (to inspect
//! the live process) and prints its RSS again. `BENCH_SMAPS=1` prints which mappings the nodes'
//! memory went to (the main heap, each pool thread's malloc arena).
//!
//! Both sides run with their request rate limits off (OpenDHT's `dhtnode -U`): 100 nodes on
//! 127.0.0.1 are one address to each other, and the per-address limit (1024 requests/s on both
//! sides), meant for a real network, would throttle the throughput phase.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use dht_mio::{Change, Config, Handle, Pool, Runner};
use dht_proto::value::{Query, Value};
use dht_proto::{Family, InfoHash, MessageKind, PutOptions};
use dht_tests::opendht::Version;

/// Counts live heap bytes while the nodes start, to tell the heap a node holds from what the
/// allocator keeps around; stopped before the timed phases.
#[global_allocator]
static ALLOC: dht_tests::counting::Counting = &dht_tests::counting::INSTRUMENTED_SYSTEM;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A field of /proc/self/status, in KiB.
fn status_kib(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.strip_prefix(field).is_some_and(|r| r.starts_with(':')))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0.0)
}

/// Resident memory and its anonymous part (heap and stacks: what the nodes hold; the rest is
/// pages of code and libraries, faulted in once whatever the number of nodes), in KiB.
fn rss_kib() -> (f64, f64) {
    (status_kib("VmRSS"), status_kib("RssAnon"))
}

/// Resident KiB of each mapping of /proc/self/smaps, by its start address and name (for
/// `BENCH_SMAPS=1`: which mappings the nodes' memory lands in: the main heap, the pool threads'
/// arenas, stacks).
fn smaps() -> BTreeMap<String, (String, f64)> {
    let mut m = BTreeMap::new();
    let text = std::fs::read_to_string("/proc/self/smaps").unwrap_or_default();
    let mut cur = None;
    for l in text.lines() {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.first().is_some_and(|a| a.contains('-') && !a.ends_with(':')) {
            let start = f[0].split('-').next().unwrap_or("").to_string();
            let name = f.get(5).copied().unwrap_or("[anon]").to_string();
            cur = Some(start.clone());
            m.insert(start, (name, 0.0));
        } else if f.first() == Some(&"Rss:")
            && let Some(c) = &cur
            && let Some(e) = m.get_mut(c)
        {
            e.1 = f.get(1).and_then(|v| v.parse().ok()).unwrap_or(0.0);
        }
    }
    m
}

/// Prints the mappings whose resident memory changed between `a` and `b`.
fn smaps_diff(a: &BTreeMap<String, (String, f64)>, b: &BTreeMap<String, (String, f64)>) {
    for (k, (name, rss)) in b {
        let before = a.get(k).map_or(0.0, |e| e.1);
        if (rss - before).abs() >= 8.0 {
            eprintln!("smaps {k} {name}: {before} -> {rss} KiB ({:+})", rss - before);
        }
    }
    for (k, (name, rss)) in a {
        if !b.contains_key(k) {
            eprintln!("smaps {k} {name}: {rss} -> gone");
        }
    }
}

/// User + system CPU of this process, in seconds (Linux: /proc/self/stat, 100 ticks a second).
fn cpu_secs() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|&i| f.get(i).and_then(|v| v.parse::<f64>().ok()))
        .sum();
    ticks / 100.0
}

struct Rng(u64);
impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) % n as u64) as usize
    }
}

fn pct(xs: &[f64], p: usize) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    v.get((v.len() * p / 100).min(v.len().saturating_sub(1)))
        .copied()
        .unwrap_or(f64::NAN)
}

/// Nodes started before the baseline of the memory figures, on a network of their own, and
/// kept to the end. They put and get once, so the code's pages and the threads' and
/// allocator's first memory are counted in the baseline, not against the N measured nodes:
/// those costs come once per process whatever N is. The OpenDHT script does the same.
const WARM_UP: usize = 4;
/// The warm-up nodes' network id.
const WARM_UP_NETWORK: u32 = 0x5741_524d;

/// What every configuration measures, turned into the printed figures.
struct Measured {
    put_t: Vec<f64>,
    get_t: Vec<f64>,
    first_t: Vec<f64>,
    missing: u32,
    listen_t: Vec<f64>,
    big_t: Vec<f64>,
    n_pairs: u64,
    elapsed: Duration,
    cpu: f64,
    per_node: (f64, f64),
    heap_per_node: f64,
    /// Live heap blocks per node (each costs the allocator a header and rounding).
    blocks_per_node: f64,
}

impl Measured {
    fn into_figures(self, m: &mut BTreeMap<&'static str, f64>) {
        m.insert("put_p50", pct(&self.put_t, 50));
        m.insert("put_p99", pct(&self.put_t, 99));
        m.insert("get_p50", pct(&self.get_t, 50));
        m.insert("get_p99", pct(&self.get_t, 99));
        m.insert("first_p50", pct(&self.first_t, 50));
        m.insert("missing", f64::from(self.missing));
        m.insert("listen_p50", pct(&self.listen_t, 50));
        m.insert("big_get_p50", pct(&self.big_t, 50));
        m.insert("big_get_p99", pct(&self.big_t, 99));
        m.insert("pairs_per_s", self.n_pairs as f64 / self.elapsed.as_secs_f64());
        m.insert("cpu_ms_per_pair", self.cpu / (self.n_pairs.max(1) as f64) * 1e3);
        m.insert("rss_kib_per_node", self.per_node.0);
        m.insert("anon_kib_per_node", self.per_node.1);
        m.insert("heap_kib_per_node", self.heap_per_node);
        m.insert("heap_blocks_per_node", self.blocks_per_node);
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn timed_put(h: &Handle, key: InfoHash, data: Vec<u8>) -> f64 {
    let (tx, rx) = mpsc::channel();
    let t0 = Instant::now();
    h.put(key, Value::new(0, data), PutOptions::default(), move |_| {
        let _ = tx.send(t0.elapsed());
    })
    .expect("put");
    rx.recv_timeout(Duration::from_secs(30)).map(ms).unwrap_or(30e3)
}

fn timed_get(h: &Handle, key: InfoHash) -> (Option<f64>, f64) {
    let (tx, rx) = mpsc::channel();
    let first = Arc::new(Mutex::new(None));
    let f2 = first.clone();
    let t0 = Instant::now();
    h.get(
        key,
        Query::default(),
        move |_| {
            if let Ok(mut f) = f2.lock() {
                f.get_or_insert(t0.elapsed());
            }
        },
        move |_| {
            let _ = tx.send(t0.elapsed());
        },
    )
    .expect("get");
    let done = rx.recv_timeout(Duration::from_secs(30)).map(ms).unwrap_or(30e3);
    let first = first.lock().ok().and_then(|f| *f).map(ms);
    (first, done)
}

/// Our nodes: on `pools` shared threads (nodes spread round-robin), or with 0, a thread each.
fn ours(n: usize, secs: u64, pairs: usize, seed: u64, pools: usize) -> BTreeMap<&'static str, f64> {
    let mut rng = Rng(seed);
    let pool: Vec<Pool> = (0..pools).map(|_| Pool::new().expect("pool")).collect();
    // Warm-up: a few nodes on a network of their own put and get once, so the pages of code and
    // the threads' first allocations are in before the baseline (see [`WARM_UP`]).
    let warm: Vec<Runner> = (0..WARM_UP)
        .map(|i| {
            let mut config = Config::loopback();
            config.node.network = WARM_UP_NETWORK;
            match pool.get(i % pools.max(1)) {
                Some(p) => p.run(config),
                None => Runner::run(config),
            }
            .expect("runner")
        })
        .collect();
    for r in &warm[1..] {
        r.bootstrap_addr(warm[0].local_addrs()[0]).expect("bootstrap");
    }
    for r in &warm {
        assert!(r.wait_connected(Duration::from_secs(30)));
    }
    let wk = InfoHash::get("warm-up");
    timed_put(&warm[1].handle(), wk, b"warm".to_vec());
    timed_get(&warm[2].handle(), wk);
    let base = rss_kib();
    let live0 = dht_tests::counting::live();
    let allocs0 = dht_tests::counting::live_allocations();
    let maps0 = smaps();
    let mut rs: Vec<Runner> = Vec::new();
    for i in 0..n {
        let mut s = [3u8; 32];
        s[..8].copy_from_slice(&(seed ^ i as u64).to_le_bytes());
        let mut config = Config {
            seed: Some(s),
            ..Config::loopback()
        };
        // Rate limits off, on both sides (see the module docs).
        config.node.max_req_per_sec = None;
        config.node.max_peer_req_per_sec = None;
        if std::env::var_os("BENCH_NO_AMP").is_some() {
            config.node.amplification_factor = None;
        }
        let r = match pool.get(i % pools.max(1)) {
            Some(p) => p.run(config),
            None => Runner::run(config),
        }
        .expect("runner");
        if i > 0 {
            r.bootstrap_addr(rs[rng.below(i)].local_addrs()[0])
                .expect("bootstrap");
        }
        rs.push(r);
    }
    for r in &rs {
        assert!(r.wait_connected(Duration::from_secs(30)));
    }
    std::thread::sleep(Duration::from_secs(env("SETTLE", 5)));
    let now = rss_kib();
    let per_node = ((now.0 - base.0) / n as f64, (now.1 - base.1) / n as f64);
    let heap_per_node = (dht_tests::counting::live() - live0) as f64 / 1024.0 / n as f64;
    let blocks_per_node = (dht_tests::counting::live_allocations() - allocs0) as f64 / n as f64;
    if std::env::var_os("BENCH_SMAPS").is_some() {
        smaps_diff(&maps0, &smaps());
    }
    if std::env::var_os("BENCH_MEMORY_ONLY").is_some() {
        // Only the memory figures (for heap profilers: the process ends with the nodes alive).
        println!(
            "rss_kib_per_node={} anon_kib_per_node={} heap_kib_per_node={} blocks_per_node={} put_p50=0",
            per_node.0, per_node.1, heap_per_node, blocks_per_node
        );
        if std::env::var_os("BENCH_PAUSE").is_some() {
            let mut l = String::new();
            let _ = std::io::stdin().read_line(&mut l);
            let now = rss_kib();
            println!("after pause: rss_kib_per_node={}", (now.0 - base.0) / n as f64);
            if std::env::var_os("BENCH_SMAPS").is_some() {
                smaps_diff(&maps0, &smaps());
            }
        }
        std::process::exit(0);
    }
    let hs: Vec<Handle> = rs.iter().map(|r| r.handle()).collect();

    let ops = 200;
    let (mut put_t, mut get_t, mut first_t, mut missing) = (Vec::new(), Vec::new(), Vec::new(), 0);
    let keys: Vec<InfoHash> = (0..ops)
        .map(|i| InfoHash::get(format!("bench {seed} {i}")))
        .collect();
    for (i, k) in keys.iter().enumerate() {
        put_t.push(timed_put(&hs[rng.below(n)], *k, format!("v{i}").into_bytes()));
    }
    for k in &keys {
        let (f, d) = timed_get(&hs[rng.below(n)], *k);
        get_t.push(d);
        match f {
            Some(f) => first_t.push(f),
            None => missing += 1,
        }
    }

    let mut listen_t = Vec::new();
    for i in 0..50 {
        let key = InfoHash::get(format!("listen {seed} {i}"));
        let (tx, rx) = mpsc::channel();
        let t0: Arc<Mutex<Option<Instant>>> = Arc::default();
        let t0c = t0.clone();
        let id = hs[rng.below(n)]
            .listen(key, Query::default(), move |c| {
                if let (Change::Added(_), Ok(t)) = (c, t0c.lock())
                    && let Some(t) = *t
                {
                    let _ = tx.send(t.elapsed());
                }
            })
            .expect("listen");
        std::thread::sleep(Duration::from_millis(50));
        *t0.lock().expect("lock") = Some(Instant::now());
        hs[rng.below(n)]
            .put(
                key,
                Value::new(0, format!("l{i}").into_bytes()),
                PutOptions::default(),
                |_| {},
            )
            .expect("put");
        listen_t.push(rx.recv_timeout(Duration::from_secs(10)).map(ms).unwrap_or(10e3));
        let _ = id;
    }

    let mut big_t = Vec::new();
    for i in 0..20 {
        let key = InfoHash::get(format!("big {seed} {i}"));
        let data: Vec<u8> = (0..60 * 1024).map(|_| rng.below(256) as u8).collect();
        timed_put(&hs[rng.below(n)], key, data);
        big_t.push(timed_get(&hs[rng.below(n)], key).1);
    }

    // Throughput: `pairs` chains of (put on a random node, then a get of its key on another).
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let seq = Arc::new(AtomicU64::new(0));
    let (fin_tx, fin_rx) = mpsc::channel::<()>();
    let pick = Arc::new(Mutex::new(Rng(seed ^ 0xABCD)));
    type Start = Arc<dyn Fn() + Send + Sync>;
    fn chain(
        hs: Arc<Vec<Handle>>,
        pick: Arc<Mutex<Rng>>,
        done: Arc<AtomicU64>,
        stop: Arc<AtomicBool>,
        seq: Arc<AtomicU64>,
        fin: mpsc::Sender<()>,
        seed: u64,
    ) -> Start {
        let me: Arc<Mutex<Option<Start>>> = Arc::default();
        let me2 = me.clone();
        let start: Start = Arc::new(move || {
            if stop.load(Ordering::Relaxed) {
                let _ = fin.send(());
                return;
            }
            let s = seq.fetch_add(1, Ordering::Relaxed);
            let key = InfoHash::get(format!("pair {seed} {s}"));
            let (a, b) = {
                let mut p = pick.lock().expect("lock");
                (p.below(hs.len()), p.below(hs.len()))
            };
            let b = hs[b].clone();
            let done = done.clone();
            let again = me2.lock().expect("lock").clone();
            let _ = hs[a].put(
                key,
                Value::new(0, b"p".to_vec()),
                PutOptions::default(),
                move |_| {
                    let _ = b.get(
                        key,
                        Query::default(),
                        |_| {},
                        move |_| {
                            done.fetch_add(1, Ordering::Relaxed);
                            if let Some(again) = again {
                                again();
                            }
                        },
                    );
                },
            );
        });
        *me.lock().expect("lock") = Some(start.clone());
        start
    }
    let shared = Arc::new(hs.clone());
    let sent_before: u64 = hs.iter().map(|h| h.stats().sent.total()).sum();
    let allocs_before = dht_tests::counting::allocations();
    let kinds_before: Vec<u64> = MessageKind::ALL
        .into_iter()
        .map(|k| hs.iter().map(|h| h.stats().sent[k]).sum())
        .collect();
    let (cpu0, t0) = (cpu_secs(), Instant::now());
    let starts: Vec<Start> = (0..pairs)
        .map(|_| {
            chain(
                shared.clone(),
                pick.clone(),
                done.clone(),
                stop.clone(),
                seq.clone(),
                fin_tx.clone(),
                seed,
            )
        })
        .collect();
    for s in &starts {
        s();
    }
    std::thread::sleep(Duration::from_secs(secs));
    stop.store(true, Ordering::Relaxed);
    let (cpu1, elapsed) = (cpu_secs(), t0.elapsed());
    let allocs = dht_tests::counting::allocations() - allocs_before;
    let n_pairs = done.load(Ordering::Relaxed);
    for _ in 0..pairs {
        let _ = fin_rx.recv_timeout(Duration::from_secs(30));
    }
    let (mut retrans, mut limited) = (0u64, 0u64);
    let sent_after: u64 = hs.iter().map(|h| h.stats().sent.total()).sum();
    if std::env::var_os("BENCH_KINDS").is_some() {
        let nodes = |f: Family| hs.iter().map(|h| h.stats().nodes[f]).sum::<usize>() as f64 / hs.len() as f64;
        eprintln!(
            "routing table size, average: IPv4 {:.1}, IPv6 {:.1}",
            nodes(Family::V4),
            nodes(Family::V6)
        );
        let names = [
            "ping", "find", "get", "put", "listen", "refresh", "update", "reply", "error", "data",
        ];
        for (i, k) in MessageKind::ALL.into_iter().enumerate() {
            let after: u64 = hs.iter().map(|h| h.stats().sent[k]).sum();
            eprintln!(
                "{} per pair: {:.2}",
                names[i],
                (after - kinds_before[i]) as f64 / done.load(Ordering::Relaxed).max(1) as f64
            );
        }
    }
    for h in &hs {
        let st = h.stats();
        retrans += st.retransmits;
        limited += st.dropped(dht_proto::DropReason::RateLimitedPeer)
            + st.dropped(dht_proto::DropReason::RateLimitedGlobal);
    }
    let mut m = BTreeMap::new();
    m.insert("retransmits", retrans as f64);
    m.insert(
        "datagrams_per_pair",
        (sent_after - sent_before) as f64 / n_pairs.max(1) as f64,
    );
    m.insert("rate_limited", limited as f64);
    // Every allocation of the process in the timed phase (the bench's own chains included: a
    // key's name, a closure or two per pair) over the datagrams sent in it.
    m.insert(
        "allocs_per_datagram",
        allocs as f64 / (sent_after - sent_before).max(1) as f64,
    );
    Measured {
        put_t,
        get_t,
        first_t,
        missing,
        listen_t,
        big_t,
        n_pairs,
        elapsed,
        cpu: cpu1 - cpu0,
        per_node,
        heap_per_node,
        blocks_per_node,
    }
    .into_figures(&mut m);
    // Break the chains' self-references so the handles drop.
    drop(starts);
    drop(rs);
    drop(warm);
    drop(pool);
    m
}

fn opendht(version: Version, n: usize, secs: u64, pairs: usize, seed: u64) -> Option<BTreeMap<String, f64>> {
    version.check().ok()?;
    let out = std::process::Command::new(version.python())
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/py/opendht_bench.py"))
        .args([
            n.to_string(),
            secs.to_string(),
            pairs.to_string(),
            seed.to_string(),
        ])
        .output()
        .ok()?;
    parse_figures(&String::from_utf8_lossy(&out.stdout))
}

/// The same workload on dht-smol nodes, their drivers on smol's global executor
/// (`SMOL_THREADS=2`, set by [`child`]).
fn ours_smol(n: usize, secs: u64, pairs: usize, seed: u64) -> BTreeMap<&'static str, f64> {
    use smol::future::FutureExt;
    use smol::stream::StreamExt;
    smol::block_on(async move {
        let mut rng = Rng(seed);
        let mut warm: Vec<dht_smol::Handle> = Vec::new();
        for _ in 0..WARM_UP {
            let mut config = dht_smol::Config::loopback();
            config.node.network = WARM_UP_NETWORK;
            let node = dht_smol::Handle::start(config).await.expect("node");
            if let Some(first) = warm.first() {
                node.bootstrap_addr(first.local_addrs()[0]).expect("bootstrap");
            }
            warm.push(node);
        }
        for node in &warm {
            node.wait_connected(Duration::from_secs(30))
                .await
                .expect("connected");
        }
        let wk = InfoHash::get("warm-up");
        let _ = warm[1].put(wk, Value::new(0, b"warm".to_vec())).await;
        let _ = warm[2].get_all(wk).await;
        let base = rss_kib();
        let live0 = dht_tests::counting::live();
        let allocs0 = dht_tests::counting::live_allocations();
        let mut nodes: Vec<dht_smol::Handle> = Vec::new();
        for i in 0..n {
            let mut s = [3u8; 32];
            s[..8].copy_from_slice(&(seed ^ i as u64).to_le_bytes());
            let mut config = dht_smol::Config {
                seed: Some(s),
                ..dht_smol::Config::loopback()
            };
            config.node.max_req_per_sec = None;
            config.node.max_peer_req_per_sec = None;
            let node = dht_smol::Handle::start(config).await.expect("node");
            if i > 0 {
                node.bootstrap_addr(nodes[rng.below(i)].local_addrs()[0])
                    .expect("bootstrap");
            }
            nodes.push(node);
        }
        for node in &nodes {
            node.wait_connected(Duration::from_secs(30))
                .await
                .expect("connected");
        }
        smol::Timer::after(Duration::from_secs(env("SETTLE", 5))).await;
        let now = rss_kib();
        let per_node = ((now.0 - base.0) / n as f64, (now.1 - base.1) / n as f64);
        let heap_per_node = (dht_tests::counting::live() - live0) as f64 / 1024.0 / n as f64;
        let blocks_per_node = (dht_tests::counting::live_allocations() - allocs0) as f64 / n as f64;
        let ops = 200;
        let (mut put_t, mut get_t, mut first_t, mut missing) = (Vec::new(), Vec::new(), Vec::new(), 0);
        let keys: Vec<InfoHash> = (0..ops)
            .map(|i| InfoHash::get(format!("bench {seed} {i}")))
            .collect();
        for (i, k) in keys.iter().enumerate() {
            let t0 = Instant::now();
            let _ = nodes[rng.below(n)]
                .put(*k, Value::new(0, format!("v{i}").into_bytes()))
                .await;
            put_t.push(ms(t0.elapsed()));
        }
        for k in &keys {
            let t0 = Instant::now();
            let mut st = nodes[rng.below(n)].get(*k);
            let mut first = None;
            while st.next().await.is_some() {
                first.get_or_insert(t0.elapsed());
            }
            get_t.push(ms(t0.elapsed()));
            match first {
                Some(f) => first_t.push(ms(f)),
                None => missing += 1,
            }
        }
        let mut listen_t = Vec::new();
        for i in 0..50 {
            let key = InfoHash::get(format!("listen {seed} {i}"));
            let mut changes = nodes[rng.below(n)].listen(key);
            smol::Timer::after(Duration::from_millis(50)).await;
            let t0 = Instant::now();
            let putter = nodes[rng.below(n)].clone();
            let put =
                smol::spawn(
                    async move { putter.put(key, Value::new(0, format!("l{i}").into_bytes())).await },
                );
            let heard = changes
                .next()
                .or(async {
                    smol::Timer::after(Duration::from_secs(10)).await;
                    None
                })
                .await;
            listen_t.push(if heard.is_some() { ms(t0.elapsed()) } else { 10e3 });
            let _ = put.await;
        }
        let mut big_t = Vec::new();
        for i in 0..20 {
            let key = InfoHash::get(format!("big {seed} {i}"));
            let data: Vec<u8> = (0..60 * 1024).map(|_| rng.below(256) as u8).collect();
            let _ = nodes[rng.below(n)].put(key, Value::new(0, data)).await;
            let t0 = Instant::now();
            let _ = nodes[rng.below(n)].get_all(key).await;
            big_t.push(ms(t0.elapsed()));
        }
        let done = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let pick = Arc::new(Mutex::new(Rng(seed ^ 0xABCD)));
        let (cpu0, t0) = (cpu_secs(), Instant::now());
        let tasks: Vec<_> = (0..pairs)
            .map(|c| {
                let (nodes, done, stop, pick) = (nodes.clone(), done.clone(), stop.clone(), pick.clone());
                smol::spawn(async move {
                    let mut s = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        s += 1;
                        let key = InfoHash::get(format!("pair {seed} {c} {s}"));
                        let (a, b) = {
                            let mut p = pick.lock().expect("lock");
                            (p.below(nodes.len()), p.below(nodes.len()))
                        };
                        let _ = nodes[a].put(key, Value::new(0, b"p".to_vec())).await;
                        let _ = nodes[b].get_all(key).await;
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                })
            })
            .collect();
        smol::Timer::after(Duration::from_secs(secs)).await;
        stop.store(true, Ordering::Relaxed);
        let (cpu1, elapsed) = (cpu_secs(), t0.elapsed());
        let n_pairs = done.load(Ordering::Relaxed);
        for t in tasks {
            t.await;
        }
        let mut m = BTreeMap::new();
        Measured {
            put_t,
            get_t,
            first_t,
            missing,
            listen_t,
            big_t,
            n_pairs,
            elapsed,
            cpu: cpu1 - cpu0,
            per_node,
            heap_per_node,
            blocks_per_node,
        }
        .into_figures(&mut m);
        for node in &nodes {
            node.shutdown_within(Duration::from_secs(1)).await;
        }
        m
    })
}

/// Runs [`ours`] in a fresh process (this binary again, with `BENCH_CHILD`).
fn child(mode: &str) -> Option<BTreeMap<String, f64>> {
    let out = std::process::Command::new(std::env::current_exe().ok()?)
        .env("BENCH_CHILD", mode)
        .env("SMOL_THREADS", "2")
        .output()
        .ok()?;
    parse_figures(&String::from_utf8_lossy(&out.stdout))
}

/// Each figure's median over the rounds (the upper middle one of an even count).
fn median_figures(rounds: &[BTreeMap<String, f64>]) -> Option<BTreeMap<String, f64>> {
    let first = rounds.first()?;
    Some(
        first
            .keys()
            .map(|k| {
                let mut v: Vec<f64> = rounds.iter().filter_map(|m| m.get(k).copied()).collect();
                v.sort_by(f64::total_cmp);
                (k.clone(), v.get(v.len() / 2).copied().unwrap_or(f64::NAN))
            })
            .collect(),
    )
}

fn parse_figures(text: &str) -> Option<BTreeMap<String, f64>> {
    let line = text
        .lines()
        .rev()
        .find(|l| l.contains("put_p50=") || l.contains("floor_us_per_datagram="))?;
    Some(
        line.split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
            .collect(),
    )
}

fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing we need.
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let n = env("BENCH_N", 100) as usize;
    let secs = env("BENCH_SECS", 20);
    let pairs = env("BENCH_PAIRS", 16) as usize;
    let seed = env("BENCH_SEED", 1);
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let pools = env("BENCH_POOLS", 2) as usize;
    if let Ok(child) = std::env::var("BENCH_CHILD") {
        // One configuration in a process of its own, so memory figures do not mix.
        let m = if child == "floor" {
            floor()
        } else if child == "smol" {
            ours_smol(n, secs, pairs, seed)
        } else {
            ours(n, secs, pairs, seed, child.parse().unwrap_or(0))
        };
        let line: Vec<String> = m.iter().map(|(k, v)| format!("{k}={v}")).collect();
        println!("{}", line.join(" "));
        return;
    }
    let rounds = env("BENCH_ROUNDS", 3).max(1) as usize;
    let versions: Vec<Version> = if only == "ours" {
        Vec::new()
    } else {
        let wanted = std::env::var("BENCH_OPENDHT").unwrap_or_else(|_| "2.4.12,4.4.2".into());
        [Version::V2_4_12, Version::V4_4_2]
            .into_iter()
            .filter(|v| wanted.split(',').any(|w| w.trim() == v.name()))
            .collect()
    };
    println!(
        "loopback benchmark: N = {n} nodes per side, {pairs} chains for {secs} s; times in ms; \
         dht-mio on pools and OpenDHT {} in {rounds} alternating rounds (medians shown)",
        versions
            .iter()
            .map(|v| v.name())
            .collect::<Vec<_>>()
            .join(" and ")
    );
    // The machine is shared and its speed drifts: the main columns are measured in turns (the
    // order rotating from round to round: ours, 2.4.12, 4.4.2, then 2.4.12, 4.4.2, ours, ...),
    // and each figure is the median of its rounds, so a slow minute weighs on every side alike.
    let mut ours_rounds = Vec::new();
    let mut theirs_rounds: Vec<Vec<BTreeMap<String, f64>>> = vec![Vec::new(); versions.len()];
    for r in 0..rounds {
        let sides = versions.len() + 1;
        for j in 0..sides {
            match (r + j) % sides {
                0 => {
                    if only != "opendht"
                        && let Some(m) = child(&pools.to_string())
                    {
                        ours_rounds.push(m);
                    }
                }
                k => {
                    if let Some(m) = opendht(versions[k - 1], n, secs, pairs, seed) {
                        theirs_rounds[k - 1].push(m);
                    }
                }
            }
        }
    }
    let o = median_figures(&ours_rounds);
    let fl = (only != "opendht").then(|| child("floor")).flatten();
    let o1 = (only != "opendht" && pools > 0).then(|| child("0")).flatten();
    let o2 = (only != "opendht").then(|| child("smol")).flatten();
    let t: Vec<Option<BTreeMap<String, f64>>> = theirs_rounds.iter().map(|rs| median_figures(rs)).collect();
    for (v, m) in versions.iter().zip(&t) {
        if m.is_none() {
            println!(
                "(OpenDHT {} column missing: {})",
                v.name(),
                v.check()
                    .err()
                    .unwrap_or_else(|| "its harness printed no figures".into())
            );
        }
    }
    let per_round = |rs: &[BTreeMap<String, f64>]| -> Vec<String> {
        rs.iter()
            .map(|m| format!("{:.0}", m.get("pairs_per_s").copied().unwrap_or(0.0)))
            .collect()
    };
    println!(
        "pairs per second by round: mio {pools} pools [{}]{}",
        per_round(&ours_rounds).join(", "),
        versions
            .iter()
            .zip(&theirs_rounds)
            .map(|(v, rs)| format!(", OpenDHT {} [{}]", v.name(), per_round(rs).join(", ")))
            .collect::<String>()
    );
    let rows = [
        ("put done p50", "put_p50"),
        ("put done p99", "put_p99"),
        ("get done p50", "get_p50"),
        ("get done p99", "get_p99"),
        ("get first value p50", "first_p50"),
        ("gets that found nothing", "missing"),
        ("listen notify p50", "listen_p50"),
        ("60 KiB get done p50", "big_get_p50"),
        ("60 KiB get done p99", "big_get_p99"),
        ("put+get pairs per second", "pairs_per_s"),
        ("CPU ms per pair", "cpu_ms_per_pair"),
        ("RSS KiB per node", "rss_kib_per_node"),
        ("  anonymous (KiB)", "anon_kib_per_node"),
        ("  live heap (KiB)", "heap_kib_per_node"),
        ("  live heap blocks", "heap_blocks_per_node"),
        ("datagrams sent per pair", "datagrams_per_pair"),
        ("allocations per datagram", "allocs_per_datagram"),
        ("retransmissions (all)", "retransmits"),
        ("rate-limited drops (all)", "rate_limited"),
    ];
    let mut header = format!(
        "{:<26} {:>14} {:>14} {:>14}",
        "",
        format!("mio {pools} pools"),
        "mio thread/node",
        "smol 2 threads"
    );
    for v in &versions {
        header += &format!(" {:>14}", format!("OpenDHT {}", v.name()));
    }
    for v in &versions {
        header += &format!(" {:>12}", format!("ratio {}", v.name()));
    }
    println!("{header}");
    let f = |v: Option<f64>| v.map(|v| format!("{v:.3}")).unwrap_or_else(|| "-".into());
    for (label, k) in rows {
        let a = o.as_ref().and_then(|m| m.get(k)).copied();
        let a1 = o1.as_ref().and_then(|m| m.get(k)).copied();
        let a2 = o2.as_ref().and_then(|m| m.get(k)).copied();
        let bs: Vec<Option<f64>> = t
            .iter()
            .map(|m| m.as_ref().and_then(|m| m.get(k)).copied())
            .collect();
        let mut line = format!("{label:<26} {:>14} {:>14} {:>14}", f(a), f(a1), f(a2));
        for b in &bs {
            line += &format!(" {:>14}", f(*b));
        }
        for b in &bs {
            let ratio = match (a, *b) {
                (Some(a), Some(b)) if a > 0.0 && b > 0.0 => format!("{:.2}x", b / a),
                _ => "-".into(),
            };
            line += &format!(" {ratio:>12}");
        }
        println!("{line}");
    }
    println!(
        "(ratio: OpenDHT / mio on pools; above 1 is better for ours, except pairs per second, where it is the inverse)"
    );
    // The floor: what the socket calls alone cost on this machine, measured now, times our
    // datagrams per pair.
    if let (Some(fl), Some(o)) = (&fl, &o) {
        let dg = o.get("datagrams_per_pair").copied().unwrap_or(0.0);
        let ours = o.get("cpu_ms_per_pair").copied().unwrap_or(f64::NAN);
        for (label, k) in [
            ("no wake-ups", "floor_us_per_datagram"),
            ("a wake-up per datagram", "floor_wake_us_per_datagram"),
        ] {
            let us = fl.get(k).copied().unwrap_or(f64::NAN);
            println!(
                "floor, {label}: {us:.2} us CPU per 300-byte datagram (sendto + recv on loopback), x {dg:.1} datagrams per pair = {:.3} ms per pair; ours {ours:.3} ms is {:.1}x that",
                us * dg / 1e3,
                ours / (us * dg / 1e3)
            );
        }
    }
    println!(
        "(allocations per datagram count every allocation of our process in the timed phase, the bench's own included; \
         the allocation counters cost a few per cent of CPU, on our side only)"
    );
}

/// The floor of our CPU per datagram on this machine: one 300-byte datagram's `send_to` plus
/// `recv_from` over loopback, first on one thread with nothing to wait for (the socket calls
/// alone), then ping-ponged between two threads blocked in `recv_from` (a wake-up for each
/// datagram). Process CPU over datagrams, in microseconds.
fn floor() -> BTreeMap<&'static str, f64> {
    use std::net::UdpSocket;
    const ROUNDS: u32 = 200_000;
    let mut m = BTreeMap::new();
    let a = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let b = UdpSocket::bind("127.0.0.1:0").expect("bind");
    let ba = b.local_addr().expect("addr");
    let msg = [0x5au8; 300];
    let mut buf = [0u8; 1500];
    let cpu0 = cpu_secs();
    for _ in 0..ROUNDS {
        a.send_to(&msg, ba).expect("send");
        b.recv_from(&mut buf).expect("recv");
    }
    m.insert(
        "floor_us_per_datagram",
        (cpu_secs() - cpu0) / f64::from(ROUNDS) * 1e6,
    );
    // Ping-pong: each side blocks until the other's datagram wakes it.
    let pong = std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        for _ in 0..ROUNDS / 2 {
            let (len, from) = b.recv_from(&mut buf).expect("recv");
            b.send_to(buf.get(..len).unwrap_or_default(), from).expect("send");
        }
    });
    let cpu0 = cpu_secs();
    for _ in 0..ROUNDS / 2 {
        a.send_to(&msg, ba).expect("send");
        a.recv_from(&mut buf).expect("recv");
    }
    pong.join().expect("pong");
    m.insert(
        "floor_wake_us_per_datagram",
        (cpu_secs() - cpu0) / f64::from(ROUNDS) * 1e6,
    );
    m
}
