//! Put and get latency of the same C program, `examples/dhtcnode.c`, built against our library
//! and against Debian's OpenDHT 2.4.12 C binding (`libopendht-c-dev`), side by side in one run.
//!
//! Each measurement is a fresh pair of `dhtcnode` processes on loopback: the second bootstraps
//! from the first and puts once to warm up, then the first runs its `b N` command (N times: put a
//! value under a fresh random key and wait for the put's done callback, then get that key and wait
//! for the get's; it prints the median and p90 of each). The machine is shared, so the two
//! libraries alternate over several rounds (which goes first alternates too), and each figure of
//! the summary is the median of that figure over the rounds.
//! `failed` counts the pairs whose put reported failure or whose get found no value.
//!
//! Run: `cargo bench -p dht-c --bench c_latency`. `DHT_BENCH_ROUNDS` (default 5) rounds of
//! `DHT_BENCH_REPEATS` (default 200) put/get pairs per library. Without `libopendht-c-dev` only
//! ours is measured (it says why; with `DHT_REQUIRE_OPENDHT=1` it fails instead).

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};

use common::{Lib, Node, example, network, theirs_available};

/// One library's figures from one `b N` run, in ms.
#[derive(Clone, Copy, Debug)]
struct Figures {
    put_p50: f64,
    put_p90: f64,
    get_p50: f64,
    get_p90: f64,
    failed: u32,
}

fn env_or(name: &str, default: usize) -> usize {
    match std::env::var(name) {
        Ok(s) => s
            .parse()
            .unwrap_or_else(|_| panic!("{name}={s:?} is not a count")),
        Err(_) => default,
    }
}

/// `key=value` of a `bench put|get ...` line.
fn field(line: &str, key: &str) -> String {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix(key)?.strip_prefix('='))
        .unwrap_or_else(|| panic!("no {key}= in {line:?}"))
        .to_string()
}

/// A fresh pair of nodes running `bin`; the first measures `repeats` put/get pairs.
fn measure(name: &str, bin: &Path, repeats: usize) -> Figures {
    let net = network();
    let mut a = Node::start(name, bin, &["-n".into(), net.clone()]);
    let boot = format!("127.0.0.1:{}", a.port);
    let mut b = Node::start(name, bin, &["-n".into(), net, "-b".into(), boot]);
    // The two know each other once a put is acknowledged.
    b.put_ok("bench-warm-up", "x");
    a.send(&format!("b {repeats} 10000"));
    let put = a.expect(
        |l| l.starts_with("bench put") || l.starts_with("bench timeout"),
        "bench put",
    );
    assert!(put.starts_with("bench put"), "{name}: {put}");
    let get = a.expect(|l| l.starts_with("bench get"), "bench get");
    a.quit();
    b.quit();
    let ms = |line: &str, key: &str| field(line, key).parse::<f64>().unwrap();
    let failed: u32 = field(&put, "failed").parse().unwrap();
    Figures {
        put_p50: ms(&put, "median_ms"),
        put_p90: ms(&put, "p90_ms"),
        get_p50: ms(&get, "median_ms"),
        get_p90: ms(&get, "p90_ms"),
        failed,
    }
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn main() {
    let rounds = env_or("DHT_BENCH_ROUNDS", 5).max(1);
    let repeats = env_or("DHT_BENCH_REPEATS", 200).max(1);
    let mut libs: Vec<(&str, PathBuf)> = vec![("ours", example(Lib::OursShared, false))];
    if theirs_available("c_latency: OpenDHT's side") {
        libs.push(("opendht", example(Lib::Theirs, false)));
    }
    println!(
        "examples/dhtcnode.c, two processes on loopback, {rounds} rounds x {repeats} put+get pairs per library; load average {}",
        load()
    );
    println!(
        "{:>5}  {:8}  {:>9}  {:>9}  {:>9}  {:>9}  {:>6}",
        "round", "library", "put p50", "put p90", "get p50", "get p90", "failed"
    );
    let mut all: Vec<Vec<Figures>> = vec![Vec::new(); libs.len()];
    for round in 0..rounds {
        for k in 0..libs.len() {
            let i = (k + round) % libs.len();
            let (name, bin) = &libs[i];
            let f = measure(name, bin, repeats);
            println!(
                "{:>5}  {name:8}  {:>9.3}  {:>9.3}  {:>9.3}  {:>9.3}  {:>6}",
                round + 1,
                f.put_p50,
                f.put_p90,
                f.get_p50,
                f.get_p90,
                f.failed
            );
            all[i].push(f);
        }
    }
    println!("\nmedian of the {rounds} rounds (ms); load average {}", load());
    println!(
        "{:8}  {:>9}  {:>9}  {:>9}  {:>9}  {:>6}",
        "library", "put p50", "put p90", "get p50", "get p90", "failed"
    );
    for ((name, _), figs) in libs.iter().zip(&all) {
        let m = |g: fn(&Figures) -> f64| median(figs.iter().map(g).collect());
        println!(
            "{name:8}  {:>9.3}  {:>9.3}  {:>9.3}  {:>9.3}  {:>6}",
            m(|f| f.put_p50),
            m(|f| f.put_p90),
            m(|f| f.get_p50),
            m(|f| f.get_p90),
            figs.iter().map(|f| f.failed).sum::<u32>()
        );
    }
}
