//! The node: one owner that routes between the sub-machines. Where each protocol rule lives:
//!
//! | rule (`opendht-wire.md`) | where |
//! |---|---|
//! | receive pipeline, §2.12 | [`Node::handle_datagram`] → `receive` → `process` |
//! | martian sources, IPv4-mapped sources, §8.3 | `rpc::is_martian`, `rpc::unmap` |
//! | rate limits, §8.1 | `rpc::RateLimiter`, charged in `receive` |
//! | fragments, §1.2 | `wire::fragment` (`Reassembler`), fed in `receive`; sent by `send_request` / `send_reply` |
//! | per-peer tids, retransmission, timeouts, §2.4 | `rpc::Rpc`; timeouts handled in `on_timeout` |
//! | tokens, §2.9 | `rpc::Tokens`; checked in `on_put`, `on_listen`, `on_refresh` |
//! | answering requests, §2.5–§2.7, §7.3 | `on_request` and the `on_*` handlers below it |
//! | routing table, node states, §4.1–§4.2 | `routing::RoutingTable`; fed by `learn` |
//! | maintenance, bootstrap, status, §4.3–§4.6 | `maintenance`, `bootstrap_job`, `update_status` |
//! | public address, §4.7 | `tally_public_address` |
//! | searches: get, put, listen, §5 | `search::Search`; actions run by `run_actions` |
//! | storage, quotas, expiry, edit policy, §7 | `storage::Storage`; `store_value`, `store_local`; expiry in `handle_timeout` → `report_removed` |
//! | listen pushes to remote listeners, §2.10 | `notify_listeners` |
//! | listen results for our own listens | `apply_listen_changes` |
//! | re-replication (our departure) | `replicate` |

use core::time::Duration;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{IpAddr, SocketAddr};

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

use crate::config::Config;
use crate::event::{
    CommandError, DropReason, Event, Family, ListenToken, MessageKind, OpId, PerFamily, PutOutcome, Stats,
    Status, Transmit,
};
use crate::routing::{Confirm, MAX_AUTH_ERRORS, RoutingTable};
use crate::rpc::{self, Blacklist, Pending, Purpose, RateLimiter, Rpc, Timeout, Tokens};
use crate::search::{
    Action, Announce, ListenChange, REANNOUNCE_MARGIN, Search, Sent, Speculation, TARGET_NODES,
};
use crate::storage::{self, Evicted, RemoteListener, Storage, StoreOutcome};
use crate::value::{FieldRow, FieldValue, Query, Value, ValueId};
use crate::wire::fragment::{self, Progress, Reassembler};
use crate::wire::{
    self, Body, ErrorCode, FieldRows, Message, NodeInfo, Reply, Request, RequestKind, Tid, UpdatePayload,
    Values, Want,
};
use crate::{InfoHash, Instant};

/// A listen push is split once about this many bytes of values are in one update.
const MAX_MESSAGE_VALUE_SIZE: usize = 56 * 1024;
/// Public addresses tallied per family.
const MAX_PUBLIC_ADDRS: usize = 32;
/// First bootstrap retry, doubling up to a day.
const BOOTSTRAP_PERIOD: Duration = Duration::from_secs(10);
const BOOTSTRAP_MAX: Duration = Duration::from_secs(24 * 3600);
/// Neighbourhood maintenance runs while our bucket grew within this window.
const NEIGHBOURHOOD_WINDOW: Duration = Duration::from_secs(150);

/// Options of a put.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PutOptions {
    /// Keep the value alive (refresh it before it expires) until [`Node::cancel_put`].
    pub permanent: bool,
    /// Creation time in Unix seconds; `None`: now. Needs [`Node::set_unix_time`].
    pub created: Option<i64>,
}

impl PutOptions {
    /// A permanent put.
    pub fn permanent() -> PutOptions {
        PutOptions {
            permanent: true,
            created: None,
        }
    }
}

/// An encrypted put waiting for its recipient's public key.
#[derive(Debug)]
struct KeyWait {
    id: InfoHash,
    found: Option<crate::crypto::PublicKey>,
    puts: Vec<(OpId, InfoHash, Value, PutOptions)>,
}

/// Public keys remembered from lookups.
const MAX_KNOWN_KEYS: usize = 1024;
/// The id of the value that announces a node's public key (as OpenDHT's certificate value).
const KEY_VALUE_ID: ValueId = 1;
/// The type of that value: OpenDHT's certificate type.
const KEY_VALUE_TYPE: u16 = 8;

/// Where the public key with short id `id` is announced: SHA-1 of the id (as OpenDHT puts its
/// certificates at SHA-1 of the key's long id).
pub fn public_key_location(id: &InfoHash) -> InfoHash {
    InfoHash::get(id.as_bytes())
}

/// A stored value as exported by [`Node::export_values`].
#[derive(Clone, Debug, PartialEq)]
pub struct ExportedValue {
    /// Its key.
    pub key: InfoHash,
    /// The value.
    pub value: Value,
    /// Life left; `None` for our own permanent values.
    pub remaining: Option<Duration>,
}

#[derive(Debug)]
struct GetState {
    key: InfoHash,
    query: Query,
    /// Families still searching.
    pending: [bool; 2],
    ok: bool,
    /// Values delivered: id and a hash of their content.
    seen: BTreeMap<ValueId, InfoHash>,
}

#[derive(Debug)]
struct PutState {
    key: InfoHash,
    vid: ValueId,
    pending: [bool; 2],
    outcome: PutOutcome,
}

#[derive(Debug)]
struct ListenState {
    key: InfoHash,
    query: Query,
    /// Values reported, and how many sources (nodes, and our own storage) report each.
    values: BTreeMap<ValueId, (Value, u32)>,
}

type SearchKey = (Family, InfoHash);

/// The sans-IO DHT node. See the crate docs for the run loop and `docs/architecture.md` for
/// the contract.
#[derive(Debug)]
pub struct Node {
    config: Config,
    id: InfoHash,
    rng: ChaCha20Rng,
    secret_rng: ChaCha20Rng,
    rpc: Rpc,
    tokens: Tokens,
    limiter: RateLimiter,
    blacklist: Blacklist,
    reassembler: Reassembler,
    tables: PerFamily<RoutingTable>,
    storage: Storage,
    searches: BTreeMap<SearchKey, Search>,
    search_timers: BTreeSet<(Instant, SearchKey)>,
    search_wakeups: BTreeMap<SearchKey, Instant>,
    dirty: BTreeSet<SearchKey>,
    /// Listen socket ids we handed out (per peer address), and the search each belongs to.
    sockets: BTreeMap<(SocketAddr, Tid), SearchKey>,
    gets: BTreeMap<OpId, GetState>,
    puts: BTreeMap<OpId, PutState>,
    listens: BTreeMap<ListenToken, ListenState>,
    next_op: u64,
    transmits: VecDeque<(SocketAddr, Vec<u8>)>,
    events: VecDeque<Event>,
    stats: Stats,
    status: PerFamily<Status>,
    public_addrs: PerFamily<Vec<(IpAddr, u32)>>,
    bootstrap: Vec<SocketAddr>,
    bootstrap_at: Option<Instant>,
    bootstrap_period: Duration,
    confirm_at: Instant,
    expire_at: Instant,
    replicate_at: Instant,
    /// (monotonic, Unix seconds) at one moment, when the driver gave us the wall clock.
    unix: Option<(Instant, i64)>,
    shutting_down: bool,
    shutdown_reported: bool,
    /// Our own gets and puts that the user did not ask for (key announcement and lookups).
    internal_ops: BTreeSet<OpId>,
    /// Their events, handled after the current input.
    internal_events: Vec<Event>,
    /// Public key lookups in progress, by their get.
    key_waits: BTreeMap<OpId, KeyWait>,
    /// Public keys found, by short id (bounded).
    known_keys: BTreeMap<InfoHash, crate::crypto::PublicKey>,
    /// Our public key has been announced.
    key_announced: bool,
    last_input: Instant,
    /// Whether searches should explore as OpenDHT's do, or frugally (see [`Speculation`]).
    speculation: Speculation,
}

#[cfg(test)]
mod tests;

fn family_index(f: Family) -> usize {
    f.index()
}

impl Node {
    /// A node with `config`, its randomness drawn from `seed`, started at `now`.
    pub fn new(config: Config, seed: [u8; 32], now: Instant) -> Node {
        let mut rng = ChaCha20Rng::from_seed(seed);
        rng.set_stream(1);
        let mut secret_rng = ChaCha20Rng::from_seed(seed);
        secret_rng.set_stream(2);
        let id = config.node_id.unwrap_or_else(|| InfoHash::random(&mut rng));
        let limits = storage::Limits {
            max_keys: config.max_store_keys,
            max_values_per_key: config.max_values_per_key,
            max_remote_bytes: config.max_store_size,
            max_bytes_per_ip: config.max_store_size_per_ip,
            max_local_bytes: config.max_local_store_size,
            max_listeners_per_key: config.max_listeners_per_key,
            max_listeners: config.max_listeners,
        };
        let confirm_at = now + Duration::from_millis(3000 + rng.next_u64() % 2000);
        let expire_at = now + Duration::from_secs(120 + rng.next_u64() % 240);
        Node {
            rpc: Rpc::new(config.max_pending_requests),
            tokens: Tokens::new(now, &mut secret_rng),
            limiter: RateLimiter::new(
                now,
                config.max_req_per_sec,
                config.max_peer_req_per_sec,
                config.max_rate_limited_ips,
            ),
            blacklist: Blacklist::new(config.max_blacklist),
            reassembler: Reassembler::new(config.reassembly.clone()),
            tables: PerFamily::new(
                RoutingTable::new(Family::V4, id, config.bootstrap_mode),
                RoutingTable::new(Family::V6, id, config.bootstrap_mode),
            ),
            storage: Storage::new(limits),
            searches: BTreeMap::new(),
            search_timers: BTreeSet::new(),
            search_wakeups: BTreeMap::new(),
            dirty: BTreeSet::new(),
            sockets: BTreeMap::new(),
            gets: BTreeMap::new(),
            puts: BTreeMap::new(),
            listens: BTreeMap::new(),
            next_op: 1,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
            status: PerFamily::new(Status::Disconnected, Status::Disconnected),
            public_addrs: PerFamily::default(),
            bootstrap: Vec::new(),
            bootstrap_at: None,
            bootstrap_period: BOOTSTRAP_PERIOD,
            confirm_at,
            expire_at,
            replicate_at: now + config.replicate_period,
            unix: None,
            shutting_down: false,
            shutdown_reported: false,
            internal_ops: BTreeSet::new(),
            internal_events: Vec::new(),
            key_waits: BTreeMap::new(),
            known_keys: BTreeMap::new(),
            key_announced: false,
            last_input: now,
            speculation: Speculation::new(),
            rng,
            secret_rng,
            id,
            config,
        }
    }

    // -----------------------------------------------------------------------------------------
    // Getters

    /// Our node id.
    pub fn node_id(&self) -> InfoHash {
        self.id
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Connectivity of `family`.
    pub fn status(&self, family: Family) -> Status {
        self.status[family]
    }

    /// Counters and gauges.
    pub fn stats(&self) -> Stats {
        let mut s = self.stats.clone();
        let now = self.last_now();
        let count = |t: &RoutingTable| [t.len(), t.nodes().filter(|n| n.is_good(now)).count()];
        let [n4, g4] = count(&self.tables.v4);
        let [n6, g6] = count(&self.tables.v6);
        s.nodes = [n4, n6];
        s.good_nodes = [g4, g6];
        s.searches = self.searches.len();
        s.stored_keys = self.storage.keys();
        s.stored_values = self.storage.values();
        s.stored_bytes = self.storage.bytes();
        s.remote_listeners = self.storage.listeners();
        s.pending_requests = self.rpc.len();
        s.operations = self.gets.len() + self.puts.len() + self.listens.len();
        s
    }

    fn last_now(&self) -> Instant {
        // Gauges are read between inputs; the last input's time is the node's present.
        self.last_input
    }

    /// Our public addresses as peers report them, most reported first (ports unknown).
    pub fn public_addresses(&self, family: Family) -> Vec<IpAddr> {
        let mut v = self.public_addrs[family].clone();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v.into_iter().map(|(ip, _)| ip).collect()
    }

    /// The first of [`Node::public_addresses`], without building the list (this runs for every
    /// reply that reports our address).
    fn top_public_address(&self, family: Family) -> Option<IpAddr> {
        self.public_addrs[family]
            .iter()
            .min_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)))
            .map(|e| e.0)
    }

    /// The routing table of `family`, one bucket per paragraph, for display.
    pub fn routing_table_text(&self, family: Family) -> String {
        self.tables[family].describe(self.last_input)
    }

    /// Every search and its nodes, for display.
    pub fn searches_text(&self) -> String {
        self.searches
            .values()
            .map(|s| s.describe(self.last_input))
            .collect()
    }

    /// Values stored here at `key`.
    pub fn local_values(&self, key: &InfoHash) -> Vec<Value> {
        self.storage
            .entries(key)
            .iter()
            .map(|s| s.value.clone())
            .collect()
    }

    /// Heap bytes held by the routing tables, storage and searches (an estimate, for the
    /// memory benchmark).
    pub fn heap_bytes(&self) -> usize {
        let tables: usize = self.tables.iter().map(RoutingTable::heap_bytes).sum();
        let values: usize = self.storage.bytes() + self.storage.values() * size_of::<storage::Stored>();
        let searches = self.searches.len() * size_of::<Search>();
        tables + values + searches
    }

    // -----------------------------------------------------------------------------------------
    // Wall clock

    /// Tells the node the Unix time (seconds) at `now`. Creation times sent to and received
    /// from peers (`c`) are converted with it; without it, every value counts as created on
    /// arrival.
    pub fn set_unix_time(&mut self, now: Instant, unix_secs: i64) {
        self.unix = Some((now, unix_secs));
    }

    fn unix_at(&self, t: Instant) -> Option<i64> {
        let (base, secs) = self.unix?;
        let delta = if t >= base {
            (t - base).as_secs() as i64
        } else {
            -((base - t).as_secs() as i64)
        };
        Some(secs + delta)
    }

    /// A creation time received as `c`: never later than now.
    fn instant_of_unix(&self, now: Instant, c: Option<i64>) -> Instant {
        match (c, self.unix_at(now)) {
            (Some(c), Some(unix_now)) if c < unix_now => {
                now.saturating_sub_duration(Duration::from_secs((unix_now - c) as u64))
            }
            _ => now,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Outputs

impl Node {
    /// The next datagram to send, written into `buf` (cleared first). Call until `None` after
    /// every input and command.
    pub fn poll_transmit(&mut self, _now: Instant, buf: &mut Vec<u8>) -> Option<Transmit> {
        let (destination, data) = self.transmits.pop_front()?;
        buf.clear();
        buf.extend_from_slice(&data);
        Some(Transmit {
            destination,
            len: data.len(),
        })
    }

    /// The next event. Call until `None` after every input and command.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Node::handle_timeout`] must next be called; `None`: only on new input.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        // Called after every input: folded by hand, not through an array of options (which the
        // compiler copies before it iterates).
        fn earliest(a: Instant, b: Option<Instant>) -> Instant {
            match b {
                Some(b) if b < a => b,
                _ => a,
            }
        }
        let mut t = self
            .tokens
            .next_rotation()
            .min(self.confirm_at)
            .min(self.expire_at);
        t = earliest(t, self.rpc.next_deadline());
        t = earliest(t, self.reassembler.next_deadline());
        t = earliest(t, self.storage.next_expiry());
        t = earliest(t, self.bootstrap_at);
        t = earliest(t, self.config.replicate.then_some(self.replicate_at));
        t = earliest(t, self.search_timers.first().map(|t| t.0));
        if !self.dirty.is_empty() {
            t = t.min(self.last_input);
        }
        Some(t)
    }

    fn emit(&mut self, mut e: Event) {
        if let Some(me) = &self.config.identity {
            if let Event::Values { values, .. }
            | Event::ListenAdded { values, .. }
            | Event::ListenExpired { values, .. } = &mut e
                && values.iter().any(Value::is_encrypted)
            {
                let before = values.len();
                let opened: Vec<Value> = core::mem::take(values)
                    .into_iter()
                    .filter_map(|v| {
                        if v.is_encrypted() {
                            crate::crypto::decrypt_value(&v, me).ok()
                        } else {
                            Some(v)
                        }
                    })
                    .collect();
                self.stats.unreadable += (before - opened.len()) as u64;
                *values = opened;
            }
            if let Event::Values { values, .. }
            | Event::ListenAdded { values, .. }
            | Event::ListenExpired { values, .. } = &e
                && values.is_empty()
            {
                return;
            }
        }
        if let Event::Values { op, .. } | Event::GetDone { op, .. } | Event::PutDone { op, .. } = &e
            && self.internal_ops.contains(op)
        {
            self.internal_events.push(e);
            return;
        }
        if self.events.len() >= self.config.max_event_queue {
            self.stats.event_overflow += 1;
            return;
        }
        self.events.push_back(e);
    }

    fn queue(&mut self, to: SocketAddr, data: Vec<u8>) {
        if self.transmits.len() >= self.config.max_transmit_queue {
            self.stats.transmit_overflow += 1;
            return;
        }
        self.transmits.push_back((to, data));
    }

    fn stamp(&self, mut msg: Message) -> Message {
        msg.network = self.config.network;
        msg.is_client = self.config.is_client;
        msg
    }

    /// Encodes `msg` (stamped) into an exact-size buffer, through a scratch buffer of the
    /// thread's that keeps its capacity: a message costs one allocation, and a request kept for
    /// retransmission holds no spare capacity. (A buffer per thread, not per node: a thread
    /// may carry thousands of nodes.)
    fn encode(&self, msg: Message) -> Vec<u8> {
        thread_local! {
            static SCRATCH: core::cell::RefCell<Vec<u8>> = const { core::cell::RefCell::new(Vec::new()) };
        }
        let msg = self.stamp(msg);
        SCRATCH.with(|s| match s.try_borrow_mut() {
            Ok(mut buf) => {
                buf.clear();
                crate::wire::encode(&msg, &mut buf);
                let out = buf.to_vec();
                if buf.capacity() > 4096 {
                    // A big message passed: do not keep its buffer.
                    *buf = Vec::new();
                }
                out
            }
            Err(_) => msg.encode_to_vec(),
        })
    }

    fn send_message(&mut self, to: SocketAddr, msg: Message, kind: MessageKind) {
        let data = self.encode(msg);
        self.stats.count_out(kind);
        self.queue(to, data);
    }

    /// Value-data datagrams carrying `data` for the message `tid`.
    fn value_parts(&self, tid: Tid, data: &[Vec<u8>]) -> Vec<Vec<u8>> {
        fragment::slices(data)
            .map(|parts| {
                self.stamp(Message {
                    tid,
                    network: 0,
                    is_client: false,
                    body: Body::ValueData(parts),
                })
                .encode_to_vec()
            })
            .collect()
    }

    /// Sends a request and records it; `None` when the pending table is full.
    fn send_request(
        &mut self,
        now: Instant,
        to: SocketAddr,
        node: InfoHash,
        kind: RequestKind,
        purpose: Purpose,
        data: &[Vec<u8>],
    ) -> Option<Tid> {
        if self.rpc.is_full() {
            self.stats.pending_overflow += 1;
            return None;
        }
        let tid = self.rpc.next_tid(to, &mut self.rng);
        let mk = request_kind(&kind);
        let packet = self.encode(Message::request(tid, self.id, kind));
        let parts = self.value_parts(tid, data);
        self.stats.count_out(mk);
        self.queue(to, packet.clone());
        for p in &parts {
            self.stats.count_out(MessageKind::ValueData);
            self.queue(to, p.clone());
        }
        self.rpc
            .start(now, &mut self.rng, to, tid, node, purpose, packet, parts);
        Some(tid)
    }

    fn send_reply(&mut self, to: SocketAddr, tid: Tid, reply: Reply, data: &[Vec<u8>]) {
        self.send_message(to, Message::reply(tid, reply), MessageKind::Reply);
        for p in self.value_parts(tid, data) {
            self.stats.count_out(MessageKind::ValueData);
            self.queue(to, p);
        }
    }

    fn send_error(&mut self, to: SocketAddr, tid: Tid, code: u16, text: &str) {
        self.stats.errors_sent += 1;
        self.send_message(to, Message::error(tid, self.id, code, text), MessageKind::Error);
    }

    fn plain_reply(&self, to: &SocketAddr) -> Reply {
        Reply {
            id: self.id,
            addr: Some(to.ip()),
            ..Reply::default()
        }
    }
}

fn request_kind(k: &RequestKind) -> MessageKind {
    match k {
        RequestKind::Ping => MessageKind::Ping,
        RequestKind::Find { .. } => MessageKind::Find,
        RequestKind::Get { .. } => MessageKind::Get,
        RequestKind::Listen { .. } => MessageKind::Listen,
        RequestKind::Put { .. } => MessageKind::Put,
        RequestKind::Refresh { .. } => MessageKind::Refresh,
        RequestKind::Update { .. } => MessageKind::Update,
    }
}

fn message_kind(m: &Message) -> MessageKind {
    match &m.body {
        Body::Request(r) => request_kind(&r.kind),
        Body::Reply(_) | Body::LegacyUpdate(_) => MessageKind::Reply,
        Body::Error(_) => MessageKind::Error,
        Body::ValueData(_) => MessageKind::ValueData,
    }
}

// ---------------------------------------------------------------------------------------------
// Receive pipeline (§2.12)

impl Node {
    /// Feeds one datagram received from `from`. Bad input is dropped and counted, never an error.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        self.last_input = self.last_input.max(now);
        self.receive(now, from, data);
        self.after_input(now);
    }

    fn receive(&mut self, now: Instant, from: SocketAddr, data: &[u8]) {
        let from = rpc::unmap(from);
        if rpc::is_martian(&from) {
            return self.stats.drop(DropReason::Martian);
        }
        if self.blacklist.contains(&from) {
            return self.stats.drop(DropReason::Blacklisted);
        }
        if data.len() > wire::MAX_DATAGRAM {
            return self.stats.drop(DropReason::TooLarge);
        }
        let msg = match wire::decode(data) {
            Ok(m) => m,
            Err(_) => return self.stats.drop(DropReason::Malformed),
        };
        if msg.network != self.config.network {
            return self.stats.drop(DropReason::WrongNetwork);
        }
        self.stats.count_in(message_kind(&msg));
        if let Body::ValueData(parts) = msg.body {
            // The first packet of a session is charged like a request.
            if !self.reassembler.has_session(from, msg.tid) && !self.admit(now, &from) {
                return;
            }
            match self.reassembler.on_parts(now, from, msg.tid, parts) {
                Ok(Progress::Complete(m)) => self.process(now, from, m),
                Ok(Progress::Pending { .. }) => {}
                Err(_) => self.stats.drop(DropReason::Reassembly),
            }
            return;
        }
        match msg.sender_id() {
            Some(id) if *id != self.id && !id.is_zero() => {}
            _ => return self.stats.drop(DropReason::BadSenderId),
        }
        let is_request = matches!(msg.body, Body::Request(_));
        if fragment::is_fragmented(&msg) {
            if is_request {
                if !self.reassembler.has_session(from, msg.tid) && !self.admit(now, &from) {
                    return;
                }
            } else if self.rpc.get(from, msg.tid).is_none() {
                return self.stats.drop(DropReason::Unexpected);
            }
            match self.reassembler.on_header(now, from, msg) {
                Ok(Progress::Complete(m)) => self.process(now, from, m),
                Ok(Progress::Pending { .. }) => {}
                Err(_) => self.stats.drop(DropReason::Reassembly),
            }
            return;
        }
        if is_request && !self.admit(now, &from) {
            return;
        }
        self.process(now, from, msg);
    }

    fn admit(&mut self, now: Instant, from: &SocketAddr) -> bool {
        match self.limiter.admit(now, &from.ip()) {
            Ok(()) => true,
            Err(rpc::Refusal::Peer) => {
                self.stats.drop(DropReason::RateLimitedPeer);
                false
            }
            Err(rpc::Refusal::Global) => {
                self.stats.drop(DropReason::RateLimitedGlobal);
                false
            }
        }
    }

    fn process(&mut self, now: Instant, from: SocketAddr, msg: Message) {
        let tid = msg.tid;
        match msg.body {
            Body::Request(req) => {
                if !msg.is_client {
                    self.learn_sender(now, req.id, from, Confirm::Requested);
                }
                self.on_request(now, from, tid, req);
            }
            Body::Reply(reply) => {
                let pending = self.rpc.complete(from, tid);
                if !msg.is_client {
                    let confirm = if pending.is_some() {
                        Confirm::Replied
                    } else {
                        Confirm::Requested
                    };
                    self.learn_sender(now, reply.id, from, confirm);
                }
                if let Some(p) = pending {
                    if let Some(ip) = reply.addr {
                        self.tally_public_address(ip);
                    }
                    self.on_reply(now, from, tid, p, reply);
                }
            }
            Body::Error(err) => {
                if let Some(p) = self.rpc.complete(from, tid) {
                    self.on_error(now, from, p, err.code);
                }
            }
            // Protocol v0 notices: we never open v0 listens, so nothing can expect them.
            Body::LegacyUpdate(_) | Body::ValueData(_) => {}
        }
    }

    fn learn_sender(&mut self, now: Instant, id: InfoHash, from: SocketAddr, confirm: Confirm) {
        let mut pings = Vec::new();
        let rpc = &self.rpc;
        let t = &mut self.tables[Family::of(&from)];
        let added = t.on_new_node(now, id, from, confirm, &|a| rpc.has_pending_to(*a), &mut pings);
        if added {
            t.revive(&id);
            self.offer_to_searches(now, NodeInfo { id, addr: from });
        }
        self.ping_all(now, pings);
    }

    /// Nodes from a reply's `n4`/`n6` (§2.8): into the routing table at confirm level 0.
    fn learn(&mut self, now: Instant, sender: SocketAddr, nodes: &[NodeInfo]) -> Vec<NodeInfo> {
        let mut out = Vec::with_capacity(nodes.len());
        let mut pings = Vec::new();
        for n in nodes {
            let mut addr = n.addr;
            if addr.ip().is_loopback() && Family::of(&addr) == Family::of(&sender) {
                addr = SocketAddr::new(sender.ip(), addr.port());
            }
            if n.id == self.id || rpc::is_martian(&addr) || self.blacklist.contains(&addr) {
                continue;
            }
            let rpc = &self.rpc;
            let t = &mut self.tables[Family::of(&addr)];
            t.on_new_node(
                now,
                n.id,
                addr,
                Confirm::Learned,
                &|a| rpc.has_pending_to(*a),
                &mut pings,
            );
            out.push(NodeInfo { id: n.id, addr });
        }
        self.ping_all(now, pings);
        out
    }

    /// A newly known node joins the searches it is close to (`trySearchInsert`).
    fn offer_to_searches(&mut self, now: Instant, info: NodeInfo) {
        let fam = Family::of(&info.addr);
        let mut all_changes = Vec::new();
        for (k, s) in self
            .searches
            .range_mut((fam, InfoHash::ZERO)..=(fam, InfoHash([0xff; 20])))
        {
            let mut changes = Vec::new();
            if s.insert_node(now, info, false, &mut changes) {
                self.dirty.insert(*k);
            }
            if !changes.is_empty() {
                all_changes.push((k.1, changes));
            }
        }
        for (key, changes) in all_changes {
            self.apply_listen_changes(key, changes);
        }
    }

    fn ping_all(&mut self, now: Instant, pings: Vec<NodeInfo>) {
        for p in pings {
            if !self.rpc.has_pending_to(p.addr) {
                self.send_request(now, p.addr, p.id, RequestKind::Ping, Purpose::Ping, &[]);
            }
        }
    }

    fn tally_public_address(&mut self, ip: IpAddr) {
        let fam = Family::of_ip(&ip);
        let before = self.top_public_address(fam);
        let list = &mut self.public_addrs[fam];
        if let Some(e) = list.iter_mut().find(|e| e.0 == ip) {
            e.1 = e.1.saturating_add(1);
        } else if list.len() < MAX_PUBLIC_ADDRS {
            list.push((ip, 1));
        }
        let after = self.top_public_address(fam);
        if after != before
            && let Some(addr) = after
        {
            self.emit(Event::PublicAddressChanged { family: fam, addr });
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Answering requests (§2.5–§2.7, §7.3)

impl Node {
    fn on_request(&mut self, now: Instant, from: SocketAddr, tid: Tid, req: Request) {
        match req.kind {
            RequestKind::Ping => {
                let r = self.plain_reply(&from);
                self.send_reply(from, tid, r, &[]);
            }
            RequestKind::Find { target, want } => {
                let r = self.nodes_reply(now, &from, &target, want);
                self.send_reply(from, tid, r, &[]);
            }
            RequestKind::Get { key, query, want } => self.on_get(now, from, tid, key, query, want),
            RequestKind::Put {
                key,
                values,
                created,
                token,
            } => self.on_put(now, from, tid, key, values, created, &token),
            RequestKind::Listen {
                key,
                token,
                sid,
                query,
                ..
            } => self.on_listen(now, from, tid, req.id, key, &token, sid, query),
            RequestKind::Refresh { key, vid, token } => self.on_refresh(now, from, tid, key, vid, &token),
            RequestKind::Update {
                sid, token, payload, ..
            } => self.on_update(now, from, tid, req.id, sid, token, payload),
        }
    }

    /// A reply carrying the closest good nodes of the wanted families and a token.
    fn nodes_reply(&self, now: Instant, from: &SocketAddr, target: &InfoHash, want: Option<Want>) -> Reply {
        let want = want.unwrap_or(match Family::of(from) {
            Family::V4 => Want {
                ipv4: true,
                ipv6: false,
            },
            Family::V6 => Want {
                ipv4: false,
                ipv6: true,
            },
        });
        let mut r = self.plain_reply(from);
        if want.ipv4 {
            r.nodes4 = self.tables[Family::V4].closest(now, target, TARGET_NODES, true);
        }
        if want.ipv6 {
            r.nodes6 = self.tables[Family::V6].closest(now, target, TARGET_NODES, true);
        }
        r.token = Some(self.tokens.make(from));
        r
    }

    fn on_get(
        &mut self,
        now: Instant,
        from: SocketAddr,
        tid: Tid,
        key: InfoHash,
        query: Query,
        want: Option<Want>,
    ) {
        if key.is_zero() {
            return self.send_error(
                from,
                tid,
                ErrorCode::NON_AUTHORITATIVE_INFORMATION,
                "Get_values with no info_hash",
            );
        }
        let mut r = self.nodes_reply(now, &from, &key, want);
        let mut budget = self.config.max_reply_values_bytes;
        let values: Vec<Value> = self
            .storage
            .get(&key, &query)
            .into_iter()
            .take_while(|v| {
                let size = v.size();
                let fits = size <= budget;
                budget = budget.saturating_sub(size);
                fits
            })
            .cloned()
            .collect();
        let mut data = Vec::new();
        if !query.select.is_empty() {
            // A select is answered with the selected fields only (`fileds`).
            let fields = query.select.sorted();
            let rows = values
                .iter()
                .map(|v| FieldRow {
                    values: fields.iter().map(|f| FieldValue::of(*f, v)).collect(),
                })
                .collect();
            r.fields = Some(FieldRows { fields, rows });
        } else if !values.is_empty() {
            let out = fragment::prepare(&values);
            r.values = Some(out.values);
            data = out.data;
        }
        self.send_reply(from, tid, r, &data);
    }

    /// The checks a put or listen passes first (§7.3): a key (else 203) and a token issued to
    /// this address (else 401). Sends the error and returns false when one fails.
    fn write_allowed(
        &mut self,
        from: SocketAddr,
        tid: Tid,
        key: &InfoHash,
        token: &[u8],
        what: &str,
    ) -> bool {
        if key.is_zero() {
            let text = format!("{what} with no info_hash");
            self.send_error(from, tid, ErrorCode::NON_AUTHORITATIVE_INFORMATION, &text);
            return false;
        }
        if !self.tokens.check(&from, token) {
            let text = format!("{what} with wrong token");
            self.send_error(from, tid, ErrorCode::UNAUTHORIZED, &text);
            return false;
        }
        true
    }

    #[allow(clippy::too_many_arguments)]
    fn on_put(
        &mut self,
        now: Instant,
        from: SocketAddr,
        tid: Tid,
        key: InfoHash,
        values: Values,
        created: Option<i64>,
        token: &[u8],
    ) {
        if !self.write_allowed(from, tid, &key, token, "Put") {
            return;
        }
        // Values arrive inline here: fragmented ones were reassembled first.
        let Values::Inline(values) = values else { return };
        // §7.3: we are not among the closest nodes we know for the key: drop silently.
        let closest = self.tables[Family::of(&from)].closest(now, &key, 14, true);
        let too_far = closest.len() >= TARGET_NODES
            && closest
                .last()
                .is_some_and(|far| key.xor_cmp(&far.id, &self.id) == core::cmp::Ordering::Less);
        let created = self.instant_of_unix(now, created);
        for v in values {
            if v.id == 0 {
                return self.send_error(
                    from,
                    tid,
                    ErrorCode::NON_AUTHORITATIVE_INFORMATION,
                    "Put with invalid id",
                );
            }
            let vid = v.id;
            if crate::crypto::check_signature(&v) == crate::crypto::SignatureCheck::Invalid {
                // Acknowledged all the same (OpenDHT's rule), but never stored.
                self.stats.bad_signatures += 1;
                self.stats.store_refused += 1;
            } else if too_far {
                self.stats.store_refused += 1;
            } else {
                self.store_value(now, key, v, created, Some(from));
            }
            let mut r = self.plain_reply(&from);
            r.vid = Some(vid);
            self.send_reply(from, tid, r, &[]);
        }
    }

    /// Stores a value (ours when `source` is `None`) and tells listeners.
    fn store_value(
        &mut self,
        now: Instant,
        key: InfoHash,
        v: Value,
        created: Instant,
        source: Option<SocketAddr>,
    ) -> bool {
        let ty = self.config.value_type(v.value_type).clone();
        let Some(v) = ty.check_store(&key, v, source) else {
            self.stats.store_refused += 1;
            return false;
        };
        let expiration = Some(created + ty.expiration);
        let fresh = self.storage.get_value(&key, v.id).is_none();
        // Most stored values have no one listening: no copies made for them.
        let vid = v.id;
        let heard =
            !self.storage.listeners_of(&key).is_empty() || self.listens.values().any(|l| l.key == key);
        let copy = heard.then(|| v.clone());
        let mut evicted = Vec::new();
        let outcome = self
            .storage
            .store(now, key, v, created, expiration, source, &mut evicted);
        self.on_evicted(now, evicted);
        match outcome {
            StoreOutcome::Stored => {
                if fresh && self.config.replicate {
                    // The putter reaches the closest nodes itself; we re-announce only once
                    // that set changes.
                    let fp = self.closest_fingerprint(now, &key);
                    self.storage.set_replicated(&key, fp);
                }
                if let Some(v) = copy {
                    self.tell_stored(now, key, v, fresh);
                }
                true
            }
            StoreOutcome::Refreshed => {
                self.notify_listeners(now, key, Notice::Refreshed(vec![vid]));
                true
            }
            StoreOutcome::Refused => {
                self.stats.store_refused += 1;
                false
            }
        }
    }

    /// A value newly stored at `key` (`fresh`: no copy of it was there before): remote
    /// listeners and our own listens hear of it.
    fn tell_stored(&mut self, now: Instant, key: InfoHash, v: Value, fresh: bool) {
        self.notify_listeners(now, key, Notice::Values(vec![v.clone()]));
        self.apply_listen_changes(
            key,
            vec![ListenChange::Added {
                value: v,
                first: fresh,
            }],
        );
    }

    fn on_evicted(&mut self, now: Instant, evicted: Evicted) {
        self.stats.store_evicted += evicted.len() as u64;
        self.report_removed(now, evicted);
    }

    /// Values gone from storage: remote listeners get `exp`, our listens lose a source.
    fn report_removed(&mut self, now: Instant, removed: Evicted) {
        let mut by_key: BTreeMap<InfoHash, Vec<ValueId>> = BTreeMap::new();
        for (k, v) in removed {
            by_key.entry(k).or_default().push(v.id);
        }
        for (k, vids) in by_key {
            self.apply_listen_changes(k, vids.iter().map(|v| ListenChange::Removed(*v)).collect());
            self.notify_listeners(now, k, Notice::Expired(vids));
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_listen(
        &mut self,
        now: Instant,
        from: SocketAddr,
        tid: Tid,
        node: InfoHash,
        key: InfoHash,
        token: &[u8],
        sid: Tid,
        query: Query,
    ) {
        if !self.write_allowed(from, tid, &key, token, "Listen") {
            return;
        }
        let l = RemoteListener {
            node,
            addr: from,
            sid,
            query: query.clone(),
            last: now,
        };
        let added = self.storage.add_listener(now, key, l.clone());
        let mut r = self.plain_reply(&from);
        r.token = Some(self.tokens.make(&from));
        self.send_reply(from, tid, r, &[]);
        match added {
            Some(true) => {
                let values: Vec<Value> = self.storage.get(&key, &query).into_iter().cloned().collect();
                if !values.is_empty() {
                    self.push_to(now, &l, key, Notice::Values(values));
                }
            }
            Some(false) => {}
            None => self.stats.store_refused += 1,
        }
    }

    fn on_refresh(
        &mut self,
        now: Instant,
        from: SocketAddr,
        tid: Tid,
        key: InfoHash,
        vid: ValueId,
        token: &[u8],
    ) {
        if !self.tokens.check(&from, token) {
            return self.send_error(from, tid, ErrorCode::UNAUTHORIZED, "Refresh with wrong token");
        }
        let life = self
            .storage
            .get_value(&key, vid)
            .map(|s| self.config.value_type(s.value.value_type).expiration)
            .unwrap_or(Duration::ZERO);
        if self.storage.refresh(now, &key, vid, life).is_none() {
            return self.send_error(
                from,
                tid,
                ErrorCode::NOT_FOUND,
                "Access operation for unknown storage",
            );
        }
        // OpenDHT tells listeners even when the value is not stored here; so do we.
        self.notify_listeners(now, key, Notice::Refreshed(vec![vid]));
        let mut r = self.plain_reply(&from);
        r.vid = Some(vid);
        self.send_reply(from, tid, r, &[]);
    }

    /// A push from a node we listen to (§2.10 step 4). Always answered, even for an unknown sid.
    #[allow(clippy::too_many_arguments)]
    fn on_update(
        &mut self,
        now: Instant,
        from: SocketAddr,
        tid: Tid,
        node: InfoHash,
        sid: Tid,
        token: Option<Vec<u8>>,
        payload: UpdatePayload,
    ) {
        let r = self.plain_reply(&from);
        self.send_reply(from, tid, r, &[]);
        let Some(&skey) = self.sockets.get(&(from, sid)) else {
            return;
        };
        let (values, refreshed, expired) = match payload {
            UpdatePayload::Values {
                values: Values::Inline(mut v),
                ..
            } => {
                self.drop_forged(&mut v);
                (v, Vec::new(), Vec::new())
            }
            UpdatePayload::Values { .. } => return,
            UpdatePayload::Refreshed(r) => (Vec::new(), r, Vec::new()),
            UpdatePayload::Expired(e) => (Vec::new(), Vec::new(), e),
        };
        let max_cache = self.config.max_listen_cache;
        let types = &self.config;
        let Some(s) = self.searches.get_mut(&skey) else {
            return;
        };
        if !s.has_socket(&node, sid) {
            return;
        }
        let changes = s.on_update(
            now,
            &node,
            sid,
            token.as_ref(),
            values,
            &refreshed,
            &expired,
            max_cache,
            &|v| types.value_type(v.value_type).expiration,
        );
        let key = s.key;
        self.dirty.insert(skey);
        self.apply_listen_changes(key, changes);
    }
}

/// What a storer tells its remote listeners.
#[derive(Debug)]
enum Notice {
    Values(Vec<Value>),
    Refreshed(Vec<ValueId>),
    Expired(Vec<ValueId>),
}

impl Node {
    /// Tells every remote listener of `key` (§2.10 step 5).
    fn notify_listeners(&mut self, now: Instant, key: InfoHash, notice: Notice) {
        let listeners: Vec<RemoteListener> = self.storage.listeners_of(&key).to_vec();
        if listeners.is_empty() {
            return;
        }
        for l in &listeners {
            let n = match &notice {
                Notice::Values(v) => {
                    let v: Vec<Value> = v.iter().filter(|v| l.query.where_.matches(v)).cloned().collect();
                    if v.is_empty() {
                        continue;
                    }
                    Notice::Values(v)
                }
                Notice::Refreshed(v) => Notice::Refreshed(v.clone()),
                Notice::Expired(v) => Notice::Expired(v.clone()),
            };
            self.push_to(now, l, key, n);
        }
    }

    /// Sends `notice` to one listener as `update` requests, values split in ~56 KiB batches.
    fn push_to(&mut self, now: Instant, l: &RemoteListener, key: InfoHash, notice: Notice) {
        let token = Some(self.tokens.make(&l.addr));
        match notice {
            Notice::Values(values) => {
                let mut batch: Vec<Value> = Vec::new();
                let mut size = 0;
                let mut batches = Vec::new();
                for v in values {
                    let s = v.size();
                    if !batch.is_empty() && size + s > MAX_MESSAGE_VALUE_SIZE {
                        batches.push(core::mem::take(&mut batch));
                        size = 0;
                    }
                    size += s;
                    batch.push(v);
                }
                if !batch.is_empty() {
                    batches.push(batch);
                }
                for b in batches {
                    let out = fragment::prepare(&b);
                    let kind = RequestKind::Update {
                        key,
                        sid: l.sid,
                        version: Some(1),
                        token: token.clone(),
                        payload: UpdatePayload::Values {
                            values: out.values,
                            created: None,
                        },
                    };
                    self.send_request(now, l.addr, l.node, kind, Purpose::Update, &out.data);
                }
            }
            Notice::Refreshed(ids) | Notice::Expired(ids) if ids.is_empty() => {}
            Notice::Refreshed(ids) => self.push_notice(now, l, token, UpdatePayload::Refreshed(ids)),
            Notice::Expired(ids) => self.push_notice(now, l, token, UpdatePayload::Expired(ids)),
        }
    }

    fn push_notice(
        &mut self,
        now: Instant,
        l: &RemoteListener,
        token: Option<Vec<u8>>,
        payload: UpdatePayload,
    ) {
        let kind = RequestKind::Update {
            key: InfoHash::ZERO,
            sid: l.sid,
            version: None,
            token,
            payload,
        };
        self.send_request(now, l.addr, l.node, kind, Purpose::Update, &[]);
    }
}

// ---------------------------------------------------------------------------------------------
// Replies, errors and timeouts of our requests (§2.4, §2.7)

impl Node {
    fn on_reply(&mut self, now: Instant, from: SocketAddr, tid: Tid, p: Pending, mut reply: Reply) {
        match p.purpose {
            Purpose::Ping | Purpose::Bootstrap | Purpose::Update => {}
            Purpose::Maintenance => {
                let mut nodes = reply.nodes4;
                nodes.extend(reply.nodes6);
                let learned = self.learn(now, from, &nodes);
                for n in learned {
                    self.offer_to_searches(now, n);
                }
            }
            Purpose::SearchGet { key, family } => {
                let skey = (family, key);
                let ok = match self.searches.get_mut(&skey) {
                    Some(s) => s.on_get_reply(now, &reply.id, tid, reply.token.as_ref()),
                    None => true,
                };
                if !ok {
                    // A find or get reply without a token: OpenDHT blacklists the replier.
                    self.blacklist.insert(from);
                    self.tables[family].mark_expired(&reply.id);
                }
                let mut nodes = core::mem::take(&mut reply.nodes4);
                nodes.append(&mut reply.nodes6);
                let learned = self.learn(now, from, &nodes);
                let mut changes = Vec::new();
                if let Some(s) = self.searches.get_mut(&skey) {
                    let wide = s.asked_wide(&reply.id);
                    for n in learned {
                        s.insert_node(now, n, wide, &mut changes);
                    }
                }
                self.apply_listen_changes(key, changes);
                let mut values = match reply.values {
                    Some(Values::Inline(v)) => v,
                    _ => Vec::new(),
                };
                self.drop_forged(&mut values);
                if let Some(rows) = reply.fields {
                    values.extend(rows.rows.iter().map(value_of_row));
                }
                if !values.is_empty()
                    && let Some(s) = self.searches.get_mut(&skey)
                {
                    s.on_values(&values);
                    let ops: Vec<OpId> = s.gets.iter().map(|g| g.op).collect();
                    for op in ops {
                        self.deliver(op, &values);
                    }
                }
                self.dirty.insert(skey);
            }
            Purpose::Put { key, family, vid } | Purpose::Refresh { key, family, vid } => {
                if let Some(s) = self.searches.get_mut(&(family, key)) {
                    s.on_ack(now, &reply.id, vid);
                    self.dirty.insert((family, key));
                }
            }
            Purpose::Listen { key, family } => {
                let public_stable = self.config.public_stable;
                if let Some(s) = self.searches.get_mut(&(family, key)) {
                    s.on_listen_reply(now, &reply.id, reply.token.as_ref(), public_stable);
                    self.dirty.insert((family, key));
                }
            }
        }
    }

    fn on_error(&mut self, now: Instant, from: SocketAddr, p: Pending, code: u16) {
        let _ = now;
        match (&p.purpose, code) {
            (Purpose::Refresh { key, family, vid }, ErrorCode::NOT_FOUND) => {
                // The storer lost it: a full put follows on the next step.
                if let Some(s) = self.searches.get_mut(&(*family, *key)) {
                    s.on_put_failed(&p.node, *vid);
                    self.dirty.insert((*family, *key));
                }
            }
            (
                Purpose::Put { family, .. }
                | Purpose::Refresh { family, .. }
                | Purpose::Listen { family, .. },
                ErrorCode::UNAUTHORIZED,
            ) => {
                let fam = *family;
                if let Some(n) = self.tables[fam].get_mut(&p.node) {
                    n.auth_errors = n.auth_errors.saturating_add(1);
                    if n.auth_errors > MAX_AUTH_ERRORS {
                        n.expired = true;
                    }
                }
                if let Purpose::Put { vid, key, .. } | Purpose::Refresh { vid, key, .. } = p.purpose
                    && let Some(s) = self.searches.get_mut(&(fam, key))
                {
                    s.on_put_failed(&p.node, vid);
                }
                for (k, s) in self.searches.iter_mut() {
                    if k.0 == fam {
                        s.on_unauthorized(&p.node);
                        self.dirty.insert(*k);
                    }
                }
            }
            _ => {
                let _ = from;
            }
        }
    }

    fn on_timeout(&mut self, now: Instant, t: Timeout) {
        match t {
            Timeout::Retransmit {
                node,
                purpose,
                second,
                tid,
                ..
            } => {
                self.stats.retransmits += 1;
                if second
                    && let Purpose::SearchGet { key, family } = purpose
                    && let Some(s) = self.searches.get_mut(&(family, key))
                {
                    s.on_get_slow(&node, tid);
                    self.dirty.insert((family, key));
                }
            }
            Timeout::Expired { to, pending } => {
                self.stats.timeouts += 1;
                self.node_expired(now, to, pending.node);
            }
        }
    }

    /// A request to `id` at `to` went unanswered: the node is expired everywhere, and every
    /// other request to it is dropped (§2.4).
    fn node_expired(&mut self, now: Instant, to: SocketAddr, id: InfoHash) {
        let _ = self.rpc.take_all_to(to);
        if id.is_zero() {
            return;
        }
        let fam = Family::of(&to);
        self.tables[fam].mark_expired(&id);
        for (k, s) in self.searches.iter_mut() {
            if k.0 == fam && s.on_node_expired(now, &id) {
                self.dirty.insert(*k);
            }
        }
    }
}

/// A `fileds` row as a value carrying just the selected fields.
fn value_of_row(row: &FieldRow) -> Value {
    let mut v = Value::default();
    for f in &row.values {
        match f {
            FieldValue::Id(id) => v.id = *id,
            FieldValue::ValueType(t) => v.value_type = u16::try_from(*t).unwrap_or(u16::MAX),
            FieldValue::SeqNum(s) => v.seq = u16::try_from(*s).unwrap_or(u16::MAX),
            FieldValue::UserType(u) => v.user_type = String::from_utf8_lossy(u).into_owned(),
            FieldValue::OwnerPk(_) => {}
        }
    }
    v
}

// ---------------------------------------------------------------------------------------------
// Commands

/// What [`Node::put`] started: the operation, and the value's id (drawn at random when the value
/// had id 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PutHandle {
    /// The operation, named again by [`Event::PutDone`].
    pub op: OpId,
    /// The value id, for [`Node::cancel_put`].
    pub vid: ValueId,
}

impl Node {
    /// Replaces a value id of 0 by a random one.
    fn fill_id(&mut self, value: &mut Value) {
        while value.id == 0 {
            value.id = self.rng.next_u64();
        }
    }

    fn new_op(&mut self) -> u64 {
        let id = self.next_op;
        self.next_op += 1;
        id
    }

    /// Starts bootstrapping from `addr` (port 0 means 4222): pings it now and, while no family
    /// is connected, again after 10 s, 20 s, … up to once a day.
    pub fn bootstrap(&mut self, now: Instant, addr: SocketAddr) {
        self.last_input = self.last_input.max(now);
        let mut addr = rpc::unmap(addr);
        if addr.port() == 0 {
            addr.set_port(crate::DEFAULT_PORT);
        }
        if !self.bootstrap.contains(&addr) {
            if self.bootstrap.len() >= self.config.max_bootstrap && !self.bootstrap.is_empty() {
                self.bootstrap.remove(0);
            }
            self.bootstrap.push(addr);
        }
        self.send_request(
            now,
            addr,
            InfoHash::ZERO,
            RequestKind::Ping,
            Purpose::Bootstrap,
            &[],
        );
        self.bootstrap_period = BOOTSTRAP_PERIOD;
        self.bootstrap_at = Some(now + BOOTSTRAP_PERIOD);
        self.after_input(now);
    }

    /// Adds a known node without contacting it (as learned from another node).
    pub fn insert_node(&mut self, now: Instant, node: NodeInfo) {
        self.last_input = self.last_input.max(now);
        let learned = self.learn(now, node.addr, &[node]);
        for n in learned {
            self.offer_to_searches(now, n);
        }
        self.after_input(now);
    }

    /// What every get, put and listen checks first: not shutting down, a real key, and room for
    /// its two searches.
    fn accept_command(&mut self, now: Instant, key: &InfoHash) -> Result<(), CommandError> {
        self.last_input = self.last_input.max(now);
        if self.shutting_down {
            return Err(CommandError::ShuttingDown);
        }
        if key.is_zero() {
            return Err(CommandError::ZeroKey);
        }
        self.check_search_room(key)
    }

    /// A command on a key needs room for its two searches, unless they exist.
    fn check_search_room(&self, key: &InfoHash) -> Result<(), CommandError> {
        let missing = Family::ALL
            .iter()
            .filter(|f| !self.searches.contains_key(&(**f, *key)))
            .count();
        if self.searches.len() + missing > self.config.max_searches {
            return Err(CommandError::TooManySearches(self.config.max_searches));
        }
        Ok(())
    }

    fn ensure_search(&mut self, now: Instant, family: Family, key: InfoHash) -> Option<&mut Search> {
        let skey = (family, key);
        if !self.searches.contains_key(&skey) {
            if self.searches.len() >= self.config.max_searches {
                return None;
            }
            self.searches.insert(skey, Search::new(now, key, family));
        }
        self.dirty.insert(skey);
        self.searches.get_mut(&skey)
    }

    /// Looks `key` up: values stored here come at once, then values found on the network, each
    /// in [`Event::Values`]; [`Event::GetDone`] ends it.
    pub fn get(&mut self, now: Instant, key: InfoHash, query: Query) -> Result<OpId, CommandError> {
        self.start_get(now, key, query, false)
    }

    /// A get; `internal`: its events go to [`Node::internal`], not to the user (marked before
    /// anything, even our own stored values, is delivered).
    fn start_get(
        &mut self,
        now: Instant,
        key: InfoHash,
        query: Query,
        internal: bool,
    ) -> Result<OpId, CommandError> {
        self.accept_command(now, &key)?;
        let op = OpId(self.new_op());
        self.start_get_with_op(now, key, query, internal, op)
    }

    fn start_get_with_op(
        &mut self,
        now: Instant,
        key: InfoHash,
        query: Query,
        internal: bool,
        op: OpId,
    ) -> Result<OpId, CommandError> {
        if internal {
            self.internal_ops.insert(op);
        }
        self.gets.insert(
            op,
            GetState {
                key,
                query: query.clone(),
                pending: [true; 2],
                ok: false,
                seen: BTreeMap::new(),
            },
        );
        let local: Vec<Value> = self.storage.get(&key, &query).into_iter().cloned().collect();
        self.deliver(op, &local);
        let wide = self.speculation.next_search();
        for fam in Family::ALL {
            match self.ensure_search(now, fam, key) {
                Some(s) => {
                    s.wide = wide;
                    s.add_get(now, op, query.clone());
                }
                None => self.family_get_done(op, fam, false),
            }
        }
        self.after_input(now);
        Ok(op)
    }

    /// Stops a get: no more events for it.
    pub fn cancel_get(&mut self, now: Instant, op: OpId) -> Result<(), CommandError> {
        let g = self.gets.remove(&op).ok_or(CommandError::UnknownOperation)?;
        for fam in Family::ALL {
            if let Some(s) = self.searches.get_mut(&(fam, g.key)) {
                s.remove_get(op);
                self.dirty.insert((fam, g.key));
            }
        }
        self.after_input(now);
        Ok(())
    }

    /// Signs `value` with our identity and puts it ([`Node::put`]). A value id of 0 is replaced
    /// by a random one. If we hold our own signed copy of this value, `seq` is raised above it, so
    /// storers accept the edit (after a restart, set `seq` yourself, or get the value first).
    pub fn put_signed(
        &mut self,
        now: Instant,
        key: InfoHash,
        mut value: Value,
        opts: PutOptions,
    ) -> Result<PutHandle, CommandError> {
        let me = self.config.identity.clone().ok_or(CommandError::NoIdentity)?;
        self.fill_id(&mut value);
        let owner = me.public().to_spki_der();
        if let Some(old) = self.storage.get_value(&key, value.id)
            && old.value.owner.as_ref() == Some(&owner)
        {
            value.seq = value.seq.max(old.value.seq.saturating_add(1));
        }
        crate::crypto::sign_value(&mut value, &me);
        self.put(now, key, value, opts)
    }

    /// Encrypts `value` to `to` (signed by us inside, see [`crate::crypto::encrypt_value`]) and
    /// puts it. Storers see only its id and the ciphertext; only `to` can open it.
    pub fn put_encrypted(
        &mut self,
        now: Instant,
        key: InfoHash,
        to: &crate::crypto::PublicKey,
        mut value: Value,
        opts: PutOptions,
    ) -> Result<PutHandle, CommandError> {
        let me = self.config.identity.clone().ok_or(CommandError::NoIdentity)?;
        self.fill_id(&mut value);
        let sealed = crate::crypto::encrypt_value(&value, &me, to, &mut self.secret_rng);
        self.put(now, key, sealed, opts)
    }

    /// [`Node::put_encrypted`] to the node or user whose public key has short id `to`: the key is
    /// looked up where its owner announced it ([`public_key_location`]) and remembered. If no key
    /// is found, [`Event::PutDone`] reports no node targeted and none acknowledging.
    pub fn put_encrypted_to_id(
        &mut self,
        now: Instant,
        key: InfoHash,
        to: InfoHash,
        mut value: Value,
        opts: PutOptions,
    ) -> Result<PutHandle, CommandError> {
        if self.config.identity.is_none() {
            return Err(CommandError::NoIdentity);
        }
        if let Some(pk) = self.known_keys.get(&to).copied() {
            return self.put_encrypted(now, key, &pk, value, opts);
        }
        self.accept_command(now, &key)?;
        self.fill_id(&mut value);
        let vid = value.id;
        let op = OpId(self.new_op());
        // One lookup per id, however many puts wait for it.
        let waiting = self.key_waits.iter_mut().find(|(_, w)| w.id == to);
        if let Some((_, w)) = waiting {
            w.puts.push((op, key, value, opts));
            return Ok(PutHandle { op, vid });
        }
        let query = Query::new(
            crate::value::Select::all(),
            crate::value::Where::any()
                .value_type(KEY_VALUE_TYPE)
                .id(KEY_VALUE_ID),
        );
        let location = public_key_location(&to);
        self.accept_command(now, &location)?;
        // The wait exists before the get starts: our own storage may answer at once.
        let get = OpId(self.new_op());
        self.key_waits.insert(
            get,
            KeyWait {
                id: to,
                found: None,
                puts: vec![(op, key, value, opts)],
            },
        );
        self.start_get_with_op(now, location, query, true, get)?;
        Ok(PutHandle { op, vid })
    }

    /// Announces our public key once we are connected (a permanent, signed value).
    fn announce_key(&mut self, now: Instant) {
        let Some(me) = self.config.identity.clone() else {
            return;
        };
        if self.key_announced || self.shutting_down {
            return;
        }
        self.key_announced = true;
        let public = me.public();
        let mut v = Value::new(KEY_VALUE_ID, public.to_spki_der());
        v.value_type = KEY_VALUE_TYPE;
        crate::crypto::sign_value(&mut v, &me);
        let op = OpId(self.new_op());
        self.internal_ops.insert(op);
        if self
            .put_with_op(
                now,
                public_key_location(&public.id()),
                v,
                PutOptions::permanent(),
                op,
            )
            .is_err()
        {
            self.internal_ops.remove(&op);
        }
    }

    /// Handles the events of our internal operations.
    fn internal(&mut self, now: Instant) {
        // Each round may start puts whose events come back here; a few rounds settle it.
        for _ in 0..4 {
            if self.internal_events.is_empty() {
                return;
            }
            for e in core::mem::take(&mut self.internal_events) {
                match e {
                    Event::Values { op, values, .. } => {
                        if let Some(w) = self.key_waits.get_mut(&op) {
                            for v in &values {
                                if let Ok(pk) = crate::crypto::verify_value(v)
                                    && pk.id() == w.id
                                    && v.data == pk.to_spki_der()
                                {
                                    w.found = Some(pk);
                                }
                            }
                        }
                    }
                    Event::GetDone { op, .. } => {
                        self.internal_ops.remove(&op);
                        let Some(w) = self.key_waits.remove(&op) else {
                            continue;
                        };
                        if let Some(pk) = w.found {
                            if self.known_keys.len() >= MAX_KNOWN_KEYS
                                && let Some(first) = self.known_keys.keys().next().copied()
                            {
                                self.known_keys.remove(&first);
                            }
                            self.known_keys.insert(w.id, pk);
                        }
                        for (pop, key, value, opts) in w.puts {
                            let sealed = match (w.found, self.config.identity.clone()) {
                                (Some(pk), Some(me)) => Some(crate::crypto::encrypt_value(
                                    &value,
                                    &me,
                                    &pk,
                                    &mut self.secret_rng,
                                )),
                                _ => None,
                            };
                            let started = sealed.and_then(|v| self.put_with_op(now, key, v, opts, pop).ok());
                            if started.is_none() {
                                self.emit(Event::PutDone {
                                    op: pop,
                                    key,
                                    vid: value.id,
                                    outcome: PutOutcome::default(),
                                });
                            }
                        }
                    }
                    Event::PutDone { op, .. } => {
                        self.internal_ops.remove(&op);
                    }
                    _ => {}
                }
            }
        }
    }

    /// Stores `value` here and announces it to the closest nodes of both families.
    /// [`Event::PutDone`] reports how many acknowledged it. A value id of 0 is replaced by a random
    /// one. A permanent put is refreshed before it expires until [`Node::cancel_put`].
    pub fn put(
        &mut self,
        now: Instant,
        key: InfoHash,
        mut value: Value,
        opts: PutOptions,
    ) -> Result<PutHandle, CommandError> {
        self.accept_command(now, &key)?;
        let size = value.size();
        if size > crate::value::MAX_VALUE_SIZE {
            return Err(CommandError::ValueTooLarge {
                size,
                max: crate::value::MAX_VALUE_SIZE,
            });
        }
        self.fill_id(&mut value);
        let op = OpId(self.new_op());
        self.put_with_op(now, key, value, opts, op)
    }

    fn put_with_op(
        &mut self,
        now: Instant,
        key: InfoHash,
        value: Value,
        opts: PutOptions,
        op: OpId,
    ) -> Result<PutHandle, CommandError> {
        let vid = value.id;
        let life = self.config.value_type(value.value_type).expiration;
        let created = self.instant_of_unix(now, opts.created);
        let expiration = if opts.permanent {
            None
        } else {
            Some(created + life)
        };
        self.store_local(now, key, value.clone(), created, expiration);
        self.puts.insert(
            op,
            PutState {
                key,
                vid,
                pending: [true; 2],
                outcome: PutOutcome::default(),
            },
        );
        let created_unix = if created < now {
            self.unix_at(created)
        } else {
            None
        };
        let wide = self.speculation.next_search();
        for fam in Family::ALL {
            let announce = Announce {
                value: value.clone(),
                created_unix,
                permanent: opts.permanent,
                ops: vec![op],
                life,
            };
            match self.ensure_search(now, fam, key) {
                Some(s) => {
                    s.wide = wide;
                    let replaced = s.add_announce(now, announce);
                    for old in replaced {
                        self.family_put_done(old, fam, 0, 0);
                    }
                }
                None => self.family_put_done(op, fam, 0, 0),
            }
        }
        self.after_input(now);
        Ok(PutHandle { op, vid })
    }

    fn store_local(
        &mut self,
        now: Instant,
        key: InfoHash,
        v: Value,
        created: Instant,
        expiration: Option<Instant>,
    ) {
        let fresh = self.storage.get_value(&key, v.id).is_none();
        let mut evicted = Vec::new();
        let outcome = self
            .storage
            .store(now, key, v.clone(), created, expiration, None, &mut evicted);
        self.on_evicted(now, evicted);
        match outcome {
            StoreOutcome::Stored => self.tell_stored(now, key, v, fresh),
            StoreOutcome::Refreshed => self.notify_listeners(now, key, Notice::Refreshed(vec![v.id])),
            // Over the local quota: not kept here, but still announced (as OpenDHT does).
            StoreOutcome::Refused => {}
        }
    }

    /// Stops announcing value `vid` at `key` and drops our copy. A put still in progress reports
    /// done with what was acknowledged so far.
    pub fn cancel_put(&mut self, now: Instant, key: InfoHash, vid: ValueId) -> Result<(), CommandError> {
        self.last_input = self.last_input.max(now);
        let mut found = false;
        for fam in Family::ALL {
            if let Some(s) = self.searches.get_mut(&(fam, key))
                && let Some(ops) = s.cancel_announce(vid)
            {
                found = true;
                self.dirty.insert((fam, key));
                for op in ops {
                    self.family_put_done(op, fam, 0, 0);
                }
            }
        }
        if self
            .storage
            .get_value(&key, vid)
            .is_some_and(|s| s.source.is_none())
        {
            found = true;
            if let Some(v) = self.storage.remove(&key, vid) {
                self.report_removed(now, vec![(key, v)]);
            }
        }
        // Ops whose searches were already gone.
        let stale: Vec<OpId> = self
            .puts
            .iter()
            .filter(|(_, p)| p.key == key && p.vid == vid)
            .map(|(op, _)| *op)
            .collect();
        for op in stale {
            for fam in Family::ALL {
                self.family_put_done(op, fam, 0, 0);
            }
        }
        self.after_input(now);
        if found {
            Ok(())
        } else {
            Err(CommandError::UnknownOperation)
        }
    }

    /// Listens to `key`: [`Event::ListenAdded`] for values present now and added later,
    /// [`Event::ListenExpired`] when they go.
    pub fn listen(&mut self, now: Instant, key: InfoHash, query: Query) -> Result<ListenToken, CommandError> {
        self.accept_command(now, &key)?;
        let token = ListenToken(self.new_op());
        let local: Vec<Value> = self.storage.get(&key, &query).into_iter().cloned().collect();
        let values = local.iter().map(|v| (v.id, (v.clone(), 1))).collect();
        self.listens.insert(
            token,
            ListenState {
                key,
                query: query.clone(),
                values,
            },
        );
        if !local.is_empty() {
            self.emit(Event::ListenAdded {
                token,
                key,
                values: local,
            });
        }
        for fam in Family::ALL {
            if let Some(s) = self.ensure_search(now, fam, key) {
                s.add_listen(now, token, query.clone());
            }
        }
        self.after_input(now);
        Ok(token)
    }

    /// Stops a listen. Remote nodes forget it on their own when it is no longer renewed.
    pub fn cancel_listen(&mut self, now: Instant, token: ListenToken) -> Result<(), CommandError> {
        self.last_input = self.last_input.max(now);
        let l = self
            .listens
            .remove(&token)
            .ok_or(CommandError::UnknownOperation)?;
        for fam in Family::ALL {
            if let Some(s) = self.searches.get_mut(&(fam, l.key)) {
                let changes = s.cancel_listen(token);
                self.dirty.insert((fam, l.key));
                self.apply_listen_changes(l.key, changes);
            }
        }
        self.after_input(now);
        Ok(())
    }

    /// The network of `family` changed (new interface, address, …): every node becomes dubious,
    /// searches start over and bootstrap resumes if needed.
    pub fn connectivity_changed(&mut self, now: Instant, family: Family) {
        self.last_input = self.last_input.max(now);
        self.tables[family].reset_times();
        self.public_addrs[family].clear();
        let mut all = Vec::new();
        for (k, s) in self.searches.iter_mut() {
            if k.0 == family {
                all.push((k.1, s.reset(now)));
                self.dirty.insert(*k);
            }
        }
        for (key, changes) in all {
            self.apply_listen_changes(key, changes);
        }
        if !self.bootstrap.is_empty() {
            self.bootstrap_period = BOOTSTRAP_PERIOD;
            self.bootstrap_at = Some(now);
        }
        self.after_input(now);
    }

    /// Begins an orderly stop: gets end, listens are dropped, permanent puts stop being
    /// refreshed, and puts in progress go on; [`Event::ShutdownComplete`] follows once they are
    /// done. The driver decides how long to wait for it.
    pub fn shutdown(&mut self, now: Instant) {
        self.last_input = self.last_input.max(now);
        self.shutting_down = true;
        let gets: Vec<OpId> = self.gets.keys().copied().collect();
        for op in gets {
            let _ = self.cancel_get(now, op);
            self.emit(Event::GetDone {
                op,
                key: InfoHash::ZERO,
                ok: false,
            });
        }
        let listens: Vec<ListenToken> = self.listens.keys().copied().collect();
        for t in listens {
            let _ = self.cancel_listen(now, t);
        }
        for s in self.searches.values_mut() {
            for a in &mut s.announces {
                a.permanent = false;
            }
        }
        self.dirty.extend(self.searches.keys().copied());
        self.after_input(now);
    }

    /// Nodes worth remembering across restarts: every non-expired node of both tables.
    pub fn export_nodes(&self) -> Vec<NodeInfo> {
        self.tables
            .iter()
            .flat_map(|t| t.nodes().filter(|n| !n.expired).map(|n| n.info()))
            .collect()
    }

    /// Adds exported nodes (without contacting them).
    pub fn import_nodes(&mut self, now: Instant, nodes: &[NodeInfo]) {
        self.last_input = self.last_input.max(now);
        for n in nodes {
            let learned = self.learn(now, n.addr, &[*n]);
            for l in learned {
                self.offer_to_searches(now, l);
            }
        }
        self.after_input(now);
    }

    /// Every stored value with the life it has left.
    pub fn export_values(&self) -> Vec<ExportedValue> {
        let now = self.last_input;
        self.storage
            .all()
            .flat_map(|(k, entries)| {
                entries.iter().map(move |s| ExportedValue {
                    key: *k,
                    value: s.value.clone(),
                    remaining: s.expiration.map(|e| e - now),
                })
            })
            .collect()
    }

    /// Stores exported values again; a value's life is capped by its type's expiration.
    /// Imported values are never permanent.
    pub fn import_values(&mut self, now: Instant, values: Vec<ExportedValue>) {
        self.last_input = self.last_input.max(now);
        for e in values {
            let life = self.config.value_type(e.value.value_type).expiration;
            let remaining = e.remaining.unwrap_or(life).min(life);
            let created = now.saturating_sub_duration(life - remaining);
            self.store_local(now, e.key, e.value, created, Some(now + remaining));
        }
        self.after_input(now);
    }
}

// ---------------------------------------------------------------------------------------------
// Searches and our operations

impl Node {
    fn step_search(&mut self, now: Instant, skey: SearchKey) {
        let (fam, key) = skey;
        let connecting = self.status[fam] != Status::Connected
            && (self.bootstrap_at.is_some() || self.status[fam] == Status::Connecting);
        let public_stable = self.config.public_stable;
        let Some(s) = self.searches.get_mut(&skey) else {
            return;
        };
        let mut changes = Vec::new();
        if s.needs_refill(now) {
            let nodes = self.tables[fam].closest(now, &key, crate::search::SEARCH_NODES, false);
            changes.extend(s.refill(now, &nodes));
        }
        let actions = s.step(now, connecting, public_stable);
        changes.extend(s.expire_listen_caches(now));
        if let Some(paid) = s.verdict.take() {
            self.speculation.record(paid);
            self.stats.speculative_searches += 1;
            self.stats.speculation_paid += u64::from(paid);
        }
        self.apply_listen_changes(key, changes);
        self.run_actions(now, skey, actions);
        // Reschedule, or drop a search with nothing left to do.
        if let Some(old) = self.search_wakeups.remove(&skey) {
            self.search_timers.remove(&(old, skey));
        }
        let Some(s) = self.searches.get(&skey) else { return };
        if s.is_idle() {
            self.searches.remove(&skey);
            self.sockets.retain(|_, k| *k != skey);
            return;
        }
        if let Some(t) = s.next_wakeup(now) {
            let t = t.max(now + Duration::from_millis(1));
            self.search_wakeups.insert(skey, t);
            self.search_timers.insert((t, skey));
        }
    }

    fn run_actions(&mut self, now: Instant, skey: SearchKey, actions: Vec<Action>) {
        let (fam, key) = skey;
        for a in actions {
            match a {
                Action::Get { to, query } => {
                    let kind = match &query {
                        None => RequestKind::Find {
                            target: key,
                            want: None,
                        },
                        Some(q) => RequestKind::Get {
                            key,
                            query: q.clone(),
                            want: None,
                        },
                    };
                    let purpose = Purpose::SearchGet { key, family: fam };
                    if let Some(tid) = self.send_request(now, to.addr, to.id, kind, purpose, &[])
                        && let Some(s) = self.searches.get_mut(&skey)
                    {
                        s.sent(&to.id, Sent::Get, tid, query);
                    }
                }
                Action::Put { to, token, vid } => {
                    let Some(a) = self
                        .searches
                        .get(&skey)
                        .and_then(|s| s.announces.iter().find(|a| a.value.id == vid))
                    else {
                        continue;
                    };
                    let created = if a.permanent { None } else { a.created_unix };
                    let out = fragment::prepare(core::slice::from_ref(&a.value));
                    let kind = RequestKind::Put {
                        key,
                        values: out.values,
                        created,
                        token,
                    };
                    let purpose = Purpose::Put {
                        key,
                        family: fam,
                        vid,
                    };
                    if let Some(tid) = self.send_request(now, to.addr, to.id, kind, purpose, &out.data)
                        && let Some(s) = self.searches.get_mut(&skey)
                    {
                        s.sent(&to.id, Sent::Put(vid), tid, None);
                    }
                }
                Action::Refresh { to, token, vid } => {
                    let kind = RequestKind::Refresh { key, vid, token };
                    let purpose = Purpose::Refresh {
                        key,
                        family: fam,
                        vid,
                    };
                    if let Some(tid) = self.send_request(now, to.addr, to.id, kind, purpose, &[])
                        && let Some(s) = self.searches.get_mut(&skey)
                    {
                        s.sent(&to.id, Sent::Put(vid), tid, None);
                    }
                }
                Action::Listen {
                    to,
                    token,
                    sid,
                    query,
                } => {
                    let sid = sid.unwrap_or_else(|| self.rpc.next_tid(to.addr, &mut self.rng));
                    self.sockets.insert((to.addr, sid), skey);
                    let kind = RequestKind::Listen {
                        key,
                        token,
                        sid,
                        version: Some(1),
                        query,
                    };
                    let purpose = Purpose::Listen { key, family: fam };
                    if let Some(tid) = self.send_request(now, to.addr, to.id, kind, purpose, &[])
                        && let Some(s) = self.searches.get_mut(&skey)
                    {
                        s.sent(&to.id, Sent::Listen(sid), tid, None);
                    }
                }
                Action::GetDone { op, ok } => self.family_get_done(op, fam, ok),
                Action::PutDone {
                    op,
                    vid: _,
                    acked,
                    targeted,
                } => self.family_put_done(op, fam, acked, targeted),
            }
        }
    }

    fn family_get_done(&mut self, op: OpId, fam: Family, ok: bool) {
        let Some(g) = self.gets.get_mut(&op) else { return };
        if let Some(p) = g.pending.get_mut(family_index(fam)) {
            *p = false;
        }
        g.ok |= ok;
        if g.pending.iter().all(|p| !p) {
            let (key, ok) = (g.key, g.ok);
            self.gets.remove(&op);
            self.emit(Event::GetDone { op, key, ok });
        }
    }

    fn family_put_done(&mut self, op: OpId, fam: Family, acked: usize, targeted: usize) {
        let Some(p) = self.puts.get_mut(&op) else { return };
        let i = family_index(fam);
        if !p.pending.get(i).copied().unwrap_or(false) {
            return;
        }
        if let Some(x) = p.pending.get_mut(i) {
            *x = false;
        }
        if let (Some(a), Some(t)) = (p.outcome.acked.get_mut(i), p.outcome.targeted.get_mut(i)) {
            *a = acked;
            *t = targeted;
        }
        if p.pending.iter().all(|x| !x) {
            let (key, vid, outcome) = (p.key, p.vid, p.outcome);
            self.puts.remove(&op);
            self.emit(Event::PutDone {
                op,
                key,
                vid,
                outcome,
            });
        }
    }

    /// Removes signed values whose signature fails (counted): they are never delivered.
    fn drop_forged(&mut self, values: &mut Vec<Value>) {
        let before = values.len();
        values.retain(|v| crate::crypto::check_signature(v) != crate::crypto::SignatureCheck::Invalid);
        self.stats.bad_signatures += (before - values.len()) as u64;
    }

    /// Hands values found by a get to its user: each value once, again only if it changed.
    fn deliver(&mut self, op: OpId, values: &[Value]) {
        let max = self.config.max_values_per_get;
        let Some(g) = self.gets.get_mut(&op) else { return };
        let mut fresh = Vec::new();
        for v in values {
            if !g.query.where_.matches(v) {
                continue;
            }
            // A select delivers only the selected fields, whoever holds the whole value.
            let projected;
            let v = if g.query.select.is_empty() {
                v
            } else {
                projected = value_of_row(&g.query.select.project(v));
                &projected
            };
            let fp = InfoHash::get(v.encode_to_vec());
            match g.seen.get(&v.id) {
                Some(old) if *old == fp => continue,
                None if g.seen.len() >= max => continue,
                _ => {}
            }
            g.seen.insert(v.id, fp);
            fresh.push(v.clone());
        }
        let key = g.key;
        if !fresh.is_empty() {
            self.emit(Event::Values {
                op,
                key,
                values: fresh,
            });
        }
    }

    /// Applies what listened nodes (or our own storage) reported to every listen on `key`.
    fn apply_listen_changes(&mut self, key: InfoHash, changes: Vec<ListenChange>) {
        if changes.is_empty() {
            return;
        }
        let mut events = Vec::new();
        for (token, l) in self.listens.iter_mut() {
            if l.key != key {
                continue;
            }
            let mut added = Vec::new();
            let mut expired = Vec::new();
            for c in &changes {
                match c {
                    ListenChange::Added { value, first } => {
                        if !l.query.where_.matches(value) {
                            continue;
                        }
                        match l.values.get_mut(&value.id) {
                            None => {
                                l.values.insert(value.id, (value.clone(), 1));
                                added.push(value.clone());
                            }
                            Some((old, refs)) => {
                                if *first {
                                    *refs += 1;
                                }
                                if !old.content_eq(value) {
                                    *old = value.clone();
                                    added.push(value.clone());
                                }
                            }
                        }
                    }
                    ListenChange::Removed(vid) => {
                        if let Some((_, refs)) = l.values.get_mut(vid) {
                            *refs = refs.saturating_sub(1);
                            if *refs == 0
                                && let Some((v, _)) = l.values.remove(vid)
                            {
                                expired.push(v);
                            }
                        }
                    }
                }
            }
            if !added.is_empty() {
                events.push(Event::ListenAdded {
                    token: *token,
                    key,
                    values: added,
                });
            }
            if !expired.is_empty() {
                events.push(Event::ListenExpired {
                    token: *token,
                    key,
                    values: expired,
                });
            }
        }
        for e in events {
            self.emit(e);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Timers, maintenance and status (§4.3–§4.6)

impl Node {
    /// Runs everything whose time has come. Call at [`Node::poll_timeout`] (calling early or
    /// late is harmless).
    pub fn handle_timeout(&mut self, now: Instant) {
        self.last_input = self.last_input.max(now);
        let mut out = Vec::new();
        while let Some(t) = self.rpc.poll_timeout(now, &mut self.rng, &mut out) {
            for (to, data) in out.drain(..) {
                self.queue(to, data);
            }
            self.on_timeout(now, t);
        }
        self.reassembler.expire(now);
        let removed = self.storage.expire(now);
        self.report_removed(now, removed);
        self.tokens.maybe_rotate(now, &mut self.secret_rng);
        if self.bootstrap_at.is_some_and(|t| t <= now) {
            self.bootstrap_job(now);
        }
        if self.confirm_at <= now {
            self.maintenance(now);
        }
        if self.expire_at <= now {
            self.expire_job(now);
        }
        if self.config.replicate && self.replicate_at <= now {
            self.replicate(now);
        }
        while let Some(&(t, skey)) = self.search_timers.first() {
            if t > now {
                break;
            }
            self.search_timers.remove(&(t, skey));
            self.search_wakeups.remove(&skey);
            self.dirty.insert(skey);
        }
        self.after_input(now);
        self.compact();
    }

    /// Gives back what emptied tables hold. A node's tables fill for a moment (a search, a
    /// request in flight) and then stay empty for long; their leftover allocations would be
    /// most of an idle node's heap. Called on timer ticks and when nothing of ours is in
    /// flight, not after every datagram, so a busy node does not free and allocate the same
    /// table again and again.
    fn compact(&mut self) {
        use crate::compact::Compact;
        self.rpc.compact();
        self.blacklist.compact();
        self.limiter.compact();
        self.reassembler.compact();
        self.storage.compact();
        for f in Family::ALL {
            self.tables[f].compact();
        }
        self.searches.compact();
        self.search_timers.compact();
        self.search_wakeups.compact();
        self.dirty.compact();
        self.sockets.compact();
        self.gets.compact();
        self.puts.compact();
        self.listens.compact();
        self.transmits.compact();
        self.events.compact();
        self.internal_ops.compact();
        self.internal_events.compact();
        self.key_waits.compact();
    }

    /// Steps the searches touched by the last input, then updates statuses.
    fn after_input(&mut self, now: Instant) {
        // Stepping a search can touch others (new nodes); a few rounds settle it.
        for _ in 0..4 {
            if self.dirty.is_empty() {
                break;
            }
            let dirty = core::mem::take(&mut self.dirty);
            for skey in dirty {
                self.step_search(now, skey);
            }
        }
        self.update_status(now);
        self.internal(now);
        if self.shutting_down && !self.shutdown_reported && self.puts.is_empty() {
            self.shutdown_reported = true;
            self.emit(Event::ShutdownComplete);
        }
        if self.searches.is_empty() && self.rpc.len() == 0 {
            // Nothing of ours in flight: the moment the transient tables have emptied.
            self.compact();
        }
    }

    fn update_status(&mut self, now: Instant) {
        for fam in Family::ALL {
            let mut st = self.tables[fam].status(now);
            if st == Status::Disconnected && self.rpc.is_bootstrapping() {
                st = Status::Connecting;
            }
            if st == self.status[fam] {
                continue;
            }
            self.status[fam] = st;
            self.emit(Event::StatusChanged {
                family: fam,
                status: st,
            });
            // Searches of this family may have been waiting for the outcome (connected, or
            // given up: a family that will not connect must not hold a put for 10 s).
            let keys: Vec<SearchKey> = self.searches.keys().filter(|k| k.0 == fam).copied().collect();
            self.dirty.extend(keys);
            if st == Status::Connected {
                self.bootstrap_at = None;
                self.start_join(now, fam);
                self.announce_key(now);
            }
        }
        if !self.dirty.is_empty() {
            let dirty = core::mem::take(&mut self.dirty);
            for skey in dirty {
                self.step_search(now, skey);
            }
        }
    }

    /// A lookup of our own id: fills the buckets near us and tells our neighbours about us.
    fn start_join(&mut self, now: Instant, fam: Family) {
        let id = self.id;
        if self
            .searches
            .range((fam, InfoHash::ZERO)..=(fam, InfoHash([0xff; 20])))
            .next()
            .is_none()
            && let Some(s) = self.ensure_search(now, fam, id)
        {
            s.join = true;
        }
    }

    fn bootstrap_job(&mut self, now: Instant) {
        if self.status.iter().any(|s| *s == Status::Connected) {
            self.bootstrap_at = None;
            return;
        }
        for addr in self.bootstrap.clone() {
            if !self.rpc.has_pending_to(addr) {
                self.send_request(
                    now,
                    addr,
                    InfoHash::ZERO,
                    RequestKind::Ping,
                    Purpose::Bootstrap,
                    &[],
                );
            }
        }
        self.bootstrap_period = (self.bootstrap_period * 2).min(BOOTSTRAP_MAX);
        self.bootstrap_at = Some(now + self.bootstrap_period);
    }

    /// `confirmNodes`: bucket maintenance, else neighbourhood maintenance (§4.3).
    fn maintenance(&mut self, now: Instant) {
        let mut sent = false;
        let dual = self.config.dual_stack;
        for fam in Family::ALL {
            if self.status[fam] == Status::Connected {
                self.start_join(now, fam);
            }
            let rpc = &self.rpc;
            let reqs = self.tables[fam].maintenance(now, &mut self.rng, &|a| rpc.has_pending_to(*a));
            let other = match fam {
                Family::V4 => Family::V6,
                Family::V6 => Family::V4,
            };
            let other_small = self.tables[other].len() < 8;
            for (node, target) in reqs {
                let want =
                    (dual && (other_small || self.rng.next_u32().is_multiple_of(38))).then_some(Want::BOTH);
                let kind = RequestKind::Find { target, want };
                sent |= self
                    .send_request(now, node.addr, node.id, kind, Purpose::Maintenance, &[])
                    .is_some();
            }
        }
        if !sent {
            for fam in Family::ALL {
                let t = &self.tables[fam];
                if t.grow_time.is_none_or(|g| now - g >= NEIGHBOURHOOD_WINDOW) {
                    continue;
                }
                let Some(node) = t.neighbourhood_node(&mut self.rng) else {
                    continue;
                };
                let mut target = self.id;
                target.0[19] = self.rng.next_u32() as u8;
                let want = dual.then_some(Want::BOTH);
                let kind = RequestKind::Find { target, want };
                sent |= self
                    .send_request(now, node.addr, node.id, kind, Purpose::Maintenance, &[])
                    .is_some();
            }
        }
        // Two removed nodes per family get another chance each round.
        for fam in Family::ALL {
            let graves = self.tables[fam].graves_due(now, 2);
            self.ping_all(now, graves);
        }
        let next = if sent {
            Duration::from_secs(5 + self.rng.next_u64() % 20)
        } else {
            Duration::from_secs(60 + self.rng.next_u64() % 120)
        };
        self.confirm_at = now + next;
    }

    /// The periodic `expire()` pass: expired nodes out of the tables, stale remote listeners out
    /// of storage.
    fn expire_job(&mut self, now: Instant) {
        for fam in Family::ALL {
            let pings = self.tables[fam].expire(now);
            self.ping_all(now, pings);
        }
        self.storage.expire_listeners(now);
        // Socket ids of nodes that left their search.
        let searches = &self.searches;
        self.sockets
            .retain(|(_, sid), skey| searches.get(skey).is_some_and(|s| s.has_sid(*sid)));
        self.expire_at = now + Duration::from_secs(120 + self.rng.next_u64() % 240);
    }

    /// Ids of the closest live nodes we know for `key`, both families, as one hash.
    fn closest_fingerprint(&self, now: Instant, key: &InfoHash) -> InfoHash {
        let mut bytes = Vec::with_capacity(2 * TARGET_NODES * 20);
        for t in self.tables.iter() {
            for n in t.closest(now, key, TARGET_NODES, false) {
                bytes.extend_from_slice(n.id.as_bytes());
            }
        }
        InfoHash::get(bytes)
    }

    /// Re-replication (our departure from OpenDHT, see `docs/architecture.md`): when the set of
    /// closest nodes for a key we store has changed since we last looked, and we are still among
    /// the closest, we announce the key's values (with their original creation time) to the
    /// current closest nodes, so values outlive the nodes they were first put on.
    fn replicate(&mut self, now: Instant) {
        self.replicate_at = now + self.config.replicate_period;
        // Without the wall clock a re-announced value could not carry its creation time, and its
        // new storers would give it a new life: no re-replication then.
        if self.shutting_down || self.unix.is_none() {
            return;
        }
        let keys = self.storage.remote_keys();
        // Replicas that went quiet are pinged, so that a dead one expires and changes the
        // closest set by the next round.
        let period = self.config.replicate_period;
        let mut quiet = BTreeSet::new();
        for (key, _) in &keys {
            for t in self.tables.iter() {
                for n in t.closest(now, key, TARGET_NODES, false) {
                    if t.get(&n.id)
                        .is_some_and(|e| e.last_heard.is_none_or(|h| now - h >= period))
                    {
                        quiet.insert((n.addr, n.id));
                    }
                }
            }
        }
        let pings: Vec<NodeInfo> = quiet
            .into_iter()
            .map(|(addr, id)| NodeInfo { id, addr })
            .collect();
        self.ping_all(now, pings);
        for (key, last) in keys {
            let fp = self.closest_fingerprint(now, &key);
            if last == Some(fp) {
                continue;
            }
            self.storage.set_replicated(&key, fp);
            let responsible = self.tables.iter().any(|t| {
                let c = t.closest(now, &key, TARGET_NODES, false);
                !c.is_empty()
                    && (c.len() < TARGET_NODES
                        || c.last()
                            .is_some_and(|far| key.xor_cmp(&self.id, &far.id) == core::cmp::Ordering::Less))
            });
            if !responsible {
                continue;
            }
            let values: Vec<(Value, Instant)> = self
                .storage
                .entries(&key)
                .iter()
                .filter(|s| s.source.is_some() && s.expiration.is_some_and(|e| e > now + REANNOUNCE_MARGIN))
                .map(|s| (s.value.clone(), s.created))
                .collect();
            if values.is_empty() {
                continue;
            }
            self.stats.replications += 1;
            for (value, created) in values {
                let life = self.config.value_type(value.value_type).expiration;
                let created_unix = if created < now {
                    self.unix_at(created)
                } else {
                    None
                };
                for fam in Family::ALL {
                    if self.tables[fam].len() == 0 {
                        continue;
                    }
                    if let Some(s) = self.ensure_search(now, fam, key) {
                        let _ = s.add_announce(
                            now,
                            Announce {
                                value: value.clone(),
                                created_unix,
                                permanent: false,
                                ops: Vec::new(),
                                life,
                            },
                        );
                    }
                }
            }
        }
    }
}
