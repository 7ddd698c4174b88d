//! # dht-python: the Python module `rdht`
//!
//! OpenDHT's Python API (`import opendht`) on a [`dht_mio`] runner, built with PyO3 as the
//! extension `rdht._core` and re-exported by the pure-Python package `rdht` (see
//! `python/rdht/`), which also holds the asyncio forms (`rdht.aio`). `docs/python.md` has the
//! user's guide; `opendht-bindings.md` §4 the upstream API this follows (its 4.x form).
//!
//! Where this differs from upstream on purpose:
//! - every blocking call releases the GIL and answers Ctrl-C; `shutdown(); join()` never
//!   deadlocks; a blocking call made from a callback of a runner on the same thread raises
//!   `RuntimeError`;
//! - the runners of a process share one thread (a `dht_mio::Pool`) unless
//!   `DhtConfig.setSharedThread(False)`: many nodes in one process are much faster;
//! - `run()` on a port in use raises `OSError`; each runner copies its config (no shared default);
//! - listen tokens cancel on single-stack runners; `Value.owner` of an unsigned value is `None`;
//! - crypto is ed25519/x25519 where upstream uses RSA: the names are kept, the docstrings say so
//!   (`Certificate` and `TrustList` are ed25519 certificates of our own layout, not X.509;
//!   `aesEncrypt` is PBKDF2 + ChaCha20-Poly1305, not Argon2i + AES-GCM).

mod cert;
mod crypto;
mod hash;
mod net;
mod runner;
mod value;

use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes};

/// The version of this module (`rdht.__version__`), with the OpenDHT API it follows.
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (opendht-compatible 4.x)");

/// Bytes from a Python `bytes` or `bytearray`; anything else is a `TypeError` naming `what`.
pub(crate) fn bytes_arg(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Vec<u8>> {
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(b.as_bytes().to_vec());
    }
    if let Ok(b) = obj.cast::<PyByteArray>() {
        return Ok(b.to_vec());
    }
    let ty = obj
        .get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into());
    Err(PyTypeError::new_err(format!("{what} must be bytes, not {ty}")))
}

/// The Python error for a runner error.
pub(crate) fn run_error(e: dht_mio::Error) -> PyErr {
    match e {
        dht_mio::Error::Bind { addr, source } => {
            let errno = source.raw_os_error().unwrap_or(0);
            pyo3::exceptions::PyOSError::new_err((errno, format!("cannot bind {addr}: {source}")))
        }
        dht_mio::Error::Resolve { host, reason } => {
            pyo3::exceptions::PyOSError::new_err(format!("cannot resolve {host}: {reason}"))
        }
        dht_mio::Error::Io(e) => pyo3::exceptions::PyOSError::new_err(e.to_string()),
        dht_mio::Error::Closed => PyRuntimeError::new_err("the DhtRunner is not running"),
        dht_mio::Error::OnRunnerThread => PyRuntimeError::new_err(
            "a blocking call from a callback of a DhtRunner on the same thread would deadlock: \
             use the callback form",
        ),
        e => PyRuntimeError::new_err(e.to_string()),
    }
}

/// `version()`: this module's version string.
#[pyfunction]
fn version() -> &'static str {
    VERSION
}

/// The extension module `rdht._core`; the package `rdht` re-exports it.
#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(version, m)?)?;
    m.add("__version__", VERSION)?;
    hash::register(m)?;
    value::register(m)?;
    crypto::register(m)?;
    cert::register(m)?;
    net::register(m)?;
    runner::register(m)?;
    Ok(())
}
