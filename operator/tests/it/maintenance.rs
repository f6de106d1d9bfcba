//! Maintenance in the local runtime, end to end with real servers and a real proxy: a member
//! cordoned out of read routing gets no reads through the proxy (its counter in the proxy's
//! `/metrics` stays put while the other replica's grows) and keeps replicating; uncordoned, it
//! gets reads again.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use serde_json::Value;

use crate::local::{Local, member_port, primary, wait_until};

const CLUSTER: &str = "\
apiVersion: lagless.dev/v1alpha1
kind: MySQLCluster
metadata:
  name: mt
spec:
  replicas: 3
  proxy:
    replicas: 1
";

/// GET `path` from the proxy's admin endpoint; the body.
pub(crate) fn admin_get(port: u16, path: &str) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("admin endpoint");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).expect("an answer");
    text.split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default()
}

pub(crate) fn admin_port(status: &Value) -> u16 {
    status["proxies"][0]["admin_port"]
        .as_u64()
        .expect("an admin port") as u16
}

/// The replica reads the proxy sent to the member on `port`.
fn replica_reads(admin: u16, port: u16) -> u64 {
    let series =
        format!("lagless_statements_total{{route=\"replica\",backend=\"127.0.0.1:{port}\"}} ");
    admin_get(admin, "/metrics")
        .lines()
        .find_map(|l| l.strip_prefix(&series))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// The weight the proxy follows for `member` (the document in its `/topology`).
pub(crate) fn proxy_weight(admin: u16, member: &str) -> Option<u64> {
    let topology: Value = serde_json::from_str(&admin_get(admin, "/topology")).ok()?;
    topology["document"]["replicas"]
        .as_array()?
        .iter()
        .find(|r| r["name"] == member)?["weight"]
        .as_u64()
}

/// `n` reads through the proxy, each on a connection of its own (a session may keep its
/// replica).
fn reads(rt: &tokio::runtime::Runtime, o: &mysql_async::Opts, n: usize) {
    rt.block_on(async {
        for _ in 0..n {
            let mut c = mysql_async::Conn::new(o.clone()).await.unwrap();
            // A statement worth a replica: a cheaper one than a head read would run on the
            // primary under `strict` (`--cheap-reads-on-primary`).
            let rows: Vec<u32> = c
                .query("SELECT id FROM cordoned_reads WHERE SLEEP(0.01) = 0")
                .await
                .unwrap();
            assert_eq!(rows, [1]);
            c.disconnect().await.unwrap();
        }
    });
}

#[test]
fn a_cordoned_replica_gets_no_reads_until_it_is_uncordoned() {
    let began = Instant::now();
    let local = Local::new();
    let manifest = local.manifest("mt", CLUSTER);
    local.up(&manifest);
    let status = local.running_status();
    let old = primary(&status);
    let admin = admin_port(&status);
    let replicas: Vec<String> = status["members"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["name"].as_str())
        .filter(|n| *n != old)
        .map(str::to_string)
        .collect();
    let [cordoned, other] = &replicas[..] else {
        panic!("two replicas expected: {status}")
    };
    let (cordoned_port, other_port) = (member_port(&status, cordoned), member_port(&status, other));

    let app = local.app_opts();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut c = mysql_async::Conn::new(app.clone()).await.unwrap();
        c.query_drop("CREATE TABLE cordoned_reads (id INT PRIMARY KEY)")
            .await
            .unwrap();
        c.query_drop("INSERT INTO cordoned_reads VALUES (1)")
            .await
            .unwrap();
    });
    // Both replicas take reads to begin with.
    reads(&rt, &app, 40);
    assert!(
        replica_reads(admin, cordoned_port) > 0,
        "no reads on {cordoned} before the cordon"
    );

    let asked = Instant::now();
    let said = local.ok(&["cordon", cordoned]);
    assert!(said.contains(&format!("{cordoned} cordoned")), "{said}");
    assert!(local.ok(&["cordon", cordoned]).contains("cordoned already"));
    let refused = local.run(&["cordon", "mt-7"]);
    assert!(!refused.status.success());
    wait_until(
        "the proxy to follow the cordon",
        Duration::from_secs(20),
        || proxy_weight(admin, cordoned) == Some(0),
    );
    let followed = asked.elapsed();
    wait_until("the cordon in the status", Duration::from_secs(10), || {
        let s = local.status();
        s["members"].as_array().is_some_and(|ms| {
            ms.iter()
                .any(|m| m["name"] == cordoned.as_str() && m["cordoned"] == true)
        })
    });
    assert_eq!(proxy_weight(admin, other), Some(100));

    let (c0, o0) = (
        replica_reads(admin, cordoned_port),
        replica_reads(admin, other_port),
    );
    reads(&rt, &app, 40);
    let (c1, o1) = (
        replica_reads(admin, cordoned_port),
        replica_reads(admin, other_port),
    );
    assert_eq!(c1, c0, "{cordoned} got reads while cordoned");
    assert!(o1 >= o0 + 40, "{other} got {} of 40 reads", o1 - o0);

    // Still a replica, and still replicating: a write reaches it.
    rt.block_on(async {
        let mut c = mysql_async::Conn::new(app.clone()).await.unwrap();
        c.query_drop("INSERT INTO cordoned_reads VALUES (2)")
            .await
            .unwrap();
        c.query_drop("DELETE FROM cordoned_reads WHERE id = 2")
            .await
            .unwrap();
    });
    let gtid = |s: &Value, name: &str| {
        s["members"]
            .as_array()
            .and_then(|ms| ms.iter().find(|m| m["name"] == name))
            .map(|m| m["gtid"].clone())
            .unwrap_or(Value::Null)
    };
    wait_until(
        "the cordoned replica to apply the writes",
        Duration::from_secs(15),
        || {
            let s = local.status();
            let p = gtid(&s, &old);
            p.is_string() && gtid(&s, cordoned) == p && gtid(&s, other) == p
        },
    );
    let status = local.status();
    let member = status["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == cordoned.as_str())
        .cloned()
        .unwrap();
    assert_eq!(member["role"], "replica", "{member}");
    assert_eq!(member["replicating"], true, "{member}");
    assert_eq!(member["cordoned"], true, "{member}");

    let said = local.ok(&["uncordon", cordoned]);
    assert!(said.contains(&format!("{cordoned} uncordoned")), "{said}");
    wait_until(
        "the proxy to follow the uncordon",
        Duration::from_secs(20),
        || proxy_weight(admin, cordoned) == Some(100),
    );
    reads(&rt, &app, 40);
    let c2 = replica_reads(admin, cordoned_port);
    assert!(c2 > c1, "{cordoned} got no reads once uncordoned");
    eprintln!(
        "cordon followed by the proxy in {:.1} s; 0 statements on the cordoned replica from 40 \
         reads, {} from 40 reads after uncordon; {:.1} s in all",
        followed.as_secs_f64(),
        c2 - c1,
        began.elapsed().as_secs_f64()
    );
}

const READ_ONLY_CLUSTER: &str = "\
apiVersion: lagless.dev/v1alpha1
kind: MySQLCluster
metadata:
  name: ro
spec:
  replicas: 2
  proxy:
    replicas: 1
";

/// A write through the proxy: its error code (0 for success) and how long it took.
fn write(rt: &tokio::runtime::Runtime, o: &mysql_async::Opts, sql: &str) -> (u16, Duration) {
    rt.block_on(async {
        let mut c = mysql_async::Conn::new(o.clone()).await.unwrap();
        let began = Instant::now();
        let code = match c.query_drop(sql).await {
            Ok(()) => 0,
            Err(mysql_async::Error::Server(e)) => e.code,
            Err(e) => panic!("{sql}: {e}"),
        };
        let took = began.elapsed();
        let _ = c.disconnect().await;
        (code, took)
    })
}

fn read_only_in_effect(local: &Local) -> bool {
    let s = local.status();
    s["read_only"] == true && s["read_only_in_effect"] == true
}

#[test]
fn a_read_only_cluster_refuses_writes_at_once_keeps_reads_and_takes_writes_again() {
    let began = Instant::now();
    let local = Local::new();
    let manifest = local.manifest("ro", READ_ONLY_CLUSTER);
    local.up(&manifest);
    let status = local.running_status();
    let old = primary(&status);
    let app = local.app_opts();
    let rt = tokio::runtime::Runtime::new().unwrap();
    assert_eq!(
        write(&rt, &app, "CREATE TABLE ro_rows (id INT PRIMARY KEY)").0,
        0
    );
    assert_eq!(write(&rt, &app, "INSERT INTO ro_rows VALUES (1)").0, 0);

    let asked = Instant::now();
    let said = local.ok(&["read-only", "on"]);
    assert!(said.contains("ro made read-only"), "{said}");
    assert!(local.ok(&["read-only", "on"]).contains("read-only already"));
    wait_until("the cluster read-only", Duration::from_secs(20), || {
        read_only_in_effect(&local)
    });
    let turned = asked.elapsed();

    // Refused by the server and relayed at once: not held for the write hold (10 s).
    let (code, refused_in) = write(&rt, &app, "INSERT INTO ro_rows VALUES (2)");
    assert_eq!(code, 1290, "a write on a read-only cluster");
    assert!(
        refused_in < Duration::from_secs(2),
        "refused after {refused_in:?}"
    );
    // In a transaction too (it begins on a replica and moves to the primary at its write).
    rt.block_on(async {
        let mut c = mysql_async::Conn::new(app.clone()).await.unwrap();
        c.query_drop("BEGIN").await.unwrap();
        let began = Instant::now();
        match c.query_drop("INSERT INTO ro_rows VALUES (3)").await {
            Err(mysql_async::Error::Server(e)) => assert_eq!(e.code, 1290, "{e}"),
            other => panic!("a write in a transaction on a read-only cluster: {other:?}"),
        }
        assert!(
            began.elapsed() < Duration::from_secs(2),
            "{:?}",
            began.elapsed()
        );
    });
    // Reads go on.
    rt.block_on(async {
        let mut c = mysql_async::Conn::new(app.clone()).await.unwrap();
        let rows: Vec<u32> = c.query("SELECT id FROM ro_rows ORDER BY id").await.unwrap();
        assert_eq!(rows, [1]);
    });

    // A switchover keeps it: the new primary is read-only too.
    local.ok(&["switchover"]);
    wait_until("the new primary read-only", Duration::from_secs(30), || {
        let s = local.status();
        primary(&s) != old && !primary(&s).is_empty() && read_only_in_effect(&local)
    });
    let (code, refused_after_switch) = write(&rt, &app, "INSERT INTO ro_rows VALUES (4)");
    assert_eq!(
        code, 1290,
        "a write after a switchover of a read-only cluster"
    );
    assert!(
        refused_after_switch < Duration::from_secs(2),
        "{refused_after_switch:?}"
    );

    // So does a failover: the primary killed (-9), the member promoted is read-only too.
    let switched = primary(&local.status());
    let killed = Instant::now();
    local.ok(&["kill", &switched]);
    wait_until(
        "a failover to a read-only primary",
        Duration::from_secs(60),
        || {
            let s = local.status();
            primary(&s) != switched && !primary(&s).is_empty() && read_only_in_effect(&local)
        },
    );
    let failed_over = killed.elapsed();
    let (code, _) = write(&rt, &app, "INSERT INTO ro_rows VALUES (6)");
    assert_eq!(
        code, 1290,
        "a write after a failover of a read-only cluster"
    );

    let said = local.ok(&["read-only", "off"]);
    assert!(said.contains("ro writable again"), "{said}");
    let off = Instant::now();
    wait_until("the cluster writable", Duration::from_secs(20), || {
        local.status()["read_only"].is_null()
            && write(&rt, &app, "INSERT INTO ro_rows VALUES (5)").0 == 0
    });
    let writable = off.elapsed();
    rt.block_on(async {
        let mut c = mysql_async::Conn::new(app.clone()).await.unwrap();
        let rows: Vec<u32> = c.query("SELECT id FROM ro_rows ORDER BY id").await.unwrap();
        assert_eq!(rows, [1, 5]);
    });
    eprintln!(
        "read-only in {:.1} s; writes refused (1290) in {} ms, {} ms after a switchover; \
         a read-only primary {:.1} s after a kill -9; writable again in {:.1} s; {:.1} s in all",
        turned.as_secs_f64(),
        refused_in.as_millis(),
        refused_after_switch.as_millis(),
        failed_over.as_secs_f64(),
        writable.as_secs_f64(),
        began.elapsed().as_secs_f64()
    );
}
