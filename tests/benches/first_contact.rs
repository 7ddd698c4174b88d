//! First-contact get latency with anti-amplification on (the default, factor 2) and off, side
//! by side: in the simulator (virtual time, so the figures do not depend on the machine's load),
//! 300 nodes at 50 ms one way; keys holding one small value (100 bytes) or 8 values of 8 KB.
//! Each get comes from a node that has just joined, so the storers have never had a round trip
//! with it. Prints, for each case, the median and p90 time to the first value and to the get's
//! end, in round trips.
//!
//! `cargo bench -p dht-tests --bench first_contact`

use std::time::Duration;

use dht_proto::value::Value;
use dht_proto::{Config, Family, InfoHash, PutOptions, Status};
use dht_sim::net::{LinkLatency, NetConfig};
use dht_sim::{Op, Sim, SimConfig};

const NODES: usize = 300;
const SAMPLES: usize = 40;

fn network(seed: u64, factor: Option<u32>) -> Sim {
    let mut node = Config::default();
    node.amplification_factor = factor;
    let mut sim = Sim::new(SimConfig {
        seed,
        nodes: NODES,
        net: NetConfig {
            latency: LinkLatency::Fixed(Duration::from_millis(50)),
            ..NetConfig::default()
        },
        node,
        keep_events: false,
        ..SimConfig::default()
    });
    assert!(sim.bootstrap_all(Duration::from_secs(600)), "bootstrap");
    sim.run_for(Duration::from_secs(60));
    sim
}

/// `n` keys, each with `values` values of `size` bytes.
fn put_keys(sim: &mut Sim, tag: &str, n: usize, values: u64, size: usize) -> Vec<InfoHash> {
    let mut keys = Vec::new();
    let mut ops = Vec::new();
    for i in 0..n {
        let key = InfoHash::get(format!("first contact {tag} {i}"));
        for v in 1..=values {
            let from = sim.random_up();
            ops.push(sim.put(
                from,
                key,
                Value::new(v, vec![v as u8; size]),
                PutOptions::default(),
            ));
        }
        keys.push(key);
    }
    assert!(sim.run_until_done(&ops, Duration::from_secs(300)), "puts");
    keys
}

/// Gets of `keys` (round robin), each from a node that joins just before: (first value, done)
/// in RTTs.
fn first_contact_gets(sim: &mut Sim, keys: &[InfoHash], want: usize) -> Vec<(f64, f64)> {
    let rtt = sim.config().net.mean_rtt().as_secs_f64();
    let mut out = Vec::new();
    for i in 0..SAMPLES {
        let h = sim.add_host();
        sim.bootstrap(h, 3);
        assert!(
            sim.run_until(Duration::from_secs(60), |s| s.status(h, Family::V4)
                == Some(Status::Connected)),
            "a new node did not connect"
        );
        let op: Op = sim.get(h, keys[i % keys.len()]);
        assert!(sim.run_until_done(&[op], Duration::from_secs(120)), "get");
        let r = sim.op(op).expect("recorded");
        assert!(
            r.ok && r.found.len() == want,
            "a get found {} of {want}",
            r.found.len()
        );
        let first = r.first_value.expect("a value") - r.start;
        let done = r.done.expect("done") - r.start;
        out.push((first.as_secs_f64() / rtt, done.as_secs_f64() / rtt));
    }
    out
}

fn percentile(mut v: Vec<f64>, p: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)]
}

fn main() {
    println!("first-contact gets, {NODES} nodes, 50 ms one way, {SAMPLES} gets per case (RTT)");
    println!(
        "{:<22} {:>8} {:>14} {:>14} {:>14} {:>14}",
        "case", "factor", "first p50", "first p90", "done p50", "done p90"
    );
    for (tag, values, size) in [("1 x 100 B", 1u64, 100usize), ("8 x 8 KB", 8, 8000)] {
        for factor in [Some(2), None] {
            let mut sim = network(7, factor);
            let keys = put_keys(&mut sim, tag, 10, values, size);
            let lat = first_contact_gets(&mut sim, &keys, values as usize);
            let first: Vec<f64> = lat.iter().map(|l| l.0).collect();
            let done: Vec<f64> = lat.iter().map(|l| l.1).collect();
            println!(
                "{:<22} {:>8} {:>14.2} {:>14.2} {:>14.2} {:>14.2}",
                tag,
                factor.map_or("off".to_string(), |f| f.to_string()),
                percentile(first.clone(), 0.5),
                percentile(first, 0.9),
                percentile(done.clone(), 0.5),
                percentile(done, 0.9)
            );
        }
    }
}
