//! The simulator's parallel windows (`SimConfig::threads`): the same seed gives the same run
//! (trace hash, jobs run, datagrams delivered, every operation's outcome) on one thread and on
//! several. (The pinned scenario on two threads is in `pinned.rs`.)

use std::collections::BTreeSet;
use std::time::Duration;

use dht_proto::value::Value;
use dht_proto::{InfoHash, PutOptions};
use dht_sim::net::{LinkLatency, Loss, NetConfig};
use dht_sim::{Misbehaviour, Op, Sim, SimConfig};

/// What a run did: trace hash, jobs, deliveries, and each operation's outcome.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    trace: String,
    jobs: u64,
    delivered: u64,
    /// Offered to the network; and sent and received, summed over the hosts.
    traffic: (u64, u64),
    hosts: (u64, u64, u64, u64),
    ops: Vec<String>,
}

fn outcome(sim: &Sim) -> Outcome {
    Outcome {
        trace: format!("{}", sim.trace()),
        jobs: sim.processed(),
        delivered: sim.delivered(),
        traffic: sim.traffic(),
        hosts: sim.hosts.iter().fold((0, 0, 0, 0), |a, h| {
            let t = h.traffic;
            (
                a.0 + t.sent,
                a.1 + t.sent_bytes,
                a.2 + t.received,
                a.3 + t.received_bytes,
            )
        }),
        ops: sim
            .ops()
            .map(|(op, r)| {
                format!(
                    "{op:?} done {:?} found {} expired {} outcome {:?} hops {:?}",
                    r.done,
                    r.found.len(),
                    r.expired.len(),
                    r.outcome,
                    r.hops_first
                )
            })
            .collect(),
    }
}

/// A few hundred nodes over a lossy, jittery network with links of different latencies:
/// bootstrap, listens, puts, gets, churn, a crash and a restart, and a few colluding Sybils.
fn mixed(threads: usize) -> Outcome {
    let mut sim = Sim::new(SimConfig {
        seed: 21,
        nodes: 250,
        net: NetConfig {
            latency: LinkLatency::Uniform(Duration::from_millis(20), Duration::from_millis(80)),
            loss: Loss::Random(0.02),
            jitter: Duration::from_millis(15),
            duplicate: 0.01,
            reorder: 0.02,
            ..NetConfig::default()
        },
        threads,
        ..SimConfig::default()
    });
    for s in 0..3 {
        sim.add_host_on(7 + s, None, Misbehaviour::SYBIL);
    }
    assert!(sim.bootstrap_all(Duration::from_secs(120)), "bootstrap");
    sim.run_for(Duration::from_secs(20));
    let keys: Vec<InfoHash> = (0..8).map(|i| InfoHash::get(format!("threads {i}"))).collect();
    let mut ops: Vec<Op> = Vec::new();
    for k in &keys {
        let at = sim.random_up();
        ops.push(sim.listen(at, *k));
    }
    sim.run_for(Duration::from_secs(3));
    let mut puts = Vec::new();
    for i in 0..40 {
        let from = sim.random_up();
        puts.push(sim.put(
            from,
            keys[i % keys.len()],
            Value::new(0, format!("value {i}").into_bytes()),
            PutOptions::default(),
        ));
        if i % 10 == 9 {
            sim.churn(3, &BTreeSet::new());
            sim.run_for(Duration::from_millis(700));
        }
    }
    // Churn may have taken some putters away: their puts never end.
    let live: Vec<Op> = puts.iter().copied().filter(|o| sim.is_up(o.0)).collect();
    assert!(live.len() >= 30, "most putters stay");
    assert!(sim.run_until_done(&live, Duration::from_secs(120)), "puts");
    let victim = sim.random_up();
    let kept = sim.crash(victim);
    let gets: Vec<Op> = (0..40)
        .map(|i| {
            let at = sim.random_up();
            sim.get(at, keys[i % keys.len()])
        })
        .collect();
    sim.run_for(Duration::from_secs(2));
    sim.restart(victim, kept);
    assert!(sim.run_until_done(&gets, Duration::from_secs(120)), "gets");
    sim.churn_over(10, Duration::from_secs(30), &BTreeSet::new());
    sim.run_for(Duration::from_secs(60));
    ops.extend(puts);
    ops.extend(gets);
    outcome(&sim)
}

#[test]
fn two_threads_run_the_same_mixed_scenario_as_one() {
    let one = mixed(1);
    let two = mixed(2);
    assert!(one.delivered > 50_000, "a busy run: {} deliveries", one.delivered);
    assert!(
        one.ops.iter().filter(|o| !o.contains("found 0 ")).count() >= 40,
        "the gets and listens found values"
    );
    assert_eq!(one, two);
    assert_eq!(mixed(3), one);
}
