//! The little HTTP/1.1 the agent speaks: one request per connection, a request head of bounded
//! size, responses closed by the server, the backup as a chunked body (an abrupt end without
//! the last chunk tells the client the backup failed).

use tokio::io::{
    AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt,
};

/// The most bytes a request or response head may take.
pub const MAX_HEAD: usize = 8 * 1024;

/// The most header lines in a head.
pub const MAX_HEADERS: usize = 64;

/// Why a head or a body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("the head is larger than {MAX_HEAD} bytes")]
    TooLarge,
    #[error("more than {MAX_HEADERS} header lines")]
    TooManyHeaders,
    #[error("malformed: {0}")]
    Malformed(&'static str),
    #[error("the connection closed early")]
    Truncated,
    #[error("no progress for {} s", STALL.as_secs())]
    Stalled,
    /// The TLS handshake failed (the message says with whom and why).
    #[error("{0}")]
    Tls(String),
    #[error("the agent answered with TLS: it needs a TLS client (--tls-ca)")]
    TlsAnswer,
    #[error("a TLS handshake where an HTTP request belongs")]
    TlsHello,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// A parsed request head: only what the agent looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub path: String,
    /// What follows `?` in the request target, if anything.
    pub query: Option<String>,
    /// The `Authorization` header's value, if any.
    pub authorization: Option<String>,
}

/// A parsed response head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub chunked: bool,
}

/// Reads a head (up to the empty line) of at most [`MAX_HEAD`] bytes.
pub async fn read_head(from: &mut (impl AsyncBufRead + Unpin)) -> Result<Vec<u8>, HttpError> {
    let mut head = Vec::new();
    loop {
        let before = head.len();
        // `take` bounds a line that never ends.
        let n = (&mut *from)
            .take((MAX_HEAD + 1 - before) as u64)
            .read_until(b'\n', &mut head)
            .await?;
        if n == 0 {
            return Err(HttpError::Truncated);
        }
        if head.len() > MAX_HEAD {
            return Err(HttpError::TooLarge);
        }
        let line = &head[before..];
        if line == b"\r\n" || line == b"\n" {
            return Ok(head);
        }
    }
}

/// The lines of a head without their line ends, the empty last one excluded.
fn lines(head: &[u8]) -> Result<Vec<&str>, HttpError> {
    let text = std::str::from_utf8(head).map_err(|_| HttpError::Malformed("not UTF-8"))?;
    let lines: Vec<&str> = text
        .split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .take_while(|l| !l.is_empty())
        .collect();
    if lines.len() > MAX_HEADERS + 1 {
        return Err(HttpError::TooManyHeaders);
    }
    Ok(lines)
}

fn header(line: &str) -> Result<(&str, &str), HttpError> {
    let (name, value) = line
        .split_once(':')
        .ok_or(HttpError::Malformed("a header line without a colon"))?;
    if name.is_empty() || name.bytes().any(|b| !b.is_ascii_graphic()) {
        return Err(HttpError::Malformed("a bad header name"));
    }
    Ok((name, value.trim()))
}

/// Parses a request head read by [`read_head`].
pub fn parse_request(head: &[u8]) -> Result<Request, HttpError> {
    if head.len() > MAX_HEAD {
        return Err(HttpError::TooLarge);
    }
    let lines = lines(head)?;
    let (first, headers) = lines
        .split_first()
        .ok_or(HttpError::Malformed("no request line"))?;
    let mut parts = first.split(' ');
    let (Some(method), Some(path), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HttpError::Malformed(
            "the request line is not METHOD PATH VERSION",
        ));
    };
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(HttpError::Malformed("a bad method"));
    }
    if !path.starts_with('/') {
        return Err(HttpError::Malformed("a bad path"));
    }
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Err(HttpError::Malformed("not HTTP/1.x"));
    }
    let mut authorization = None;
    for line in headers {
        let (name, value) = header(line)?;
        if name.eq_ignore_ascii_case("authorization") {
            if authorization.is_some() {
                return Err(HttpError::Malformed("two Authorization headers"));
            }
            authorization = Some(value.to_string());
        }
    }
    let (path, query) = match path.split_once('?') {
        Some((path, query)) => (path, Some(query.to_string())),
        None => (path, None),
    };
    Ok(Request {
        method: method.to_string(),
        path: path.to_string(),
        query,
        authorization,
    })
}

/// Parses a response head read by [`read_head`].
pub fn parse_response(head: &[u8]) -> Result<Response, HttpError> {
    let lines = lines(head)?;
    let (first, headers) = lines
        .split_first()
        .ok_or(HttpError::Malformed("no status line"))?;
    let mut parts = first.splitn(3, ' ');
    let (Some(version), Some(status)) = (parts.next(), parts.next()) else {
        return Err(HttpError::Malformed(
            "the status line is not VERSION STATUS",
        ));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(HttpError::Malformed("not HTTP/1.x"));
    }
    let status = status
        .parse()
        .map_err(|_| HttpError::Malformed("a bad status"))?;
    let mut chunked = false;
    for line in headers {
        let (name, value) = header(line)?;
        if name.eq_ignore_ascii_case("transfer-encoding") {
            chunked = value.eq_ignore_ascii_case("chunked");
        }
    }
    Ok(Response { status, chunked })
}

/// Whether an `Authorization` value carries the token: the proxy's own check, shared.
pub use lagless_core::bearer::authorized;

/// Writes a short response with a text body and no keep-alive.
pub async fn respond(
    to: &mut (impl AsyncWrite + Unpin),
    status: u16,
    reason: &str,
    body: &str,
) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    to.write_all(head.as_bytes()).await?;
    to.shutdown().await
}

/// The largest chunk size line accepted (hex digits plus extensions).
const MAX_CHUNK_LINE: u64 = 128;

/// A body that makes no progress for this long is given up: a peer that vanished without a
/// reset (a lost node) must not hold a copy, or the donor's single backup slot, forever.
pub const STALL: std::time::Duration = std::time::Duration::from_secs(120);

/// `io` within [`STALL`].
async fn unstalled<T>(
    io: impl std::future::Future<Output = std::io::Result<T>>,
) -> Result<T, HttpError> {
    tokio::time::timeout(STALL, io)
        .await
        .map_err(|_| HttpError::Stalled)?
        .map_err(HttpError::Io)
}

/// Copies a chunked body from `from` to `to`; an end before the last chunk is an error.
pub async fn copy_chunked(
    from: &mut (impl AsyncBufRead + Unpin),
    to: &mut (impl AsyncWrite + Unpin),
) -> Result<u64, HttpError> {
    let mut total = 0u64;
    let mut line = Vec::new();
    loop {
        line.clear();
        unstalled(
            (&mut *from)
                .take(MAX_CHUNK_LINE)
                .read_until(b'\n', &mut line),
        )
        .await?;
        if !line.ends_with(b"\n") {
            return Err(if line.len() as u64 >= MAX_CHUNK_LINE {
                HttpError::Malformed("a chunk size line too long")
            } else {
                HttpError::Truncated
            });
        }
        let text = std::str::from_utf8(&line).map_err(|_| HttpError::Malformed("chunk size"))?;
        let hex = text.trim().split(';').next().unwrap_or_default();
        let size = u64::from_str_radix(hex, 16).map_err(|_| HttpError::Malformed("chunk size"))?;
        if size == 0 {
            // Trailers are not sent by the agent; the final line end is enough.
            return Ok(total);
        }
        let copied = unstalled(tokio::io::copy(&mut (&mut *from).take(size), to)).await?;
        if copied != size {
            return Err(HttpError::Truncated);
        }
        total += size;
        let mut end = [0u8; 2];
        match unstalled(from.read_exact(&mut end)).await {
            Ok(_) => {}
            Err(HttpError::Stalled) => return Err(HttpError::Stalled),
            Err(_) => return Err(HttpError::Truncated),
        }
        if &end != b"\r\n" {
            return Err(HttpError::Malformed("a chunk without its line end"));
        }
    }
}

/// Reads `from` to its end and writes it to `to` as chunks, counting the bytes; the last
/// chunk is not written (see [`finish_chunked`]).
pub async fn write_chunks(
    from: &mut (impl AsyncRead + Unpin),
    to: &mut (impl AsyncWrite + Unpin),
) -> std::io::Result<u64> {
    let mut total = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            return Ok(total);
        }
        let chunk = async {
            to.write_all(format!("{n:x}\r\n").as_bytes()).await?;
            to.write_all(&buf[..n]).await?;
            to.write_all(b"\r\n").await
        };
        tokio::time::timeout(STALL, chunk).await.map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::TimedOut, "the reader stopped reading")
        })??;
        total += n as u64;
    }
}

/// The last chunk: the body is complete.
pub async fn finish_chunked(to: &mut (impl AsyncWrite + Unpin)) -> std::io::Result<()> {
    to.write_all(b"0\r\n\r\n").await?;
    to.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn head_of(bytes: &[u8]) -> Result<Vec<u8>, HttpError> {
        read_head(&mut tokio::io::BufReader::new(bytes)).await
    }

    #[tokio::test]
    async fn a_request_with_a_bearer_token() {
        let raw =
            b"GET /backup?x=1 HTTP/1.1\r\nHost: a\r\nauthorization: Bearer s3cret\r\n\r\nrest";
        let head = head_of(raw).await.unwrap();
        assert!(head.ends_with(b"\r\n\r\n"));
        let req = parse_request(&head).unwrap();
        assert_eq!(req.method, "GET");
        assert_eq!(req.path, "/backup");
        assert_eq!(req.query.as_deref(), Some("x=1"));
        assert_eq!(req.authorization.as_deref(), Some("Bearer s3cret"));
        assert!(authorized(req.authorization.as_deref(), "s3cret"));
    }

    #[tokio::test]
    async fn heads_over_the_limit_are_refused() {
        let mut raw = b"GET / HTTP/1.1\r\nX: ".to_vec();
        raw.extend(std::iter::repeat_n(b'a', MAX_HEAD));
        raw.extend_from_slice(b"\r\n\r\n");
        assert!(matches!(head_of(&raw).await, Err(HttpError::TooLarge)));
        // One line that never ends.
        let endless = vec![b'G'; 3 * MAX_HEAD];
        assert!(matches!(head_of(&endless).await, Err(HttpError::TooLarge)));
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..=MAX_HEADERS {
            many.extend_from_slice(format!("h{i}: v\r\n").as_bytes());
        }
        many.extend_from_slice(b"\r\n");
        let head = head_of(&many).await.unwrap();
        assert!(matches!(
            parse_request(&head),
            Err(HttpError::TooManyHeaders)
        ));
    }

    #[tokio::test]
    async fn truncated_and_malformed_requests_are_errors() {
        assert!(matches!(
            head_of(b"GET / HTTP/1.1\r\nHost: a\r\n").await,
            Err(HttpError::Truncated)
        ));
        for bad in [
            &b"GET /\r\n\r\n"[..],
            b"GET / HTTP/1.1 extra\r\n\r\n",
            b"get / HTTP/1.1\r\n\r\n",
            b"GET backup HTTP/1.1\r\n\r\n",
            b"GET / HTTP/2\r\n\r\n",
            b"GET / HTTP/1.1\r\nno colon\r\n\r\n",
            b"GET / HTTP/1.1\r\nbad name: v\r\n\r\n",
            b"GET / HTTP/1.1\r\nAuthorization: Bearer a\r\nAuthorization: Bearer b\r\n\r\n",
            b"GET / HTTP/1.1\r\nX: \xff\r\n\r\n",
            b"\r\n",
        ] {
            assert!(
                matches!(parse_request(bad), Err(HttpError::Malformed(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn tokens_must_match_exactly() {
        assert!(authorized(Some("Bearer abc"), "abc"));
        for wrong in [
            None,
            Some("abc"),
            Some("Basic abc"),
            Some("Bearer ab"),
            Some("Bearer abcd"),
            Some("Bearer abd"),
            Some("Bearer "),
        ] {
            assert!(!authorized(wrong, "abc"), "{wrong:?}");
        }
        assert!(!authorized(Some("Bearer "), ""));
    }

    #[tokio::test]
    async fn chunked_bodies_round_trip_and_a_cut_is_detected() {
        let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        let mut wire = Vec::new();
        let sent = write_chunks(&mut &data[..], &mut wire).await.unwrap();
        assert_eq!(sent, data.len() as u64);
        let cut = wire.clone();
        finish_chunked(&mut wire).await.unwrap();
        let mut out = Vec::new();
        let got = copy_chunked(&mut tokio::io::BufReader::new(&wire[..]), &mut out)
            .await
            .unwrap();
        assert_eq!((got, out == data), (data.len() as u64, true));
        let mut out = Vec::new();
        assert!(matches!(
            copy_chunked(&mut tokio::io::BufReader::new(&cut[..]), &mut out).await,
            Err(HttpError::Truncated)
        ));
        let mut out = Vec::new();
        let short = &wire[..wire.len() / 2];
        assert!(
            copy_chunked(&mut tokio::io::BufReader::new(short), &mut out)
                .await
                .is_err()
        );
    }

    #[test]
    fn response_heads() {
        let r = parse_response(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap();
        assert_eq!(
            r,
            Response {
                status: 200,
                chunked: true
            }
        );
        let r = parse_response(b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 3\r\n\r\n").unwrap();
        assert_eq!(
            r,
            Response {
                status: 401,
                chunked: false
            }
        );
        assert!(parse_response(b"SSH-2.0\r\n\r\n").is_err());
    }
}
