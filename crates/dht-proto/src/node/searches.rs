//! The set of searches (one per key and family), their wake-ups, the searches touched by the
//! last input and the listen socket ids we handed out; and the node's stepping of them, which
//! sends what they ask for.

use super::*;
use alloc::boxed::Box;

/// Every search of the node, and when each wants to step again.
#[derive(Debug)]
pub(super) struct Searches {
    /// Boxed: a B-tree leaf holds 11 entries, and a node mostly has one or two searches (a
    /// leaf of 11 inline searches was 2.3 KB).
    map: BTreeMap<SearchKey, Box<Search>>,
    /// Wake-ups, earliest first (with `Search::wakeup`, each search's current one, to move it).
    timers: BTreeSet<(Instant, SearchKey)>,
    /// Searches touched since they last stepped: they step before the input returns.
    dirty: Dirty,
    /// Listen socket ids we handed out (per peer address), and the search each belongs to.
    sockets: BTreeMap<(SocketAddr, Tid), SearchKey>,
    /// `Config::max_searches`.
    max: usize,
    /// `Config::max_search_nodes_per_subnet`, given to every new search.
    per_subnet: Option<usize>,
}

/// A small set of search keys in key order, inline (a node touches one or two searches per
/// input; a B-tree set allocated a node for each such input).
#[derive(Debug, Default)]
pub(super) struct Dirty(smallvec::SmallVec<[SearchKey; 2]>);

impl Dirty {
    fn insert(&mut self, k: SearchKey) {
        if let Err(i) = self.0.binary_search(&k) {
            self.0.insert(i, k);
        }
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl IntoIterator for Dirty {
    type Item = SearchKey;
    type IntoIter = smallvec::IntoIter<[SearchKey; 2]>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl Searches {
    pub(super) fn new(max: usize) -> Searches {
        Searches {
            map: BTreeMap::new(),
            timers: BTreeSet::new(),
            dirty: Dirty::default(),
            sockets: BTreeMap::new(),
            max,
            per_subnet: None,
        }
    }

    /// Every new search keeps at most `limit` nodes of one subnet (Sybil limit).
    pub(super) fn with_subnet_limit(mut self, limit: Option<usize>) -> Searches {
        self.per_subnet = limit;
        self
    }

    pub(super) fn len(&self) -> usize {
        self.map.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub(super) fn get(&self, skey: &SearchKey) -> Option<&Search> {
        self.map.get(skey).map(|s| &**s)
    }

    pub(super) fn get_mut(&mut self, skey: &SearchKey) -> Option<&mut Search> {
        self.map.get_mut(skey).map(|s| &mut **s)
    }

    pub(super) fn values(&self) -> impl Iterator<Item = &Search> {
        self.map.values().map(|s| &**s)
    }

    /// Whether a search of `family` exists.
    pub(super) fn any_of(&self, family: Family) -> bool {
        self.map
            .range((family, InfoHash::ZERO)..=(family, InfoHash([0xff; 20])))
            .next()
            .is_some()
    }

    /// Runs `f` on every search of `family`, in key order; those for which it returns true
    /// step before the input returns.
    pub(super) fn for_family(&mut self, family: Family, mut f: impl FnMut(&SearchKey, &mut Search) -> bool) {
        for (k, s) in self
            .map
            .range_mut((family, InfoHash::ZERO)..=(family, InfoHash([0xff; 20])))
        {
            if f(k, s) {
                self.dirty.insert(*k);
            }
        }
    }

    /// Runs `f` on every search; all of them step before the input returns.
    pub(super) fn for_all(&mut self, mut f: impl FnMut(&mut Search)) {
        for (k, s) in self.map.iter_mut() {
            f(s);
            self.dirty.insert(*k);
        }
    }

    /// A command on `key` needs room for its two searches, unless they exist.
    pub(super) fn check_room(&self, key: &InfoHash) -> Result<(), CommandError> {
        let missing = Family::ALL
            .iter()
            .filter(|f| !self.map.contains_key(&(**f, *key)))
            .count();
        if self.map.len() + missing > self.max {
            return Err(CommandError::TooManySearches(self.max));
        }
        Ok(())
    }

    /// The search of (`family`, `key`), created if there is room; it steps before the input
    /// returns.
    pub(super) fn ensure(&mut self, now: Instant, family: Family, key: InfoHash) -> Option<&mut Search> {
        let skey = (family, key);
        if !self.map.contains_key(&skey) {
            if self.map.len() >= self.max {
                return None;
            }
            let mut s = Search::new(now, key, family);
            s.per_subnet = self.per_subnet;
            self.map.insert(skey, Box::new(s));
        }
        self.dirty.insert(skey);
        self.map.get_mut(&skey).map(|s| &mut **s)
    }

    /// The search steps before the input returns.
    pub(super) fn mark(&mut self, skey: SearchKey) {
        self.dirty.insert(skey);
    }

    pub(super) fn has_dirty(&self) -> bool {
        !self.dirty.is_empty()
    }

    /// The searches touched since they last stepped, in key order; none are left touched.
    pub(super) fn take_dirty(&mut self) -> Dirty {
        core::mem::take(&mut self.dirty)
    }

    /// After a step: the search's next wake-up, or its end when it has nothing left to do.
    pub(super) fn reschedule(&mut self, now: Instant, skey: SearchKey) {
        let Some(s) = self.map.get_mut(&skey) else { return };
        if let Some(old) = s.wakeup.take() {
            self.timers.remove(&(old, skey));
        }
        if s.is_idle() {
            self.map.remove(&skey);
            self.sockets.retain(|_, k| *k != skey);
            return;
        }
        if let Some(t) = s.next_wakeup(now) {
            let t = t.max(now + Duration::from_millis(1));
            s.wakeup = Some(t);
            self.timers.insert((t, skey));
        }
    }

    /// The earliest wake-up.
    pub(super) fn next_wakeup(&self) -> Option<Instant> {
        self.timers.first().map(|t| t.0)
    }

    /// Searches whose wake-up has come step before the input returns.
    pub(super) fn wake_due(&mut self, now: Instant) {
        while let Some(&(t, skey)) = self.timers.first() {
            if t > now {
                break;
            }
            tracing::trace!(reason = ?TimerReason::Search, key = %skey.1, family = ?skey.0, "timer fired");
            self.timers.remove(&(t, skey));
            if let Some(s) = self.map.get_mut(&skey) {
                s.wakeup = None;
            }
            self.dirty.insert(skey);
        }
    }

    /// The search a listen socket id we handed to `peer` belongs to.
    pub(super) fn socket(&self, peer: SocketAddr, sid: Tid) -> Option<SearchKey> {
        self.sockets.get(&(peer, sid)).copied()
    }

    pub(super) fn bind_socket(&mut self, peer: SocketAddr, sid: Tid, skey: SearchKey) {
        self.sockets.insert((peer, sid), skey);
    }

    /// Forgets socket ids of nodes that left their search.
    pub(super) fn forget_unused_sockets(&mut self) {
        let map = &self.map;
        self.sockets
            .retain(|(_, sid), skey| map.get(skey).is_some_and(|s| s.has_sid(*sid)));
    }

    pub(super) fn compact(&mut self) {
        use crate::compact::Compact;
        self.map.compact();
        self.timers.compact();
        self.sockets.compact();
    }
}

impl Node {
    pub(super) fn step_search(&mut self, now: Instant, skey: SearchKey) {
        let (fam, key) = skey;
        // A search with no nodes waits for a bootstrap only while the node has no connected
        // family (as OpenDHT's runner holds operations while its status is connecting). Once one
        // family is connected, a `bootstrap` call (which arms the bootstrap timer and pings) must
        // not hold the other family's half of a put or get for `CONNECT_GRACE`.
        let status = self.connectivity.status(fam);
        let connecting = !self.connectivity.any_connected()
            && (self.timers.is_set(Timer::Bootstrap) || status == Status::Connecting);
        let public_stable = self.config.public_stable;
        let Some(s) = self.searches.get_mut(&skey) else {
            return;
        };
        let mut changes = Vec::new();
        if s.needs_refill(now) {
            let mut nodes: smallvec::SmallVec<[NodeInfo; crate::search::SEARCH_NODES]> =
                smallvec::SmallVec::new();
            self.tables[fam].closest_each(now, &key, crate::search::SEARCH_NODES, false, |n| {
                nodes.push(n.info())
            });
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
        self.searches.reschedule(now, skey);
    }

    pub(super) fn run_actions(
        &mut self,
        now: Instant,
        skey: SearchKey,
        actions: impl IntoIterator<Item = Action>,
    ) {
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
                    let kind = RequestKind::Put(PutRequest {
                        key,
                        values: out.values,
                        created,
                        token,
                    });
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
                    self.searches.bind_socket(to.addr, sid, skey);
                    let kind = RequestKind::Listen(ListenRequest {
                        key,
                        token,
                        sid,
                        version: Some(1),
                        query,
                    });
                    let purpose = Purpose::Listen { key, family: fam };
                    if let Some(tid) = self.send_request(now, to.addr, to.id, kind, purpose, &[])
                        && let Some(s) = self.searches.get_mut(&skey)
                    {
                        s.sent(&to.id, Sent::Listen(sid), tid, None);
                    }
                }
                Action::GetDone {
                    op,
                    ok,
                    answered,
                    asked,
                } => self.family_get_done(op, fam, ok, answered, asked),
                Action::PutDone {
                    op,
                    vid: _,
                    acked,
                    targeted,
                } => self.family_put_done(op, fam, acked, targeted),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn touched_searches_step_once_each_in_key_order() {
        let k = |f, b| (f, InfoHash([b; 20]));
        let mut d = Dirty::default();
        for key in [
            k(Family::V6, 1),
            k(Family::V4, 9),
            k(Family::V4, 2),
            k(Family::V6, 1),
            k(Family::V4, 9),
        ] {
            d.insert(key);
        }
        // More than fit inline still keep the order.
        for b in (10..20).rev() {
            d.insert(k(Family::V4, b));
        }
        let got: Vec<SearchKey> = d.into_iter().collect();
        let mut want = vec![k(Family::V4, 2), k(Family::V4, 9), k(Family::V6, 1)];
        want.extend((10..20).map(|b| k(Family::V4, b)));
        want.sort();
        assert_eq!(got, want);
    }
}
