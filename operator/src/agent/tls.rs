//! TLS for the agent's HTTP: the server's certificate and key (re-read when their files
//! change, as the kubelet and cert-manager rotate mounted Secrets in place), and the clients'
//! CA, against which a donor's certificate and host name are verified.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustls::ClientConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// A connection the agent's HTTP runs over: plain TCP or TLS over it.
pub trait Conn: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> Conn for T {}

/// Why the agent's TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum AgentTlsError {
    /// The server's certificate or key.
    #[error(transparent)]
    Serving(#[from] lagless_serve::tls::TlsError),
    #[error("TLS CA {origin}: {reason}")]
    Ca { origin: String, reason: String },
    #[error("TLS configuration: {0}")]
    Config(String),
}

/// How often, at most, the server's certificate and key files are checked for a change.
pub const RELOAD_CHECK: Duration = Duration::from_secs(2);

/// The server side: the certificate and key files, reloaded when they change.
pub struct ServerTls {
    tls: lagless_serve::tls::Tls,
    /// When the files were last checked.
    checked: Mutex<Instant>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.tls.fmt(f)
    }
}

impl ServerTls {
    /// Loads the pair; an unreadable or mismatched pair is an error (the agent does not start).
    pub fn load(cert: PathBuf, key: PathBuf) -> Result<Self, AgentTlsError> {
        Ok(Self {
            tls: lagless_serve::tls::Tls::new(cert, key)?,
            checked: Mutex::new(Instant::now()),
        })
    }

    /// The acceptor for a connection accepted now. At most every [`RELOAD_CHECK`], the files
    /// are re-read first when their modification times changed; a new pair that does not load
    /// is logged and the previous one kept (a rotation caught between its key and its
    /// certificate is read again at the next check).
    pub fn acceptor(&self) -> TlsAcceptor {
        let due = {
            let mut checked = self.checked.lock().unwrap_or_else(|e| e.into_inner());
            let due = checked.elapsed() >= RELOAD_CHECK;
            if due {
                *checked = Instant::now();
            }
            due
        };
        if due {
            self.tls.reload_if_changed();
        }
        self.tls.acceptor()
    }
}

/// The client side: encrypts connections to agents and verifies their certificate against a
/// CA and the host name connected to. Cheap to clone.
#[derive(Clone)]
pub struct AgentTls {
    connector: TlsConnector,
}

impl std::fmt::Debug for AgentTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AgentTls")
    }
}

impl AgentTls {
    /// From a PEM bundle of CA certificates (as read from a Secret's `ca.crt`).
    pub fn from_ca_pem(pem: &[u8]) -> Result<Self, AgentTlsError> {
        Self::from_pem(pem, "(PEM)")
    }

    /// From a PEM file of CA certificates.
    pub fn from_ca_file(path: &Path) -> Result<Self, AgentTlsError> {
        let pem = std::fs::read(path).map_err(|e| AgentTlsError::Ca {
            origin: path.display().to_string(),
            reason: e.to_string(),
        })?;
        Self::from_pem(&pem, &path.display().to_string())
    }

    fn from_pem(pem: &[u8], origin: &str) -> Result<Self, AgentTlsError> {
        let ca_error = |reason: String| AgentTlsError::Ca {
            origin: origin.to_string(),
            reason,
        };
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<_, _>>()
            .map_err(|e| ca_error(e.to_string()))?;
        let mut roots = rustls::RootCertStore::empty();
        for cert in certs {
            roots.add(cert).map_err(|e| ca_error(e.to_string()))?;
        }
        if roots.is_empty() {
            return Err(ca_error("no certificate in it".into()));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| AgentTlsError::Config(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self {
            connector: TlsConnector::from(Arc::new(config)),
        })
    }

    /// The TLS handshake over `tcp` with the agent at `host:port`, whose certificate must
    /// chain to the CA and carry `host` (a DNS name or an IP address).
    pub async fn connect(
        &self,
        host: &str,
        port: u16,
        tcp: TcpStream,
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>, String> {
        let name = ServerName::try_from(host.to_string())
            .map_err(|e| format!("TLS with {host}:{port}: not a valid server name: {e}"))?;
        self.connector
            .connect(name, tcp)
            .await
            .map_err(|e| format!("TLS handshake with {host}:{port} failed: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_must_hold_a_certificate() {
        let err = AgentTls::from_ca_pem(b"").unwrap_err();
        assert!(err.to_string().contains("no certificate"), "{err}");
        let err = AgentTls::from_ca_pem(b"-----BEGIN CERTIFICATE-----\nnot base64!\n").unwrap_err();
        assert!(err.to_string().starts_with("TLS CA (PEM): "), "{err}");
        let err = AgentTls::from_ca_file(Path::new("/nonexistent/ca.crt")).unwrap_err();
        assert!(
            err.to_string().starts_with("TLS CA /nonexistent/ca.crt: "),
            "{err}"
        );
        let dir = tempfile::tempdir().unwrap();
        let files = crate::tls::files::TlsFiles::new(dir.path());
        files
            .ensure(
                "t",
                &crate::tls::local_names(),
                std::time::SystemTime::now(),
            )
            .unwrap();
        AgentTls::from_ca_file(&files.ca()).unwrap();
        AgentTls::from_ca_pem(&std::fs::read(files.ca()).unwrap()).unwrap();
        let err = ServerTls::load(files.cert(), dir.path().join("absent.key")).unwrap_err();
        assert!(err.to_string().contains("absent.key"), "{err}");
        ServerTls::load(files.cert(), files.key()).unwrap();
    }

    fn issue(dir: &Path) -> crate::tls::files::TlsFiles {
        let files = crate::tls::files::TlsFiles::new(dir);
        let now = std::time::SystemTime::now();
        files.ensure("t", &crate::tls::local_names(), now).unwrap();
        files
    }

    /// An agent on a free port serving `datadir` (no database server behind it).
    async fn agent(
        datadir: &Path,
        tls: Option<(PathBuf, PathBuf)>,
    ) -> std::io::Result<super::super::client::Url> {
        let (tls_cert, tls_key) = tls.unzip();
        std::fs::write(datadir.join("token"), "t0ken\n").unwrap();
        let server = super::super::server::Server::bind(super::super::ServeArgs {
            listen: "127.0.0.1:0".parse().unwrap(),
            datadir: datadir.to_path_buf(),
            mysql_port: 1,
            token_file: datadir.join("token"),
            scratch_dir: None,
            admin_user: "unused".into(),
            admin_password: "unused".into(),
            tls_ca: None,
            tls_cert,
            tls_key,
        })
        .await?;
        let url = format!("http://{}", server.local_addr()?);
        tokio::spawn(server.run());
        Ok(super::super::client::Url::parse(&url).unwrap())
    }

    #[tokio::test]
    async fn a_tls_client_refuses_a_plain_agent_and_a_bad_pair_is_not_served() {
        let dir = tempfile::tempdir().unwrap();
        let files = issue(&dir.path().join("tls"));
        let ca = AgentTls::from_ca_file(&files.ca()).unwrap();
        let plain = agent(dir.path(), None).await.unwrap();
        let err = super::super::client::cancel_reseed(&plain, "t0ken", Some(&ca))
            .await
            .unwrap_err();
        let expected = format!("TLS handshake with 127.0.0.1:{} failed", plain.port);
        assert!(err.contains(&expected), "{err}");
        // A certificate with another's key does not start the agent.
        let other = issue(&dir.path().join("other"));
        let err = agent(dir.path(), Some((files.cert(), other.key())))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput, "{err}");
    }

    #[tokio::test]
    async fn a_rotated_certificate_is_served_from_the_next_connection() {
        let dir = tempfile::tempdir().unwrap();
        let served = issue(&dir.path().join("served"));
        let next = issue(&dir.path().join("next"));
        let old_ca = AgentTls::from_ca_file(&served.ca()).unwrap();
        let new_ca = AgentTls::from_ca_file(&next.ca()).unwrap();
        let url = agent(dir.path(), Some((served.cert(), served.key())))
            .await
            .unwrap();
        let unmark = |ca| super::super::client::cancel_reseed(&url, "t0ken", Some(ca));
        unmark(&old_ca).await.unwrap();
        unmark(&new_ca).await.unwrap_err();
        // Replaced in place, key first, as a Secret's files are; read at the next check.
        std::fs::copy(next.key(), served.key()).unwrap();
        std::fs::copy(next.cert(), served.cert()).unwrap();
        tokio::time::sleep(RELOAD_CHECK + Duration::from_millis(100)).await;
        unmark(&new_ca).await.unwrap();
        let err = unmark(&old_ca).await.unwrap_err();
        assert!(err.contains("TLS handshake"), "{err}");
        // A broken replacement is not loaded: the last good pair stays.
        std::fs::write(served.cert(), "-----BEGIN CERTIFICATE-----\ngarbage\n").unwrap();
        tokio::time::sleep(RELOAD_CHECK + Duration::from_millis(100)).await;
        unmark(&new_ca).await.unwrap();
    }
}
