//! Behaviour pinned across restructurings: a fixed simulator scenario (several hundred nodes,
//! puts, gets and listens over a lossy network) must give the same trace hash (every datagram's
//! time, sender, receiver and bytes, chained) and the same number of jobs run. A refactoring that
//! claims "no change of behaviour" keeps both; a commit that changes behaviour on purpose updates
//! them and says why in its message.

use std::time::Duration;

use dht_proto::value::Value;
use dht_proto::{InfoHash, PutOptions};
use dht_sim::net::{Loss, NetConfig};
use dht_sim::{Op, Sim, SimConfig};

/// The trace hash and job count of [`scenario`], as of the commit that wrote this test.
const PINNED_TRACE: &str = "4aab05e9ff47d92f217f0d33be6c8c35283420e4";
const PINNED_JOBS: u64 = 223_352;

/// Returns (trace hash in hex, jobs run, a summary of what the operations saw), the nodes' work
/// run on `threads` threads (the simulator gives the same run on any number).
fn scenario(threads: usize) -> (String, u64, String) {
    let mut sim = Sim::new(SimConfig {
        seed: 16,
        nodes: 300,
        net: NetConfig {
            loss: Loss::Random(0.03),
            jitter: Duration::from_millis(10),
            ..NetConfig::default()
        },
        threads,
        ..SimConfig::default()
    });
    assert!(
        sim.bootstrap_all(Duration::from_secs(120)),
        "bootstrap did not connect every node"
    );
    sim.run_for(Duration::from_secs(30));

    let keys: Vec<InfoHash> = (0..6).map(|i| InfoHash::get(format!("pinned {i}"))).collect();
    let listens: Vec<Op> = (0..6)
        .map(|i| {
            let at = sim.random_up();
            sim.listen(at, keys[i])
        })
        .collect();
    sim.run_for(Duration::from_secs(5));

    let mut puts = Vec::new();
    for i in 0..40 {
        let from = sim.random_up();
        let opts = if i % 5 == 0 {
            PutOptions::permanent()
        } else {
            PutOptions::default()
        };
        puts.push((
            i % 6,
            sim.put(
                from,
                keys[i % 6],
                Value::new(0, format!("v{i}").into_bytes()),
                opts,
            ),
        ));
    }
    let ops: Vec<Op> = puts.iter().map(|p| p.1).collect();
    assert!(
        sim.run_until_done(&ops, Duration::from_secs(120)),
        "puts did not finish"
    );

    let gets: Vec<Op> = (0..30)
        .map(|i| {
            let at = sim.random_up();
            sim.get(at, keys[i % 6])
        })
        .collect();
    assert!(
        sim.run_until_done(&gets, Duration::from_secs(120)),
        "gets did not finish"
    );
    sim.run_for(Duration::from_secs(11 * 60));

    let mut summary = String::new();
    for g in &gets {
        let r = sim.op(*g).expect("get recorded");
        summary.push_str(&format!("g{} ", r.found.len()));
    }
    for l in &listens {
        let r = sim.op(*l).expect("listen recorded");
        summary.push_str(&format!("l{}/{} ", r.found.len(), r.expired.len()));
    }
    (format!("{}", sim.trace()), sim.processed(), summary)
}

#[test]
fn the_pinned_scenario_keeps_its_trace_hash_and_job_count() {
    let (trace, jobs, summary) = scenario(1);
    println!("trace {trace} jobs {jobs}\n{summary}");
    assert_eq!(
        (trace.as_str(), jobs),
        (PINNED_TRACE, PINNED_JOBS),
        "behaviour changed: if on purpose, update the pinned values and say why in the commit"
    );
}

/// The simulator's parallel windows (`SimConfig::threads`) change nothing of the run.
#[test]
fn the_pinned_scenario_on_two_threads_keeps_its_trace_hash_and_job_count() {
    let (trace, jobs, _) = scenario(2);
    assert_eq!((trace.as_str(), jobs), (PINNED_TRACE, PINNED_JOBS));
}
