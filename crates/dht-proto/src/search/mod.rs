//! Searches (`opendht-wire.md` §5): one per key and address family, shared by every get, put and
//! listen on that key. A search keeps the closest nodes it knows, asks up to four at a time for
//! closer nodes (and values), and once the closest eight have all answered recently ("synced")
//! it completes gets, announces values and keeps listens alive.
//!
//! A search never sends anything itself: [`Search::step`] returns [`Action`]s, the node sends
//! them and reports the transaction ids back with [`Search::sent`].

use crate::prelude::*;
use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use core::net::SocketAddr;
use core::time::Duration;

use crate::event::{ListenToken, OpId};
use crate::family::Family;
use crate::value::{Query, Value, ValueId};
use crate::wire::{NodeInfo, Tid, Token};
use crate::{InfoHash, Instant};

/// Nodes kept per search, not counting bad ones (`SEARCH_NODES`).
pub(crate) const SEARCH_NODES: usize = 14;
/// Nodes that must answer, store or acknowledge (`TARGET_NODES`).
pub(crate) const TARGET_NODES: usize = 8;
/// Non-bad nodes with a get or find in flight at once (`MAX_REQUESTED_SEARCH_NODES`).
const ALPHA: usize = 4;
/// Requests in flight of a frugal search until its first reply...
const FRUGAL_START: usize = 1;
/// ...and after it has waited this long for that reply with no answer: a hedge against a lost
/// request or a dead node, which would otherwise hold the search for a retransmission.
const HEDGE: Duration = Duration::from_millis(100);
/// Nodes a listen goes to (`LISTEN_NODES`).
const LISTEN_NODES: usize = 4;
/// Expired nodes at the head of the list that expire the search (`SEARCH_MAX_BAD_NODES`).
const MAX_BAD_NODES: usize = 25;
/// How long a reply keeps a node synced, and how often the node list is refilled.
const SYNC_TIME: Duration = Duration::from_secs(10 * 60);
/// Announces and listens are renewed this long before they lapse (`REANNOUNCE_MARGIN`).
pub(crate) const REANNOUNCE_MARGIN: Duration = Duration::from_secs(10);

/// What a listened node pushed to one listen socket (an `update`, §2.10 step 4).
#[derive(Debug, Default)]
pub(crate) struct ListenUpdate {
    /// A fresh token from the node, if it sent one.
    pub token: Option<Token>,
    /// Values new or changed.
    pub values: Vec<Value>,
    /// Values whose life was extended.
    pub refreshed: Vec<ValueId>,
    /// Values gone.
    pub expired: Vec<ValueId>,
}
/// A storer forgets a listen after this (`LISTEN_EXPIRE_TIME`), or 5 min for public-stable nodes.
const LISTEN_EXPIRE: Duration = Duration::from_secs(30);
const LISTEN_EXPIRE_PUBLIC: Duration = Duration::from_secs(5 * 60);
/// While a family is still connecting, a search with no nodes waits this long before it gives up.
const CONNECT_GRACE: Duration = Duration::from_secs(10);
/// An expired search that still holds permanent puts or listens tries again after this.
const RETRY_EXPIRED: Duration = Duration::from_secs(60);
/// Longest accepted token (§2.9).
const MAX_TOKEN_LEN: usize = 64;

/// What a node has learned of its searches' speculative requests (those past the closest 8,
/// which OpenDHT always makes while a search is not yet synced): whether its searches should
/// explore as OpenDHT's do, or frugally.
///
/// In a young network the closest 8 a search converges on are often not the true closest,
/// and replies to speculative requests are what finds the others. Once routing tables have
/// settled they find nothing new, and each costs a request and a reply. So every search that
/// syncs after speculating reports whether it paid, and searches explore while the recent
/// average says it does. Past that, probes keep measuring: one search in
/// [`Speculation::PROBE_EVERY`] explores whatever the average says, and each probe that finds
/// nothing doubles that interval, up to [`Speculation::PROBE_EVERY_MAX`]; a probe that pays
/// brings it back to [`Speculation::PROBE_EVERY`].
///
/// A frugal search (`Search::wide` false) differs in two ways: until its first reply it has 1
/// request in flight, not 4, and 2 once that one has gone [`HEDGE`] unanswered (the first
/// reply, from a node near the key, names nodes nearer still, which the other first requests
/// would rarely have been); and a put's search asks only the closest 8 before it syncs. Gets that have found nothing and listens still ask
/// past the closest 8.
#[derive(Clone, Debug)]
pub(crate) struct Speculation {
    /// Average of recent verdicts (1 = paid), in 1/[`Speculation::ONE`]: a moving average
    /// over about 8 searches.
    score: u32,
    /// Searches left before the next probe.
    until_probe: u32,
    /// Searches from one probe to the next.
    probe_every: u32,
}

impl Speculation {
    const ONE: u32 = 1024;
    /// Keep speculating while more than about 1 in 32 speculating searches found a node.
    const THRESHOLD: u32 = Speculation::ONE / 32;
    /// Probes start at one search in this many...
    pub(crate) const PROBE_EVERY: u32 = 8;
    /// ...and, while they find nothing, thin out to one in this many.
    pub(crate) const PROBE_EVERY_MAX: u32 = 64;

    /// A node starts out speculating: it knows nothing of the network yet.
    pub(crate) fn new() -> Speculation {
        Speculation {
            score: Speculation::ONE,
            until_probe: Speculation::PROBE_EVERY,
            probe_every: Speculation::PROBE_EVERY,
        }
    }

    /// Whether the get or put starting now explores as OpenDHT does (see above).
    pub(crate) fn next_search(&mut self) -> bool {
        self.until_probe = self.until_probe.saturating_sub(1);
        let probe = self.until_probe == 0;
        if probe {
            self.until_probe = self.probe_every;
        }
        self.score > Speculation::THRESHOLD || probe
    }

    /// A search that speculated has synced: `paid` when that found one of its closest 8.
    pub(crate) fn record(&mut self, paid: bool) {
        self.score -= self.score / 8;
        if paid {
            self.score += Speculation::ONE / 8;
            self.probe_every = Speculation::PROBE_EVERY;
            self.until_probe = self.until_probe.min(Speculation::PROBE_EVERY);
        } else if self.score <= Speculation::THRESHOLD {
            // A probe (or the last of the speculating searches) found nothing.
            self.probe_every = (self.probe_every * 2).min(Speculation::PROBE_EVERY_MAX);
        }
    }
}

/// Per-node state of one announced value.
#[derive(Clone, Debug)]
struct Ack {
    vid: ValueId,
    /// The node's copy lasts until then.
    until: Option<Instant>,
    pending: Option<Tid>,
    /// The node holds the value: a permanent value is renewed with `refresh`.
    stored: bool,
}

/// A listen placed on one node.
#[derive(Clone, Debug)]
struct NodeListen {
    sid: Tid,
    pending: Option<Tid>,
    refresh_at: Option<Instant>,
    /// Values this node reported: until when they are believed alive, and their type's life.
    cache: BTreeMap<ValueId, (Instant, Duration)>,
}

/// An optional instant in 8 bytes instead of 16: `Instant::MAX` (584,000 years after the
/// origin, never a `now`) stands for none.
#[derive(Clone, Copy, Debug)]
struct Stamp(Instant);

impl Stamp {
    const NONE: Stamp = Stamp(Instant::MAX);

    fn at(t: Instant) -> Stamp {
        debug_assert!(t != Instant::MAX);
        Stamp(t)
    }

    fn get(self) -> Option<Instant> {
        (self.0 != Instant::MAX).then_some(self.0)
    }
}

/// The query of a get sent to a node, or of the last one it answered, in 16 bytes instead of
/// an `Option<Query>`'s 56: a find carries none, most gets the default query (every value),
/// and only another query is boxed. A node of a search is mostly a find's (bootstrap).
#[derive(Clone, Debug)]
enum SentQuery {
    /// A find: no query.
    Find,
    /// `Query::default()`.
    All,
    /// Any other query.
    Other(Box<Query>),
}

impl SentQuery {
    fn new(query: Option<Query>) -> SentQuery {
        match query {
            None => SentQuery::Find,
            Some(q) if q == Query::default() => SentQuery::All,
            Some(q) => SentQuery::Other(Box::new(q)),
        }
    }

    /// Whether it answers `query` in full (a find answers none).
    fn satisfies(&self, query: &Query) -> bool {
        match self {
            SentQuery::Find => false,
            SentQuery::All => query.is_satisfied_by(&Query::default()),
            SentQuery::Other(q) => query.is_satisfied_by(q),
        }
    }
}

#[derive(Clone, Debug)]
pub(crate) struct SearchNode {
    pub id: InfoHash,
    pub addr: SocketAddr,
    token: Option<Token>,
    last_reply: Stamp,
    /// The query the last get answered; `Find` for a find.
    replied_query: SentQuery,
    get_pending: Option<(Tid, SentQuery)>,
    candidate: bool,
    expired: bool,
    last_expired: Stamp,
    acks: Vec<Ack>,
    /// Boxed: most search nodes never carry a listen.
    listen: Option<Box<NodeListen>>,
    /// The last get or find to this node went past the first 8 non-bad nodes: a speculative
    /// request, made in case the closest 8 are not yet the true ones.
    asked_wide: bool,
    /// Only replies owed to speculation have named this node (since the last verdict): replies
    /// to speculative requests, or from nodes themselves known only through them.
    wide_only: bool,
}

impl SearchNode {
    fn new(info: NodeInfo) -> SearchNode {
        SearchNode {
            id: info.id,
            addr: info.addr,
            token: None,
            last_reply: Stamp::NONE,
            replied_query: SentQuery::Find,
            get_pending: None,
            candidate: false,
            expired: false,
            last_expired: Stamp::NONE,
            acks: Vec::new(),
            listen: None,
            asked_wide: false,
            wide_only: false,
        }
    }

    fn is_bad(&self) -> bool {
        self.expired || self.candidate
    }

    fn is_synced(&self, now: Instant) -> bool {
        !self.expired && self.token.is_some() && self.last_reply.get().is_some_and(|t| now - t < SYNC_TIME)
    }

    fn ack(&mut self, vid: ValueId) -> &mut Ack {
        let i = match self.acks.iter().position(|a| a.vid == vid) {
            Some(i) => i,
            None => {
                self.acks.push(Ack {
                    vid,
                    until: None,
                    pending: None,
                    stored: false,
                });
                self.acks.len() - 1
            }
        };
        // `i` was just found or pushed.
        #[allow(clippy::indexing_slicing)]
        let a = &mut self.acks[i];
        a
    }

    fn acked(&self, vid: ValueId, now: Instant) -> bool {
        self.acks
            .iter()
            .any(|a| a.vid == vid && a.until.is_some_and(|u| u > now))
    }
}

/// A get waiting on this search.
#[derive(Clone, Debug)]
pub(crate) struct GetOp {
    pub op: OpId,
    pub query: Query,
    started: Instant,
    /// A reply has brought a value this get matches.
    found: bool,
}

/// A value this search announces.
#[derive(Clone, Debug)]
pub(crate) struct Announce {
    pub value: Value,
    /// Creation time sent as `c` (in Unix seconds), for non-permanent values.
    pub created_unix: Option<i64>,
    pub permanent: bool,
    pub ops: Vec<OpId>,
    /// The value type's lifetime.
    pub life: Duration,
}

/// What one step of a search asks for: on the stack for the few a step usually has.
pub(crate) type Actions = smallvec::SmallVec<[Action; 4]>;

/// Something the node should send or report for a search.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Action {
    /// A `get` with this query, or a `find` when `None`.
    Get { to: NodeInfo, query: Option<Query> },
    /// A `put` of announce `vid`.
    Put {
        to: NodeInfo,
        token: Token,
        vid: ValueId,
    },
    /// A `refresh` of `vid`.
    Refresh {
        to: NodeInfo,
        token: Token,
        vid: ValueId,
    },
    /// A `listen` (a new socket when `sid` is `None`).
    Listen {
        to: NodeInfo,
        token: Token,
        sid: Option<Tid>,
        query: Query,
    },
    /// A get is complete: `answered` of the `asked` closest nodes it settled on answered it
    /// in full.
    GetDone {
        op: OpId,
        ok: bool,
        answered: usize,
        asked: usize,
    },
    /// A put's announce is complete (or failed, with fewer acks than targeted).
    PutDone {
        op: OpId,
        vid: ValueId,
        acked: usize,
        targeted: usize,
    },
}

/// What a sent request was, for [`Search::sent`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Sent {
    Get,
    Put(ValueId),
    Listen(Tid),
}

/// A change a listened node reported: the node applies it to its listen operations.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum ListenChange {
    /// A value this node had not reported before (`first` is true) or whose content changed.
    Added { value: Value, first: bool },
    /// A value this node reported is gone (expired, or the node left the search).
    Removed(ValueId),
}

#[derive(Clone, Debug)]
pub(crate) struct Search {
    pub key: InfoHash,
    pub family: Family,
    pub nodes: Vec<SearchNode>,
    pub gets: Vec<GetOp>,
    pub announces: Vec<Announce>,
    pub listens: Vec<(ListenToken, Query)>,
    /// A lookup of our own id to join the network: done once synced.
    pub join: bool,
    created: Instant,
    refilled: Option<Instant>,
    /// When the search sent its first get or find (see [`HEDGE`]).
    first_request: Option<Instant>,
    expired_at: Option<Instant>,
    pub last_activity: Instant,
    /// Whether this search explores as OpenDHT's do, or frugally (see [`Speculation`]); the
    /// node decides, from what speculative requests have recently been worth.
    pub wide: bool,
    /// A speculative request went out since the last verdict.
    wide_sent: bool,
    /// Set when the search is synced and the speculative requests it made are answered (or
    /// gave up): whether one of them found a node now among the closest 8 that no other reply
    /// named. The node takes it.
    pub verdict: Option<bool>,
    /// Sybil limit (`Config::max_search_nodes_per_subnet`): non-bad nodes of one subnet kept.
    pub per_subnet: Option<usize>,
    /// The wake-up the node's timers hold for this search, to move it (kept by the node's
    /// searches, here rather than in a map of their own: one B-tree leaf less per node).
    pub wakeup: Option<Instant>,
}

impl Search {
    pub(crate) fn new(now: Instant, key: InfoHash, family: Family) -> Search {
        Search {
            key,
            family,
            nodes: Vec::new(),
            gets: Vec::new(),
            announces: Vec::new(),
            listens: Vec::new(),
            join: false,
            created: now,
            refilled: None,
            first_request: None,
            expired_at: None,
            last_activity: now,
            wide: true,
            wide_sent: false,
            verdict: None,
            per_subnet: None,
            wakeup: None,
        }
    }

    /// Some node has replied to this search.
    fn answered(&self) -> bool {
        self.nodes.iter().any(|n| n.last_reply.get().is_some())
    }

    /// No get, announce or listen left: the search can go.
    pub(crate) fn is_idle(&self) -> bool {
        self.gets.is_empty() && self.announces.is_empty() && self.listens.is_empty() && !self.join
    }

    fn non_bad(&self) -> impl Iterator<Item = &SearchNode> {
        self.nodes.iter().filter(|n| !n.is_bad())
    }

    pub(crate) fn add_get(&mut self, now: Instant, op: OpId, query: Query) {
        self.gets.push(GetOp {
            op,
            query,
            started: now,
            found: false,
        });
        self.revive(now);
    }

    pub(crate) fn add_listen(&mut self, now: Instant, token: ListenToken, query: Query) {
        self.listens.push((token, query));
        self.revive(now);
    }

    /// Adds or replaces an announce. Returns the ops that must be told "done, not stored": a
    /// value of the same id with other content was being announced. The same content again
    /// joins the existing announce (and is done at the next step if already announced).
    pub(crate) fn add_announce(&mut self, now: Instant, a: Announce) -> Vec<OpId> {
        self.revive(now);
        let vid = a.value.id;
        if let Some(old) = self.announces.iter_mut().find(|o| o.value.id == vid) {
            if old.value.content_eq(&a.value) {
                old.permanent |= a.permanent;
                old.ops.extend(a.ops);
                return Vec::new();
            }
            let replaced = core::mem::take(&mut old.ops);
            *old = a;
            for n in &mut self.nodes {
                n.acks.retain(|x| x.vid != vid);
            }
            return replaced;
        }
        self.announces.push(a);
        Vec::new()
    }

    /// Stops announcing `vid`. Returns its ops (to be told "done").
    pub(crate) fn cancel_announce(&mut self, vid: ValueId) -> Option<Vec<OpId>> {
        let i = self.announces.iter().position(|a| a.value.id == vid)?;
        let a = self.announces.remove(i);
        for n in &mut self.nodes {
            n.acks.retain(|x| x.vid != vid);
        }
        Some(a.ops)
    }

    /// Removes a listen. When none is left, every node's listen state (and the values it
    /// reported) goes.
    pub(crate) fn cancel_listen(&mut self, token: ListenToken) -> Vec<ListenChange> {
        self.listens.retain(|(t, _)| *t != token);
        let mut out = Vec::new();
        if self.listens.is_empty() {
            for n in &mut self.nodes {
                if let Some(l) = n.listen.take() {
                    out.extend(l.cache.into_keys().map(ListenChange::Removed));
                }
            }
        }
        out
    }

    /// A get reply brought `values`: the gets that match one of them have found something.
    pub(crate) fn on_values(&mut self, values: &[Value]) {
        for g in &mut self.gets {
            g.found |= values.iter().any(|v| g.query.where_.matches(v));
        }
    }

    pub(crate) fn remove_get(&mut self, op: OpId) {
        self.gets.retain(|g| g.op != op);
    }

    /// A search that expired but has work again starts afresh.
    fn revive(&mut self, now: Instant) {
        if self.expired_at.is_some() {
            self.expired_at = None;
            self.refilled = None;
            self.created = now;
        }
        self.last_activity = now;
    }

    /// True when the node list should be refilled from the routing table.
    pub(crate) fn needs_refill(&self, now: Instant) -> bool {
        match self.refilled {
            None => true,
            Some(t) => self.non_bad().count() < SEARCH_NODES && now - t >= SYNC_TIME,
        }
    }

    pub(crate) fn refill(&mut self, now: Instant, nodes: &[NodeInfo]) -> Vec<ListenChange> {
        self.refilled = Some(now);
        let mut changes = Vec::new();
        for n in nodes {
            self.insert_node(now, *n, false, &mut changes);
        }
        changes
    }

    /// Offers a node (§5.2); `wide` when a reply to a speculative request named it. Returns
    /// true when it joined the list.
    pub(crate) fn insert_node(
        &mut self,
        now: Instant,
        info: NodeInfo,
        wide: bool,
        changes: &mut Vec<ListenChange>,
    ) -> bool {
        if Family::of(&info.addr) != self.family || info.id.is_zero() {
            return false;
        }
        if let Some(n) = self.nodes.iter_mut().find(|n| n.id == info.id) {
            n.wide_only &= wide;
            if n.expired && n.last_expired.get().is_some_and(|t| now - t >= SYNC_TIME) {
                n.addr = info.addr;
            }
            return false;
        }
        let key = self.key;
        let pos = self
            .nodes
            .partition_point(|n| key.xor_cmp(&n.id, &info.id) == core::cmp::Ordering::Less);
        // Not among the 14 closest non-bad nodes: not wanted.
        if self.nodes.iter().take(pos).filter(|n| !n.is_bad()).count() >= SEARCH_NODES {
            return false;
        }
        if let Some(limit) = self.per_subnet {
            let ip = info.addr.ip();
            let same = |n: &SearchNode| !n.is_bad() && crate::subnet::same_subnet(&n.addr.ip(), &ip);
            if self.nodes.iter().take(pos).filter(|n| same(n)).count() >= limit {
                return false;
            }
            // The new node is among its subnet's closest `limit`: the farthest past it goes.
            let mut seen = 0;
            let mut over = None;
            for (i, n) in self.nodes.iter().enumerate() {
                if same(n) {
                    seen += 1;
                    if seen + usize::from(i >= pos) > limit {
                        over = Some(i);
                        break;
                    }
                }
            }
            if let Some(i) = over {
                let gone = self.nodes.remove(i);
                if let Some(l) = gone.listen {
                    changes.extend(l.cache.into_keys().map(ListenChange::Removed));
                }
            }
        }
        let pos = self
            .nodes
            .partition_point(|n| self.key.xor_cmp(&n.id, &info.id) == core::cmp::Ordering::Less);
        let mut n = SearchNode::new(info);
        n.wide_only = wide;
        if self.nodes.capacity() == 0 {
            // Room for the 14 wanted and the one more a closer node brings before the trim,
            // at once: growing 4, 8, 16 made two blocks more, freed as the search filled.
            self.nodes.reserve_exact(SEARCH_NODES + 2);
        }
        self.nodes.insert(pos, n);
        self.trim(changes);
        true
    }

    /// Keeps at most 14 non-bad nodes, and at most 25 bad ones.
    fn trim(&mut self, changes: &mut Vec<ListenChange>) {
        let mut good = 0;
        let mut bad = 0;
        // In place, in order: nothing moves unless a node goes.
        self.nodes.retain_mut(|n| {
            let ok = if n.is_bad() {
                bad += 1;
                good < SEARCH_NODES && bad <= MAX_BAD_NODES
            } else {
                good += 1;
                good <= SEARCH_NODES
            };
            if !ok && let Some(l) = n.listen.take() {
                changes.extend(l.cache.into_keys().map(ListenChange::Removed));
            }
            ok
        });
    }

    fn node_mut(&mut self, id: &InfoHash) -> Option<&mut SearchNode> {
        self.nodes.iter_mut().find(|n| n.id == *id)
    }

    /// Records the tid of a request the node sent for an [`Action`].
    pub(crate) fn sent(&mut self, to: &InfoHash, what: Sent, tid: Tid, query: Option<Query>) {
        let wide = what == Sent::Get
            && self
                .non_bad()
                .position(|n| n.id == *to)
                .is_some_and(|rank| rank >= TARGET_NODES);
        self.wide_sent |= wide;
        let Some(n) = self.node_mut(to) else { return };
        match what {
            Sent::Get => {
                n.get_pending = Some((tid, SentQuery::new(query)));
                n.asked_wide = wide;
            }
            Sent::Put(vid) => n.ack(vid).pending = Some(tid),
            Sent::Listen(sid) => {
                let l = n.listen.get_or_insert_with(|| {
                    Box::new(NodeListen {
                        sid,
                        pending: None,
                        refresh_at: None,
                        cache: BTreeMap::new(),
                    })
                });
                l.sid = sid;
                l.pending = Some(tid);
            }
        }
    }

    /// Whether what a reply from `id` names is owed to speculation: the last get or find to
    /// `id` was a speculative one (past the closest 8), or `id` itself is known only through
    /// speculation.
    pub(crate) fn asked_wide(&self, id: &InfoHash) -> bool {
        self.nodes
            .iter()
            .any(|n| n.id == *id && (n.asked_wide || n.wide_only))
    }

    /// A get or find reply from `id`. A reply without a usable token is reported back as
    /// `false` (the node blacklists such a replier, as OpenDHT does).
    pub(crate) fn on_get_reply(
        &mut self,
        now: Instant,
        id: &InfoHash,
        tid: Tid,
        token: Option<&Token>,
    ) -> bool {
        let Some(n) = self.node_mut(id) else { return true };
        let query = match n.get_pending.take() {
            Some((t, q)) if t == tid => q,
            other => {
                n.get_pending = other;
                return true;
            }
        };
        let Some(token) = token.filter(|t| !t.is_empty() && t.len() <= MAX_TOKEN_LEN) else {
            n.expired = true;
            n.last_expired = Stamp::at(now);
            return false;
        };
        n.token = Some(token.clone());
        n.last_reply = Stamp::at(now);
        n.replied_query = query;
        n.candidate = false;
        n.expired = false;
        self.last_activity = now;
        true
    }

    /// Part of `id`'s reply to get or find `tid` arrived: a node given up as slow is taken
    /// back (its answer is coming, and the get waits for it). Returns true when it was.
    pub(crate) fn on_get_progress(&mut self, id: &InfoHash, tid: Tid) -> bool {
        match self.node_mut(id) {
            Some(n) if n.candidate && n.get_pending.as_ref().is_some_and(|(t, _)| *t == tid) => {
                n.candidate = false;
                true
            }
            _ => false,
        }
    }

    /// A get or find to `id` went unanswered twice: the node is a candidate (bad) until it
    /// answers.
    pub(crate) fn on_get_slow(&mut self, id: &InfoHash, tid: Tid) {
        if let Some(n) = self.node_mut(id)
            && n.get_pending.as_ref().is_some_and(|(t, _)| *t == tid)
        {
            n.candidate = true;
        }
    }

    /// A request to `id` expired: the node is expired here too.
    pub(crate) fn on_node_expired(&mut self, now: Instant, id: &InfoHash) -> bool {
        let Some(n) = self.node_mut(id) else { return false };
        n.expired = true;
        n.last_expired = Stamp::at(now);
        n.get_pending = None;
        for a in &mut n.acks {
            a.pending = None;
        }
        if let Some(l) = &mut n.listen {
            l.pending = None;
        }
        true
    }

    /// A put or refresh of `vid` was acknowledged by `id`.
    pub(crate) fn on_ack(&mut self, now: Instant, id: &InfoHash, vid: ValueId) {
        let life = match self.announces.iter().find(|a| a.value.id == vid) {
            Some(a) => a.life,
            None => return,
        };
        if let Some(n) = self.node_mut(id) {
            let a = n.ack(vid);
            a.pending = None;
            a.until = Some(now + life);
            a.stored = true;
        }
        self.last_activity = now;
    }

    /// A refresh of `vid` got 404, or a put failed: the next step sends a full put.
    pub(crate) fn on_put_failed(&mut self, id: &InfoHash, vid: ValueId) {
        if let Some(n) = self.node_mut(id) {
            let a = n.ack(vid);
            a.pending = None;
            a.stored = false;
            a.until = None;
        }
    }

    /// A 401 from `id`: its token is stale. A new get follows on the next step.
    pub(crate) fn on_unauthorized(&mut self, id: &InfoHash) {
        if let Some(n) = self.node_mut(id) {
            n.token = None;
            n.last_reply = Stamp::NONE;
            for a in &mut n.acks {
                a.pending = None;
            }
            if let Some(l) = &mut n.listen {
                l.pending = None;
                l.refresh_at = None;
            }
        }
    }

    /// A listen was confirmed by `id` with a fresh token.
    pub(crate) fn on_listen_reply(
        &mut self,
        now: Instant,
        id: &InfoHash,
        token: Option<&Token>,
        public_stable: bool,
    ) {
        let life = if public_stable {
            LISTEN_EXPIRE_PUBLIC
        } else {
            LISTEN_EXPIRE
        };
        if let Some(n) = self.node_mut(id) {
            if let Some(t) = token.filter(|t| !t.is_empty() && t.len() <= MAX_TOKEN_LEN) {
                n.token = Some(t.clone());
            }
            if let Some(l) = &mut n.listen {
                l.pending = None;
                l.refresh_at = Some(now + life.saturating_sub(REANNOUNCE_MARGIN));
            }
        }
    }

    /// The listen socket `sid` of node `id` was told of values, refreshes or expiries.
    pub(crate) fn on_update(
        &mut self,
        now: Instant,
        id: &InfoHash,
        sid: Tid,
        update: ListenUpdate,
        max_cache: usize,
        life_of: &dyn Fn(&Value) -> Duration,
    ) -> Vec<ListenChange> {
        let ListenUpdate {
            token,
            values,
            refreshed,
            expired,
        } = update;
        let mut out = Vec::new();
        let Some(n) = self.nodes.iter_mut().find(|n| n.id == *id) else {
            return out;
        };
        if let Some(t) = token.filter(|t| !t.is_empty() && t.len() <= MAX_TOKEN_LEN) {
            n.token = Some(t);
        }
        let Some(l) = n.listen.as_mut().filter(|l| l.sid == sid) else {
            return out;
        };
        for v in values {
            let life = life_of(&v);
            let first = l.cache.insert(v.id, (now + life, life)).is_none();
            out.push(ListenChange::Added { value: v, first });
        }
        for vid in &refreshed {
            if let Some((until, life)) = l.cache.get_mut(vid) {
                *until = (*until).max(now + *life);
            }
        }
        for vid in &expired {
            if l.cache.remove(vid).is_some() {
                out.push(ListenChange::Removed(*vid));
            }
        }
        // The cache is bounded: the values that expire first go, reported expired.
        while l.cache.len() > max_cache {
            let Some((&vid, _)) = l.cache.iter().min_by_key(|(vid, (t, _))| (*t, **vid)) else {
                break;
            };
            l.cache.remove(&vid);
            out.push(ListenChange::Removed(vid));
        }
        out
    }

    /// Drops listen-cache entries whose time has passed.
    pub(crate) fn expire_listen_caches(&mut self, now: Instant) -> Vec<ListenChange> {
        let mut out = Vec::new();
        for n in &mut self.nodes {
            if let Some(l) = &mut n.listen {
                let gone: Vec<ValueId> = l
                    .cache
                    .iter()
                    .filter(|(_, (t, _))| *t <= now)
                    .map(|(v, _)| *v)
                    .collect();
                for vid in gone {
                    l.cache.remove(&vid);
                    out.push(ListenChange::Removed(vid));
                }
            }
        }
        out
    }

    /// Whether some node of this search has listen socket `sid`.
    pub(crate) fn has_sid(&self, sid: Tid) -> bool {
        self.nodes
            .iter()
            .any(|n| n.listen.as_ref().is_some_and(|l| l.sid == sid))
    }

    /// Whether `id` has listen socket `sid` here.
    pub(crate) fn has_socket(&self, id: &InfoHash, sid: Tid) -> bool {
        self.nodes
            .iter()
            .any(|n| n.id == *id && n.listen.as_ref().is_some_and(|l| l.sid == sid))
    }

    /// Number of consecutive synced non-bad nodes at the head, at most 8.
    fn sync_level(&self, now: Instant) -> usize {
        self.non_bad()
            .take(TARGET_NODES)
            .take_while(|n| n.is_synced(now))
            .count()
    }

    pub(crate) fn is_synced(&self, now: Instant) -> bool {
        self.first_all(|n| n.is_synced(now))
    }

    fn is_announced(&self, vid: ValueId, now: Instant) -> bool {
        self.first_all(|n| n.acked(vid, now))
    }

    /// Whether there is a non-bad node and the first [`TARGET_NODES`] of them all pass `f`.
    fn first_all(&self, f: impl Fn(&SearchNode) -> bool) -> bool {
        let mut any = false;
        for n in self.non_bad().take(TARGET_NODES) {
            if !f(n) {
                return false;
            }
            any = true;
        }
        any
    }

    /// Whether `n` has answered get `g` in full.
    fn answered_get(n: &SearchNode, g: &GetOp) -> bool {
        n.get_pending.is_none()
            && n.last_reply.get().is_some_and(|t| t >= g.started)
            && n.replied_query.satisfies(&g.query)
    }

    /// A get is done when every live node among the closest [`TARGET_NODES`] has answered it in
    /// full. Live: not expired, and not silent (a candidate whose reply shows any sign of life
    /// is taken back, see [`Search::on_get_progress`]), so a node whose answer is still arriving
    /// holds the get until it has all of it.
    fn get_done(&self, g: &GetOp) -> bool {
        let first: Vec<&SearchNode> = self.non_bad().take(TARGET_NODES).collect();
        !first.is_empty() && first.iter().all(|n| Search::answered_get(n, g))
    }

    /// (answered, asked) of get `g` among the closest nodes: the non-expired nodes up to the
    /// [`TARGET_NODES`]th non-bad one (silent candidates count as asked), and of them those that
    /// answered in full.
    fn get_tally(&self, g: &GetOp) -> (usize, usize) {
        let mut good = 0;
        let (mut answered, mut asked) = (0, 0);
        for n in self.nodes.iter().filter(|n| !n.expired) {
            if good >= TARGET_NODES {
                break;
            }
            good += usize::from(!n.is_bad());
            asked += 1;
            answered += usize::from(Search::answered_get(n, g));
        }
        (answered, asked)
    }

    /// The query this search sends: the gets' common query, or everything when they differ.
    fn get_query(&self) -> Option<Query> {
        let first = self.gets.first()?;
        if self.gets.iter().all(|g| g.query == first.query) {
            Some(first.query.clone())
        } else {
            Some(Query::default())
        }
    }

    fn can_get(&self, n: &SearchNode, now: Instant) -> bool {
        if n.is_bad() || n.get_pending.is_some() {
            return false;
        }
        if self.gets.is_empty() {
            return !n.is_synced(now);
        }
        !self.gets.iter().all(|g| {
            n.last_reply.get().is_some_and(|t| t >= g.started) && n.replied_query.satisfies(&g.query)
        }) || !n.is_synced(now)
    }

    /// One search step (§5.3). `connecting` is true while the family is still bootstrapping.
    pub(crate) fn step(&mut self, now: Instant, connecting: bool, public_stable: bool) -> Actions {
        let mut out = Actions::new();
        if self.expired_at.is_some() {
            if now - self.expired_at.unwrap_or(now) < RETRY_EXPIRED || self.is_idle() {
                return out;
            }
            self.revive(now);
        }
        let synced = self.is_synced(now);
        if synced {
            // The gets that are done leave, in order (no new vectors: this runs on every reply).
            let mut i = 0;
            while let Some(g) = self.gets.get(i) {
                if !self.get_done(g) {
                    i += 1;
                    continue;
                }
                let g = self.gets.remove(i);
                let (answered, asked) = self.get_tally(&g);
                out.push(Action::GetDone {
                    op: g.op,
                    ok: true,
                    answered,
                    asked,
                });
            }
            self.join = false;
            self.check_announces(now, &mut out);
            if self.wide_sent && !self.nodes.iter().any(|n| n.asked_wide && n.get_pending.is_some()) {
                // Did speculation pay? Only if it found one of the closest 8 (replies to it
                // that come after the search synced count too: they can still add a node).
                let paid = self.non_bad().take(TARGET_NODES).any(|n| n.wide_only);
                self.verdict = Some(paid);
                self.wide_sent = false;
                for n in &mut self.nodes {
                    n.wide_only = false;
                }
            }
        }
        let reach = if synced {
            TARGET_NODES
        } else {
            self.sync_level(now).saturating_sub(1)
        };
        if reach > 0 {
            self.send_listens(now, reach.min(LISTEN_NODES), public_stable, &mut out);
            self.send_announces(now, reach, &mut out);
        }
        // Keep up to α gets or finds in flight. Like OpenDHT, ask down to the 14th node while
        // that may help: a listen, a get that has found nothing yet, or a put not yet synced
        // while the node finds such speculative requests worth it (`wide`): in a young network
        // the closest 8 a search converges on are not always the true ones, and the extra
        // replies are what finds the holders. Once every get has found a value and a put's
        // search is synced, or the node's recent searches show speculation finds nothing, only
        // the first 8 non-bad nodes, whose replies complete the search, are asked: on the
        // loopback bench, about 4 requests and replies fewer per get and 6 per put.
        let query = self.get_query();
        let mut in_flight = self.non_bad().filter(|n| n.get_pending.is_some()).count();
        let wanted = !self.is_idle();
        let narrow = self.listens.is_empty()
            && self.gets.iter().all(|g| g.found)
            && if self.announces.is_empty() {
                !self.gets.is_empty()
            } else {
                synced || !self.wide
            };
        let window = if narrow { TARGET_NODES } else { usize::MAX };
        // A frugal search waits for its first reply with only 1 request out, 2 once that has
        // taken [`HEDGE`] (see [`Speculation`]).
        let alpha = if self.wide || self.answered() {
            ALPHA
        } else if self.first_request.is_some_and(|t| now >= t + HEDGE) {
            FRUGAL_START + 1
        } else {
            FRUGAL_START
        };
        let mut asked = false;
        for n in self.non_bad().take(window) {
            if in_flight >= alpha || !wanted {
                break;
            }
            if self.can_get(n, now) {
                out.push(Action::Get {
                    to: NodeInfo {
                        id: n.id,
                        addr: n.addr,
                    },
                    query: query.clone(),
                });
                in_flight += 1;
                asked = true;
            }
        }
        if asked {
            self.first_request.get_or_insert(now);
        }
        self.check_expiry(now, connecting, &mut out);
        out
    }

    fn check_announces(&mut self, now: Instant, out: &mut Actions) {
        let targeted = self.non_bad().take(TARGET_NODES).count();
        let mut finished = Vec::new();
        for a in &self.announces {
            if (!a.ops.is_empty() || !a.permanent) && self.is_announced(a.value.id, now) {
                finished.push(a.value.id);
            }
        }
        for vid in finished {
            let acked = self.nodes.iter().filter(|n| n.acked(vid, now)).count();
            if let Some(a) = self.announces.iter_mut().find(|a| a.value.id == vid) {
                for op in a.ops.drain(..) {
                    out.push(Action::PutDone {
                        op,
                        vid,
                        acked,
                        targeted,
                    });
                }
            }
            // A put is done once its value is announced; only permanent values are kept alive.
            self.announces.retain(|a| a.value.id != vid || a.permanent);
        }
    }

    /// Among the first `reach` non-bad nodes, the synced ones holding a token: where announces
    /// and listens may go.
    ///
    /// As a set of indices into `nodes` (a bit each: the list holds at most 14 + 25), so that a
    /// step, which runs on every reply, allocates nothing until it has something to send.
    fn reachable(&self, now: Instant, reach: usize) -> u64 {
        self.nodes
            .iter()
            .enumerate()
            .take(64)
            .filter(|(_, n)| !n.is_bad())
            .take(reach)
            .filter(|(_, n)| n.is_synced(now) && n.token.is_some())
            .fold(0, |set, (i, _)| set | 1 << i)
    }

    fn send_announces(&mut self, now: Instant, reach: usize, out: &mut Actions) {
        if self.announces.is_empty() {
            return;
        }
        let set = self.reachable(now, reach);
        for (i, n) in self.nodes.iter().enumerate().take(64) {
            if set & 1 << i == 0 {
                continue;
            }
            let Some(token) = &n.token else { continue };
            let to = NodeInfo {
                id: n.id,
                addr: n.addr,
            };
            for a in &self.announces {
                let (vid, permanent) = (a.value.id, a.permanent);
                let ack = n.acks.iter().find(|k| k.vid == vid);
                if ack.is_some_and(|a| {
                    a.pending.is_some() || a.until.is_some_and(|u| now + REANNOUNCE_MARGIN < u)
                }) {
                    continue;
                }
                let token = token.clone();
                if permanent && ack.is_some_and(|a| a.stored) {
                    out.push(Action::Refresh { to, token, vid });
                } else {
                    out.push(Action::Put { to, token, vid });
                }
            }
        }
    }

    fn send_listens(&mut self, now: Instant, reach: usize, _public_stable: bool, out: &mut Actions) {
        if self.listens.is_empty() {
            return;
        }
        let query = match self.listens.first() {
            Some((_, q)) if self.listens.iter().all(|(_, o)| o == q) => q.clone(),
            _ => Query::default(),
        };
        let set = self.reachable(now, reach);
        for (i, n) in self.nodes.iter().enumerate().take(64) {
            if set & 1 << i == 0 {
                continue;
            }
            let Some(token) = &n.token else { continue };
            let due = match &n.listen {
                None => true,
                Some(l) => l.pending.is_none() && l.refresh_at.is_none_or(|t| t <= now),
            };
            if due {
                out.push(Action::Listen {
                    to: NodeInfo {
                        id: n.id,
                        addr: n.addr,
                    },
                    token: token.clone(),
                    sid: n.listen.as_ref().map(|l| l.sid),
                    query: query.clone(),
                });
            }
        }
    }

    /// §5.2: when the first min(size, 25) nodes are all expired (or there are none), the search
    /// expires: gets fail, non-permanent announces fail, permanent ones and listens wait.
    fn check_expiry(&mut self, now: Instant, connecting: bool, out: &mut Actions) {
        let head_expired = self.nodes.iter().take_while(|n| n.expired).count();
        if head_expired < self.nodes.len().min(MAX_BAD_NODES) {
            return;
        }
        if self.nodes.is_empty() && connecting && now - self.created < CONNECT_GRACE {
            return;
        }
        self.expired_at = Some(now);
        self.join = false;
        for g in core::mem::take(&mut self.gets) {
            let (answered, asked) = self.get_tally(&g);
            out.push(Action::GetDone {
                op: g.op,
                ok: false,
                answered,
                asked,
            });
        }
        let targeted = self.non_bad().take(TARGET_NODES).count();
        let mut i = 0;
        while let Some(a) = self.announces.get_mut(i) {
            let vid = a.value.id;
            let ops = core::mem::take(&mut a.ops);
            let permanent = a.permanent;
            let acked = self.nodes.iter().filter(|n| n.acked(vid, now)).count();
            out.extend(ops.into_iter().map(|op| Action::PutDone {
                op,
                vid,
                acked,
                targeted,
            }));
            if permanent {
                i += 1;
            } else {
                self.announces.remove(i);
            }
        }
    }

    /// When this search next needs a step without any new input.
    pub(crate) fn next_wakeup(&self, now: Instant) -> Option<Instant> {
        if let Some(t) = self.expired_at {
            return (!self.is_idle()).then_some(t + RETRY_EXPIRED);
        }
        // Only future times count: what is due now was done by the step that just ran, or waits
        // for a reply or timeout, which steps the search again.
        let mut next: Option<Instant> = None;
        let mut consider = |t: Instant| {
            if t > now {
                next = Some(next.map_or(t, |n| n.min(t)));
            }
        };
        if self.is_idle() {
            return None;
        }
        for n in &self.nodes {
            if let Some(t) = n.last_reply.get() {
                consider(t + SYNC_TIME);
            }
            for a in &n.acks {
                if let Some(u) = a.until
                    && self.announces.iter().any(|x| x.value.id == a.vid && x.permanent)
                {
                    consider(u.saturating_sub_duration(REANNOUNCE_MARGIN));
                }
            }
            if let Some(l) = &n.listen {
                if let Some(t) = l.refresh_at {
                    consider(t);
                }
                if let Some(t) = l.cache.values().map(|(t, _)| *t).min() {
                    consider(t);
                }
            }
        }
        if let Some(t) = self.refilled {
            consider(t + SYNC_TIME);
        }
        if let Some(t) = self.first_request
            && !self.wide
            && !self.answered()
        {
            consider(t + HEDGE);
        }
        if self.nodes.is_empty() {
            consider(self.created + CONNECT_GRACE);
        }
        next
    }

    /// Forgets everything learned about the network (connectivity changed).
    pub(crate) fn reset(&mut self, now: Instant) -> Vec<ListenChange> {
        let mut out = Vec::new();
        for n in self.nodes.drain(..) {
            if let Some(l) = n.listen {
                out.extend(l.cache.into_keys().map(ListenChange::Removed));
            }
        }
        self.refilled = None;
        self.expired_at = None;
        self.created = now;
        out
    }

    /// Closest nodes with their state, for display.
    pub(crate) fn describe(&self, now: Instant) -> String {
        use core::fmt::Write;
        let mut s = format!(
            "search {} {:?}: {} gets, {} announces, {} listens, synced {}\n",
            self.key,
            self.family,
            self.gets.len(),
            self.announces.len(),
            self.listens.len(),
            self.is_synced(now)
        );
        for n in &self.nodes {
            let _ = writeln!(
                s,
                "  {} {} {}{}{}",
                n.id,
                n.addr,
                if n.is_synced(now) { "synced" } else { "-" },
                if n.candidate { " candidate" } else { "" },
                if n.expired { " expired" } else { "" }
            );
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::{Search, SearchNode, SentQuery, Speculation};
    use crate::prelude::*;
    use crate::value::{Field, Query, Select};
    use crate::wire::NodeInfo;
    use crate::{Family, InfoHash, Instant};

    /// A search keeps up to 14 good and 25 bad nodes, most of them a bootstrap's finds: their
    /// size is what a joining node's searches cost. The queries and the listen state are out
    /// of line and its instants are 8 bytes each
    /// (it was 312 bytes).
    #[test]
    fn a_search_node_holds_its_queries_and_listen_out_of_line() {
        let size = core::mem::size_of::<SearchNode>();
        std::println!(
            "SearchNode: {size} bytes, Search: {}",
            core::mem::size_of::<Search>()
        );
        assert!(size <= 192, "SearchNode is {size} bytes");
        assert_eq!(core::mem::size_of::<SentQuery>(), 16);
    }

    /// The compact form answers exactly what the query it stands for answers.
    #[test]
    fn a_sent_query_satisfies_what_its_query_satisfies() {
        let some = Query::new(Select::all().field(Field::Id), Default::default());
        let queries = [Query::default(), some.clone()];
        for sent in [None, Some(Query::default()), Some(some)] {
            let compact = SentQuery::new(sent.clone());
            for q in &queries {
                let want = sent.as_ref().is_some_and(|s| q.is_satisfied_by(s));
                assert_eq!(compact.satisfies(q), want, "{sent:?} answering {q:?}");
            }
        }
        assert!(matches!(SentQuery::new(Some(Query::default())), SentQuery::All));
        assert!(matches!(SentQuery::new(None), SentQuery::Find));
    }

    #[test]
    fn a_search_keeps_at_most_a_few_nodes_of_one_subnet_the_closest_of_them() {
        let key = InfoHash([0x40; 20]);
        let near = |i: u8| {
            let mut id = key;
            id.0[19] ^= i;
            id
        };
        let mut s = Search::new(Instant::ZERO, key, Family::V4);
        s.per_subnet = Some(3);
        let mut changes = Vec::new();
        let sybil = |i: u8| NodeInfo {
            id: near(i),
            addr: core::net::SocketAddr::from(([198, 51, 100, i], 4222)),
        };
        // Sybils at distances 10..20, then closer ones at 1..3: the closest three stay.
        for i in 10..20 {
            s.insert_node(Instant::ZERO, sybil(i), false, &mut changes);
        }
        assert_eq!(s.nodes.len(), 3);
        for i in 1..4 {
            assert!(s.insert_node(Instant::ZERO, sybil(i), false, &mut changes));
        }
        let ids: Vec<InfoHash> = s.nodes.iter().map(|n| n.id).collect();
        assert_eq!(ids, [near(1), near(2), near(3)]);
        // Nodes of other subnets are not held back.
        for i in 30..40u8 {
            let n = NodeInfo {
                id: near(i),
                addr: core::net::SocketAddr::from(([198, 51, i, 1], 4222)),
            };
            assert!(s.insert_node(Instant::ZERO, n, false, &mut changes));
        }
        assert_eq!(s.nodes.len(), 13);
    }

    #[test]
    fn speculation_stops_when_it_finds_nothing_and_comes_back_when_it_pays() {
        let mut s = Speculation::new();
        assert!(s.next_search(), "a new node speculates");
        // 27 searches in a row where it found nothing bring the average under 1 in 32.
        for _ in 0..27 {
            s.record(false);
        }
        // Probes that find nothing thin out: 1 in 8, then 16, 32, 64, and no rarer.
        let gaps = probe_gaps(&mut s, 1000);
        assert_eq!(gaps[..6], [7, 16, 32, 64, 64, 64], "{gaps:?}");
        assert!(
            gaps.iter().all(|&g| g <= Speculation::PROBE_EVERY_MAX),
            "{gaps:?}"
        );
        // A probe pays: the network is changing again, and the next searches all explore.
        s.record(true);
        assert!((0..Speculation::PROBE_EVERY).all(|_| s.next_search()));
        // Once the average falls again, probes come back within 8 searches and thin out anew.
        let gaps = probe_gaps(&mut s, 1000);
        let at = gaps.iter().position(|&g| g > 1).unwrap_or(gaps.len());
        assert!(
            gaps.get(at).is_some_and(|&g| g <= Speculation::PROBE_EVERY),
            "{gaps:?}"
        );
        assert_eq!(gaps.get(at + 1..at + 4), Some(&[16, 32, 64][..]), "{gaps:?}");
    }

    /// Runs `n` searches where speculation never pays; the number of searches from each
    /// speculating one to the next.
    fn probe_gaps(s: &mut Speculation, n: usize) -> Vec<u32> {
        let mut gaps = Vec::new();
        let mut since = 0;
        for _ in 0..n {
            since += 1;
            if s.next_search() {
                gaps.push(since);
                since = 0;
                s.record(false);
            }
        }
        gaps
    }
}
