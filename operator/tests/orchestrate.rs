//! The orchestration loop against real mariadbd processes from the test kit, with
//! lagless-proxy in front where clients are involved.

use std::time::{Duration, Instant};

use lagless_operator::orchestrate::act::{Actor, FileSink};
use lagless_operator::orchestrate::observe::{Credentials, Observer};
use lagless_operator::orchestrate::run::Orchestrator;
use lagless_operator::orchestrate::{ClusterSpec, ClusterState, MemberSpec};
use lagless_proxy::topology::{Flavor, Topology};
use lagless_testkit::{
    ADMIN_PASSWORD, ADMIN_USER, APP_PASSWORD, APP_USER, Cluster, REPL_PASSWORD, REPL_USER,
};
use mysql_async::prelude::Queryable;

const TICK: Duration = Duration::from_millis(200);

fn spec(cluster: &Cluster) -> ClusterSpec {
    let members = cluster
        .members()
        .iter()
        .map(|m| MemberSpec::new(format!("m{}", m.index()), "127.0.0.1", m.port()))
        .collect();
    let mut spec = ClusterSpec::new("test", members);
    spec.failover_cooldown = Duration::from_secs(1);
    spec
}

fn orchestrator(cluster: &Cluster, topology: &std::path::Path) -> Orchestrator {
    let admin = Credentials {
        user: ADMIN_USER.into(),
        password: ADMIN_PASSWORD.into(),
    };
    let actor = Actor {
        admin: admin.clone(),
        replication: Credentials {
            user: REPL_USER.into(),
            password: REPL_PASSWORD.into(),
        },
        app_users: Vec::new(),
        statement_timeout: Duration::from_secs(2),
        catch_up_timeout: Duration::from_secs(10),
    };
    Orchestrator::new(
        spec(cluster),
        Flavor::Mariadb,
        Observer::new(admin, Duration::from_millis(500)),
        actor,
        Box::new(FileSink(topology.to_path_buf())),
        None,
    )
}

/// Ticks until `done` holds for the published topology (bounded).
async fn tick_until(
    o: &mut Orchestrator,
    limit: Duration,
    done: impl Fn(&Topology) -> bool,
) -> Duration {
    let started = Instant::now();
    loop {
        let plan = o.tick().await;
        if o.published().is_some_and(&done) && plan.state == ClusterState::Healthy {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < limit,
            "not done in {limit:?}; last plan: {plan:#?}"
        );
        tokio::time::sleep(TICK).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bootstraps_empty_servers_into_a_replicating_cluster() {
    let cluster = Cluster::builder()
        .members(3)
        .replicate(false)
        .start()
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("topology.json");
    let mut o = orchestrator(&cluster, &path);
    let took = tick_until(&mut o, Duration::from_secs(30), |t| {
        t.primary.is_some() && t.replicas.len() == 2
    })
    .await;
    eprintln!("bootstrap took {took:?}");
    let published = Topology::read(&path).unwrap();
    let primary = published.primary.clone().unwrap();
    let p = cluster
        .members()
        .iter()
        .find(|m| m.port() == primary.port)
        .unwrap();
    let mut conn = p.app_conn().await.unwrap();
    conn.query_drop("CREATE TABLE b (id INT PRIMARY KEY)")
        .await
        .unwrap();
    conn.query_drop("INSERT INTO b VALUES (1)").await.unwrap();
    let head: String = conn
        .query_first("SELECT @@gtid_binlog_pos")
        .await
        .unwrap()
        .unwrap();
    for m in cluster
        .members()
        .iter()
        .filter(|m| m.port() != primary.port)
    {
        m.wait_for_gtid(&head, Duration::from_secs(10))
            .await
            .unwrap();
        let pos = m.positions().await.unwrap();
        assert!(pos.read_only, "replica {} is writable", m.index());
        assert_eq!(pos.io_running.as_deref(), Some("Yes"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fails_over_when_the_primary_is_killed_and_writes_resume_through_the_proxy() {
    let cluster = Cluster::builder().members(3).start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("topology.json");
    let mut o = orchestrator(&cluster, &path);
    // The running cluster is adopted: member 0 is the writable one holding everything.
    tick_until(&mut o, Duration::from_secs(20), |t| {
        t.primary.as_ref().is_some_and(|p| p.name == "m0")
    })
    .await;

    // A proxy follows the published topology.
    let users = dir.path().join("users.json");
    std::fs::write(
        &users,
        format!(r#"{{"users":[{{"user":"{APP_USER}","password":"{APP_PASSWORD}"}}]}}"#),
    )
    .unwrap();
    let mut config = lagless_proxy::config::Config::new(path.clone());
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.users_file = Some(users);
    config.topology_poll = Duration::from_millis(100);
    config.monitor_interval = Duration::from_millis(200);
    let proxy = lagless_proxy::server::Proxy::bind(config).await.unwrap();
    let port = proxy.local_addr().unwrap().port();
    let stop_proxy = proxy.shutdown_handle();
    tokio::spawn(proxy.run());
    let opts = lagless_testkit::conn_opts(port, APP_USER, APP_PASSWORD, Some("app"));
    let mut setup = mysql_async::Conn::new(opts.clone()).await.unwrap();
    setup
        .query_drop("CREATE TABLE w (id INT PRIMARY KEY AUTO_INCREMENT, at BIGINT)")
        .await
        .unwrap();

    // The orchestrator keeps ticking in the background.
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let driver = tokio::spawn(async move {
        while !*stop_rx.borrow() {
            o.tick().await;
            let _ = tokio::time::timeout(TICK, stop_rx.changed()).await;
        }
        o
    });

    // A steady writer: note when writes stop and start again.
    let killed_at = Instant::now() + Duration::from_millis(500);
    let mut resumed = None;
    let mut acked = 0u32;
    let mut killed = false;
    let deadline = Instant::now() + Duration::from_secs(40);
    while Instant::now() < deadline {
        if !killed && Instant::now() >= killed_at {
            cluster.primary().kill9().unwrap();
            killed = true;
        }
        let ok = async {
            let mut c = mysql_async::Conn::new(opts.clone()).await?;
            c.query_drop("INSERT INTO w (at) VALUES (1)").await
        };
        if let Ok(Ok(())) = tokio::time::timeout(Duration::from_secs(5), ok).await {
            acked += 1;
            if killed && resumed.is_none() {
                resumed = Some(killed_at.elapsed());
            }
            if resumed.is_some() && acked > 20 {
                break;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = stop_tx.send(true);
    let o = driver.await.unwrap();
    let _ = stop_proxy.send(true);
    let resumed = resumed.expect("writes never resumed after the primary was killed");
    eprintln!("writes accepted again {resumed:?} after kill -9 of the primary");
    let published = o.published().unwrap();
    let new_primary = published.primary.as_ref().unwrap();
    assert_ne!(new_primary.name, "m0");
    assert!(published.epoch >= 3, "{published:?}");
    assert!(
        published.replicas.iter().all(|r| r.name != "m0"),
        "the dead primary still takes reads"
    );
    // Exactly one writable member, and the other replica follows it.
    let mut writable = 0;
    for m in &cluster.members()[1..] {
        let p = m.positions().await.unwrap();
        if !p.read_only {
            writable += 1;
        }
    }
    assert_eq!(writable, 1);
    assert!(resumed < Duration::from_secs(15), "{resumed:?}");
}
