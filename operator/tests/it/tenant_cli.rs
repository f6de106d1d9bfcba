//! `lagless-operator tenant` on a local pool's state directory, with real servers for the
//! directory and two tenant clusters.

use std::path::Path;
use std::process::Command;

use lagless_core::topology::{Flavor, Member, Topology, TopologyState};
use lagless_directory::{
    ClusterState, Directory, PoolCluster, PoolDocument, TenantId, TenantSource,
};
use lagless_operator::local::state::{LocalCredentials, write_json};
use lagless_testkit::{ADMIN_PASSWORD, ADMIN_USER, Cluster, REPL_PASSWORD, REPL_USER, conn_opts};

/// Runs the command with `--state-dir dir` (when given); returns the exit code, stdout and
/// stderr.
fn tenant(dir: Option<&Path>, args: &[&str]) -> (i32, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_lagless-operator"));
    cmd.arg("tenant").env_remove("LAGLESS_STATE_DIR");
    if let Some(dir) = dir {
        cmd.arg("--state-dir").arg(dir);
    }
    let out = cmd.args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn topology(name: &str, port: u16) -> Topology {
    Topology {
        cluster: name.into(),
        flavor: Flavor::Mariadb,
        epoch: 1,
        state: TopologyState::Ready,
        primary: Some(Member::new(format!("{name}-0"), "127.0.0.1", port)),
        replicas: Vec::new(),
        consistency: None,
        read_only: false,
    }
}

async fn databases(cluster: &Cluster, like: &str) -> usize {
    cluster
        .primary()
        .query(&format!("SHOW DATABASES LIKE '{like}'"))
        .await
        .unwrap()
        .len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_are_created_listed_and_found() {
    let global = Cluster::builder().members(1).start().await.unwrap();
    // GTID domains and server ids of their own, as a pool gives its clusters: a move
    // replicates between them.
    let c1 = Cluster::builder()
        .members(1)
        .domain_id(1)
        .server_id_base(10)
        .start()
        .await
        .unwrap();
    let c2 = Cluster::builder()
        .members(1)
        .domain_id(2)
        .server_id_base(20)
        .start()
        .await
        .unwrap();
    let state = tempfile::tempdir().unwrap();
    let dir = state.path();

    // The state directory as a local pool keeps it.
    for (name, cluster) in [
        ("demo-directory", &global),
        ("demo-c1", &c1),
        ("demo-c2", &c2),
    ] {
        let path = dir.join("clusters").join(name).join("topology.json");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        topology(name, cluster.primary().port())
            .write_atomically(&path)
            .unwrap();
    }
    let doc = PoolDocument {
        pool: "demo".into(),
        directory: "demo-directory".into(),
        tenant_database: "t_{id}".into(),
        clusters: ["demo-c1", "demo-c2"]
            .map(|name| PoolCluster {
                name: name.into(),
                topology: format!("clusters/{name}/topology.json").into(),
            })
            .to_vec(),
        routing: vec![TenantSource::Database],
        attribute: "lagless_tenant".into(),
    };
    doc.write(&dir.join("pool.json")).unwrap();
    let creds = LocalCredentials {
        admin_user: ADMIN_USER.into(),
        admin_password: ADMIN_PASSWORD.into(),
        replication_user: REPL_USER.into(),
        replication_password: REPL_PASSWORD.into(),
        ..LocalCredentials::generate().unwrap()
    };
    write_json(&dir.join("credentials.json"), &creds, 0o600).unwrap();
    let directory = Directory::new(conn_opts(
        global.primary().port(),
        ADMIN_USER,
        ADMIN_PASSWORD,
        None,
    ));
    directory.ensure_schema().await.unwrap();
    for name in ["demo-c1", "demo-c2"] {
        directory
            .register_cluster(name, ClusterState::Open, 1 << 30, 100.0)
            .await
            .unwrap();
    }

    // create: placed on one of the tenant clusters, its database made there only.
    let (code, out, err) = tenant(Some(dir), &["create", "42"]);
    assert_eq!(code, 0, "{err}");
    let placed = if out.contains("cluster demo-c1,") {
        "demo-c1"
    } else {
        "demo-c2"
    };
    assert_eq!(
        out,
        format!("tenant 42: cluster {placed}, database t_42, version 2\n")
    );
    let (home, other) = if placed == "demo-c1" {
        (&c1, &c2)
    } else {
        (&c2, &c1)
    };
    assert_eq!(databases(home, "t\\_42").await, 1);
    assert_eq!(databases(other, "t\\_42").await, 0);
    assert_eq!(databases(&global, "t\\_42").await, 0);

    // Again: it exists already, and nothing changes.
    let (code, out, _) = tenant(Some(dir), &["create", "42"]);
    assert_eq!(code, 0);
    assert_eq!(
        out,
        format!("tenant 42: cluster {placed}, database t_42, version 2 (it existed already)\n")
    );

    // where: the route and the primary to reach.
    let (code, out, _) = tenant(Some(dir), &["where", "42"]);
    assert_eq!(code, 0);
    assert_eq!(
        out,
        format!(
            "tenant 42: cluster {placed}, database t_42, version 2; primary 127.0.0.1:{}\n",
            home.primary().port()
        )
    );

    // list: a table, JSON, one cluster's.
    assert_eq!(tenant(Some(dir), &["create", "a_7"]).0, 0);
    let (code, out, _) = tenant(Some(dir), &["list"]);
    assert_eq!(code, 0);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(lines[0].starts_with("TENANT  CLUSTER  "), "{out}");
    assert!(lines[1].starts_with("42      demo-c"), "{out}");
    assert!(lines[2].starts_with("a_7     demo-c"), "{out}");
    let (code, out, _) = tenant(Some(dir), &["list", "-o", "json"]);
    assert_eq!(code, 0);
    let json: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(json[0]["tenant"], "42");
    assert_eq!(json[0]["cluster"], placed);
    assert_eq!(json[0]["database"], "t_42");
    assert_eq!(json[0]["version"], 2);
    assert_eq!(json[0]["state"], "active");
    let (code, out, _) = tenant(Some(dir), &["list", "--cluster", placed]);
    assert_eq!(code, 0);
    assert!(out.contains("\n42 "), "{out}");
    let routes = directory.list(None).await.unwrap();
    assert_eq!(
        routes.iter().map(|(id, _)| id.clone()).collect::<Vec<_>>(),
        vec![
            TenantId::parse("42").unwrap(),
            TenantId::parse("a_7").unwrap()
        ]
    );

    // Bad input exits 2 with a clear message.
    let bad = [
        (
            vec!["where", "99"],
            "error: tenant 99 is not in the directory",
        ),
        (
            vec!["create", "Bad"],
            "error: invalid tenant id 'Bad': only lowercase letters",
        ),
        (
            vec!["list", "--cluster", "demo-directory"],
            "error: cluster demo-directory is not a tenant cluster of pool demo",
        ),
    ];
    for (args, want) in bad {
        let (code, _, err) = tenant(Some(dir), &args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.starts_with(want), "{args:?}: {err}");
    }
    let (code, _, err) = tenant(None, &["list"]);
    assert_eq!(code, 2);
    assert!(err.contains("--state-dir"), "{err}");
    let (code, _, err) = tenant(Some(&dir.join("nothing")), &["list"]);
    assert_eq!(code, 2);
    assert!(err.contains("holds no tenant pool"), "{err}");

    // move: the tenant and its rows go to the other cluster; a move through a proxy, or to a
    // cluster outside the pool, is refused.
    home.primary()
        .exec("CREATE TABLE t_42.kv (k INT PRIMARY KEY, v INT); INSERT INTO t_42.kv VALUES (1, 10), (2, 20)")
        .await
        .unwrap();
    let other_name = if placed == "demo-c1" {
        "demo-c2"
    } else {
        "demo-c1"
    };
    let (code, _, err) = tenant(Some(dir), &["move", "42", "--to", "demo-c9"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("demo-c9"), "{err}");
    let (code, out, err) = tenant(Some(dir), &["move", "42", "--to", other_name]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.starts_with(&format!(
            "tenant 42 moved from {placed} to {other_name} in "
        )),
        "{out}"
    );
    for phase in [
        "catching up",
        "frozen",
        "fenced",
        "flipped",
        "cleaning",
        "done",
    ] {
        assert!(err.contains(&format!("tenant 42: {phase}\n")), "{err}");
    }
    let rows = other
        .primary()
        .query("SELECT SUM(v) FROM t_42.kv")
        .await
        .unwrap();
    assert_eq!(rows[0].get::<i64, _>(0), Some(30));
    assert_eq!(databases(home, "t\\_42").await, 0);
    let (code, out, _) = tenant(Some(dir), &["where", "42"]);
    assert_eq!(code, 0);
    assert!(
        out.starts_with(&format!("tenant 42: cluster {other_name},")),
        "{out}"
    );
    let record: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("moves").join("42.json")).unwrap()).unwrap();
    assert_eq!(record["phase"], "done");
    // Moving it where it is already is refused, and nothing changes.
    let (code, _, err) = tenant(Some(dir), &["move", "42", "--to", other_name]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("is on cluster") && err.contains("already"),
        "{err}"
    );
    assert_eq!(databases(other, "t\\_42").await, 1);

    // rebalance: the largest tenant of the fuller cluster that narrows the gap goes to the
    // emptier one. Tenant b9, twice 42's size, joins 42 on the same cluster.
    let b9 = TenantId::parse("b9").unwrap();
    directory.reserve(&b9, other_name).await.unwrap();
    directory.activate(&b9).await.unwrap();
    other
        .primary()
        .exec("CREATE DATABASE t_b9; CREATE TABLE t_b9.x (k INT PRIMARY KEY); CREATE TABLE t_b9.y (k INT PRIMARY KEY)")
        .await
        .unwrap();
    let (code, out, err) = tenant(Some(dir), &["rebalance"]);
    assert_eq!(
        (code, out.as_str()),
        (
            0,
            "the clusters are used evenly (within 10%): nothing to move\n"
        ),
        "{err}"
    );
    let (code, out, err) = tenant(Some(dir), &["rebalance", "--margin", "0"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.starts_with("move tenant 42 ("), "{out}");
    assert!(
        out.trim_end()
            .ends_with(&format!("{other_name} -> {placed}")),
        "{out}"
    );
    assert_eq!(databases(home, "t\\_42").await, 0, "a plan moves nothing");
    let (code, out, err) = tenant(Some(dir), &["rebalance", "--margin", "0", "--apply"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!("tenant 42 moved from {other_name} to {placed}")),
        "{out}"
    );
    assert_eq!(databases(home, "t\\_42").await, 1);
    assert_eq!(databases(other, "t\\_b9").await, 1);
    let (code, _, err) = tenant(Some(dir), &["rebalance", "--margin", "2"]);
    assert_eq!(code, 2, "{err}");

    // The directory down: exit 1.
    global.primary().kill9().unwrap();
    let (code, _, err) = tenant(Some(dir), &["where", "42"]);
    assert_eq!(code, 1);
    assert!(err.starts_with("error: directory unreachable: "), "{err}");
    directory.close().await;
}
