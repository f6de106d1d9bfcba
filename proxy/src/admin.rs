//! Admin HTTP listener: health, readiness, metrics, the current topology and the query
//! digests, and (with a token) new topologies pushed by the operator.
//!
//! A deliberately small HTTP/1.1 server: one request per connection, `Connection: close`,
//! GET and HEAD, and `PUT /topology` with a bounded body (see [`push`]). The proxy ships as a sidecar, so a full HTTP stack is not worth its
//! weight here. Every connection runs in its own task and is bounded in size and time, so a
//! misbehaving client cannot hold resources for long.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, warn};

use crate::digest::Digests;
use crate::metrics::Metrics;

mod digests;
mod push;

pub use push::{Push, authorized};

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const TEXT: &str = "text/plain; charset=utf-8";
const JSON: &str = "application/json";

/// Pause after a failed accept, so running out of descriptors does not spin the loop.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Request bytes to swallow after responding. Closing a socket with unread input makes
/// the kernel send a reset, which can destroy the response before the client reads it.
const LINGER_BYTES: usize = 64 * 1024;

/// What the admin endpoints report about the proxy.
pub trait AdminView: Send + Sync {
    /// `Ok` when the proxy should receive traffic, otherwise why not (e.g. shutting down,
    /// no valid topology).
    fn readiness(&self) -> Result<(), String>;

    /// The topology in use, as a JSON document.
    fn topology_json(&self) -> String;
}

/// Limits applied to each admin connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdminConfig {
    /// Largest request head accepted; larger ones get 431.
    pub max_head_bytes: usize,
    /// Time allowed to receive the request head, and separately to send the response;
    /// the connection is dropped when either runs out.
    pub io_timeout: Duration,
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            max_head_bytes: 8 * 1024,
            io_timeout: Duration::from_secs(5),
        }
    }
}

/// Everything the admin listener needs to answer requests.
pub struct AdminState {
    metrics: Arc<Metrics>,
    view: Arc<dyn AdminView>,
    config: AdminConfig,
    push: Option<Push>,
    digests: Option<Arc<Digests>>,
}

impl AdminState {
    /// State with the default limits.
    pub fn new(metrics: Arc<Metrics>, view: Arc<dyn AdminView>) -> Self {
        Self {
            metrics,
            view,
            config: AdminConfig::default(),
            push: None,
            digests: None,
        }
    }

    /// Serves `GET /digests` and `DELETE /digests` from this table.
    pub fn with_digests(mut self, digests: Arc<Digests>) -> Self {
        self.digests = Some(digests);
        self
    }

    /// Accepts topologies pushed to `PUT /topology` with this token.
    pub fn with_push(mut self, push: Push) -> Self {
        self.push = Some(push);
        self
    }

    /// Replaces the connection limits.
    pub fn with_config(mut self, config: AdminConfig) -> Self {
        self.config = config;
        self
    }
}

/// Serves admin requests on `listener` until `shutdown` completes, then closes it.
///
/// Connections already accepted finish on their own; they are bounded by the timeouts.
pub async fn serve(
    listener: TcpListener,
    state: Arc<AdminState>,
    shutdown: impl Future<Output = ()>,
) {
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    tokio::spawn(handle_connection(stream, peer, Arc::clone(&state)));
                }
                Err(err) => {
                    warn!(%err, "admin listener failed to accept");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                }
            },
        }
    }
    debug!("admin listener stopped");
}

/// What reading a request head produced.
#[derive(Debug, PartialEq, Eq)]
enum Head {
    /// The head, up to and including the blank line that ends it, and what was read after
    /// it (the start of a body).
    Complete(Vec<u8>, Vec<u8>),
    /// The limit was reached before the blank line.
    TooLarge,
    /// The client closed the connection first.
    Closed,
}

async fn handle_connection(mut stream: TcpStream, peer: SocketAddr, state: Arc<AdminState>) {
    if let Err(err) = stream.set_nodelay(true) {
        debug!(%peer, %err, "admin connection: cannot set TCP_NODELAY");
    }
    let timeout = state.config.io_timeout;
    let head = read_head(&mut stream, state.config.max_head_bytes);
    let (bytes, status) = match tokio::time::timeout(timeout, head).await {
        Ok(Ok(Head::Complete(head, rest))) if push::is_push(&head) => {
            let response = push::handle(&state, &head, rest, &mut stream, peer).await;
            (response.encode(false), response.status)
        }
        Ok(Ok(Head::Complete(head, _))) => respond(&state, &head, peer),
        Ok(Ok(Head::TooLarge)) => {
            debug!(%peer, status = 431, "admin request head too large");
            (Response::too_large().encode(false), 431)
        }
        Ok(Ok(Head::Closed)) => {
            debug!(%peer, "admin connection closed before a request");
            return;
        }
        Ok(Err(err)) => {
            warn!(%peer, %err, "admin connection: read failed");
            return;
        }
        Err(_) => {
            warn!(%peer, "admin connection: request head timed out");
            return;
        }
    };
    match tokio::time::timeout(timeout, send(&mut stream, &bytes)).await {
        // The response is out; how the client closes is no longer worth a warning.
        Ok(Ok(())) => {
            let _ = tokio::time::timeout(timeout, linger(&mut stream)).await;
        }
        Ok(Err(err)) => warn!(%peer, %err, status, "admin connection: write failed"),
        Err(_) => warn!(%peer, status, "admin connection: response timed out"),
    }
}

/// Builds the encoded response to a complete head, and its status for logging.
fn respond(state: &AdminState, head: &[u8], peer: SocketAddr) -> (Vec<u8>, u16) {
    let Some(request) = parse_request_line(head) else {
        debug!(%peer, status = 400, "admin request malformed");
        return (Response::bad_request().encode(false), 400);
    };
    let response = if request.path == "/digests" {
        digests::respond(state, &request, head)
    } else {
        route(state, request.method, request.path)
    };
    debug!(
        %peer,
        method = request.method,
        path = request.path,
        status = response.status,
        "admin request"
    );
    let head_only = request.method == "HEAD";
    (response.encode(head_only), response.status)
}

/// Reads until the blank line that ends the head, at most `limit` bytes.
async fn read_head<R: AsyncRead + Unpin>(reader: &mut R, limit: usize) -> io::Result<Head> {
    let mut buf = vec![0; limit];
    let mut filled = 0;
    while filled < buf.len() {
        let n = reader.read(&mut buf[filled..]).await?;
        if n == 0 {
            return Ok(Head::Closed);
        }
        // The terminator may straddle the previous read.
        let from = filled.saturating_sub(3);
        filled += n;
        if let Some(end) = find_head_end(&buf[from..filled]) {
            let rest = buf[from + end..filled].to_vec();
            buf.truncate(from + end);
            return Ok(Head::Complete(buf, rest));
        }
    }
    Ok(Head::TooLarge)
}

/// The length of the head in `buf`, ending with `\r\n\r\n` or a bare `\n\n`.
fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.iter().enumerate().find_map(|(i, &b)| {
        if b != b'\n' {
            return None;
        }
        match (buf.get(i + 1), buf.get(i + 2)) {
            (Some(b'\n'), _) => Some(i + 2),
            (Some(b'\r'), Some(b'\n')) => Some(i + 3),
            _ => None,
        }
    })
}

/// The parts of a request line the router needs.
#[derive(Debug, PartialEq, Eq)]
struct Request<'a> {
    method: &'a str,
    /// The target without its query string.
    path: &'a str,
    /// The query string, without its `?` (empty when there is none).
    query: &'a str,
}

/// Parses `METHOD SP origin-form SP HTTP/1.x`; `None` when malformed.
fn parse_request_line(head: &[u8]) -> Option<Request<'_>> {
    let end = head.iter().position(|&b| b == b'\n')?;
    let line = head.get(..end)?;
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || !is_token(method) || !is_http1(version) {
        return None;
    }
    if !target.starts_with('/') || !target.bytes().all(|b| b.is_ascii_graphic()) {
        return None;
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    Some(Request {
        method,
        path,
        query,
    })
}

fn is_http1(version: &str) -> bool {
    matches!(version, "HTTP/1.0" | "HTTP/1.1")
}

/// An HTTP token (RFC 9110, section 5.6.2), as methods must be.
fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Answers a well-formed request. Unknown paths are 404 whatever the method, since
/// "method not allowed" would imply the resource exists.
fn route(state: &AdminState, method: &str, path: &str) -> Response {
    let known = matches!(path, "/healthz" | "/readyz" | "/metrics" | "/topology");
    if !known {
        return Response::text(404, "not found\n");
    }
    if method != "GET" && method != "HEAD" {
        return Response::method_not_allowed();
    }
    match path {
        "/healthz" => Response::text(200, "ok\n"),
        "/readyz" => readiness(state.view.as_ref()),
        "/metrics" => Response::new(200, OPENMETRICS, state.metrics.encode()),
        _ => Response::new(200, JSON, state.view.topology_json()),
    }
}

fn readiness(view: &dyn AdminView) -> Response {
    match view.readiness() {
        Ok(()) => Response::text(200, "ready\n"),
        Err(reason) => Response::new(503, TEXT, format!("not ready: {reason}\n")),
    }
}

/// A complete response; the body is always sent with its length.
#[derive(Debug)]
struct Response {
    status: u16,
    content_type: &'static str,
    /// The methods an `Allow` header names (405 responses).
    allow: Option<&'static str>,
    body: String,
}

impl Response {
    fn new(status: u16, content_type: &'static str, body: String) -> Self {
        Self {
            status,
            content_type,
            allow: None,
            body,
        }
    }

    fn text(status: u16, body: &str) -> Self {
        Self::new(status, TEXT, body.to_owned())
    }

    fn bad_request() -> Self {
        Self::text(400, "bad request\n")
    }

    fn too_large() -> Self {
        Self::text(431, "request header fields too large\n")
    }

    fn method_not_allowed() -> Self {
        Self::allowing("GET, HEAD")
    }

    fn allowing(methods: &'static str) -> Self {
        Self {
            allow: Some(methods),
            ..Self::text(405, "method not allowed\n")
        }
    }

    /// The bytes on the wire; a HEAD response keeps the headers, with the length the body
    /// would have, and drops the body.
    fn encode(&self, head_only: bool) -> Vec<u8> {
        let allow = self
            .allow
            .map(|methods| format!("Allow: {methods}\r\n"))
            .unwrap_or_default();
        let head = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{allow}\
             Cache-Control: no-store\r\nConnection: close\r\n\r\n",
            self.status,
            reason_phrase(self.status),
            self.content_type,
            self.body.len(),
        );
        let mut out = head.into_bytes();
        if !head_only {
            out.extend_from_slice(self.body.as_bytes());
        }
        out
    }
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        411 => "Length Required",
        413 => "Content Too Large",
        422 => "Unprocessable Content",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "",
    }
}

/// Writes the whole response and closes our side.
async fn send(stream: &mut TcpStream, bytes: &[u8]) -> io::Result<()> {
    stream.write_all(bytes).await?;
    stream.shutdown().await
}

/// Drains what the client still sends until it closes, so closing the socket does not
/// turn into a reset that destroys a response the client has not read yet.
async fn linger(stream: &mut TcpStream) -> io::Result<()> {
    let mut sink = [0; 4096];
    let mut drained = 0;
    while drained < LINGER_BYTES {
        match stream.read(&mut sink).await? {
            0 => break,
            n => drained += n,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
