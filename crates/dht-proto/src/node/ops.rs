//! User operations: gets, puts and listens until their done events.

use super::*;

impl Node {
    pub(super) fn family_get_done(&mut self, op: OpId, fam: Family, ok: bool) {
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

    pub(super) fn family_put_done(&mut self, op: OpId, fam: Family, acked: usize, targeted: usize) {
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
    pub(super) fn drop_forged(&mut self, values: &mut Vec<Value>) {
        let before = values.len();
        values.retain(|v| crate::crypto::check_signature(v) != crate::crypto::SignatureCheck::Invalid);
        self.stats.bad_signatures += (before - values.len()) as u64;
    }

    /// Hands values found by a get to its user: each value once, again only if it changed.
    pub(super) fn deliver(&mut self, op: OpId, values: &[Value]) {
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
    pub(super) fn apply_listen_changes(&mut self, key: InfoHash, changes: Vec<ListenChange>) {
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
