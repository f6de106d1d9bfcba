//! The agent's server: `GET /healthz` (is the local database server listening?), and for a
//! caller with the token `GET /backup` (a streamed backup of it), `POST /reseed[?donor=h:p]`
//! (mark the data to be copied afresh at the pod's next start, from that donor first) and
//! `DELETE /reseed` (take the mark back). With a certificate and key, every connection is TLS.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use super::ServeArgs;
use super::http::{self, HttpError};
use super::tls::{Conn, ServerTls};
use crate::orchestrate::observe::Credentials;
use crate::orchestrate::seed::{Donor, backup_stream};

/// How long a caller has to send its request head.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a caller has to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A running agent server.
pub struct Server {
    listener: TcpListener,
    shared: Arc<RequestContext>,
    tls: Option<ServerTls>,
}

/// What every request is served with: the settings, the one backup slot, and the counter
/// that names scratch directories.
struct RequestContext {
    args: ServeArgs,
    /// One backup at a time: a second would halve both and double the load on the server.
    backups: Semaphore,
    scratch_seq: AtomicU64,
}

impl Server {
    /// Listens on `args.listen`; with `--tls-cert` and `--tls-key`, loads them first (a pair
    /// that does not load is an error). The backup account must be set.
    pub async fn bind(args: ServeArgs) -> std::io::Result<Self> {
        if args.admin_user.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "the backup account is not set (--admin-user or LAGLESS_ADMIN_USER)",
            ));
        }
        let tls = match (&args.tls_cert, &args.tls_key) {
            (Some(cert), Some(key)) => Some(
                ServerTls::load(cert.clone(), key.clone())
                    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?,
            ),
            (None, None) => None,
            _ => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "--tls-cert and --tls-key go together",
                ));
            }
        };
        let listener = TcpListener::bind(args.listen).await?;
        Ok(Self {
            listener,
            tls,
            shared: Arc::new(RequestContext {
                args,
                backups: Semaphore::new(1),
                scratch_seq: AtomicU64::new(0),
            }),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.listener.local_addr()
    }

    /// Whether connections are TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Serves until the task is dropped.
    pub async fn run(self) -> std::io::Result<()> {
        loop {
            let (stream, peer) = match self.listener.accept().await {
                Ok(accepted) => accepted,
                // Out of descriptors and the like: pause rather than spin.
                Err(e) => {
                    tracing::warn!("agent: accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let shared = self.shared.clone();
            // Taken at each connection: a rotated certificate applies from the next check.
            let acceptor = self.tls.as_ref().map(ServerTls::acceptor);
            tokio::spawn(async move {
                let served = match acceptor {
                    None => handle(stream, &shared).await,
                    Some(acceptor) => {
                        match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await
                        {
                            Ok(Ok(stream)) => handle(stream, &shared).await,
                            Ok(Err(e)) => Err(HttpError::Tls(format!("TLS handshake failed: {e}"))),
                            Err(_) => Err(HttpError::Tls("TLS handshake timed out".into())),
                        }
                    }
                };
                if let Err(e) = served {
                    tracing::debug!(%peer, "agent: connection: {e}");
                }
            });
        }
    }
}

/// Serves until a termination signal.
pub async fn serve(args: ServeArgs) -> std::io::Result<()> {
    let server = Server::bind(args).await?;
    let tls = server.is_tls();
    tracing::info!(address = %server.local_addr()?, tls, "agent listening");
    tokio::select! {
        r = server.run() => r,
        _ = lagless_serve::until_terminated() => Ok(()),
    }
}

/// Serves one request. The buffered reader writes through to the connection, so it is the
/// writer too.
async fn handle(stream: impl Conn, shared: &RequestContext) -> Result<(), HttpError> {
    let mut conn = BufReader::new(stream);
    let read = async {
        // A TLS client (a ClientHello record) is answered at once, not left waiting for a
        // line end that may never come.
        if conn.fill_buf().await?.first() == Some(&0x16) {
            return Err(HttpError::TlsHello);
        }
        http::read_head(&mut conn).await
    };
    let request = match tokio::time::timeout(HEAD_TIMEOUT, read).await {
        Err(_) => return Ok(respond(&mut conn, 408, "Request Timeout", "").await?),
        Ok(Err(HttpError::Io(e))) => return Err(HttpError::Io(e)),
        Ok(Err(e)) => Err(e),
        Ok(Ok(head)) => http::parse_request(&head),
    };
    let request = match request {
        Ok(request) => request,
        Err(e) => return Ok(respond(&mut conn, 400, "Bad Request", &format!("{e}\n")).await?),
    };
    match (request.method.as_str(), request.path.as_str()) {
        ("GET", "/healthz") => {
            let port = shared.args.mysql_port;
            if TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                respond(&mut conn, 200, "OK", "ok\n").await?;
            } else {
                respond(&mut conn, 503, "Service Unavailable", "no server\n").await?;
            }
        }
        ("GET", "/backup") => {
            if !authorized(&request, shared, &mut conn).await? {
                return Ok(());
            }
            let Ok(_permit) = shared.backups.try_acquire() else {
                respond(
                    &mut conn,
                    503,
                    "Service Unavailable",
                    "a backup is running\n",
                )
                .await?;
                return Ok(());
            };
            backup(&mut conn, shared).await?;
        }
        ("POST", "/reseed") => {
            if !authorized(&request, shared, &mut conn).await? {
                return Ok(());
            }
            // The donor the operator chose, if any: `donor=host:port`, tried first by the copy.
            let donor = match request.query.as_deref().map(donor_of) {
                None => String::new(),
                Some(Some(donor)) => format!("{donor}\n"),
                Some(None) => {
                    let body = "the query must be donor=<host>:<port>\n";
                    respond(&mut conn, 400, "Bad Request", body).await?;
                    return Ok(());
                }
            };
            let marker = shared.args.datadir.join(super::RESEED_MARKER);
            match write_durably(&marker, donor.as_bytes()).await {
                Ok(()) => {
                    tracing::warn!(marker = %marker.display(), "agent: data marked for a re-seed at the next pod start");
                    respond(&mut conn, 200, "OK", "marked for a re-seed\n").await?;
                }
                Err(e) => {
                    tracing::error!(marker = %marker.display(), "agent: cannot mark for a re-seed: {e}");
                    let body = format!("{}: {e}\n", marker.display());
                    respond(&mut conn, 500, "Internal Server Error", &body).await?;
                }
            }
        }
        ("DELETE", "/reseed") => {
            if !authorized(&request, shared, &mut conn).await? {
                return Ok(());
            }
            // The data is copied afresh only in the pod's init step, before this agent runs:
            // removing the mark here never cuts a copy short.
            let marker = shared.args.datadir.join(super::RESEED_MARKER);
            match tokio::fs::remove_file(&marker).await {
                Ok(()) => {
                    tracing::info!(marker = %marker.display(), "agent: re-seed mark removed");
                    respond(&mut conn, 200, "OK", "unmarked\n").await?;
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    respond(&mut conn, 200, "OK", "not marked\n").await?;
                }
                Err(e) => {
                    let body = format!("{}: {e}\n", marker.display());
                    respond(&mut conn, 500, "Internal Server Error", &body).await?;
                }
            }
        }
        (_, "/healthz" | "/backup" | "/reseed") => {
            respond(&mut conn, 405, "Method Not Allowed", "").await?;
        }
        _ => respond(&mut conn, 404, "Not Found", "").await?,
    }
    Ok(())
}

/// Writes `path` and syncs it and its directory before returning: the operator deletes the
/// pod once this answers, and a crash must not lose the mark.
async fn write_durably(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = tokio::fs::File::create(path).await?;
    file.write_all(bytes).await?;
    file.sync_all().await?;
    if let Some(dir) = path.parent() {
        tokio::fs::File::open(dir).await?.sync_all().await?;
    }
    Ok(())
}

/// The `http://host:port` of a `donor=host:port` query: a DNS name or address and a port,
/// nothing else.
fn donor_of(query: &str) -> Option<String> {
    let value = query.strip_prefix("donor=")?;
    let (host, port) = value.rsplit_once(':')?;
    let host_ok = !host.is_empty()
        && host.len() <= 253
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
    let port: u16 = port.parse().ok().filter(|p| *p != 0)?;
    host_ok.then(|| format!("http://{host}:{port}"))
}

/// Whether the request carries the token; answers 401 when it does not. An unreadable token
/// file authorizes nobody.
async fn authorized(
    request: &http::Request,
    shared: &RequestContext,
    write: &mut (impl AsyncWrite + Unpin),
) -> std::io::Result<bool> {
    let token = tokio::fs::read_to_string(&shared.args.token_file)
        .await
        .unwrap_or_default();
    if http::authorized(request.authorization.as_deref(), token.trim()) {
        return Ok(true);
    }
    tracing::warn!(path = %request.path, "agent: a request without the right token");
    respond(write, 401, "Unauthorized", "unauthorized\n").await?;
    Ok(false)
}

async fn respond(
    to: &mut (impl AsyncWrite + Unpin),
    status: u16,
    reason: &str,
    body: &str,
) -> std::io::Result<()> {
    http::respond(to, status, reason, body).await
}

/// Streams a backup as a chunked body; a failed backup ends the body without its last chunk.
async fn backup(
    to: &mut (impl AsyncWrite + Unpin),
    shared: &RequestContext,
) -> std::io::Result<()> {
    let args = &shared.args;
    let started = Instant::now();
    let donor = Donor {
        host: "127.0.0.1".into(),
        port: args.mysql_port,
        datadir: args.datadir.clone(),
        tls_ca: args.tls_ca.clone(),
    };
    let creds = Credentials {
        user: args.admin_user.clone(),
        password: args.admin_password.clone(),
    };
    let scratch: PathBuf = args
        .scratch_dir
        .clone()
        .unwrap_or_else(std::env::temp_dir)
        .join(format!(
            "lagless-agent-backup-{}-{}",
            std::process::id(),
            shared.scratch_seq.fetch_add(1, Ordering::Relaxed)
        ));
    // Made afresh and private: it receives the account's option file.
    let mut stream = match backup_stream(&donor, &creds, &scratch).await {
        Ok(stream) => stream,
        Err(e) => {
            tracing::error!("agent: backup could not start: {e}");
            return respond(to, 500, "Internal Server Error", &format!("{e}\n")).await;
        }
    };
    to.write_all(
        b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\
          Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
    )
    .await?;
    let sent = http::write_chunks(&mut stream.stdout, to).await;
    // Finished even when the caller went away, so the backup process is reaped.
    let finished = stream.finish().await;
    let elapsed = started.elapsed();
    let bytes = match (sent, finished) {
        (Ok(bytes), Ok(())) => bytes,
        (Err(e), _) => {
            tracing::error!(?elapsed, "agent: backup not delivered: {e}");
            return Err(e);
        }
        (Ok(bytes), Err(e)) => {
            tracing::error!(bytes, ?elapsed, "agent: backup failed: {e}");
            // No last chunk: the caller sees a cut body.
            return to.shutdown().await;
        }
    };
    http::finish_chunked(to).await?;
    let mb_s = bytes as f64 / 1_048_576.0 / elapsed.as_secs_f64().max(1e-9);
    tracing::info!(bytes, ?elapsed, mb_s, "agent: backup streamed");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::donor_of;

    #[test]
    fn only_a_host_and_port_make_a_donor() {
        assert_eq!(
            donor_of("donor=db-1.db-headless.ns.svc:3307").as_deref(),
            Some("http://db-1.db-headless.ns.svc:3307")
        );
        assert_eq!(
            donor_of("donor=10.0.0.7:3307").as_deref(),
            Some("http://10.0.0.7:3307")
        );
        for bad in [
            "",
            "donor=",
            "donor=host",
            "donor=:3307",
            "donor=host:0",
            "donor=host:99999",
            "donor=ho st:1",
            "donor=a/b:1",
            "donor=user@host:1",
            "other=host:1",
        ] {
            assert_eq!(donor_of(bad), None, "{bad}");
        }
    }
}
