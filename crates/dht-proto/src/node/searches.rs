//! The searches: stepping them and sending what they ask for.

use super::*;

impl Node {
    pub(super) fn step_search(&mut self, now: Instant, skey: SearchKey) {
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

    pub(super) fn run_actions(&mut self, now: Instant, skey: SearchKey, actions: Vec<Action>) {
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
}
