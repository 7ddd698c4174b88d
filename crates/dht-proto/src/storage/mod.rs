//! Values stored on this node (`opendht-wire.md` §7): per key, with their type's expiry, the
//! edit policy, quotas per key, per source address and in total, and the remote listeners that
//! are told of changes.

use crate::prelude::*;
use alloc::collections::{BTreeMap, BTreeSet};
use core::net::SocketAddr;
use core::time::Duration;

use crate::rpc::ip_key;
use crate::value::{Query, Value, ValueId};
use crate::wire::Tid;
use crate::{InfoHash, Instant};

/// A remote listener is forgotten this long after its last listen (`NODE_EXPIRE_TIME`).
pub(crate) const LISTENER_EXPIRE: Duration = Duration::from_secs(10 * 60);

/// A stored value and its bookkeeping.
#[derive(Clone, Debug)]
pub(crate) struct Stored {
    pub value: Value,
    pub created: Instant,
    /// `None`: a permanent local value, which never expires here.
    pub expiration: Option<Instant>,
    /// Who stored it; `None` for our own puts.
    pub source: Option<SocketAddr>,
    size: usize,
}

/// A node listening to a key through us.
#[derive(Clone, Debug)]
pub(crate) struct RemoteListener {
    pub node: InfoHash,
    pub addr: SocketAddr,
    pub sid: Tid,
    pub query: Query,
    pub last: Instant,
}

#[derive(Clone, Debug, Default)]
struct KeyStore {
    values: Vec<Stored>,
    listeners: Vec<RemoteListener>,
    /// Fingerprint of the closest nodes when the key was last re-announced.
    pub replicated_to: Option<InfoHash>,
}

/// Limits, from [`Config`](crate::Config).
#[derive(Clone, Debug)]
pub(crate) struct Limits {
    pub max_keys: usize,
    pub max_values_per_key: usize,
    pub max_remote_bytes: usize,
    pub max_bytes_per_ip: usize,
    pub max_local_bytes: Option<usize>,
    pub max_listeners_per_key: usize,
    pub max_listeners: usize,
}

/// What a store did.
#[derive(Debug, PartialEq)]
pub(crate) enum StoreOutcome {
    /// A new value (or an accepted edit): listeners should be told.
    Stored,
    /// The same content again: its life was extended.
    Refreshed,
    /// Refused (policy, quota, or already expired).
    Refused,
}

/// Values evicted to make room, by key.
pub(crate) type Evicted = Vec<(InfoHash, Value)>;

#[derive(Debug)]
pub(crate) struct Storage {
    keys: BTreeMap<InfoHash, KeyStore>,
    expiries: BTreeSet<(Instant, InfoHash, ValueId)>,
    remote_bytes: usize,
    local_bytes: usize,
    per_ip: BTreeMap<u128, usize>,
    values: usize,
    listeners: usize,
    limits: Limits,
}

/// When a value was created and when it expires (`None`: a permanent local value).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Life {
    /// Its creation time.
    pub created: Instant,
    /// Its end.
    pub expiration: Option<Instant>,
}

impl Storage {
    /// Frees what emptied tables hold (see [`crate::compact`]).
    pub(crate) fn compact(&mut self) {
        use crate::compact::Compact;
        self.keys.compact();
        self.expiries.compact();
        self.per_ip.compact();
    }

    pub(crate) fn new(limits: Limits) -> Storage {
        Storage {
            keys: BTreeMap::new(),
            expiries: BTreeSet::new(),
            remote_bytes: 0,
            local_bytes: 0,
            per_ip: BTreeMap::new(),
            values: 0,
            listeners: 0,
            limits,
        }
    }

    pub(crate) fn keys(&self) -> usize {
        self.keys.len()
    }
    pub(crate) fn values(&self) -> usize {
        self.values
    }
    pub(crate) fn bytes(&self) -> usize {
        self.remote_bytes + self.local_bytes
    }
    #[cfg(test)]
    pub(crate) fn remote_bytes(&self) -> usize {
        self.remote_bytes
    }
    pub(crate) fn listeners(&self) -> usize {
        self.listeners
    }

    /// Values at `key` matching `query`'s where part.
    pub(crate) fn get<'a>(&'a self, key: &InfoHash, query: &'a Query) -> Vec<&'a Value> {
        self.matching(key, query).collect()
    }

    /// The values stored at `key` that match `query`, in order, without gathering them.
    pub(crate) fn matching<'a>(
        &'a self,
        key: &InfoHash,
        query: &'a Query,
    ) -> impl Iterator<Item = &'a Value> + 'a {
        self.keys
            .get(key)
            .into_iter()
            .flat_map(|k| k.values.iter())
            .map(|s| &s.value)
            .filter(|v| query.where_.matches(v))
    }

    pub(crate) fn get_value(&self, key: &InfoHash, vid: ValueId) -> Option<&Stored> {
        self.keys.get(key)?.values.iter().find(|s| s.value.id == vid)
    }

    /// Every stored entry of `key`.
    pub(crate) fn entries(&self, key: &InfoHash) -> &[Stored] {
        self.keys.get(key).map(|k| k.values.as_slice()).unwrap_or(&[])
    }

    pub(crate) fn listeners_of(&self, key: &InfoHash) -> &[RemoteListener] {
        self.keys.get(key).map(|k| k.listeners.as_slice()).unwrap_or(&[])
    }

    fn charge(&mut self, source: Option<SocketAddr>, size: usize, add: bool) {
        match source {
            None => {
                self.local_bytes = if add {
                    self.local_bytes + size
                } else {
                    self.local_bytes.saturating_sub(size)
                };
            }
            Some(addr) => {
                self.remote_bytes = if add {
                    self.remote_bytes + size
                } else {
                    self.remote_bytes.saturating_sub(size)
                };
                let k = ip_key(&addr.ip());
                let e = self.per_ip.entry(k).or_insert(0);
                *e = if add { *e + size } else { e.saturating_sub(size) };
                if *e == 0 {
                    self.per_ip.remove(&k);
                }
            }
        }
    }

    /// Stores `value` at `key` (§7.2, §7.3 step 4). `expiration` is `None` for a permanent local
    /// value. Values evicted from other sources to make room are appended to `evicted`.
    pub(crate) fn store(
        &mut self,
        now: Instant,
        key: InfoHash,
        value: Value,
        life: Life,
        source: Option<SocketAddr>,
        evicted: &mut Evicted,
    ) -> StoreOutcome {
        let Life { created, expiration } = life;
        if expiration.is_some_and(|e| e <= now) {
            return StoreOutcome::Refused;
        }
        let size = value.size();
        if !self.keys.contains_key(&key) && self.keys.len() >= self.limits.max_keys {
            return StoreOutcome::Refused;
        }
        let ks = self.keys.entry(key).or_default();
        if let Some(pos) = ks.values.iter().position(|s| s.value.id == value.id) {
            let Some(old) = ks.values.get_mut(pos) else {
                return StoreOutcome::Refused;
            };
            if old.value.content_eq(&value) {
                // Refresh: the later of the two creation times, and a life at least as long as
                // before. The announced time, not `now`: a re-replicated copy carries its original
                // creation time, and taking `now` here would hand the value a fresh life that the
                // next re-replication passes on (OpenDHT also keeps the announced time). A
                // putter's refresh announces no creation time, so `created` is `now` for it.
                let old_exp = old.expiration;
                old.created = old.created.max(created.min(now));
                old.expiration = match (old_exp, expiration) {
                    (None, _) | (_, None) => None,
                    (Some(a), Some(b)) => Some(a.max(b)),
                };
                let new_exp = old.expiration;
                if old_exp != new_exp {
                    if let Some(e) = old_exp {
                        self.expiries.remove(&(e, key, value.id));
                    }
                    if let Some(e) = new_exp {
                        self.expiries.insert((e, key, value.id));
                    }
                }
                return StoreOutcome::Refreshed;
            }
            if !edit_allowed(old, &value, source) {
                return StoreOutcome::Refused;
            }
            let old = ks.values.remove(pos);
            if let Some(e) = old.expiration {
                self.expiries.remove(&(e, key, old.value.id));
            }
            self.values -= 1;
            self.charge(old.source, old.size, false);
        } else if ks.values.len() >= self.limits.max_values_per_key {
            self.drop_if_empty(&key);
            return StoreOutcome::Refused;
        }
        match source {
            None => {
                if self
                    .limits
                    .max_local_bytes
                    .is_some_and(|m| self.local_bytes + size > m)
                {
                    self.drop_if_empty(&key);
                    return StoreOutcome::Refused;
                }
            }
            Some(addr) => {
                let used = self.per_ip.get(&ip_key(&addr.ip())).copied().unwrap_or(0);
                if used + size > self.limits.max_bytes_per_ip || size > self.limits.max_remote_bytes {
                    self.drop_if_empty(&key);
                    return StoreOutcome::Refused;
                }
            }
        }
        let vid = value.id;
        if let Some(ks) = self.keys.get_mut(&key) {
            grow_compact(&mut ks.values);
            ks.values.push(Stored {
                value,
                created: created.min(now),
                expiration,
                source,
                size,
            });
        }
        if let Some(e) = expiration {
            self.expiries.insert((e, key, vid));
        }
        self.values += 1;
        self.charge(source, size, true);
        if source.is_some() {
            self.evict_over_quota(key, vid, evicted);
        }
        StoreOutcome::Stored
    }

    /// While remote data is over the limit, the address using the most loses its value that
    /// expires first (§7.1). The value just stored is spared.
    fn evict_over_quota(&mut self, spare_key: InfoHash, spare: ValueId, evicted: &mut Evicted) {
        while self.remote_bytes > self.limits.max_remote_bytes {
            let Some((&top_ip, _)) = self
                .per_ip
                .iter()
                .max_by_key(|(k, v)| (**v, core::cmp::Reverse(**k)))
            else {
                return;
            };
            let victim = self
                .expiries
                .iter()
                .find(|(_, k, vid)| {
                    !(*k == spare_key && *vid == spare)
                        && self
                            .get_value(k, *vid)
                            .and_then(|s| s.source)
                            .is_some_and(|a| ip_key(&a.ip()) == top_ip)
                })
                .copied();
            let Some((_, k, vid)) = victim else {
                return;
            };
            if let Some(v) = self.remove(&k, vid) {
                evicted.push((k, v));
            }
        }
    }

    /// Removes one value.
    pub(crate) fn remove(&mut self, key: &InfoHash, vid: ValueId) -> Option<Value> {
        let ks = self.keys.get_mut(key)?;
        let pos = ks.values.iter().position(|s| s.value.id == vid)?;
        let s = ks.values.remove(pos);
        if let Some(e) = s.expiration {
            self.expiries.remove(&(e, *key, vid));
        }
        self.values -= 1;
        self.charge(s.source, s.size, false);
        self.drop_if_empty(key);
        Some(s.value)
    }

    fn drop_if_empty(&mut self, key: &InfoHash) {
        if self
            .keys
            .get(key)
            .is_some_and(|k| k.values.is_empty() && k.listeners.is_empty())
        {
            self.keys.remove(key);
        }
    }

    /// `refresh` of `vid` (§7.3): `None` when there is no storage for `key` at all (404),
    /// otherwise whether the value was found and refreshed.
    pub(crate) fn refresh(
        &mut self,
        now: Instant,
        key: &InfoHash,
        vid: ValueId,
        life: Duration,
    ) -> Option<bool> {
        let ks = self.keys.get_mut(key)?;
        let Some(s) = ks.values.iter_mut().find(|s| s.value.id == vid) else {
            return Some(false);
        };
        s.created = now;
        if let Some(old) = s.expiration {
            let new = old.max(now + life);
            if new != old {
                self.expiries.remove(&(old, *key, vid));
                self.expiries.insert((new, *key, vid));
                s.expiration = Some(new);
            }
        }
        Some(true)
    }

    pub(crate) fn next_expiry(&self) -> Option<Instant> {
        self.expiries.first().map(|e| e.0)
    }

    /// Removes values whose time has come.
    pub(crate) fn expire(&mut self, now: Instant) -> Evicted {
        let mut out = Vec::new();
        while let Some(&(at, key, vid)) = self.expiries.first() {
            if at > now {
                break;
            }
            self.expiries.remove(&(at, key, vid));
            if let Some(v) = self.remove(&key, vid) {
                out.push((key, v));
            }
        }
        out
    }

    /// Records or refreshes a remote listener. Returns `Some(true)` when it is new, `None` when
    /// the tables are full.
    pub(crate) fn add_listener(&mut self, now: Instant, key: InfoHash, l: RemoteListener) -> Option<bool> {
        let total = self.listeners;
        let ks = self.keys.entry(key).or_default();
        if let Some(old) = ks
            .listeners
            .iter_mut()
            .find(|o| o.node == l.node && o.sid == l.sid)
        {
            old.last = now;
            old.query = l.query;
            old.addr = l.addr;
            return Some(false);
        }
        if ks.listeners.len() >= self.limits.max_listeners_per_key || total >= self.limits.max_listeners {
            self.drop_if_empty(&key);
            return None;
        }
        grow_compact(&mut ks.listeners);
        ks.listeners.push(l);
        self.listeners += 1;
        Some(true)
    }

    /// Forgets listeners not renewed for 10 minutes.
    pub(crate) fn expire_listeners(&mut self, now: Instant) {
        let mut removed = 0;
        let mut empty = Vec::new();
        for (k, ks) in &mut self.keys {
            let before = ks.listeners.len();
            ks.listeners.retain(|l| now - l.last < LISTENER_EXPIRE);
            removed += before - ks.listeners.len();
            if ks.values.is_empty() && ks.listeners.is_empty() {
                empty.push(*k);
            }
        }
        self.listeners -= removed;
        for k in empty {
            self.keys.remove(&k);
        }
    }

    /// Keys holding values stored for other nodes, with the fingerprint of their last
    /// re-replication.
    pub(crate) fn remote_keys(&self) -> Vec<(InfoHash, Option<InfoHash>)> {
        self.keys
            .iter()
            .filter(|(_, k)| k.values.iter().any(|s| s.source.is_some()))
            .map(|(h, k)| (*h, k.replicated_to))
            .collect()
    }

    pub(crate) fn set_replicated(&mut self, key: &InfoHash, fingerprint: InfoHash) {
        if let Some(k) = self.keys.get_mut(key) {
            k.replicated_to = Some(fingerprint);
        }
    }

    /// Every key and its entries, for export.
    pub(crate) fn all(&self) -> impl Iterator<Item = (&InfoHash, &[Stored])> {
        self.keys.iter().map(|(k, s)| (k, s.values.as_slice()))
    }

    /// Bytes used by one address's values.
    #[cfg(test)]
    pub(crate) fn used_by(&self, addr: &SocketAddr) -> usize {
        self.per_ip.get(&ip_key(&addr.ip())).copied().unwrap_or(0)
    }
}

/// Makes room for one more element, growing by half instead of doubling from four: most keys
/// hold one or two values, and a `Stored` is a few hundred bytes.
fn grow_compact<T>(v: &mut Vec<T>) {
    if v.len() == v.capacity() {
        v.reserve_exact((v.len() / 2).max(1));
    }
}

/// The edit policy. A signed value may be replaced only by its owner with a higher `seq`
/// (SecureDht's rule; signatures themselves are checked by the secure layer). An unsigned value
/// may be replaced by our own put or by the address that stored it; OpenDHT refuses every edit
/// of an unsigned value, which leaves a replaced value (its `testPutOverride`) unreachable on
/// storers that hold the old one.
fn edit_allowed(old: &Stored, new: &Value, source: Option<SocketAddr>) -> bool {
    if old.value.owner.is_some() {
        return new.owner == old.value.owner && new.seq > old.value.seq;
    }
    match (source, old.source) {
        (None, _) => true,
        (Some(s), Some(o)) => ip_key(&s.ip()) == ip_key(&o.ip()),
        (Some(_), None) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_keys: 4,
            max_values_per_key: 3,
            max_remote_bytes: 1000,
            max_bytes_per_ip: 600,
            max_local_bytes: Some(500),
            max_listeners_per_key: 2,
            max_listeners: 3,
        }
    }

    fn addr(i: u8) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, i], 4222))
    }

    fn val(id: u64, len: usize) -> Value {
        Value::new(id, vec![7; len])
    }

    const T: Instant = Instant::ZERO;
    fn exp(s: u64) -> Option<Instant> {
        Some(Instant::from_secs(s))
    }

    /// A copy sent again with its original creation time (re-replication) keeps that time: it
    /// gains no life. The same content sent with no creation time (a putter's re-put) is a real
    /// refresh.
    #[test]
    fn a_re_announced_copy_keeps_its_creation_time() {
        let mut s = Storage::new(limits());
        let k = InfoHash([1; 20]);
        let mut ev = Vec::new();
        let life = |created: Instant| Life {
            created,
            expiration: Some(created + Duration::from_secs(600)),
        };
        assert_eq!(
            s.store(T, k, val(1, 10), life(T), Some(addr(1)), &mut ev),
            StoreOutcome::Stored
        );
        let later = Instant::from_secs(300);
        assert_eq!(
            s.store(later, k, val(1, 10), life(T), Some(addr(2)), &mut ev),
            StoreOutcome::Refreshed
        );
        assert_eq!(s.get_value(&k, 1).map(|v| v.created), Some(T));
        assert_eq!(s.next_expiry(), Some(Instant::from_secs(600)));
        // The putter's re-put (creation time `now`) refreshes.
        assert_eq!(
            s.store(later, k, val(1, 10), life(later), Some(addr(1)), &mut ev),
            StoreOutcome::Refreshed
        );
        assert_eq!(s.get_value(&k, 1).map(|v| v.created), Some(later));
        assert_eq!(s.next_expiry(), Some(Instant::from_secs(900)));
        // A copy with the original time arriving after it does not move the time back.
        assert_eq!(
            s.store(
                Instant::from_secs(400),
                k,
                val(1, 10),
                life(T),
                Some(addr(2)),
                &mut ev
            ),
            StoreOutcome::Refreshed
        );
        assert_eq!(s.get_value(&k, 1).map(|v| v.created), Some(later));
        assert_eq!(s.next_expiry(), Some(Instant::from_secs(900)));
    }

    #[test]
    fn store_refresh_expire() {
        let mut s = Storage::new(limits());
        let k = InfoHash([1; 20]);
        let mut ev = Vec::new();
        assert_eq!(
            s.store(
                T,
                k,
                val(1, 10),
                Life {
                    created: T,
                    expiration: exp(600)
                },
                Some(addr(1)),
                &mut ev
            ),
            StoreOutcome::Stored
        );
        assert_eq!(
            s.store(
                T,
                k,
                val(1, 10),
                Life {
                    created: T,
                    expiration: exp(700)
                },
                Some(addr(2)),
                &mut ev
            ),
            StoreOutcome::Refreshed
        );
        assert_eq!(s.next_expiry(), Some(Instant::from_secs(700)));
        assert!(s.expire(Instant::from_secs(699)).is_empty());
        assert_eq!(
            s.refresh(Instant::from_secs(650), &k, 1, Duration::from_secs(600)),
            Some(true)
        );
        assert!(s.expire(Instant::from_secs(1249)).is_empty());
        assert_eq!(s.expire(Instant::from_secs(1250)).len(), 1);
        assert_eq!(s.values(), 0);
        assert_eq!(s.keys(), 0);
        assert_eq!(
            s.refresh(T, &k, 1, Duration::from_secs(1)),
            None,
            "404: no storage"
        );
        // Already expired values are not stored.
        assert_eq!(
            s.store(
                Instant::from_secs(10),
                k,
                val(2, 1),
                Life {
                    created: T,
                    expiration: exp(5)
                },
                Some(addr(1)),
                &mut ev
            ),
            StoreOutcome::Refused
        );
    }

    #[test]
    fn edit_policy() {
        let mut s = Storage::new(limits());
        let k = InfoHash([1; 20]);
        let mut ev = Vec::new();
        s.store(
            T,
            k,
            val(1, 10),
            Life {
                created: T,
                expiration: exp(600),
            },
            Some(addr(1)),
            &mut ev,
        );
        // Another address may not change it; the one that stored it may.
        assert_eq!(
            s.store(
                T,
                k,
                val(1, 11),
                Life {
                    created: T,
                    expiration: exp(600)
                },
                Some(addr(2)),
                &mut ev
            ),
            StoreOutcome::Refused
        );
        assert_eq!(
            s.store(
                T,
                k,
                val(1, 12),
                Life {
                    created: T,
                    expiration: exp(600)
                },
                Some(addr(1)),
                &mut ev
            ),
            StoreOutcome::Stored
        );
        assert_eq!(s.get(&k, &Query::default())[0].data.len(), 12);
        // Signed: only the owner, only with a higher seq.
        let mut signed = val(2, 5);
        signed.owner = Some(vec![1, 2, 3]);
        signed.seq = 5;
        s.store(
            T,
            k,
            signed.clone(),
            Life {
                created: T,
                expiration: exp(600),
            },
            Some(addr(1)),
            &mut ev,
        );
        let mut same_seq = signed.clone();
        same_seq.data = vec![1];
        assert_eq!(
            s.store(
                T,
                k,
                same_seq.clone(),
                Life {
                    created: T,
                    expiration: exp(600)
                },
                Some(addr(1)),
                &mut ev
            ),
            StoreOutcome::Refused
        );
        let mut other_owner = same_seq.clone();
        other_owner.seq = 6;
        other_owner.owner = Some(vec![9]);
        assert_eq!(
            s.store(
                T,
                k,
                other_owner,
                Life {
                    created: T,
                    expiration: exp(600)
                },
                Some(addr(1)),
                &mut ev
            ),
            StoreOutcome::Refused
        );
        let mut newer = same_seq;
        newer.seq = 6;
        assert_eq!(
            s.store(
                T,
                k,
                newer,
                Life {
                    created: T,
                    expiration: exp(600)
                },
                Some(addr(3)),
                &mut ev
            ),
            StoreOutcome::Stored
        );
    }

    #[test]
    fn quotas_per_key_per_ip_total_and_keys() {
        let mut s = Storage::new(limits());
        let mut ev = Vec::new();
        let k = InfoHash([1; 20]);
        for i in 0..3 {
            assert_eq!(
                s.store(
                    T,
                    k,
                    val(i, 10),
                    Life {
                        created: T,
                        expiration: exp(600)
                    },
                    Some(addr(1)),
                    &mut ev
                ),
                StoreOutcome::Stored
            );
        }
        assert_eq!(
            s.store(
                T,
                k,
                val(9, 10),
                Life {
                    created: T,
                    expiration: exp(600)
                },
                Some(addr(1)),
                &mut ev
            ),
            StoreOutcome::Refused,
            "per key"
        );
        // One address cannot take more than its share, whatever key it uses.
        let mut refused = 0;
        for i in 0..100u8 {
            let key = InfoHash([10 + i; 20]);
            if s.store(
                T,
                key,
                val(1, 100),
                Life {
                    created: T,
                    expiration: exp(600),
                },
                Some(addr(1)),
                &mut ev,
            ) == StoreOutcome::Refused
            {
                refused += 1;
            }
        }
        assert!(refused > 90);
        assert!(s.used_by(&addr(1)) <= 600);
        assert!(s.keys() <= 4, "key cap");
        assert!(ev.is_empty());
        // Local values have their own limit.
        let local_key = InfoHash([2; 20]);
        assert_eq!(
            s.store(
                T,
                local_key,
                val(1, 600),
                Life {
                    created: T,
                    expiration: None
                },
                None,
                &mut ev
            ),
            StoreOutcome::Refused
        );
    }

    #[test]
    fn total_quota_evicts_from_the_biggest_address_first() {
        let size = val(0, 80).size();
        let mut l = limits();
        l.max_keys = 100;
        l.max_values_per_key = 100;
        l.max_bytes_per_ip = 100 * size;
        l.max_remote_bytes = 9 * size + size / 2;
        let mut s = Storage::new(l);
        let mut ev = Vec::new();
        let k = InfoHash([1; 20]);
        for i in 0..5 {
            s.store(
                T,
                k,
                val(i, 80),
                Life {
                    created: T,
                    expiration: exp(600 + i),
                },
                Some(addr(1)),
                &mut ev,
            );
        }
        for i in 10..14 {
            s.store(
                T,
                k,
                val(i, 80),
                Life {
                    created: T,
                    expiration: exp(600 + i),
                },
                Some(addr(2)),
                &mut ev,
            );
        }
        assert!(ev.is_empty());
        assert_eq!(s.values(), 9);
        s.store(
            T,
            k,
            val(20, 80),
            Life {
                created: T,
                expiration: exp(900),
            },
            Some(addr(3)),
            &mut ev,
        );
        assert!(s.remote_bytes() <= 9 * size + size / 2);
        // addr(1) held the most: its earliest-expiring value went.
        assert_eq!(ev.len(), 1);
        assert_eq!(ev[0].1.id, 0);
        assert!(s.get_value(&k, 20).is_some(), "the newcomer stays");
    }

    #[test]
    fn listeners_are_bounded_and_expire() {
        let mut s = Storage::new(limits());
        let k = InfoHash([1; 20]);
        let l = |n: u8, sid| RemoteListener {
            node: InfoHash([n; 20]),
            addr: addr(n),
            sid,
            query: Query::default(),
            last: T,
        };
        assert_eq!(s.add_listener(T, k, l(1, 1)), Some(true));
        assert_eq!(s.add_listener(T, k, l(1, 1)), Some(false));
        assert_eq!(s.add_listener(T, k, l(2, 1)), Some(true));
        assert_eq!(s.add_listener(T, k, l(3, 1)), None, "per key");
        assert_eq!(s.add_listener(T, InfoHash([2; 20]), l(3, 1)), Some(true));
        assert_eq!(s.add_listener(T, InfoHash([3; 20]), l(4, 1)), None, "total");
        s.expire_listeners(Instant::from_secs(601));
        assert_eq!(s.listeners(), 0);
        assert_eq!(s.keys(), 0);
    }
}
