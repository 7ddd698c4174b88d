//! Heap held by idle nodes, counted by a counting allocator (deterministic: the in-memory
//! network runs on a virtual clock). The figures the README reports come from
//! `cargo bench -p dht-tests --bench memory` and `--bench loopback`; this test keeps them from
//! sliding back.

use std::time::Duration;

use dht_tests::counting::{Counting, live};
use dht_tests::memnet::{MemNet, Stack};

#[global_allocator]
static A: Counting = Counting;

/// Heap each node frees when dropped, in bytes, after `secs` of virtual time.
fn idle_heap_per_node(stack: Stack, secs: u64) -> f64 {
    let mut net = MemNet::build(11, stack, 100);
    net.run_for(Duration::from_secs(secs));
    let nodes = std::mem::take(&mut net.nodes);
    let before = live();
    drop(nodes);
    (before - live()) as f64 / 100.0
}

/// A dual-stack node in a 100-node network holds its two routing tables (about 30 nodes
/// each) and little else once idle: the tables its searches and requests used are given back.
/// Without that (an emptied `BTreeMap` keeps a leaf of up to 2 KiB) it held 20 KiB.
#[test]
fn idle_dual_stack_node_gives_back_transient_tables() {
    // The only test in this binary: the counter sees no other test's allocations.
    for secs in [5, 120] {
        let per_node = idle_heap_per_node(Stack::Dual, secs);
        eprintln!("after {secs} s: {:.1} KiB per node", per_node / 1024.0);
        assert!(
            per_node < 16.0 * 1024.0,
            "an idle dual-stack node holds {:.1} KiB after {secs} s",
            per_node / 1024.0
        );
    }
}
