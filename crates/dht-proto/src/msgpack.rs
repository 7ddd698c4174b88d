//! A checked msgpack reader over a borrowed datagram, and the writer helpers the encoder uses.
//!
//! Reading never panics, never allocates and never recurses: every declared length is checked
//! against the bytes that remain before anything is taken, and skipping an unknown value walks
//! nested containers with an explicit, bounded stack. Markers are classified by `rmp`.

use crate::prelude::*;
use rmp::Marker;

/// The largest datagram OpenDHT receives (its receive buffer).
pub const MAX_DATAGRAM: usize = 64 * 1024;

/// Why a datagram is not a valid message. Every way bad input can be wrong has a variant; none
/// of them is the caller's fault, and a node drops such datagrams and counts them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input ended inside a msgpack item.
    #[error("truncated")]
    Truncated,
    /// The datagram is larger than any OpenDHT node sends.
    #[error("datagram of {0} bytes exceeds {MAX_DATAGRAM}")]
    TooLarge(usize),
    /// A field had the wrong msgpack type.
    #[error("{field}: expected {expected}")]
    WrongType {
        /// Field name.
        field: &'static str,
        /// What was expected.
        expected: &'static str,
    },
    /// A declared length or element count exceeds the bytes that remain.
    #[error("{field}: declared length {len} exceeds the {remaining} bytes left")]
    LengthTooLarge {
        /// Field name.
        field: &'static str,
        /// Declared length or count.
        len: u64,
        /// Bytes left in the input.
        remaining: usize,
    },
    /// Containers nested deeper than [`MAX_DEPTH`].
    #[error("nesting deeper than {MAX_DEPTH}")]
    TooDeep,
    /// An integer outside the range of its field.
    #[error("{field}: integer out of range")]
    IntegerOutOfRange {
        /// Field name.
        field: &'static str,
    },
    /// A node id or hash that is not 20 bytes.
    #[error("{field}: expected 20 bytes, got {len}")]
    BadIdLength {
        /// Field name.
        field: &'static str,
        /// Length received.
        len: usize,
    },
    /// A compact node list whose length is not a multiple of its entry size.
    #[error("{field}: length {len} is not a multiple of {entry}")]
    BadNodeListLength {
        /// `n4` or `n6`.
        field: &'static str,
        /// Length received.
        len: usize,
        /// 26 or 38.
        entry: usize,
    },
    /// A request name we do not know, or a `y` that is not `q` on a request.
    #[error("unknown message kind")]
    UnknownKind,
    /// None of `a`, `r`, `e`, `u` (nor `p`) is present.
    #[error("message has no body")]
    NoBody,
    /// A required field is missing.
    #[error("{0} is required")]
    MissingField(&'static str),
    /// A query that OpenDHT would refuse to decode.
    #[error("query: {0}")]
    BadQuery(&'static str),
    /// A value or field selection that breaks a rule of the value model.
    #[error("value: {0}")]
    BadValue(&'static str),
}

/// Deepest nesting accepted when skipping an unknown value. OpenDHT messages nest at most five
/// levels; 32 leaves room for extensions without letting a peer make us loop on a deep tower.
pub const MAX_DEPTH: usize = 32;

/// A cursor over msgpack bytes.
#[derive(Clone, Debug)]
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    #[cfg(test)]
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len()
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.buf.len() {
            return Err(DecodeError::Truncated);
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        let (&b, tail) = self.buf.split_first().ok_or(DecodeError::Truncated)?;
        self.buf = tail;
        Ok(b)
    }

    fn be<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let s = self.take(N)?;
        let mut out = [0u8; N];
        out.copy_from_slice(s);
        Ok(out)
    }

    fn len_u8(&mut self) -> Result<usize, DecodeError> {
        Ok(self.u8()? as usize)
    }
    fn len_u16(&mut self) -> Result<usize, DecodeError> {
        Ok(u16::from_be_bytes(self.be()?) as usize)
    }
    fn len_u32(&mut self) -> Result<usize, DecodeError> {
        Ok(u32::from_be_bytes(self.be()?) as usize)
    }

    /// The next marker, without consuming it.
    pub(crate) fn peek(&self) -> Result<Marker, DecodeError> {
        self.buf
            .first()
            .map(|b| Marker::from_u8(*b))
            .ok_or(DecodeError::Truncated)
    }

    fn marker(&mut self) -> Result<Marker, DecodeError> {
        Ok(Marker::from_u8(self.u8()?))
    }

    /// Checks that `count` items of at least `min_item` bytes each can still fit.
    fn check_count(&self, field: &'static str, count: usize, min_item: usize) -> Result<(), DecodeError> {
        if count.saturating_mul(min_item) > self.buf.len() {
            return Err(DecodeError::LengthTooLarge {
                field,
                len: count as u64,
                remaining: self.buf.len(),
            });
        }
        Ok(())
    }

    fn sized(&mut self, field: &'static str, len: usize) -> Result<&'a [u8], DecodeError> {
        if len > self.buf.len() {
            return Err(DecodeError::LengthTooLarge {
                field,
                len: len as u64,
                remaining: self.buf.len(),
            });
        }
        self.take(len)
    }

    /// A map header; the count is checked against the bytes left (each entry takes ≥ 2 bytes).
    pub(crate) fn map_len(&mut self, field: &'static str) -> Result<usize, DecodeError> {
        let n = match self.marker()? {
            Marker::FixMap(n) => n as usize,
            Marker::Map16 => self.len_u16()?,
            Marker::Map32 => self.len_u32()?,
            _ => {
                return Err(DecodeError::WrongType {
                    field,
                    expected: "map",
                });
            }
        };
        self.check_count(field, n, 2)?;
        Ok(n)
    }

    /// An array header; the count is checked against the bytes left (each item takes ≥ 1 byte).
    pub(crate) fn array_len(&mut self, field: &'static str) -> Result<usize, DecodeError> {
        let n = match self.marker()? {
            Marker::FixArray(n) => n as usize,
            Marker::Array16 => self.len_u16()?,
            Marker::Array32 => self.len_u32()?,
            _ => {
                return Err(DecodeError::WrongType {
                    field,
                    expected: "array",
                });
            }
        };
        self.check_count(field, n, 1)?;
        Ok(n)
    }

    fn str_len_after(&mut self, m: Marker) -> Result<Option<usize>, DecodeError> {
        Ok(Some(match m {
            Marker::FixStr(n) => n as usize,
            Marker::Str8 => self.len_u8()?,
            Marker::Str16 => self.len_u16()?,
            Marker::Str32 => self.len_u32()?,
            _ => return Ok(None),
        }))
    }

    fn bin_len_after(&mut self, m: Marker) -> Result<Option<usize>, DecodeError> {
        Ok(Some(match m {
            Marker::Bin8 => self.len_u8()?,
            Marker::Bin16 => self.len_u16()?,
            Marker::Bin32 => self.len_u32()?,
            _ => return Ok(None),
        }))
    }

    /// A msgpack str, as raw bytes (not checked for UTF-8).
    pub(crate) fn str_bytes(&mut self, field: &'static str) -> Result<&'a [u8], DecodeError> {
        let m = self.marker()?;
        match self.str_len_after(m)? {
            Some(n) => self.sized(field, n),
            None => Err(DecodeError::WrongType {
                field,
                expected: "str",
            }),
        }
    }

    /// A msgpack str that must be UTF-8.
    pub(crate) fn str(&mut self, field: &'static str) -> Result<&'a str, DecodeError> {
        let b = self.str_bytes(field)?;
        core::str::from_utf8(b).map_err(|_| DecodeError::WrongType {
            field,
            expected: "UTF-8 str",
        })
    }

    /// A msgpack bin.
    pub(crate) fn bin(&mut self, field: &'static str) -> Result<&'a [u8], DecodeError> {
        let m = self.marker()?;
        match self.bin_len_after(m)? {
            Some(n) => self.sized(field, n),
            None => Err(DecodeError::WrongType {
                field,
                expected: "bin",
            }),
        }
    }

    /// A byte string as OpenDHT's `unpackBlob` reads it: bin, str, or an array of small integers.
    pub(crate) fn blob(&mut self, field: &'static str) -> Result<Blob<'a>, DecodeError> {
        let m = self.peek()?;
        match m {
            Marker::Bin8 | Marker::Bin16 | Marker::Bin32 => Ok(Blob::Borrowed(self.bin(field)?)),
            Marker::FixStr(_) | Marker::Str8 | Marker::Str16 | Marker::Str32 => {
                Ok(Blob::Borrowed(self.str_bytes(field)?))
            }
            Marker::FixArray(_) | Marker::Array16 | Marker::Array32 => {
                let n = self.array_len(field)?;
                let mut out = Vec::with_capacity(n);
                for _ in 0..n {
                    let v = self.uint(field)?;
                    out.push(u8::try_from(v).map_err(|_| DecodeError::IntegerOutOfRange { field })?);
                }
                Ok(Blob::Owned(out))
            }
            _ => Err(DecodeError::WrongType {
                field,
                expected: "bin",
            }),
        }
    }

    /// A byte string as [`Reader::blob`] reads it, handed to `f` in place: the common forms
    /// (bin8 and bin16) are read inline, without returning a [`Blob`] through memory.
    #[inline]
    pub(crate) fn with_blob<R>(
        &mut self,
        field: &'static str,
        f: impl FnOnce(&[u8]) -> R,
    ) -> Result<R, DecodeError> {
        let fast = match self.buf {
            [0xc4, n, rest @ ..] => Some((*n as usize, rest)),
            [0xc5, a, b, rest @ ..] => Some((u16::from_be_bytes([*a, *b]) as usize, rest)),
            _ => None,
        };
        if let Some((n, rest)) = fast
            && n <= rest.len()
        {
            let (b, tail) = rest.split_at(n);
            self.buf = tail;
            return Ok(f(b));
        }
        let b = self.blob(field)?;
        Ok(f(b.as_slice()))
    }

    /// Any msgpack integer, widened to i128 so every encoding fits.
    fn integer(&mut self, field: &'static str) -> Result<i128, DecodeError> {
        Ok(match self.marker()? {
            Marker::FixPos(v) => v as i128,
            Marker::FixNeg(v) => v as i128,
            Marker::U8 => self.u8()? as i128,
            Marker::U16 => u16::from_be_bytes(self.be()?) as i128,
            Marker::U32 => u32::from_be_bytes(self.be()?) as i128,
            Marker::U64 => u64::from_be_bytes(self.be()?) as i128,
            Marker::I8 => i8::from_be_bytes(self.be()?) as i128,
            Marker::I16 => i16::from_be_bytes(self.be()?) as i128,
            Marker::I32 => i32::from_be_bytes(self.be()?) as i128,
            Marker::I64 => i64::from_be_bytes(self.be()?) as i128,
            _ => {
                return Err(DecodeError::WrongType {
                    field,
                    expected: "integer",
                });
            }
        })
    }

    /// A non-negative integer in any encoding.
    pub(crate) fn uint(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        u64::try_from(self.integer(field)?).map_err(|_| DecodeError::IntegerOutOfRange { field })
    }

    /// A non-negative integer that must fit `T`.
    pub(crate) fn uint_as<T: TryFrom<u64>>(&mut self, field: &'static str) -> Result<T, DecodeError> {
        T::try_from(self.uint(field)?).map_err(|_| DecodeError::IntegerOutOfRange { field })
    }

    /// A signed integer that fits in i64.
    pub(crate) fn int(&mut self, field: &'static str) -> Result<i64, DecodeError> {
        i64::try_from(self.integer(field)?).map_err(|_| DecodeError::IntegerOutOfRange { field })
    }

    /// A bool; as msgpack-c converts, only true/false are accepted.
    pub(crate) fn bool(&mut self, field: &'static str) -> Result<bool, DecodeError> {
        match self.marker()? {
            Marker::True => Ok(true),
            Marker::False => Ok(false),
            _ => Err(DecodeError::WrongType {
                field,
                expected: "bool",
            }),
        }
    }

    /// A map key: `Some(bytes)` for a str key, `None` (with the key skipped) for any other type.
    pub(crate) fn key(&mut self) -> Result<Option<&'a [u8]>, DecodeError> {
        // Fast path: keys are short fixstrs (`0xa0..=0xbf`, length in the low five bits).
        if let Some((&b, tail)) = self.buf.split_first()
            && b & 0xe0 == 0xa0
        {
            let n = (b & 0x1f) as usize;
            if n > tail.len() {
                return Err(DecodeError::LengthTooLarge {
                    field: "key",
                    len: n as u64,
                    remaining: tail.len(),
                });
            }
            let (k, rest) = tail.split_at(n);
            self.buf = rest;
            return Ok(Some(k));
        }
        let m = self.peek()?;
        match m {
            Marker::FixStr(_) | Marker::Str8 | Marker::Str16 | Marker::Str32 => {
                Ok(Some(self.str_bytes("key")?))
            }
            _ => {
                self.skip()?;
                Ok(None)
            }
        }
    }

    /// Skips one complete value of any type, nested at most [`MAX_DEPTH`] deep.
    pub(crate) fn skip(&mut self) -> Result<(), DecodeError> {
        // Fast path for the common scalars (positive fixint, fixstr, bin8/str8, nil, booleans),
        // before the stack below is set up.
        if let Some((&b, tail)) = self.buf.split_first() {
            let n = match b {
                0x00..=0x7f | 0xc0 | 0xc2 | 0xc3 | 0xe0..=0xff => Some(0),
                0xa0..=0xbf => Some((b & 0x1f) as usize),
                _ => None,
            };
            if let Some(n) = n {
                if n > tail.len() {
                    return Err(DecodeError::Truncated);
                }
                self.buf = tail.get(n..).unwrap_or_default();
                return Ok(());
            }
        }
        // Each stack slot counts the items still to skip at that nesting level.
        let mut stack = [0usize; MAX_DEPTH];
        let mut depth = 0usize;
        let mut pending = 1usize;
        loop {
            while pending == 0 {
                if depth == 0 {
                    return Ok(());
                }
                depth -= 1;
                pending = stack.get(depth).copied().unwrap_or(0);
            }
            pending -= 1;
            let m = self.marker()?;
            let children = match m {
                Marker::FixPos(_)
                | Marker::FixNeg(_)
                | Marker::Null
                | Marker::True
                | Marker::False
                | Marker::Reserved => 0,
                Marker::U8 | Marker::I8 => self.take(1).map(|_| 0)?,
                Marker::U16 | Marker::I16 => self.take(2).map(|_| 0)?,
                Marker::U32 | Marker::I32 | Marker::F32 => self.take(4).map(|_| 0)?,
                Marker::U64 | Marker::I64 | Marker::F64 => self.take(8).map(|_| 0)?,
                Marker::FixStr(n) => self.take(n as usize).map(|_| 0)?,
                Marker::Str8 | Marker::Bin8 => {
                    let n = self.len_u8()?;
                    self.sized("skipped value", n).map(|_| 0)?
                }
                Marker::Str16 | Marker::Bin16 => {
                    let n = self.len_u16()?;
                    self.sized("skipped value", n).map(|_| 0)?
                }
                Marker::Str32 | Marker::Bin32 => {
                    let n = self.len_u32()?;
                    self.sized("skipped value", n).map(|_| 0)?
                }
                Marker::FixExt1 => self.take(2).map(|_| 0)?,
                Marker::FixExt2 => self.take(3).map(|_| 0)?,
                Marker::FixExt4 => self.take(5).map(|_| 0)?,
                Marker::FixExt8 => self.take(9).map(|_| 0)?,
                Marker::FixExt16 => self.take(17).map(|_| 0)?,
                Marker::Ext8 => {
                    let n = self.len_u8()?;
                    self.sized("skipped value", n.saturating_add(1)).map(|_| 0)?
                }
                Marker::Ext16 => {
                    let n = self.len_u16()?;
                    self.sized("skipped value", n.saturating_add(1)).map(|_| 0)?
                }
                Marker::Ext32 => {
                    let n = self.len_u32()?;
                    self.sized("skipped value", n.saturating_add(1)).map(|_| 0)?
                }
                Marker::FixArray(n) => n as usize,
                Marker::Array16 => self.len_u16()?,
                Marker::Array32 => self.len_u32()?,
                Marker::FixMap(n) => 2 * n as usize,
                Marker::Map16 => 2 * self.len_u16()?,
                Marker::Map32 => 2 * self.len_u32()?,
            };
            if children > 0 {
                self.check_count("skipped value", children, 1)?;
                let slot = stack.get_mut(depth).ok_or(DecodeError::TooDeep)?;
                *slot = pending;
                depth += 1;
                pending = children;
            }
        }
    }
}

/// Tracks which known keys of one map have been seen, so that the first occurrence of a repeated
/// key wins, as OpenDHT's `findMapValue` does. Only known keys are tracked (a bitmask), so a
/// hostile map of many distinct unknown keys costs nothing extra.
#[derive(Default)]
pub(crate) struct Seen(u64);

impl Seen {
    /// Passes `key` through unless it is a repeat of one of `known` (at most 64), in which case
    /// the caller's fallback arm skips its value.
    #[inline]
    pub(crate) fn first<'a>(&mut self, key: Option<&'a [u8]>, known: &[&[u8]]) -> Option<&'a [u8]> {
        let k = key?;
        // Keys are a few bytes: compared in place, not through a call to `memcmp` each.
        let same = |x: &[u8]| x.len() == k.len() && x.iter().zip(k).all(|(a, b)| a == b);
        match known.iter().position(|x| same(x)) {
            Some(i) if i < 64 => {
                let bit = 1u64 << i;
                if self.0 & bit != 0 {
                    return None;
                }
                self.0 |= bit;
                Some(k)
            }
            _ => Some(k),
        }
    }
}

impl Seen {
    /// `true` the first time key number `i` (< 64) is seen; `false` on a repeat, whose value the
    /// caller skips.
    #[inline]
    pub(crate) fn first_index(&mut self, i: u32) -> bool {
        let bit = 1u64 << (i & 63);
        let first = self.0 & bit == 0;
        self.0 |= bit;
        first
    }
}

/// Bytes read by [`Reader::blob`]: borrowed from the datagram unless they had to be assembled.
#[derive(Debug)]
pub(crate) enum Blob<'a> {
    Borrowed(&'a [u8]),
    Owned(Vec<u8>),
}

impl Blob<'_> {
    pub(crate) fn as_slice(&self) -> &[u8] {
        match self {
            Blob::Borrowed(b) => b,
            Blob::Owned(v) => v,
        }
    }

    pub(crate) fn into_vec(self) -> Vec<u8> {
        match self {
            Blob::Borrowed(b) => b.to_vec(),
            Blob::Owned(v) => v,
        }
    }
}

/// Writer helpers over `Vec<u8>`: writing to a vector cannot fail, so the `rmp` results are
/// discarded in one place.
pub(crate) mod write {
    use crate::prelude::*;
    use rmp::encode;

    pub(crate) fn map(out: &mut Vec<u8>, n: u32) {
        let _ = encode::write_map_len(out, n);
    }
    pub(crate) fn array(out: &mut Vec<u8>, n: u32) {
        let _ = encode::write_array_len(out, n);
    }
    pub(crate) fn str(out: &mut Vec<u8>, s: &str) {
        let _ = encode::write_str(out, s);
    }
    pub(crate) fn bin(out: &mut Vec<u8>, b: &[u8]) {
        let _ = encode::write_bin(out, b);
    }
    /// The header of a `bin` of `len` bytes; the caller writes exactly `len` bytes after it.
    pub(crate) fn bin_len(out: &mut Vec<u8>, len: u32) {
        let _ = encode::write_bin_len(out, len);
    }
    pub(crate) fn uint(out: &mut Vec<u8>, v: u64) {
        let _ = encode::write_uint(out, v);
    }
    /// A signed integer in msgpack-c's form: non-negative values use the unsigned encodings.
    pub(crate) fn int(out: &mut Vec<u8>, v: i64) {
        if v >= 0 {
            uint(out, v as u64);
        } else {
            let _ = encode::write_sint(out, v);
        }
    }
    pub(crate) fn bool(out: &mut Vec<u8>, v: bool) {
        let _ = encode::write_bool(out, v);
    }
    /// A key/value pair with a str key: the common case in every map we write.
    pub(crate) fn key(out: &mut Vec<u8>, k: &str) {
        str(out, k);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn huge_declared_lengths_are_rejected_without_allocating() {
        // array32 declaring 2^32-1 elements, then nothing.
        let mut r = Reader::new(&[0xdd, 0xff, 0xff, 0xff, 0xff]);
        assert!(matches!(
            r.array_len("x"),
            Err(DecodeError::LengthTooLarge { .. })
        ));
        let mut r = Reader::new(&[0xdf, 0xff, 0xff, 0xff, 0xff, 0x00]);
        assert!(matches!(r.map_len("x"), Err(DecodeError::LengthTooLarge { .. })));
        let mut r = Reader::new(&[0xc6, 0xff, 0xff, 0xff, 0xff, 0x00]);
        assert!(matches!(r.bin("x"), Err(DecodeError::LengthTooLarge { .. })));
        let mut r = Reader::new(&[0xdd, 0xff, 0xff, 0xff, 0xff]);
        assert!(r.skip().is_err());
    }

    #[test]
    fn deep_nesting_is_rejected() {
        let deep = vec![0x91u8; 10_000];
        let mut r = Reader::new(&deep);
        assert_eq!(r.skip(), Err(DecodeError::TooDeep));
        let mut ok = vec![0x91u8; MAX_DEPTH];
        ok.push(0xc0);
        let mut r = Reader::new(&ok);
        assert_eq!(r.skip(), Ok(()));
        assert_eq!(r.remaining(), 0);
    }

    #[test]
    fn skip_walks_nested_maps() {
        // {"a": [1, {"b": "xy"}], "c": 0xcc}
        let data = [
            0x82, 0xa1, b'a', 0x92, 0x01, 0x81, 0xa1, b'b', 0xa2, b'x', b'y', 0xa1, b'c', 0xcc, 0xcc, 0x05,
        ];
        let mut r = Reader::new(&data);
        r.skip().unwrap();
        assert_eq!(r.remaining(), 1);
    }

    #[test]
    fn integers_in_every_width() {
        let mut out = Vec::new();
        for v in [0u64, 127, 128, 255, 256, 65535, 65536, u32::MAX as u64, u64::MAX] {
            out.clear();
            write::uint(&mut out, v);
            assert_eq!(Reader::new(&out).uint("x").unwrap(), v);
        }
        for v in [-1i64, -32, -33, -200, i64::MIN, 5] {
            out.clear();
            write::int(&mut out, v);
            assert_eq!(Reader::new(&out).int("x").unwrap(), v);
        }
        assert!(Reader::new(&[0xff]).uint("x").is_err());
    }
}
