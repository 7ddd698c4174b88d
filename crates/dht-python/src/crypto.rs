//! `PublicKey`, `PrivateKey` and `Identity`: upstream's names with ed25519 keys (signatures)
//! and x25519 + ChaCha20-Poly1305 (encryption) where OpenDHT uses RSA and X.509.

use std::path::PathBuf;

use dht_proto::crypto::{Identity, PublicKey};
use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use rand_core::OsRng;

use crate::bytes_arg;
use crate::cert::{Cert, PyCertificate, certificate_for};
use crate::hash::{PyInfoHash, PyPkId};

/// A public key (ed25519; upstream's is RSA). Empty (false) when made without data. A value's
/// owner from an OpenDHT node may be an RSA key: it then keeps its bytes and ids, but
/// `encrypt` and `checkSignature` raise `ValueError`.
#[pyclass(module = "rdht._core", name = "PublicKey", from_py_object)]
#[derive(Clone, Default)]
pub(crate) struct PyPublicKey {
    /// The key, when it is ed25519.
    pub(crate) key: Option<PublicKey>,
    /// The key's DER (SubjectPublicKeyInfo) bytes, as carried on the wire.
    der: Vec<u8>,
}

impl PyPublicKey {
    /// From a value's owner bytes (SPKI DER, or 32 raw ed25519 bytes).
    pub(crate) fn from_owner(bytes: &[u8]) -> PyPublicKey {
        let key = PublicKey::from_spki_der(bytes)
            .or_else(|_| PublicKey::from_bytes(bytes))
            .ok();
        let der = key.map(|k| k.to_spki_der()).unwrap_or_else(|| bytes.to_vec());
        PyPublicKey { key, der }
    }

    pub(crate) fn from_key(k: PublicKey) -> PyPublicKey {
        PyPublicKey {
            key: Some(k),
            der: k.to_spki_der(),
        }
    }

    fn ed25519(&self) -> PyResult<PublicKey> {
        match self.key {
            Some(k) => Ok(k),
            None if self.der.is_empty() => Err(PyValueError::new_err("PublicKey is not initialized")),
            None => Err(PyValueError::new_err(
                "not an ed25519 key (an RSA key from an OpenDHT node?)",
            )),
        }
    }

    fn require(&self) -> PyResult<()> {
        if self.der.is_empty() {
            return Err(PyValueError::new_err("PublicKey is not initialized"));
        }
        Ok(())
    }
}

#[pymethods]
impl PyPublicKey {
    /// From the key's DER (SubjectPublicKeyInfo) or its 32 raw bytes; empty without data.
    #[new]
    #[pyo3(signature = (data = None))]
    fn py_new(data: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
        let Some(d) = data.filter(|d| !d.is_none()) else {
            return Ok(PyPublicKey::default());
        };
        let b = bytes_arg(d, "PublicKey data")?;
        if b.is_empty() {
            return Ok(PyPublicKey::default());
        }
        PublicKey::from_spki_der(&b)
            .or_else(|_| PublicKey::from_bytes(&b))
            .map(PyPublicKey::from_key)
            .map_err(|_| PyValueError::new_err("not an ed25519 public key (32 bytes or SPKI DER)"))
    }

    /// The short id: SHA-1 of the key's DER, as upstream.
    #[pyo3(name = "getId")]
    fn get_id(&self) -> PyResult<PyInfoHash> {
        self.require()?;
        Ok(dht_proto::InfoHash::get(&self.der).into())
    }

    /// The long id: SHA-256 of the key's DER.
    #[pyo3(name = "getLongId")]
    fn get_long_id(&self) -> PyResult<PyPkId> {
        self.require()?;
        Ok(PyPkId(dht_proto::crypto::sha256(&self.der)))
    }

    /// Encrypts `data` to this key (x25519 + ChaCha20-Poly1305 sealed box; upstream: RSA).
    fn encrypt<'py>(&self, py: Python<'py>, data: &Bound<'_, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
        let k = self.ed25519()?;
        let plain = bytes_arg(data, "data")?;
        Ok(PyBytes::new(
            py,
            &dht_proto::crypto::seal(&k, &plain, &[], &mut OsRng),
        ))
    }

    /// True when `signature` is this key's ed25519 signature of `data`.
    #[pyo3(name = "checkSignature")]
    fn check_signature(&self, data: &Bound<'_, PyAny>, signature: &Bound<'_, PyAny>) -> PyResult<bool> {
        let k = self.ed25519()?;
        Ok(
            k.verify(&bytes_arg(data, "data")?, &bytes_arg(signature, "signature")?)
                .is_ok(),
        )
    }

    /// The key's DER (SubjectPublicKeyInfo) bytes.
    fn __bytes__<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.der)
    }

    /// False for an empty key.
    fn __bool__(&self) -> bool {
        !self.der.is_empty()
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other.extract::<PyPublicKey>().is_ok_and(|o| o.der == self.der)
    }

    fn __hash__(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        self.der.hash(&mut h);
        h.finish()
    }

    fn __str__(&self) -> String {
        if self.der.is_empty() {
            return String::new();
        }
        dht_proto::crypto::sha256(&self.der)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    fn __repr__(&self) -> String {
        format!("<PublicKey '{}'>", self.__str__())
    }
}

/// A private key (ed25519; upstream's is RSA or EC). Made by `PrivateKey.generate()` or held
/// by an `Identity`.
#[pyclass(module = "rdht._core", name = "PrivateKey", from_py_object)]
#[derive(Clone)]
pub(crate) struct PyPrivateKey {
    pub(crate) id: Identity,
}

#[pymethods]
impl PyPrivateKey {
    /// A new ed25519 key (upstream: RSA-4096).
    #[staticmethod]
    fn generate() -> Self {
        PyPrivateKey {
            id: Identity::generate(&mut OsRng),
        }
    }

    /// A new ed25519 key (upstream: an EC key).
    #[staticmethod]
    #[pyo3(name = "generateEC")]
    fn generate_ec() -> Self {
        Self::generate()
    }

    /// The public half.
    #[pyo3(name = "getPublicKey")]
    fn get_public_key(&self) -> PyPublicKey {
        PyPublicKey::from_key(self.id.public())
    }

    /// The public key's short id.
    #[pyo3(name = "getId")]
    fn get_id(&self) -> PyResult<PyInfoHash> {
        self.get_public_key().get_id()
    }

    /// The public key's long id.
    #[pyo3(name = "getLongId")]
    fn get_long_id(&self) -> PyResult<PyPkId> {
        self.get_public_key().get_long_id()
    }

    /// The ed25519 signature of `data` (64 bytes).
    fn sign<'py>(&self, py: Python<'py>, data: &Bound<'_, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
        Ok(PyBytes::new(py, &self.id.sign(&bytes_arg(data, "data")?)))
    }

    /// Opens `data` sealed to this key with `PublicKey.encrypt`; `ValueError` if it does not open.
    fn decrypt<'py>(&self, py: Python<'py>, data: &Bound<'_, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
        let sealed = bytes_arg(data, "data")?;
        dht_proto::crypto::open(&self.id, &sealed, &[])
            .map(|p| PyBytes::new(py, &p))
            .map_err(|e| PyValueError::new_err(format!("cannot decrypt: {e}")))
    }

    fn __str__(&self) -> String {
        self.get_public_key().__str__()
    }

    fn __repr__(&self) -> String {
        format!("<PrivateKey '{}'>", self.__str__())
    }
}

/// A signing identity: an ed25519 key pair and, optionally, an ed25519 `Certificate` naming
/// it (upstream: an RSA key and an X.509 certificate). `Identity.generate()` makes one;
/// `save(path)` and `Identity.load(path)` keep its key in a file (the 32-byte secret seed in
/// hex, mode 0600, the format of `dhtnode --identity`; the certificate is not saved).
#[pyclass(module = "rdht._core", name = "Identity", from_py_object)]
#[derive(Clone, Default)]
pub(crate) struct PyIdentity {
    pub(crate) id: Option<Identity>,
    pub(crate) cert: Option<Cert>,
}

#[pymethods]
impl PyIdentity {
    /// From a `PrivateKey` and its `Certificate` (both optional); `ValueError` when the
    /// certificate is not the key's.
    #[new]
    #[pyo3(signature = (k = None, c = None))]
    fn py_new(k: Option<PyPrivateKey>, c: Option<PyRef<'_, PyCertificate>>) -> PyResult<Self> {
        let cert = c.and_then(|c| c.cert.clone());
        if let (Some(k), Some(c)) = (&k, &cert)
            && c.subject != k.id.public()
        {
            return Err(PyValueError::new_err("the certificate is not the key's"));
        }
        Ok(PyIdentity {
            id: k.map(|k| k.id),
            cert,
        })
    }

    /// A new identity: an ed25519 key (upstream: RSA of `bits` bits; ignored here) and an
    /// ed25519 `Certificate` named `name`. With `ca` (an `Identity` with a key and a
    /// certificate) the certificate is signed by it; otherwise it is self-signed and, as
    /// upstream, a CA certificate (it can sign others).
    #[staticmethod]
    #[pyo3(signature = (name = "pydht", ca = None, bits = 4096))]
    fn generate(name: &str, ca: Option<PyRef<'_, PyIdentity>>, bits: u32) -> Self {
        let _ = bits;
        let id = Identity::generate(&mut OsRng);
        let signer = ca.as_deref().filter(|c| c.id.is_some() && c.cert.is_some());
        let cert = certificate_for(&id, name, signer, signer.is_none());
        PyIdentity {
            id: Some(id),
            cert: Some(cert),
        }
    }

    /// Writes the secret seed to `path` (hex, created with mode 0600).
    fn save(&self, py: Python<'_>, path: PathBuf) -> PyResult<()> {
        let id = self
            .id
            .as_ref()
            .ok_or_else(|| PyValueError::new_err("the Identity is empty"))?;
        let text: String = id.seed().iter().map(|b| format!("{b:02x}")).collect();
        py.detach(|| write_private(&path, format!("{text}\n").as_bytes()))
            .map_err(|e| PyOSError::new_err((e.raw_os_error().unwrap_or(0), e.to_string())))
    }

    /// Reads an identity saved by `save`.
    #[staticmethod]
    fn load(path: PathBuf) -> PyResult<Self> {
        let text = std::fs::read_to_string(&path).map_err(|e| {
            PyOSError::new_err((e.raw_os_error().unwrap_or(0), format!("{}: {e}", path.display())))
        })?;
        let hex = text.trim();
        let bad = || PyValueError::new_err(format!("{}: not an identity (64 hex digits)", path.display()));
        if hex.len() != 64 {
            return Err(bad());
        }
        let mut seed = [0u8; 32];
        for (o, pair) in seed.iter_mut().zip(hex.as_bytes().chunks_exact(2)) {
            let s = std::str::from_utf8(pair).map_err(|_| bad())?;
            *o = u8::from_str_radix(s, 16).map_err(|_| bad())?;
        }
        Ok(PyIdentity {
            id: Some(Identity::from_seed(&seed)),
            cert: None,
        })
    }

    /// The private key, or `None`.
    #[getter]
    fn key(&self) -> Option<PyPrivateKey> {
        self.id.clone().map(|id| PyPrivateKey { id })
    }

    /// The public key, or `None`.
    #[getter]
    fn publickey(&self) -> Option<PyPublicKey> {
        self.id.as_ref().map(|i| PyPublicKey::from_key(i.public()))
    }

    /// The identity's `Certificate` (ed25519, not X.509), or `None` (none given, or loaded
    /// from a file).
    #[getter]
    fn certificate(&self) -> Option<PyCertificate> {
        self.cert.clone().map(|c| PyCertificate::from_cert(Some(c)))
    }

    fn __bool__(&self) -> bool {
        self.id.is_some()
    }

    fn __repr__(&self) -> String {
        match &self.id {
            Some(i) => format!("<Identity '{}'>", PyPublicKey::from_key(i.public()).__str__()),
            None => "<Identity (empty)>".into(),
        }
    }
}

fn write_private(path: &std::path::Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(data)
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyPublicKey>()?;
    m.add_class::<PyPrivateKey>()?;
    m.add_class::<PyIdentity>()?;
    Ok(())
}
