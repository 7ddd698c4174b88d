//! The loopback benchmark's throughput workload without sockets: the CPU our protocol code
//! spends per put+get pair, with the kernel's share (about half on loopback) and the
//! scheduling noise of a shared machine left out.
//!
//! 100 `dht-proto` nodes on a virtual clock (1 ms a hop), bootstrapped over IPv4 as in the
//! loopback benchmark; pairs run one after another: a put on a random node, then a get of its
//! key on another. Only the time spent
//! inside the nodes' calls (`handle_datagram`, `handle_timeout`, commands, `poll_transmit`,
//! `poll_event`) is counted. `cargo bench -p dht-tests --bench pairs` (env: `PAIRS`, default
//! 3000, measured after `WARMUP` pairs, default 3000). Prints µs per pair, datagrams per pair
//! and µs per datagram.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant as WallInstant};

use dht_proto::value::{Query, Value};
use dht_proto::{Config, Event, InfoHash, Instant, Node, PutOptions};

const N: usize = 100;
const HOP: Duration = Duration::from_millis(1);

fn addr(i: usize, v6: bool) -> SocketAddr {
    if v6 {
        SocketAddr::new(
            IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, i as u16 + 1)),
            4222,
        )
    } else {
        SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(10, 0, (i >> 8) as u8, i as u8 + 1)),
            4222,
        )
    }
}

fn index(a: &SocketAddr) -> Option<usize> {
    match a.ip() {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            (usize::from(o[2]) << 8 | usize::from(o[3])).checked_sub(1)
        }
        IpAddr::V6(v6) => usize::from(v6.segments()[7]).checked_sub(1),
    }
    .filter(|&i| i < N)
}

/// A datagram in flight: when it lands, a tie-breaker, the recipient, the sender, the bytes.
type InFlight = Reverse<(Instant, u64, usize, SocketAddr, Vec<u8>)>;

struct Net {
    now: Instant,
    nodes: Vec<Node>,
    queue: BinaryHeap<InFlight>,
    seq: u64,
    /// Time inside the nodes.
    busy: Duration,
    delivered: u64,
    done: Vec<(usize, dht_proto::OpId)>,
    buf: Vec<u8>,
}

impl Net {
    /// Runs `f` on node `i` (timed), then moves its datagrams to the queue and notes finished ops.
    fn on<R>(&mut self, i: usize, f: impl FnOnce(&mut Node, Instant) -> R) -> R {
        let now = self.now;
        let t0 = WallInstant::now();
        let r = f(&mut self.nodes[i], now);
        let mut out = Vec::new();
        while let Some(t) = self.nodes[i].poll_transmit(now, &mut self.buf) {
            out.push((t.destination, self.buf[..t.len].to_vec()));
        }
        let mut done = Vec::new();
        while let Some(e) = self.nodes[i].poll_event() {
            if let Event::PutDone { op, .. } | Event::GetDone { op, .. } = e {
                done.push(op);
            }
        }
        self.busy += t0.elapsed();
        for (to, data) in out {
            if let Some(j) = index(&to) {
                let from = addr(i, to.is_ipv6());
                self.seq += 1;
                self.queue.push(Reverse((now + HOP, self.seq, j, from, data)));
            }
        }
        self.done.extend(done.into_iter().map(|op| (i, op)));
        r
    }

    /// Delivers datagrams and fires timers until `op` of node `i` is done.
    fn run_until_done(&mut self, i: usize, op: dht_proto::OpId) {
        let limit = self.now + Duration::from_secs(60);
        while !self.done.contains(&(i, op)) && self.now < limit {
            self.tick();
        }
        self.done.clear();
    }

    /// One virtual millisecond: timers due, then the datagrams due.
    fn tick(&mut self) {
        self.now += HOP;
        for i in 0..N {
            if self.nodes[i].poll_timeout().is_some_and(|t| t <= self.now) {
                self.on(i, |n, now| n.handle_timeout(now));
            }
        }
        while let Some(Reverse((t, ..))) = self.queue.peek()
            && *t <= self.now
        {
            let Some(Reverse((_, _, to, from, data))) = self.queue.pop() else {
                break;
            };
            self.delivered += 1;
            self.on(to, |n, now| n.handle_datagram(now, from, &data));
        }
    }
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let pairs: u64 = std::env::var("PAIRS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    let mut net = Net {
        now: Instant::ZERO,
        nodes: Vec::new(),
        queue: BinaryHeap::new(),
        seq: 0,
        busy: Duration::ZERO,
        delivered: 0,
        done: Vec::new(),
        buf: Vec::new(),
    };
    for i in 0..N {
        let mut seed = [7u8; 32];
        seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
        let mut config = Config::default();
        config.max_req_per_sec = None;
        config.max_peer_req_per_sec = None;
        net.nodes.push(Node::new(config, seed, net.now));
    }
    for i in 1..N {
        // Over IPv4, as the loopback benchmark (both sides) bootstraps.
        net.on(i, |n, now| n.bootstrap(now, addr(0, false)));
    }
    for _ in 0..10_000 {
        net.tick();
    }
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    let mut pick = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng % N as u64) as usize
    };
    let kinds = |net: &Net| -> Vec<u64> {
        (0..10)
            .map(|k| net.nodes.iter().map(|n| n.stats().sent[k]).sum())
            .collect()
    };
    // Unmeasured pairs first: a new node's searches explore as OpenDHT's do until its own
    // searches show that this no longer pays (`search::Speculation`); the loopback benchmark's
    // latency phases come before its throughput phase the same way.
    let warmup: u64 = std::env::var("WARMUP")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3000);
    let mut k0 = kinds(&net);
    let (mut busy0, mut delivered0) = (net.busy, net.delivered);
    for s in 0..warmup + pairs {
        if s == warmup {
            k0 = kinds(&net);
            (busy0, delivered0) = (net.busy, net.delivered);
        }
        let key = InfoHash::get(format!("pair {s}"));
        let (a, b) = (pick(), pick());
        let op = net.on(a, |n, now| {
            n.put(now, key, Value::new(0, b"p".to_vec()), PutOptions::default())
                .map(|h| h.op)
        });
        if let Ok(op) = op {
            net.run_until_done(a, op);
        }
        let op = net.on(b, |n, now| n.get(now, key, Query::default()));
        if let Ok(op) = op {
            net.run_until_done(b, op);
        }
    }
    let busy = net.busy - busy0;
    let k1 = kinds(&net);
    let names = [
        "ping", "find", "get", "put", "listen", "refresh", "update", "reply", "error", "data",
    ];
    let per: Vec<String> = (0..10)
        .filter(|&k| k1[k] > k0[k])
        .map(|k| format!("{} {:.1}", names[k], (k1[k] - k0[k]) as f64 / pairs as f64))
        .collect();
    println!("sent per pair: {}", per.join(", "));
    let dgrams = net.delivered - delivered0;
    println!(
        "{pairs} pairs: {:.1} µs of node CPU per pair, {:.1} datagrams per pair, {:.2} µs per datagram",
        busy.as_secs_f64() * 1e6 / pairs as f64,
        dgrams as f64 / pairs as f64,
        busy.as_secs_f64() * 1e6 / dgrams.max(1) as f64
    );
}
