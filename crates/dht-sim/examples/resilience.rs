//! Resilience figures of issue 20 on the simulator (1,000 nodes, 50 ms one way):
//!
//! - get-done latency in RTTs before a crash, right after 20 % of the nodes crash at once, and
//!   five virtual minutes later; and at 30 % random loss;
//! - complete gets under a slow uplink: 500 values of 1 KiB on one key, every node with a
//!   10 Mbit/s uplink, 10 and 50 gets at once from different nodes: how many end `ok` with
//!   fewer than 500 values.
//!
//! ```text
//! cargo run --release -p dht-sim --example resilience -- [seed] [nodes]
//! ```

// Indices below are into vectors this program built, never into received bytes.
#![allow(clippy::indexing_slicing)]

use std::time::Duration;

use dht_proto::value::Value;
use dht_proto::{InfoHash, PutOptions};
use dht_sim::net::{LinkLatency, Loss, NetConfig};
use dht_sim::{Op, Sim, SimConfig};

const GETS: usize = 200;

fn pct(mut v: Vec<f64>, p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)]
}

fn net(bandwidth: Option<u64>) -> NetConfig {
    NetConfig {
        latency: LinkLatency::Fixed(Duration::from_millis(50)),
        bandwidth,
        ..NetConfig::default()
    }
}

fn network(seed: u64, nodes: usize, bandwidth: Option<u64>) -> Sim {
    let mut sim = Sim::new(SimConfig {
        seed,
        nodes,
        net: net(bandwidth),
        keep_events: false,
        ..SimConfig::default()
    });
    assert!(sim.bootstrap_all(Duration::from_secs(600)), "bootstrap");
    sim.run_for(Duration::from_secs(60));
    sim
}

/// `GETS` gets of `keys` from random live nodes, 20 at a time: (p50, p99 in RTT, success share).
fn gets(sim: &mut Sim, keys: &[(InfoHash, usize)]) -> (f64, f64, f64) {
    let rtt = sim.config().net.mean_rtt().as_secs_f64();
    let mut ops = Vec::new();
    for chunk in 0..GETS / 20 {
        let mut batch = Vec::new();
        for i in 0..20 {
            let (key, _) = keys[(chunk * 20 + i) % keys.len()];
            let at = sim.random_up();
            batch.push(sim.get(at, key));
        }
        sim.run_until_done(&batch, Duration::from_secs(120));
        ops.extend(batch);
    }
    let mut lat = Vec::new();
    let mut ok = 0;
    for o in &ops {
        let Some(r) = sim.op(*o) else { continue };
        if let Some(d) = r.done {
            lat.push((d - r.start).as_secs_f64() / rtt);
            ok += usize::from(r.ok && !r.found.is_empty());
        }
    }
    (
        pct(lat.clone(), 0.5),
        pct(lat, 0.99),
        ok as f64 / ops.len() as f64,
    )
}

fn put_keys(sim: &mut Sim, n: usize) -> Vec<(InfoHash, usize)> {
    let mut keys = Vec::new();
    let mut ops = Vec::new();
    for i in 0..n {
        let key = InfoHash::get(format!("resilience key {i}"));
        let from = sim.random_up();
        ops.push(sim.put(
            from,
            key,
            Value::new(0, format!("value {i}").into_bytes()),
            PutOptions::default(),
        ));
        keys.push((key, from));
    }
    sim.run_until_done(&ops, Duration::from_secs(120));
    keys
}

fn latency(seed: u64, nodes: usize) {
    let mut sim = network(seed, nodes, None);
    let keys = put_keys(&mut sim, 100);
    let (p50, p99, s) = gets(&mut sim, &keys);
    println!("seed {seed} steady:        get-done p50 {p50:5.1} RTT  p99 {p99:5.1} RTT  ok {s:.3}");
    let n = nodes / 5;
    for _ in 0..n {
        let i = sim.random_up();
        sim.crash(i);
    }
    let (p50, p99, s) = gets(&mut sim, &keys);
    println!("seed {seed} crash 20%:     get-done p50 {p50:5.1} RTT  p99 {p99:5.1} RTT  ok {s:.3}");
    sim.run_for(Duration::from_secs(300));
    let (p50, p99, s) = gets(&mut sim, &keys);
    println!("seed {seed} crash +5 min:  get-done p50 {p50:5.1} RTT  p99 {p99:5.1} RTT  ok {s:.3}");

    let mut sim = network(seed, nodes, None);
    let keys = put_keys(&mut sim, 100);
    let mut lossy = net(None);
    lossy.loss = Loss::Random(0.3);
    sim.set_net(lossy, "loss 30%");
    let (p50, p99, s) = gets(&mut sim, &keys);
    println!("seed {seed} loss 30%:      get-done p50 {p50:5.1} RTT  p99 {p99:5.1} RTT  ok {s:.3}");
}

fn complete(seed: u64, nodes: usize) {
    // 10 Mbit/s uplinks.
    let mut sim = network(seed, nodes, Some(1_250_000));
    let key = InfoHash::get("resilience: 500 values");
    let mut puts: Vec<Op> = Vec::new();
    for i in 0..500u64 {
        let from = sim.random_up();
        let mut data = vec![0u8; 1024];
        data[..8].copy_from_slice(&i.to_be_bytes());
        puts.push(sim.put(from, key, Value::new(i + 1, data), PutOptions::default()));
        if puts.len().is_multiple_of(50) {
            sim.run_until_done(&puts, Duration::from_secs(120));
        }
    }
    sim.run_until_done(&puts, Duration::from_secs(120));
    sim.run_for(Duration::from_secs(5));
    for at_once in [1usize, 10, 50] {
        let mut ops = Vec::new();
        for _ in 0..at_once {
            let at = sim.random_up();
            ops.push(sim.get(at, key));
        }
        let t0 = sim.now;
        let all = sim.run_until_done(&ops, Duration::from_secs(600));
        let wall = (sim.now - t0).as_secs_f64();
        sim.run_for(Duration::from_secs(30));
        let short_ok = ops
            .iter()
            .filter(|o| sim.op(**o).is_some_and(|r| r.ok && r.found.len() < 500))
            .count();
        let full = ops
            .iter()
            .filter(|o| sim.op(**o).is_some_and(|r| r.ok && r.found.len() == 500))
            .count();
        let failed = ops.iter().filter(|o| sim.op(**o).is_some_and(|r| !r.ok)).count();
        let fewest = ops
            .iter()
            .filter_map(|o| sim.op(*o).map(|r| r.found.len()))
            .min()
            .unwrap_or(0);
        let lat: Vec<f64> = ops
            .iter()
            .filter_map(|o| {
                sim.op(*o)
                    .and_then(|r| r.done.map(|d| (d - r.start).as_secs_f64()))
            })
            .collect();
        println!(
            "seed {seed} 500 x 1 KiB, 10 Mbit/s, {at_once:2} gets at once: all done {all}, ok with all 500 {full}, \
             ok with fewer {short_ok}, not ok {failed}, fewest values {fewest}, done p50 {:.1} s max {:.1} s (batch {wall:.1} s)",
            pct(lat.clone(), 0.5),
            pct(lat, 1.0)
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
