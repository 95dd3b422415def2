//! TLS to Redis: `rediss://` URLs (feature `tls`), a private CA to verify the server with, and
//! a client certificate for mutual TLS. The PEM files are read when the configuration is
//! built, so a missing or unreadable file is a configuration error, not a failed call later.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::ConfigError;

/// Certificates for TLS connections, as PEM files: the CA the server's certificate must chain
/// to (instead of the system's roots), and this client's certificate and key for servers that
/// require one (`tls-auth-clients yes`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TlsFiles {
    /// The CA certificate(s) the server's certificate must chain to.
    pub ca: Option<PathBuf>,
    /// This client's certificate (chain).
    pub cert: Option<PathBuf>,
    /// This client's private key.
    pub key: Option<PathBuf>,
}

/// The files' contents, read once.
#[derive(Clone)]
pub(crate) struct TlsPem {
    ca: Option<Vec<u8>>,
    identity: Option<(Vec<u8>, Vec<u8>)>,
}

impl std::fmt::Debug for TlsPem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("TlsPem")
            .field("ca", &self.ca.is_some())
            .field("client_certificate", &self.identity.is_some())
            .finish()
    }
}

impl TlsFiles {
    /// The CA file, and this client's certificate and key files, each optional.
    pub fn new(ca: Option<PathBuf>, cert: Option<PathBuf>, key: Option<PathBuf>) -> Self {
        Self { ca, cert, key }
    }

    /// No file given.
    pub fn is_empty(&self) -> bool {
        self.ca.is_none() && self.cert.is_none() && self.key.is_none()
    }

    /// Reads the files for connections to `url`; `None` when none is given.
    pub(crate) fn load(&self, url: &str) -> Result<Option<Arc<TlsPem>>, ConfigError> {
        if self.is_empty() {
            return Ok(None);
        }
        let field = "tls";
        if !cfg!(feature = "tls") {
            return Err(ConfigError::new(
                field,
                "TLS certificates need the `tls` feature of cache-runtime",
            ));
        }
        if !url.trim_start().starts_with("rediss://") {
            return Err(ConfigError::new(
                field,
                "TLS certificates are given but the URL is not `rediss://`",
            ));
        }
        let identity = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => Some((read_pem(cert)?, read_pem(key)?)),
            (None, None) => None,
            _ => {
                return Err(ConfigError::new(
                    field,
                    "a client certificate needs both its certificate and its key file",
                ));
            }
        };
        let ca = self.ca.as_deref().map(read_pem).transpose()?;
        Ok(Some(Arc::new(TlsPem { ca, identity })))
    }

    /// These certificates as redis-rs takes them (for a `ClusterClientBuilder::certs`), or
    /// `None` when no file is given.
    #[cfg(feature = "tls")]
    pub fn certificates(&self, url: &str) -> Result<Option<redis::TlsCertificates>, ConfigError> {
        install_crypto_provider();
        Ok(self.load(url)?.as_deref().map(TlsPem::certificates))
    }

    /// A client for `url` with these certificates (what `cachectl` connects with).
    pub fn client(&self, url: &str) -> Result<redis::Client, ConfigError> {
        let pem = self.load(url)?;
        client(url, pem.as_deref()).map_err(|e| ConfigError::new("redis_url", e.to_string()))
    }
}

#[cfg(feature = "tls")]
impl TlsPem {
    fn certificates(&self) -> redis::TlsCertificates {
        redis::TlsCertificates {
            client_tls: self
                .identity
                .as_ref()
                .map(|(cert, key)| redis::ClientTlsConfig {
                    client_cert: cert.clone(),
                    client_key: key.clone(),
                }),
            root_cert: self.ca.clone(),
        }
    }
}

fn read_pem(path: &Path) -> Result<Vec<u8>, ConfigError> {
    let bytes = std::fs::read(path)
        .map_err(|e| ConfigError::new("tls", format!("cannot read `{}`: {e}", path.display())))?;
    if !bytes.windows(11).any(|w| w == b"-----BEGIN ") {
        return Err(ConfigError::new(
            "tls",
            format!("`{}` is not a PEM file", path.display()),
        ));
    }
    Ok(bytes)
}

/// A client for `url`: with `tls`, verified against its CA and presenting its certificate.
pub(crate) fn client(url: &str, tls: Option<&TlsPem>) -> redis::RedisResult<redis::Client> {
    #[cfg(feature = "tls")]
    {
        if url.trim_start().starts_with("rediss://") {
            install_crypto_provider();
        }
        if let Some(tls) = tls {
            return redis::Client::build_with_tls(url, tls.certificates());
        }
    }
    #[cfg(not(feature = "tls"))]
    let _ = tls;
    redis::Client::open(url)
}

/// rustls needs a process-wide crypto provider, and redis-rs selects none: without one (or
/// with two enabled in the dependency tree, ring's and aws-lc-rs's, where rustls cannot pick)
/// the first TLS connection panics. Ring's is installed unless the application installed one.
#[cfg(feature = "tls")]
fn install_crypto_provider() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        // An error means a provider is already installed: the application's choice stands.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}
