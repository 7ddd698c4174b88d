//! `InfoHash`: the 160-bit identifier of nodes and keys, and the XOR metric over it.
//!
//! OpenDHT hashes a key string with SHA-1 (`InfoHash::get`), prints ids as 40 lowercase hex
//! characters and compares distances with XOR. The bit numbering used by [`InfoHash::lowbit`] and
//! [`InfoHash::bit`] is OpenDHT's: bit 0 is the most significant bit of byte 0.

use core::cmp::Ordering;
use core::fmt;
use core::str::FromStr;

use rand_core::RngCore;
use sha1::{Digest, Sha1};

/// Length of an [`InfoHash`] in bytes.
pub const HASH_LEN: usize = 20;

/// A 160-bit node id or key, compared by XOR distance.
///
/// The all-zero hash means "unset" in OpenDHT: `get`, `put` and `listen` refuse it.
///
/// ```
/// use dht_proto::InfoHash;
/// let key = InfoHash::get("123");
/// assert_eq!(key.to_string(), "40bd001563085fc35165329ea1ff5c5ecbdbbeef");
/// assert_eq!("40BD001563085FC35165329EA1FF5C5ECBDBBEEF".parse::<InfoHash>().unwrap(), key);
/// ```
#[derive(Clone, Copy, Eq, Default)]
pub struct InfoHash(pub [u8; HASH_LEN]);

impl InfoHash {
    /// The hash as three big-endian words: they compare as the bytes do, in three steps
    /// instead of a call to `memcmp` (ids are compared in every table lookup).
    #[inline]
    pub(crate) fn words(&self) -> (u64, u64, u32) {
        let b = &self.0;
        (
            u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]),
            u64::from_be_bytes([b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]]),
            u32::from_be_bytes([b[16], b[17], b[18], b[19]]),
        )
    }
}

impl PartialEq for InfoHash {
    #[inline]
    fn eq(&self, other: &InfoHash) -> bool {
        self.words() == other.words()
    }
}

impl core::hash::Hash for InfoHash {
    /// The bytes, as equality compares them.
    fn hash<H: core::hash::Hasher>(&self, state: &mut H) {
        self.0.hash(state);
    }
}

impl Ord for InfoHash {
    /// Byte order (as `[u8; 20]` orders), which is also numeric order.
    #[inline]
    fn cmp(&self, other: &InfoHash) -> Ordering {
        self.words().cmp(&other.words())
    }
}

impl PartialOrd for InfoHash {
    #[inline]
    fn partial_cmp(&self, other: &InfoHash) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// Why a string is not a hex [`InfoHash`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ParseHashError {
    /// Fewer than 40 characters.
    #[error("an info hash needs 40 hex characters, got {0}")]
    TooShort(usize),
    /// A character that is not a hex digit.
    #[error("non-hex character at position {0}")]
    NotHex(usize),
}

impl InfoHash {
    /// The zero hash ("unset").
    pub const ZERO: InfoHash = InfoHash([0; HASH_LEN]);

    /// SHA-1 of `data`: how OpenDHT turns a key string into an `InfoHash` (no prefix, no terminator).
    pub fn get(data: impl AsRef<[u8]>) -> InfoHash {
        let digest = Sha1::digest(data.as_ref());
        let mut out = [0u8; HASH_LEN];
        out.copy_from_slice(&digest);
        InfoHash(out)
    }

    /// Builds a hash from exactly 20 bytes; `None` for any other length.
    pub fn from_slice(bytes: &[u8]) -> Option<InfoHash> {
        <[u8; HASH_LEN]>::try_from(bytes).ok().map(InfoHash)
    }

    /// Parses 40 hex characters (either case), as OpenDHT's `InfoHash(std::string)` does,
    /// except that bad input is an error rather than a silent zero hash. Characters past the 40th
    /// are ignored, as in OpenDHT.
    pub fn from_hex(s: &str) -> Result<InfoHash, ParseHashError> {
        let b = s.as_bytes();
        if b.len() < 2 * HASH_LEN {
            return Err(ParseHashError::TooShort(b.len()));
        }
        let mut out = [0u8; HASH_LEN];
        for (i, (o, pair)) in out.iter_mut().zip(b.chunks_exact(2)).enumerate() {
            let [hi, lo] = [0, 1].map(|k| pair.get(k).copied().and_then(hex_val));
            let hi = hi.ok_or(ParseHashError::NotHex(2 * i))?;
            let lo = lo.ok_or(ParseHashError::NotHex(2 * i + 1))?;
            *o = (hi << 4) | lo;
        }
        Ok(InfoHash(out))
    }

    /// Parses `s` as hex if it is a valid 40-character hex id, otherwise hashes it with SHA-1:
    /// the rule `dhtnode` and the proxy use for keys typed by users.
    pub fn from_hex_or_hash(s: &str) -> InfoHash {
        if s.len() == 2 * HASH_LEN
            && let Ok(h) = InfoHash::from_hex(s)
        {
            return h;
        }
        InfoHash::get(s)
    }

    /// The raw bytes.
    pub const fn as_bytes(&self) -> &[u8; HASH_LEN] {
        &self.0
    }

    /// True for the all-zero ("unset") hash.
    pub fn is_zero(&self) -> bool {
        self.0 == [0; HASH_LEN]
    }

    /// `self XOR other`: the Kademlia distance.
    pub fn distance(&self, other: &InfoHash) -> InfoHash {
        let mut out = [0u8; HASH_LEN];
        for ((o, a), b) in out.iter_mut().zip(self.0.iter()).zip(other.0.iter()) {
            *o = a ^ b;
        }
        InfoHash(out)
    }

    /// Compares `a` and `b` by their XOR distance to `self` (OpenDHT's `xorCmp`): `Less` when `a` is
    /// closer.
    pub fn xor_cmp(&self, a: &InfoHash, b: &InfoHash) -> Ordering {
        for ((t, x), y) in self.0.iter().zip(a.0.iter()).zip(b.0.iter()) {
            if x != y {
                return (x ^ t).cmp(&(y ^ t));
            }
        }
        Ordering::Equal
    }

    /// Length in bits of the common prefix of `self` and `other` (160 when equal).
    pub fn common_bits(&self, other: &InfoHash) -> u32 {
        for (i, (a, b)) in self.0.iter().zip(other.0.iter()).enumerate() {
            let x = a ^ b;
            if x != 0 {
                return 8 * i as u32 + x.leading_zeros();
            }
        }
        8 * HASH_LEN as u32
    }

    /// Index of the last set bit, bit 0 being the most significant bit of byte 0; `None` for the
    /// zero hash (OpenDHT returns −1).
    pub fn lowbit(&self) -> Option<u32> {
        for (i, b) in self.0.iter().enumerate().rev() {
            if *b != 0 {
                return Some(8 * i as u32 + 7 - b.trailing_zeros());
            }
        }
        None
    }

    /// Bit `n` (0 = most significant bit of byte 0). Bits past 159 read as 0.
    pub fn bit(&self, n: u32) -> bool {
        match self.0.get((n / 8) as usize) {
            Some(b) => b & (0x80 >> (n % 8)) != 0,
            None => false,
        }
    }

    /// Sets bit `n` to `value`; does nothing for `n` ≥ 160.
    pub fn set_bit(&mut self, n: u32, value: bool) {
        if let Some(b) = self.0.get_mut((n / 8) as usize) {
            let mask = 0x80 >> (n % 8);
            if value {
                *b |= mask;
            } else {
                *b &= !mask;
            }
        }
    }

    /// A uniformly random hash from `rng`, built from 32-bit draws as OpenDHT does.
    pub fn random(rng: &mut impl RngCore) -> InfoHash {
        let mut out = [0u8; HASH_LEN];
        for chunk in out.chunks_exact_mut(4) {
            chunk.copy_from_slice(&rng.next_u32().to_be_bytes());
        }
        InfoHash(out)
    }

    /// A random hash that shares its first `prefix_len` bits with `self`: a random id inside the
    /// range of a routing-table bucket whose `first` id is `self` and whose depth is `prefix_len`.
    /// With `prefix_len` ≥ 160 this is `self`.
    pub fn random_in_prefix(&self, prefix_len: u32, rng: &mut impl RngCore) -> InfoHash {
        let mut out = InfoHash::random(rng);
        let full = (prefix_len / 8) as usize;
        for (o, s) in out.0.iter_mut().zip(self.0.iter()).take(full) {
            *o = *s;
        }
        let rem = prefix_len % 8;
        if rem != 0
            && let (Some(o), Some(s)) = (out.0.get_mut(full), self.0.get(full))
        {
            let mask = 0xffu8 << (8 - rem);
            *o = (*s & mask) | (*o & !mask);
        }
        out
    }

    /// Sorts `ids` closest-to-`self` first.
    pub fn sort_by_distance(&self, ids: &mut [InfoHash]) {
        ids.sort_unstable_by(|a, b| self.xor_cmp(a, b));
    }
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

impl FromStr for InfoHash {
    type Err = ParseHashError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        InfoHash::from_hex(s)
    }
}

impl fmt::Display for InfoHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in &self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for InfoHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InfoHash({self})")
    }
}

impl From<[u8; HASH_LEN]> for InfoHash {
    fn from(b: [u8; HASH_LEN]) -> Self {
        InfoHash(b)
    }
}

impl AsRef<[u8]> for InfoHash {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prelude::*;
    use proptest::prelude::*;
    use rand_chacha::ChaCha20Rng;
    use rand_core::SeedableRng;
    use std::string::ToString;

    fn h(bytes: &[u8]) -> InfoHash {
        let mut b = [0u8; HASH_LEN];
        b[..bytes.len()].copy_from_slice(bytes);
        InfoHash(b)
    }

    #[test]
    fn sha1_of_key_matches_opendht() {
        assert_eq!(
            InfoHash::get("123").to_string(),
            "40bd001563085fc35165329ea1ff5c5ecbdbbeef"
        );
    }

    #[test]
    fn hex_parsing() {
        let s = "40bd001563085fc35165329ea1ff5c5ecbdbbeef";
        let x: InfoHash = s.parse().unwrap();
        assert_eq!(x.to_string(), s);
        assert_eq!(InfoHash::from_hex("abc"), Err(ParseHashError::TooShort(3)));
        assert_eq!(
            InfoHash::from_hex("40bd001563085fc35165329ea1ff5c5ecbdbbeeg"),
            Err(ParseHashError::NotHex(39))
        );
        // OpenDHT truncates longer strings.
        assert_eq!(InfoHash::from_hex(&format!("{s}ff")).unwrap(), x);
        assert_eq!(InfoHash::from_hex_or_hash(s), x);
        assert_eq!(InfoHash::from_hex_or_hash("123"), x);
    }

    #[test]
    fn lowbit_like_opendht() {
        assert_eq!(InfoHash::ZERO.lowbit(), None);
        let mut x = InfoHash::ZERO;
        x.0[19] = 0x02;
        assert_eq!(x.lowbit(), Some(158));
        assert_eq!(h(&[0x01]).lowbit(), Some(7));
        assert_eq!(h(&[0x80]).lowbit(), Some(0));
    }

    #[test]
    fn common_bits_and_bits() {
        let a = InfoHash::get("a");
        assert_eq!(a.common_bits(&a), 160);
        assert_eq!(h(&[0x80]).common_bits(&h(&[0x00])), 0);
        assert_eq!(h(&[0x00, 0x01]).common_bits(&h(&[0x00, 0x00])), 15);
        let mut x = InfoHash::ZERO;
        x.set_bit(9, true);
        assert!(x.bit(9));
        assert_eq!(x.0[1], 0x40);
        x.set_bit(9, false);
        assert!(x.is_zero());
        assert!(!x.bit(500));
    }

    #[test]
    fn xor_cmp_orders_by_distance() {
        let t = h(&[0x10]);
        let near = h(&[0x11]);
        let far = h(&[0x90]);
        assert_eq!(t.xor_cmp(&near, &far), Ordering::Less);
        assert_eq!(t.xor_cmp(&far, &near), Ordering::Greater);
        assert_eq!(t.xor_cmp(&far, &far), Ordering::Equal);
        let mut v = vec![far, near, t];
        t.sort_by_distance(&mut v);
        assert_eq!(v, vec![t, near, far]);
    }

    #[test]
    fn random_is_deterministic_for_a_seed() {
        let mut r1 = ChaCha20Rng::seed_from_u64(7);
        let mut r2 = ChaCha20Rng::seed_from_u64(7);
        assert_eq!(InfoHash::random(&mut r1), InfoHash::random(&mut r2));
    }

    fn arb_hash() -> impl Strategy<Value = InfoHash> {
        any::<[u8; HASH_LEN]>().prop_map(InfoHash)
    }

    proptest! {
        #[test]
        fn order_and_equality_are_the_bytes(a in arb_hash(), b in arb_hash(), i in 0..HASH_LEN) {
            prop_assert_eq!(a.cmp(&b), a.0.cmp(&b.0));
            prop_assert_eq!(a == b, a.0 == b.0);
            // Hashes that differ in one byte only, at any place.
            let mut c = a;
            c.0[i] = b.0[i];
            prop_assert_eq!(a.cmp(&c), a.0.cmp(&c.0));
            prop_assert_eq!(a == c, a.0 == c.0);
        }

        #[test]
        fn xor_metric_laws(a in arb_hash(), b in arb_hash(), c in arb_hash()) {
            // identity, symmetry
            prop_assert!(a.distance(&a).is_zero());
            prop_assert_eq!(a.distance(&b), b.distance(&a));
            prop_assert_eq!(a.distance(&b).is_zero(), a == b);
            // d(a,c) is the XOR of d(a,b) and d(b,c)
            let ab = a.distance(&b);
            let bc = b.distance(&c);
            let ac = a.distance(&c);
            prop_assert_eq!(ab.distance(&bc), ac);
            // numeric triangle inequality d(a,c) <= d(a,b) + d(b,c)
            let n = |x: InfoHash| -> u128 { u128::from_be_bytes(x.0[..16].try_into().unwrap()) };
            prop_assert!(n(ac) <= n(ab).saturating_add(n(bc)));
        }

        #[test]
        fn xor_cmp_agrees_with_distance(t in arb_hash(), a in arb_hash(), b in arb_hash()) {
            prop_assert_eq!(t.xor_cmp(&a, &b), t.distance(&a).cmp(&t.distance(&b)));
        }

        #[test]
        fn unidirectional(a in arb_hash(), b in arb_hash(), c in arb_hash()) {
            // for a given point and distance there is exactly one other point
            prop_assume!(b != c);
            prop_assert_ne!(a.distance(&b), a.distance(&c));
        }

        #[test]
        fn common_bits_matches_distance(a in arb_hash(), b in arb_hash()) {
            let d = a.distance(&b);
            let expected = d.lowbit().map(|_| {
                d.0.iter().position(|x| *x != 0).map(|i| 8 * i as u32 + d.0[i].leading_zeros()).unwrap()
            }).unwrap_or(160);
            prop_assert_eq!(a.common_bits(&b), expected);
        }

        #[test]
        fn hex_round_trip(a in arb_hash()) {
            prop_assert_eq!(a.to_string().parse::<InfoHash>().unwrap(), a);
            prop_assert_eq!(a.to_string().to_uppercase().parse::<InfoHash>().unwrap(), a);
        }

        #[test]
        fn random_in_prefix_keeps_prefix(first in arb_hash(), depth in 0u32..=160, seed in any::<u64>()) {
            let mut rng = ChaCha20Rng::seed_from_u64(seed);
            let x = first.random_in_prefix(depth, &mut rng);
            prop_assert!(x.common_bits(&first) >= depth);
        }
    }
}
