//! TLS for client connections: certificate and key from PEM files, reloaded when they change
//! (cert-manager and kubelet rotate mounted Secrets in place).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

/// Why the certificate or key could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("TLS certificate {path}: {reason}")]
    Cert { path: PathBuf, reason: String },
    #[error("TLS key {path}: {reason}")]
    Key { path: PathBuf, reason: String },
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// The live TLS configuration.
pub struct Tls {
    cert: PathBuf,
    key: PathBuf,
    acceptor: ArcSwap<TlsAcceptor>,
    stamp: Mutex<(Option<SystemTime>, Option<SystemTime>)>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish()
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn load(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| TlsError::Cert {
            path: cert.into(),
            reason: e.to_string(),
        })?
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::Cert {
            path: cert.into(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::Cert {
            path: cert.into(),
            reason: "no certificate in the file".into(),
        });
    }
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| TlsError::Key {
        path: key.into(),
        reason: e.to_string(),
    })?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key_der)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

impl Tls {
    pub fn new(cert: PathBuf, key: PathBuf) -> Result<Self, TlsError> {
        let acceptor = load(&cert, &key)?;
        let stamp = (modified(&cert), modified(&key));
        Ok(Self {
            cert,
            key,
            acceptor: ArcSwap::from_pointee(acceptor),
            stamp: Mutex::new(stamp),
        })
    }

    /// The acceptor for a new connection.
    pub fn acceptor(&self) -> TlsAcceptor {
        (**self.acceptor.load()).clone()
    }

    /// Reloads when either file changed; a broken pair is logged and the old one kept.
    pub fn reload_if_changed(&self) {
        let now = (modified(&self.cert), modified(&self.key));
        let mut stamp = self.stamp.lock().unwrap_or_else(|e| e.into_inner());
        if *stamp == now {
            return;
        }
        match load(&self.cert, &self.key) {
            Ok(acceptor) => {
                self.acceptor.store(Arc::new(acceptor));
                *stamp = now;
                tracing::info!(cert = %self.cert.display(), "TLS certificate reloaded");
            }
            Err(e) => {
                tracing::warn!(error = %e, "TLS certificate not reloaded; keeping the previous one")
            }
        }
    }
}
