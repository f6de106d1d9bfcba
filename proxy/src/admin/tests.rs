use std::sync::Mutex;

use proptest::prelude::*;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::*;

/// Bound on every wait in these tests, far above what any step needs.
const WAIT: Duration = Duration::from_secs(10);

struct FakeView {
    not_ready: Mutex<Option<String>>,
}

impl AdminView for FakeView {
    fn readiness(&self) -> Result<(), String> {
        match self.not_ready.lock().unwrap().clone() {
            None => Ok(()),
            Some(reason) => Err(reason),
        }
    }

    fn topology_json(&self) -> String {
        r#"{"epoch":7}"#.to_owned()
    }
}

struct Server {
    addr: SocketAddr,
    view: Arc<FakeView>,
    /// What `serve` and its connection tasks share; gone once they all are.
    state: std::sync::Weak<AdminState>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

async fn start(config: AdminConfig) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let view = Arc::new(FakeView {
        not_ready: Mutex::new(None),
    });
    let metrics = Arc::new(Metrics::new());
    metrics.topology_reload("applied");
    let state = Arc::new(AdminState::new(metrics, view.clone()).with_config(config));
    let (stop, stopped) = oneshot::channel::<()>();
    let shutdown = async move {
        let _ = stopped.await;
    };
    let weak = Arc::downgrade(&state);
    let task = tokio::spawn(serve(listener, state, shutdown));
    Server {
        addr,
        view,
        state: weak,
        stop: Some(stop),
        task,
    }
}

async fn start_default() -> Server {
    start(AdminConfig::default()).await
}

/// Sends `raw` and returns everything the server wrote before closing.
async fn exchange(addr: SocketAddr, raw: &[u8]) -> String {
    let io = async {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(raw).await.unwrap();
        let mut out = Vec::new();
        stream.read_to_end(&mut out).await.unwrap();
        out
    };
    let out = tokio::time::timeout(WAIT, io).await.unwrap();
    String::from_utf8(out).unwrap()
}

async fn get(addr: SocketAddr, path: &str) -> String {
    let raw = format!("GET {path} HTTP/1.1\r\nHost: admin\r\n\r\n");
    exchange(addr, raw.as_bytes()).await
}

fn status(response: &str) -> &str {
    response.lines().next().unwrap()
}

fn header<'a>(response: &'a str, name: &str) -> Option<&'a str> {
    let (head, _) = response.split_once("\r\n\r\n")?;
    head.lines()
        .skip(1)
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(": "))
}

fn body(response: &str) -> &str {
    response.split_once("\r\n\r\n").unwrap().1
}

/// Status, framing headers and body of a response.
fn assert_response(response: &str, status_line: &str, expected_body: &str) {
    assert_eq!(status(response), status_line, "{response}");
    assert_eq!(body(response), expected_body, "{response}");
    let length = expected_body.len().to_string();
    assert_eq!(header(response, "Content-Length"), Some(length.as_str()));
    assert_eq!(header(response, "Connection"), Some("close"));
}

#[tokio::test]
async fn healthz() {
    let server = start_default().await;
    let response = get(server.addr, "/healthz").await;
    assert_response(&response, "HTTP/1.1 200 OK", "ok\n");
    assert_eq!(header(&response, "Content-Type"), Some(TEXT));
}

#[tokio::test]
async fn query_string_is_ignored() {
    let server = start_default().await;
    let response = get(server.addr, "/healthz?verbose=1").await;
    assert_response(&response, "HTTP/1.1 200 OK", "ok\n");
}

#[tokio::test]
async fn readyz_reports_readiness_and_reason() {
    let server = start_default().await;
    let response = get(server.addr, "/readyz").await;
    assert_response(&response, "HTTP/1.1 200 OK", "ready\n");

    *server.view.not_ready.lock().unwrap() = Some("shutting down".to_owned());
    let response = get(server.addr, "/readyz").await;
    let expected = "not ready: shutting down\n";
    assert_response(&response, "HTTP/1.1 503 Service Unavailable", expected);
}

#[tokio::test]
async fn metrics_in_openmetrics_format() {
    let server = start_default().await;
    let response = get(server.addr, "/metrics").await;
    assert_eq!(status(&response), "HTTP/1.1 200 OK");
    assert_eq!(header(&response, "Content-Type"), Some(OPENMETRICS));
    let body = body(&response);
    let length = body.len().to_string();
    assert_eq!(header(&response, "Content-Length"), Some(length.as_str()));
    assert!(body.contains("lagless_topology_reloads_total{result=\"applied\"} 1\n"));
    assert!(body.ends_with("# EOF\n"));
}

#[tokio::test]
async fn topology_as_json() {
    let server = start_default().await;
    let response = get(server.addr, "/topology").await;
    assert_response(&response, "HTTP/1.1 200 OK", r#"{"epoch":7}"#);
    assert_eq!(header(&response, "Content-Type"), Some(JSON));
}

#[tokio::test]
async fn head_sends_headers_without_body() {
    let server = start_default().await;
    let response = exchange(server.addr, b"HEAD /healthz HTTP/1.1\r\n\r\n").await;
    assert_eq!(status(&response), "HTTP/1.1 200 OK");
    assert_eq!(header(&response, "Content-Length"), Some("3"));
    assert_eq!(body(&response), "");
}

#[tokio::test]
async fn unknown_path_is_404() {
    let server = start_default().await;
    let response = get(server.addr, "/nope").await;
    assert_response(&response, "HTTP/1.1 404 Not Found", "not found\n");
    let response = exchange(server.addr, b"DELETE /nope HTTP/1.1\r\n\r\n").await;
    assert_eq!(status(&response), "HTTP/1.1 404 Not Found");
}

#[tokio::test]
async fn other_methods_are_405() {
    let server = start_default().await;
    for method in ["POST", "PUT", "DELETE", "OPTIONS"] {
        let raw = format!("{method} /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
        let response = exchange(server.addr, raw.as_bytes()).await;
        let expected = "method not allowed\n";
        assert_response(&response, "HTTP/1.1 405 Method Not Allowed", expected);
        assert_eq!(header(&response, "Allow"), Some("GET, HEAD"));
    }
}

#[tokio::test]
async fn garbage_is_400() {
    let server = start_default().await;
    let cases: [&[u8]; 6] = [
        b"garbage\r\n\r\n",
        b"GET /healthz\r\n\r\n",
        b"GET /healthz HTTP/2.0\r\n\r\n",
        b"GET healthz HTTP/1.1\r\n\r\n",
        b"G(T /healthz HTTP/1.1\r\n\r\n",
        b"\xff\xfe\x00\x01 / HTTP/1.1\r\n\r\n",
    ];
    for raw in cases {
        let response = exchange(server.addr, raw).await;
        assert_response(&response, "HTTP/1.1 400 Bad Request", "bad request\n");
    }
}

#[tokio::test]
async fn oversized_head_is_431() {
    let server = start_default().await;
    let mut raw = b"GET /healthz HTTP/1.1\r\nX-Filler: ".to_vec();
    raw.resize(20 * 1024, b'a');
    let response = exchange(server.addr, &raw).await;
    let expected = "request header fields too large\n";
    assert_response(
        &response,
        "HTTP/1.1 431 Request Header Fields Too Large",
        expected,
    );
}

#[tokio::test]
async fn head_at_the_limit_is_accepted() {
    let server = start_default().await;
    let mut raw = b"GET /healthz HTTP/1.1\r\nX-Filler: ".to_vec();
    raw.resize(8 * 1024 - 4, b'a');
    raw.extend_from_slice(b"\r\n\r\n");
    let response = exchange(server.addr, &raw).await;
    assert_eq!(status(&response), "HTTP/1.1 200 OK");
}

#[tokio::test]
async fn silent_client_is_dropped_after_timeout() {
    let config = AdminConfig {
        io_timeout: Duration::from_millis(200),
        ..AdminConfig::default()
    };
    let server = start(config).await;
    let started = tokio::time::Instant::now();
    // Nothing, then an unfinished head: both must be cut off without a response.
    assert_eq!(exchange(server.addr, b"").await, "");
    assert_eq!(
        exchange(server.addr, b"GET /healthz HTTP/1.1\r\n").await,
        ""
    );
    assert!(started.elapsed() >= Duration::from_millis(400));
}

#[tokio::test]
async fn shutdown_closes_the_listener() {
    let mut server = start_default().await;
    assert_eq!(
        status(&get(server.addr, "/healthz").await),
        "HTTP/1.1 200 OK"
    );
    server.stop.take().unwrap().send(()).unwrap();
    // The serve task ends, and with it the future that owned the listener. Connecting
    // to the port again would prove nothing: another test may have bound it since.
    tokio::time::timeout(WAIT, &mut server.task)
        .await
        .expect("serve did not return after the shutdown")
        .unwrap();
    // Nothing of the server is left behind, not even in connection tasks.
    let deadline = tokio::time::Instant::now() + WAIT;
    while server.state.strong_count() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the server state outlived the shutdown"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Yields one chunk per read, to control where reads split the input.
struct Chunks(Vec<&'static [u8]>);

impl AsyncRead for Chunks {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<io::Result<()>> {
        if !self.0.is_empty() {
            let chunk = self.0.remove(0);
            buf.put_slice(&chunk[..chunk.len().min(buf.remaining())]);
        }
        std::task::Poll::Ready(Ok(()))
    }
}

async fn read_chunks(chunks: Vec<&'static [u8]>, limit: usize) -> Head {
    read_head(&mut Chunks(chunks), limit).await.unwrap()
}

#[tokio::test]
async fn read_head_finds_a_blank_line_split_across_reads() {
    for split in [&b"\r"[..], b"\r\n", b"\r\n\r"] {
        let mut first = b"GET / HTTP/1.1".to_vec();
        first.extend_from_slice(split);
        let rest = &b"\r\n\r\nextra"[split.len()..];
        let head = read_chunks(vec![first.leak(), rest], 1024).await;
        assert_eq!(
            head,
            Head::Complete(b"GET / HTTP/1.1\r\n\r\n".to_vec(), b"extra".to_vec())
        );
    }
}

#[tokio::test]
async fn read_head_reports_close_and_overflow() {
    let closed = read_chunks(vec![b"GET / HTTP/1.1\r\n"], 1024).await;
    assert_eq!(closed, Head::Closed);
    let full = read_chunks(vec![b"GET / HTTP/1.1\r\n", b"X: yyyyyyyy"], 20).await;
    assert_eq!(full, Head::TooLarge);
    let exact = read_chunks(vec![b"GET / HTTP/1.1\r\n", b"\r\n"], 18).await;
    assert_eq!(
        exact,
        Head::Complete(b"GET / HTTP/1.1\r\n\r\n".to_vec(), Vec::new())
    );
}

#[test]
fn request_line_parsing() {
    let parsed = parse_request_line(b"GET /metrics?a=b HTTP/1.0\n\n");
    let expected = Request {
        method: "GET",
        path: "/metrics",
        query: "a=b",
    };
    assert_eq!(parsed, Some(expected));
    assert_eq!(parse_request_line(b"GET  /metrics HTTP/1.1\r\n\r\n"), None);
    assert_eq!(parse_request_line(b"GET /metrics HTTP/1.1 x\r\n\r\n"), None);
    assert_eq!(parse_request_line(b"\r\n\r\n"), None);
}

#[test]
fn head_end_detection() {
    assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n\r\nbody"), Some(18));
    assert_eq!(find_head_end(b"GET / HTTP/1.1\n\nbody"), Some(16));
    assert_eq!(find_head_end(b"GET / HTTP/1.1\r\nHost: x\r\n"), None);
    assert_eq!(find_head_end(b""), None);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_heads_get_a_well_formed_response(head in proptest::collection::vec(any::<u8>(), 0..256)) {
        let state = AdminState::new(
            Arc::new(Metrics::new()),
            Arc::new(FakeView { not_ready: Mutex::new(None) }),
        );
        let peer = SocketAddr::from(([127, 0, 0, 1], 1));
        let (bytes, status) = respond(&state, &head, peer);
        let text = String::from_utf8(bytes).unwrap();
        let status_line = format!("HTTP/1.1 {status} ");
        prop_assert!(text.starts_with(&status_line));
        prop_assert!(text.contains("\r\nConnection: close\r\n"));
    }
}

#[test]
fn digests_are_listed_sorted_and_reset() {
    use crate::digest::{DigestConfig, Digests, Placement, Sample, fingerprint};
    use crate::route::SqlMode;
    let view = Arc::new(FakeView {
        not_ready: Mutex::new(None),
    });
    let peer: SocketAddr = "127.0.0.1:1".parse().unwrap();
    let without = AdminState::new(Arc::new(Metrics::new()), view.clone());
    let ask = |state: &AdminState, line: &str| {
        let (bytes, status) = respond(state, format!("{line}\r\n\r\n").as_bytes(), peer);
        (status, String::from_utf8(bytes).unwrap())
    };
    assert_eq!(ask(&without, "GET /digests HTTP/1.1").0, 404);

    let digests = Arc::new(Digests::new(DigestConfig::default()));
    let sql = b"SELECT a FROM t WHERE b = 1";
    let sample = Sample {
        elapsed: Duration::from_millis(2),
        rows: 1,
        error: false,
        placement: Placement::Replica,
        service: None,
    };
    digests.record(
        fingerprint(sql, SqlMode::default()),
        sql,
        SqlMode::default(),
        &sample,
    );
    let with = AdminState::new(Arc::new(Metrics::new()), view).with_digests(digests.clone());
    let (status, response) = ask(&with, "GET /digests?sort=count&limit=5 HTTP/1.1");
    assert_eq!(status, 200, "{response}");
    assert_eq!(header(&response, "Content-Type"), Some(JSON));
    let report: serde_json::Value = serde_json::from_str(body(&response)).unwrap();
    assert_eq!(report["digests"][0]["text"], "select a from t where b = ?");
    assert_eq!(report["digests"][0]["replica"], 1);
    assert_eq!(ask(&with, "GET /digests?limit=x HTTP/1.1").0, 400);
    let (status, refused) = ask(&with, "PUT /digests HTTP/1.1");
    assert_eq!(status, 405);
    assert!(
        refused.contains("Allow: GET, HEAD, DELETE, POST\r\n"),
        "{refused}"
    );
    assert_eq!(ask(&with, "DELETE /digests HTTP/1.1").0, 200);
    assert!(digests.is_empty());
}
