//! The routing table of one address family (`opendht-wire.md` §4): buckets of 8 nodes split by
//! OpenDHT's rules, node states, the bucket's replacement candidate, closest-node lookup and the
//! maintenance that keeps buckets fresh.

use crate::prelude::*;
use core::net::SocketAddr;
use core::time::Duration;

use rand_core::RngCore;
use smallvec::SmallVec;

use crate::family::{Family, Status};
use crate::wire::NodeInfo;
use crate::{InfoHash, Instant};

/// Nodes per bucket (`TARGET_NODES`, K).
pub(crate) const BUCKET_SIZE: usize = 8;
/// A node that has not replied for this long is no longer good (`NODE_GOOD_TIME`).
pub(crate) const NODE_GOOD_TIME: Duration = Duration::from_secs(120 * 60);
/// A node not heard from for this long is "old" (`NODE_EXPIRE_TIME`).
pub(crate) const NODE_EXPIRE_TIME: Duration = Duration::from_secs(10 * 60);
/// Auth errors after which a node is expired (`MAX_AUTH_ERRORS`).
const MAX_AUTH_ERRORS: u8 = 3;
/// The nodes a value is stored on, closest first (OpenDHT's `TARGET_NODES`).
const REPLICAS: usize = 8;
/// How many good nodes a storer compares itself with before it takes a put (§7.3; OpenDHT's
/// `SEARCH_NODES`).
const STORE_WINDOW: usize = 14;
/// Removed nodes remembered for another try.
const GRAVEYARD_SIZE: usize = 64;
/// First retry of a removed node; the wait then doubles.
const GRAVE_FIRST_RETRY: Duration = Duration::from_secs(60);
/// Tries before a removed node is forgotten (about two hours of doubling waits).
const GRAVE_TRIES: u8 = 7;

/// A node removed from the table, to be pinged again now and then.
#[derive(Clone, Debug)]
struct Grave {
    node: NodeInfo,
    next_try: Instant,
    tries: u8,
}

/// Buckets with no reply for this long are refreshed.
const BUCKET_REFRESH: Duration = Duration::from_secs(10 * 60);

/// How we learned of a node (OpenDHT's `confirm` levels).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Confirm {
    /// From another node's list.
    Learned,
    /// It sent us a request.
    Requested,
    /// It replied to us.
    Replied,
}

/// A moment, or never, in 8 bytes where an `Option<Instant>` takes 16: a table holds a
/// hundred or more entries with two of them, in every node of a simulated million.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stamp(u64);

impl Stamp {
    /// Never (`Instant::MAX` itself reads as never: no clock reaches it).
    const NEVER: Stamp = Stamp(u64::MAX);

    fn at(t: Instant) -> Stamp {
        Stamp(t.as_micros())
    }

    fn get(self) -> Option<Instant> {
        (self != Stamp::NEVER).then(|| Instant::from_micros(self.0))
    }
}

/// A node in the table (72 bytes).
#[derive(Clone, Debug)]
pub(crate) struct NodeEntry {
    pub id: InfoHash,
    pub addr: SocketAddr,
    last_heard: Stamp,
    last_replied: Stamp,
    pub expired: bool,
    pub auth_errors: u8,
}

impl NodeEntry {
    fn new(id: InfoHash, addr: SocketAddr) -> NodeEntry {
        NodeEntry {
            id,
            addr,
            last_heard: Stamp::NEVER,
            last_replied: Stamp::NEVER,
            expired: false,
            auth_errors: 0,
        }
    }

    /// When it last sent us a request or a reply.
    pub(crate) fn last_heard(&self) -> Option<Instant> {
        self.last_heard.get()
    }

    /// When it last replied to us.
    pub(crate) fn last_replied(&self) -> Option<Instant> {
        self.last_replied.get()
    }

    /// Not expired, replied within 120 min and heard from within 10 min.
    pub(crate) fn is_good(&self, now: Instant) -> bool {
        !self.expired
            && self.last_replied().is_some_and(|t| now - t < NODE_GOOD_TIME)
            && self.last_heard().is_some_and(|t| now - t < NODE_EXPIRE_TIME)
    }

    /// Not heard from for 10 min.
    pub(crate) fn is_old(&self, now: Instant) -> bool {
        self.last_heard().is_none_or(|t| now - t >= NODE_EXPIRE_TIME)
    }

    fn touch(&mut self, now: Instant, addr: SocketAddr, confirm: Confirm) {
        if confirm >= Confirm::Requested || self.is_old(now) {
            self.addr = addr;
        }
        if confirm >= Confirm::Requested {
            self.last_heard = Stamp::at(now);
            self.expired = false;
        }
        if confirm == Confirm::Replied {
            self.last_replied = Stamp::at(now);
        }
    }

    pub(crate) fn info(&self) -> NodeInfo {
        NodeInfo {
            id: self.id,
            addr: self.addr,
        }
    }
}

#[derive(Clone, Debug)]
struct Bucket {
    first: InfoHash,
    nodes: Vec<NodeEntry>,
    /// The last byte of each node's id, in the order of `nodes`: a lookup by id reads these
    /// (in the bucket's own cache lines) and only the entry they point at, not the whole list
    /// of 72-byte entries (at a hundred thousand nodes, each a cache miss).
    tags: [u8; BUCKET_SIZE],
    /// A replacement candidate, pinged when a place frees up.
    cached: Option<NodeInfo>,
    /// Last reply from any node of the bucket.
    time: Stamp,
}

impl Bucket {
    fn new(first: InfoHash) -> Bucket {
        Bucket {
            first,
            nodes: Vec::new(),
            tags: [0; BUCKET_SIZE],
            cached: None,
            time: Stamp::NEVER,
        }
    }

    fn tag(id: &InfoHash) -> u8 {
        let [.., t] = *id.as_bytes();
        t
    }

    /// Makes `tags` follow `nodes` again, after a change of its ids.
    fn retag(&mut self) {
        for (t, n) in self.tags.iter_mut().zip(&self.nodes) {
            *t = Bucket::tag(&n.id);
        }
    }

    /// The index of node `id` in `nodes`.
    fn find(&self, id: &InfoHash) -> Option<usize> {
        if self.nodes.len() > BUCKET_SIZE {
            return self.nodes.iter().position(|n| n.id == *id);
        }
        let t = Bucket::tag(id);
        self.tags
            .iter()
            .take(self.nodes.len())
            .enumerate()
            .filter(|&(_, x)| *x == t)
            .map(|(k, _)| k)
            .find(|&k| self.nodes.get(k).is_some_and(|n| n.id == *id))
    }
}

/// One family's table.
#[derive(Clone, Debug)]
pub(crate) struct RoutingTable {
    family: Family,
    own: InfoHash,
    bootstrap_mode: bool,
    buckets: Vec<Bucket>,
    /// The first 64 bits of each bucket's first id, side by side: while no bucket is deeper than
    /// 64 bits (`!deep`), they alone find a bucket, in a few cache lines.
    prefixes: Vec<u64>,
    /// Some bucket starts past its first 64 bits: [`RoutingTable::bucket_of`] compares whole ids.
    deep: bool,
    /// Nodes removed as expired, tried again later (bounded).
    graveyard: alloc::collections::VecDeque<Grave>,
    /// Last time a node was added to our own bucket.
    pub grow_time: Option<Instant>,
    /// `Config::max_bucket_nodes_per_subnet`.
    per_subnet: Option<usize>,
    /// `Config::max_search_nodes_per_subnet`: among the closest a storer counts.
    closest_per_subnet: Option<usize>,
}

impl RoutingTable {
    /// Frees what an emptied graveyard holds (see [`crate::compact`]).
    pub(crate) fn compact(&mut self) {
        crate::compact::Compact::compact(&mut self.graveyard);
    }

    pub(crate) fn new(family: Family, own: InfoHash, bootstrap_mode: bool) -> RoutingTable {
        RoutingTable {
            family,
            own,
            bootstrap_mode,
            buckets: vec![Bucket::new(InfoHash::ZERO)],
            prefixes: vec![0],
            deep: false,
            graveyard: alloc::collections::VecDeque::new(),
            grow_time: None,
            per_subnet: None,
            closest_per_subnet: None,
        }
    }

    /// At most `bucket` nodes of one subnet (IPv4 /24, IPv6 /64) per bucket, and at most
    /// `closest` of one subnet counted among the closest nodes of a key when deciding whether
    /// we store it; `None`: no limit.
    pub(crate) fn with_subnet_limits(
        mut self,
        bucket: Option<usize>,
        closest: Option<usize>,
    ) -> RoutingTable {
        self.per_subnet = bucket;
        self.closest_per_subnet = closest;
        self
    }

    /// Index of the bucket covering `id`.
    fn bucket_of(&self, id: &InfoHash) -> usize {
        if self.deep {
            return self.buckets.partition_point(|b| b.first <= *id).saturating_sub(1);
        }
        // Every first id is zero past its 64th bit, so `first <= id` exactly when its prefix is
        // at most the id's.
        let p = id.words().0;
        self.prefixes.partition_point(|f| *f <= p).saturating_sub(1)
    }

    fn depth(&self, i: usize) -> u32 {
        let bit1 = self.buckets.get(i).and_then(|b| b.first.lowbit());
        let bit2 = self.buckets.get(i + 1).and_then(|b| b.first.lowbit());
        match bit1.max(bit2) {
            Some(b) => b + 1,
            None => 0,
        }
    }

    fn split(&mut self, i: usize) -> bool {
        let depth = self.depth(i);
        if depth >= 160 {
            return false;
        }
        let Some(b) = self.buckets.get_mut(i) else {
            return false;
        };
        let mut first = b.first;
        first.set_bit(depth, true);
        let (mut stay, mut go): (Vec<_>, Vec<_>) = b.nodes.drain(..).partition(|n| n.id < first);
        // Each half holds what it has, not the doubled capacity `partition` grew it to.
        stay.shrink_to_fit();
        go.shrink_to_fit();
        b.nodes = stay;
        b.retag();
        let mut nb = Bucket::new(first);
        nb.nodes = go;
        nb.retag();
        nb.time = b.time;
        // A table has a few dozen buckets at most, split one at a time: exact capacities.
        self.buckets.reserve_exact(1);
        self.prefixes.reserve_exact(1);
        self.buckets.insert(i + 1, nb);
        self.prefixes.insert(i + 1, first.words().0);
        self.deep |= depth >= 64;
        true
    }

    pub(crate) fn get(&self, id: &InfoHash) -> Option<&NodeEntry> {
        let b = self.buckets.get(self.bucket_of(id))?;
        b.nodes.get(b.find(id)?)
    }

    pub(crate) fn get_mut(&mut self, id: &InfoHash) -> Option<&mut NodeEntry> {
        let i = self.bucket_of(id);
        let b = self.buckets.get_mut(i)?;
        let k = b.find(id)?;
        b.nodes.get_mut(k)
    }

    /// OpenDHT's `onNewNode`. Returns true when the node was added. Nodes the caller should ping
    /// (dubious nodes of a full bucket, candidates of a split bucket) go to `pings`.
    pub(crate) fn on_new_node(
        &mut self,
        now: Instant,
        id: InfoHash,
        addr: SocketAddr,
        confirm: Confirm,
        has_pending: &dyn Fn(&SocketAddr) -> bool,
        pings: &mut Vec<NodeInfo>,
    ) -> bool {
        if id == self.own || id.is_zero() || Family::of(&addr) != self.family {
            return false;
        }
        loop {
            let i = self.bucket_of(&id);
            let Some(b) = self.buckets.get_mut(i) else {
                return false;
            };
            if confirm == Confirm::Replied {
                b.time = Stamp::at(now);
            }
            // Most nodes a reply names are known already: settle those before anything else.
            if let Some(k) = b.find(&id)
                && let Some(n) = b.nodes.get_mut(k)
            {
                n.touch(now, addr, confirm);
                return false;
            }
            let splittable = {
                let contains_own = self.bucket_of(&self.own) == i;
                contains_own || (self.bootstrap_mode && self.depth(i) < 6)
            };
            let single = self.buckets.len() == 1;
            let own = self.own;
            let Some(b) = self.buckets.get_mut(i) else {
                return false;
            };
            let mut entry = NodeEntry::new(id, addr);
            entry.touch(now, addr, confirm);
            if confirm == Confirm::Learned {
                // Heard of, not from: it counts as dubious until it answers.
                entry.last_heard = Stamp::NEVER;
            }
            if let Some(limit) = self.per_subnet
                && b.nodes
                    .iter()
                    .filter(|n| crate::subnet::same_subnet(&n.addr.ip(), &addr.ip()))
                    .count()
                    >= limit
            {
                // Sybil limit: the subnet has its share of this bucket. A dead one of it may
                // make room; nothing else does (no split, no candidate).
                if let Some(slot) = b
                    .nodes
                    .iter_mut()
                    .find(|n| n.expired && crate::subnet::same_subnet(&n.addr.ip(), &addr.ip()))
                {
                    *slot = entry;
                    b.retag();
                    return true;
                }
                return false;
            }
            if b.nodes.len() < BUCKET_SIZE {
                // Grown one entry at a time (a bucket fills once, then mostly stays full): a
                // bucket of 5 nodes holds 5 entries, not the 8 of a doubling growth.
                b.nodes.reserve_exact(1);
                b.nodes.insert(0, entry);
                b.retag();
                if b.first <= own && self.bucket_of(&own) == i {
                    self.grow_time = Some(now);
                }
                return true;
            }
            if let Some(slot) = b.nodes.iter_mut().find(|n| n.expired) {
                *slot = entry;
                b.retag();
                return true;
            }
            let mut dubious = false;
            for n in &b.nodes {
                if !n.is_good(now) {
                    dubious = true;
                    if !has_pending(&n.addr) {
                        pings.push(n.info());
                        break;
                    }
                }
            }
            if splittable && (!dubious || single) {
                if let Some(c) = b.cached.take() {
                    pings.push(c);
                }
                if self.split(i) {
                    continue;
                }
                return false;
            }
            if confirm != Confirm::Learned || b.cached.is_none() {
                b.cached = Some(entry.info());
            }
            return false;
        }
    }

    /// A node answered our put, refresh or listen with "wrong token": past
    /// `MAX_AUTH_ERRORS` of them it is expired.
    pub(crate) fn on_auth_error(&mut self, id: &InfoHash) {
        if let Some(n) = self.get_mut(id) {
            n.auth_errors = n.auth_errors.saturating_add(1);
            if n.auth_errors > MAX_AUTH_ERRORS {
                n.expired = true;
            }
        }
    }

    /// Whether `me` belongs among the `count` nodes closest to `key` that this table knows (good
    /// ones only, or every non-expired one): when fewer than [`REPLICAS`] are known, or `me` is
    /// closer than the farthest of them. `None` when none is known.
    fn among_closest(
        &self,
        now: Instant,
        key: &InfoHash,
        me: &InfoHash,
        count: usize,
        good_only: bool,
    ) -> Option<bool> {
        // The closest (twice as many under a subnet limit), kept in order while their subnet
        // is under its limit (as `subnet::diverse` keeps them), the first `count` of those.
        let limit = self.closest_per_subnet;
        let want = if limit.is_some() { 2 * count } else { count };
        let mut seen: SmallVec<[(u128, usize); 32]> = SmallVec::new();
        let (mut kept, mut far) = (0usize, None);
        self.closest_each(now, key, want, good_only, |n| {
            if kept >= count {
                return;
            }
            if let Some(limit) = limit
                && let Some(s) = crate::subnet::subnet_of(&n.addr.ip())
            {
                let c = match seen.iter_mut().find(|(k, _)| *k == s) {
                    Some((_, c)) => c,
                    None => {
                        seen.push((s, 0));
                        match seen.last_mut() {
                            Some((_, c)) => c,
                            None => return,
                        }
                    }
                };
                *c += 1;
                if *c > limit {
                    return;
                }
            }
            kept += 1;
            far = Some(n.id);
        });
        let far = far?;
        Some(kept < REPLICAS || key.xor_cmp(me, &far) == core::cmp::Ordering::Less)
    }

    /// A storer's check before it takes a put for `key` (§7.3): unless it knows enough good
    /// nodes closer to the key than itself (`me`), the put is for it.
    pub(crate) fn takes_store(&self, now: Instant, key: &InfoHash, me: &InfoHash) -> bool {
        self.among_closest(now, key, me, STORE_WINDOW, true) != Some(false)
    }

    /// Whether `me` is among the closest live nodes of `key` this table knows, and the table
    /// knows some: a storer responsible for re-replicating the key.
    pub(crate) fn responsible_for(&self, now: Instant, key: &InfoHash, me: &InfoHash) -> bool {
        self.among_closest(now, key, me, REPLICAS, false) == Some(true)
    }

    /// Marks a node expired (a request timed out, or too many auth errors).
    pub(crate) fn mark_expired(&mut self, id: &InfoHash) {
        if let Some(n) = self.get_mut(id) {
            n.expired = true;
        }
    }

    /// Up to `count` nodes closest to `target`, closest first: good ones only, or every
    /// non-expired one.
    pub(crate) fn closest(
        &self,
        now: Instant,
        target: &InfoHash,
        count: usize,
        good_only: bool,
    ) -> Vec<NodeInfo> {
        let mut out = Vec::with_capacity(count);
        self.closest_each(now, target, count, good_only, |n| out.push(n.info()));
        out
    }

    /// [`RoutingTable::closest`] without a result vector: `f` sees each chosen node, closest
    /// first. The candidates are gathered on the stack (a spill to the heap only for a count
    /// far above a search's), so a reply's or a fingerprint's nodes cost no allocation here.
    pub(crate) fn closest_each<'a>(
        &'a self,
        now: Instant,
        target: &InfoHash,
        count: usize,
        good_only: bool,
        mut f: impl FnMut(&'a NodeEntry),
    ) {
        // Distances as three words compare far faster than 20-byte arrays, and candidates are
        // gathered by reference: only the `count` chosen are handed on.
        type Candidate<'a> = ((u64, u64, u32), &'a NodeEntry);
        let t = target.words();
        let mut out: SmallVec<[Candidate<'_>; 48]> = SmallVec::new();
        let take = |b: &'a Bucket, out: &mut SmallVec<[Candidate<'a>; 48]>| {
            for n in &b.nodes {
                if if good_only { n.is_good(now) } else { !n.expired } {
                    let w = n.id.words();
                    out.push(((w.0 ^ t.0, w.1 ^ t.1, w.2 ^ t.2), n));
                }
            }
        };
        let start = self.bucket_of(target);
        if let Some(b) = self.buckets.get(start) {
            take(b, &mut out);
        }
        // Every node inside the target's bucket is closer than any node outside it, so a bucket
        // that has enough is the answer. Otherwise walk outwards until `count` are gathered, then
        // one bucket more each way: across buckets XOR order is not index order.
        if out.len() < count {
            let mut lo = start;
            let mut hi = start + 1;
            let mut extra = 1;
            while lo > 0 || hi < self.buckets.len() {
                if let Some(b) = self.buckets.get(hi) {
                    take(b, &mut out);
                    hi += 1;
                }
                if lo > 0 {
                    lo -= 1;
                    if let Some(b) = self.buckets.get(lo) {
                        take(b, &mut out);
                    }
                }
                if out.len() >= count {
                    if extra == 0 {
                        break;
                    }
                    extra -= 1;
                }
            }
        }
        if out.len() > count && count > 0 {
            out.select_nth_unstable_by_key(count - 1, |e| e.0);
            out.truncate(count);
        }
        out.sort_unstable_by_key(|e| e.0);
        for (_, n) in out {
            f(n);
        }
    }

    /// Removes expired nodes; their buckets' candidates are returned to be pinged. The removed
    /// nodes go to the graveyard, to be tried again later.
    pub(crate) fn expire(&mut self, now: Instant) -> Vec<NodeInfo> {
        let mut pings = Vec::new();
        let mut dead = Vec::new();
        for b in &mut self.buckets {
            let before = b.nodes.len();
            b.nodes.retain(|n| {
                if n.expired {
                    dead.push(n.info());
                }
                !n.expired
            });
            b.retag();
            if b.nodes.len() < before
                && let Some(c) = b.cached.take()
            {
                pings.push(c);
            }
        }
        for n in dead {
            self.bury(now, n);
        }
        pings
    }

    fn bury(&mut self, now: Instant, n: NodeInfo) {
        if self.graveyard.iter().any(|g| g.node.id == n.id) {
            return;
        }
        if self.graveyard.len() >= GRAVEYARD_SIZE {
            self.graveyard.pop_front();
        }
        self.graveyard.push_back(Grave {
            node: n,
            next_try: now + GRAVE_FIRST_RETRY,
            tries: 0,
        });
    }

    /// Up to `count` removed nodes due for another try, rescheduled with a doubling wait; a node
    /// tried `GRAVE_TRIES` times is forgotten. A partition that heals finds its other half
    /// again this way, even when every node of one side had expired the other.
    pub(crate) fn graves_due(&mut self, now: Instant, count: usize) -> Vec<NodeInfo> {
        let mut out = Vec::new();
        for g in self.graveyard.iter_mut() {
            if out.len() >= count {
                break;
            }
            if g.next_try <= now {
                out.push(g.node);
                g.tries += 1;
                g.next_try = now + GRAVE_FIRST_RETRY * (1u32 << g.tries.min(6));
            }
        }
        self.graveyard.retain(|g| g.tries < GRAVE_TRIES);
        out
    }

    /// A node is back: no more tries for it.
    pub(crate) fn revive(&mut self, id: &InfoHash) {
        self.graveyard.retain(|g| g.node.id != *id);
    }

    /// Bucket maintenance (§4.3): for each stale or empty bucket, a random id inside it and the
    /// node to ask. Nodes with a pending request are skipped.
    pub(crate) fn maintenance(
        &self,
        now: Instant,
        rng: &mut impl RngCore,
        has_pending: &dyn Fn(&SocketAddr) -> bool,
    ) -> Vec<(NodeInfo, InfoHash)> {
        let mut out = Vec::new();
        for (i, b) in self.buckets.iter().enumerate() {
            let stale = b.time.get().is_none_or(|t| now - t > BUCKET_REFRESH);
            if !b.nodes.is_empty() && !stale {
                continue;
            }
            let target = b.first.random_in_prefix(self.depth(i), rng);
            let mut from = i;
            if b.nodes.is_empty() || rng.next_u32().is_multiple_of(8) {
                from = if i + 1 < self.buckets.len() && (i == 0 || rng.next_u32().is_multiple_of(2)) {
                    i + 1
                } else {
                    i.saturating_sub(1)
                };
            }
            let Some(src) = self.buckets.get(from) else {
                continue;
            };
            let live: Vec<&NodeEntry> = src
                .nodes
                .iter()
                .filter(|n| !n.expired && !has_pending(&n.addr))
                .collect();
            if live.is_empty() {
                continue;
            }
            if let Some(n) = live.get(rng.next_u32() as usize % live.len()) {
                out.push((n.info(), target));
            }
        }
        out
    }

    /// A random non-expired node of our own bucket or a neighbour, for neighbourhood maintenance.
    pub(crate) fn neighbourhood_node(&self, rng: &mut impl RngCore) -> Option<NodeInfo> {
        let i = self.bucket_of(&self.own);
        let mut pool: Vec<&NodeEntry> = Vec::new();
        for j in [i.wrapping_sub(1), i, i + 1] {
            if let Some(b) = self.buckets.get(j) {
                pool.extend(b.nodes.iter().filter(|n| !n.expired));
            }
        }
        if pool.is_empty() {
            return None;
        }
        pool.get(rng.next_u32() as usize % pool.len()).map(|n| n.info())
    }

    /// Every bucket's time becomes "never" and every node dubious (`connectivityChanged`).
    pub(crate) fn reset_times(&mut self) {
        for b in &mut self.buckets {
            b.time = Stamp::NEVER;
            for n in &mut b.nodes {
                n.last_replied = Stamp::NEVER;
                n.expired = false;
            }
        }
    }

    pub(crate) fn status(&self, now: Instant) -> Status {
        let mut any = false;
        for n in self.nodes() {
            if n.is_good(now) {
                return Status::Connected;
            }
            any |= !n.expired;
        }
        if any {
            Status::Connecting
        } else {
            Status::Disconnected
        }
    }

    pub(crate) fn nodes(&self) -> impl Iterator<Item = &NodeEntry> {
        self.buckets.iter().flat_map(|b| b.nodes.iter())
    }

    pub(crate) fn len(&self) -> usize {
        self.buckets.iter().map(|b| b.nodes.len()).sum()
    }

    #[cfg(test)]
    pub(crate) fn bucket_count(&self) -> usize {
        self.buckets.len()
    }

    /// Heap bytes held (for the memory benchmark).
    pub(crate) fn heap_bytes(&self) -> usize {
        self.buckets.capacity() * size_of::<Bucket>()
            + self.prefixes.capacity() * size_of::<u64>()
            + self
                .buckets
                .iter()
                .map(|b| b.nodes.capacity() * size_of::<NodeEntry>())
                .sum::<usize>()
    }

    /// One line per bucket: its first id, depth and nodes.
    pub(crate) fn describe(&self, now: Instant) -> String {
        use core::fmt::Write;
        let mut s = String::new();
        for (i, b) in self.buckets.iter().enumerate() {
            let _ = writeln!(
                s,
                "bucket {} depth {} ({} nodes)",
                b.first,
                self.depth(i),
                b.nodes.len()
            );
            for n in &b.nodes {
                let state = if n.expired {
                    "expired"
                } else if n.is_good(now) {
                    "good"
                } else {
                    "dubious"
                };
                let _ = writeln!(s, "  {} {} {}", n.id, n.addr, state);
            }
        }
        s
    }
}

/// One bucket of a routing table as counts, for display (the node page, `dhtnode`).
///
/// The bucket holds the ids that start with the first `depth` bits of `first`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct BucketSummary {
    /// The first id of the bucket's range (its prefix followed by zeros).
    pub first: InfoHash,
    /// Bits of prefix the bucket's range covers (0: the whole id space).
    pub depth: u32,
    /// Nodes that replied within 120 minutes and were heard from within 10.
    pub good: usize,
    /// Nodes neither good nor expired (not yet confirmed, or quiet for a while).
    pub dubious: usize,
    /// Nodes that stopped answering (expired: OpenDHT's "bad").
    pub bad: usize,
    /// Whether a replacement candidate waits for a place in the bucket.
    pub cached: bool,
    /// Whether our own id falls in this bucket.
    pub own: bool,
}

impl RoutingTable {
    /// Every bucket, in id order, as counts at `now`.
    pub(crate) fn summary(&self, now: Instant) -> Vec<BucketSummary> {
        let mut out = Vec::with_capacity(self.buckets.len());
        for (i, b) in self.buckets.iter().enumerate() {
            let depth = self.depth(i);
            let mut s = BucketSummary {
                first: b.first,
                depth,
                cached: b.cached.is_some(),
                own: self.own.common_bits(&b.first) >= depth,
                ..BucketSummary::default()
            };
            for n in &b.nodes {
                if n.expired {
                    s.bad += 1;
                } else if n.is_good(now) {
                    s.good += 1;
                } else {
                    s.dubious += 1;
                }
            }
            out.push(s);
        }
        out
    }
}

#[cfg(test)]
mod summary_tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    #[test]
    fn the_summary_counts_each_bucket_as_describe_lists_it() {
        let mut rng = ChaCha20Rng::seed_from_u64(9);
        let own = InfoHash::random(&mut rng);
        let mut t = RoutingTable::new(Family::V4, own, false);
        // Half the nodes heard from 10 minutes before the others: dubious by then.
        let then = Instant::from_secs(1);
        let now = then + NODE_EXPIRE_TIME;
        let mut pings = Vec::new();
        for i in 0..300u32 {
            let id = InfoHash::random(&mut rng);
            let addr = SocketAddr::from(([10, 0, (i >> 8) as u8, i as u8], 4222));
            let at = if i % 2 == 0 { then } else { now };
            t.on_new_node(at, id, addr, Confirm::Replied, &|_| false, &mut pings);
        }
        let expired = t.nodes().map(|n| n.id).nth(2).unwrap();
        t.mark_expired(&expired);
        let s = t.summary(now);
        assert_eq!(s.len(), t.bucket_count());
        assert!(s.len() >= 3, "{s:?}");
        assert_eq!(
            s.iter().map(|b| b.good + b.dubious + b.bad).sum::<usize>(),
            t.len()
        );
        assert_eq!(s.iter().map(|b| b.bad).sum::<usize>(), 1);
        assert!(
            s.iter().any(|b| b.dubious > 0) && s.iter().any(|b| b.good > 0),
            "{s:?}"
        );
        assert_eq!(s.iter().filter(|b| b.own).count(), 1, "{s:?}");
        assert_eq!(s[0].first, InfoHash::ZERO);
        // The same buckets, depths and states as the text view.
        let text = t.describe(now);
        for b in &s {
            let head = format!(
                "bucket {} depth {} ({} nodes)",
                b.first,
                b.depth,
                b.good + b.dubious + b.bad
            );
            assert!(text.contains(&head), "{head} not in {text}");
        }
        assert_eq!(
            text.matches(" good\n").count(),
            s.iter().map(|b| b.good).sum::<usize>()
        );
        assert_eq!(
            text.matches(" dubious\n").count(),
            s.iter().map(|b| b.dubious).sum::<usize>()
        );
        // Later, with no news, good nodes turn dubious.
        let later = t.summary(now + NODE_EXPIRE_TIME);
        assert_eq!(later.iter().map(|b| b.good).sum::<usize>(), 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;

    fn addr(i: u32) -> SocketAddr {
        SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 4222))
    }

    #[test]
    fn fills_splits_and_finds_closest() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let own = InfoHash::random(&mut rng);
        let mut t = RoutingTable::new(Family::V4, own, false);
        let now = Instant::from_secs(1);
        let mut pings = Vec::new();
        let mut ids = Vec::new();
        for i in 0..2000 {
            let id = InfoHash::random(&mut rng);
            ids.push(id);
            t.on_new_node(now, id, addr(i), Confirm::Replied, &|_| false, &mut pings);
        }
        assert!(t.bucket_count() >= 6, "{}", t.bucket_count());
        assert!(t.len() <= t.bucket_count() * BUCKET_SIZE);
        // The buckets near our id are full and the closest nodes overall are all kept.
        own.sort_by_distance(&mut ids);
        let closest = t.closest(now, &own, 8, true);
        assert_eq!(
            closest.iter().map(|n| n.id).collect::<Vec<_>>(),
            ids[..8].to_vec()
        );
        assert_eq!(t.status(now), Status::Connected);
        // A good node's state decays: dubious after 10 min without hearing from it.
        assert_eq!(t.status(now + Duration::from_secs(601)), Status::Connecting);
    }

    #[test]
    fn a_bucket_with_its_tags_is_no_bigger_than_one_without() {
        // 20 (first) + 24 (nodes) + 52 (cached) + 8 (time) + 8 (tags): the tags took the place
        // of the 8 bytes an `Option<Instant>` time took beyond a `Stamp`.
        assert!(size_of::<Bucket>() <= 112, "{}", size_of::<Bucket>());
    }

    #[test]
    fn every_node_is_found_by_its_id_through_splits_replacements_and_expiry() {
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        let own = InfoHash::random(&mut rng);
        let mut t = RoutingTable::new(Family::V4, own, false);
        let mut pings = Vec::new();
        let mut now = Instant::from_secs(1);
        let check = |t: &RoutingTable| {
            for b in &t.buckets {
                for (k, n) in b.nodes.iter().enumerate() {
                    assert_eq!(b.tags.get(k), Some(&Bucket::tag(&n.id)));
                }
            }
            for n in t.nodes() {
                assert_eq!(t.get(&n.id).map(|e| e.id), Some(n.id));
            }
        };
        for round in 0..6u32 {
            for i in 0..400 {
                let mut id = InfoHash::random(&mut rng);
                if i % 3 == 0 {
                    // Same last byte as our own id: tags that collide.
                    let [.., last] = *own.as_bytes();
                    if let Some(b) = id.0.last_mut() {
                        *b = last;
                    }
                }
                t.on_new_node(now, id, addr(i), Confirm::Replied, &|_| false, &mut pings);
                assert!(t.get(&id).is_none_or(|e| e.id == id));
            }
            check(&t);
            let ids: Vec<InfoHash> = t.nodes().map(|n| n.id).collect();
            for id in ids.iter().step_by(round as usize + 2) {
                t.mark_expired(id);
            }
            check(&t);
            if round % 2 == 1 {
                t.expire(now);
                for id in ids.iter().step_by(round as usize + 2) {
                    assert!(t.get(id).is_none());
                }
            }
            check(&t);
            now += Duration::from_secs(60);
        }
        let mut unknown = InfoHash::random(&mut rng);
        if let Some(b) = unknown.0.last_mut() {
            *b = 0;
        }
        assert!(t.get(&unknown).is_none());
    }

    #[test]
    fn buckets_hold_exactly_the_entries_they_have() {
        let own = InfoHash([0; 20]);
        let mut t = RoutingTable::new(Family::V4, own, false);
        let now = Instant::from_secs(1);
        let mut pings = Vec::new();
        let mut rng = ChaCha20Rng::seed_from_u64(9);
        use rand_core::RngCore;
        for i in 0..200u32 {
            let mut b = [0u8; 20];
            rng.fill_bytes(&mut b);
            let addr = SocketAddr::from(([10, 1, (i >> 8) as u8, i as u8], 4222));
            t.on_new_node(now, InfoHash(b), addr, Confirm::Replied, &|_| false, &mut pings);
            for b in &t.buckets {
                assert_eq!(b.nodes.capacity(), b.nodes.len(), "after node {i}");
            }
            assert_eq!(t.buckets.capacity(), t.buckets.len());
            assert_eq!(t.prefixes.capacity(), t.prefixes.len());
        }
        assert!(t.buckets.len() > 3 && t.len() > 20);
    }

    #[test]
    fn a_bucket_takes_at_most_two_nodes_of_one_subnet_but_any_number_on_loopback() {
        let own = InfoHash([0; 20]);
        let mut t = RoutingTable::new(Family::V4, own, false).with_subnet_limits(Some(2), Some(3));
        let now = Instant::from_secs(1);
        let mut pings = Vec::new();
        let id = |i: u8| {
            let mut b = [0u8; 20];
            b[0] = 0x80;
            b[19] = i;
            InfoHash(b)
        };
        let at = |a: [u8; 4]| SocketAddr::from((a, 4222));
        // Five nodes of 198.51.100.0/24, in the far bucket: two get in.
        for i in 0..5 {
            t.on_new_node(
                now,
                id(i),
                at([198, 51, 100, i + 1]),
                Confirm::Replied,
                &|_| false,
                &mut pings,
            );
        }
        assert_eq!(t.len(), 2);
        assert!(t.get(&id(0)).is_some() && t.get(&id(1)).is_some());
        // Other subnets still fit; loopback is never limited.
        t.on_new_node(
            now,
            id(10),
            at([198, 51, 101, 1]),
            Confirm::Replied,
            &|_| false,
            &mut pings,
        );
        for i in 20..24 {
            t.on_new_node(
                now,
                id(i),
                at([127, 0, 0, 1]),
                Confirm::Replied,
                &|_| false,
                &mut pings,
            );
        }
        assert_eq!(t.len(), 7);
        // A dead node of the subnet makes room for another of it.
        t.mark_expired(&id(0));
        t.on_new_node(
            now,
            id(4),
            at([198, 51, 100, 5]),
            Confirm::Replied,
            &|_| false,
            &mut pings,
        );
        assert!(t.get(&id(4)).is_some() && t.get(&id(0)).is_none());
        // Without the limit, all five.
        let mut open = RoutingTable::new(Family::V4, own, false);
        for i in 0..5 {
            open.on_new_node(
                now,
                id(i),
                at([198, 51, 100, i + 1]),
                Confirm::Replied,
                &|_| false,
                &mut pings,
            );
        }
        assert_eq!(open.len(), 5);
    }

    #[test]
    fn a_storer_counts_at_most_a_few_nodes_of_one_subnet_among_the_closest() {
        // Ten good nodes of one /24 right next to the key, closer than we are: with the limit
        // they count as three, so we still take the put; without it we would not.
        let key = InfoHash([0x40; 20]);
        let me = InfoHash([0x41; 20]);
        let now = Instant::from_secs(1);
        let mut pings = Vec::new();
        let mut limited = RoutingTable::new(Family::V4, me, false).with_subnet_limits(None, Some(3));
        let mut open = RoutingTable::new(Family::V4, me, false);
        for i in 0..10u8 {
            let mut id = key;
            id.0[19] ^= i + 1;
            let a = SocketAddr::from(([198, 51, 100, i + 1], 4222));
            limited.on_new_node(now, id, a, Confirm::Replied, &|_| false, &mut pings);
            open.on_new_node(now, id, a, Confirm::Replied, &|_| false, &mut pings);
        }
        assert!(limited.takes_store(now, &key, &me));
        assert!(!open.takes_store(now, &key, &me));
    }

    #[test]
    fn full_far_bucket_keeps_a_candidate_and_pings_dubious_nodes() {
        let own = InfoHash([0; 20]);
        let mut t = RoutingTable::new(Family::V4, own, false);
        let now = Instant::from_secs(1);
        let mut pings = Vec::new();
        // Fill the far half (first bit set) until it splits off and fills.
        let far = |i: u8| {
            let mut b = [0u8; 20];
            b[0] = 0x80;
            b[19] = i;
            InfoHash(b)
        };
        for i in 0..20 {
            t.on_new_node(
                now,
                far(i),
                addr(u32::from(i)),
                Confirm::Learned,
                &|_| false,
                &mut pings,
            );
        }
        // Our half is split off; the far bucket holds 8 and the 9th became its candidate, while a
        // dubious node was pinged.
        assert_eq!(t.len(), 8);
        assert!(!pings.is_empty());
        // An expired node is replaced.
        t.mark_expired(&far(7));
        assert!(t.on_new_node(now, far(100), addr(100), Confirm::Replied, &|_| false, &mut pings));
        assert!(t.get(&far(7)).is_none());
        assert!(t.get(&far(100)).is_some());
    }

    #[test]
    fn expire_removes_expired_nodes_and_returns_candidates() {
        let own = InfoHash([0; 20]);
        let mut t = RoutingTable::new(Family::V4, own, false);
        let mut pings = Vec::new();
        let id = InfoHash([1; 20]);
        t.on_new_node(
            Instant::ZERO,
            id,
            addr(1),
            Confirm::Replied,
            &|_| false,
            &mut pings,
        );
        t.mark_expired(&id);
        assert_eq!(t.status(Instant::ZERO), Status::Disconnected);
        t.expire(Instant::ZERO);
        assert_eq!(t.len(), 0);
    }

    #[test]
    fn wrong_family_and_own_id_are_refused() {
        let own = InfoHash([5; 20]);
        let mut t = RoutingTable::new(Family::V6, own, false);
        let mut pings = Vec::new();
        assert!(!t.on_new_node(
            Instant::ZERO,
            InfoHash([1; 20]),
            addr(1),
            Confirm::Replied,
            &|_| false,
            &mut pings
        ));
        assert!(!t.on_new_node(
            Instant::ZERO,
            own,
            "[::1]:1".parse().unwrap(),
            Confirm::Replied,
            &|_| false,
            &mut pings
        ));
        assert_eq!(t.len(), 0);
    }
}

#[cfg(test)]
mod bucket_index_tests {
    use super::*;

    /// Buckets found by their 64-bit prefixes, and by whole ids once a bucket is deeper: every
    /// node put in is found again, in the bucket a plain search over whole ids names.
    #[test]
    fn buckets_are_found_by_prefix_and_past_64_bits() {
        let own = InfoHash([0x55; 20]);
        let mut t = RoutingTable::new(Family::V4, own, false);
        let now = Instant::from_secs(1);
        let mut pings = Vec::new();
        let mut ids = Vec::new();
        // Ids sharing ever longer prefixes with ours, down to 100 bits: the buckets near us
        // split past 64 bits.
        for shared in (0..100u32).step_by(3) {
            for k in 0..9u8 {
                let mut id = own;
                id.set_bit(shared, !own.bit(shared));
                id.0[19] ^= k.wrapping_add(1);
                ids.push(id);
            }
        }
        for (i, id) in ids.iter().enumerate() {
            t.on_new_node(
                now,
                *id,
                SocketAddr::from(([10, 0, 1, i as u8], 4222)),
                Confirm::Replied,
                &|_| false,
                &mut pings,
            );
            let whole = t.buckets.partition_point(|b| b.first <= *id).saturating_sub(1);
            assert_eq!(t.bucket_of(id), whole, "{i}");
        }
        assert!(t.deep, "some bucket is deeper than 64 bits");
        for id in &ids {
            let whole = t.buckets.partition_point(|b| b.first <= *id).saturating_sub(1);
            assert_eq!(t.bucket_of(id), whole);
        }
        assert!(ids.iter().filter(|id| t.get(id).is_some()).count() > 8);
    }
}

#[cfg(test)]
mod graveyard_tests {
    use super::*;

    #[test]
    fn removed_nodes_are_retried_with_doubling_waits_then_forgotten() {
        let own = InfoHash([0; 20]);
        let mut t = RoutingTable::new(Family::V4, own, false);
        let mut pings = Vec::new();
        for i in 1..=100u8 {
            let id = InfoHash([i; 20]);
            let addr = SocketAddr::from(([10, 0, 0, i], 4222));
            t.on_new_node(Instant::ZERO, id, addr, Confirm::Replied, &|_| false, &mut pings);
            t.mark_expired(&id);
            t.expire(Instant::ZERO);
        }
        assert_eq!(t.graveyard.len(), GRAVEYARD_SIZE, "bounded");
        assert!(t.graves_due(Instant::from_secs(59), 10).is_empty());
        let first = t.graves_due(Instant::from_secs(60), 2);
        assert_eq!(first.len(), 2);
        // Every node is tried at most GRAVE_TRIES times over about two hours, then forgotten.
        let mut tries = 2;
        let mut now = Instant::from_secs(60);
        while !t.graveyard.is_empty() {
            now += Duration::from_secs(60);
            tries += t.graves_due(now, 64).len();
            assert!(now < Instant::from_secs(6 * 3600));
        }
        assert_eq!(tries, GRAVEYARD_SIZE * usize::from(GRAVE_TRIES));
        // A node that comes back is not tried again.
        let id = InfoHash([200; 20]);
        t.bury(
            Instant::ZERO,
            NodeInfo {
                id,
                addr: SocketAddr::from(([10, 0, 1, 1], 1)),
            },
        );
        t.revive(&id);
        assert!(t.graveyard.is_empty());
    }
}
