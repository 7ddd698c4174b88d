//! An in-memory network of 20–50 `dht-proto` nodes: put, get, listen, expiry, refresh,
//! large values, cancel and two address families.

use std::time::Duration;

use dht_proto::value::{Query, Value};
use dht_proto::{Event, Family, InfoHash, OpId, PutOptions, Status};
use dht_tests::memnet::{MemNet, Stack};

fn connected(net: &MemNet, fam: Family) -> bool {
    net.nodes.iter().all(|n| n.status(fam) == Status::Connected)
}

fn get_values(net: &MemNet, node: usize, op: OpId) -> Vec<Value> {
    net.events[node]
        .iter()
        .filter_map(|e| match e {
            Event::Values { op: o, values, .. } if *o == op => Some(values.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

fn get_done(net: &MemNet, node: usize, op: OpId) -> Option<bool> {
    net.events[node].iter().find_map(|e| match e {
        Event::GetDone { op: o, ok, .. } if *o == op => Some(*ok),
        _ => None,
    })
}

fn put_done(net: &MemNet, node: usize, op: OpId) -> Option<dht_proto::PutOutcome> {
    net.events[node].iter().find_map(|e| match e {
        Event::PutDone { op: o, outcome, .. } if *o == op => Some(*outcome),
        _ => None,
    })
}

fn boot(seed: u64, stack: Stack, n: usize) -> MemNet {
    let mut net = MemNet::build(seed, stack, n);
    let fam = if stack == Stack::V6 { Family::V6 } else { Family::V4 };
    assert!(
        net.run_until(Duration::from_secs(60), |net| connected(net, fam)),
        "network did not connect"
    );
    net.run_for(Duration::from_secs(30));
    net
}

#[test]
fn put_then_get_from_every_other_node() {
    let mut net = boot(1, Stack::V4, 30);
    let key = InfoHash::get("hello");
    let put = net.with(3, |n, now| n.put(now, key, Value::new(0, b"world".to_vec()), PutOptions::default()).unwrap());
    assert!(net.run_until(Duration::from_secs(30), |net| put_done(net, 3, put.op).is_some()));
    let outcome = put_done(&net, 3, put.op).unwrap();
    assert!(outcome.ok(), "{outcome:?}");
    assert_eq!(outcome.acked[0], 8, "{outcome:?}");
    for i in 0..30 {
        let op = net.with(i, |n, now| n.get(now, key, Query::default()).unwrap());
        assert!(net.run_until(Duration::from_secs(30), |net| get_done(net, i, op).is_some()), "node {i}");
        let values = get_values(&net, i, op);
        assert_eq!(values.len(), 1, "node {i}");
        assert_eq!(values[0].data, b"world");
        assert_eq!(values[0].id, put.vid);
    }
}
