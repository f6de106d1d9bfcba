//! The orchestration loop against real mariadbd processes from the test kit, with
//! lagless-proxy in front where clients are involved.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use lagless_core::topology::{Flavor, Topology};
use lagless_operator::orchestrate::act::{FileSink, SeedOutcome, Seeder};
use lagless_operator::orchestrate::observe::Credentials;
use lagless_operator::orchestrate::run::Orchestrator;
use lagless_operator::orchestrate::seed::{Donor, SeedReport, seed};
use lagless_operator::orchestrate::{ClusterSpec, ClusterState, Event, MemberSpec};
use lagless_testkit::{
    ADMIN_PASSWORD, ADMIN_USER, APP_PASSWORD, APP_USER, Cluster, REPL_PASSWORD, REPL_USER,
};
use mysql_async::prelude::Queryable;

pub(crate) const TICK: Duration = Duration::from_millis(200);

pub(crate) fn init_logging() {
    if let Ok(filter) = std::env::var("LAGLESS_TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    }
}

pub(crate) fn spec(cluster: &Cluster) -> ClusterSpec {
    init_logging();
    let members = cluster
        .members()
        .iter()
        .map(|m| MemberSpec::new(format!("m{}", m.index()), "127.0.0.1", m.port()))
        .collect();
    let mut spec = ClusterSpec::new("test", members);
    spec.failover_cooldown = Duration::from_secs(1);
    spec
}

pub(crate) fn orchestrator(cluster: &Cluster, topology: &std::path::Path) -> Orchestrator {
    Orchestrator::with_defaults(
        spec(cluster),
        Flavor::Mariadb,
        Credentials {
            user: ADMIN_USER.into(),
            password: ADMIN_PASSWORD.into(),
        },
        Credentials {
            user: REPL_USER.into(),
            password: REPL_PASSWORD.into(),
        },
        Box::new(FileSink(topology.to_path_buf())),
        None,
    )
}

/// A lagless-proxy in this process following the topology file; returns its port and the
/// handle that stops it.
pub(crate) async fn proxy_following(
    dir: &std::path::Path,
    topology: &std::path::Path,
) -> (u16, tokio::sync::watch::Sender<bool>) {
    let users = dir.join("users.json");
    std::fs::write(
        &users,
        format!(r#"{{"users":[{{"user":"{APP_USER}","password":"{APP_PASSWORD}"}}]}}"#),
    )
    .unwrap();
    let mut config = lagless_proxy::config::Config::new(topology.to_path_buf());
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.users_file = Some(users);
    config.topology_poll = Duration::from_millis(100);
    config.monitor_interval = Duration::from_millis(200);
    let proxy = lagless_proxy::server::Proxy::bind(config).await.unwrap();
    let port = proxy.local_addr().unwrap().port();
    let stop = proxy.shutdown_handle();
    tokio::spawn(proxy.run());
    (port, stop)
}

/// Ticks until `done` holds for the published topology (bounded).
pub(crate) async fn tick_until(
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
    // The observed view carries each replica's reported lag (caught up: about 0 s), none for
    // the primary.
    o.tick().await;
    let view = o.last_view().expect("a tick observed the members");
    for m in &view.members {
        if m.port == primary.port {
            assert_eq!(m.lag_seconds, None, "{}", m.name);
        } else {
            assert!(matches!(m.lag_seconds, Some(s) if s < 5), "{m:?}");
        }
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
    let (port, stop_proxy) = proxy_following(dir.path(), &path).await;
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

/// Adopts a running 3-member cluster and returns the orchestrator with m0 published.
pub(crate) async fn adopted(cluster: &Cluster, path: &std::path::Path) -> Orchestrator {
    let mut o = orchestrator(cluster, path);
    tick_until(&mut o, Duration::from_secs(20), |t| {
        t.primary.as_ref().is_some_and(|p| p.name == "m0")
    })
    .await;
    o
}

pub(crate) async fn writable_members(cluster: &Cluster) -> Vec<usize> {
    let mut out = Vec::new();
    for m in cluster.members() {
        if !m.is_running() {
            continue;
        }
        // A demoted primary's sessions are killed by the fence, this query's included: ask
        // again on a new connection.
        let mut tries = 0;
        let positions = loop {
            match m.positions().await {
                Ok(p) => break p,
                Err(e) if tries < 3 => {
                    tries += 1;
                    eprintln!("m{}: {e}; asking again", m.index());
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("m{}: {e}", m.index()),
            }
        };
        if !positions.read_only {
            out.push(m.index());
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_primary_is_replaced_and_rejoins_as_a_replica_when_it_resumes() {
    let cluster = Cluster::builder().members(3).start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("topology.json");
    let mut o = adopted(&cluster, &path).await;
    cluster.primary().pause().unwrap();
    // Past the detection window: the replicas lose the stopped primary, then the plan fails over.
    let started = Instant::now();
    while o
        .published()
        .and_then(|t| t.primary.as_ref())
        .is_some_and(|p| p.name == "m0")
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no failover from a paused primary"
        );
        o.tick().await;
        tokio::time::sleep(TICK).await;
    }
    eprintln!(
        "failover from a SIGSTOPped primary after {:?}",
        started.elapsed()
    );
    // About 2.4 s here (probes every 200 ms, 500 ms each, three in a row; replicas' net
    // timeout 1 s); the bound leaves room for a loaded machine.
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "a hung primary took {:?} to replace",
        started.elapsed()
    );
    let new_primary = o.published().unwrap().primary.clone().unwrap();
    cluster.primary().resume().unwrap();
    // The old primary comes back writable; it must not stay so.
    let started = Instant::now();
    loop {
        o.tick().await;
        let writable = writable_members(&cluster).await;
        let m0 = cluster.primary().positions().await.unwrap();
        let rejoined = m0.io_running.as_deref() == Some("Yes");
        let quarantined = o.history().quarantined.contains_key("m0");
        if writable.len() == 1 && m0.read_only && (rejoined || quarantined) {
            eprintln!(
                "old primary fenced ({}) after {:?}",
                if rejoined { "rejoined" } else { "quarantined" },
                started.elapsed()
            );
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "writable: {writable:?}, m0: {m0:?}"
        );
        tokio::time::sleep(TICK).await;
    }
    let idx: usize = new_primary.name[1..].parse().unwrap();
    assert_eq!(writable_members(&cluster).await, vec![idx]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errant_transactions_quarantine_a_replica() {
    let cluster = Cluster::builder().members(3).start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("topology.json");
    let mut o = adopted(&cluster, &path).await;
    // A write straight on replica m2 (the admin account may write on a read-only server).
    cluster
        .member(2)
        .exec("CREATE DATABASE errant_db")
        .await
        .unwrap();
    let started = Instant::now();
    while !o.history().quarantined.contains_key("m2") {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "m2 was never quarantined"
        );
        o.tick().await;
        tokio::time::sleep(TICK).await;
    }
    let published = Topology::read(&path).unwrap();
    assert!(
        published.replicas.iter().all(|r| r.name != "m2"),
        "an errant replica still takes reads"
    );
    assert!(published.replicas.iter().any(|r| r.name == "m1"));
    // Nor does it acknowledge writes: it replicates no more (a failover compares only the
    // members in the cluster, so a write only it had would be lost).
    let status = cluster.member(2).query("SHOW SLAVE STATUS").await.unwrap();
    let io: Option<String> = status.first().and_then(|r| r.get("Slave_IO_Running"));
    assert_eq!(
        io.as_deref(),
        Some("No"),
        "a quarantined replica still replicates"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn planned_switchover_under_load_pauses_writes_without_errors() {
    let cluster = Cluster::builder().members(3).start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("topology.json");
    let mut o = adopted(&cluster, &path).await;
    let (port, stop_proxy) = proxy_following(dir.path(), &path).await;
    let opts = lagless_testkit::conn_opts(port, APP_USER, APP_PASSWORD, Some("app"));
    let mut c = mysql_async::Conn::new(opts.clone()).await.unwrap();
    c.query_drop("CREATE TABLE s (id INT PRIMARY KEY AUTO_INCREMENT, v INT)")
        .await
        .unwrap();

    // A writer on its own connection, recording errors and the longest gap between commits.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let writer = tokio::spawn(async move {
        let mut c = mysql_async::Conn::new(opts).await.unwrap();
        let (mut errors, mut writes, mut longest) = (Vec::new(), 0u32, Duration::ZERO);
        let mut last = Instant::now();
        while !*stop_rx.borrow() {
            match c.query_drop("INSERT INTO s (v) VALUES (1)").await {
                Ok(()) => {
                    writes += 1;
                    longest = longest.max(last.elapsed());
                    last = Instant::now();
                }
                Err(e) => errors.push(e.to_string()),
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        (errors, writes, longest)
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    o.spec.switchover = Some(lagless_operator::orchestrate::Switchover {
        id: "move-1".into(),
        to: lagless_operator::orchestrate::SwitchoverTarget::Member("m1".into()),
    });
    tick_until(&mut o, Duration::from_secs(20), |t| {
        t.primary.as_ref().is_some_and(|p| p.name == "m1")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _ = stop_tx.send(true);
    let (errors, writes, longest) = writer.await.unwrap();
    let _ = stop_proxy.send(true);
    eprintln!(
        "switchover: {writes} writes, {} errors, longest pause {longest:?}",
        errors.len()
    );
    assert!(errors.is_empty(), "{errors:?}");
    assert!(writes > 20);
    assert_eq!(writable_members(&cluster).await, vec![1]);
    let m0 = cluster.primary().positions().await.unwrap();
    assert!(m0.read_only);
    assert_eq!(
        m0.io_running.as_deref(),
        Some("Yes"),
        "the old primary replicates from the new one"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_semi_sync_a_failover_loses_no_acknowledged_write() {
    let cluster = Cluster::builder().members(3).start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("topology.json");
    let mut o = orchestrator(&cluster, &path);
    o.spec.semi_sync = Some(lagless_operator::orchestrate::SemiSync { acks: 1 });
    tick_until(&mut o, Duration::from_secs(20), |t| {
        t.primary.as_ref().is_some_and(|p| p.name == "m0")
    })
    .await;
    let on: Option<i64> = cluster
        .primary()
        .query("SELECT @@rpl_semi_sync_master_enabled")
        .await
        .unwrap()[0]
        .get(0);
    assert_eq!(on, Some(1));
    // The observer reports it: the primary waits for acknowledgements, the replicas send them.
    let mut observer = lagless_operator::orchestrate::observe::Observer::new(
        Credentials {
            user: ADMIN_USER.into(),
            password: ADMIN_PASSWORD.into(),
        },
        Duration::from_millis(500),
    );
    let view = observer
        .observe(&o.spec, Flavor::Mariadb, o.published())
        .await;
    let state = |name: &str| view.member(name).and_then(|m| m.semi_sync).unwrap();
    assert!(state("m0").source_enabled);
    assert!(state("m1").replica_enabled && state("m2").replica_enabled);

    // Writers straight to the primary; every acknowledged id is recorded.
    let mut c = cluster.primary().app_conn().await.unwrap();
    c.query_drop("CREATE TABLE ack (id INT PRIMARY KEY)")
        .await
        .unwrap();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let acked_so_far = Arc::new(AtomicUsize::new(0));
    let mut writers = Vec::new();
    for w in 0..4 {
        let mut conn = cluster.primary().app_conn().await.unwrap();
        let stop_rx = stop_rx.clone();
        let acked_so_far = acked_so_far.clone();
        writers.push(tokio::spawn(async move {
            let mut acked = Vec::new();
            let mut id = w;
            while !*stop_rx.borrow() {
                match conn.exec_drop("INSERT INTO ack VALUES (?)", (id,)).await {
                    Ok(()) => {
                        acked.push(id);
                        acked_so_far.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => break,
                }
                id += 4;
            }
            acked
        }));
    }
    // Killed under load: once more than 50 writes were acknowledged, however long that takes.
    let deadline = Instant::now() + Duration::from_secs(30);
    while acked_so_far.load(Ordering::Relaxed) <= 50 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cluster.primary().kill9().unwrap();
    let _ = stop_tx.send(true);
    let mut acked = Vec::new();
    for w in writers {
        acked.extend(w.await.unwrap());
    }
    assert!(
        acked.len() > 50,
        "only {} writes before the kill",
        acked.len()
    );
    let started = Instant::now();
    while o
        .published()
        .and_then(|t| t.primary.as_ref())
        .is_some_and(|p| p.name == "m0")
    {
        assert!(started.elapsed() < Duration::from_secs(30), "no failover");
        o.tick().await;
        tokio::time::sleep(TICK).await;
    }
    let new_primary = o.published().unwrap().primary.clone().unwrap();
    let idx: usize = new_primary.name[1..].parse().unwrap();
    let rows = cluster
        .member(idx)
        .query("SELECT id FROM app.ack")
        .await
        .unwrap();
    let present: std::collections::BTreeSet<i64> = rows
        .into_iter()
        .filter_map(|r| r.get::<i64, _>(0))
        .collect();
    let lost: Vec<i64> = acked
        .iter()
        .map(|&i| i64::from(i))
        .filter(|i| !present.contains(i))
        .collect();
    eprintln!(
        "semi-sync failover: {} acknowledged writes, {} lost",
        acked.len(),
        lost.len()
    );
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    assert!(
        o.history().quarantined.is_empty(),
        "{:?}",
        o.history().quarantined
    );
}

pub(crate) fn admin() -> Credentials {
    Credentials {
        user: ADMIN_USER.into(),
        password: ADMIN_PASSWORD.into(),
    }
}

/// Seeding with the test kit's servers: stop the member, wipe its data, stream the donor's
/// copy in with [`seed`], start it again. Keeps the last report for the test to inspect.
/// Seeds kit members as the platform would: stop, copy from the donor, start.
pub(crate) struct KitSeeder {
    cluster: Arc<Cluster>,
    last: Mutex<Option<(SeedReport, u64)>>,
}

impl KitSeeder {
    pub(crate) fn new(cluster: Arc<Cluster>) -> Self {
        Self {
            cluster,
            last: Mutex::new(None),
        }
    }

    fn member(&self, name: &str) -> Result<&lagless_testkit::Member, String> {
        let index: usize = name
            .strip_prefix('m')
            .and_then(|i| i.parse().ok())
            .ok_or_else(|| format!("no kit member is called {name}"))?;
        Ok(self.cluster.member(index))
    }
}

impl Seeder for KitSeeder {
    fn seed<'a>(
        &'a self,
        member: &'a MemberSpec,
        donor: &'a MemberSpec,
    ) -> BoxFuture<'a, Result<SeedOutcome, String>> {
        Box::pin(async move {
            let target = self.member(&member.name)?;
            let source = self.member(&donor.name)?;
            target.shutdown().await.map_err(|e| e.to_string())?;
            std::fs::remove_dir_all(target.data_dir()).map_err(|e| e.to_string())?;
            let progress = Arc::new(AtomicU64::new(0));
            let donor = Donor {
                host: donor.host.clone(),
                port: donor.port,
                datadir: source.data_dir(),
                tls_ca: None,
            };
            let report = seed(&donor, &admin(), &target.data_dir(), progress.clone())
                .await
                .map_err(|e| e.to_string())?;
            target.restart().await.map_err(|e| e.to_string())?;
            let outcome = SeedOutcome {
                gtid_position: report.gtid_position.clone(),
                bytes: report.bytes,
                elapsed: report.elapsed,
            };
            *self.last.lock().unwrap() = Some((report, progress.load(Ordering::Relaxed)));
            Ok(outcome)
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_empty_member_is_seeded_from_a_replica_and_joins() {
    let cluster = Arc::new(
        Cluster::builder()
            .members(3)
            .replicate(false)
            .start()
            .await
            .unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("topology.json");
    let seeder = Arc::new(KitSeeder::new(cluster.clone()));
    let mut o = orchestrator(&cluster, &path).with_seeder(seeder.clone());
    // Two members first; m2 stays an untouched, empty server.
    let newcomer = o.spec.members.pop().unwrap();
    tick_until(&mut o, Duration::from_secs(30), |t| {
        t.primary.as_ref().is_some_and(|p| p.name == "m0") && t.replicas.len() == 1
    })
    .await;

    let mut c = cluster.primary().app_conn().await.unwrap();
    c.query_drop("CREATE TABLE big (id INT PRIMARY KEY, b LONGBLOB)")
        .await
        .unwrap();
    for i in 0..16 {
        c.exec_drop("INSERT INTO big VALUES (?, REPEAT(MD5(?), 16384))", (i, i))
            .await
            .unwrap();
    }

    // The spec grows: the plan seeds m2 from the replica, then publishes it.
    o.spec.members.push(newcomer);
    let took = tick_until(&mut o, Duration::from_secs(120), |t| {
        t.replicas.iter().any(|r| r.name == "m2")
    })
    .await;
    let (report, progress) = seeder.last.lock().unwrap().clone().expect("never seeded");
    eprintln!(
        "m2 joined after {took:?}: seeded {:.1} MiB in {:?} ({:.1} MB/s), position {}",
        report.bytes as f64 / 1_048_576.0,
        report.elapsed,
        report.mb_per_s(),
        report.gtid_position
    );
    assert!(report.bytes > 8 * 1024 * 1024, "{report:?}");
    assert_eq!(progress, report.bytes);
    assert!(!report.gtid_position.is_empty());
    let seeded = Event::Seeded {
        member: "m2".into(),
        donor: "m1".into(),
    };
    let log: Vec<String> = o.events().map(|e| e.event.to_string()).collect();
    assert!(o.events().any(|e| e.event == seeded), "{log:?}");

    // A write after the copy replicates to it, and its data matches the primary's.
    let target = cluster.member(2);
    c.exec_drop("INSERT INTO big VALUES (?, 'after')", (1000,))
        .await
        .unwrap();
    let head = cluster.primary().positions().await.unwrap().gtid_binlog_pos;
    target
        .wait_for_gtid(&head, Duration::from_secs(20))
        .await
        .unwrap();
    let pos = target.positions().await.unwrap();
    assert!(pos.read_only);
    assert_eq!(pos.io_running.as_deref(), Some("Yes"));
    let expected = checksum(cluster.primary()).await;
    assert!(expected.is_some());
    assert_eq!(
        checksum(target).await,
        expected,
        "the seeded member's table differs"
    );
    // Its binary log carries the copy's history, so it could serve replicas as a primary.
    assert_eq!(pos.gtid_binlog_pos, head);
}

async fn checksum(m: &lagless_testkit::Member) -> Option<i64> {
    let rows = m.query("CHECKSUM TABLE app.big").await.unwrap();
    rows[0].get::<Option<i64>, _>(1).flatten()
}

async fn global(m: &lagless_testkit::Member, variable: &str) -> Option<i64> {
    m.query(&format!("SELECT @@{variable}")).await.unwrap()[0].get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn semi_sync_settings_that_drift_are_put_back() {
    let cluster = Cluster::builder().members(3).start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("topology.json");
    let mut o = orchestrator(&cluster, &path);
    o.spec.semi_sync = Some(lagless_operator::orchestrate::SemiSync { acks: 1 });
    tick_until(&mut o, Duration::from_secs(20), |t| {
        t.primary.as_ref().is_some_and(|p| p.name == "m0")
    })
    .await;
    let replica = cluster.member(1);
    assert_eq!(
        global(replica, "rpl_semi_sync_slave_enabled").await,
        Some(1)
    );

    // Someone turns acknowledgements off on a replica; the topology does not change.
    replica
        .exec("SET GLOBAL rpl_semi_sync_slave_enabled = OFF")
        .await
        .unwrap();
    let epoch = o.published().unwrap().epoch;
    tick_until(&mut o, Duration::from_secs(10), |_| true).await;
    assert_eq!(
        global(replica, "rpl_semi_sync_slave_enabled").await,
        Some(1)
    );
    assert_eq!(o.published().unwrap().epoch, epoch);

    // The user turns semi-sync off: the primary stops waiting.
    o.spec.semi_sync = None;
    tick_until(&mut o, Duration::from_secs(10), |_| true).await;
    assert_eq!(
        global(cluster.primary(), "rpl_semi_sync_master_enabled").await,
        Some(0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scaling_down_removes_a_replica_cleanly() {
    let cluster = Cluster::builder().members(3).start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("topology.json");
    let mut o = adopted(&cluster, &path).await;
    o.spec.members.retain(|m| m.name != "m2");
    tick_until(&mut o, Duration::from_secs(20), |t| {
        t.replicas.iter().all(|r| r.name != "m2")
    })
    .await;
    let published = Topology::read(&path).unwrap();
    assert_eq!(
        published.primary.as_ref().map(|p| p.name.as_str()),
        Some("m0")
    );
    assert_eq!(
        published
            .replicas
            .iter()
            .map(|r| r.name.as_str())
            .collect::<Vec<_>>(),
        vec!["m1"]
    );
    let m2 = cluster.member(2).positions().await.unwrap();
    assert_eq!(
        m2.io_running.as_deref(),
        Some("No"),
        "the removed member stopped replicating"
    );
    assert!(m2.read_only);
}

/// The topology document deleted, then damaged, then deleted while no orchestrator runs: each
/// time the next one is published above every epoch before it, and a proxy that kept
/// following the old one follows the new ones (its writes reach the next primary).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn epochs_never_go_back_when_the_topology_document_is_lost() {
    let cluster = Cluster::builder().members(3).start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("topology.json");
    let mut o = adopted(&cluster, &path).await;
    let (port, _stop) = proxy_following(dir.path(), &path).await;
    let mut highest = o.published().unwrap().epoch;
    let on_disk = |path: &std::path::Path| Topology::read(path).ok().map(|t| t.epoch);

    std::fs::remove_file(&path).unwrap();
    tick_until(&mut o, Duration::from_secs(10), |t| t.epoch > highest).await;
    assert_eq!(on_disk(&path), o.published().map(|t| t.epoch));
    highest = o.published().unwrap().epoch;

    std::fs::write(&path, b"{ not a topology").unwrap();
    tick_until(&mut o, Duration::from_secs(10), |t| t.epoch > highest).await;
    assert_eq!(on_disk(&path), o.published().map(|t| t.epoch));
    highest = o.published().unwrap().epoch;

    // A new orchestrator with no document to read back: the epoch recorded beside it counts.
    drop(o);
    std::fs::remove_file(&path).unwrap();
    let sink = FileSink(path.clone());
    assert_eq!(sink.recorded_epoch(), highest);
    let mut o = orchestrator(&cluster, &path).with_max_epoch(sink.recorded_epoch());
    tick_until(&mut o, Duration::from_secs(20), |t| t.primary.is_some()).await;
    let adopted_epoch = o.published().unwrap().epoch;
    assert!(adopted_epoch > highest, "{adopted_epoch} after {highest}");

    // The proxy follows: after a switchover its writes land on the new primary.
    o.spec.switchover = Some(lagless_operator::orchestrate::Switchover {
        id: "after-loss".into(),
        to: lagless_operator::orchestrate::SwitchoverTarget::Member("m1".into()),
    });
    tick_until(&mut o, Duration::from_secs(20), |t| {
        t.primary.as_ref().is_some_and(|p| p.name == "m1")
    })
    .await;
    let app = mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(port)
        .user(Some(APP_USER))
        .pass(Some(APP_PASSWORD))
        .prefer_socket(false);
    let mut c = mysql_async::Conn::new(app).await.unwrap();
    c.query_drop("CREATE DATABASE IF NOT EXISTS lost_doc")
        .await
        .unwrap();
    c.query_drop("CREATE TABLE lost_doc.t (id INT PRIMARY KEY)")
        .await
        .unwrap();
    c.query_drop("INSERT INTO lost_doc.t VALUES (1)")
        .await
        .unwrap();
    let rows: Vec<i64> = cluster
        .member(1)
        .admin_conn()
        .await
        .unwrap()
        .query("SELECT id FROM lost_doc.t")
        .await
        .unwrap();
    assert_eq!(rows, [1]);
}
