//! Node benchmarks: `handle_datagram` for find requests against a node whose routing table is
//! full for a 10,000-node network.
//!
//! Target (issue 3): ≥ 500,000 find requests per second on one core, the reply (8 closest good
//! nodes and a token) encoded and queued. Run: `cargo bench -p dht-proto --bench node`.
//!
//! The requests come from 1,000 source addresses and virtual time advances 2 µs per request
//! (500,000 requests per virtual second, 500 per address): the per-IP limiter (1,024/s) is on the
//! measured path and never refuses; the global limit is raised to 1,000,000/s for the bench.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)] // bench fixtures

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_main};
use dht_proto::wire::{self, Body, Message, Reply, RequestKind};
use dht_proto::{Config, InfoHash, Instant, Node};
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

/// A node that knows every node it can keep of a `network`-node network, all good.
pub fn node_in_network(network: usize, seed: u64) -> (Node, Instant) {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let mut config = Config::default();
    config.max_req_per_sec = Some(1_000_000);
    let mut node = Node::new(config, [1; 32], Instant::ZERO);
    let mut now = Instant::ZERO;
    let mut buf = Vec::new();
    for i in 0..network {
        let id = InfoHash::random(&mut rng);
        let addr = SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 4222));
        // Pinged as a bootstrap address, it replies: a good node.
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
    (node, now)
}

fn find_requests(c: &mut Criterion) {
    let (mut node, mut now) = node_in_network(10_000, 5);
    let stats = node.stats();
    eprintln!(
        "routing table: {} nodes ({} good) for a 10,000-node network",
        stats.nodes.v4, stats.good_nodes.v4
    );
    let mut rng = ChaCha20Rng::seed_from_u64(9);
    let requests: Vec<(SocketAddr, Vec<u8>)> = (0..1000u32)
        .map(|i| {
            let from = SocketAddr::from(([172, 16, (i >> 8) as u8, i as u8], 5000));
            let kind = RequestKind::Find {
                target: InfoHash::random(&mut rng),
                want: None,
            };
            (
                from,
                Message::request(i + 1, InfoHash::random(&mut rng), kind).encode_to_vec(),
            )
        })
        .collect();
    let mut buf = Vec::with_capacity(2048);
    let mut g = c.benchmark_group("node");
    g.throughput(Throughput::Elements(1));
    let mut i = 0;
    g.bench_function("handle_datagram find", |b| {
        b.iter(|| {
            let (from, data) = &requests[i % requests.len()];
            i += 1;
            now += Duration::from_micros(2);
            node.handle_datagram(now, *from, black_box(data));
            let tx = node.poll_transmit(now, &mut buf);
            black_box(tx);
        })
    });
    g.finish();
    let s = node.stats();
    assert_eq!(s.dropped.total(), 0, "nothing was dropped: {s:?}");
    // Every request got a reply with nodes.
    let msg = wire::decode(&buf).unwrap();
    match msg.body {
        Body::Reply(r) => assert_eq!(r.nodes4.len(), 8),
        b => panic!("{b:?}"),
    }
}

fn benches() {
    let mut c = Criterion::default().configure_from_args();
    find_requests(&mut c);
}

criterion_main!(benches);
