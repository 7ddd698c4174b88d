//! The node: one owner that routes between the sub-machines. [`Node`] itself (this file) holds
//! the inputs, the outputs and the timer dispatch; each concern is a type of its own, in its own
//! file, that the node owns and routes between:
//!
//! | file | owns |
//! |---|---|
//! | `timers.rs` | [`TimerTable`]: the node's own periodic jobs, named by [`TimerReason`] |
//! | `searches.rs` | [`Searches`]: every search, its wake-up, the dirty set, listen socket ids; stepping them, `run_actions` |
//! | `ops.rs` | [`Operations`]: our gets, puts, listens and their op ids, internal operations |
//! | `connectivity.rs` | [`Connectivity`]: status, public addresses, bootstrap; routing maintenance |
//! | `keys.rs` | [`KeyBook`]: our key's announce, key lookups, keys found |
//! | `replicator.rs` | [`Replicator`]: re-replication of values we store for others |
//! | `receive.rs` | the receive pipeline: admission, reassembly, learning senders |
//! | `storer.rs` | [`Storer`] (storage and write tokens): the storer role, answering requests and pushing to remote listeners |
//! | `requester.rs` | the requester role (its state: `rpc::Rpc`): sending requests; their replies, errors, timeouts |
//! | `commands.rs` | the user's commands |
//!
//! Where each protocol rule lives:
//!
//! | rule (`opendht-wire.md`) | where |
//! |---|---|
//! | receive pipeline, §2.12 | [`Node::handle_datagram`] → `receive` → `process` (`receive.rs`) |
//! | martian sources, IPv4-mapped sources, §8.3 | `rpc::is_martian`, `rpc::unmap` |
//! | rate limits, §8.1 | `rpc::RateLimiter`, charged in `receive` |
//! | fragments, §1.2 | `wire::fragment` (`Reassembler`), fed in `receive`; sent by `send_request` / `send_reply` |
//! | per-peer tids, retransmission, timeouts, §2.4 | `rpc::Rpc`; timeouts handled in `on_timeout` (`requester.rs`) |
//! | tokens, §2.9 | `rpc::Tokens`; checked in `on_put`, `on_listen`, `on_refresh` (`storer.rs`) |
//! | answering requests, §2.5–§2.7, §7.3 | `on_request` and the `on_*` handlers (`storer.rs`); "among the closest": `RoutingTable::takes_store` |
//! | routing table, node states, §4.1–§4.2 | `routing::RoutingTable`; fed by `learn`; auth errors: `RoutingTable::on_auth_error` |
//! | maintenance, bootstrap, status, §4.3–§4.6 | `maintenance`, `bootstrap_job`, `update_status` (`connectivity.rs`) |
//! | public address, §4.7 | `Connectivity::tally_public_address` |
//! | searches: get, put, listen, §5 | `search::Search`; actions run by `run_actions` (`searches.rs`) |
//! | storage, quotas, expiry, edit policy, §7 | `storage::Storage`; `store_value` (`storer.rs`), `store_local` (`commands.rs`); expiry in `handle_timeout` → `report_removed` |
//! | listen pushes to remote listeners, §2.10 | `notify_listeners` (`storer.rs`) |
//! | listen results for our own listens | `Operations::listen_changes` |
//! | re-replication (our departure) | `replicate`, `Replicator` (`replicator.rs`) |
//! | anti-amplification (our departure) | `amplify::Guard`; credited in `receive`, charged in `queue`, proofs and probes in `amplify.rs` |
//! | Sybil limits (our departure) | `subnet`; `RoutingTable::on_new_node`, `Search::insert_node`, `RoutingTable::takes_store` |

use crate::prelude::*;
use alloc::collections::{BTreeMap, BTreeSet, VecDeque};
use core::net::{IpAddr, SocketAddr};
use core::time::Duration;

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

use crate::config::Config;
use crate::error::CommandError;
use crate::event::{Event, ListenToken, OpId, PutOutcome, Transmit};
use crate::family::{Family, PerFamily, Status};
use crate::routing::{Confirm, RoutingTable};
use crate::rpc::{self, Blacklist, Pending, Purpose, RateLimiter, Rpc, Timeout, Tokens};
use crate::search::{
    Action, Announce, ListenChange, ListenUpdate, REANNOUNCE_MARGIN, Search, Sent, Speculation, TARGET_NODES,
};
use crate::stats::{DropReason, MessageKind, Stats};
use crate::storage::{self, Evicted, Life, RemoteListener, Storage, StoreOutcome};
use crate::value::{FieldRow, FieldValue, Query, Value, ValueId};
use crate::wire::fragment::{self, Progress, Reassembler};
use crate::wire::{
    self, Body, ErrorCode, FieldRows, ListenRequest, Message, NodeInfo, NodeList, PutRequest, Reply, Request,
    RequestKind, Tid, UpdatePayload, UpdateRequest, ValueList, Values, Want,
};
use crate::{InfoHash, Instant};

/// A listen push is split once about this many bytes of values are in one update.
const MAX_MESSAGE_VALUE_SIZE: usize = 56 * 1024;
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

type SearchKey = (Family, InfoHash);

/// The sans-IO DHT node: a state machine that never reads a clock, a socket or an OS random
/// source. The driver gives it everything, and follows this contract:
///
/// 1. **Create** it with [`Node::new`]`(config, seed, now)`. Every random choice comes from
///    ChaCha20 streams derived from `seed`; `now` is the driver's monotonic clock as an
///    [`Instant`] (any origin). If it knows the wall clock, it calls [`Node::set_unix_time`].
/// 2. **Feed inputs**: [`Node::handle_datagram`] for every datagram received (either family), and
///    [`Node::handle_timeout`] when the time [`Node::poll_timeout`] named has come (early or
///    late is harmless; never is not: retransmissions, searches and expiry stall).
/// 3. **Issue commands** whenever the user asks ([`Node::bootstrap`], [`Node::get`],
///    [`Node::put`], [`Node::listen`], their cancels, [`Node::shutdown`], …). They return at once
///    (an id, or a [`CommandError`] for the caller's mistakes); results come later as events.
/// 4. **After every input and every command, drain the outputs**: [`Node::poll_transmit`] until
///    `None` (send each from the socket of its destination's family), and [`Node::poll_event`]
///    until `None`.
/// 5. **Sleep** until the next datagram or [`Node::poll_timeout`], whichever comes first
///    ([`Node::next_timer`] also says why, as a [`TimerReason`]).
/// 6. **Shut down** with [`Node::shutdown`]: gets end, listens drop, puts in progress finish,
///    then [`Event::ShutdownComplete`]. The driver decides how long to wait for it.
///
/// Queues are bounded: a driver that does not drain them loses the overflow, counted in
/// [`Stats`]. Bad remote input is never an error: it is dropped and counted by [`DropReason`].
/// The same seed and the same calls give byte-identical outputs. `docs/architecture.md` has the
/// long form; the crate docs show two nodes talking.
///
/// ```
/// use std::net::SocketAddr;
/// use dht_proto::{Config, Event, Instant, Node, TimerReason};
///
/// let mut now = Instant::ZERO;
/// let mut node = Node::new(Config::default(), [7; 32], now);
/// let peer: SocketAddr = "192.0.2.1:4222".parse().unwrap();
///
/// // A command, then drain: the bootstrap ping, for the driver's IPv4 socket.
/// node.bootstrap(now, peer);
/// let mut buf = Vec::new();
/// while let Some(t) = node.poll_transmit(now, &mut buf) {
///     assert_eq!(t.destination, peer);
///     let _datagram: &[u8] = &buf[..t.len];
/// }
/// while let Some(_event) = node.poll_event() {}
///
/// // No reply comes: sleep until the node's next timer (the ping's retransmission), then feed it.
/// let (at, why) = node.next_timer().unwrap();
/// assert_eq!(why, TimerReason::Request);
/// now = at;
/// node.handle_timeout(now);
/// assert!(node.poll_transmit(now, &mut buf).is_some(), "the ping again");
///
/// // Shut down: nothing is pending, so it completes at once.
/// node.shutdown(now);
/// let events: Vec<Event> = std::iter::from_fn(|| node.poll_event()).collect();
/// assert!(events.contains(&Event::ShutdownComplete));
/// ```
#[derive(Debug)]
pub struct Node {
    config: Config,
    id: InfoHash,
    rng: ChaCha20Rng,
    /// Token secrets and sealing: drawn a few times an hour, so parked (56 bytes, not 320).
    secret_rng: rpc::ParkedRng,
    rpc: Rpc,
    limiter: RateLimiter,
    blacklist: Blacklist,
    reassembler: Reassembler,
    tables: PerFamily<RoutingTable>,
    /// The storer role's state: what we store for others and ourselves, and write tokens.
    storer: Storer,
    searches: Searches,
    ops: Operations,
    transmits: VecDeque<(SocketAddr, Vec<u8>)>,
    /// Value data of get replies waiting for the uplink ([`Config::uplink_bytes_per_sec`]),
    /// served round robin.
    paced: VecDeque<PacedReply>,
    /// Datagrams in `paced` and `awaiting`.
    paced_len: usize,
    /// Value data of get replies to addresses that have not yet proven a round trip
    /// (anti-amplification): each joins `paced` when its address proves itself, or is given up
    /// at its deadline.
    awaiting: VecDeque<PacedReply>,
    /// When the uplink is free again, by the datagrams handed out so far.
    uplink_free: Instant,
    events: VecDeque<Event>,
    stats: Stats,
    connectivity: Connectivity,
    /// The node's own periodic jobs.
    timers: TimerTable,
    /// (monotonic, Unix seconds) at one moment, when the driver gave us the wall clock.
    unix: Option<(Instant, i64)>,
    shutting_down: bool,
    shutdown_reported: bool,
    /// Public keys: ours announced, others looked up.
    keys: KeyBook,
    last_input: Instant,
    /// Re-replication of the values we store for others.
    replicator: Replicator,
    /// Whether searches should explore as OpenDHT's do, or frugally (see [`Speculation`]).
    speculation: Speculation,
    /// Anti-amplification: credit of addresses without a proven round trip, held datagrams.
    guard: crate::amplify::Guard,
    /// The size of a full find reply to each family (8 nodes and a token), which a padded
    /// request makes room for: measured once (0 until then), as it depends only on the config.
    full_reply_len: PerFamily<u16>,
}

mod amplify;
mod commands;
mod connectivity;
mod keys;
mod ops;
mod receive;
mod replicator;
mod requester;
mod searches;
mod storer;
#[cfg(test)]
mod tests;
mod timers;

use amplify::pad_room;
pub use commands::PutHandle;
use connectivity::Connectivity;
#[cfg(test)]
use connectivity::{BOOTSTRAP_PERIOD, MAX_PUBLIC_ADDRS};
use keys::KeyBook;
pub use keys::public_key_location;
use ops::Operations;
use replicator::Replicator;
use requester::{PacedReply, message_kind, value_of_row};
use searches::Searches;
use storer::{Notice, Storer};
pub use timers::TimerReason;
use timers::{Timer, TimerTable};

impl Node {
    /// A node with `config`, its randomness drawn from `seed`, started at `now`.
    pub fn new(config: Config, seed: [u8; 32], now: Instant) -> Node {
        let mut rng = ChaCha20Rng::from_seed(seed);
        rng.set_stream(1);
        let mut secret_rng = rpc::ParkedRng::new(seed, 2);
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
        let mut timers = TimerTable::default();
        timers.set(Timer::Maintenance, confirm_at);
        timers.set(Timer::ExpirePass, expire_at);
        if config.replicate {
            timers.set(Timer::Replication, now + config.replicate_period);
        }
        Node {
            rpc: Rpc::new(config.max_pending_requests),
            storer: Storer {
                tokens: Tokens::new(now, &mut secret_rng),
                storage: Storage::new(limits),
            },
            limiter: RateLimiter::new(
                now,
                config.max_req_per_sec,
                config.max_peer_req_per_sec,
                config.max_rate_limited_ips,
            ),
            blacklist: Blacklist::new(config.max_blacklist),
            reassembler: Reassembler::new(config.reassembly.clone()),
            tables: PerFamily::new(
                RoutingTable::new(Family::V4, id, config.bootstrap_mode).with_subnet_limits(
                    config.max_bucket_nodes_per_subnet,
                    config.max_search_nodes_per_subnet,
                ),
                RoutingTable::new(Family::V6, id, config.bootstrap_mode).with_subnet_limits(
                    config.max_bucket_nodes_per_subnet,
                    config.max_search_nodes_per_subnet,
                ),
            ),
            searches: Searches::new(config.max_searches)
                .with_subnet_limit(config.max_search_nodes_per_subnet),
            ops: Operations::new(),
            transmits: VecDeque::new(),
            paced: VecDeque::new(),
            paced_len: 0,
            awaiting: VecDeque::new(),
            uplink_free: Instant::ZERO,
            events: VecDeque::new(),
            stats: Stats::default(),
            connectivity: Connectivity::new(),
            timers,
            unix: None,
            shutting_down: false,
            shutdown_reported: false,
            keys: KeyBook::default(),
            last_input: now,
            replicator: Replicator::new(config.replicate_period),
            speculation: Speculation::new(),
            guard: crate::amplify::Guard::new(crate::amplify::Limits {
                factor: config.amplification_factor,
                max_unproven: config.max_unproven_addresses,
                max_held: config.max_held_bytes,
                max_held_per_address: config.max_held_bytes_per_address,
                max_proven: config.max_proven_addresses,
            }),
            full_reply_len: PerFamily::default(),
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
        self.connectivity.status(family)
    }

    /// Counters and gauges.
    pub fn stats(&self) -> Stats {
        let mut s = self.stats.clone();
        let now = self.last_now();
        let count = |t: &RoutingTable| [t.len(), t.nodes().filter(|n| n.is_good(now)).count()];
        let [n4, g4] = count(&self.tables.v4);
        let [n6, g6] = count(&self.tables.v6);
        s.nodes = PerFamily::new(n4, n6);
        s.good_nodes = PerFamily::new(g4, g6);
        s.searches = self.searches.len();
        s.stored_keys = self.storer.storage.keys();
        s.stored_values = self.storer.storage.values();
        s.stored_bytes = self.storer.storage.bytes();
        s.remote_listeners = self.storer.storage.listeners();
        s.pending_requests = self.rpc.len();
        s.operations = self.ops.len();
        s
    }

    fn last_now(&self) -> Instant {
        // Gauges are read between inputs; the last input's time is the node's present.
        self.last_input
    }

    /// Our public addresses as peers report them, most reported first (ports unknown).
    pub fn public_addresses(&self, family: Family) -> Vec<IpAddr> {
        self.connectivity.public_addresses(family)
    }

    /// The routing tables as counts per bucket (IPv4 and IPv6), in id order, for display.
    pub fn routing_summary(&self) -> PerFamily<Vec<crate::routing::BucketSummary>> {
        PerFamily::new(
            self.tables.v4.summary(self.last_input),
            self.tables.v6.summary(self.last_input),
        )
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
        self.storer
            .storage
            .entries(key)
            .iter()
            .map(|s| s.value.clone())
            .collect()
    }

    /// Heap bytes held by the routing tables, storage and searches (an estimate, for the
    /// memory benchmark).
    pub fn heap_bytes(&self) -> usize {
        let tables: usize = self.tables.iter().map(RoutingTable::heap_bytes).sum();
        let values: usize =
            self.storer.storage.bytes() + self.storer.storage.values() * size_of::<storage::Stored>();
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
    #[must_use]
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<Transmit> {
        let (destination, data) = match self.transmits.pop_front() {
            Some(t) => t,
            None => self.next_paced(now)?,
        };
        self.charge_uplink(now, data.len());
        buf.clear();
        buf.extend_from_slice(&data);
        let len = data.len();
        crate::bufpool::give(data);
        Some(Transmit { destination, len })
    }

    /// The next event. Call until `None` after every input and command.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Node::handle_timeout`] must next be called; `None`: only on new input.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_timer().map(|(at, _)| at)
    }

    /// [`Node::poll_timeout`] and why: the job due first (the first in a fixed order, when
    /// several are due at the same instant).
    #[must_use]
    pub fn next_timer(&self) -> Option<(Instant, TimerReason)> {
        // Called after every input: folded by hand over what each sub-machine reports.
        let mut next = (self.storer.tokens.next_rotation(), TimerReason::TokenRotation);
        let mut consider = |at: Option<Instant>, why: TimerReason| {
            if let Some(at) = at
                && at < next.0
            {
                next = (at, why);
            }
        };
        if let Some((at, t)) = self.timers.next() {
            consider(Some(at), t.reason());
        }
        consider(self.rpc.next_deadline(), TimerReason::Request);
        consider(self.reassembler.next_deadline(), TimerReason::Reassembly);
        consider(self.storer.storage.next_expiry(), TimerReason::ValueExpiry);
        consider(self.searches.next_wakeup(), TimerReason::Search);
        if !self.paced.is_empty() {
            consider(Some(self.uplink_free), TimerReason::Pacing);
        }
        consider(self.guard.next_deadline(), TimerReason::HeldDatagrams);
        consider(self.awaiting_deadline(), TimerReason::HeldDatagrams);
        if self.searches.has_dirty() {
            consider(Some(self.last_input), TimerReason::SearchStep);
        }
        Some(next)
    }

    /// Whether the node's own timer `t` is due; traces it when it is.
    fn fires(&self, t: Timer, now: Instant) -> bool {
        let due = self.timers.is_due(t, now);
        if due {
            tracing::trace!(reason = ?t.reason(), "timer fired");
        }
        due
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
        let (id, network, is_client) = (self.id, self.config.network, self.config.is_client);
        let encode = |tid, kind| {
            let mut buf = crate::bufpool::take();
            let msg = Message {
                network,
                is_client,
                ..Message::request(tid, id, kind)
            };
            crate::wire::encode(&msg, &mut buf);
            buf
        };
        while let Some(t) = self.rpc.poll_timeout(now, &mut self.rng, &encode, &mut out) {
            tracing::trace!(reason = ?TimerReason::Request, timeout = ?t, "timer fired");
            for (to, data) in out.drain(..) {
                // A retransmission keeps to the anti-amplification bound (held or dropped
                // past it): only a request's first sending is exempt.
                self.queue(to, data);
            }
            self.on_timeout(now, t);
        }
        self.reassembler.expire(now);
        self.expire_held(now);
        let removed = self.storer.storage.expire(now);
        if !removed.is_empty() {
            tracing::trace!(reason = ?TimerReason::ValueExpiry, values = removed.len(), "timer fired");
        }
        self.report_removed(now, removed);
        if self.storer.tokens.next_rotation() <= now {
            tracing::trace!(reason = ?TimerReason::TokenRotation, "timer fired");
        }
        self.storer.tokens.maybe_rotate(now, &mut self.secret_rng);
        if self.fires(Timer::Bootstrap, now) {
            self.bootstrap_job(now);
        }
        if self.fires(Timer::Maintenance, now) {
            self.maintenance(now);
        }
        if self.fires(Timer::ExpirePass, now) {
            self.expire_job(now);
        }
        if self.fires(Timer::Replication, now) {
            self.replicate(now);
        }
        self.searches.wake_due(now);
        self.after_input(now);
        self.compact(now);
    }

    /// Gives back what emptied tables hold. A node's tables fill for a moment (a search, a
    /// request in flight) and then stay empty for long; their leftover allocations would be
    /// most of an idle node's heap. Called on timer ticks and when nothing of ours is in
    /// flight, not after every datagram, so a busy node does not free and allocate the same
    /// table again and again.
    fn compact(&mut self, now: Instant) {
        use crate::compact::Compact;
        self.rpc.compact(now);
        self.blacklist.compact();
        self.limiter.compact();
        self.reassembler.compact();
        self.storer.storage.compact();
        for f in Family::ALL {
            self.tables[f].compact();
        }
        self.searches.compact();
        self.ops.compact();
        self.transmits.compact();
        self.paced.compact();
        self.awaiting.compact();
        self.events.compact();
        self.keys.compact();
        self.guard.compact();
    }

    /// Steps the searches touched by the last input, then updates statuses.
    fn after_input(&mut self, now: Instant) {
        // Stepping a search can touch others (new nodes); a few rounds settle it.
        for _ in 0..4 {
            if !self.searches.has_dirty() {
                break;
            }
            let dirty = self.searches.take_dirty();
            for skey in dirty {
                self.step_search(now, skey);
            }
        }
        self.update_status(now);
        self.internal(now);
        self.send_probes(now);
        if self.shutting_down && !self.shutdown_reported && !self.ops.has_puts() {
            self.shutdown_reported = true;
            self.emit(Event::ShutdownComplete);
        }
        if self.searches.is_empty() && self.rpc.len() == 0 {
            // Nothing of ours in flight: the moment the transient tables have emptied.
            self.compact(now);
        }
    }
}
