//! Where puts land and what they cost, in the simulator: the quality side of the search rules
//! that the loopback benchmark's throughput figure trades against.
//!
//! Two networks of 100 nodes (latency 50 µs to 2 ms, no loss): a *young* one, whose puts start
//! half a second after every node bootstrapped at once (routing tables still thin), and a
//! *settled* one, a minute after a staggered bootstrap. In each, `PUTS` (default 1000) pairs:
//! a put of a fresh key from a random node, then a get of it from another. Prints, per network,
//! how many puts reached all 8 of the true closest nodes (by XOR over every live node's id), the
//! average of those 8 that hold the value, the gets that found nothing, and the datagrams per
//! pair. `cargo bench -p dht-tests --bench placement` (env: `PUTS`, `SEEDS`, default 3;
//! `DETAILS=1` also prints, per network, how many searches' speculative requests paid (see
//! `search::Speculation`), and each get that found nothing).

use std::time::Duration;

use dht_proto::value::Value;
use dht_proto::{InfoHash, PutOptions};
use dht_sim::net::{LinkLatency, NetConfig};
use dht_sim::{Sim, SimConfig};

const N: usize = 100;

fn network(seed: u64, young: bool) -> Sim {
    let mut sim = Sim::new(SimConfig {
        seed,
        nodes: N,
        net: NetConfig {
            latency: LinkLatency::Uniform(Duration::from_micros(50), Duration::from_millis(2)),
            ..NetConfig::default()
        },
        ..SimConfig::default()
    });
    if young {
        assert!(
            sim.bootstrap_at_once(Duration::from_secs(60)),
            "bootstrap did not connect"
        );
        sim.run_for(Duration::from_millis(500));
    } else {
        assert!(
            sim.bootstrap_all(Duration::from_secs(120)),
            "bootstrap did not connect"
        );
        sim.run_for(Duration::from_secs(60));
    }
    sim
}

/// (puts on all 8 true closest, holders among the 8 summed, gets that missed, datagrams).
fn measure(seed: u64, young: bool, puts: usize) -> (usize, usize, usize, u64) {
    let mut sim = network(seed, young);
    let ids: Vec<(usize, InfoHash)> = (0..N)
        .filter_map(|i| sim.with(i, |n, _| n.node_id()).map(|id| (i, id)))
        .collect();
    let (mut all8, mut held, mut missed) = (0, 0, 0);
    let sent0 = sim.traffic().0;
    for p in 0..puts {
        let key = InfoHash::get(format!("placement {seed} {p}"));
        let from = sim.random_up();
        let op = sim.put(from, key, Value::new(0, b"v".to_vec()), PutOptions::default());
        assert!(
            sim.run_until_done(&[op], Duration::from_secs(60)),
            "put did not finish"
        );
        let Some(vid) = sim.op(op).and_then(|r| r.vid) else {
            continue;
        };
        let mut closest = ids.clone();
        closest.sort_by(|a, b| key.xor_cmp(&a.1, &b.1));
        let holders = closest
            .iter()
            .take(8)
            .filter(|(i, _)| {
                sim.with(*i, |n, _| n.local_values(&key).iter().any(|v| v.id == vid))
                    .unwrap_or(false)
            })
            .count();
        held += holders;
        all8 += usize::from(holders == 8);
        let at = sim.random_up_except(from);
        let g = sim.get(at, key);
        assert!(
            sim.run_until_done(&[g], Duration::from_secs(60)),
            "get did not finish"
        );
        if !sim.found(g, vid) {
            missed += 1;
            if std::env::var_os("DETAILS").is_some() {
                eprintln!("seed {seed} young {young}: pair {p} missed; {holders} of the 8 closest hold it");
            }
        }
    }
    if std::env::var_os("DETAILS").is_some() {
        let (mut checked, mut paid) = (0, 0);
        for i in 0..N {
            if let Some(s) = sim.with(i, |n, _| n.stats()) {
                checked += s.speculative_searches;
                paid += s.speculation_paid;
            }
        }
        eprintln!("seed {seed} young {young}: {paid} of {checked} speculating searches paid");
    }
    (all8, held, missed, sim.traffic().0 - sent0)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let env = |k: &str, d: usize| std::env::var(k).ok().and_then(|v| v.parse().ok()).unwrap_or(d);
    let puts = env("PUTS", 1000);
    let seeds = env("SEEDS", 3) as u64;
    for young in [true, false] {
        let (mut all8, mut held, mut missed, mut sent) = (0, 0, 0, 0);
        for seed in 1..=seeds {
            let m = measure(seed, young, puts);
            all8 += m.0;
            held += m.1;
            missed += m.2;
            sent += m.3;
        }
        let total = puts * seeds as usize;
        println!(
            "{:<8} {} pairs: {:.1} per 1000 puts on all 8 true closest, {:.3} of 8 held on average, {} gets found nothing, {:.1} datagrams per pair",
            if young { "young" } else { "settled" },
            total,
            all8 as f64 * 1000.0 / total as f64,
            held as f64 / total as f64,
            missed,
            sent as f64 / total as f64
        );
    }
}
