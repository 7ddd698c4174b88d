//! A whole node under arbitrary input: datagrams from four peers (IPv4 and IPv6), timer jumps and
//! commands, in any order. Nothing may panic, and everything the node sends must decode.
//!
//! Input: frames of `[op u8][len u16 BE][len bytes]`. `op % 8`: 0–3 a datagram from peer `op`,
//! 4 advance time by the payload's first two bytes in milliseconds, 5 a get, 6 a put, 7 a listen
//! (keys and values taken from the payload).
#![no_main]
use std::net::SocketAddr;
use std::time::Duration;

use dht_proto::value::{Query, Value};
use dht_proto::{Config, InfoHash, Instant, Node, PutOptions};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let peers: [SocketAddr; 4] = [
        "10.0.0.1:4222".parse().unwrap(),
        "10.0.0.2:4000".parse().unwrap(),
        "[2001:db8::1]:4222".parse().unwrap(),
        "[::ffff:10.0.0.3]:5".parse().unwrap(),
    ];
    let mut node = Node::new(Config::default(), [3; 32], Instant::ZERO);
    node.bootstrap(Instant::ZERO, peers[0]);
    let mut now = Instant::ZERO;
    let mut buf = Vec::new();
    let mut rest = data;
    while rest.len() >= 3 {
        let op = rest[0] % 8;
        let len = usize::from(u16::from_be_bytes([rest[1], rest[2]])).min(rest.len() - 3);
        let payload = &rest[3..3 + len];
        rest = &rest[3 + len..];
        match op {
            0..=3 => node.handle_datagram(now, peers[usize::from(op)], payload),
            4 => {
                let ms = payload.iter().take(2).fold(0u64, |a, b| a * 256 + u64::from(*b));
                now += Duration::from_millis(ms);
                node.handle_timeout(now);
            }
            5 => {
                let _ = node.get(now, InfoHash::get(payload), Query::default());
            }
            6 => {
                let v = Value::new(payload.len() as u64, payload.to_vec());
                let _ = node.put(now, InfoHash::get(&payload[..len.min(1)]), v, PutOptions::default());
            }
            _ => {
                let _ = node.listen(now, InfoHash::get(payload), Query::default());
            }
        }
        while let Some(t) = node.poll_transmit(now, &mut buf) {
            assert_eq!(t.len, buf.len());
            dht_proto::wire::decode(&buf).expect("everything we send decodes");
        }
        while node.poll_event().is_some() {}
    }
});
