//! Re-replication (our departure from OpenDHT, see `docs/architecture.md`).

use super::*;

impl Node {
    /// Ids of the closest live nodes we know for `key`, both families, as one hash.
    pub(super) fn closest_fingerprint(&self, now: Instant, key: &InfoHash) -> InfoHash {
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
    pub(super) fn replicate(&mut self, now: Instant) {
        self.timers
            .set(Timer::Replication, now + self.config.replicate_period);
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
            let responsible = self.tables.iter().any(|t| t.responsible_for(now, &key, &self.id));
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
                    if let Some(s) = self.searches.ensure(now, fam, key) {
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
