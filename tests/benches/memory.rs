//! Memory per node, measured with a counting allocator: the heap a `Node` frees when dropped.
//!
//! 1. An idle node in a 100-node simulated network (`dht-sim`), after 15 virtual minutes of maintenance
//!    (target ≤ 26 KiB per node; OpenDHT 2.4.12 measured 79 KiB).
//! 2. A node whose routing table is full for a 10,000-node network and that stores 100 small
//!    values.
//!
//! Run: `cargo bench -p dht-tests --bench memory`. Prints figures; exits non-zero if the first
//! target is missed.

use std::net::SocketAddr;
use std::time::Duration;

use dht_proto::value::Value;
use dht_proto::wire::{self, Body, Message, PutRequest, Reply, RequestKind, Values};
use dht_proto::{Config, InfoHash, Instant, Node};
use dht_sim::net::{LinkLatency, NetConfig};
use dht_sim::{Sim, SimConfig};
use dht_tests::counting::{Counting, INSTRUMENTED_SYSTEM, live};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

#[global_allocator]
static A: Counting = &INSTRUMENTED_SYSTEM;

/// Bytes freed by dropping `x`.
fn footprint<T>(x: T) -> isize {
    let before = live();
    drop(x);
    before - live()
}

fn idle_network() -> f64 {
    // 100 nodes 10 ms apart, each bootstrapping from host 0.
    let mut sim = Sim::new(SimConfig {
        seed: 11,
        nodes: 100,
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
    sim.run_for(Duration::from_secs(15 * 60));
    let mut nodes: Vec<Node> = Vec::with_capacity(100);
    nodes.extend((0..100).filter_map(|i| sim.crash(i)));
    let stats: Vec<_> = nodes.iter().map(|n| n.stats()).collect();
    let avg_table = stats.iter().map(|s| s.nodes.v4).sum::<usize>() as f64 / 100.0;
    let bytes = footprint(nodes);
    let per_node = bytes as f64 / 100.0;
    println!(
        "idle node, 100-node network: {:.1} KiB per node ({} bytes for 100 nodes; {:.1} nodes per routing table)",
        per_node / 1024.0,
        bytes,
        avg_table
    );
    per_node
}

fn full_table_and_values() {
    let mut rng = ChaCha20Rng::seed_from_u64(5);
    let mut node = Node::new(Config::default(), [1; 32], Instant::ZERO);
    let mut now = Instant::ZERO;
    let mut buf = Vec::new();
    for i in 0..10_000u32 {
        let id = InfoHash::random(&mut rng);
        let addr = SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 4222));
        node.bootstrap(now, addr);
        while let Some(tx) = node.poll_transmit(now, &mut buf) {
            let msg = wire::decode(&buf[..tx.len]).unwrap();
            let is_ping = matches!(&msg.body, Body::Request(r) if r.kind == RequestKind::Ping);
            if tx.destination == addr && is_ping {
                let r = Reply {
                    id,
                    addr: Some(addr.ip()),
                    ..Reply::default()
                };
                now += Duration::from_micros(10);
                node.handle_datagram(now, addr, &Message::reply(msg.tid, r).encode_to_vec());
            }
        }
        while node.poll_event().is_some() {}
    }
    // 100 small values put by a peer.
    let peer = SocketAddr::from(([192, 168, 0, 1], 4222));
    let pid = InfoHash::get("peer");
    let find = Message::request(
        1,
        pid,
        RequestKind::Find {
            target: pid,
            want: None,
        },
    );
    node.handle_datagram(now, peer, &find.encode_to_vec());
    let mut token = dht_proto::wire::Token::new();
    while let Some(tx) = node.poll_transmit(now, &mut buf) {
        if let Ok(Message {
            body: Body::Reply(r), ..
        }) = wire::decode(&buf[..tx.len])
            && tx.destination == peer
        {
            token = r.token.unwrap_or_default();
        }
    }
    let before_values = live();
    for i in 0..100u64 {
        // Keys next to our id: we are among their closest nodes, so we keep them.
        let mut key = node.node_id();
        key.0[18] = i as u8;
        key.0[19] ^= 0x5a;
        let kind = RequestKind::Put(PutRequest {
            key,
            values: Values::Inline(vec![Value::new(i + 1, vec![7; 32])].into()),
            created: None,
            token: token.clone(),
        });
        node.handle_datagram(
            now,
            peer,
            &Message::request(2 + i as u32, pid, kind).encode_to_vec(),
        );
        while node.poll_transmit(now, &mut buf).is_some() {}
    }
    let values_bytes = live() - before_values;
    let s = node.stats();
    println!(
        "  of which the 100 values take {:.1} KiB",
        values_bytes as f64 / 1024.0
    );
    let bytes = footprint(node);
    println!(
        "node with a full table for a 10,000-node network ({} nodes) and {} stored values ({} bytes of values): {:.1} KiB \
         (size_of::<Node>() = {} bytes)",
        s.nodes.v4,
        s.stored_values,
        s.stored_bytes,
        bytes as f64 / 1024.0,
        std::mem::size_of::<Node>()
    );
}

fn main() {
    let per_node = idle_network();
    full_table_and_values();
    if per_node > 26.0 * 1024.0 {
        eprintln!(
            "FAIL: {:.1} KiB per idle node is over the 26 KiB target",
            per_node / 1024.0
        );
        std::process::exit(1);
    }
}
