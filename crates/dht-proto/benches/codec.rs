//! Codec benchmarks: decode and encode of a ping, a find reply with 8 IPv4 + 8 IPv6 nodes, a get
//! reply with 10 small values, and the fragments of a 32 KiB value (split and reassembled).
//!
//! Targets: a find reply decodes at ≥ 2,000,000 messages/s on one core (issue 21; ≥ 1,000,000 in
//! issue 2) and encodes at ≥ 2,000,000/s. Run: `cargo bench -p dht-proto --bench codec`; on a
//! shared machine compare two builds in alternating runs
//! (`--bench find_reply_8v4_8v6/decode`, A B A B) and take medians.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)] // bench fixtures, not parser paths

use std::hint::black_box;
use std::net::SocketAddr;

use criterion::{Criterion, Throughput, criterion_main};
use dht_proto::value::Value;
use dht_proto::wire::fragment::{self, Progress, Reassembler};
use dht_proto::wire::{self, Body, Message, NodeInfo, Reply, RequestKind};
use dht_proto::{InfoHash, Instant};

fn ping() -> Message {
    Message::request(0x1234_5678, InfoHash::get("a"), RequestKind::Ping)
}

fn find_reply() -> Message {
    let node = |i: u32, v6: bool| NodeInfo {
        id: InfoHash::get(i.to_be_bytes()),
        addr: if v6 {
            SocketAddr::from(([0x2001, 0xdb8, 0, 0, 0, 0, 0, i as u16], 4222))
        } else {
            SocketAddr::from(([192, 0, 2, i as u8], 4222))
        },
    };
    Message::reply(
        7,
        Reply {
            id: InfoHash::get("replier"),
            addr: Some("198.51.100.1".parse().unwrap()),
            nodes4: (0..8).map(|i| node(i, false)).collect(),
            nodes6: (0..8).map(|i| node(i, true)).collect(),
            token: Some([0xab; 32].into()),
            ..Reply::default()
        },
    )
}

fn get_reply() -> Message {
    let values: Vec<Value> = (0..10)
        .map(|i| Value::new(i, format!("value {i}").into_bytes()))
        .collect();
    let out = fragment::prepare(&values);
    Message::reply(
        8,
        Reply {
            id: InfoHash::get("replier"),
            addr: Some("198.51.100.1".parse().unwrap()),
            token: Some([0xab; 32].into()),
            values: Some(out.values),
            ..Reply::default()
        },
    )
}

fn bench_message(c: &mut Criterion, name: &str, msg: &Message) {
    let bytes = msg.encode_to_vec();
    let mut g = c.benchmark_group(name);
    g.throughput(Throughput::Elements(1));
    g.bench_function("decode", |b| b.iter(|| wire::decode(black_box(&bytes)).unwrap()));
    let mut buf = Vec::with_capacity(2048);
    g.bench_function("encode", |b| {
        b.iter(|| {
            buf.clear();
            wire::encode(black_box(msg), &mut buf);
            black_box(buf.len())
        })
    });
    g.finish();
}

fn bench_fragments(c: &mut Criterion) {
    let value = Value::new(0x3232, (0..32 * 1024).map(|i| (i % 251) as u8).collect());
    let values = vec![value];
    let tid = 9;
    let header = |v| {
        Message::reply(
            tid,
            Reply {
                id: InfoHash::get("r"),
                values: Some(v),
                ..Reply::default()
            },
        )
    };
    let out = fragment::prepare(&values);
    let mut datagrams = vec![header(out.values.clone()).encode_to_vec()];
    for parts in fragment::slices(&out.data) {
        datagrams.push(
            Message {
                tid,
                network: 0,
                is_client: false,
                body: Body::ValueData(parts),
            }
            .encode_to_vec(),
        );
    }
    let from: SocketAddr = "192.0.2.1:4222".parse().unwrap();

    let mut g = c.benchmark_group("value_32k_fragments");
    g.throughput(Throughput::Bytes(32 * 1024));
    g.bench_function("encode", |b| {
        let mut buf = Vec::with_capacity(2048);
        b.iter(|| {
            let out = fragment::prepare(black_box(&values));
            buf.clear();
            wire::encode(&header(out.values), &mut buf);
            let mut n = buf.len();
            for parts in fragment::slices(&out.data) {
                buf.clear();
                wire::encode(
                    &Message {
                        tid,
                        network: 0,
                        is_client: false,
                        body: Body::ValueData(parts),
                    },
                    &mut buf,
                );
                n += buf.len();
            }
            black_box(n)
        })
    });
    g.bench_function("decode_and_reassemble", |b| {
        b.iter(|| {
            let mut r = Reassembler::default();
            let mut done = None;
            for d in &datagrams {
                let m = wire::decode(black_box(d)).unwrap();
                let p = match m.body {
                    Body::ValueData(parts) => r.on_parts(Instant::ZERO, from, tid, parts),
                    _ => r.on_header(Instant::ZERO, from, m),
                };
                if let Ok(Progress::Complete(m)) = p {
                    done = Some(m);
                }
            }
            black_box(done.unwrap())
        })
    });
    g.finish();
}

fn benches(c: &mut Criterion) {
    bench_message(c, "ping", &ping());
    bench_message(c, "find_reply_8v4_8v6", &find_reply());
    bench_message(c, "get_reply_10_values", &get_reply());
    bench_fragments(c);
}

// criterion_group! generates an undocumented public function.
#[allow(missing_docs)]
mod groups {
    use super::benches;
    criterion::criterion_group!(codec, benches);
}

criterion_main!(groups::codec);
