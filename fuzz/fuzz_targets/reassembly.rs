//! A sequence of datagrams from a few sources, at advancing times: the reassembler never panics,
//! never holds more than its limits, and never completes a message with values of the wrong size.
#![no_main]
use core::time::Duration;
use dht_proto::Instant;
use dht_proto::wire::fragment::{self, Progress, Reassembler};
use dht_proto::wire::{self, Body, Values};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut r = Reassembler::default();
    let mut now = Instant::ZERO;
    // Records: [source byte][time step byte][len lo][len hi][datagram…]
    let mut rest = data;
    while rest.len() >= 4 {
        let src = rest[0] % 3;
        now += Duration::from_millis(u64::from(rest[1]) * 20);
        let len = usize::from(u16::from_le_bytes([rest[2], rest[3]]));
        rest = &rest[4..];
        let take = len.min(rest.len());
        let (dgram, tail) = rest.split_at(take);
        rest = tail;
        let from = std::net::SocketAddr::from(([127, 0, 0, 1], 4000 + u16::from(src)));
        r.expire(now);
        let Ok(msg) = wire::decode(dgram) else { continue };
        let res = match &msg.body {
            Body::ValueData(parts) => r.on_parts(now, from, msg.tid, parts.clone()),
            _ if fragment::is_fragmented(&msg) => r.on_header(now, from, msg),
            _ => continue,
        };
        if let Ok(Progress::Complete(m)) = res {
            assert!(!fragment::is_fragmented(&m));
            if let Body::Reply(rep) = &m.body {
                assert!(!matches!(rep.values, Some(Values::Sizes(_))));
            }
        }
        assert!(r.buffered_bytes() <= r.limits().max_total_bytes);
        assert!(r.sessions() <= r.limits().max_sessions);
    }
});
