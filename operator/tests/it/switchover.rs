//! Planned switchovers against real servers: positions that include a member's own former
//! writes, a rollback at each failure point before the promotion, and client sessions
//! (transactions, prepared statements) across a switchover and a failover.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use lagless_core::topology::{Flavor, Topology};
use lagless_operator::orchestrate::act::{FileSink, TopologySink};
use lagless_operator::orchestrate::observe::Credentials;
use lagless_operator::orchestrate::run::Orchestrator;
use lagless_operator::orchestrate::{Event, SemiSync, Switchover, SwitchoverTarget};
use lagless_testkit::{APP_PASSWORD, APP_USER, Cluster, REPL_PASSWORD, REPL_USER};
use mysql_async::prelude::Queryable;

use super::orchestrate::{TICK, admin, adopted, proxy_following, spec, writable_members};

/// Requests switchover `id` and ticks until the history says it completed or failed; returns
/// how long that took and the events of those ticks (warnings left out).
async fn switch(
    o: &mut Orchestrator,
    id: &str,
    to: SwitchoverTarget,
    limit: Duration,
) -> (Duration, Vec<Event>) {
    o.spec.switchover = Some(Switchover { id: id.into(), to });
    let started = Instant::now();
    let mut events = Vec::new();
    loop {
        let plan = o.tick().await;
        events.extend(
            plan.events
                .iter()
                .filter(|e| !matches!(e, Event::Warning { .. }))
                .cloned(),
        );
        let h = o.history();
        if h.completed_switchover.as_deref() == Some(id)
            || h.failed_switchover.as_deref() == Some(id)
        {
            return (started.elapsed(), events);
        }
        assert!(
            started.elapsed() < limit,
            "switchover {id} neither done nor failed in {limit:?}; last plan: {plan:#?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn primary_of(o: &Orchestrator) -> String {
    o.published()
        .and_then(|t| t.primary.as_ref())
        .map(|p| p.name.clone())
        .unwrap_or_default()
}

fn failed(events: &[Event]) -> Option<(&str, bool)> {
    events.iter().find_map(|e| match e {
        Event::SwitchoverFailed {
            reason, restored, ..
        } => Some((reason.as_str(), *restored)),
        _ => None,
    })
}

/// Exactly one writable member, the published primary, and every other member replicating
/// from it with both threads running.
async fn assert_one_primary_followed(cluster: &Cluster, o: &Orchestrator) {
    let primary = primary_of(o);
    let index: usize = primary.trim_start_matches('m').parse().unwrap();
    assert_eq!(writable_members(cluster).await, vec![index]);
    let port = cluster.member(index).port();
    for m in cluster.members().iter().filter(|m| m.index() != index) {
        m.wait_threads_running(Duration::from_secs(10))
            .await
            .unwrap_or_else(|e| panic!("m{} does not replicate: {e}", m.index()));
        let source: Option<u16> = m
            .admin_conn()
            .await
            .unwrap()
            .query_first::<mysql_async::Row, _>("SHOW SLAVE STATUS")
            .await
            .unwrap()
            .and_then(|row| row.get_opt::<u16, _>("Master_Port").and_then(Result::ok));
        assert_eq!(source, Some(port), "m{} follows another source", m.index());
    }
}

/// A running 3-member cluster adopted by an orchestrator (m0 the primary); the directory holds
/// the topology file and must outlive the orchestrator.
async fn adopted_cluster() -> (Cluster, tempfile::TempDir, Orchestrator) {
    let cluster = Cluster::builder().members(3).start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let o = adopted(&cluster, &dir.path().join("topology.json")).await;
    (cluster, dir, o)
}

/// [`adopted_cluster`] with a lagless-proxy following the topology: client options for it and
/// the handle that stops it.
async fn fronted_cluster() -> (
    Cluster,
    tempfile::TempDir,
    Orchestrator,
    mysql_async::Opts,
    tokio::sync::watch::Sender<bool>,
) {
    let (cluster, dir, o) = adopted_cluster().await;
    let (port, stop_proxy) = proxy_following(dir.path(), &dir.path().join("topology.json")).await;
    let opts = lagless_testkit::conn_opts(port, APP_USER, APP_PASSWORD, Some("app"));
    (cluster, dir, o, opts, stop_proxy)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switching_back_after_a_write_and_ten_round_trips_on_an_idle_cluster() {
    let (cluster, _dir, mut o) = adopted_cluster().await;
    o.spec.semi_sync = Some(SemiSync { acks: 1 });
    // Semi-sync set up, then one write, as a user's first steps would be.
    for _ in 0..3 {
        o.tick().await;
        tokio::time::sleep(TICK).await;
    }
    cluster
        .primary()
        .exec("CREATE TABLE app.t (i INT PRIMARY KEY); INSERT INTO app.t VALUES (1)")
        .await
        .unwrap();
    cluster
        .wait_replicated(Duration::from_secs(10))
        .await
        .unwrap();

    // The reported three commands: a switchover, and another one back to the old primary,
    // which waited for its own write in its replication position forever.
    let (took, events) = switch(
        &mut o,
        "s1",
        SwitchoverTarget::Member("m1".into()),
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(failed(&events), None, "{events:?}");
    assert_eq!(primary_of(&o), "m1");
    eprintln!("m0 -> m1 in {took:?}");
    // Demoted with its own write moved into its replication position: a wait on it returns.
    let m0 = cluster.member(0).positions().await.unwrap();
    assert!(
        !m0.gtid_binlog_pos.is_empty() && m0.gtid_slave_pos == m0.gtid_binlog_pos,
        "m0's own write is not in its slave position: {m0:?}"
    );
    // "Best" is m0 again (all equal, first by name): the old primary, holding its own write.
    let (took, events) = switch(
        &mut o,
        "s2",
        SwitchoverTarget::Best,
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(failed(&events), None, "{events:?}");
    assert_eq!(primary_of(&o), "m0");
    eprintln!("m1 -> m0 in {took:?}");

    // Ten more round trips with no write in between, each well under a second.
    let mut longest = Duration::ZERO;
    for round in 0..10 {
        let to = if primary_of(&o) == "m1" { "m2" } else { "m1" };
        let id = format!("r{round}");
        let (took, events) = switch(
            &mut o,
            &id,
            SwitchoverTarget::Member(to.into()),
            Duration::from_secs(20),
        )
        .await;
        assert_eq!(failed(&events), None, "round {round}: {events:?}");
        assert_eq!(primary_of(&o), to);
        longest = longest.max(took);
    }
    eprintln!("10 idle switchovers, the longest took {longest:?}");
    assert!(longest < Duration::from_secs(1), "{longest:?}");
    assert_one_primary_followed(&cluster, &o).await;
    // The write is everywhere, once.
    for m in cluster.members() {
        let rows = m.query("SELECT COUNT(*) FROM app.t").await.unwrap();
        assert_eq!(rows[0].get::<i64, _>(0), Some(1), "m{}", m.index());
    }
}

/// Publishes to a file, except that it refuses the first "switching" topology while armed.
struct RefusingSink {
    file: FileSink,
    armed: Arc<AtomicBool>,
}

impl TopologySink for RefusingSink {
    fn publish<'a>(
        &'a self,
        topology: &'a Topology,
    ) -> futures::future::BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            if topology.is_switching() && self.armed.swap(false, Ordering::SeqCst) {
                return Err("the topology store refused the write".into());
            }
            self.file.write(topology)
        })
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_switchover_whose_publish_fails_leaves_the_primary_in_place() {
    let cluster = Cluster::builder().members(3).start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("topology.json");
    let armed = Arc::new(AtomicBool::new(false));
    let sink = RefusingSink {
        file: FileSink(path.clone()),
        armed: armed.clone(),
    };
    let replication = Credentials {
        user: REPL_USER.into(),
        password: REPL_PASSWORD.into(),
    };
    let mut o = Orchestrator::with_defaults(
        spec(&cluster),
        Flavor::Mariadb,
        admin(),
        replication,
        Box::new(sink),
        None,
    );
    for _ in 0..50 {
        o.tick().await;
        if primary_of(&o) == "m0" {
            break;
        }
        tokio::time::sleep(TICK).await;
    }
    let epoch = o.published().unwrap().epoch;
    armed.store(true, Ordering::SeqCst);
    let (took, events) = switch(
        &mut o,
        "s1",
        SwitchoverTarget::Member("m1".into()),
        Duration::from_secs(10),
    )
    .await;
    let (reason, restored) = failed(&events).expect("the switchover failed");
    assert!(reason.contains("refused the write"), "{reason}");
    assert!(restored);
    assert_eq!(primary_of(&o), "m0");
    assert!(o.published().unwrap().epoch > epoch);
    assert!(took < Duration::from_secs(3), "{took:?}");
    assert_eq!(writable_members(&cluster).await, vec![0]);
    // Not tried again under the same id.
    for _ in 0..3 {
        o.tick().await;
    }
    assert_eq!(primary_of(&o), "m0");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_candidate_that_cannot_catch_up_gives_the_role_back_within_seconds() {
    let (cluster, _dir, mut o, opts, stop_proxy) = fronted_cluster().await;
    o.spec.switchover_catch_up = Duration::from_secs(1);
    let mut c = mysql_async::Conn::new(opts).await.unwrap();
    c.query_drop("CREATE TABLE c (i INT PRIMARY KEY)")
        .await
        .unwrap();
    cluster
        .wait_replicated(Duration::from_secs(10))
        .await
        .unwrap();
    // m1 stops applying, and misses a write.
    cluster.member(1).stop_sql_thread().await.unwrap();
    c.query_drop("INSERT INTO c VALUES (1)").await.unwrap();

    let (took, events) = switch(
        &mut o,
        "s1",
        SwitchoverTarget::Member("m1".into()),
        Duration::from_secs(15),
    )
    .await;
    let (reason, restored) = failed(&events).expect("the switchover failed");
    eprintln!("rolled back after {took:?}: {reason}");
    assert!(reason.contains("m1"), "{reason}");
    assert!(restored);
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert_eq!(primary_of(&o), "m0");
    assert_eq!(writable_members(&cluster).await, vec![0]);
    // Writes through the proxy go on, on the same connection.
    c.query_drop("INSERT INTO c VALUES (2)").await.unwrap();
    let _ = stop_proxy.send(true);
}

/// A switchover to m1 under way: a transaction held open on m0 keeps it draining (2 s) while
/// member `victim` is killed (kill -9) half a second in.
struct KilledMidSwitchover {
    cluster: Arc<Cluster>,
    o: Orchestrator,
    took: Duration,
    events: Vec<Event>,
    killed_at: Instant,
    /// The client connection (directly to m0) whose transaction was open.
    open: mysql_async::Conn,
    /// Holds the topology file: keep it bound while the orchestrator publishes.
    _dir: tempfile::TempDir,
}

async fn kill_mid_switchover(victim: usize) -> KilledMidSwitchover {
    let (cluster, dir, mut o) = adopted_cluster().await;
    o.spec.switchover_drain = Duration::from_secs(2);
    let mut open = cluster.primary().app_conn().await.unwrap();
    open.query_drop("CREATE TABLE k (i INT PRIMARY KEY)")
        .await
        .unwrap();
    cluster
        .wait_replicated(Duration::from_secs(10))
        .await
        .unwrap();
    open.query_drop("BEGIN").await.unwrap();
    open.query_drop("INSERT INTO k VALUES (1)").await.unwrap();
    let cluster = Arc::new(cluster);
    let killer = {
        let cluster = cluster.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(500)).await;
            cluster.member(victim).kill9().unwrap();
            Instant::now()
        })
    };
    let (took, events) = switch(
        &mut o,
        "s1",
        SwitchoverTarget::Member("m1".into()),
        Duration::from_secs(15),
    )
    .await;
    let killed_at = killer.await.unwrap();
    KilledMidSwitchover {
        cluster,
        o,
        took,
        events,
        killed_at,
        open,
        _dir: dir,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_candidate_killed_mid_switchover_gives_the_role_back() {
    let KilledMidSwitchover {
        cluster,
        o,
        took,
        events,
        mut open,
        _dir,
        ..
    } = kill_mid_switchover(1).await;
    let (reason, restored) = failed(&events).expect("the switchover failed");
    eprintln!("rolled back after {took:?}: {reason}");
    assert!(restored, "{reason}");
    assert_eq!(primary_of(&o), "m0");
    assert_eq!(writable_members(&cluster).await, vec![0]);
    // The transaction still open at the end of the drain was ended, not left holding locks.
    assert!(open.query_drop("INSERT INTO k VALUES (2)").await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_old_primary_killed_mid_switchover_is_replaced_within_seconds() {
    let KilledMidSwitchover {
        cluster,
        mut o,
        events,
        killed_at,
        _dir,
        ..
    } = kill_mid_switchover(0).await;
    let (reason, restored) = failed(&events).expect("the switchover failed");
    assert!(
        !restored,
        "the dead primary cannot get the role back: {reason}"
    );
    // Recovery elects a member that holds everything once m0 has failed its probes.
    let deadline = Instant::now() + Duration::from_secs(15);
    while primary_of(&o).is_empty() || primary_of(&o) == "m0" {
        assert!(Instant::now() < deadline, "no primary: {:?}", o.published());
        o.tick().await;
        tokio::time::sleep(TICK).await;
    }
    let took = killed_at.elapsed();
    eprintln!(
        "{} primary {took:?} after the old one died mid-switchover",
        primary_of(&o)
    );
    assert!(took < Duration::from_secs(10), "{took:?}");
    let index: usize = primary_of(&o).trim_start_matches('m').parse().unwrap();
    assert_eq!(writable_members(&cluster).await, vec![index]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_keep_their_transactions_and_prepared_statements_across_a_switchover() {
    let (cluster, _dir, mut o, opts, stop_proxy) = fronted_cluster().await;
    o.spec.switchover_drain = Duration::from_secs(3);
    let mut setup = mysql_async::Conn::new(opts.clone()).await.unwrap();
    setup
        .query_drop("CREATE TABLE s (i INT PRIMARY KEY)")
        .await
        .unwrap();
    // A: a transaction that finishes during the drain. B: prepared statements, no
    // transaction. C: a transaction still open when the drain ends.
    let mut a = mysql_async::Conn::new(opts.clone()).await.unwrap();
    let mut b = mysql_async::Conn::new(opts.clone()).await.unwrap();
    let mut c = mysql_async::Conn::new(opts.clone()).await.unwrap();
    let write = "INSERT INTO s VALUES (?)";
    // A locking read: served by the primary.
    let whoami = "SELECT @@server_id FROM s WHERE i >= ? LIMIT 1 FOR UPDATE";
    b.exec_drop(write, (10,)).await.unwrap();
    let before: Option<u32> = b.exec_first(whoami, (0,)).await.unwrap();
    a.query_drop("BEGIN").await.unwrap();
    a.query_drop("INSERT INTO s VALUES (1)").await.unwrap();
    c.query_drop("BEGIN").await.unwrap();
    c.query_drop("INSERT INTO s VALUES (100)").await.unwrap();

    let driver = tokio::spawn(async move {
        let r = switch(
            &mut o,
            "s1",
            SwitchoverTarget::Member("m1".into()),
            Duration::from_secs(20),
        )
        .await;
        (o, r)
    });
    // Well inside the drain, and after the proxy has seen "switching".
    tokio::time::sleep(Duration::from_millis(800)).await;
    a.query_drop("INSERT INTO s VALUES (2)").await.unwrap();
    a.query_drop("COMMIT").await.unwrap();
    // Its next statement waits for the new primary instead of failing.
    a.query_drop("INSERT INTO s VALUES (3)").await.unwrap();
    let (o, (took, events)) = driver.await.unwrap();
    assert_eq!(failed(&events), None, "{events:?}");
    assert_eq!(primary_of(&o), "m1");
    eprintln!("switchover with a 3 s drain took {took:?}");
    // B goes on with the statements it prepared on the old primary.
    b.exec_drop(write, (11,)).await.unwrap();
    let after: Option<u32> = b.exec_first(whoami, (0,)).await.unwrap();
    assert_ne!(
        before, after,
        "B was served by the same server after the switchover"
    );
    assert_eq!(after, Some(cluster.member(1).server_id()));
    // C's transaction outlived the drain: a clear error, and none of its work committed.
    let err = c
        .query_drop("INSERT INTO s VALUES (101)")
        .await
        .expect_err("a transaction open past the drain cannot go on");
    eprintln!("C: {err}");
    let rows: Vec<i64> = setup.query("SELECT i FROM s ORDER BY i").await.unwrap();
    assert_eq!(rows, [1, 2, 3, 10, 11]);
    let _ = stop_proxy.send(true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_failover_idle_sessions_go_on_with_their_prepared_statements() {
    let (cluster, _dir, o, opts, stop_proxy) = fronted_cluster().await;
    let mut b = mysql_async::Conn::new(opts).await.unwrap();
    b.query_drop("CREATE TABLE f (i INT PRIMARY KEY)")
        .await
        .unwrap();
    let write = "INSERT INTO f VALUES (?)";
    b.exec_drop(write, (1,)).await.unwrap();
    cluster
        .wait_replicated(Duration::from_secs(10))
        .await
        .unwrap();

    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let driver = tokio::spawn(async move {
        let mut o = o;
        while !*stop_rx.borrow() {
            o.tick().await;
            let _ = tokio::time::timeout(TICK, stop_rx.changed()).await;
        }
        o
    });
    cluster.primary().kill9().unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The session was idle when its primary died: its next execution waits for the new
    // primary, where the statement is prepared again under the same client id.
    let started = Instant::now();
    b.exec_drop(write, (2,)).await.unwrap();
    eprintln!(
        "prepared write accepted {:?} after kill -9",
        started.elapsed()
    );
    let _ = stop_tx.send(true);
    let o = driver.await.unwrap();
    assert_ne!(primary_of(&o), "m0");
    let rows: Vec<i64> = b.exec("SELECT i FROM f WHERE i > ?", (0,)).await.unwrap();
    assert_eq!(rows, [1, 2]);
    let _ = stop_proxy.send(true);
}
