//! Keys, certificates and identities: OpenDHT's RSA/X.509 API names and signatures with ed25519 /
//! x25519 behind them (`opendht-bindings.md` §2.11). Formats:
//! - public keys: Ed25519 SubjectPublicKeyInfo (RFC 8410), DER, or PEM `PUBLIC KEY`;
//! - private keys: unencrypted PKCS#8 (RFC 8410), DER, or PEM `PRIVATE KEY`; a password (an
//!   encrypted key) is refused, as we have no PBES2;
//! - certificates: any DER or PEM `CERTIFICATE` that holds an Ed25519 SubjectPublicKeyInfo (an
//!   X.509 certificate with an Ed25519 key); the C API only reads their key;
//! - encryption: our sealed box (x25519 + ChaCha20-Poly1305), not interoperable with OpenDHT.

use std::collections::BTreeMap;
use std::ffi::c_char;
use std::sync::Mutex;

use dht_proto::InfoHash;
use dht_proto::crypto::{Identity, PublicKey};
use rand_core::OsRng;

use crate::hash::{dht_infohash, dht_pkid};
use crate::registry::{self, Kind, Tracked};
use crate::value::dht_blob;
use crate::{bytes, c_str};

/// GnuTLS's `GNUTLS_E_SHORT_MEMORY_BUFFER`: the buffer is too small; `*out_size` holds the need.
pub const SHORT_MEMORY_BUFFER: i32 = -51;
/// GnuTLS's `GNUTLS_E_INVALID_REQUEST`: a NULL or freed handle.
pub const INVALID_REQUEST: i32 = -50;

const SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];
const PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

/// A public key (ed25519).
#[derive(Debug)]
pub struct dht_publickey(pub(crate) PublicKey);
impl Tracked for dht_publickey {
    const KIND: Kind = Kind::PublicKey;
}

/// A private key (an ed25519 seed).
#[derive(Debug)]
pub struct dht_privatekey(pub(crate) Identity);
impl Tracked for dht_privatekey {
    const KIND: Kind = Kind::PrivateKey;
}

/// A certificate: its ed25519 key and, for ours, the common name.
#[derive(Debug)]
pub struct dht_certificate {
    pub(crate) key: PublicKey,
    #[allow(dead_code)]
    pub(crate) name: String,
}
impl Tracked for dht_certificate {
    const KIND: Kind = Kind::Certificate;
}

/// A private key and a certificate; either may be NULL. Owned by the caller
/// (`dht_identity_delete`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct dht_identity {
    /// The key.
    pub privatekey: *mut dht_privatekey,
    /// The certificate.
    pub certificate: *mut dht_certificate,
}

/// Long ids of the keys this process has seen, for `dht_runner_put_encrypted` (which names its
/// recipient by long id only). Bounded: the oldest are forgotten first.
static KNOWN: Mutex<BTreeMap<[u8; 32], (u64, PublicKey)>> = Mutex::new(BTreeMap::new());
const MAX_KNOWN: usize = 4096;

pub(crate) fn long_id(k: &PublicKey) -> [u8; 32] {
    dht_proto::crypto::sha256(&k.to_spki_der())
}

fn remember(k: &PublicKey) {
    static SERIAL: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = SERIAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut m = KNOWN.lock().unwrap_or_else(|e| e.into_inner());
    m.insert(long_id(k), (n, *k));
    if m.len() > MAX_KNOWN
        && let Some(oldest) = m.iter().min_by_key(|(_, (n, _))| *n).map(|(id, _)| *id)
    {
        m.remove(&oldest);
    }
}

/// The key with this long id, if this process has seen it.
pub(crate) fn known_key(id: &[u8; 32]) -> Option<PublicKey> {
    KNOWN
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(id)
        .map(|(_, k)| *k)
}

pub(crate) fn new_publickey(k: PublicKey) -> *mut dht_publickey {
    remember(&k);
    registry::into_raw(dht_publickey(k))
}

fn new_privatekey(id: Identity) -> *mut dht_privatekey {
    remember(&id.public());
    registry::into_raw(dht_privatekey(id))
}

fn new_certificate(key: PublicKey, name: String) -> *mut dht_certificate {
    remember(&key);
    registry::into_raw(dht_certificate { key, name })
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn b64_encode(data: &[u8]) -> String {
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk.first().copied().unwrap_or(0),
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                let idx = (n >> (18 - 6 * i)) & 63;
                out.push(char::from(B64.get(idx as usize).copied().unwrap_or(b'A')));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn b64_decode(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        if c.is_ascii_whitespace() {
            continue;
        }
        if c == b'=' {
            break;
        }
        let v = B64.iter().position(|&x| x == c)? as u32;
        acc = acc << 6 | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

/// The DER inside a PEM block labelled `label`, or `data` itself when it is not PEM.
fn der_of(data: &[u8], label: &str) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(data).ok();
    let begin = format!("-----BEGIN {label}-----");
    if let Some(t) = text
        && let Some(start) = t.find(&begin)
    {
        let rest = t.get(start + begin.len()..)?;
        let end = rest.find("-----END ")?;
        return b64_decode(rest.get(..end)?);
    }
    if data.first() == Some(&0x30) {
        return Some(data.to_vec());
    }
    None
}

fn pem(label: &str, der: &[u8]) -> String {
    let b = b64_encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Writes `data` to `out` (capacity `*out_size`), GnuTLS style: 0, or −51 with the needed size.
/// A NUL follows when there is room (not counted in `*out_size`).
fn export_to(data: &[u8], out: *mut c_char, out_size: *mut usize) -> i32 {
    if out_size.is_null() {
        return INVALID_REQUEST;
    }
    // SAFETY: non-NULL; the header requires a readable and writable size_t.
    let cap = unsafe { out_size.read() };
    // SAFETY: as above.
    unsafe { out_size.write(data.len()) };
    if out.is_null() || cap < data.len() {
        return SHORT_MEMORY_BUFFER;
    }
    // SAFETY: `out` has `cap >= data.len()` writable bytes (header contract); the regions do not
    // overlap, as `data` is ours.
    unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), out.cast::<u8>(), data.len()) };
    if cap > data.len() {
        // SAFETY: index `data.len()` < `cap`, within the caller's buffer.
        unsafe { out.add(data.len()).write(0) };
    }
    0
}

/// Imports an Ed25519 public key: SubjectPublicKeyInfo in PEM (`PUBLIC KEY`) or DER. NULL on
/// error (RSA keys included).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dht_publickey_import(dat: *const u8, dat_size: usize) -> *mut dht_publickey {
    ffi!(std::ptr::null_mut(), {
        // SAFETY: NULL or `dat_size` readable bytes (header contract).
        let Some(data) = (unsafe { bytes(dat, dat_size) }) else {
            return std::ptr::null_mut();
        };
        der_of(data, "PUBLIC KEY")
            .and_then(|d| PublicKey::from_spki_der(&d).ok())
            .map_or(std::ptr::null_mut(), new_publickey)
    })
}

/// Frees a public key (NULL or freed: nothing).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dht_publickey_delete(pk: *mut dht_publickey) {
    ffi!((), {
        drop(registry::take(pk));
    })
}

/// Writes the key's SubjectPublicKeyInfo DER (44 bytes) to `out`; `*out_size` is the capacity
/// in and the length out. 0; −51 when `out` is NULL or too small (`*out_size` = 44); −50 for
/// a NULL or freed key or a NULL `out_size`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dht_publickey_export(
    pk: *const dht_publickey,
    out: *mut c_char,
    out_size: *mut usize,
) -> i32 {
    ffi!(INVALID_REQUEST, {
        registry::with(pk, |k| export_to(&k.0.to_spki_der(), out, out_size)).unwrap_or(INVALID_REQUEST)
    })
}

/// SHA-1 of the SPKI DER (the short id); zero for NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dht_publickey_get_id(pk: *const dht_publickey) -> dht_infohash {
    ffi!(dht_infohash::default(), {
        registry::with(pk, |k| k.0.id().into()).unwrap_or_default()
    })
}

/// SHA-256 of the SPKI DER (the long id); zero for NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dht_publickey_get_long_id(pk: *const dht_publickey) -> dht_pkid {
    ffi!(dht_pkid::default(), {
        registry::with(pk, |k| dht_pkid { d: long_id(&k.0) }).unwrap_or_default()
    })
}

/// Whether `signature` (64 bytes, Ed25519) signs `data` with this key.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dht_publickey_check_signature(
    pk: *const dht_publickey,
    data: *const c_char,
    data_size: usize,
    signature: *const c_char,
    signature_size: usize,
) -> bool {
    ffi!(false, {
        // SAFETY: NULL or readable for the sizes given (header contract).
        let (Some(d), Some(s)) = (unsafe { bytes(data.cast(), data_size) }, unsafe {
            bytes(signature.cast(), signature_size)
        }) else {
            return false;
        };
        registry::with(pk, |k| k.0.verify(d, s).is_ok()).unwrap_or(false)
    })
}

/// Encrypts `data` to this key (x25519 + ChaCha20-Poly1305 sealed box: 49 bytes longer than
/// `data`). NULL on error.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dht_publickey_encrypt(
    pk: *const dht_publickey,
    data: *const c_char,
    data_size: usize,
) -> *mut dht_blob {
    ffi!(std::ptr::null_mut(), {
        // SAFETY: NULL or `data_size` readable bytes (header contract).
        let Some(d) = (unsafe { bytes(data.cast(), data_size) }) else {
            return std::ptr::null_mut();
        };
        registry::with(pk, |k| dht_proto::crypto::seal(&k.0, d, &[], &mut OsRng))
            .map_or(std::ptr::null_mut(), |b| registry::into_raw(dht_blob(b)))
    })
}

/// A new Ed25519 private key; `key_length_bits` (an RSA size upstream) is ignored.
#[unsafe(no_mangle)]
pub extern "C" fn dht_privatekey_generate(key_length_bits: u32) -> *mut dht_privatekey {
    let _ = key_length_bits;
    ffi!(std::ptr::null_mut(), {
        new_privatekey(Identity::generate(&mut OsRng))
    })
}

fn seed_of_pkcs8(der: &[u8]) -> Option<[u8; 32]> {
    // Version 0 (RFC 8410 §7) or version 1 with the public key after the seed.
    let head = der.get(..16)?;
    let len_ok = usize::from(*der.get(1)?) + 2 == der.len();
    let v0 = head == PKCS8_PREFIX;
    let v1 = head.get(2..5) == Some(&[0x02, 0x01, 0x01]) && head.get(5..) == PKCS8_PREFIX.get(5..);
    if !(len_ok && (v0 || v1)) {
        return None;
    }
    der.get(16..48)?.try_into().ok()
}

/// Imports an unencrypted Ed25519 PKCS#8 key (PEM `PRIVATE KEY` or DER). A non-empty
/// `password` (an encrypted key) gives NULL, as does any other error.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dht_privatekey_import(
    dat: *const u8,
    dat_size: usize,
    password: *const c_char,
) -> *mut dht_privatekey {
    ffi!(std::ptr::null_mut(), {
        // SAFETY: NULL or NUL-terminated (header contract).
        if !unsafe { c_str(password) }.unwrap_or_default().is_empty() {
            return std::ptr::null_mut();
        }
        // SAFETY: NULL or `dat_size` readable bytes (header contract).
        let Some(data) = (unsafe { bytes(dat, dat_size) }) else {
            return std::ptr::null_mut();
        };
        der_of(data, "PRIVATE KEY")
            .and_then(|d| seed_of_pkcs8(&d))
            .map_or(std::ptr::null_mut(), |s| new_privatekey(Identity::from_seed(&s)))
    })
}

/// Writes the key as unencrypted PKCS#8 PEM. −1 when `out` or `out_size` is NULL, `*out_size`
/// is 0, the key is NULL or freed, or `password` is non-empty (no encrypted export); −51 with the
/// needed size when too small; else 0. NULL `password` means "".
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dht_privatekey_export(
    key: *const dht_privatekey,
    out: *mut c_char,
    out_size: *mut usize,
    password: *const c_char,
) -> i32 {
    ffi!(-1, {
        if out.is_null() || out_size.is_null() {
            return -1;
        }
        // SAFETY: non-NULL readable size_t (header contract).
        if unsafe { out_size.read() } == 0 {
            return -1;
        }
        // SAFETY: NULL or NUL-terminated (header contract).
        if !unsafe { c_str(password) }.unwrap_or_default().is_empty() {
            return -1;
        }
        registry::with(key, |k| {
            let mut der = PKCS8_PREFIX.to_vec();
            der.extend_from_slice(&k.0.seed());
            export_to(pem("PRIVATE KEY", &der).as_bytes(), out, out_size)
        })
        .unwrap_or(-1)
    })
}

/// A new handle on the key's public half. NULL for NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dht_privatekey_get_publickey(key: *const dht_privatekey) -> *mut dht_publickey {
    ffi!(std::ptr::null_mut(), {
        registry::with(key, |k| new_publickey(k.0.public())).unwrap_or(std::ptr::null_mut())
    })
}

/// Opens what [`dht_publickey_encrypt`] sealed to this key. NULL on error.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dht_privatekey_decrypt(
    key: *const dht_privatekey,
    data: *const c_char,
    data_size: usize,
) -> *mut dht_blob {
    ffi!(std::ptr::null_mut(), {
        // SAFETY: NULL or `data_size` readable bytes (header contract).
        let Some(d) = (unsafe { bytes(data.cast(), data_size) }) else {
            return std::ptr::null_mut();
        };
        registry::with(key, |k| dht_proto::crypto::open(&k.0, d, &[]).ok())
            .flatten()
            .map_or(std::ptr::null_mut(), |b| registry::into_raw(dht_blob(b)))
    })
}

/// Frees a private key (NULL or freed: nothing).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dht_privatekey_delete(key: *mut dht_privatekey) {
    ffi!((), {
        drop(registry::take(key));
    })
}

/// Imports a certificate (PEM `CERTIFICATE` or DER) that holds an Ed25519 key: its first Ed25519
/// SubjectPublicKeyInfo is its key. NULL on error (RSA certificates included).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dht_certificate_import(dat: *const u8, dat_size: usize) -> *mut dht_certificate {
    ffi!(std::ptr::null_mut(), {
        // SAFETY: NULL or `dat_size` readable bytes (header contract).
        let Some(data) = (unsafe { bytes(dat, dat_size) }) else {
            return std::ptr::null_mut();
        };
        let Some(der) = der_of(data, "CERTIFICATE") else {
            return std::ptr::null_mut();
        };
        der.windows(SPKI_PREFIX.len() + 32)
            .find(|w| w.starts_with(&SPKI_PREFIX))
            .and_then(|w| PublicKey::from_spki_der(w).ok())
            .map_or(std::ptr::null_mut(), |k| new_certificate(k, String::new()))
    })
}

/// The short id of the certificate's key; zero for NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dht_certificate_get_id(c: *const dht_certificate) -> dht_infohash {
    ffi!(dht_infohash::default(), {
        registry::with(c, |c| c.key.id().into()).unwrap_or_default()
    })
}

/// The long id of the certificate's key; zero for NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dht_certificate_get_long_id(c: *const dht_certificate) -> dht_pkid {
    ffi!(dht_pkid::default(), {
        registry::with(c, |c| dht_pkid { d: long_id(&c.key) }).unwrap_or_default()
    })
}

/// A new handle on the certificate's key. NULL for NULL.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dht_certificate_get_publickey(c: *const dht_certificate) -> *mut dht_publickey {
    ffi!(std::ptr::null_mut(), {
        registry::with(c, |c| new_publickey(c.key)).unwrap_or(std::ptr::null_mut())
    })
}

/// Frees a certificate (NULL or freed: nothing).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dht_certificate_delete(c: *mut dht_certificate) {
    ffi!((), {
        drop(registry::take(c));
    })
}

/// A new Ed25519 key and a certificate for it named `common_name` (NULL: ""). `ca` is accepted
/// and not used: our certificates are not exported, so who signed them is not observable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dht_identity_generate(
    common_name: *const c_char,
    ca: *const dht_identity,
) -> dht_identity {
    let _ = ca;
    let none = dht_identity {
        privatekey: std::ptr::null_mut(),
        certificate: std::ptr::null_mut(),
    };
    ffi!(none, {
        // SAFETY: NULL or NUL-terminated (header contract).
        let name = unsafe { c_str(common_name) }.unwrap_or_default();
        let id = Identity::generate(&mut OsRng);
        let key = id.public();
        dht_identity {
            privatekey: new_privatekey(id),
            certificate: new_certificate(key, name),
        }
    })
}

/// Frees both handles and sets the fields to NULL (the struct itself is the caller's).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn dht_identity_delete(id: *mut dht_identity) {
    ffi!((), {
        if id.is_null() {
            return;
        }
        // SAFETY: non-NULL, points to a dht_identity (header contract).
        let v = unsafe { id.read() };
        drop(registry::take(v.privatekey));
        drop(registry::take(v.certificate));
        // SAFETY: as above, writable.
        unsafe {
            id.write(dht_identity {
                privatekey: std::ptr::null_mut(),
                certificate: std::ptr::null_mut(),
            })
        };
    })
}

/// The node identity a config names: the private key, if live.
pub(crate) fn identity_of(id: &dht_identity) -> Option<Identity> {
    registry::with(id.privatekey.cast_const(), |k| k.0.clone())
}

/// The short id of an identity (zero without one).
pub(crate) fn short_id(id: Option<&Identity>) -> InfoHash {
    id.map_or(InfoHash::ZERO, |i| i.public().id())
}
