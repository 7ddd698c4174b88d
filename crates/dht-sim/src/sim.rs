//! The discrete-event engine: nodes, a queue of deliveries and timers ordered by
//! (time, sequence), and the scenario API.

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::fmt;
use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::rc::Rc;
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

mod par;

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

/// [`trace_step`] without an allocation: the hash is fed piece by piece (the datagram is not
/// copied), the address written into `scratch` as `Display` writes it (`to_string`).
fn trace_step_in(
    scratch: &mut Vec<u8>,
    prev: &InfoHash,
    now: Instant,
    from: &SocketAddr,
    to: usize,
    data: &[u8],
) -> InfoHash {
    use sha1::{Digest, Sha1};
    scratch.clear();
    write_addr(scratch, from);
    let mut h = Sha1::new();
    h.update(prev.as_bytes());
    h.update(now.as_micros().to_be_bytes());
    h.update(&scratch[..]);
    h.update((to as u64).to_be_bytes());
    h.update(data);
    InfoHash(h.finalize().into())
}

/// Writes `a` as its `Display` does: by hand for IPv4 (every delivery of a run is hashed with
/// its sender's address), through the formatter for IPv6.
fn write_addr(out: &mut Vec<u8>, a: &SocketAddr) {
    fn num(out: &mut Vec<u8>, n: u16) {
        if n >= 10 {
            num(out, n / 10);
        }
        out.push(b'0' + (n % 10) as u8);
    }
    match a {
        SocketAddr::V4(v4) => {
            for (k, o) in v4.ip().octets().into_iter().enumerate() {
                if k > 0 {
                    out.push(b'.');
                }
                num(out, u16::from(o));
            }
            out.push(b':');
            num(out, v4.port());
        }
        SocketAddr::V6(_) => {
            let _ = write!(out, "{a}");
        }
    }
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
    /// Threads that run the nodes' work. 1: one job after another. More: in windows of virtual
    /// time no longer than the shortest link latency, each node's jobs of a window on one of
    /// the threads, their outputs merged in the order of one thread; the run (trace, jobs,
    /// outcomes) is the same for every count (see `docs/simulation.md`).
    pub threads: usize,
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
            threads: 1,
        }
    }
}

/// A job in the queue: 24 bytes, ordered by (time, sequence) alone, the earliest first. A
/// delivery's datagram waits in [`Deliveries`]; `job` names it, or a host's timer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Slot {
    /// Virtual time in microseconds.
    at: u64,
    seq: u64,
    /// [`TIMER`] set: the timer of host `job & !TIMER`; else the delivery `job`.
    job: u32,
    /// The host the job is for (the receiver of a delivery), in the padding: the parallel
    /// windows share out jobs without reading the deliveries.
    host: u32,
}

/// The bit of [`Slot::job`] that marks a timer.
const TIMER: u32 = 1 << 31;

impl Slot {
    /// Time, then sequence, as one number: the order of the queue.
    fn key(&self) -> u128 {
        u128::from(self.at) << 64 | u128::from(self.seq)
    }
}

/// The queue of jobs, earliest (time, sequence) first: a radix heap. Keys only grow (a job is
/// never queued before the last one run), so each job sits in the bucket of the highest bit in
/// which its key differs from the last key taken, and moves down a few times at most before it
/// is run: far fewer scattered reads than a binary heap of millions of jobs.
#[derive(Debug)]
struct Queue {
    last: u128,
    buckets: Vec<Vec<Slot>>,
    len: usize,
}

impl Default for Queue {
    fn default() -> Self {
        Queue {
            last: 0,
            buckets: (0..=128).map(|_| Vec::new()).collect(),
            len: 0,
        }
    }
}

impl Queue {
    fn bucket(last: u128, key: u128) -> usize {
        // A key below the last (never made) would go to bucket 0: run next, not lost.
        if key <= last {
            0
        } else {
            128 - (key ^ last).leading_zeros() as usize
        }
    }

    fn push(&mut self, slot: Slot) {
        let b = Queue::bucket(self.last, slot.key());
        if let Some(v) = self.buckets.get_mut(b) {
            v.push(slot);
            self.len += 1;
        }
    }

    /// Brings the earliest job to bucket 0; false when the queue is empty.
    fn settle(&mut self) -> bool {
        if self.buckets.first().is_some_and(|b| !b.is_empty()) {
            return true;
        }
        let Some(i) = self.buckets.iter().position(|b| !b.is_empty()) else {
            return false;
        };
        let moving = self.buckets.get_mut(i).map(std::mem::take).unwrap_or_default();
        let Some(min) = moving.iter().map(Slot::key).min() else {
            return false;
        };
        self.last = min;
        for slot in &moving {
            let b = Queue::bucket(min, slot.key());
            if let Some(v) = self.buckets.get_mut(b) {
                v.push(*slot);
            }
        }
        // The emptied bucket keeps its buffer.
        let mut moving = moving;
        moving.clear();
        if let Some(v) = self.buckets.get_mut(i) {
            *v = moving;
        }
        true
    }

    /// The earliest job's time, without moving anything: `last` must not run ahead of the
    /// simulation's clock (a job may still be queued for now, below a later `last`).
    fn peek_at(&self) -> Option<u64> {
        if let Some(s) = self.buckets.first().and_then(|b| b.last()) {
            return Some(s.at);
        }
        let b = self.buckets.iter().find(|b| !b.is_empty())?;
        b.iter().map(|s| s.at).min()
    }

    fn pop(&mut self) -> Option<Slot> {
        if !self.settle() {
            return None;
        }
        let slot = self.buckets.first_mut().and_then(Vec::pop)?;
        self.len -= 1;
        Some(slot)
    }

    fn len(&self) -> usize {
        self.len
    }

    /// Puts back jobs taken out with [`Queue::pop`] (any keys, earlier ones included): the
    /// whole queue is sorted into its buckets again, from the earliest key.
    fn restore(&mut self, slots: &[Slot]) {
        let mut all: Vec<Slot> = slots.to_vec();
        for b in &mut self.buckets {
            all.append(b);
        }
        self.last = all
            .iter()
            .map(Slot::key)
            .min()
            .unwrap_or(self.last)
            .min(self.last);
        self.len = 0;
        for s in all {
            self.push(s);
        }
    }
}

/// A datagram on its way: the sender is a host, so its address is made again from its index
/// and family (see [`Sim::addr4`]) rather than kept.
#[derive(Debug, Default)]
struct Delivery {
    data: Vec<u8>,
    to: u32,
    from: u32,
    v6: bool,
    /// Datagrams on the causal chain up to this one (see [`OpRecord::hops_first`]).
    depth: u16,
}

/// The datagrams in flight, in slots that are used again (each keeps its buffer), so a
/// delivery costs no allocation once the run is warm.
#[derive(Debug, Default)]
struct Deliveries {
    slots: Vec<Delivery>,
    free: Vec<u32>,
}

impl Deliveries {
    /// Stores a datagram; returns its slot.
    fn put(&mut self, data: &[u8], to: usize, from: usize, v6: bool, depth: u16) -> u32 {
        let i = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(Delivery::default());
                (self.slots.len() - 1) as u32
            }
        };
        if let Some(d) = self.slots.get_mut(i as usize) {
            d.data.clear();
            d.data.extend_from_slice(data);
            d.to = to as u32;
            d.from = from as u32;
            d.v6 = v6;
            d.depth = depth;
        }
        i
    }

    /// Stores a datagram by moving its buffer into a slot (no copy); returns the slot and the
    /// slot's former buffer, empty, to be used again by a sender.
    fn put_owned(&mut self, data: Vec<u8>, to: usize, from: usize, v6: bool, depth: u16) -> (u32, Vec<u8>) {
        let i = match self.free.pop() {
            Some(i) => i,
            None => {
                self.slots.push(Delivery::default());
                (self.slots.len() - 1) as u32
            }
        };
        let mut old = Vec::new();
        if let Some(d) = self.slots.get_mut(i as usize) {
            old = std::mem::replace(&mut d.data, data);
            d.to = to as u32;
            d.from = from as u32;
            d.v6 = v6;
            d.depth = depth;
        }
        (i, old)
    }

    /// Takes the datagram out of slot `i`: its buffer, receiver, sender and depth. The slot
    /// stays taken until [`Deliveries::release`].
    fn take(&mut self, i: u32) -> Option<(Vec<u8>, usize, usize, bool, u16)> {
        let d = self.slots.get_mut(i as usize)?;
        Some((
            std::mem::take(&mut d.data),
            d.to as usize,
            d.from as usize,
            d.v6,
            d.depth,
        ))
    }

    /// Frees slot `i`, its datagram read in place (not taken).
    fn free(&mut self, i: u32) {
        if let Some(d) = self.slots.get_mut(i as usize) {
            if d.data.capacity() > 2048 {
                d.data = Vec::new();
            }
            self.free.push(i);
        }
    }

    /// Frees slot `i`, giving it back its buffer to use again. Big buffers are dropped, so a
    /// few large values cannot pin memory in every slot.
    fn release(&mut self, i: u32, mut buf: Vec<u8>) {
        if let Some(d) = self.slots.get_mut(i as usize) {
            if buf.capacity() <= 2048 {
                buf.clear();
                d.data = buf;
            }
            self.free.push(i);
        }
    }
}

/// Buffers of [`Sim::flush`], kept between calls.
#[derive(Debug, Default)]
struct Scratch {
    /// Each transmit drained: its destination and bytes, in a buffer that moves on into a
    /// delivery slot (see [`Deliveries::put_owned`]).
    out: Vec<(SocketAddr, Vec<u8>)>,
    /// Empty buffers to drain transmits into: the former buffers of the slots filled.
    spare: Vec<Vec<u8>>,
    events: Vec<Event>,
    trace: Vec<u8>,
}

/// Spare transmit buffers kept at most (per [`Scratch`] or parallel unit).
const MAX_SPARE: usize = 4096;

/// Keeps `buf` (emptied) to drain a later transmit into, unless it is unused, big or one too
/// many.
fn recycle(spare: &mut Vec<Vec<u8>>, mut buf: Vec<u8>) {
    if buf.capacity() > 0 && buf.capacity() <= 2048 && spare.len() < MAX_SPARE {
        buf.clear();
        spare.push(buf);
    }
}

/// Drains `node`'s transmits into `out` (each in a buffer of its own, from `spare` when there
/// is one) and its events into `events`.
fn drain_node(
    node: &mut Node,
    now: Instant,
    out: &mut Vec<(SocketAddr, Vec<u8>)>,
    spare: &mut Vec<Vec<u8>>,
    mut event: impl FnMut(Event),
) {
    loop {
        let mut b = spare.pop().unwrap_or_default();
        match node.poll_transmit(now, &mut b) {
            Some(t) => {
                b.truncate(t.len);
                out.push((t.destination, b));
            }
            None => {
                recycle(spare, b);
                break;
            }
        }
    }
    while let Some(e) = node.poll_event() {
        event(e);
    }
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
    /// What this host's nodes sent and received.
    pub traffic: HostTraffic,
    /// The causal depth of the last datagram this host handled: what its timers' transmits
    /// continue from.
    depth: u16,
    /// Addresses chosen with [`Sim::add_host_on`]; `None`: the default layout.
    placed: Option<(Ipv4Addr, Ipv6Addr)>,
    /// How the host misbehaves ([`Sim::add_host_on`]).
    pub misbehaviour: Misbehaviour,
    /// Targets of the finds and gets a colluding host was asked, by (requester, tid), to
    /// answer them with colluders (bounded: the oldest go first).
    asked: std::collections::VecDeque<(SocketAddr, u32, InfoHash)>,
}

/// How a host placed with [`Sim::add_host_on`] misbehaves: the Sybil's repertoire.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Misbehaviour {
    /// Acknowledges puts but keeps nothing (its node stores no key).
    pub drop_stores: bool,
    /// Answers finds and gets with only colluders' addresses: the live hosts that collude
    /// too, closest to the target first.
    pub collude: bool,
    /// Never answers a get (the request is dropped on arrival; finds are answered).
    pub ignore_gets: bool,
}

impl Misbehaviour {
    /// All three.
    pub const SYBIL: Misbehaviour = Misbehaviour {
        drop_stores: true,
        collude: true,
        ignore_gets: true,
    };
}

/// Finds and gets a colluding host remembers, to answer them with colluders.
const MAX_ASKED: usize = 1024;

/// Datagrams and bytes one host's nodes sent (offered to the network, lost ones included) and
/// received (handed to a live node).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HostTraffic {
    /// Datagrams sent.
    pub sent: u64,
    /// Bytes sent.
    pub sent_bytes: u64,
    /// Datagrams received.
    pub received: u64,
    /// Bytes received.
    pub received_bytes: u64,
}

/// Where a run is, for a progress display: what an observer set with [`Sim::set_observer`]
/// is shown every few thousand jobs and at every phase change. Reading it changes nothing in
/// the run.
#[derive(Clone, Copy, Debug)]
pub struct Progress<'a> {
    /// The current phase ([`Sim::set_phase`]).
    pub phase: &'a str,
    /// Virtual time.
    pub now: Instant,
    /// Jobs run so far.
    pub processed: u64,
    /// Datagrams handed to live nodes so far.
    pub delivered: u64,
    /// Hosts, up or down.
    pub hosts: usize,
    /// Hosts up.
    pub up: usize,
    /// Nodes connected, of those up, as last counted while waiting for a bootstrap.
    pub joined: Option<(usize, usize)>,
    /// Operations started through the simulator.
    pub ops_started: u64,
    /// Of those, the gets and puts done.
    pub ops_done: u64,
}

/// A progress observer: called with the run's [`Progress`]; it must not need the simulator
/// (it cannot reach it), so it cannot change the run.
pub type Observer = Box<dyn FnMut(&Progress<'_>) + Send>;

/// Builds the observer of each simulation made on this thread ([`observe_new_sims`]).
pub type ObserverFactory = Rc<dyn Fn(&SimConfig) -> Option<Observer>>;

thread_local! {
    static OBSERVE_NEW: RefCell<Option<ObserverFactory>> = const { RefCell::new(None) };
}

/// Gives every [`Sim`] built on this thread from now on the observer `factory` makes (`None`:
/// none). [`run_seeds`](crate::run_seeds) uses it to show long scenarios' progress without
/// the scenarios knowing.
pub fn observe_new_sims(factory: Option<ObserverFactory>) {
    OBSERVE_NEW.with(|f| *f.borrow_mut() = factory);
}

struct ObserverSlot(Observer);

impl fmt::Debug for ObserverSlot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Observer")
    }
}

/// A named stretch of a run ([`Sim::set_phase`]): operations started in it are reported
/// together.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Phase {
    /// Its name.
    pub name: String,
    /// When it started.
    pub start: Instant,
    /// Datagrams and bytes offered to the network before it.
    pub traffic: (u64, u64),
    /// Jobs run before it.
    pub processed: u64,
}

/// Something that happened to the network or its hosts, marked on the run's timeline
/// ([`Sim::annotate`]; crashes, restarts, churn, partitions and changes of the network model
/// made through the simulator mark themselves).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Annotation {
    /// When.
    pub at: Instant,
    /// What.
    pub label: String,
    /// How many times in a row within a virtual second (a churn of 100 hosts is one mark).
    pub count: u32,
}

/// Annotations kept at most; later ones are counted, not kept.
const MAX_ANNOTATIONS: usize = 1000;
/// Jobs between two calls of the observer.
const OBSERVE_EVERY: u64 = 1 << 14;

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
    queue: Queue,
    deliveries: Deliveries,
    scratch: Scratch,
    seq: u64,
    node_seeds: ChaCha20Rng,
    scenario_rng: ChaCha20Rng,
    trace: InfoHash,
    processed: u64,
    delivered: u64,
    node_clock: NodeClock,
    ops: OpTable,
    observer: Option<ObserverSlot>,
    phases: Vec<Phase>,
    annotations: Vec<Annotation>,
    annotations_dropped: u64,
    up: usize,
    joined: Option<(usize, usize)>,
    /// Hosts placed with [`Sim::add_host_on`], by address.
    placed: std::collections::BTreeMap<IpAddr, usize>,
    /// The same, by host.
    placed_at: std::collections::BTreeMap<usize, (Ipv4Addr, Ipv6Addr)>,
    /// Buffers of the parallel windows, kept between them.
    par: par::Buffers,
    /// Trace links and freed slots the last parallel window still owes.
    owed: par::Owed,
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
            queue: Queue::default(),
            deliveries: Deliveries::default(),
            scratch: Scratch::default(),
            seq: 0,
            node_seeds,
            scenario_rng,
            trace: InfoHash::ZERO,
            processed: 0,
            delivered: 0,
            node_clock: NodeClock::default(),
            ops: OpTable::default(),
            observer: None,
            phases: vec![Phase {
                name: "run".into(),
                start: Instant::ZERO,
                traffic: (0, 0),
                processed: 0,
            }],
            annotations: Vec::new(),
            annotations_dropped: 0,
            up: 0,
            joined: None,
            placed: std::collections::BTreeMap::new(),
            placed_at: std::collections::BTreeMap::new(),
            par: par::Buffers::default(),
            owed: par::Owed::default(),
            config,
        };
        sim.observer = OBSERVE_NEW
            .with(|f| f.borrow().clone())
            .and_then(|f| f(&sim.config))
            .map(ObserverSlot);
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
        // A host knows its uplink: its node paces value data to the modelled bandwidth.
        if config.uplink_bytes_per_sec.is_none() {
            config.uplink_bytes_per_sec = self.config.net.bandwidth;
        }
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
            traffic: HostTraffic::default(),
            depth: 0,
            placed: None,
            misbehaviour: Misbehaviour::default(),
            asked: std::collections::VecDeque::new(),
        });
        self.up += 1;
        let i = self.hosts.len() - 1;
        self.reschedule(i);
        i
    }

    /// Host `i`'s IPv4 address in the default layout: every host on a /24 of its own
    /// (10.x.y.1 for the first 65,535 hosts, so the Sybil limits never bind on an ordinary
    /// run). Hosts placed with [`Sim::add_host_on`] are elsewhere ([`Sim::host_addr4`]).
    pub fn addr4(i: usize) -> SocketAddr {
        let n = i as u32 + 1;
        let [_, hi, x, y] = n.to_be_bytes();
        SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, x, y, hi.saturating_add(1))), 4222)
    }

    /// Host `i`'s IPv6 address in the default layout: every host on a /64 of its own
    /// (`fd00:0:0:n::1`).
    pub fn addr6(i: usize) -> SocketAddr {
        SocketAddr::new(
            IpAddr::V6(Ipv6Addr::from(0xfd00_u128 << 112 | (i as u128 + 1) << 64 | 1)),
            4222,
        )
    }

    /// Host `i`'s IPv4 address: its placed one, or [`Sim::addr4`].
    pub fn host_addr4(&self, i: usize) -> SocketAddr {
        match Sim::placed_at(&self.placed_at, i) {
            Some((v4, _)) => SocketAddr::new(IpAddr::V4(v4), 4222),
            None => Sim::addr4(i),
        }
    }

    /// Host `i`'s IPv6 address: its placed one, or [`Sim::addr6`].
    pub fn host_addr6(&self, i: usize) -> SocketAddr {
        match Sim::placed_at(&self.placed_at, i) {
            Some((_, v6)) => SocketAddr::new(IpAddr::V6(v6), 4222),
            None => Sim::addr6(i),
        }
    }

    /// Where host `i` was placed ([`Sim::add_host_on`]), without reading the host (a cache
    /// miss per datagram in a big run).
    fn placed_at(
        placed: &std::collections::BTreeMap<usize, (Ipv4Addr, Ipv6Addr)>,
        i: usize,
    ) -> Option<(Ipv4Addr, Ipv6Addr)> {
        if placed.is_empty() {
            None
        } else {
            placed.get(&i).copied()
        }
    }

    /// Host `i`'s address in its main family.
    pub fn addr(&self, i: usize) -> SocketAddr {
        match self.config.stack {
            Stack::V6 => self.host_addr6(i),
            _ => self.host_addr4(i),
        }
    }

    /// Adds a host on subnet `subnet` (the IPv4 /24 `10.x.y.0` with `x.y` = `subnet`, and the
    /// IPv6 /64 `fd00:0:0:subnet::`), shared with the default host whose own subnet it is and
    /// with the other hosts placed on it; with `config` (`None`: the simulation's) and
    /// `misbehaviour`. Up to 253 hosts per subnet. Returns the host's index.
    pub fn add_host_on(&mut self, subnet: u16, config: Option<Config>, misbehaviour: Misbehaviour) -> usize {
        let placed_here = self
            .hosts
            .iter()
            .filter(|h| {
                h.placed
                    .is_some_and(|(v4, _)| u32::from(v4) >> 8 == 0x0a_0000 | u32::from(subnet))
            })
            .count();
        let h = u8::try_from(placed_here + 2).unwrap_or(u8::MAX).min(254);
        let [x, y] = subnet.to_be_bytes();
        let v4 = Ipv4Addr::new(10, x, y, h);
        let v6 = Ipv6Addr::from(0xfd00_u128 << 112 | u128::from(subnet) << 64 | u128::from(h));
        let mut config = config.unwrap_or_else(|| self.config.node.clone());
        if misbehaviour.drop_stores {
            config.max_store_keys = 0;
        }
        let i = self.push_host(Some(Box::new(config)));
        if let Some(host) = self.hosts.get_mut(i) {
            host.placed = Some((v4, v6));
            host.misbehaviour = misbehaviour;
        }
        self.placed.insert(IpAddr::V4(v4), i);
        self.placed.insert(IpAddr::V6(v6), i);
        self.placed_at.insert(i, (v4, v6));
        i
    }

    fn host_of(&self, a: &SocketAddr) -> Option<usize> {
        if a.port() != 4222 {
            return None;
        }
        let i = match a.ip() {
            IpAddr::V4(v4) if self.config.stack != Stack::V6 => {
                let [a, x, y, h] = v4.octets();
                if a != 10 || h == 0 {
                    return None;
                }
                if h != 1
                    && let Some(j) = self.placed.get(&IpAddr::V4(v4))
                {
                    return Some(*j);
                }
                (usize::from(h - 1) << 16) | (usize::from(x) << 8) | usize::from(y)
            }
            IpAddr::V6(v6) if self.config.stack != Stack::V4 => {
                let n = u128::from(v6);
                if n >> 112 != 0xfd00 {
                    return None;
                }
                if n & 0xffff_ffff_ffff_ffff != 1 {
                    return self.placed.get(&IpAddr::V6(v6)).copied();
                }
                ((n >> 64) & 0xffff_ffff_ffff) as usize
            }
            _ => return None,
        };
        let i = i.checked_sub(1)?;
        (i < self.hosts.len() && Sim::placed_at(&self.placed_at, i).is_none()).then_some(i)
    }

    fn push(&mut self, at: Instant, job: u32) {
        self.seq += 1;
        self.queue.push(Slot {
            at: at.as_micros(),
            seq: self.seq,
            job,
            host: job & !TIMER,
        });
    }

    fn reschedule(&mut self, i: usize) {
        let now = self.now;
        let Some(h) = self.hosts.get_mut(i) else { return };
        let next = h.node.as_ref().and_then(Node::poll_timeout).map(|t| t.max(now));
        if next != h.timer {
            h.timer = next;
            if let Some(t) = next {
                self.push(t, TIMER | i as u32);
            }
        }
    }

    /// Drains host `i`'s transmits (into the network) and events (into op records), after an
    /// input of causal depth `depth` (a command: 0).
    fn flush(&mut self, i: usize, depth: u16) {
        let now = self.now;
        // Taken out for the call, so that `self` stays free to use; put back (with the
        // capacity it grew) at the end.
        let mut scratch = std::mem::take(&mut self.scratch);
        let Scratch {
            out, spare, events, ..
        } = &mut scratch;
        out.clear();
        events.clear();
        if let Some(node) = self.hosts.get_mut(i).and_then(|h| h.node.as_mut()) {
            self.node_clock
                .time(|| drain_node(node, now, out, spare, |e| events.push(e)));
        }
        if self.hosts.get(i).is_some_and(|h| h.misbehaviour.collude) {
            // A colluder's replies are rewritten.
            for (to, data) in out.iter_mut() {
                if let Some(target) = self.hosts.get(i).and_then(|h| Sim::collude_target(h, *to, data)) {
                    self.collude(i, target, data);
                }
            }
        }
        self.emit(i, depth, now, out, spare, events.drain(..), true);
        self.scratch = scratch;
        self.reschedule(i);
    }

    /// What host `i` sent and reported after an input of causal depth `depth` at `now`: its
    /// datagrams (destination and bytes, whose buffers move into the delivery slots; the
    /// slots' former buffers go to `spare`) go into the network (and, with `count`, into the
    /// host's traffic), its events into the op records. Everything here depends on the order
    /// of jobs: the parallel windows call it in the order of one thread.
    #[allow(clippy::too_many_arguments)]
    fn emit(
        &mut self,
        i: usize,
        depth: u16,
        now: Instant,
        out: &mut [(SocketAddr, Vec<u8>)],
        spare: &mut Vec<Vec<u8>>,
        events: impl Iterator<Item = Event>,
        count: bool,
    ) {
        if count && let Some(h) = self.hosts.get_mut(i) {
            h.traffic.sent += out.len() as u64;
            h.traffic.sent_bytes += out.iter().map(|(_, d)| d.len() as u64).sum::<u64>();
        }
        let depth_next = depth.saturating_add(1);
        for (to, data) in out.iter_mut() {
            let data = std::mem::take(data);
            let v6 = !to.is_ipv4();
            let Some(j) = self.host_of(to) else {
                recycle(spare, data);
                continue;
            };
            let Ok(times) = self.net.route_times(now, i, j, data.len()) else {
                recycle(spare, data);
                continue;
            };
            let mut times = times.peekable();
            let mut data = Some(data);
            while let Some(at) = times.next() {
                let slot = if times.peek().is_some() {
                    // A duplicate: a copy; the last arrival takes the buffer.
                    let bytes = data.as_deref().unwrap_or_default();
                    self.deliveries.put(bytes, j, i, v6, depth_next)
                } else {
                    let (slot, old) =
                        self.deliveries
                            .put_owned(data.take().unwrap_or_default(), j, i, v6, depth_next);
                    recycle(spare, old);
                    slot
                };
                self.seq += 1;
                self.queue.push(Slot {
                    at: at.as_micros(),
                    seq: self.seq,
                    job: slot,
                    host: j as u32,
                });
            }
            if let Some(d) = data {
                recycle(spare, d);
            }
        }
        for e in events {
            self.ops.record(i, &e, now, depth / 2);
            if self.config.keep_events
                && let Some(h) = self.hosts.get_mut(i)
            {
                h.events.push(e);
            }
        }
    }

    /// A misbehaving host sees a datagram: false when it ignores it (a get, for a host that
    /// never answers them). A colluding host remembers what finds and gets asked for.
    fn misbehave_on_receive(h: &mut Host, from: SocketAddr, data: &[u8]) -> bool {
        let Ok(msg) = dht_proto::wire::decode(data) else {
            return true;
        };
        let dht_proto::wire::Body::Request(req) = &msg.body else {
            return true;
        };
        let target = match &req.kind {
            dht_proto::wire::RequestKind::Get { key, .. } => {
                if h.misbehaviour.ignore_gets {
                    return false;
                }
                *key
            }
            dht_proto::wire::RequestKind::Find { target, .. } => *target,
            _ => return true,
        };
        if h.misbehaviour.collude {
            if h.asked.len() >= MAX_ASKED {
                h.asked.pop_front();
            }
            h.asked.push_back((from, msg.tid, target));
        }
        true
    }

    /// The target of the find or get that a colluding host's datagram `data` to `to` answers,
    /// as the host remembers it now.
    fn collude_target(h: &Host, to: SocketAddr, data: &[u8]) -> Option<InfoHash> {
        let msg = dht_proto::wire::decode(data).ok()?;
        h.asked
            .iter()
            .rev()
            .find(|(from, tid, _)| *from == to && *tid == msg.tid)
            .map(|a| a.2)
    }

    /// Host `i` colludes: a reply it sends to a find or get of `target` names, instead of the
    /// nodes it knows, the live colluding hosts closest to the target.
    fn collude(&self, i: usize, target: InfoHash, data: &mut Vec<u8>) {
        let Ok(mut msg) = dht_proto::wire::decode(data) else {
            return;
        };
        let dht_proto::wire::Body::Reply(r) = &mut msg.body else {
            return;
        };
        let colluders = |v6: bool| {
            let mut c: Vec<dht_proto::wire::NodeInfo> = self
                .hosts
                .iter()
                .enumerate()
                .filter(|(j, o)| *j != i && o.misbehaviour.collude)
                .filter_map(|(j, o)| {
                    let id = o.node.as_ref()?.node_id();
                    let addr = if v6 {
                        self.host_addr6(j)
                    } else {
                        self.host_addr4(j)
                    };
                    Some(dht_proto::wire::NodeInfo { id, addr })
                })
                .collect();
            c.sort_by(|a, b| target.xor_cmp(&a.id, &b.id));
            c.truncate(8);
            c
        };
        if !r.nodes4.is_empty() {
            r.nodes4 = colluders(false).into();
        }
        if !r.nodes6.is_empty() {
            r.nodes6 = colluders(true).into();
        }
        *data = msg.encode_to_vec();
    }

    /// Runs one job. Returns false when nothing is left before `until` (time then moves to
    /// `until`).
    pub fn step(&mut self, until: Instant) -> bool {
        self.settle_trace();
        let Some(at) = self.queue.peek_at() else {
            self.now = self.now.max(until);
            return false;
        };
        if at > until.as_micros() {
            self.now = self.now.max(until);
            return false;
        }
        let Some(Slot { at, job, .. }) = self.queue.pop() else {
            return false;
        };
        let at = Instant::from_micros(at);
        self.now = self.now.max(at);
        self.processed += 1;
        if self.processed.is_multiple_of(OBSERVE_EVERY) {
            self.observe();
        }
        let now = self.now;
        if job & TIMER != 0 {
            let i = (job & !TIMER) as usize;
            let Some(h) = self.hosts.get_mut(i) else {
                return true;
            };
            if h.timer != Some(at) {
                // A stale timer: the node's deadline moved since.
                return true;
            }
            h.timer = None;
            let depth = h.depth;
            if let Some(node) = h.node.as_mut() {
                self.node_clock.time(|| node.handle_timeout(now));
            }
            self.flush(i, depth);
            return true;
        }
        let Some((data, to, from, v6, depth)) = self.deliveries.take(job) else {
            return true;
        };
        let from = if v6 {
            self.host_addr6(from)
        } else {
            self.host_addr4(from)
        };
        if let Some(h) = self.hosts.get_mut(to)
            && h.node.is_some()
            && (h.misbehaviour == Misbehaviour::default() || Sim::misbehave_on_receive(h, from, &data))
        {
            h.depth = depth;
            h.traffic.received += 1;
            h.traffic.received_bytes += data.len() as u64;
            self.trace = trace_step_in(&mut self.scratch.trace, &self.trace, now, &from, to, &data);
            self.delivered += 1;
            if let Some(node) = h.node.as_mut() {
                self.node_clock.time(|| node.handle_datagram(now, from, &data));
            }
            self.flush(to, depth);
        }
        self.deliveries.release(job, data);
        true
    }

    /// Runs for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        if self.config.threads > 1 {
            loop {
                match self.window(until, None) {
                    par::Window::Ran => {}
                    par::Window::Idle => return,
                    par::Window::Off | par::Window::Stepwise(_) => {
                        if !self.step(until) {
                            return;
                        }
                    }
                }
            }
        }
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
        // Jobs before this time run one at a time: a window that could end the wait.
        let mut stepwise_below = 0;
        loop {
            while ops
                .get(i)
                .is_some_and(|o| self.ops.get(o).is_some_and(|r| r.done.is_some()))
            {
                i += 1;
            }
            if i >= ops.len() {
                self.settle_trace();
                return true;
            }
            if self.config.threads > 1 && self.queue.peek_at().is_none_or(|a| a >= stepwise_below) {
                match self.window(until, ops.get(i..)) {
                    par::Window::Ran => continue,
                    par::Window::Idle => return false,
                    par::Window::Stepwise(end) => stepwise_below = end,
                    par::Window::Off => {}
                }
            }
            if !self.step(until) {
                return false;
            }
        }
    }

    /// Jobs waiting in the queue (deliveries and timers, stale timers included) and datagram
    /// slots held (in flight, or free to be used again).
    pub fn queued(&self) -> (usize, usize) {
        (self.queue.len(), self.deliveries.slots.len())
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
        self.flush(i, 0);
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
        let (a4, a6) = (self.host_addr4(j), self.host_addr6(j));
        self.with(i, |n, now| {
            if stack != Stack::V6 {
                n.bootstrap(now, a4);
            }
            if stack != Stack::V4 {
                n.bootstrap(now, a6);
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

    /// Bootstraps every host from random others, a few at a time (64 every 200 virtual ms),
    /// and runs until all are connected (or `d` passes). Returns whether all connected.
    pub fn bootstrap_all(&mut self, d: Duration) -> bool {
        self.bootstrap_all_batched(d, 64)
    }

    /// [`Sim::bootstrap_all`] with `batch` hosts joining every 200 virtual ms: a big network
    /// joins in about the same virtual time as a small one, instead of every node that joined
    /// early keeping up its maintenance for minutes while the rest arrive. Each host still
    /// bootstraps from one random host before it.
    pub fn bootstrap_all_batched(&mut self, d: Duration, batch: usize) -> bool {
        if self.phase() == "run" {
            self.set_phase("bootstrap");
        }
        let n = self.hosts.len();
        let batch = batch.max(1);
        for i in 1..n {
            self.bootstrap(i, 1);
            if i % batch == 0 {
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
            let connected = |s: &Sim, i: usize| s.status(i, fam) == Some(Status::Connected);
            if self.observer.is_some() {
                // Counting looks at every node where `all` may stop early: only for a display.
                let joined = (0..n).filter(|i| connected(self, *i)).count();
                self.joined = Some((joined, self.up));
                self.observe();
            }
            if (0..n).all(|i| !self.is_up(i) || connected(self, i)) {
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

    /// Hosts up.
    pub fn up_count(&self) -> usize {
        self.up
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
        self.flush(node, 0);
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
        self.flush(node, 0);
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
        self.flush(node, 0);
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
        let node = self.take_node(i)?;
        self.annotate("crash");
        Some(node)
    }

    fn take_node(&mut self, i: usize) -> Option<Node> {
        let h = self.hosts.get_mut(i)?;
        h.timer = None;
        let node = h.node.take()?;
        self.up -= 1;
        Some(node)
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
            if h.node.is_none() {
                self.up += 1;
            }
            h.node = Some(node);
            h.incarnation += 1;
            h.timer = None;
        }
        self.annotate("restart");
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
            self.take_node(victim);
            self.annotate("churn");
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

    /// Sets the observer shown the run's [`Progress`] every few thousand jobs and at every
    /// phase change (`None`: none). It cannot reach the simulator, so the run is the same with
    /// or without it.
    pub fn set_observer(&mut self, observer: Option<Observer>) {
        self.observer = observer.map(ObserverSlot);
        self.observe();
    }

    fn observe(&mut self) {
        let Some(ObserverSlot(f)) = self.observer.as_mut() else {
            return;
        };
        let phase = self.phases.last().map_or("", |p| p.name.as_str());
        f(&Progress {
            phase,
            now: self.now,
            processed: self.processed,
            delivered: self.delivered,
            hosts: self.hosts.len(),
            up: self.up,
            joined: self.joined,
            ops_started: self.ops.started(),
            ops_done: self.ops.done(),
        });
    }

    /// Starts a phase named `name` now: operations started from here on are reported under it
    /// (see the `swarm` reports), and the observer shows it. A run starts in phase `run`;
    /// [`Sim::bootstrap_all`] starts `bootstrap` if no phase was set.
    pub fn set_phase(&mut self, name: &str) {
        self.joined = None;
        self.phases.push(Phase {
            name: name.to_string(),
            start: self.now,
            traffic: self.traffic(),
            processed: self.processed,
        });
        self.observe();
    }

    /// The current phase's name.
    pub fn phase(&self) -> &str {
        self.phases.last().map_or("", |p| p.name.as_str())
    }

    /// The phases so far, in order (the first is `run`, from the start).
    pub fn phases(&self) -> &[Phase] {
        &self.phases
    }

    /// Marks `label` on the run's timeline now; the same label again within the same virtual
    /// second adds to the last mark's count instead.
    pub fn annotate(&mut self, label: &str) {
        let now = self.now;
        if let Some(last) = self.annotations.last_mut()
            && last.label == label
            && now.as_micros() / 1_000_000 == last.at.as_micros() / 1_000_000
        {
            last.count = last.count.saturating_add(1);
            return;
        }
        if self.annotations.len() >= MAX_ANNOTATIONS {
            self.annotations_dropped += 1;
            return;
        }
        self.annotations.push(Annotation {
            at: now,
            label: label.to_string(),
            count: 1,
        });
    }

    /// The timeline's marks, and how many more were not kept (past a thousand).
    pub fn annotations(&self) -> (&[Annotation], u64) {
        (&self.annotations, self.annotations_dropped)
    }

    /// Cuts the network into the named groups (see [`Network::partition`]) and marks it on the
    /// timeline.
    pub fn partition(&mut self, groups: &[(&str, &[usize])]) {
        self.net.partition(groups);
        self.annotate("partition");
    }

    /// Heals a partition and marks it on the timeline.
    pub fn heal(&mut self) {
        self.net.heal();
        self.annotate("heal");
    }

    /// Changes the network model from now on (see [`Network::set_config`]) and marks it on the
    /// timeline as `label`.
    pub fn set_net(&mut self, config: NetConfig, label: &str) {
        self.net.set_config(config);
        self.annotate(label);
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
    fn the_queue_gives_jobs_in_time_then_sequence_order() {
        use std::collections::BinaryHeap;
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        let mut q = Queue::default();
        let mut reference = BinaryHeap::new();
        let (mut now, mut seq) = (0u64, 0u64);
        for round in 0..20_000u32 {
            // A few pushes at or after now (many at the same instant), then a pop or two.
            for _ in 0..(rng.next_u32() % 3) {
                seq += 1;
                let gaps = [0, 50_000, u64::from(rng.next_u32() % 2_000_000)];
                let at = now + gaps.get((rng.next_u32() % 3) as usize).copied().unwrap_or(0);
                q.push(Slot {
                    at,
                    seq,
                    job: round,
                    host: 0,
                });
                reference.push(std::cmp::Reverse((at, seq, round)));
            }
            for _ in 0..(rng.next_u32() % 3) {
                let want = reference.pop().map(|r| r.0);
                assert_eq!(q.peek_at(), want.map(|w| w.0));
                let got = q.pop().map(|s| (s.at, s.seq, s.job));
                assert_eq!(got, want);
                if let Some((at, _, _)) = got {
                    now = at;
                }
            }
            assert_eq!(q.len(), reference.len());
        }
        while let Some(r) = reference.pop() {
            assert_eq!(q.pop().map(|s| (s.at, s.seq, s.job)), Some(r.0));
        }
        assert!(q.pop().is_none());
        // Looking at the earliest time moves nothing: a job pushed later for an earlier time
        // (the clock stopped before the first job) still comes first.
        q.push(Slot {
            at: 900,
            seq: 1,
            job: 1,
            host: 0,
        });
        assert_eq!(q.peek_at(), Some(900));
        q.push(Slot {
            at: 600,
            seq: 2,
            job: 2,
            host: 0,
        });
        assert_eq!(q.peek_at(), Some(600));
        assert_eq!(q.pop().map(|s| s.job), Some(2));
        assert_eq!(q.pop().map(|s| s.job), Some(1));
    }

    #[test]
    fn the_trace_step_without_allocation_hashes_the_same_bytes() {
        let mut scratch = Vec::new();
        let prev = InfoHash::get("prev");
        for (from, data) in [
            (Sim::addr4(12_345), &b"d1:ad2:id20:"[..]),
            (Sim::addr6(7), &[0u8; 1500][..]),
            (Sim::addr4(0), &[][..]),
        ] {
            let now = Instant::from_micros(123_456_789);
            assert_eq!(
                trace_step_in(&mut scratch, &prev, now, &from, 99, data),
                trace_step(&prev, now, &from, 99, data)
            );
        }
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
    fn an_observer_sees_progress_and_changes_nothing() {
        use std::sync::{Arc, Mutex};
        let run = |observed: bool| {
            let mut sim = small(40, Duration::from_millis(10));
            let seen = Arc::new(Mutex::new(Vec::new()));
            if observed {
                let s = seen.clone();
                sim.set_observer(Some(Box::new(move |p: &Progress<'_>| {
                    s.lock()
                        .unwrap()
                        .push((p.phase.to_string(), p.joined, p.ops_started, p.ops_done));
                })));
            }
            assert!(sim.bootstrap_all(Duration::from_secs(60)));
            sim.set_phase("ops");
            let key = InfoHash::get("k");
            let put = sim.put(
                3,
                key,
                dht_proto::value::Value::new(0, b"v".to_vec()),
                Default::default(),
            );
            assert!(sim.run_until_done(&[put], Duration::from_secs(30)));
            let get = sim.get(30, key);
            assert!(sim.run_until_done(&[get], Duration::from_secs(30)));
            sim.set_phase("end");
            let hops = sim.op(get).unwrap().hops_first;
            let seen = seen.lock().unwrap().clone();
            (sim.trace(), sim.processed(), hops, seen)
        };
        let (plain, observed) = (run(false), run(true));
        assert_eq!((plain.0, plain.1, plain.2), (observed.0, observed.1, observed.2));
        assert!(plain.3.is_empty());
        let seen = observed.3;
        assert!(
            seen.iter()
                .any(|s| s.0 == "bootstrap" && s.1.is_some_and(|j| j.0 == 40 && j.1 == 40))
        );
        assert_eq!(seen.last().map(|s| (s.0.as_str(), s.2, s.3)), Some(("end", 2, 2)));
        assert!(
            matches!(plain.2, Some(1..=4)),
            "a get takes a few hops: {:?}",
            plain.2
        );
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
