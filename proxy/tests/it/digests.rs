//! Query digests through a running proxy: statements of a few shapes, prepared and not, an
//! error and reads on a replica (one after a wait), counted at `/digests` and `/metrics`.

use std::time::Duration;

use lagless_proxy::digest::{fingerprint, id_hex};
use lagless_proxy::route::SqlMode;
use mysql_async::prelude::Queryable;
use serde_json::Value;

use crate::support::{Harness, http_exchange, http_get};

const WAIT: Duration = Duration::from_secs(20);

/// The `/digests` entry of the statement shape `sql`, checking its id and text.
fn entry<'a>(report: &'a Value, sql: &str, text: &str) -> &'a Value {
    let id = id_hex(fingerprint(sql.as_bytes(), SqlMode::default()));
    let found = report["digests"]
        .as_array()
        .and_then(|all| all.iter().find(|d| d["id"] == id.as_str()))
        .unwrap_or_else(|| panic!("no digest {id} for {sql:?} in {report:#}"));
    assert_eq!(found["text"], text, "{found:#}");
    found
}

fn counters(d: &Value) -> [u64; 6] {
    [
        "count",
        "errors",
        "rows",
        "primary",
        "replica",
        "replica_waited",
    ]
    .map(|k| d[k].as_u64().unwrap_or(u64::MAX))
}

async fn report(admin: std::net::SocketAddr, query: &str) -> Value {
    let (status, body) = http_get(admin, &format!("/digests{query}")).await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digests_count_statements_by_shape_and_placement() {
    let h = Harness::start_with(2, |c| c.consistency_wait = Duration::from_secs(5)).await;
    let admin = h.admin.unwrap();
    let mut c = h.app().await;
    c.query_drop("CREATE TABLE d (id INT PRIMARY KEY, v VARCHAR(20))")
        .await
        .unwrap();
    // One shape however many rows: 4 affected on the primary.
    c.query_drop("INSERT INTO d VALUES (1, 'a'), (2, 'b'), (3, 'c')")
        .await
        .unwrap();
    c.query_drop("insert into d values (4, \"it's\")")
        .await
        .unwrap();
    // An error, on the primary.
    let err = c.query_drop("UPDATE nope SET v = 'x' WHERE id = 3").await;
    assert!(err.is_err());
    h.cluster.wait_replicated(WAIT).await.unwrap();

    // Reads on a replica: text, and prepared with two executions.
    c.query_drop("SET lagless_consistency = 'eventual'")
        .await
        .unwrap();
    let rows: Vec<(i64, String)> = c
        .query("SELECT id, v FROM d WHERE id IN (1, 2, 3) ORDER BY id")
        .await
        .unwrap();
    assert_eq!(rows.len(), 3);
    let rows: Vec<(i64, String)> = c
        .query("SELECT id, v FROM d WHERE id IN (4) ORDER BY id")
        .await
        .unwrap();
    assert_eq!(rows.len(), 1);
    let stmt = c.prep("SELECT v FROM d WHERE id >= ?").await.unwrap();
    for from in [1, 3] {
        let _: Vec<String> = c.exec(&stmt, (from,)).await.unwrap();
    }

    // A read that waits for its replica: the replica's SQL thread is stopped when the
    // session writes, and started while the read waits.
    c.query_drop("SET lagless_consistency = 'session'")
        .await
        .unwrap();
    let replica = h.cluster.member(1);
    replica.stop_sql_thread().await.unwrap();
    c.query_drop("UPDATE d SET v = 'z' WHERE id = 4")
        .await
        .unwrap();
    let read = c.query_first::<String, _>("SELECT v FROM d WHERE id = 4");
    let restart = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        replica.start_sql_thread().await.unwrap();
    };
    let (read, ()) = tokio::join!(read, restart);
    assert_eq!(read.unwrap().as_deref(), Some("z"));

    let all = report(admin, "?sort=count&limit=100").await;
    let insert = entry(
        &all,
        "INSERT INTO d VALUES (1, 'a')",
        "insert into d values (...)",
    );
    // count, errors, rows, primary, replica, replica_waited
    assert_eq!(counters(insert), [2, 0, 4, 2, 0, 0], "{insert:#}");
    let failed = entry(
        &all,
        "UPDATE nope SET v = ? WHERE id = ?",
        "update nope set v = ? where id = ?",
    );
    assert_eq!(counters(failed), [1, 1, 0, 1, 0, 0], "{failed:#}");
    let listed = entry(
        &all,
        "SELECT id, v FROM d WHERE id IN (7) ORDER BY id",
        "select id, v from d where id in (...) order by id",
    );
    assert_eq!(counters(listed), [2, 0, 4, 0, 2, 0], "{listed:#}");
    let prepared = entry(
        &all,
        "SELECT v FROM d WHERE id >= 10",
        "select v from d where id >= ?",
    );
    assert_eq!(counters(prepared), [2, 0, 6, 0, 2, 0], "{prepared:#}");
    let waited = entry(
        &all,
        "SELECT v FROM d WHERE id = 1",
        "select v from d where id = ?",
    );
    assert_eq!(counters(waited), [1, 0, 1, 0, 0, 1], "{waited:#}");
    let histogram: u64 = waited["latency_histogram"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_u64)
        .sum();
    assert_eq!(histogram, 1);
    assert!(
        waited["max_time_us"].as_u64() >= Some(200_000),
        "{waited:#}"
    );
    assert_eq!(all["other"]["count"], 0);

    // Sorted and cut as asked.
    let top = report(admin, "?sort=rows&limit=1").await;
    assert_eq!(top["digests"].as_array().map(Vec::len), Some(1));
    assert_eq!(top["digests"][0]["text"], "select v from d where id >= ?");
    let by_time = report(admin, "").await;
    assert_eq!(by_time["sort"], "total_time");
    assert_eq!(
        by_time["digests"][0]["text"], "select v from d where id = ?",
        "the read that waited took longest"
    );
    assert_eq!(http_get(admin, "/digests?sort=nope").await.0, 400);

    // The top fingerprints are labelled in Prometheus.
    let (_, metrics) = http_get(admin, "/metrics").await;
    let label = format!(
        "lagless_digest_statements_total{{digest=\"{}\"}} 2",
        id_hex(fingerprint(
            b"SELECT v FROM d WHERE id >= 1",
            SqlMode::default()
        ))
    );
    assert!(metrics.contains(&label), "{label} missing:\n{metrics}");
    assert!(metrics.contains("lagless_digests_tracked "), "{metrics}");

    // A reset forgets everything.
    let (status, _) = http_exchange(admin, b"DELETE /digests HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(status, 200);
    let empty = report(admin, "").await;
    assert_eq!(empty["tracked"], 0);
    assert_eq!(empty["total"]["count"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digests_off_count_nothing() {
    let h = Harness::start_with(1, |c| c.digests.enabled = false).await;
    let admin = h.admin.unwrap();
    let mut c = h.app().await;
    c.query_drop("SELECT 1").await.unwrap();
    let off = report(admin, "").await;
    assert_eq!(off["enabled"], false);
    assert_eq!(off["tracked"], 0);
    assert_eq!(off["total"]["count"], 0);
    let (_, metrics) = http_get(admin, "/metrics").await;
    assert!(!metrics.contains("lagless_digest"), "{metrics}");
}
