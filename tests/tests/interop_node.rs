//! Our sans-IO `Node`, on real loopback sockets, in a network with a real OpenDHT node (Debian's
//! 2.4.12 `dhtnode`, and a 4.4.2 node of the PyPI wheel): it bootstraps from it, stores values on
//! it (inline and fragmented), and a second node of ours gets them back from it alone.

use std::time::Duration;

use dht_proto::value::{Query, Value};
use dht_proto::{Event, Family, InfoHash, PutOptions, Status};
use dht_tests::opendht::{OpenDhtNode, Version};
use dht_tests::udp_node::{UdpNode, drive};

#[test]
fn our_node_stores_on_and_gets_from_a_real_opendht_node() {
    stores_on_and_gets_from(Version::V2_4_12);
}

#[test]
fn our_node_stores_on_and_gets_from_a_real_opendht_4_4_2_node() {
    stores_on_and_gets_from(Version::V4_4_2);
}

fn stores_on_and_gets_from(version: Version) {
    let Some(dhtnode) = OpenDhtNode::start_version(version) else {
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
        assert_eq!(outcome.acked.v4, 1, "dhtnode acknowledged: {outcome:?}");
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

/// A listen placed on a real OpenDHT node is told of a value another node of ours puts there,
/// as an `update` push.
#[test]
fn a_real_opendht_node_pushes_updates_to_our_listen() {
    pushes_updates_to_our_listen(Version::V2_4_12);
}

#[test]
fn a_real_opendht_4_4_2_node_pushes_updates_to_our_listen() {
    pushes_updates_to_our_listen(Version::V4_4_2);
}

fn pushes_updates_to_our_listen(version: Version) {
    let Some(dhtnode) = OpenDhtNode::start_version(version) else {
        return;
    };
    let theirs = std::net::SocketAddr::from(([127, 0, 0, 1], dhtnode.port));
    let wait = Duration::from_secs(20);
    // The listener is a client: dhtnode keeps it out of its routing table, so the putter never
    // learns of it and the value can only reach it through dhtnode's push.
    let mut config = dht_proto::Config::default();
    config.is_client = true;
    let mut listener = UdpNode::with_config(3, config);
    let mut putter = UdpNode::new(4);
    listener.with(|n, now| n.bootstrap(now, theirs));
    putter.with(|n, now| n.bootstrap(now, theirs));
    assert!(drive(&mut [&mut listener, &mut putter], wait, |n| n
        .iter()
        .all(|x| x.node.status(Family::V4) == Status::Connected)));
    let key = InfoHash::get("interop listen");
    listener.with(|n, now| n.listen(now, key, Query::default()).unwrap());
    // Let the listen reach dhtnode before the put.
    assert!(drive(&mut [&mut listener, &mut putter], wait, |n| n[0]
        .node
        .stats()
        .sent(dht_proto::MessageKind::Listen)
        > 0));
    drive(
        &mut [&mut listener, &mut putter],
        Duration::from_millis(300),
        |_| false,
    );
    let h = putter.with(|n, now| {
        n.put(now, key, Value::new(0, b"pushed".to_vec()), PutOptions::default())
            .unwrap()
    });
    let heard = |n: &UdpNode| {
        n.events
            .iter()
            .any(|e| matches!(e, Event::ListenAdded { values, .. } if values.iter().any(|v| v.id == h.vid)))
    };
    assert!(
        drive(&mut [&mut listener, &mut putter], wait, |n| heard(n[0])),
        "no push from dhtnode"
    );
    assert!(
        listener.node.stats().received(dht_proto::MessageKind::Update) > 0,
        "it came as an update"
    );
    assert_eq!(
        putter.node.stats().sent(dht_proto::MessageKind::Update),
        0,
        "not from the putter"
    );
}
