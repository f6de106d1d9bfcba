//! Optional TLS from the proxy to its backends.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwap;

use rustls::ClientConfig;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use tokio_rustls::TlsConnector;

use crate::tls::TlsError;

/// Whether and how backend connections use TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendTlsMode {
    Off,
    /// Encrypt; accept any certificate.
    On,
    /// Encrypt and verify the certificate and the server's name or address.
    Verify,
}

/// How backend connections are encrypted. A verified configuration follows its CA file: it is
/// read again when it changes (a renewed CA takes effect without a restart).
#[derive(Clone)]
pub struct BackendTls {
    connector: Arc<ArcSwap<TlsConnector>>,
    /// The CA file and its modification time when last read; `None` when not verifying.
    ca: Option<(PathBuf, Arc<Mutex<Option<SystemTime>>>)>,
}

impl std::fmt::Debug for BackendTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BackendTls")
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn verified_connector(ca: &Path) -> Result<TlsConnector, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(ca)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::Cert {
            path: ca.into(),
            reason: e.to_string(),
        })?;
    for cert in certs {
        roots.add(cert).map_err(|e| TlsError::Cert {
            path: ca.into(),
            reason: e.to_string(),
        })?;
    }
    if roots.is_empty() {
        return Err(TlsError::Cert {
            path: ca.into(),
            reason: "no certificate in the file".into(),
        });
    }
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(TlsConnector::from(Arc::new(config)))
}

impl BackendTls {
    /// Encrypts and verifies the server's certificate against `ca` (and its name or address).
    pub fn verified(ca: &Path) -> Result<Self, TlsError> {
        let stamp = modified(ca);
        let connector = verified_connector(ca)?;
        Ok(Self {
            connector: Arc::new(ArcSwap::from_pointee(connector)),
            ca: Some((ca.to_path_buf(), Arc::new(Mutex::new(stamp)))),
        })
    }

    /// Encrypts without checking who answers (a private network where only eavesdropping is the
    /// concern); `verified` is the safe choice.
    pub fn unverified() -> Result<Self, TlsError> {
        let provider = provider();
        let config = ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
            .with_no_client_auth();
        Ok(Self {
            connector: Arc::new(ArcSwap::from_pointee(TlsConnector::from(Arc::new(config)))),
            ca: None,
        })
    }

    /// The connector for a new connection.
    pub fn connector(&self) -> TlsConnector {
        (**self.connector.load()).clone()
    }

    /// Reads the CA again when its file changed; a broken file is logged and the previous CA
    /// kept.
    pub fn reload_if_changed(&self) {
        let Some((path, stamp)) = &self.ca else {
            return;
        };
        let now = modified(path);
        let mut stamp = stamp.lock().unwrap_or_else(|e| e.into_inner());
        if *stamp == now {
            return;
        }
        match verified_connector(path) {
            Ok(connector) => {
                self.connector.store(Arc::new(connector));
                *stamp = now;
                tracing::info!(ca = %path.display(), "backend CA reloaded");
            }
            Err(e) => {
                tracing::warn!(error = %e, "backend CA not reloaded; keeping the previous one")
            }
        }
    }
}

/// The same TLS for the proxy's own client connections (monitor and account lookups), which
/// read the CA file at each connection.
pub fn client_ssl_opts(mode: BackendTlsMode, ca: Option<&Path>) -> Option<mysql_async::SslOpts> {
    match (mode, ca) {
        (BackendTlsMode::Off, _) => None,
        (BackendTlsMode::Verify, Some(ca)) => Some(
            mysql_async::SslOpts::default()
                .with_root_certs(vec![ca.to_path_buf().into()])
                .with_disable_built_in_roots(true),
        ),
        // `verify` without a CA is refused at start; treat it as `on` here.
        (BackendTlsMode::On | BackendTlsMode::Verify, _) => Some(
            mysql_async::SslOpts::default()
                .with_danger_accept_invalid_certs(true)
                .with_danger_skip_domain_validation(true),
        ),
    }
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    // Signatures are still checked, so the session keys belong to whoever holds the key.
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
