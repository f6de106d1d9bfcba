//! The admin HTTP listener of a running proxy.

use crate::support::{Harness, http_exchange, http_get, topology_epoch, topology_of};

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

/// `PUT /topology` on the admin listener with `headers` and `body`; returns (status, body).
async fn http_put(addr: std::net::SocketAddr, headers: &str, body: &[u8]) -> (u16, String) {
    let mut request = format!("PUT /topology HTTP/1.1\r\nHost: x\r\n{headers}\r\n").into_bytes();
    request.extend_from_slice(body);
    http_exchange(addr, &request).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topologies_pushed_with_the_token_are_applied_by_the_epoch_rule() {
    let h = Harness::start_with(1, |c| {
        c.admin_token = Some(lagless_proxy::config::AdminToken("push-secret".into()))
    })
    .await;
    let admin = h.admin.unwrap();
    let doc = |epoch| serde_json::to_vec(&topology_of(&h.cluster, epoch)).unwrap();
    let put = |token: &'static str, body: Vec<u8>| async move {
        let headers = format!(
            "Authorization: Bearer {token}\r\nContent-Length: {}\r\n",
            body.len()
        );
        http_put(admin, &headers, &body).await
    };
    // Applied at once, without the file changing.
    let started = std::time::Instant::now();
    assert_eq!(put("push-secret", doc(5)).await, (200, "applied\n".into()));
    assert_eq!(topology_epoch(admin).await, Some(5));
    eprintln!("pushed epoch served after {:?}", started.elapsed());
    // Never back, and never without the token.
    assert_eq!(put("push-secret", doc(4)).await, (200, "kept\n".into()));
    assert_eq!(put("wrong", doc(6)).await.0, 401);
    assert_eq!(put("push-secret", b"{ nope".to_vec()).await.0, 422);
    assert_eq!(topology_epoch(admin).await, Some(5));
    // Bounded: no length, or too much.
    assert_eq!(
        http_put(admin, "Authorization: Bearer push-secret\r\n", b"")
            .await
            .0,
        411
    );
    let huge = "Authorization: Bearer push-secret\r\nContent-Length: 10000000\r\n";
    assert_eq!(http_put(admin, huge, b"").await.0, 413);
    // The file, now behind, cannot take the proxy back either.
    topology_of(&h.cluster, 3)
        .write_atomically(&h.topology_path)
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(topology_epoch(admin).await, Some(5));

    // Without a token, pushing does not exist.
    let plain = Harness::start(1).await;
    let headers = format!("Content-Length: {}\r\n", doc(9).len());
    assert_eq!(
        http_put(plain.admin.unwrap(), &headers, &doc(9)).await.0,
        405
    );
}
