//! The ids a driver hands out at once, before its node has seen the command: get and listen ids,
//! and value ids for puts of a value whose id is 0.

use std::sync::atomic::{AtomicU64, Ordering};

/// A get started through a driver, for cancelling it. Chosen by the caller's side at once (the
/// core's own [`dht_proto::OpId`] exists only once the driver has applied the command).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GetId(u64);

/// A listen started through a driver, for cancelling it (see [`GetId`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ListenId(u64);

impl GetId {
    /// The number inside.
    pub fn get(self) -> u64 {
        self.0
    }
}

impl ListenId {
    /// The number inside.
    pub fn get(self) -> u64 {
        self.0
    }
}

/// One node's id counter, shared by every handle to it: get ids, listen ids and value ids come
/// from one sequence. Value ids are drawn from the node's seed and the counter, so the same seed
/// and the same commands give the same value ids.
#[derive(Debug)]
pub struct Ids {
    next: AtomicU64,
    vid_seed: u64,
}

impl Ids {
    /// The counter of the node built from `seed`.
    pub fn new(seed: &[u8; 32]) -> Ids {
        let mut vid_seed = [0u8; 8];
        vid_seed.copy_from_slice(seed.get(24..32).unwrap_or(&[1; 8]));
        Ids {
            next: AtomicU64::new(1),
            vid_seed: u64::from_le_bytes(vid_seed),
        }
    }

    fn next(&self) -> u64 {
        self.next.fetch_add(1, Ordering::Relaxed)
    }

    /// A fresh get id.
    pub fn get_id(&self) -> GetId {
        GetId(self.next())
    }

    /// A fresh listen id.
    pub fn listen_id(&self) -> ListenId {
        ListenId(self.next())
    }

    /// A fresh value id (never 0).
    pub fn value_id(&self) -> u64 {
        splitmix(self.vid_seed ^ self.next())
    }

    /// Gives `value` a fresh id if its id is 0; returns its id.
    pub fn fill_value_id(&self, value: &mut dht_proto::value::Value) -> u64 {
        if value.id == 0 {
            value.id = self.value_id();
        }
        value.id
    }
}

/// SplitMix64, bent away from 0 (a value id of 0 means "choose one").
fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_share_one_sequence_and_value_ids_follow_the_seed() {
        let seed = [7u8; 32];
        let (a, b) = (Ids::new(&seed), Ids::new(&seed));
        assert_eq!(a.get_id().get(), 1);
        assert_eq!(a.listen_id().get(), 2);
        let v = a.value_id();
        assert_ne!(v, 0);
        b.get_id();
        b.listen_id();
        assert_eq!(b.value_id(), v);
        let mut value = dht_proto::value::Value::new(0, Vec::new());
        assert_ne!(a.fill_value_id(&mut value), 0);
        let mut fixed = dht_proto::value::Value::new(42, Vec::new());
        assert_eq!(a.fill_value_id(&mut fixed), 42);
    }
}
