//! Resilience figures of issue 20 on the simulator (1,000 nodes, 50 ms one way):
//!
//! - get-done latency in RTTs before a crash, right after 20 % of the nodes crash at once, and
//!   five virtual minutes later; and at 30 % random loss;
//! - complete gets under a slow uplink: 500 values of 1 KiB on one key, every node with a
//!   10 Mbit/s uplink, 1, 10 and 50 gets at once from different nodes: how many end `ok` with
//!   fewer than 500 values.
//!
//! `tests/tests/resilience.rs` runs the same scenarios ([`dht_sim::scenario`]) and asserts on them.
//!
//! ```text
//! cargo run --release -p dht-sim --example resilience -- [seed] [nodes] [all|latency|complete]
//! ```

use std::time::Duration;

use dht_proto::InfoHash;
use dht_sim::net::Loss;
use dht_sim::scenario::{self, Latency, quantile};
use dht_sim::{Op, Sim};

const GETS: usize = 200;

fn network(seed: u64, nodes: usize, bandwidth: Option<u64>) -> Sim {
    scenario::settled(
        seed,
        nodes,
        scenario::fixed_latency(Duration::from_millis(50), bandwidth),
    )
    .unwrap_or_else(|| panic!("seed {seed}: the {nodes} nodes did not all connect"))
}

fn print(seed: u64, what: &str, l: &Latency) {
    println!(
        "seed {seed} {what:<14} get-done p50 {:5.1} RTT  p99 {:5.1} RTT  ok {:.3}",
        l.p50,
        l.p99,
        (l.total - l.failed) as f64 / l.total.max(1) as f64
    );
}

fn latency(seed: u64, nodes: usize) {
    let mut sim = network(seed, nodes, None);
    let keys = scenario::put_small_values(&mut sim, 100).unwrap_or_default();
    print(seed, "steady:", &scenario::get_latency(&mut sim, &keys, GETS));
    for _ in 0..nodes / 5 {
        let i = sim.random_up();
        sim.crash(i);
    }
    print(seed, "crash 20%:", &scenario::get_latency(&mut sim, &keys, GETS));
    sim.run_for(Duration::from_secs(300));
    print(
        seed,
        "crash +5 min:",
        &scenario::get_latency(&mut sim, &keys, GETS),
    );

    let mut sim = network(seed, nodes, None);
    let keys = scenario::put_small_values(&mut sim, 100).unwrap_or_default();
    let mut lossy = scenario::fixed_latency(Duration::from_millis(50), None);
    lossy.loss = Loss::Random(0.3);
    sim.set_net(lossy, "loss 30%");
    print(seed, "loss 30%:", &scenario::get_latency(&mut sim, &keys, GETS));
}

fn complete(seed: u64, nodes: usize) {
    // 10 Mbit/s uplinks.
    let mut sim = network(seed, nodes, Some(1_250_000));
    let key = InfoHash::get("resilience: 500 values");
    let stored = scenario::put_many_values(&mut sim, key, 500, 1024);
    sim.run_for(Duration::from_secs(5));
    for at_once in [1usize, 10, 50] {
        let ops: Vec<Op> = scenario::distinct_hosts(&mut sim, at_once)
            .into_iter()
            .map(|h| sim.get(h, key))
            .collect();
        let t0 = sim.now;
        let all = sim.run_until_done(&ops, Duration::from_secs(600));
        let batch = (sim.now - t0).as_secs_f64();
        sim.run_for(Duration::from_secs(30));
        let records: Vec<_> = ops.iter().filter_map(|o| sim.op(*o)).collect();
        let full = records.iter().filter(|r| r.ok && r.found.len() == 500).count();
        let short_ok = records.iter().filter(|r| r.ok && r.found.len() < 500).count();
        let failed = records.iter().filter(|r| !r.ok).count();
        let fewest = records.iter().map(|r| r.found.len()).min().unwrap_or(0);
        let lat: Vec<f64> = records
            .iter()
            .filter_map(|r| r.done.map(|d| (d - r.start).as_secs_f64()))
            .collect();
        println!(
            "seed {seed} 500 x 1 KiB (all stored {stored}), 10 Mbit/s, {at_once:2} gets at once: all done {all}, \
             ok with all 500 {full}, ok with fewer {short_ok}, not ok {failed}, fewest values {fewest}, \
             done p50 {:.1} s max {:.1} s (batch {batch:.1} s)",
            quantile(&lat, 0.5),
            quantile(&lat, 1.0)
        );
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let seed = args.next().and_then(|s| s.parse().ok()).unwrap_or(1);
    let nodes = args.next().and_then(|s| s.parse().ok()).unwrap_or(1000);
    let what = args.next().unwrap_or_else(|| "all".into());
    if what == "all" || what == "latency" {
        latency(seed, nodes);
    }
    if what == "all" || what == "complete" {
        complete(seed, nodes);
    }
}
