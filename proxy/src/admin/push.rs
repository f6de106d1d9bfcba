//! `PUT /topology`: the operator pushes each new topology to every proxy as soon as it publishes
//! it, because a mounted ConfigMap can reach a pod a minute late, which would be a minute of
//! writes sent to a demoted primary. The document is judged by the same epoch rule as the file
//! (see [`TopologyInbox`]); the ConfigMap stays the durable source.
//!
//! Only with a token: `Authorization: Bearer <token>`, compared in constant time. Without one
//! configured the endpoint does not exist (405, as before). The body is bounded and must come
//! within the connection's timeout.

use std::net::SocketAddr;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tracing::{debug, info, warn};

use super::{AdminState, Response};
use crate::topology::{ReloadOutcome, TopologyInbox};

/// The largest topology document accepted (a few hundred bytes per member).
pub const MAX_BODY: usize = 64 * 1024;

/// Pushing, when configured: the token and where documents go.
#[derive(Clone)]
pub struct Push {
    token: String,
    inbox: TopologyInbox,
}

impl std::fmt::Debug for Push {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Push").field("inbox", &self.inbox).finish()
    }
}

impl Push {
    /// `None` for an empty token: pushing stays off rather than open to anyone.
    pub fn new(token: &str, inbox: TopologyInbox) -> Option<Self> {
        let token = token.trim();
        (!token.is_empty()).then(|| Self {
            token: token.to_string(),
            inbox,
        })
    }
}

impl Push {
    /// Whether the request `head` carries the token (other endpoints that change state ask
    /// for it too when it is configured).
    pub(super) fn authorizes(&self, head: &str) -> bool {
        authorized(header(head, "authorization"), &self.token)
    }
}

/// Whether `head` asks for `PUT /topology` (a well-formed request line).
pub fn is_push(head: &[u8]) -> bool {
    super::parse_request_line(head).is_some_and(|r| r.method == "PUT" && r.path == "/topology")
}

/// Reads the body and offers it. Never fails the connection itself: every outcome is a status.
pub async fn handle(
    state: &AdminState,
    head: &[u8],
    rest: Vec<u8>,
    stream: &mut TcpStream,
    peer: SocketAddr,
) -> Response {
    let Some(push) = &state.push else {
        return Response::method_not_allowed();
    };
    let Ok(head) = std::str::from_utf8(head) else {
        return Response::bad_request();
    };
    if !authorized(header(head, "authorization"), &push.token) {
        warn!(%peer, "topology push refused: wrong or missing token");
        return Response::text(401, "unauthorized\n");
    }
    let Some(length) = header(head, "content-length").and_then(|v| v.parse::<usize>().ok()) else {
        return Response::text(411, "length required\n");
    };
    if length > MAX_BODY {
        return Response::text(413, "topology too large\n");
    }
    let body = match read_body(stream, rest, length, state.config.io_timeout).await {
        Some(body) => body,
        None => return Response::bad_request(),
    };
    let outcome = push.inbox.offer(&body);
    debug!(%peer, outcome = outcome.as_str(), "topology pushed");
    match outcome {
        ReloadOutcome::Applied => {
            info!(%peer, "pushed topology applied");
            Response::text(200, "applied\n")
        }
        // Not newer than the one in force: nothing to do, and nothing wrong either.
        ReloadOutcome::Ignored => Response::text(200, "kept\n"),
        ReloadOutcome::Invalid => Response::text(422, "invalid topology\n"),
    }
}

/// The body: what came with the head, then the rest, `length` bytes in all.
async fn read_body(
    stream: &mut TcpStream,
    mut body: Vec<u8>,
    length: usize,
    timeout: std::time::Duration,
) -> Option<Vec<u8>> {
    if body.len() > length {
        return None;
    }
    let read = async {
        let mut buf = vec![0u8; 8 * 1024];
        while body.len() < length {
            let want = (length - body.len()).min(buf.len());
            let n = stream.read(&mut buf[..want]).await.ok()?;
            if n == 0 {
                return None;
            }
            body.extend_from_slice(&buf[..n]);
        }
        Some(body)
    };
    tokio::time::timeout(timeout, read).await.ok().flatten()
}

/// A header's value, by case-insensitive name.
fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
    })
}

pub use lagless_core::bearer::authorized;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_found_by_any_case() {
        let head =
            "PUT /topology HTTP/1.1\r\ncontent-LENGTH: 12\r\nAuthorization: Bearer t\r\n\r\n";
        assert_eq!(header(head, "Content-Length"), Some("12"));
        assert_eq!(header(head, "authorization"), Some("Bearer t"));
        assert_eq!(header(head, "host"), None);
        // The request line is no header.
        assert_eq!(
            header("PUT /topology: x HTTP/1.1\r\n\r\n", "put /topology"),
            None
        );
    }

    #[test]
    fn only_the_exact_bearer_token_is_authorized() {
        assert!(authorized(Some("Bearer s3cret"), "s3cret"));
        assert!(!authorized(Some("Bearer s3cre"), "s3cret"));
        assert!(!authorized(Some("Bearer s3cretx"), "s3cret"));
        assert!(!authorized(Some("Basic s3cret"), "s3cret"));
        assert!(!authorized(None, "s3cret"));
        assert!(!authorized(Some("Bearer "), "s3cret"));
    }

    #[test]
    fn only_puts_to_the_topology_are_pushes() {
        assert!(is_push(b"PUT /topology HTTP/1.1\r\n\r\n"));
        assert!(!is_push(b"GET /topology HTTP/1.1\r\n\r\n"));
        assert!(!is_push(b"PUT /topologyx HTTP/1.1\r\n\r\n"));
    }
}
