//! Our sans-IO `Node`, on real loopback sockets, in a network with a real OpenDHT 2.4.12
//! `dhtnode`: it bootstraps from it, stores values on it (inline and fragmented), and a second
//! node of ours gets them back from it alone.

use std::time::Duration;

use dht_proto::value::{Query, Value};
use dht_proto::{Event, Family, InfoHash, PutOptions, Status};
use dht_tests::opendht::OpenDhtNode;
use dht_tests::udp_node::{UdpNode, drive};

#[test]
fn our_node_stores_on_and_gets_from_a_real_opendht_node() {
    let Some(dhtnode) = OpenDhtNode::start() else {
        return;
    };
    let theirs = std::net::SocketAddr::from(([127, 0, 0, 1], dhtnode.port));
    let wait = Duration::from_secs(20);

    let mut a = UdpNode::new(1);
    a.with(|n, now| n.bootstrap(now, theirs));
    assert!(
        drive(&mut [&mut a], wait, |n| n[0].node.status(Family::V4)
            == Status::Connected),
        "did not connect to dhtnode"
    );

    let small = (
        InfoHash::get("interop small"),
        Value::new(0, b"from rust".to_vec()),
    );
    let big = (
        InfoHash::get("interop big"),
        Value::new(0, (0..32 * 1024).map(|i| i as u8).collect()),
    );
    let mut puts = Vec::new();
    for (key, value) in [&small, &big] {
        let h = a.with(|n, now| n.put(now, *key, value.clone(), PutOptions::default()).unwrap());
        puts.push(h);
    }
    let done = |n: &UdpNode, op| {
        n.events.iter().find_map(|e| match e {
            Event::PutDone { op: o, outcome, .. } if *o == op => Some(*outcome),
            _ => None,
        })
    };
    assert!(drive(&mut [&mut a], wait, |n| puts
        .iter()
        .all(|h| done(n[0], h.op).is_some())));
    for h in &puts {
        let outcome = done(&a, h.op).unwrap();
        assert_eq!(outcome.acked[0], 1, "dhtnode acknowledged: {outcome:?}");
    }
    let vids: Vec<u64> = puts.iter().map(|h| h.vid).collect();
    drop(a);

    // A fresh node of ours knows only dhtnode: whatever it finds, dhtnode stored.
    let mut b = UdpNode::new(2);
    b.with(|n, now| n.bootstrap(now, theirs));
    assert!(drive(&mut [&mut b], wait, |n| n[0].node.status(Family::V4)
        == Status::Connected));
    for ((key, value), vid) in [&small, &big].into_iter().zip(vids) {
        let op = b.with(|n, now| n.get(now, *key, Query::default()).unwrap());
        let finished = |n: &UdpNode| {
            n.events
                .iter()
                .any(|e| matches!(e, Event::GetDone { op: o, .. } if *o == op))
        };
        assert!(
            drive(&mut [&mut b], wait, |n| finished(n[0])),
            "get did not finish"
        );
        let found: Vec<&Value> = b
            .events
            .iter()
            .filter_map(|e| match e {
                Event::Values { op: o, values, .. } if *o == op => Some(values),
                _ => None,
            })
            .flatten()
            .collect();
        assert_eq!(found.len(), 1, "{key}");
        assert_eq!(found[0].id, vid);
        assert_eq!(found[0].data, value.data);
    }
}
