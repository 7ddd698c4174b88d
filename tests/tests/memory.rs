//! Heap held by idle nodes, counted by a counting allocator (deterministic: the simulated
//! network runs on a virtual clock). The figures the README reports come from
//! `cargo bench -p dht-tests --bench memory` and `--bench loopback`; this test keeps them from
//! sliding back.

use std::time::Duration;

use dht_proto::Node;
use dht_sim::net::{LinkLatency, NetConfig};
use dht_sim::{Sim, SimConfig, Stack};
use dht_tests::counting::{Counting, INSTRUMENTED_SYSTEM, live};

#[global_allocator]
static A: Counting = &INSTRUMENTED_SYSTEM;

/// Heap each node frees when dropped, in bytes, after `secs` of virtual time.
fn idle_heap_per_node(stack: Stack, secs: u64) -> f64 {
    let mut sim = idle_network(stack);
    sim.run_for(Duration::from_secs(secs));
    let mut nodes: Vec<Node> = Vec::with_capacity(100);
    nodes.extend((0..100).filter_map(|i| sim.crash(i)));
    let before = live();
    drop(nodes);
    (before - live()) as f64 / 100.0
}

/// 100 nodes, 10 ms apart, each bootstrapping from host 0 (in every family of `stack`).
fn idle_network(stack: Stack) -> Sim {
    let mut sim = Sim::new(SimConfig {
        seed: 11,
        nodes: 100,
        stack,
        net: NetConfig {
            latency: LinkLatency::Fixed(Duration::from_millis(10)),
            ..NetConfig::default()
        },
        keep_events: false,
        ..SimConfig::default()
    });
    for i in 1..100 {
        sim.bootstrap_from(i, 0);
    }
    sim
}

/// A dual-stack node in a 100-node network holds its two routing tables (about 30 nodes
/// each) and little else once idle: the tables its searches and requests used are given back.
/// Without that (an emptied `BTreeMap` keeps a leaf of up to 2 KiB) it held 20 KiB; with exact
/// bucket capacities, the rate limiter forgetting idle addresses and 16-byte round-trip entries
/// it held 12.8 KiB after 5 s and 11.0 KiB after 120 s; with the secret RNG parked (a node is
/// 264 bytes smaller) 12.6 and 10.7 (the limit was 16 KiB, then 14).
#[test]
fn idle_dual_stack_node_gives_back_transient_tables() {
    // The only test in this binary: the counter sees no other test's allocations.
    for secs in [5, 120] {
        let per_node = idle_heap_per_node(Stack::Dual, secs);
        eprintln!("after {secs} s: {:.1} KiB per node", per_node / 1024.0);
        assert!(
            per_node < 13.0 * 1024.0,
            "an idle dual-stack node holds {:.1} KiB after {secs} s",
            per_node / 1024.0
        );
    }
}
