//! `InfoHash` (20 bytes, SHA-1) and `PkId` (32 bytes, SHA-256): the ids of keys, nodes and
//! public keys, as OpenDHT's Python `InfoHash` and `PkId`.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use pyo3::basic::CompareOp;
use pyo3::exceptions::{PyIndexError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};
use rand_core::{OsRng, RngCore};

use crate::bytes_arg;

/// Parses `2 * N` hex digits (either case); characters past them are ignored, as upstream.
fn parse_hex<const N: usize>(s: &[u8], name: &str) -> PyResult<[u8; N]> {
    if s.len() < 2 * N {
        return Err(PyValueError::new_err(format!(
            "{name} needs {} hex characters, got {}",
            2 * N,
            s.len()
        )));
    }
    let mut out = [0u8; N];
    for (i, (o, pair)) in out.iter_mut().zip(s.chunks_exact(2)).enumerate() {
        let digit = |k: usize| {
            pair.get(k)
                .and_then(|c| (*c as char).to_digit(16))
                .ok_or_else(|| {
                    PyValueError::new_err(format!("{name}: non-hex character at position {}", 2 * i + k))
                })
        };
        *o = ((digit(0)? << 4) | digit(1)?) as u8;
    }
    Ok(out)
}

pub(crate) fn to_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Bytes from an even number of hex digits (either case); `None` otherwise.
pub(crate) fn from_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    s.as_bytes()
        .chunks_exact(2)
        .map(|p| {
            std::str::from_utf8(p)
                .ok()
                .and_then(|p| u8::from_str_radix(p, 16).ok())
        })
        .collect()
}

/// Text from `str`, `bytes` or `bytearray` (hex ids are accepted in either form).
fn hex_text(obj: &Bound<'_, PyAny>, name: &str) -> PyResult<Vec<u8>> {
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok(s.extract::<String>()?.into_bytes());
    }
    bytes_arg(obj, name).map_err(|_| {
        PyTypeError::new_err(format!(
            "{name} takes hex as bytes or str, not {}",
            obj.get_type().name().map(|n| n.to_string()).unwrap_or_default()
        ))
    })
}

macro_rules! hash_class {
    ($rs:ident, $py:literal, $n:expr, $idfn:ident, $idpy:literal, $doc:literal) => {
        #[doc = $doc]
        #[pyclass(module = "rdht._core", name = $py, from_py_object)]
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub(crate) struct $rs(pub(crate) [u8; $n]);

        #[pymethods]
        impl $rs {
            /// From hex (bytes or str; characters past the id are ignored). No argument or an
            /// empty string gives the zero id; bad hex raises `ValueError` (upstream silently
            /// gives zero).
            #[new]
            #[pyo3(signature = (str = None))]
            fn py_new(str: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
                let Some(obj) = str.filter(|o| !o.is_none()) else {
                    return Ok($rs([0; $n]));
                };
                let text = hex_text(obj, $py)?;
                if text.is_empty() {
                    return Ok($rs([0; $n]));
                }
                parse_hex::<$n>(&text, $py).map($rs)
            }

            /// The id of the hash of `key` (a str, hashed as UTF-8, or bytes).
            #[staticmethod]
            fn get(key: &Bound<'_, PyAny>) -> PyResult<Self> {
                let data = if let Ok(s) = key.cast::<PyString>() {
                    s.extract::<String>()?.into_bytes()
                } else {
                    bytes_arg(key, "key")?
                };
                Ok(Self::digest(&data))
            }

            /// A random id (from the OS generator).
            #[staticmethod]
            #[pyo3(name = "getRandom")]
            fn get_random() -> Self {
                let mut b = [0u8; $n];
                OsRng.fill_bytes(&mut b);
                $rs(b)
            }

            /// From the raw bytes (exactly the id's length).
            #[staticmethod]
            #[pyo3(name = "fromBytes")]
            fn from_bytes(data: &Bound<'_, PyAny>) -> PyResult<Self> {
                let b = bytes_arg(data, $py)?;
                <[u8; $n]>::try_from(b.as_slice()).map($rs).map_err(|_| {
                    PyValueError::new_err(format!("{} needs {} bytes, got {}", $py, $n, b.len()))
                })
            }

            /// The number of leading bits `a` and `b` share.
            #[staticmethod]
            #[pyo3(name = "commonBits")]
            fn common_bits(a: &Self, b: &Self) -> u32 {
                let mut n = 0;
                for (x, y) in a.0.iter().zip(b.0.iter()) {
                    let d = x ^ y;
                    if d != 0 {
                        return n + d.leading_zeros();
                    }
                    n += 8;
                }
                n
            }

            /// Bit `bit` (0 is the most significant).
            #[pyo3(name = "getBit")]
            fn get_bit(&self, bit: usize) -> PyResult<bool> {
                let byte = self
                    .0
                    .get(bit / 8)
                    .ok_or_else(|| PyIndexError::new_err("bit out of range"))?;
                Ok(byte & (0x80 >> (bit % 8)) != 0)
            }

            /// Sets bit `bit` to `b`.
            #[pyo3(name = "setBit")]
            fn set_bit(&mut self, bit: usize, b: bool) -> PyResult<()> {
                let byte = self
                    .0
                    .get_mut(bit / 8)
                    .ok_or_else(|| PyIndexError::new_err("bit out of range"))?;
                let mask = 0x80 >> (bit % 8);
                if b {
                    *byte |= mask;
                } else {
                    *byte &= !mask;
                }
                Ok(())
            }

            /// The hex form as bytes (upstream's `toString()`).
            #[pyo3(name = "toString")]
            fn hex_bytes<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
                PyBytes::new(py, to_hex(&self.0).as_bytes())
            }

            /// The hex form as str (what 2.4.12 scripts get from `getNodeId().decode()`).
            fn decode(&self) -> String {
                to_hex(&self.0)
            }

            /// The hex form as str.
            fn hex(&self) -> String {
                to_hex(&self.0)
            }

            /// The id as a fraction of the id space, in [0, 1).
            #[pyo3(name = "toFloat")]
            fn as_float(&self) -> f64 {
                self.0
                    .iter()
                    .take(8)
                    .fold(0.0, |acc, b| acc * 256.0 + f64::from(*b))
                    / 2f64.powi(64)
            }

            /// The raw bytes.
            fn __bytes__<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
                PyBytes::new(py, &self.0)
            }

            /// False for the zero id.
            fn __bool__(&self) -> bool {
                self.0 != [0; $n]
            }

            fn __str__(&self) -> String {
                to_hex(&self.0)
            }

            fn __repr__(&self) -> String {
                format!("<{} '{}'>", $py, to_hex(&self.0))
            }

            fn __hash__(&self) -> u64 {
                let mut h = DefaultHasher::new();
                self.0.hash(&mut h);
                h.finish()
            }

            fn __richcmp__(&self, other: &Bound<'_, PyAny>, op: CompareOp, py: Python<'_>) -> Py<PyAny> {
                let Ok(other) = other.extract::<$rs>() else {
                    return py.NotImplemented();
                };
                op.matches(self.cmp(&other))
                    .into_pyobject(py)
                    .map(|b| b.to_owned().into_any().unbind())
                    .unwrap_or_else(|_| py.NotImplemented())
            }

            /// This id itself (upstream's `getId()` / `getLongId()`).
            #[pyo3(name = $idpy)]
            fn $idfn(&self) -> Self {
                *self
            }

            fn __copy__(&self) -> Self {
                *self
            }

            fn __deepcopy__(&self, _memo: &Bound<'_, PyAny>) -> Self {
                *self
            }

            fn __reduce__<'py>(&self, py: Python<'py>) -> PyResult<(Bound<'py, PyAny>, (String,))> {
                Ok((py.get_type::<$rs>().into_any(), (to_hex(&self.0),)))
            }
        }
    };
}

hash_class!(
    PyInfoHash,
    "InfoHash",
    20,
    get_id,
    "getId",
    "A 160-bit id (SHA-1): a key, a node id or a short key id. `InfoHash(b'hex')`, \
     `InfoHash.get('name')`, `InfoHash.getRandom()`; compares, hashes and prints as hex."
);
hash_class!(
    PyPkId,
    "PkId",
    32,
    get_long_id,
    "getLongId",
    "A 256-bit public key id (SHA-256 of the key), upstream's long id. The same API as `InfoHash`."
);

impl PyInfoHash {
    fn digest(data: &[u8]) -> Self {
        PyInfoHash(dht_proto::InfoHash::get(data).0)
    }

    /// The core's form.
    pub(crate) fn core(&self) -> dht_proto::InfoHash {
        dht_proto::InfoHash(self.0)
    }
}

impl From<dht_proto::InfoHash> for PyInfoHash {
    fn from(h: dht_proto::InfoHash) -> Self {
        PyInfoHash(h.0)
    }
}

impl PyPkId {
    fn digest(data: &[u8]) -> Self {
        PyPkId(dht_proto::crypto::sha256(data))
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyInfoHash>()?;
    m.add_class::<PyPkId>()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_errors() {
        let h = parse_hex::<20>(b"40bd001563085fc35165329ea1ff5c5ecbdbbeefXX", "InfoHash");
        assert_eq!(
            h.map(|b| to_hex(&b)).ok().as_deref(),
            Some("40bd001563085fc35165329ea1ff5c5ecbdbbeef")
        );
        assert!(parse_hex::<20>(b"40bd", "InfoHash").is_err());
        assert!(parse_hex::<20>(b"zzbd001563085fc35165329ea1ff5c5ecbdbbeef", "InfoHash").is_err());
    }
}
