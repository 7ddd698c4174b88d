//! `Certificate`, `TrustList` and `VerifyResult` with an ed25519 meaning (upstream: X.509 with
//! RSA keys, checked by GnuTLS), and `aesEncrypt`/`aesDecrypt` (upstream: Argon2i + AES-GCM;
//! here PBKDF2-HMAC-SHA256 + ChaCha20-Poly1305).
//!
//! A certificate binds a name to an ed25519 public key and is signed by its issuer's key
//! (itself when self-signed). Its bytes:
//!
//! ```text
//! "rdht-cert" 1 | flags (bit 0: CA) | subject key (32) | issuer key (32) | name length (u16 BE)
//! | name (UTF-8) | ed25519 signature by the issuer key of everything before it (64)
//! | issuer's certificate (the same layout, recursively; absent when self-signed or unknown)
//! ```
//!
//! Its text form (`toString()`, `bytes(cert)`) frames the hex of those bytes as PEM does.

use std::sync::Mutex;

use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use dht_proto::crypto::{Identity, PublicKey};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};
use rand_core::{OsRng, RngCore};
use sha2::Sha256;

use crate::bytes_arg;
use crate::crypto::{PyIdentity, PyPrivateKey, PyPublicKey};
use crate::hash::{PyInfoHash, PyPkId, to_hex};

const MAGIC: &[u8] = b"rdht-cert\x01";
const FLAG_CA: u8 = 1;
const PEM_BEGIN: &str = "-----BEGIN RDHT ED25519 CERTIFICATE-----";
const PEM_END: &str = "-----END RDHT ED25519 CERTIFICATE-----";
/// Chains deeper than this are refused when parsing and verifying.
const MAX_DEPTH: usize = 8;

/// A parsed, signature-checked certificate.
#[derive(Clone, PartialEq, Eq, Debug)]
pub(crate) struct Cert {
    pub(crate) subject: PublicKey,
    issuer_key: PublicKey,
    name: String,
    ca: bool,
    signature: [u8; 64],
    issuer: Option<Box<Cert>>,
}

impl Cert {
    fn signed_part(subject: &PublicKey, issuer: &PublicKey, name: &str, ca: bool) -> Vec<u8> {
        let mut b = MAGIC.to_vec();
        b.push(if ca { FLAG_CA } else { 0 });
        b.extend_from_slice(&subject.to_bytes());
        b.extend_from_slice(&issuer.to_bytes());
        let n = name.as_bytes();
        b.extend_from_slice(&u16::try_from(n.len()).unwrap_or(u16::MAX).to_be_bytes());
        b.extend_from_slice(n.get(..usize::from(u16::MAX)).unwrap_or(n));
        b
    }

    fn new(subject: PublicKey, name: &str, ca: bool, signer: &Identity, issuer: Option<Cert>) -> Cert {
        let name: String = name.chars().take(1024).collect();
        let issuer_key = signer.public();
        let signature = signer.sign(&Cert::signed_part(&subject, &issuer_key, &name, ca));
        Cert {
            subject,
            issuer_key,
            name,
            ca,
            signature,
            issuer: issuer.map(Box::new),
        }
    }

    fn to_bytes(&self) -> Vec<u8> {
        let mut b = Cert::signed_part(&self.subject, &self.issuer_key, &self.name, self.ca);
        b.extend_from_slice(&self.signature);
        if let Some(i) = &self.issuer {
            b.extend_from_slice(&i.to_bytes());
        }
        b
    }

    /// Parses one certificate and its issuers; checks each signature.
    fn parse(b: &[u8], depth: usize) -> Result<Cert, String> {
        if depth > MAX_DEPTH {
            return Err("certificate chain too long".into());
        }
        let rest = b
            .strip_prefix(MAGIC)
            .ok_or("not an rdht ed25519 certificate (X.509 certificates are not supported)")?;
        let short = || "truncated certificate".to_string();
        let (&flags, rest) = rest.split_first().ok_or_else(short)?;
        let (subject, rest) = rest.split_at_checked(32).ok_or_else(short)?;
        let (issuer_key, rest) = rest.split_at_checked(32).ok_or_else(short)?;
        let (len, rest) = rest.split_first_chunk::<2>().ok_or_else(short)?;
        let len = usize::from(u16::from_be_bytes(*len));
        let (name, rest) = rest.split_at_checked(len).ok_or_else(short)?;
        let (sig, rest) = rest.split_at_checked(64).ok_or_else(short)?;
        let key = |k: &[u8]| PublicKey::from_bytes(k).map_err(|_| "bad key in certificate".to_string());
        let name = std::str::from_utf8(name).map_err(|_| "certificate name is not UTF-8".to_string())?;
        let mut signature = [0u8; 64];
        signature.copy_from_slice(sig);
        let mut cert = Cert {
            subject: key(subject)?,
            issuer_key: key(issuer_key)?,
            name: name.to_string(),
            ca: flags & FLAG_CA != 0,
            signature,
            issuer: None,
        };
        if !cert.signature_ok() {
            return Err("bad certificate signature".into());
        }
        if !rest.is_empty() {
            let issuer = Cert::parse(rest, depth + 1)?;
            if issuer.subject != cert.issuer_key {
                return Err("the issuer's certificate does not match the issuer key".into());
            }
            cert.issuer = Some(Box::new(issuer));
        }
        Ok(cert)
    }

    fn signature_ok(&self) -> bool {
        let msg = Cert::signed_part(&self.subject, &self.issuer_key, &self.name, self.ca);
        self.issuer_key.verify(&msg, &self.signature).is_ok()
    }

    fn self_signed(&self) -> bool {
        self.subject == self.issuer_key
    }

    fn pem(&self) -> String {
        let hex = to_hex(&self.to_bytes());
        let mut s = format!("{PEM_BEGIN}\n");
        for line in hex.as_bytes().chunks(64) {
            s.push_str(std::str::from_utf8(line).unwrap_or_default());
            s.push('\n');
        }
        s.push_str(PEM_END);
        s.push('\n');
        s
    }

    fn from_data(d: &[u8]) -> Result<Cert, String> {
        let text = std::str::from_utf8(d).ok().map(str::trim);
        match text.and_then(|t| t.strip_prefix(PEM_BEGIN)) {
            Some(body) => {
                let body = body
                    .trim_end()
                    .strip_suffix(PEM_END)
                    .ok_or("PEM without its END line")?;
                let hex: String = body.split_whitespace().collect();
                let bytes = crate::hash::from_hex(&hex).ok_or("the PEM body is not hex")?;
                Cert::parse(&bytes, 0)
            }
            None => Cert::parse(d, 0),
        }
    }
}

/// A certificate, with an ed25519 meaning (upstream: an X.509 certificate with an RSA key): a
/// name bound to an ed25519 public key, signed by its issuer (itself when self-signed), with the
/// issuer's certificate inside. `Certificate(data)` parses what `bytes(cert)` or `toString()`
/// gave (a PEM-style text of our own layout, or its raw bytes; X.509 is refused with
/// `ValueError`); empty without data. `revoke` keeps the revocations in this object (upstream
/// writes a signed CRL).
#[pyclass(module = "rdht._core", name = "Certificate")]
#[derive(Default)]
pub(crate) struct PyCertificate {
    pub(crate) cert: Option<Cert>,
    /// Long ids of the certificates this (CA) certificate revoked.
    revoked: Mutex<Vec<[u8; 32]>>,
}

impl PyCertificate {
    pub(crate) fn from_cert(cert: Option<Cert>) -> PyCertificate {
        PyCertificate {
            cert,
            revoked: Mutex::new(Vec::new()),
        }
    }

    fn get(&self) -> PyResult<&Cert> {
        self.cert
            .as_ref()
            .ok_or_else(|| PyValueError::new_err("the Certificate is empty"))
    }

    fn key(&self) -> PyResult<PyPublicKey> {
        Ok(PyPublicKey::from_key(self.get()?.subject))
    }

    fn is_revoked(&self, c: &Cert) -> bool {
        let id = long_id(&c.subject);
        self.revoked.lock().is_ok_and(|r| r.contains(&id))
    }
}

fn long_id(k: &PublicKey) -> [u8; 32] {
    dht_proto::crypto::sha256(&k.to_spki_der())
}

/// A certificate made for `key` by `ca` (an `Identity` with a certificate signs it; otherwise
/// it is self-signed).
pub(crate) fn certificate_for(key: &Identity, name: &str, ca: Option<&PyIdentity>, is_ca: bool) -> Cert {
    match ca.and_then(|i| Some((i.id.as_ref()?, i.cert.clone()?))) {
        Some((signer, issuer)) => Cert::new(key.public(), name, is_ca, signer, Some(issuer)),
        None => Cert::new(key.public(), name, is_ca, key, None),
    }
}

#[pymethods]
impl PyCertificate {
    #[new]
    #[pyo3(signature = (dat = None))]
    fn py_new(dat: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
        let Some(d) = dat.filter(|d| !d.is_none()) else {
            return Ok(PyCertificate::default());
        };
        let b = match d.cast::<PyString>() {
            Ok(s) => s.extract::<String>()?.into_bytes(),
            Err(_) => bytes_arg(d, "Certificate data")?,
        };
        if b.is_empty() {
            return Ok(PyCertificate::default());
        }
        Cert::from_data(&b)
            .map(|c| PyCertificate::from_cert(Some(c)))
            .map_err(PyValueError::new_err)
    }

    /// A certificate for the key `k` named `name`, signed by `i` when it is an `Identity` with a
    /// key and a certificate, otherwise self-signed. `is_ca` lets it sign others (for
    /// `TrustList`). Upstream: X.509 with RSA.
    #[staticmethod]
    #[pyo3(signature = (k, name = "dhtnode", i = None, is_ca = false))]
    fn generate(k: &PyPrivateKey, name: &str, i: Option<&PyIdentity>, is_ca: bool) -> Self {
        PyCertificate::from_cert(Some(certificate_for(&k.id, name, i, is_ca)))
    }

    /// The short id of the certificate's public key (as `PublicKey.getId`).
    #[pyo3(name = "getId")]
    fn get_id(&self) -> PyResult<PyInfoHash> {
        Ok(self.get()?.subject.id().into())
    }

    /// The long id of the certificate's public key (as `PublicKey.getLongId`).
    #[pyo3(name = "getLongId")]
    fn get_long_id(&self) -> PyResult<PyPkId> {
        Ok(PyPkId(long_id(&self.get()?.subject)))
    }

    /// The certificate's public key (an addition to upstream's API).
    #[pyo3(name = "getPublicKey")]
    fn get_public_key(&self) -> PyResult<PyPublicKey> {
        self.key()
    }

    /// The name (str, as upstream 4.x; `""` when empty).
    #[pyo3(name = "getName")]
    fn get_name(&self) -> String {
        self.cert.as_ref().map(|c| c.name.clone()).unwrap_or_default()
    }

    /// True for a CA certificate (one that may sign others); an addition to upstream's API.
    #[pyo3(name = "isCA")]
    fn is_ca(&self) -> bool {
        self.cert.as_ref().is_some_and(|c| c.ca)
    }

    /// The text form (PEM-style framing of our own layout, not X.509); `""` when empty.
    #[pyo3(name = "toString")]
    fn to_text(&self) -> String {
        self.cert.as_ref().map(Cert::pem).unwrap_or_default()
    }

    /// The issuer's certificate, or `None` (self-signed, or the issuer's was not included).
    #[getter]
    fn issuer(&self) -> Option<PyCertificate> {
        let c = self.cert.as_ref()?;
        c.issuer
            .as_deref()
            .map(|i| PyCertificate::from_cert(Some(i.clone())))
    }

    /// This CA certificate revokes `c`: a `TrustList` holding this certificate then rejects `c`.
    /// `k` must be this certificate's private key. Kept in this object (upstream: a signed CRL).
    fn revoke(&self, k: &PyPrivateKey, c: &PyCertificate) -> PyResult<()> {
        let me = self.get()?;
        if k.id.public() != me.subject {
            return Err(PyValueError::new_err("the key is not this certificate's"));
        }
        if !me.ca {
            return Err(PyValueError::new_err("only a CA certificate can revoke"));
        }
        let id = long_id(&c.get()?.subject);
        if let Ok(mut r) = self.revoked.lock()
            && !r.contains(&id)
        {
            r.push(id);
        }
        Ok(())
    }

    /// The text form as bytes.
    fn __bytes__<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, self.to_text().as_bytes())
    }

    /// False when empty.
    fn __bool__(&self) -> bool {
        self.cert.is_some()
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<PyCertificate>()
            .is_ok_and(|o| o.borrow().cert == self.cert)
    }

    fn __hash__(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.cert.as_ref().map(Cert::to_bytes).hash(&mut h);
        h.finish()
    }

    /// The long id in hex (as upstream 4.x).
    fn __str__(&self) -> String {
        self.cert
            .as_ref()
            .map(|c| to_hex(&long_id(&c.subject)))
            .unwrap_or_default()
    }

    fn __repr__(&self) -> String {
        format!("<Certificate '{}'>", self.__str__())
    }
}

/// What `TrustList.verify` found: true when the certificate is trusted. `str(r)` says why not
/// (upstream's string method is misnamed, so its `str` is the default repr).
#[pyclass(module = "rdht._core", name = "VerifyResult", frozen)]
pub(crate) struct PyVerifyResult {
    valid: bool,
    error: bool,
    reason: String,
}

#[pymethods]
impl PyVerifyResult {
    /// True when the certificate is trusted.
    #[pyo3(name = "isValid")]
    fn is_valid(&self) -> bool {
        self.valid
    }

    /// True when the verification itself could not run (an empty certificate); a certificate
    /// that is merely untrusted, revoked or badly signed is invalid without an error.
    #[pyo3(name = "hasError")]
    fn has_error(&self) -> bool {
        self.error
    }

    fn __bool__(&self) -> bool {
        self.valid
    }

    fn __str__(&self) -> String {
        self.reason.clone()
    }

    fn __repr__(&self) -> String {
        format!(
            "<VerifyResult {}: {}>",
            if self.valid { "valid" } else { "invalid" },
            self.reason
        )
    }
}

/// Trusted certificates (upstream: X.509 CAs with their CRLs, checked by GnuTLS; here ed25519
/// certificates of this module). `verify(c)` accepts `c` when it is one of them, or when its
/// chain of issuers reaches one of them through valid signatures and CA certificates, and no
/// trusted CA on the way revoked it.
#[pyclass(module = "rdht._core", name = "TrustList")]
#[derive(Default)]
pub(crate) struct PyTrustList {
    trusted: Vec<Py<PyCertificate>>,
}

#[pymethods]
impl PyTrustList {
    #[new]
    fn py_new() -> Self {
        PyTrustList::default()
    }

    /// Trusts `crt` (and what it signs, if it is a CA). An empty certificate is a `ValueError`.
    fn add(&mut self, py: Python<'_>, crt: &Bound<'_, PyAny>) -> PyResult<()> {
        let c = cert_arg(crt)?;
        c.borrow().get()?;
        if !self.trusted.iter().any(|t| t.bind(py).eq(&c).unwrap_or(false)) {
            self.trusted.push(c.unbind());
        }
        Ok(())
    }

    /// No longer trusts `crt`.
    fn remove(&mut self, py: Python<'_>, crt: &Bound<'_, PyAny>) -> PyResult<()> {
        let c = cert_arg(crt)?;
        let cert = c.borrow().cert.clone();
        self.trusted.retain(|t| t.borrow(py).cert != cert);
        Ok(())
    }

    /// Checks `crt` against the trusted certificates.
    fn verify(&self, py: Python<'_>, crt: &Bound<'_, PyAny>) -> PyResult<PyVerifyResult> {
        let c = cert_arg(crt)?;
        let c = c.borrow();
        let Some(cert) = c.cert.as_ref() else {
            return Ok(PyVerifyResult {
                valid: false,
                error: true,
                reason: "empty certificate".into(),
            });
        };
        let trusted: Vec<PyRef<'_, PyCertificate>> = self.trusted.iter().map(|t| t.borrow(py)).collect();
        let reason = verify_chain(cert, &trusted);
        Ok(PyVerifyResult {
            valid: reason.is_none(),
            error: false,
            reason: reason.unwrap_or_else(|| "valid".into()),
        })
    }

    fn __len__(&self) -> usize {
        self.trusted.len()
    }
}

/// Why `cert` is not trusted, or `None` when it is.
fn verify_chain(cert: &Cert, trusted: &[PyRef<'_, PyCertificate>]) -> Option<String> {
    let mut cur = cert;
    for _ in 0..=MAX_DEPTH {
        if !cur.signature_ok() {
            return Some("bad signature".into());
        }
        for t in trusted {
            if t.is_revoked(cur) {
                return Some(format!("revoked by '{}'", t.get_name()));
            }
        }
        if trusted.iter().any(|t| t.cert.as_ref() == Some(cur)) {
            return None;
        }
        if !cur.self_signed()
            && trusted
                .iter()
                .filter_map(|t| t.cert.as_ref())
                .any(|t| t.ca && t.subject == cur.issuer_key)
        {
            return None;
        }
        match cur.issuer.as_deref() {
            Some(i) if !i.ca => return Some(format!("issuer '{}' is not a CA", i.name)),
            Some(i) => cur = i,
            None => return Some("not issued by a trusted certificate".into()),
        }
    }
    Some("certificate chain too long".into())
}

fn cert_arg<'py>(c: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyCertificate>> {
    c.cast::<PyCertificate>().cloned().map_err(|_| {
        PyTypeError::new_err(format!(
            "expected a Certificate, not {}",
            c.get_type().name().map(|n| n.to_string()).unwrap_or_default()
        ))
    })
}

/// PBKDF2-HMAC-SHA256 rounds for `aesEncrypt`.
const KDF_ROUNDS: u32 = 100_000;
const SALT_LEN: usize = 16;
const NONCE_LEN: usize = 12;
/// The first byte of what `aesEncrypt` returns (the format's version).
const AEAD_VERSION: u8 = 1;

/// PBKDF2-HMAC-SHA256 with 32 bytes of output (the `pbkdf2` crate).
fn pbkdf2(password: &[u8], salt: &[u8], rounds: u32) -> [u8; 32] {
    pbkdf2::pbkdf2_hmac_array::<Sha256, 32>(password, salt, rounds)
}

fn password_arg(p: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    match p.cast::<PyString>() {
        Ok(s) => Ok(s.extract::<String>()?.into_bytes()),
        Err(_) => bytes_arg(p, "password (str or bytes)"),
    }
}

/// Encrypts `data` with a key derived from `password`. Not OpenDHT's format: upstream derives
/// an AES-GCM key with Argon2i; here PBKDF2-HMAC-SHA256 (100 000 rounds, random 16-byte salt)
/// derives a ChaCha20-Poly1305 key. Layout: version (1) | salt (16) | nonce (12) | ciphertext
/// and tag (16). Only `aesDecrypt` of this module opens it.
#[pyfunction]
#[pyo3(name = "aesEncrypt")]
fn aes_encrypt<'py>(
    py: Python<'py>,
    data: &Bound<'_, PyAny>,
    password: &Bound<'_, PyAny>,
) -> PyResult<Bound<'py, PyBytes>> {
    let plain = bytes_arg(data, "data")?;
    let pw = password_arg(password)?;
    let out = py.detach(move || {
        let mut salt = [0u8; SALT_LEN];
        let mut nonce = [0u8; NONCE_LEN];
        OsRng.fill_bytes(&mut salt);
        OsRng.fill_bytes(&mut nonce);
        let key = pbkdf2(&pw, &salt, KDF_ROUNDS);
        let aead = ChaCha20Poly1305::new(Key::from_slice(&key));
        let sealed = aead
            .encrypt(Nonce::from_slice(&nonce), plain.as_slice())
            .map_err(|_| "encryption failed")?;
        let mut out = Vec::with_capacity(1 + SALT_LEN + NONCE_LEN + sealed.len());
        out.push(AEAD_VERSION);
        out.extend_from_slice(&salt);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok::<_, &str>(out)
    });
    out.map(|o| PyBytes::new(py, &o)).map_err(PyValueError::new_err)
}

/// Opens what `aesEncrypt` made with the same `password`; `ValueError` on a wrong password or
/// altered data. It does not open OpenDHT's `aesEncrypt` output (Argon2i + AES-GCM there).
#[pyfunction]
#[pyo3(name = "aesDecrypt")]
fn aes_decrypt<'py>(
    py: Python<'py>,
    data: &Bound<'_, PyAny>,
    password: &Bound<'_, PyAny>,
) -> PyResult<Bound<'py, PyBytes>> {
    let sealed = bytes_arg(data, "data")?;
    let pw = password_arg(password)?;
    let out = py.detach(move || {
        let (&v, rest) = sealed.split_first().ok_or("no data")?;
        if v != AEAD_VERSION {
            return Err("not made by rdht's aesEncrypt (unknown format)");
        }
        let (salt, rest) = rest.split_at_checked(SALT_LEN).ok_or("data too short")?;
        let (nonce, ct) = rest.split_at_checked(NONCE_LEN).ok_or("data too short")?;
        let key = pbkdf2(&pw, salt, KDF_ROUNDS);
        ChaCha20Poly1305::new(Key::from_slice(&key))
            .decrypt(Nonce::from_slice(nonce), ct)
            .map_err(|_| "wrong password or altered data")
    });
    out.map(|o| PyBytes::new(py, &o)).map_err(PyValueError::new_err)
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyCertificate>()?;
    m.add_class::<PyTrustList>()?;
    m.add_class::<PyVerifyResult>()?;
    m.add_function(wrap_pyfunction!(aes_encrypt, m)?)?;
    m.add_function(wrap_pyfunction!(aes_decrypt, m)?)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pbkdf2_matches_rfc7914_vector() {
        // RFC 7914 §11: PBKDF2-HMAC-SHA256("passwd", "salt", c = 1), first 32 bytes.
        let k = pbkdf2(b"passwd", b"salt", 1);
        assert_eq!(
            to_hex(&k),
            "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc"
        );
    }

    #[test]
    fn certificate_round_trips_and_chains() {
        let ca = Identity::from_seed(&[1; 32]);
        let leaf = Identity::from_seed(&[2; 32]);
        let ca_cert = Cert::new(ca.public(), "ca", true, &ca, None);
        let c = Cert::new(leaf.public(), "leaf", false, &ca, Some(ca_cert.clone()));
        assert_eq!(Cert::from_data(c.pem().as_bytes()).as_ref(), Ok(&c));
        assert_eq!(Cert::from_data(&c.to_bytes()).as_ref(), Ok(&c));
        let mut bad = c.to_bytes();
        if let Some(b) = bad.get_mut(MAGIC.len() + 40) {
            *b ^= 1;
        }
        assert!(Cert::from_data(&bad).is_err());
    }
}
