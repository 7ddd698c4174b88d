//! Re-replication (our departure from OpenDHT, see `docs/architecture.md`): the rules of the
//! [`Replicator`], and the node's periodic pass that applies them.

use super::*;

/// What a storer decides about re-replicating the keys it holds: which replicas to ping, when
/// the closest set of a key changed, which values to announce again. It reads the routing
/// tables and storage; the node acts on its answers.
#[derive(Debug)]
pub(super) struct Replicator {
    /// `Config::replicate_period`: a replica unheard of for that long is pinged.
    period: Duration,
}

impl Replicator {
    pub(super) fn new(period: Duration) -> Replicator {
        Replicator { period }
    }

    /// Ids of the closest live nodes we know for `key`, both families, as one hash.
    pub(super) fn fingerprint(tables: &PerFamily<RoutingTable>, now: Instant, key: &InfoHash) -> InfoHash {
        // On the stack: this runs for every put a storer takes.
        let mut bytes = [0u8; 2 * TARGET_NODES * 20];
        let mut len = 0;
        for t in tables.iter() {
            t.closest_each(now, key, TARGET_NODES, false, |n| {
                if let Some(slot) = bytes.get_mut(len..len + 20) {
                    slot.copy_from_slice(n.id.as_bytes());
                    len += 20;
                }
            });
        }
        InfoHash::get(bytes.get(..len).unwrap_or_default())
    }

    /// The replicas of `keys` that went quiet, to be pinged, so that a dead one expires and
    /// changes the closest set by the next round.
    fn quiet_replicas(
        &self,
        tables: &PerFamily<RoutingTable>,
        now: Instant,
        keys: &[(InfoHash, Option<InfoHash>)],
    ) -> Vec<NodeInfo> {
        let mut quiet = BTreeSet::new();
        for (key, _) in keys {
            for t in tables.iter() {
                for n in t.closest(now, key, TARGET_NODES, false) {
                    if t.get(&n.id)
                        .is_some_and(|e| e.last_heard().is_none_or(|h| now - h >= self.period))
                    {
                        quiet.insert((n.addr, n.id));
                    }
                }
            }
        }
        quiet
            .into_iter()
            .map(|(addr, id)| NodeInfo { id, addr })
            .collect()
    }

    /// The values of `key` stored for others that live long enough to be worth announcing
    /// again, with their creation times.
    fn values_to_announce(storage: &Storage, now: Instant, key: &InfoHash) -> Vec<(Value, Instant)> {
        storage
            .entries(key)
            .iter()
            .filter(|s| s.source.is_some() && s.expiration.is_some_and(|e| e > now + REANNOUNCE_MARGIN))
            .map(|s| (s.value.clone(), s.created))
            .collect()
    }
}

impl Node {
    /// Ids of the closest live nodes we know for `key`, both families, as one hash.
    pub(super) fn closest_fingerprint(&self, now: Instant, key: &InfoHash) -> InfoHash {
        Replicator::fingerprint(&self.tables, now, key)
    }

    /// Re-replication (our departure from OpenDHT, see `docs/architecture.md`): when the set of
    /// closest nodes for a key we store has changed since we last looked, and we are still among
    /// the closest, we announce the key's values (with their original creation time) to the
    /// current closest nodes, so values outlive the nodes they were first put on.
    pub(super) fn replicate(&mut self, now: Instant) {
        self.timers.set(Timer::Replication, now + self.replicator.period);
        // Without the wall clock a re-announced value could not carry its creation time, and its
        // new storers would give it a new life: no re-replication then.
        if self.shutting_down || self.unix.is_none() {
            return;
        }
        let keys = self.storer.storage.remote_keys();
        let pings = self.replicator.quiet_replicas(&self.tables, now, &keys);
        self.ping_all(now, pings);
        for (key, last) in keys {
            let fp = self.closest_fingerprint(now, &key);
            if last == Some(fp) {
                continue;
            }
            self.storer.storage.set_replicated(&key, fp);
            let responsible = self.tables.iter().any(|t| t.responsible_for(now, &key, &self.id));
            if !responsible {
                continue;
            }
            let values = Replicator::values_to_announce(&self.storer.storage, now, &key);
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
