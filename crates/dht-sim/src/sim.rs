//! The discrete-event engine: nodes, a queue of deliveries and timers ordered by
//! (time, sequence), and the scenario API.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use dht_proto::value::{Query, Value, ValueId};
use dht_proto::{
    Config, Event, Family, InfoHash, Instant, ListenToken, Node, OpId, PutOptions, PutOutcome, Status,
};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

use crate::net::{NetConfig, Network};
use crate::op::{Op, OpKind, OpRecord, OpTable};
use crate::report::{End, Mark, Report};

/// One link of a delivery trace: the hash of the previous link, the time, the source, the
/// destination host and the bytes. Equal traces, equal runs.
pub fn trace_step(prev: &InfoHash, now: Instant, from: &SocketAddr, to: usize, data: &[u8]) -> InfoHash {
    let mut h = Vec::with_capacity(data.len() + 64);
    h.extend_from_slice(prev.as_bytes());
    h.extend_from_slice(&now.as_micros().to_be_bytes());
    h.extend_from_slice(from.to_string().as_bytes());
    h.extend_from_slice(&(to as u64).to_be_bytes());
    h.extend_from_slice(data);
    InfoHash::get(h)
}

/// Which address families the simulated nodes have.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stack {
    /// IPv4 only.
    V4,
    /// IPv6 only.
    V6,
    /// Both.
    Dual,
}

/// How to build a simulation.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// The master seed: every node's seed and the network's randomness derive from it.
    pub seed: u64,
    /// Nodes at the start.
    pub nodes: usize,
    /// Address families.
    pub stack: Stack,
    /// The network model.
    pub net: NetConfig,
    /// Configuration of every node.
    pub node: Config,
    /// Keep every node's events (for listen checks); off saves memory in big runs.
    pub keep_events: bool,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 1,
            nodes: 100,
            stack: Stack::V4,
            net: NetConfig::default(),
            node: Config::default(),
            keep_events: true,
        }
    }
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Job {
    Deliver {
        to: usize,
        from: SocketAddr,
        data: Vec<u8>,
    },
    Timer {
        node: usize,
    },
}

/// A simulated host: an address (per family) and, while it is up, a node.
#[derive(Debug)]
pub struct Host {
    /// The node; `None` while crashed.
    pub node: Option<Node>,
    /// Events the node reported (when `keep_events`).
    pub events: Vec<Event>,
    /// The host's own node configuration ([`Sim::add_host_with`]); `None`: the simulation's.
    config: Option<Box<Config>>,
    timer: Option<Instant>,
    incarnation: u32,
}

/// Wall time spent inside the nodes' own calls, when asked for ([`Sim::set_node_timing`]).
#[derive(Debug, Default)]
struct NodeClock {
    on: bool,
    spent: Duration,
}

impl NodeClock {
    fn time<R>(&mut self, f: impl FnOnce() -> R) -> R {
        if !self.on {
            return f();
        }
        let t0 = std::time::Instant::now();
        let r = f();
        self.spent += t0.elapsed();
        r
    }
}

/// The simulator.
#[derive(Debug)]
pub struct Sim {
    /// Virtual time.
    pub now: Instant,
    /// The network model.
    pub net: Network,
    /// Hosts by index.
    pub hosts: Vec<Host>,
    config: SimConfig,
    queue: BinaryHeap<Reverse<(Instant, u64, Job)>>,
    seq: u64,
    node_seeds: ChaCha20Rng,
    scenario_rng: ChaCha20Rng,
    trace: InfoHash,
    processed: u64,
    delivered: u64,
    node_clock: NodeClock,
    ops: OpTable,
}

impl Sim {
    /// Builds the hosts and nodes (not yet bootstrapped).
    pub fn new(config: SimConfig) -> Sim {
        let master = config.seed;
        let mut node_seeds = ChaCha20Rng::seed_from_u64(master);
        node_seeds.set_stream(1);
        let mut net_rng = ChaCha20Rng::seed_from_u64(master);
        net_rng.set_stream(2);
        let mut scenario_rng = ChaCha20Rng::seed_from_u64(master);
        scenario_rng.set_stream(3);
        let mut sim = Sim {
            now: Instant::ZERO,
            net: Network::new(config.net.clone(), net_rng),
            hosts: Vec::with_capacity(config.nodes),
            queue: BinaryHeap::new(),
            seq: 0,
            node_seeds,
            scenario_rng,
            trace: InfoHash::ZERO,
            processed: 0,
            delivered: 0,
            node_clock: NodeClock::default(),
            ops: OpTable::default(),
            config,
        };
        for _ in 0..sim.config.nodes {
            sim.add_host();
        }
        sim
    }

    /// The configuration.
    pub fn config(&self) -> &SimConfig {
        &self.config
    }

    /// The scenario's own RNG (for picking nodes and keys), a stream of the master seed.
    pub fn rng(&mut self) -> &mut ChaCha20Rng {
        &mut self.scenario_rng
    }

    /// A node with the next seed of the node stream and `config` (`None`: the simulation's).
    fn new_node(&mut self, config: Option<&Config>) -> Node {
        let mut seed = [0u8; 32];
        self.node_seeds.fill_bytes(&mut seed);
        let mut config = config.unwrap_or(&self.config.node).clone();
        config.dual_stack = self.config.stack == Stack::Dual;
        let mut node = Node::new(config, seed, self.now);
        node.set_unix_time(self.now, Sim::unix_at(self.now));
        node
    }

    /// The simulated wall clock: Unix seconds at virtual time `t` (the run starts at
    /// 2026-01-01T00:00:00Z).
    pub fn unix_at(t: Instant) -> i64 {
        1_767_225_600 + (t.as_micros() / 1_000_000) as i64
    }

    /// Adds a host with a fresh node; returns its index.
    pub fn add_host(&mut self) -> usize {
        self.push_host(None)
    }

    /// Adds a host whose node has its own configuration instead of [`SimConfig::node`] (an
    /// identity, other limits); it keeps it when restarted with a fresh node. `dual_stack` is
    /// set from the simulation's [`Stack`], as for every node. Returns the host's index.
    pub fn add_host_with(&mut self, config: Config) -> usize {
        self.push_host(Some(Box::new(config)))
    }

    fn push_host(&mut self, config: Option<Box<Config>>) -> usize {
        let node = self.new_node(config.as_deref());
        self.hosts.push(Host {
            node: Some(node),
            events: Vec::new(),
            config,
            timer: None,
            incarnation: 0,
        });
        let i = self.hosts.len() - 1;
        self.reschedule(i);
        i
    }

    /// Host `i`'s IPv4 address (10.0.0.0/8).
    pub fn addr4(i: usize) -> SocketAddr {
        let i = i as u32 + 1;
        SocketAddr::new(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | i)), 4222)
    }

    /// Host `i`'s IPv6 address (fd00::/64).
    pub fn addr6(i: usize) -> SocketAddr {
        SocketAddr::new(
            IpAddr::V6(Ipv6Addr::from(0xfd00_u128 << 112 | (i as u128 + 1))),
            4222,
        )
    }

    /// Host `i`'s address in its main family.
    pub fn addr(&self, i: usize) -> SocketAddr {
        match self.config.stack {
            Stack::V6 => Sim::addr6(i),
            _ => Sim::addr4(i),
        }
    }

    fn host_of(&self, a: &SocketAddr) -> Option<usize> {
        let i = match a.ip() {
            IpAddr::V4(v4) if self.config.stack != Stack::V6 => {
                let n = u32::from(v4);
                if n >> 24 != 10 {
                    return None;
                }
                (n & 0x00ff_ffff) as usize
            }
            IpAddr::V6(v6) if self.config.stack != Stack::V4 => {
                let n = u128::from(v6);
                if n >> 112 != 0xfd00 {
                    return None;
                }
                (n & 0xffff_ffff) as usize
            }
            _ => return None,
        };
        let i = i.checked_sub(1)?;
        (i < self.hosts.len()).then_some(i)
    }

    fn push(&mut self, at: Instant, job: Job) {
        self.seq += 1;
        self.queue.push(Reverse((at, self.seq, job)));
    }

    fn reschedule(&mut self, i: usize) {
        let now = self.now;
        let Some(h) = self.hosts.get_mut(i) else { return };
        let next = h.node.as_ref().and_then(Node::poll_timeout).map(|t| t.max(now));
        if next != h.timer {
            h.timer = next;
            if let Some(t) = next {
                self.push(t, Job::Timer { node: i });
            }
        }
    }

    /// Drains host `i`'s transmits (into the network) and events (into op records).
    fn flush(&mut self, i: usize) {
        let mut buf = Vec::new();
        let now = self.now;
        let mut out = Vec::new();
        let mut events = Vec::new();
        if let Some(node) = self.hosts.get_mut(i).and_then(|h| h.node.as_mut()) {
            self.node_clock.time(|| {
                while let Some(t) = node.poll_transmit(now, &mut buf) {
                    out.push((t.destination, buf.get(..t.len).unwrap_or_default().to_vec()));
                }
                while let Some(e) = node.poll_event() {
                    events.push(e);
                }
            });
        }
        let from4 = Sim::addr4(i);
        let from6 = Sim::addr6(i);
        for (to, data) in out {
            let Some(j) = self.host_of(&to) else { continue };
            let from = if to.is_ipv4() { from4 } else { from6 };
            if let Ok(times) = self.net.route(now, i, j, data.len()) {
                for at in times {
                    self.push(
                        at,
                        Job::Deliver {
                            to: j,
                            from,
                            data: data.clone(),
                        },
                    );
                }
            }
        }
        for e in events {
            self.ops.record(i, &e, now);
            if self.config.keep_events
                && let Some(h) = self.hosts.get_mut(i)
            {
                h.events.push(e);
            }
        }
        self.reschedule(i);
    }

    /// Runs one job. Returns false when nothing is left before `until` (time then moves to
    /// `until`).
    pub fn step(&mut self, until: Instant) -> bool {
        let Some(Reverse((at, _, _))) = self.queue.peek() else {
            self.now = self.now.max(until);
            return false;
        };
        if *at > until {
            self.now = self.now.max(until);
            return false;
        }
        let Some(Reverse((at, _, job))) = self.queue.pop() else {
            return false;
        };
        self.now = self.now.max(at);
        self.processed += 1;
        let now = self.now;
        match job {
            Job::Deliver { to, from, data } => {
                let Some(node) = self.hosts.get_mut(to).and_then(|h| h.node.as_mut()) else {
                    return true;
                };
                self.trace = trace_step(&self.trace, now, &from, to, &data);
                self.delivered += 1;
                self.node_clock.time(|| node.handle_datagram(now, from, &data));
                self.flush(to);
            }
            Job::Timer { node: i } => {
                let Some(h) = self.hosts.get_mut(i) else {
                    return true;
                };
                if h.timer != Some(at) {
                    // A stale timer: the node's deadline moved since.
                    return true;
                }
                h.timer = None;
                if let Some(node) = h.node.as_mut() {
                    self.node_clock.time(|| node.handle_timeout(now));
                }
                self.flush(i);
            }
        }
        true
    }

    /// Runs for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        while self.step(until) {}
    }

    /// Runs until `cond` holds (checked after every job) or `d` passes. Returns whether it held.
    pub fn run_until(&mut self, d: Duration, mut cond: impl FnMut(&Sim) -> bool) -> bool {
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

    /// Runs until every given operation is done, or `d` passes.
    pub fn run_until_done(&mut self, ops: &[Op], d: Duration) -> bool {
        let until = self.now + d;
        let mut i = 0;
        loop {
            while ops
                .get(i)
                .is_some_and(|o| self.ops.get(o).is_some_and(|r| r.done.is_some()))
            {
                i += 1;
            }
            if i >= ops.len() {
                return true;
            }
            if !self.step(until) {
                return false;
            }
        }
    }

    /// Jobs run so far (deliveries and timers).
    pub fn processed(&self) -> u64 {
        self.processed
    }

    /// The rolling hash of every delivery so far: equal for equal runs.
    pub fn trace(&self) -> InfoHash {
        self.trace
    }

    /// Datagrams handed to a live node so far (copies included; lost, cut and those to a
    /// crashed host not).
    pub fn delivered(&self) -> u64 {
        self.delivered
    }

    /// Starts (or stops) measuring the wall time spent inside the nodes' own calls: datagrams,
    /// timers, commands run through [`Sim::with`] or the op methods, and draining transmits and
    /// events. Off by default; the simulator's own work (queue, network model, records) is
    /// never counted. For benchmarks of the protocol's CPU cost.
    pub fn set_node_timing(&mut self, on: bool) {
        self.node_clock.on = on;
    }

    /// Wall time spent inside the nodes while [`Sim::set_node_timing`] was on.
    pub fn node_time(&self) -> Duration {
        self.node_clock.spent
    }

    /// Host `i`'s node, if it is up (to read its state; [`Sim::with`] changes it).
    pub fn node(&self, i: usize) -> Option<&Node> {
        self.hosts.get(i)?.node.as_ref()
    }

    /// The nodes of the live hosts, by host index.
    pub fn nodes(&self) -> impl Iterator<Item = (usize, &Node)> {
        self.hosts
            .iter()
            .enumerate()
            .filter_map(|(i, h)| h.node.as_ref().map(|n| (i, n)))
    }

    /// The events host `i`'s nodes reported so far, in order (empty unless
    /// [`SimConfig::keep_events`]): for checks on what a command started with [`Sim::with`]
    /// delivered.
    pub fn events(&self, i: usize) -> &[Event] {
        self.hosts.get(i).map_or(&[], |h| h.events.as_slice())
    }

    /// Runs `f` on host `i`'s node (if up) now, then drains it.
    pub fn with<R>(&mut self, i: usize, f: impl FnOnce(&mut Node, Instant) -> R) -> Option<R> {
        let now = self.now;
        let node = self.hosts.get_mut(i)?.node.as_mut()?;
        let r = self.node_clock.time(|| f(node, now));
        self.flush(i);
        Some(r)
    }

    /// Host `i` bootstraps from up to `k` random live hosts with a lower index (so that the
    /// bootstrap graph is a tree rooted at host 0, never islands). Host 0 bootstraps from none.
    pub fn bootstrap(&mut self, i: usize, k: usize) {
        // Random draws below `i`, skipping hosts that are down; a few hundred tries at most, so
        // a mostly-dead prefix cannot stall, and no list of all hosts is built (O(1) per host).
        let below = i.min(self.hosts.len());
        let mut picks = BTreeSet::new();
        for _ in 0..(64 * k).max(256) {
            if picks.len() >= k || below == 0 {
                break;
            }
            let p = self.scenario_rng.next_u32() as usize % below;
            if self.is_up(p) {
                picks.insert(p);
            }
        }
        for p in picks {
            self.bootstrap_from(i, p);
        }
    }

    /// Host `i` bootstraps from host `j`, in each family of the simulation's [`Stack`] (IPv4
    /// first).
    pub fn bootstrap_from(&mut self, i: usize, j: usize) {
        let stack = self.config.stack;
        self.with(i, |n, now| {
            if stack != Stack::V6 {
                n.bootstrap(now, Sim::addr4(j));
            }
            if stack != Stack::V4 {
                n.bootstrap(now, Sim::addr6(j));
            }
        });
    }

    /// Bootstraps every host at the same moment, each from one random host before it (a young
    /// network: routing tables are thin when the first operations start), and runs in 10 ms
    /// steps until all are connected (or `d` passes). Returns whether all connected.
    pub fn bootstrap_at_once(&mut self, d: Duration) -> bool {
        let n = self.hosts.len();
        for i in 1..n {
            self.bootstrap(i, 1);
        }
        self.run_until_connected(d, Duration::from_millis(10))
    }

    /// Bootstraps every host from random others, a few at a time, and runs until all are
    /// connected (or `d` passes). Returns whether all connected.
    pub fn bootstrap_all(&mut self, d: Duration) -> bool {
        let n = self.hosts.len();
        for i in 1..n {
            self.bootstrap(i, 1);
            if i % 64 == 0 {
                self.run_for(Duration::from_millis(200));
            }
        }
        // Checked once per virtual second: a check looks at every node.
        self.run_until_connected(d, Duration::from_secs(1))
    }

    /// Runs in steps of `step` until every host that is up is connected (or `d` passes).
    fn run_until_connected(&mut self, d: Duration, step: Duration) -> bool {
        let n = self.hosts.len();
        let fam = self.main_family();
        let until = self.now + d;
        loop {
            if (0..n).all(|i| !self.is_up(i) || self.status(i, fam) == Some(Status::Connected)) {
                return true;
            }
            if self.now >= until {
                return false;
            }
            self.run_for(step.min(until - self.now));
        }
    }

    fn main_family(&self) -> Family {
        if self.config.stack == Stack::V6 {
            Family::V6
        } else {
            Family::V4
        }
    }

    /// Whether host `i` is up.
    pub fn is_up(&self, i: usize) -> bool {
        self.hosts.get(i).is_some_and(|h| h.node.is_some())
    }

    /// Host `i`'s status in `fam`, if up.
    pub fn status(&self, i: usize, fam: Family) -> Option<Status> {
        self.hosts.get(i)?.node.as_ref().map(|n| n.status(fam))
    }

    /// Live hosts.
    pub fn up_hosts(&self) -> Vec<usize> {
        (0..self.hosts.len()).filter(|i| self.is_up(*i)).collect()
    }

    /// A random live host other than `i` (`i` itself only if it is the only one up).
    pub fn random_up_except(&mut self, i: usize) -> usize {
        for _ in 0..1024 {
            let j = self.random_up();
            if j != i {
                return j;
            }
        }
        i
    }

    /// A random live host.
    pub fn random_up(&mut self) -> usize {
        let n = self.hosts.len().max(1);
        for _ in 0..1024 {
            let i = self.scenario_rng.next_u32() as usize % n;
            if self.is_up(i) {
                return i;
            }
        }
        // Almost everyone is down: pick among the live ones.
        let up = self.up_hosts();
        up.get(self.scenario_rng.next_u32() as usize % up.len().max(1))
            .copied()
            .unwrap_or(0)
    }

    /// Runs a command on host `i` without draining it, so the op can be registered before its
    /// first events are read.
    fn command<R>(&mut self, i: usize, f: impl FnOnce(&mut Node, Instant) -> R) -> Option<R> {
        let now = self.now;
        let node = self.hosts.get_mut(i)?.node.as_mut()?;
        Some(self.node_clock.time(|| f(node, now)))
    }

    /// A put from host `node`.
    pub fn put(&mut self, node: usize, key: InfoHash, value: Value, opts: PutOptions) -> Op {
        let h = self
            .command(node, |n, now| n.put(now, key, value, opts).ok())
            .flatten();
        let op = self
            .ops
            .start(OpKind::Put, node, key, h.map(|h| h.op.0), self.now);
        if let (Some(h), Some(r)) = (h, self.ops.get_mut(&op)) {
            r.vid = Some(h.vid);
        }
        self.flush(node);
        op
    }

    /// A get from host `node`.
    pub fn get(&mut self, node: usize, key: InfoHash) -> Op {
        let id = self
            .command(node, |n, now| n.get(now, key, Query::default()).ok())
            .flatten();
        let op = self
            .ops
            .start(OpKind::Get, node, key, id.map(|o: OpId| o.0), self.now);
        self.flush(node);
        op
    }

    /// A listen from host `node`.
    pub fn listen(&mut self, node: usize, key: InfoHash) -> Op {
        let id = self
            .command(node, |n, now| n.listen(now, key, Query::default()).ok())
            .flatten();
        let op = self
            .ops
            .start(OpKind::Listen, node, key, id.map(|t: ListenToken| t.0), self.now);
        self.flush(node);
        op
    }

    /// The record of an operation.
    pub fn op(&self, op: Op) -> Option<&OpRecord> {
        self.ops.get(&op)
    }

    /// Whether a get found `vid`.
    pub fn found(&self, op: Op, vid: ValueId) -> bool {
        self.ops.get(&op).is_some_and(|r| r.found.contains(&vid))
    }

    /// A put's outcome.
    pub fn outcome(&self, op: Op) -> Option<PutOutcome> {
        self.ops.get(&op).and_then(|r| r.outcome)
    }

    /// Crashes host `i`: it stops sending, receiving and running timers.
    pub fn crash(&mut self, i: usize) -> Option<Node> {
        let h = self.hosts.get_mut(i)?;
        h.timer = None;
        h.node.take()
    }

    /// Restarts host `i` with the node it had (`Some`, state kept) or a new one with a new seed.
    pub fn restart(&mut self, i: usize, keep: Option<Node>) {
        let node = match keep {
            Some(n) => n,
            None => {
                let config = self.hosts.get_mut(i).and_then(|h| h.config.take());
                let node = self.new_node(config.as_deref());
                if let Some(h) = self.hosts.get_mut(i) {
                    h.config = config;
                }
                node
            }
        };
        if let Some(h) = self.hosts.get_mut(i) {
            h.node = Some(node);
            h.incarnation += 1;
            h.timer = None;
        }
        self.reschedule(i);
    }

    /// Replaces `count` random live hosts (other than those in `keep`) by new hosts that bootstrap
    /// from random live ones: churn.
    pub fn churn(&mut self, count: usize, keep: &BTreeSet<usize>) -> Vec<usize> {
        let mut added = Vec::new();
        for _ in 0..count {
            let up: Vec<usize> = self
                .up_hosts()
                .into_iter()
                .filter(|i| !keep.contains(i))
                .collect();
            if up.is_empty() {
                break;
            }
            let victim = up
                .get(self.scenario_rng.next_u32() as usize % up.len())
                .copied()
                .unwrap_or(0);
            self.crash(victim);
            let j = self.add_host();
            self.bootstrap(j, 2);
            added.push(j);
        }
        added
    }

    /// Churn at a rate: replaces `total` hosts (not in `keep`), evenly spread over `period` of
    /// virtual time, which it runs. Returns the new hosts.
    pub fn churn_over(&mut self, total: usize, period: Duration, keep: &BTreeSet<usize>) -> Vec<usize> {
        let mut added = Vec::new();
        if total == 0 {
            self.run_for(period);
            return added;
        }
        let gap = period / total as u32;
        for _ in 0..total {
            added.extend(self.churn(1, keep));
            self.run_for(gap);
        }
        added
    }

    /// Operations recorded so far.
    pub fn ops(&self) -> impl Iterator<Item = (&Op, &OpRecord)> {
        self.ops.iter()
    }

    /// A point to report from: the operations started after it, the jobs run and wall time
    /// spent since.
    pub fn mark(&self) -> Mark {
        Mark {
            at: self.now,
            processed: self.processed,
            traffic: self.traffic(),
            wall: std::time::Instant::now(),
        }
    }

    /// A report of what happened since `mark`.
    pub fn report(&self, mark: &Mark) -> Report {
        let end = End {
            seed: self.config.seed,
            nodes: self.up_hosts().len(),
            rtt: self.config.net.mean_rtt(),
            memory_per_node: self.memory_per_node(),
            trace: self.trace,
            processed: self.processed,
            traffic: self.traffic(),
        };
        Report::build(end, self.ops.iter().map(|(_, r)| r), mark)
    }

    /// Estimated heap bytes per live node.
    pub fn memory_per_node(&self) -> usize {
        let up: Vec<&Node> = self.hosts.iter().filter_map(|h| h.node.as_ref()).collect();
        if up.is_empty() {
            return 0;
        }
        up.iter()
            .map(|n| n.heap_bytes() + size_of::<Node>())
            .sum::<usize>()
            / up.len()
    }

    /// Datagrams and bytes offered to the network so far.
    pub fn traffic(&self) -> (u64, u64) {
        (self.net.stats.sent, self.net.stats.bytes)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use dht_proto::value::Query;
    use dht_proto::{Config, Event, Family, InfoHash, Status};

    use super::*;
    use crate::net::LinkLatency;

    fn small(nodes: usize, latency: Duration) -> Sim {
        Sim::new(SimConfig {
            seed: 3,
            nodes,
            net: NetConfig {
                latency: LinkLatency::Fixed(latency),
                ..NetConfig::default()
            },
            ..SimConfig::default()
        })
    }

    #[test]
    fn a_host_with_its_own_config_keeps_it_when_restarted_fresh() {
        let mut sim = small(2, Duration::from_millis(10));
        let id = InfoHash::get("chosen id");
        let mut config = Config::default();
        config.node_id = Some(id);
        config.max_req_per_sec = None;
        let i = sim.add_host_with(config);
        assert_eq!(i, 2);
        assert_eq!(sim.node(i).map(|n| n.node_id()), Some(id));
        assert_eq!(sim.node(i).unwrap().config().max_req_per_sec, None);
        assert_ne!(sim.node(0).map(|n| n.node_id()), Some(id));
        assert!(sim.crash(i).is_some());
        assert!(sim.node(i).is_none());
        assert_eq!(sim.nodes().map(|(j, _)| j).collect::<Vec<_>>(), [0, 1]);
        sim.restart(i, None);
        assert_eq!(
            sim.node(i).map(|n| n.node_id()),
            Some(id),
            "the fresh node has the host's config"
        );
        assert_eq!(sim.node(i).unwrap().config().max_req_per_sec, None);
    }

    #[test]
    fn on_a_zero_latency_network_operations_take_no_virtual_time() {
        let mut sim = small(10, Duration::ZERO);
        for i in 1..10 {
            sim.bootstrap_from(i, 0);
        }
        assert!(sim.run_until(Duration::from_secs(60), |s| {
            (0..10).all(|i| s.status(i, Family::V4) == Some(Status::Connected))
        }));
        let key = InfoHash::get("k");
        let put = sim.put(
            2,
            key,
            dht_proto::value::Value::new(0, b"v".to_vec()),
            Default::default(),
        );
        assert!(sim.run_until_done(&[put], Duration::from_secs(10)));
        let get = sim.get(7, key);
        assert!(sim.run_until_done(&[get], Duration::from_secs(10)));
        for op in [put, get] {
            let r = sim.op(op).unwrap();
            assert_eq!(r.done, Some(r.start), "{r:?}");
        }
        assert!(sim.found(get, sim.op(put).unwrap().vid.unwrap()));
    }

    #[test]
    fn a_command_run_through_with_is_followed_by_its_events() {
        let mut sim = small(10, Duration::from_millis(10));
        for i in 1..10 {
            sim.bootstrap_from(i, 0);
        }
        sim.run_for(Duration::from_secs(10));
        let key = InfoHash::get("k");
        let op = sim
            .with(4, |n, now| n.get(now, key, Query::default()))
            .expect("host 4 is up")
            .expect("the get starts");
        let done = |s: &Sim| {
            s.events(4)
                .iter()
                .any(|e| matches!(e, Event::GetDone { op: o, .. } if *o == op))
        };
        assert!(sim.run_until(Duration::from_secs(30), done));
        assert!(sim.events(99).is_empty());
    }

    #[test]
    fn node_timing_counts_only_when_on_and_changes_nothing() {
        let run = |timed: bool| {
            let mut sim = small(20, Duration::from_millis(10));
            sim.set_node_timing(timed);
            assert!(sim.bootstrap_all(Duration::from_secs(60)));
            sim.run_for(Duration::from_secs(30));
            (sim.trace(), sim.processed(), sim.delivered(), sim.node_time())
        };
        let (plain, timed) = (run(false), run(true));
        assert_eq!(plain.3, Duration::ZERO);
        assert!(timed.3 > Duration::ZERO);
        assert_eq!((plain.0, plain.1, plain.2), (timed.0, timed.1, timed.2));
        assert!(
            plain.2 > 0 && plain.2 < plain.1,
            "deliveries are some of the jobs"
        );
    }
}
