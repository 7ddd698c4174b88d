//! Sybil placement (issue 20, point 4): twenty nodes on one /24, with ids chosen right next to
//! a key, that acknowledge puts but keep nothing, answer finds with one another only and never
//! answer gets. They take part in a put, then drop out together. With the subnet limits
//! (`Config::max_bucket_nodes_per_subnet`, `max_search_nodes_per_subnet`) the put also reached
//! honest storers and the value is still found; without them the Sybils were all its storers
//! and it is gone until its putter's next refresh.

use std::time::Duration;

use dht_proto::value::Value;
use dht_proto::{Config, InfoHash, PutOptions};
use dht_sim::{Misbehaviour, Op, Sim, SimConfig, run_seeds};

const HONEST: usize = 200;
const SYBILS: usize = 20;
const GETS: usize = 200;

/// Runs the scenario; returns (gets that found the value, gets).
fn scenario(seed: u64, limits: bool) -> (usize, usize) {
    let mut node = Config::default();
    if !limits {
        node.max_bucket_nodes_per_subnet = None;
        node.max_search_nodes_per_subnet = None;
    }
    let mut sim = Sim::new(SimConfig {
        seed,
        nodes: HONEST,
        node: node.clone(),
        ..SimConfig::default()
    });
    let key = InfoHash::get(format!("sybil target {seed}"));
    // Ids surrounding the key: its first 18 bytes, the last two chosen on either side of it.
    let sybils: Vec<usize> = (0..SYBILS)
        .map(|i| {
            let mut id = key;
            let d = (i as u16 + 1).to_be_bytes();
            id.0[18] ^= d[0];
            id.0[19] ^= d[1];
            let mut config = node.clone();
            config.node_id = Some(id);
            sim.add_host_on(60_000, Some(config), Misbehaviour::SYBIL)
        })
        .collect();
    assert!(
        sim.bootstrap_all(Duration::from_secs(120)),
        "bootstrap did not connect every node"
    );
    sim.run_for(Duration::from_secs(60));

    let putter = sim.random_up() % HONEST;
    let put = sim.put(
        putter,
        key,
        Value::new(0, b"survives".to_vec()),
        PutOptions::default(),
    );
    assert!(
        sim.run_until_done(&[put], Duration::from_secs(60)),
        "the put did not finish"
    );
    let vid = sim.op(put).and_then(|r| r.vid).expect("the put has a value id");
    sim.run_for(Duration::from_secs(5));

    for s in &sybils {
        sim.crash(*s);
    }
    sim.run_for(Duration::from_secs(5));
    let gets: Vec<Op> = (0..GETS)
        .map(|i| {
            let at = (putter + 1 + i) % HONEST;
            sim.get(at, key)
        })
        .collect();
    assert!(
        sim.run_until_done(&gets, Duration::from_secs(120)),
        "gets did not finish"
    );
    let found = gets.iter().filter(|g| sim.found(**g, vid)).count();
    (found, GETS)
}

#[test]
fn with_subnet_limits_a_value_survives_twenty_sybils_dropping_out() {
    run_seeds("sybil", &[1, 2, 3], |seed| {
        let (found, all) = scenario(seed, true);
        let (found_open, _) = scenario(seed, false);
        eprintln!("seed {seed}: found {found}/{all} with subnet limits, {found_open}/{all} without");
        assert!(found * 100 >= all * 99, "with limits: found {found} of {all}");
        assert!(
            found_open * 2 < all,
            "without limits the Sybils should have been the only storers: found {found_open} of {all}"
        );
    });
}
