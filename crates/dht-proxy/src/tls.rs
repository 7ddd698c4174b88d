//! TLS through rustls with the ring provider (no system library): [`ServerTls`] for the server's
//! HTTPS port (OpenDHT's `--proxyserverssl`, `--proxy-certificate`, `--proxy-privkey`) and
//! [`ClientTls`] for a [`ProxyClient`](crate::ProxyClient) of an `https://` proxy.
//!
//! The provider is named explicitly rather than taken from the process default, so the choice
//! holds whatever other crates in the build enable in rustls.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// What went wrong setting TLS up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The PEM holds no certificate, or no usable private key.
    #[error("{0}")]
    Pem(String),
    /// rustls refused the certificate or key.
    #[error("TLS: {0}")]
    Rustls(#[from] rustls::Error),
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Pem(format!("certificates: {e}")))?;
    if certs.is_empty() {
        return Err(TlsError::Pem("no certificate in the PEM".into()));
    }
    Ok(certs)
}

/// The server side of TLS: a certificate chain and its private key.
#[derive(Clone)]
pub struct ServerTls {
    pub(crate) config: Arc<rustls::ServerConfig>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls").finish_non_exhaustive()
    }
}

impl ServerTls {
    /// From PEM text: the certificate chain (leaf first) and the private key (PKCS#8, PKCS#1
    /// or SEC1; an encrypted key is refused). TLS 1.2 and 1.3, HTTP/1.1.
    pub fn from_pem(cert_chain: &[u8], key: &[u8]) -> Result<ServerTls, TlsError> {
        let certs = certificates(cert_chain)?;
        if String::from_utf8_lossy(key).contains("ENCRYPTED PRIVATE KEY") {
            return Err(TlsError::Pem(
                "the private key is encrypted: decrypt it first (openssl pkey -in KEY -out PLAIN)".into(),
            ));
        }
        let key =
            PrivateKeyDer::from_pem_slice(key).map_err(|e| TlsError::Pem(format!("private key: {e}")))?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(certs, key)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(ServerTls {
            config: Arc::new(config),
        })
    }

    /// From PEM files, as OpenDHT's `--proxy-certificate` and `--proxy-privkey`.
    pub fn from_pem_files(cert_chain: &Path, key: &Path) -> Result<ServerTls, TlsError> {
        ServerTls::from_pem(&read(cert_chain)?, &read(key)?)
    }
}

/// The client side of TLS: which root certificates to trust.
#[derive(Clone)]
pub struct ClientTls {
    pub(crate) config: Arc<rustls::ClientConfig>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls").finish_non_exhaustive()
    }
}

/// Where Debian (and most Linux systems) keep the trusted roots.
const SYSTEM_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";

impl ClientTls {
    /// Trusts the certificates of this PEM text (e.g. a self-signed proxy's).
    pub fn with_roots_pem(pem: &[u8]) -> Result<ClientTls, TlsError> {
        let mut roots = rustls::RootCertStore::empty();
        for c in certificates(pem)? {
            roots.add(c)?;
        }
        ClientTls::with_roots(roots)
    }

    /// Trusts the certificates of this PEM file.
    pub fn with_roots_file(path: &Path) -> Result<ClientTls, TlsError> {
        ClientTls::with_roots_pem(&read(path)?)
    }

    /// Trusts the system's roots (`/etc/ssl/certs/ca-certificates.crt`); certificates of the
    /// bundle that rustls cannot use are skipped.
    pub fn system() -> Result<ClientTls, TlsError> {
        let pem = read(Path::new(SYSTEM_ROOTS))?;
        let mut roots = rustls::RootCertStore::empty();
        let (_added, _skipped) =
            roots.add_parsable_certificates(CertificateDer::pem_slice_iter(&pem).filter_map(Result::ok));
        ClientTls::with_roots(roots)
    }

    fn with_roots(roots: rustls::RootCertStore) -> Result<ClientTls, TlsError> {
        let mut config = rustls::ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(ClientTls {
            config: Arc::new(config),
        })
    }
}
