//! Maintenance in the local runtime, end to end with real servers and a real proxy: a member
//! cordoned out of read routing gets no reads through the proxy (its counter in the proxy's
//! `/metrics` stays put while the other replica's grows) and keeps replicating; uncordoned, it
//! gets reads again.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use serde_json::Value;

use crate::local::{Local, member_port, opts, primary, wait_until};

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
fn admin_get(port: u16, path: &str) -> String {
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

fn admin_port(status: &Value) -> u16 {
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
fn proxy_weight(admin: u16, member: &str) -> Option<u64> {
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
            let rows: Vec<u32> = c.query("SELECT id FROM cordoned_reads").await.unwrap();
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

    let creds = local.credentials();
    let app = opts(
        local.proxy_port,
        creds["app_user"].as_str().unwrap(),
        creds["app_password"].as_str().unwrap(),
    );
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
