//! The admin HTTP listener of a running proxy.

use crate::support::{Harness, http_get};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_metrics_and_topology() {
    let h = Harness::start(2).await;
    let admin = h.admin.unwrap();
    assert_eq!(http_get(admin, "/healthz").await.0, 200);
    let (status, body) = http_get(admin, "/readyz").await;
    assert_eq!((status, body.trim()), (200, "ready"));
    let mut c = h.app().await;
    mysql_async::prelude::Queryable::query_drop(&mut c, "SELECT 1")
        .await
        .unwrap();
    let (status, metrics) = http_get(admin, "/metrics").await;
    assert_eq!(status, 200);
    for series in [
        "lagless_client_connections_total",
        "lagless_client_connections_open",
        "lagless_statements_total",
        "lagless_statement_duration_seconds_bucket",
        "lagless_backend_connections",
        "lagless_topology_epoch 1",
    ] {
        assert!(metrics.contains(series), "{series} missing:\n{metrics}");
    }
    let (status, topo) = http_get(admin, "/topology").await;
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&topo).unwrap();
    assert_eq!(v["epoch"], 1);
    assert_eq!(v["primary"], h.cluster.primary().addr());
    assert_eq!(v["members"].as_array().map(Vec::len), Some(2));
    // The primary going away makes the proxy unready.
    h.cluster.primary().kill9().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (status, body) = http_get(admin, "/readyz").await;
        if status == 503 {
            assert!(body.contains("not reachable"), "{body}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "never became unready");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
