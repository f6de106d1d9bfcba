//! The controller's Prometheus metrics and the small HTTP server that exposes them with the
//! `/healthz` and `/readyz` probes.

pub mod cluster;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The controller's metrics; cloning shares them.
#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    pub reconciles: Counter,
    pub reconcile_errors: Counter,
    pub reconcile_duration: Histogram,
    pub failovers: Counter,
    /// Per-cluster series (paused, semi-sync, probes, primary changes).
    pub clusters: cluster::ClusterMetrics,
    /// Whether `/readyz` answers 200: the process has a client and runs (as leader or standby).
    ready: Arc<AtomicBool>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("reconciles", &self.reconciles.get())
            .field("reconcile_errors", &self.reconcile_errors.get())
            .finish()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("lagless_operator");
        let reconciles = Counter::default();
        let reconcile_errors = Counter::default();
        let failovers = Counter::default();
        // 5 ms to ~20 s: a reconcile is a handful of API calls.
        let reconcile_duration = Histogram::new(
            prometheus_client::metrics::histogram::exponential_buckets(0.005, 2.0, 13),
        );
        registry.register(
            "reconciles",
            "MySQLCluster reconciliations run",
            reconciles.clone(),
        );
        registry.register(
            "reconcile_errors",
            "MySQLCluster reconciliations that failed",
            reconcile_errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Time taken by one MySQLCluster reconciliation",
            reconcile_duration.clone(),
        );
        registry.register(
            "failovers",
            "Primaries promoted because the previous one was lost",
            failovers.clone(),
        );
        let clusters = cluster::ClusterMetrics::default();
        clusters.register(&mut registry);
        Self {
            clusters,
            registry: Arc::new(registry),
            reconciles,
            reconcile_errors,
            reconcile_duration,
            failovers,
            ready: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Records one reconciliation.
    pub fn observe(&self, elapsed: Duration, failed: bool) {
        self.reconciles.inc();
        if failed {
            self.reconcile_errors.inc();
        }
        self.reconcile_duration.observe(elapsed.as_secs_f64());
    }

    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Relaxed);
    }

    /// The metrics in the Prometheus text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    /// The response to a request line `GET <path> HTTP/1.x`: status line and body.
    pub fn respond(&self, request_line: &str) -> (&'static str, String) {
        let mut parts = request_line.split_whitespace();
        let (method, target) = (parts.next(), parts.next().unwrap_or("/"));
        let path = target.split('?').next().unwrap_or(target);
        if method != Some("GET") {
            return ("405 Method Not Allowed", "only GET\n".into());
        }
        match path {
            "/healthz" => ("200 OK", "ok\n".into()),
            "/readyz" if self.ready.load(Ordering::Relaxed) => ("200 OK", "ready\n".into()),
            "/readyz" => ("503 Service Unavailable", "starting\n".into()),
            "/metrics" => ("200 OK", self.encode()),
            _ => ("404 Not Found", "not found\n".into()),
        }
    }

    /// Serves `/metrics`, `/healthz` and `/readyz` until the task is dropped.
    pub async fn serve(self, listener: TcpListener) {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    let metrics = self.clone();
                    tokio::spawn(async move { metrics.handle(stream).await });
                }
                Err(e) => {
                    tracing::warn!(error = %e, "metrics listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    }

    async fn handle(&self, mut stream: TcpStream) {
        // Only the request line matters; a bounded read with a deadline keeps a slow or
        // hostile client from holding a task.
        let mut buf = vec![0u8; 2048];
        let read = tokio::time::timeout(Duration::from_secs(5), async {
            let mut len = 0;
            while len < buf.len() {
                let n = stream.read(&mut buf[len..]).await?;
                if n == 0 {
                    break;
                }
                len += n;
                if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            Ok::<usize, std::io::Error>(len)
        })
        .await;
        let Ok(Ok(len)) = read else { return };
        let head = String::from_utf8_lossy(&buf[..len]);
        let line = head.lines().next().unwrap_or_default();
        let (status, body) = self.respond(line);
        let content_type = if body.starts_with('#') {
            "application/openmetrics-text; version=1.0.0; charset=utf-8"
        } else {
            "text/plain; charset=utf-8"
        };
        let response = format!(
            "HTTP/1.1 {status}\r\ncontent-type: {content_type}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = stream.write_all(response.as_bytes()).await;
        let _ = stream.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probes_and_metrics() {
        let metrics = Metrics::new();
        assert_eq!(metrics.respond("GET /healthz HTTP/1.1").0, "200 OK");
        assert_eq!(
            metrics.respond("GET /readyz HTTP/1.1").0,
            "503 Service Unavailable"
        );
        metrics.set_ready(true);
        assert_eq!(metrics.respond("GET /readyz?x=1 HTTP/1.1").0, "200 OK");
        metrics.observe(Duration::from_millis(20), false);
        metrics.observe(Duration::from_millis(30), true);
        metrics.failovers.inc();
        let (status, body) = metrics.respond("GET /metrics HTTP/1.1");
        assert_eq!(status, "200 OK");
        for needle in [
            "lagless_operator_reconciles_total 2",
            "lagless_operator_reconcile_errors_total 1",
            "lagless_operator_failovers_total 1",
            "lagless_operator_reconcile_duration_seconds_count 2",
        ] {
            assert!(body.contains(needle), "{needle} missing from\n{body}");
        }
        assert_eq!(
            metrics.respond("POST /metrics HTTP/1.1").0,
            "405 Method Not Allowed"
        );
        assert_eq!(metrics.respond("GET /nope HTTP/1.1").0, "404 Not Found");
    }

    #[tokio::test]
    async fn serves_over_tcp() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(Metrics::new().serve(listener));
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
            .await
            .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
        assert!(response.ends_with("ok\n"), "{response}");
        server.abort();
    }
}
