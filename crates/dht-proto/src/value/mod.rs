//! Values: what the DHT stores, their msgpack form, and the canonical bytes a signature covers.
//!
//! The serialized form (OpenDHT `Value::msgpack_pack`):
//!
//! ```text
//! Value := map{ "id": uint64, "dat": Dat, ["p": uint], ["pt": str] }
//! Dat   := bin (encrypted: the cypher) | map{ "body": Body, ["sig": bin] }
//! Body  := map{ ["seq": uint16, "owner": bin, ["to": bin20]], "type": uint16, "data": bin, ["utype": str] }
//! ```
//!
//! Values carry no creation time: it travels in the `c` argument of put and update requests.

pub(crate) mod query;
mod types;

pub use query::{Field, FieldRow, FieldValue, Query, QueryParseError, Select, Where};
pub use types::{StorePolicy, ValueType, ValueTypeId, decode_sockaddr, encode_sockaddr};

use crate::InfoHash;
use crate::msgpack::{Reader, Seen, write};
use crate::prelude::*;
use crate::wire::DecodeError;

/// A value id: chosen by the writer, random by default; 0 is invalid.
pub type ValueId = u64;

/// The largest value the default store policy accepts (`Value::size()` ≤ 64 KiB).
pub const MAX_VALUE_SIZE: usize = 64 * 1024;

/// A value stored in the DHT.
///
/// ```
/// use dht_proto::value::Value;
/// let v = Value::new(42, b"hi".to_vec());
/// let bytes = v.encode_to_vec();
/// assert_eq!(bytes, b"\x82\xa2id\x2a\xa3dat\x81\xa4body\x82\xa4type\x00\xa4data\xc4\x02hi");
/// assert_eq!(Value::decode(&bytes).unwrap(), v);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Value {
    /// The id; 0 = unset (a put replaces it with a random one).
    pub id: ValueId,
    /// The [`ValueType`] id, which decides expiry and storage policy.
    pub value_type: ValueTypeId,
    /// The payload (empty for encrypted values).
    pub data: Vec<u8>,
    /// A free-form type tag (`utype`), e.g. `text/plain`.
    pub user_type: String,
    /// The signer's public key, as bytes (SubjectPublicKeyInfo DER on the wire).
    pub owner: Option<Vec<u8>>,
    /// Sequence number of a signed value; an edit must raise it.
    pub seq: u16,
    /// Recipient short id (signed or encrypted values only).
    pub recipient: Option<InfoHash>,
    /// Signature over [`Value::body_to_sign`]; present when `owner` is.
    pub signature: Vec<u8>,
    /// Ciphertext of an encrypted value; when non-empty, every body field above is hidden in it.
    pub cypher: Vec<u8>,
    /// Push priority; 0 = high.
    pub priority: u32,
    /// Push type tag (`pt`), for the proxy's push notifications.
    pub push_type: String,
}

impl Value {
    /// An unsigned value of type 0 (user data) with the given id and payload.
    pub fn new(id: ValueId, data: Vec<u8>) -> Value {
        Value {
            id,
            data,
            ..Value::default()
        }
    }

    /// True when the value is encrypted: only `id`, `priority`, `push_type` and `cypher` are visible.
    pub fn is_encrypted(&self) -> bool {
        !self.cypher.is_empty()
    }

    /// True when the value carries an owner (and so a signature).
    pub fn is_signed(&self) -> bool {
        self.owner.is_some() && !self.is_encrypted()
    }

    /// OpenDHT's `Value::size()`: the bytes that count against the 64 KiB limit and quotas
    /// (the owner key is not counted).
    pub fn size(&self) -> usize {
        self.cypher.len()
            + self.data.len()
            + self.signature.len()
            + self.user_type.len()
            + self.push_type.len()
    }

    /// The short id of the owner key: SHA-1 of its bytes (OpenDHT's `getId()`).
    pub fn owner_id(&self) -> Option<InfoHash> {
        self.owner.as_ref().map(InfoHash::get)
    }

    /// OpenDHT's content equality: same id and either the same cypher, or the same owner, type,
    /// data, user type and signature.
    pub fn content_eq(&self, other: &Value) -> bool {
        self.id == other.id
            && if self.is_encrypted() {
                self.cypher == other.cypher
            } else {
                self.owner == other.owner
                    && self.value_type == other.value_type
                    && self.data == other.data
                    && self.user_type == other.user_type
                    && self.signature == other.signature
            }
    }

    /// The bytes a signature covers: the body map, packed canonically (smallest integer forms,
    /// keys in the order seq, owner, to, type, data, utype). A verifier re-encodes; it never
    /// trusts received bytes.
    pub fn body_to_sign(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.data.len() + 64);
        self.encode_body(&mut out);
        out
    }

    fn encode_body(&self, out: &mut Vec<u8>) {
        let signed = self.owner.is_some();
        let n =
            2 + if signed {
                2 + u32::from(self.recipient.is_some())
            } else {
                0
            } + u32::from(!self.user_type.is_empty());
        write::map(out, n);
        if let Some(owner) = &self.owner {
            write::key(out, "seq");
            write::uint(out, u64::from(self.seq));
            write::key(out, "owner");
            write::bin(out, owner);
            if let Some(to) = &self.recipient {
                write::key(out, "to");
                write::bin(out, to.as_bytes());
            }
        }
        write::key(out, "type");
        write::uint(out, u64::from(self.value_type));
        write::key(out, "data");
        write::bin(out, &self.data);
        if !self.user_type.is_empty() {
            write::key(out, "utype");
            write::str(out, &self.user_type);
        }
    }

    /// Appends the msgpack form of the value to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        let n = 2 + u32::from(self.priority != 0) + u32::from(!self.push_type.is_empty());
        write::map(out, n);
        write::key(out, "id");
        write::uint(out, self.id);
        write::key(out, "dat");
        if self.is_encrypted() {
            write::bin(out, &self.cypher);
        } else {
            write::map(out, if self.owner.is_some() { 2 } else { 1 });
            write::key(out, "body");
            self.encode_body(out);
            if self.owner.is_some() {
                write::key(out, "sig");
                write::bin(out, &self.signature);
            }
        }
        if self.priority != 0 {
            write::key(out, "p");
            write::uint(out, u64::from(self.priority));
        }
        if !self.push_type.is_empty() {
            write::key(out, "pt");
            write::str(out, &self.push_type);
        }
    }

    /// The msgpack form as a new vector.
    pub fn encode_to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.size() + 48);
        self.encode(&mut out);
        out
    }

    /// Decodes one value from exactly `bytes` (trailing bytes are ignored, as msgpack-c does).
    pub fn decode(bytes: &[u8]) -> Result<Value, DecodeError> {
        Value::read(&mut Reader::new(bytes))
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Value, DecodeError> {
        let n = r.map_len("value")?;
        if n < 2 {
            return Err(DecodeError::BadValue("a value map needs id and dat"));
        }
        let mut v = Value::default();
        let mut have_id = false;
        let mut have_dat = false;
        let mut seen = Seen::default();
        for _ in 0..n {
            match seen.first(r.key()?, &[b"id", b"dat", b"p", b"pt"]) {
                Some(b"id") => {
                    v.id = r.uint("value.id")?;
                    have_id = true;
                }
                Some(b"dat") => {
                    v.read_dat(r)?;
                    have_dat = true;
                }
                Some(b"p") => v.priority = r.uint_as("value.p")?,
                Some(b"pt") => v.push_type = r.str("value.pt")?.to_owned(),
                _ => r.skip()?,
            }
        }
        if !have_id {
            return Err(DecodeError::MissingField("value.id"));
        }
        if !have_dat {
            return Err(DecodeError::MissingField("value.dat"));
        }
        Ok(v)
    }

    fn read_dat(&mut self, r: &mut Reader<'_>) -> Result<(), DecodeError> {
        use rmp::Marker;
        match r.peek()? {
            Marker::Bin8 | Marker::Bin16 | Marker::Bin32 => {
                self.cypher = r.bin("value.dat")?.to_vec();
                Ok(())
            }
            _ => {
                let n = r.map_len("value.dat")?;
                let mut have_body = false;
                let mut sig = None;
                let mut seen = Seen::default();
                for _ in 0..n {
                    match seen.first(r.key()?, &[b"body", b"sig"]) {
                        Some(b"body") => {
                            self.read_body(r)?;
                            have_body = true;
                        }
                        Some(b"sig") => sig = Some(r.blob("value.sig")?.into_vec()),
                        _ => r.skip()?,
                    }
                }
                if !have_body {
                    return Err(DecodeError::MissingField("value.body"));
                }
                if self.owner.is_some() {
                    self.signature = sig.ok_or(DecodeError::MissingField("value.sig"))?;
                }
                Ok(())
            }
        }
    }

    fn read_body(&mut self, r: &mut Reader<'_>) -> Result<(), DecodeError> {
        let n = r.map_len("value.body")?;
        let (mut have_type, mut have_data, mut have_seq) = (false, false, false);
        let mut seen = Seen::default();
        for _ in 0..n {
            match seen.first(r.key()?, &[b"seq", b"owner", b"to", b"type", b"data", b"utype"]) {
                Some(b"seq") => {
                    self.seq = r.uint_as("value.seq")?;
                    have_seq = true;
                }
                Some(b"owner") => self.owner = Some(r.blob("value.owner")?.into_vec()),
                Some(b"to") => {
                    let b = r.bin("value.to")?;
                    self.recipient = Some(InfoHash::from_slice(b).ok_or(DecodeError::BadIdLength {
                        field: "value.to",
                        len: b.len(),
                    })?);
                }
                Some(b"type") => {
                    self.value_type = r.uint_as("value.type")?;
                    have_type = true;
                }
                Some(b"data") => {
                    self.data = r.blob("value.data")?.into_vec();
                    have_data = true;
                }
                Some(b"utype") => self.user_type = r.str("value.utype")?.to_owned(),
                _ => r.skip()?,
            }
        }
        if !have_type {
            return Err(DecodeError::MissingField("value.type"));
        }
        if !have_data {
            return Err(DecodeError::MissingField("value.data"));
        }
        if self.owner.is_some() && !have_seq {
            return Err(DecodeError::MissingField("value.seq"));
        }
        if self.owner.is_none() {
            // `seq` and `to` belong to signed values; without an owner they are never written,
            // so they are not kept either.
            self.seq = 0;
            self.recipient = None;
        }
        if self.owner.as_ref().is_some_and(|o| o.is_empty()) {
            return Err(DecodeError::BadValue("empty owner key"));
        }
        Ok(())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    pub(crate) fn arb_value() -> impl Strategy<Value = Value> {
        let plain = (
            any::<u64>(),
            any::<u16>(),
            proptest::collection::vec(any::<u8>(), 0..200),
            "[a-z/]{0,12}",
            any::<u32>(),
            "[a-z]{0,6}",
        )
            .prop_map(|(id, t, data, ut, p, pt)| Value {
                id,
                value_type: t,
                data,
                user_type: ut,
                priority: p,
                push_type: pt,
                ..Value::default()
            });
        let signed = (
            plain.clone(),
            proptest::collection::vec(any::<u8>(), 1..50),
            any::<u16>(),
            proptest::option::of(any::<[u8; 20]>()),
            proptest::collection::vec(any::<u8>(), 0..70),
        )
            .prop_map(|(mut v, owner, seq, to, sig)| {
                v.owner = Some(owner);
                v.seq = seq;
                v.recipient = to.map(InfoHash);
                v.signature = sig;
                v
            });
        let encrypted = (
            any::<u64>(),
            proptest::collection::vec(any::<u8>(), 1..300),
            any::<u32>(),
        )
            .prop_map(|(id, cypher, p)| Value {
                id,
                cypher,
                priority: p,
                ..Value::default()
            });
        prop_oneof![plain, signed, encrypted]
    }

    #[test]
    fn hand_computed_example() {
        let v = Value::new(42, b"hi".to_vec());
        let expected = [
            0x82, 0xa2, 0x69, 0x64, 0x2a, 0xa3, 0x64, 0x61, 0x74, 0x81, 0xa4, 0x62, 0x6f, 0x64, 0x79, 0x82,
            0xa4, 0x74, 0x79, 0x70, 0x65, 0x00, 0xa4, 0x64, 0x61, 0x74, 0x61, 0xc4, 0x02, 0x68, 0x69,
        ];
        assert_eq!(v.encode_to_vec(), expected);
    }

    #[test]
    fn decoding_rules() {
        // data as str and as an int array are accepted.
        let mut b = Vec::new();
        write::map(&mut b, 2);
        write::key(&mut b, "id");
        write::uint(&mut b, 1);
        write::key(&mut b, "dat");
        write::map(&mut b, 1);
        write::key(&mut b, "body");
        write::map(&mut b, 2);
        write::key(&mut b, "type");
        write::uint(&mut b, 3);
        write::key(&mut b, "data");
        write::array(&mut b, 2);
        write::uint(&mut b, 104);
        write::uint(&mut b, 105);
        let v = Value::decode(&b).unwrap();
        assert_eq!(v.data, b"hi");
        assert_eq!(v.value_type, 3);

        // Owner without seq/sig is rejected.
        let mut signed = Value::new(1, vec![1]);
        signed.owner = Some(vec![9; 4]);
        let enc = signed.encode_to_vec();
        assert!(Value::decode(&enc).is_ok());
        let mut no_sig = Vec::new();
        write::map(&mut no_sig, 2);
        write::key(&mut no_sig, "id");
        write::uint(&mut no_sig, 1);
        write::key(&mut no_sig, "dat");
        write::map(&mut no_sig, 1);
        write::key(&mut no_sig, "body");
        signed.encode_body(&mut no_sig);
        assert_eq!(
            Value::decode(&no_sig),
            Err(DecodeError::MissingField("value.sig"))
        );

        // A map with one entry is not a value.
        assert!(Value::decode(&[0x81, 0xa2, b'i', b'd', 0x01]).is_err());
        assert!(Value::decode(&[]).is_err());
    }

    #[test]
    fn repeated_keys_first_wins() {
        // Found by the decode_value fuzzer: a body `dat`, then a cypher `dat`. OpenDHT reads the
        // first occurrence of a key; so do we, and the value round-trips.
        let mut b = Vec::new();
        write::map(&mut b, 3);
        write::key(&mut b, "id");
        write::uint(&mut b, 7);
        write::key(&mut b, "dat");
        write::map(&mut b, 1);
        write::key(&mut b, "body");
        write::map(&mut b, 2);
        write::key(&mut b, "type");
        write::uint(&mut b, 0);
        write::key(&mut b, "data");
        write::bin(&mut b, b"first");
        write::key(&mut b, "dat");
        write::bin(&mut b, b"cypher");
        let v = Value::decode(&b).unwrap();
        assert_eq!(v.data, b"first");
        assert!(v.cypher.is_empty());
        assert_eq!(Value::decode(&v.encode_to_vec()).unwrap(), v);
    }

    #[test]
    fn seq_and_recipient_need_an_owner() {
        // Found by the fuzz smoke in CI: `seq` without `owner` did not round-trip.
        let mut b = Vec::new();
        write::map(&mut b, 2);
        write::key(&mut b, "id");
        write::uint(&mut b, 7);
        write::key(&mut b, "dat");
        write::map(&mut b, 1);
        write::key(&mut b, "body");
        write::map(&mut b, 4);
        write::key(&mut b, "seq");
        write::uint(&mut b, 9);
        write::key(&mut b, "to");
        write::bin(&mut b, &[1; 20]);
        write::key(&mut b, "type");
        write::uint(&mut b, 0);
        write::key(&mut b, "data");
        write::bin(&mut b, b"x");
        let v = Value::decode(&b).unwrap();
        assert_eq!((v.seq, v.recipient), (0, None));
        assert_eq!(Value::decode(&v.encode_to_vec()).unwrap(), v);
    }

    #[test]
    fn size_and_equality() {
        let mut v = Value::new(1, vec![0; 10]);
        v.user_type = "text/plain".into();
        assert_eq!(v.size(), 20);
        let mut w = v.clone();
        w.priority = 3;
        assert!(v.content_eq(&w));
        w.data.push(1);
        assert!(!v.content_eq(&w));
    }

    proptest! {
        #[test]
        fn value_round_trip(v in arb_value()) {
            let bytes = v.encode_to_vec();
            prop_assert_eq!(Value::decode(&bytes).unwrap(), v);
        }

        #[test]
        fn value_decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = Value::decode(&bytes);
        }

        #[test]
        fn mutated_values_never_panic(v in arb_value(), idx in any::<usize>(), byte in any::<u8>()) {
            let mut bytes = v.encode_to_vec();
            let i = idx % bytes.len();
            bytes[i] = byte;
            let _ = Value::decode(&bytes);
            bytes.truncate(i);
            prop_assert!(Value::decode(&bytes).is_err());
        }
    }
}
