//! End to end: a local tenant pool with `spec.rebalance` on moves a tenant by itself when one
//! cluster holds much more than the other, and stops once they are within the margin.

use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use serde_json::Value;

use crate::local::wait_until;
use crate::tenant_pool::{Pool, cluster, tenant_cli};

const POOL: &str = "\
apiVersion: lagless.dev/v1alpha1
kind: MySQLTenantPool
metadata:
  name: rb
spec:
  clusterTemplate:
    replicas: 2
  clusters:
    min: 2
    max: 2
  directory:
    replicas: 1
  proxy:
    replicas: 1
  placement:
    capacityBytes: 4Mi
  rebalance:
    enabled: true
    intervalSeconds: 5
    margin: 0.1
    copyRateMib: 0
";

pub(crate) fn home_of(pool: &Pool, tenant: &str) -> String {
    let out = tenant_cli(pool, &["where", tenant]);
    // "tenant a: cluster rb-c0, database t_a, …"
    out.split("cluster ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .unwrap_or_default()
        .to_string()
}

pub(crate) fn primary_port(status: &Value, name: &str) -> u16 {
    let c = cluster(status, name);
    let port = crate::local::member_port(c, &crate::tenant_pool::primary(status, name));
    assert_ne!(port, 0, "no primary in {c}");
    port
}

pub(crate) fn rows(admin: &mysql_async::Opts, sql: &str) -> u64 {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut conn = mysql_async::Conn::new(admin.clone()).await.expect("admin");
        let n: Option<u64> = conn.query_first(sql).await.expect(sql);
        n.unwrap_or(0)
    })
}

#[test]
fn a_pool_moves_a_tenant_by_itself_until_its_clusters_are_even() {
    let (pool, _, _) = Pool::up(POOL, 7);
    for t in ["a", "b", "c", "d"] {
        tenant_cli(&pool, &["create", t]);
    }
    let homes: Vec<(String, String)> = ["a", "b", "c", "d"]
        .iter()
        .map(|t| (t.to_string(), home_of(&pool, t)))
        .collect();
    // Two tenants that share a cluster: filled unevenly, they leave it much fuller than the
    // other.
    let (full, big, small) = ["rb-c0", "rb-c1"]
        .iter()
        .find_map(|c| {
            let on: Vec<&String> = homes.iter().filter(|h| h.1 == *c).map(|h| &h.0).collect();
            (on.len() >= 2).then(|| (c.to_string(), on[0].clone(), on[1].clone()))
        })
        .expect("four tenants on two clusters: two share one");
    let other = if full == "rb-c0" { "rb-c1" } else { "rb-c0" };
    let creds = pool.credentials();
    let admin = |port: u16| {
        lagless_testkit::conn_opts(
            port,
            creds["admin_user"].as_str().unwrap_or_default(),
            creds["admin_password"].as_str().unwrap_or_default(),
            None,
        )
    };
    let status = pool.status();
    let full_primary = admin(primary_port(&status, &full));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut conn = mysql_async::Conn::new(full_primary.clone())
            .await
            .expect("admin");
        for (tenant, n) in [(&big, 1200), (&small, 500)] {
            conn.query_drop(format!(
                "CREATE TABLE t_{tenant}.rows (id INT PRIMARY KEY, pad VARCHAR(1000))"
            ))
            .await
            .unwrap();
            conn.query_drop(format!(
                "INSERT INTO t_{tenant}.rows SELECT seq, REPEAT('x', 1000) FROM t_{tenant}.seq_1_to_{n}"
            ))
            .await
            .unwrap();
            conn.query_drop(format!("ANALYZE TABLE t_{tenant}.rows"))
                .await
                .unwrap();
        }
    });
    drop(rt);
    eprintln!("{big} and {small} filled on {full}; {other} holds nothing");

    // The smaller of the two moves: the larger would leave the other cluster the fuller.
    let began = Instant::now();
    wait_until(
        "the rebalancer to move a tenant",
        Duration::from_secs(120),
        || home_of(&pool, &small) == other,
    );
    eprintln!(
        "tenant {small} moved by the rebalancer after {:.1} s",
        began.elapsed().as_secs_f64()
    );
    // The directory flips inside the fenced step; the channel and the source's copy are
    // removed after it, and only then does the record end.
    wait_until(
        "the move to end after its cleanup",
        Duration::from_secs(60),
        || {
            let phase = pool.status()["moves"][0]["phase"].clone();
            phase == "done" || phase == "aborted"
        },
    );
    let status = pool.status();
    let moves = status["moves"].as_array().cloned().unwrap_or_default();
    assert_eq!(moves.len(), 1, "{status}");
    assert_eq!(moves[0]["tenant"], small.as_str());
    assert_eq!(moves[0]["phase"], "done", "{status}");
    wait_until(
        "the rebalancer to say the move ended",
        Duration::from_secs(20),
        || {
            pool.status()["rebalance"]["last"]
                .as_str()
                .is_some_and(|l| l.starts_with("rebalancing the clusters: done"))
        },
    );
    let moved = admin(primary_port(&status, other));
    assert_eq!(
        rows(&moved, &format!("SELECT COUNT(*) FROM t_{small}.rows")),
        500
    );
    assert_eq!(home_of(&pool, &big), full);

    // Two more looks move nothing: the clusters are within the margin, or (the larger tenant
    // would reverse the gap) no move narrows it, which they say.
    let evenly = || {
        let log = std::fs::read_to_string(pool.state().join("rebalance.log")).unwrap_or_default();
        log.matches("the clusters are used evenly").count()
            + log.matches("no tenant's move would narrow").count()
    };
    let looked = evenly();
    // Every 5 s, each look counting the tenants' writes for 2 s.
    std::thread::sleep(Duration::from_secs(20));
    assert!(
        evenly() >= looked + 2,
        "{} looks moved nothing in 20 s",
        evenly() - looked
    );
    let status = pool.status();
    assert_eq!(
        status["moves"].as_array().map_or(0, Vec::len),
        1,
        "{status}"
    );
    assert_eq!(home_of(&pool, &big), full);
    assert_eq!(home_of(&pool, &small), other);
    let text = pool.ok(&["status"]);
    assert!(text.contains("\nrebalancing: "), "{text}");
}

/// Rebalancing by writes: each tenant's rows changed, read from a real server's table
/// statistics (turned on by the first reading), as its share of the cluster's write rate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_writes_are_read_from_the_servers_table_statistics() {
    use lagless_operator::pool::load::{rows_changed, write_shares};
    let cluster = lagless_testkit::Cluster::builder()
        .members(1)
        .start()
        .await
        .unwrap();
    let primary = cluster.primary();
    primary
        .exec(
            "CREATE DATABASE t_hot; CREATE TABLE t_hot.r (id INT PRIMARY KEY); \
             CREATE DATABASE t_cold; CREATE TABLE t_cold.r (id INT PRIMARY KEY); \
             INSERT INTO t_cold.r VALUES (1)",
        )
        .await
        .unwrap();
    let mut conn = primary.admin_conn().await.unwrap();
    let limit = Duration::from_secs(5);
    let before = rows_changed(&mut conn, "t!_%", limit).await.unwrap();
    primary
        .exec("INSERT INTO t_hot.r SELECT seq FROM t_hot.seq_1_to_300; UPDATE t_hot.r SET id = id + 1000 WHERE id <= 100; INSERT INTO t_cold.r VALUES (2)")
        .await
        .unwrap();
    let after = rows_changed(&mut conn, "t!_%", limit).await.unwrap();
    let changed =
        |db: &str| after.get(db).copied().unwrap_or(0) - before.get(db).copied().unwrap_or(0);
    assert_eq!(changed("t_hot"), 400, "{before:?} {after:?}");
    assert_eq!(changed("t_cold"), 1, "{before:?} {after:?}");
    // Of a cluster writing 40.1 transactions a second, the hot tenant makes 40.
    let shares = write_shares(&before, &after, 40.1);
    assert!((shares["t_hot"] - 40.0).abs() < 1e-9, "{shares:?}");
    assert!((shares["t_cold"] - 0.1).abs() < 1e-9, "{shares:?}");
}
