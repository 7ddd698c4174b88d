//! User operations: gets, puts and listens (with the op ids that name them) from the command
//! that starts each until its done event, and the node's own internal ones, whose events come
//! back to the node instead of the user.

use super::*;

#[derive(Debug)]
struct GetState {
    key: InfoHash,
    query: Query,
    /// Families still searching.
    pending: PerFamily<bool>,
    ok: bool,
    /// Closest nodes that answered in full, and that were asked (both families).
    answered: usize,
    asked: usize,
    /// Values delivered: id and a hash of their content.
    seen: BTreeMap<ValueId, InfoHash>,
}

#[derive(Debug)]
struct PutState {
    key: InfoHash,
    vid: ValueId,
    pending: PerFamily<bool>,
    outcome: PutOutcome,
}

#[derive(Debug)]
struct ListenState {
    key: InfoHash,
    query: Query,
    /// Values reported, and how many sources (nodes, and our own storage) report each.
    values: BTreeMap<ValueId, (Value, u32)>,
}

/// Our gets, puts and listens in progress. Each method that ends or advances one returns the
/// events it causes; the node emits them.
#[derive(Debug)]
pub(super) struct Operations {
    gets: BTreeMap<OpId, GetState>,
    puts: BTreeMap<OpId, PutState>,
    listens: BTreeMap<ListenToken, ListenState>,
    /// The next op id (gets, puts and listens share the counter).
    next: u64,
    /// Our own gets and puts that the user did not ask for (key announcement and lookups).
    internal: BTreeSet<OpId>,
    /// Their events, handled after the current input.
    internal_events: Vec<Event>,
}

impl Operations {
    pub(super) fn new() -> Operations {
        Operations {
            gets: BTreeMap::new(),
            puts: BTreeMap::new(),
            listens: BTreeMap::new(),
            next: 1,
            internal: BTreeSet::new(),
            internal_events: Vec::new(),
        }
    }

    /// A fresh op id.
    pub(super) fn next_id(&mut self) -> u64 {
        let id = self.next;
        self.next += 1;
        id
    }

    /// Gets, puts and listens in progress.
    pub(super) fn len(&self) -> usize {
        self.gets.len() + self.puts.len() + self.listens.len()
    }

    pub(super) fn add_get(&mut self, op: OpId, key: InfoHash, query: Query) {
        let get = GetState {
            key,
            query,
            pending: PerFamily::new(true, true),
            ok: false,
            answered: 0,
            asked: 0,
            seen: BTreeMap::new(),
        };
        self.gets.insert(op, get);
    }

    /// Forgets a get; its key.
    pub(super) fn remove_get(&mut self, op: OpId) -> Option<InfoHash> {
        self.gets.remove(&op).map(|g| g.key)
    }

    pub(super) fn get_ids(&self) -> Vec<OpId> {
        self.gets.keys().copied().collect()
    }

    /// One family of a get finished; the get's done event once both have.
    pub(super) fn get_done(
        &mut self,
        op: OpId,
        fam: Family,
        ok: bool,
        answered: usize,
        asked: usize,
    ) -> Option<Event> {
        let g = self.gets.get_mut(&op)?;
        if !g.pending[fam] {
            return None;
        }
        g.pending[fam] = false;
        g.ok |= ok;
        g.answered += answered;
        g.asked += asked;
        if g.pending.iter().any(|p| *p) {
            return None;
        }
        let (key, ok, answered, asked) = (g.key, g.ok, g.answered, g.asked);
        self.gets.remove(&op);
        Some(Event::GetDone {
            op,
            key,
            ok,
            answered,
            asked,
        })
    }

    /// Values found by a get, for its user: each value once, again only if it changed (at most
    /// `max` values per get).
    pub(super) fn deliver(&mut self, op: OpId, values: &[Value], max: usize) -> Option<Event> {
        let g = self.gets.get_mut(&op)?;
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
            let fp = {
                let mut buf = crate::bufpool::take();
                v.encode(&mut buf);
                let fp = InfoHash::get(&buf);
                crate::bufpool::give(buf);
                fp
            };
            match g.seen.get(&v.id) {
                Some(old) if *old == fp => continue,
                None if g.seen.len() >= max => continue,
                _ => {}
            }
            g.seen.insert(v.id, fp);
            fresh.push(v.clone());
        }
        (!fresh.is_empty()).then_some(Event::Values {
            op,
            key: g.key,
            values: fresh,
        })
    }

    pub(super) fn add_put(&mut self, op: OpId, key: InfoHash, vid: ValueId) {
        let put = PutState {
            key,
            vid,
            pending: PerFamily::new(true, true),
            outcome: PutOutcome::default(),
        };
        self.puts.insert(op, put);
    }

    pub(super) fn has_puts(&self) -> bool {
        !self.puts.is_empty()
    }

    /// The puts of value `vid` at `key`.
    pub(super) fn puts_of(&self, key: InfoHash, vid: ValueId) -> Vec<OpId> {
        self.puts
            .iter()
            .filter(|(_, p)| p.key == key && p.vid == vid)
            .map(|(op, _)| *op)
            .collect()
    }

    /// One family of a put finished, `acked` of `targeted` nodes acknowledging; the put's done
    /// event once both have.
    pub(super) fn put_done(&mut self, op: OpId, fam: Family, acked: usize, targeted: usize) -> Option<Event> {
        let p = self.puts.get_mut(&op)?;
        if !p.pending[fam] {
            return None;
        }
        p.pending[fam] = false;
        p.outcome.set(fam, acked, targeted);
        if p.pending.iter().any(|x| *x) {
            return None;
        }
        let (key, vid, outcome) = (p.key, p.vid, p.outcome);
        self.puts.remove(&op);
        Some(Event::PutDone {
            op,
            key,
            vid,
            outcome,
        })
    }

    /// A listen, with the values it starts from (each reported by one source: our storage).
    pub(super) fn add_listen(&mut self, token: ListenToken, key: InfoHash, query: Query, local: &[Value]) {
        let values = local.iter().map(|v| (v.id, (v.clone(), 1))).collect();
        self.listens.insert(token, ListenState { key, query, values });
    }

    /// Forgets a listen; its key.
    pub(super) fn remove_listen(&mut self, token: ListenToken) -> Option<InfoHash> {
        self.listens.remove(&token).map(|l| l.key)
    }

    pub(super) fn listen_tokens(&self) -> Vec<ListenToken> {
        self.listens.keys().copied().collect()
    }

    /// Whether a listen of ours is on `key`.
    pub(super) fn listening_to(&self, key: &InfoHash) -> bool {
        self.listens.values().any(|l| l.key == *key)
    }

    /// Applies what listened nodes (or our own storage) reported to every listen on `key`;
    /// the events for their users.
    pub(super) fn listen_changes(&mut self, key: InfoHash, changes: &[ListenChange]) -> Vec<Event> {
        let mut events = Vec::new();
        for (token, l) in self.listens.iter_mut() {
            if l.key != key {
                continue;
            }
            let mut added = Vec::new();
            let mut expired = Vec::new();
            for c in changes {
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
        events
    }

    /// Marks `op` as ours: its events come back to the node.
    pub(super) fn mark_internal(&mut self, op: OpId) {
        self.internal.insert(op);
    }

    pub(super) fn unmark_internal(&mut self, op: OpId) {
        self.internal.remove(&op);
    }

    /// Keeps `e` for the node when it belongs to an internal operation; gives it back otherwise.
    pub(super) fn hold_internal(&mut self, e: Event) -> Option<Event> {
        if let Event::Values { op, .. } | Event::GetDone { op, .. } | Event::PutDone { op, .. } = &e
            && self.internal.contains(op)
        {
            self.internal_events.push(e);
            return None;
        }
        Some(e)
    }

    pub(super) fn take_internal_events(&mut self) -> Vec<Event> {
        core::mem::take(&mut self.internal_events)
    }

    pub(super) fn compact(&mut self) {
        use crate::compact::Compact;
        self.gets.compact();
        self.puts.compact();
        self.listens.compact();
        self.internal.compact();
        self.internal_events.compact();
    }
}

impl Node {
    pub(super) fn family_get_done(&mut self, op: OpId, fam: Family, ok: bool, answered: usize, asked: usize) {
        if let Some(e) = self.ops.get_done(op, fam, ok, answered, asked) {
            self.emit(e);
        }
    }

    pub(super) fn family_put_done(&mut self, op: OpId, fam: Family, acked: usize, targeted: usize) {
        if let Some(e) = self.ops.put_done(op, fam, acked, targeted) {
            self.emit(e);
        }
    }

    /// Removes signed values whose signature fails (counted): they are never delivered.
    pub(super) fn drop_forged(&mut self, values: &mut ValueList) {
        let before = values.len();
        values.retain(|v| crate::crypto::check_signature(v) != crate::crypto::SignatureCheck::Invalid);
        self.stats.bad_signatures += (before - values.len()) as u64;
    }

    /// Hands values found by a get to its user: each value once, again only if it changed.
    pub(super) fn deliver(&mut self, op: OpId, values: &[Value]) {
        if let Some(e) = self.ops.deliver(op, values, self.config.max_values_per_get) {
            self.emit(e);
        }
    }

    /// Applies what listened nodes (or our own storage) reported to every listen on `key`.
    pub(super) fn apply_listen_changes(&mut self, key: InfoHash, changes: Vec<ListenChange>) {
        if changes.is_empty() {
            return;
        }
        for e in self.ops.listen_changes(key, &changes) {
            self.emit(e);
        }
    }
}
