//! A small in-memory network of `dht-proto` nodes on a virtual clock, for tests until the
//! simulator crate exists: constant latency, optional seeded loss, nodes that can be taken down.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use dht_proto::{Config, Event, InfoHash, Instant, Node};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

/// Which families the nodes of a network have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stack {
    /// IPv4 only.
    V4,
    /// IPv6 only.
    V6,
    /// Both.
    Dual,
}

type Packet = Reverse<(Instant, u64, usize, SocketAddr, Vec<u8>)>;

/// The network.
pub struct MemNet {
    /// Virtual time.
    pub now: Instant,
    /// The nodes.
    pub nodes: Vec<Node>,
    /// Events each node produced, in order.
    pub events: Vec<Vec<Event>>,
    stack: Stack,
    queue: BinaryHeap<Packet>,
    seq: u64,
    latency: Duration,
    loss: f64,
    rng: ChaCha20Rng,
    down: BTreeSet<usize>,
    /// Datagrams delivered so far.
    pub delivered: u64,
    /// A rolling hash of every delivery (time, from, to, bytes): equal traces, equal runs.
    pub trace: InfoHash,
}

impl MemNet {
    /// An empty network.
    pub fn new(seed: u64, stack: Stack, latency: Duration) -> MemNet {
        MemNet {
            now: Instant::ZERO,
            nodes: Vec::new(),
            events: Vec::new(),
            stack,
            queue: BinaryHeap::new(),
            seq: 0,
            latency,
            loss: 0.0,
            rng: ChaCha20Rng::seed_from_u64(seed),
            down: BTreeSet::new(),
            delivered: 0,
            trace: InfoHash::ZERO,
        }
    }

    /// Drops this fraction of datagrams at random.
    pub fn set_loss(&mut self, loss: f64) {
        self.loss = loss;
    }

    /// Node `i`'s IPv4 address.
    pub fn addr4(i: usize) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, (i >> 8) as u8, i as u8)), 4222)
    }

    /// Node `i`'s IPv6 address.
    pub fn addr6(i: usize) -> SocketAddr {
        SocketAddr::new(
            IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, i as u16 + 1)),
            4222,
        )
    }

    /// Node `i`'s main address (IPv4 unless IPv6-only).
    pub fn addr(&self, i: usize) -> SocketAddr {
        match self.stack {
            Stack::V6 => Self::addr6(i),
            _ => Self::addr4(i),
        }
    }

    fn index_of(&self, a: &SocketAddr) -> Option<usize> {
        let i = match a.ip() {
            IpAddr::V4(v4) => {
                let o = v4.octets();
                if self.stack == Stack::V6 || o[0] != 10 {
                    return None;
                }
                (usize::from(o[2]) << 8) | usize::from(o[3])
            }
            IpAddr::V6(v6) => {
                if self.stack == Stack::V4 {
                    return None;
                }
                usize::from(v6.segments()[7]).checked_sub(1)?
            }
        };
        (i < self.nodes.len()).then_some(i)
    }

    /// Adds a node with `config`; its seed is derived from the network's.
    pub fn add(&mut self, config: Config) -> usize {
        let mut seed = [0u8; 32];
        self.rng.fill_bytes(&mut seed);
        let mut config = config;
        config.dual_stack = self.stack == Stack::Dual;
        let mut node = Node::new(config, seed, self.now);
        node.set_unix_time(
            self.now,
            1_767_225_600 + (self.now.as_micros() / 1_000_000) as i64,
        );
        self.nodes.push(node);
        self.events.push(Vec::new());
        self.nodes.len() - 1
    }

    /// Builds `n` nodes with default config, each bootstrapping from node 0.
    pub fn build(seed: u64, stack: Stack, n: usize) -> MemNet {
        let mut net = MemNet::new(seed, stack, Duration::from_millis(10));
        for _ in 0..n {
            net.add(Config::default());
        }
        for i in 1..n {
            let now = net.now;
            match stack {
                Stack::V4 => net.nodes[i].bootstrap(now, Self::addr4(0)),
                Stack::V6 => net.nodes[i].bootstrap(now, Self::addr6(0)),
                Stack::Dual => {
                    net.nodes[i].bootstrap(now, Self::addr4(0));
                    net.nodes[i].bootstrap(now, Self::addr6(0));
                }
            }
            net.flush(i);
        }
        net
    }

    /// Takes node `i` off the network (its datagrams are lost both ways).
    pub fn take_down(&mut self, i: usize) {
        self.down.insert(i);
    }

    /// Drains node `i`'s transmits and events.
    pub fn flush(&mut self, i: usize) {
        let mut buf = Vec::new();
        let now = self.now;
        let src4 = Self::addr4(i);
        let src6 = Self::addr6(i);
        while let Some(t) = self.nodes[i].poll_transmit(now, &mut buf) {
            if self.down.contains(&i)
                || (self.loss > 0.0 && (self.rng.next_u64() as f64 / u64::MAX as f64) < self.loss)
            {
                continue;
            }
            let Some(to) = self.index_of(&t.destination) else {
                continue;
            };
            let from = if t.destination.is_ipv4() { src4 } else { src6 };
            self.seq += 1;
            self.queue.push(Reverse((
                now + self.latency,
                self.seq,
                to,
                from,
                buf[..t.len].to_vec(),
            )));
        }
        while let Some(e) = self.nodes[i].poll_event() {
            self.events[i].push(e);
        }
    }

    /// Runs one event (a delivery or a timer). Returns false when nothing is left before `until`.
    pub fn step(&mut self, until: Instant) -> bool {
        let next_packet = self.queue.peek().map(|Reverse(p)| p.0);
        let (ti, next_timer) = self
            .nodes
            .iter()
            .enumerate()
            .filter(|(i, _)| !self.down.contains(i))
            .filter_map(|(i, n)| n.poll_timeout().map(|t| (i, t)))
            .min_by_key(|(i, t)| (*t, *i))
            .map_or((usize::MAX, None), |(i, t)| (i, Some(t)));
        let t = match (next_packet, next_timer) {
            (None, None) => return false,
            (Some(p), None) => p,
            (None, Some(t)) => t,
            (Some(p), Some(t)) => p.min(t),
        };
        if t > until {
            self.now = until;
            return false;
        }
        self.now = self.now.max(t);
        if next_packet == Some(t) {
            let Reverse((_, _, to, from, data)) = self.queue.pop().unwrap();
            if !self.down.contains(&to) {
                self.delivered += 1;
                self.trace = dht_sim::trace_step(&self.trace, self.now, &from, to, &data);
                let now = self.now;
                self.nodes[to].handle_datagram(now, from, &data);
                self.flush(to);
            }
        } else {
            let now = self.now;
            self.nodes[ti].handle_timeout(now);
            self.flush(ti);
        }
        true
    }

    /// Runs for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        while self.step(until) {}
        self.now = self.now.max(until);
    }

    /// Runs until `cond` holds or `d` passes; returns whether it held.
    pub fn run_until(&mut self, d: Duration, mut cond: impl FnMut(&MemNet) -> bool) -> bool {
        let until = self.now + d;
        loop {
            if cond(self) {
                return true;
            }
            if !self.step(until) {
                return cond(self);
            }
        }
    }

    /// Runs `f` on node `i` at the current time, then drains it.
    pub fn with<R>(&mut self, i: usize, f: impl FnOnce(&mut Node, Instant) -> R) -> R {
        let now = self.now;
        let r = f(&mut self.nodes[i], now);
        self.flush(i);
        r
    }
}
