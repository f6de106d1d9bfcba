//! `spec.paused` in the local runtime, end to end: a paused cluster whose primary is killed
//! (kill -9, and kept from coming back) is observed, reported and left alone — no failover —
//! and fails over as soon as it is resumed.

use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use serde_json::Value;

use crate::local::{Local, events, primary, wait_until};

const CLUSTER: &str = "\
apiVersion: lagless.dev/v1alpha1
kind: MySQLCluster
metadata:
  name: pz
spec:
  replicas: 3
  replication:
    semiSync: true
  proxy:
    replicas: 1
";

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_paused_cluster_does_not_fail_over_until_it_is_resumed() {
    let local = Local::new();
    let manifest = local.manifest("pz", CLUSTER);
    local.up(&manifest);
    let before = local.running_status();
    let old = primary(&before);
    let epoch = before["epoch"].as_u64().expect("an epoch");

    let said = local.ok(&["pause"]);
    assert!(said.contains("orchestration of pz paused"), "{said}");
    assert!(local.ok(&["pause"]).contains("paused already"));
    assert_eq!(local.status()["paused"], true);

    // Requests that orchestrate are refused, not queued behind the pause.
    let refused = local.run(&["switchover"]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("orchestration is paused"),
        "{}",
        stderr(&refused)
    );

    // The primary dies and cannot come back: an option it does not know makes every restart
    // fail at once (as a pod in a crash loop).
    let conf = local.state().join("members").join(&old).join("conf.d");
    let broken = conf.join("zz-broken.cnf");
    std::fs::write(&broken, "[mysqld]\nlagless-no-such-option = 1\n").expect("a broken option");
    let killed = Instant::now();
    local.ok(&["kill", &old]);

    // Unpaused, a failover takes about two seconds here (3 probes, and the replicas losing the
    // primary within slave_net_timeout = 1 s). Paused: observed as down, reported, not acted on.
    let mut seen_down = false;
    while killed.elapsed() < Duration::from_secs(10) {
        let status = local.status();
        assert_eq!(primary(&status), old, "failed over while paused: {status}");
        assert_eq!(status["epoch"].as_u64(), Some(epoch), "{status}");
        seen_down |= status["state"] == "PrimaryDown";
        std::thread::sleep(Duration::from_millis(250));
    }
    let status = local.status();
    assert!(seen_down, "the dead primary was never reported: {status}");
    let held = events(&status);
    assert!(
        held.iter().any(|e| e
            .starts_with("warning: orchestration is paused; held until it is resumed: a failover")),
        "{held:?}"
    );

    let resumed = Instant::now();
    let said = local.ok(&["resume"]);
    assert!(said.contains("orchestration of pz resumed"), "{said}");
    wait_until("a failover once resumed", Duration::from_secs(30), || {
        let p = primary(&local.status());
        !p.is_empty() && p != old
    });
    let failover = resumed.elapsed();
    let status = local.status();
    assert_eq!(status["paused"], Value::Null, "{status}");
    assert!(status["epoch"].as_u64() > Some(epoch), "{status}");

    // Writes go through the proxy to the new primary.
    let app = local.app_opts();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut c = mysql_async::Conn::new(app).await.unwrap();
        c.query_drop("CREATE TABLE paused_then_resumed (id INT PRIMARY KEY)")
            .await
            .unwrap();
        c.query_drop("INSERT INTO paused_then_resumed VALUES (1)")
            .await
            .unwrap();
    });
    std::fs::remove_file(&broken).expect("the broken option removed");
    eprintln!(
        "paused for {:.1} s with the primary dead, no failover; resumed: failed over in {:.1} s",
        (resumed - killed).as_secs_f64(),
        failover.as_secs_f64()
    );
}
