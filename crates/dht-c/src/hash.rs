//! `dht_infohash` (20 bytes) and `dht_pkid` (32 bytes): plain structs, passed by value or
//! through caller-owned storage.

use std::cell::Cell;
use std::ffi::c_char;

use dht_proto::InfoHash;
use rand_core::{OsRng, RngCore};

use crate::{HASH_LEN, bytes, c_str};

/// OpenDHT's `InfoHash`: a 160-bit key or node id.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct dht_infohash {
    /// The bytes.
    pub d: [u8; HASH_LEN],
}

/// OpenDHT's `PkId`: the SHA-256 "long id" of a public key.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct dht_pkid {
    /// The bytes.
    pub d: [u8; 32],
}

impl From<InfoHash> for dht_infohash {
    fn from(h: InfoHash) -> Self {
        dht_infohash { d: *h.as_bytes() }
    }
}

impl From<dht_infohash> for InfoHash {
    fn from(h: dht_infohash) -> Self {
        InfoHash::from_slice(&h.d).unwrap_or(InfoHash::ZERO)
    }
}

/// Reads `*h` (NULL gives `None`).
pub(crate) fn read_hash(h: *const dht_infohash) -> Option<InfoHash> {
    if h.is_null() {
        return None;
    }
    // SAFETY: non-NULL; the header requires it to point to a dht_infohash (any bytes are valid,
    // alignment 1).
    Some(unsafe { h.read() }.into())
}

fn write_hash(h: *mut dht_infohash, v: InfoHash) {
    if !h.is_null() {
        // SAFETY: non-NULL; the header requires it to point to writable dht_infohash storage.
        unsafe { h.write(v.into()) };
    }
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// Parses the first 40 chars of `s`: zero if shorter or not hex.
fn parse40(s: &[u8]) -> InfoHash {
    let mut out = [0u8; HASH_LEN];
    let Some(s) = s.get(..2 * HASH_LEN) else {
        return InfoHash::ZERO;
    };
    for (o, pair) in out.iter_mut().zip(s.chunks_exact(2)) {
        match (
            pair.first().copied().and_then(hex_digit),
            pair.get(1).copied().and_then(hex_digit),
        ) {
            (Some(a), Some(b)) => *o = a << 4 | b,
            _ => return InfoHash::ZERO,
        }
    }
    InfoHash::from_slice(&out).unwrap_or(InfoHash::ZERO)
}

/// Sets `*h` to zero. NULL: nothing.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dht_infohash_zero(h: *mut dht_infohash) {
    ffi!((), { write_hash(h, InfoHash::ZERO) })
}

/// Sets `*h` to 20 random bytes (OS randomness). NULL: nothing.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dht_infohash_random(h: *mut dht_infohash) {
    ffi!((), {
        let mut d = [0u8; HASH_LEN];
        OsRng.fill_bytes(&mut d);
        write_hash(h, InfoHash::from_slice(&d).unwrap_or(InfoHash::ZERO))
    })
}

/// Parses 40 hex chars of `dat`, stopping at a NUL (unlike OpenDHT, which reads 40 chars
/// regardless): fewer than 40, or a non-hex char, gives zero. NULL `dat` gives zero.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dht_infohash_from_hex(h: *mut dht_infohash, dat: *const c_char) {
    ffi!((), {
        let mut buf = Vec::with_capacity(2 * HASH_LEN);
        if !dat.is_null() {
            for i in 0..2 * HASH_LEN {
                // SAFETY: `dat` is a NUL-terminated string and no byte before `i` was NUL, so
                // byte `i` is within it.
                let c = unsafe { dat.add(i).read() } as u8;
                if c == 0 {
                    break;
                }
                buf.push(c);
            }
        }
        write_hash(h, parse40(&buf))
    })
}

/// Parses the first 40 chars of the NUL-terminated `dat`: fewer than 40, or a non-hex char
/// among them, gives zero. NULL `dat` gives zero.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dht_infohash_from_hex_null(h: *mut dht_infohash, dat: *const c_char) {
    ffi!((), {
        // SAFETY: NULL or a NUL-terminated string (header contract).
        let s = unsafe { c_str(dat) }.unwrap_or_default();
        write_hash(h, parse40(s.as_bytes()))
    })
}

/// SHA-1 of `dat_size` bytes at `dat`. NULL `dat` with a non-zero size gives zero.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dht_infohash_get(h: *mut dht_infohash, dat: *const u8, dat_size: usize) {
    ffi!((), {
        // SAFETY: NULL or `dat_size` readable bytes (header contract).
        let v = unsafe { bytes(dat, dat_size) }.map_or(InfoHash::ZERO, InfoHash::get);
        write_hash(h, v)
    })
}

/// SHA-1 of the NUL-terminated `str` (without the NUL). NULL `str` gives zero.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dht_infohash_get_from_string(h: *mut dht_infohash, str: *const c_char) {
    ffi!((), {
        if str.is_null() {
            return write_hash(h, InfoHash::ZERO);
        }
        // SAFETY: non-NULL and NUL-terminated (header contract).
        let s = unsafe { std::ffi::CStr::from_ptr(str) };
        write_hash(h, InfoHash::get(s.to_bytes()))
    })
}

thread_local! {
    static HASH_TEXT: Cell<[u8; 2 * HASH_LEN + 1]> = const { Cell::new([0; 2 * HASH_LEN + 1]) };
    static PKID_TEXT: Cell<[u8; 65]> = const { Cell::new([0; 65]) };
}

fn hex_into(src: &[u8], dst: &mut [u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for (pair, b) in dst.chunks_exact_mut(2).zip(src) {
        if let [hi, lo] = pair {
            *hi = HEX.get(usize::from(b >> 4)).copied().unwrap_or(b'0');
            *lo = HEX.get(usize::from(b & 15)).copied().unwrap_or(b'0');
        }
    }
}

/// 40 lowercase hex chars in a thread-local buffer that the next call on this thread reuses
/// (as OpenDHT). NULL prints as the zero hash.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dht_infohash_print(h: *const dht_infohash) -> *const c_char {
    ffi!(std::ptr::null(), {
        let v = read_hash(h).unwrap_or(InfoHash::ZERO);
        HASH_TEXT.with(|cell| {
            let mut buf = [0u8; 2 * HASH_LEN + 1];
            hex_into(v.as_bytes(), &mut buf);
            cell.set(buf);
            cell.as_ptr().cast::<c_char>().cast_const()
        })
    })
}

/// Whether every byte is zero (NULL: true).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dht_infohash_is_zero(h: *const dht_infohash) -> bool {
    ffi!(true, { read_hash(h).is_none_or(|v| v.is_zero()) })
}

/// 64 lowercase hex chars in a thread-local buffer (separate from the InfoHash one). NULL prints
/// as zero.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dht_pkid_print(h: *const dht_pkid) -> *const c_char {
    ffi!(std::ptr::null(), {
        let v = if h.is_null() {
            dht_pkid::default()
        } else {
            // SAFETY: non-NULL, points to a dht_pkid (header contract; alignment 1).
            unsafe { h.read() }
        };
        PKID_TEXT.with(|cell| {
            let mut buf = [0u8; 65];
            hex_into(&v.d, &mut buf);
            cell.set(buf);
            cell.as_ptr().cast::<c_char>().cast_const()
        })
    })
}
