//! Where statements go: reads to replicas, writes and transactions to the primary, session
//! state pinned or replayed, topology changes, backend failures and graceful shutdown.

use std::time::{Duration, Instant};

use lagless_proxy::topology::TopologyState;
use lagless_testkit::{APP_PASSWORD, APP_USER};
use mysql_async::Conn;
use mysql_async::prelude::*;

use crate::support::{Harness, http_get, metric_reaching, metric_sum, topology_epoch, topology_of};

const WAIT: Duration = Duration::from_secs(20);
const PRIMARY_ID: i64 = 100;

async fn server_id(conn: &mut Conn) -> i64 {
    conn.query_first("SELECT @@server_id")
        .await
        .unwrap()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_go_to_replicas_and_writes_to_the_primary() {
    let h = Harness::start(3).await;
    let mut c = h.app().await;
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..20 {
        let mut c = h.app().await;
        seen.insert(server_id(&mut c).await);
    }
    assert!(
        !seen.contains(&PRIMARY_ID),
        "a plain read went to the primary: {seen:?}"
    );
    assert_eq!(seen.len(), 2, "reads spread over both replicas: {seen:?}");
    // A write through the proxy succeeds: it reached the primary (replicas refuse with 1290).
    c.query_drop("CREATE TABLE w (id INT PRIMARY KEY)")
        .await
        .unwrap();
    c.query_drop("INSERT INTO w VALUES (1)").await.unwrap();
    // Locking reads and session-bound functions go to the primary.
    for q in [
        "SELECT @@server_id FROM w FOR UPDATE",
        "SELECT @@server_id FROM w LOCK IN SHARE MODE",
        "SELECT @@server_id + 0 * LAST_INSERT_ID()",
        "SELECT /* lagless:route=primary */ @@server_id",
    ] {
        let id: Option<i64> = c.query_first(q).await.unwrap();
        assert_eq!(id, Some(PRIMARY_ID), "{q}");
    }
    let admin = h.admin.unwrap();
    let replica =
        metric_reaching(admin, "lagless_statements_total", "route=\"replica\"", 20.0).await;
    let primary =
        metric_reaching(admin, "lagless_statements_total", "route=\"primary\"", 6.0).await;
    assert!(replica >= 20.0, "{replica} statements counted on replicas");
    assert!(
        primary >= 6.0,
        "{primary} statements counted on the primary"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_stay_on_the_primary_until_they_end() {
    // (Transactions that start on replicas: read_only_transactions.rs.)
    let h = Harness::start_with(2, |c| {
        c.optimistic_transactions = false;
        c.read_only_on_replicas = false;
    })
    .await;
    let mut c = h.app().await;
    c.query_drop("CREATE TABLE t (id INT PRIMARY KEY)")
        .await
        .unwrap();
    for begin in [
        "BEGIN",
        "START TRANSACTION READ ONLY",
        "START TRANSACTION WITH CONSISTENT SNAPSHOT",
        "XA START 'x1'",
    ] {
        c.query_drop(begin).await.unwrap();
        assert_eq!(server_id(&mut c).await, PRIMARY_ID, "{begin}");
        assert_eq!(server_id(&mut c).await, PRIMARY_ID, "{begin}");
        if begin.starts_with("XA") {
            c.query_drop("XA END 'x1'").await.unwrap();
            c.query_drop("XA PREPARE 'x1'").await.unwrap();
            c.query_drop("XA COMMIT 'x1'").await.unwrap();
        } else {
            c.query_drop("COMMIT").await.unwrap();
        }
        assert_ne!(server_id(&mut c).await, PRIMARY_ID, "after {begin} ended");
    }
    // autocommit=0: every statement is in a transaction.
    c.query_drop("SET autocommit = 0").await.unwrap();
    assert_eq!(server_id(&mut c).await, PRIMARY_ID);
    c.query_drop("INSERT INTO t VALUES (1)").await.unwrap();
    c.query_drop("COMMIT").await.unwrap();
    assert_eq!(
        server_id(&mut c).await,
        PRIMARY_ID,
        "autocommit is still off"
    );
    c.query_drop("SET autocommit = 1").await.unwrap();
    assert_ne!(server_id(&mut c).await, PRIMARY_ID);
    // The replica connection must not have been left with autocommit off: a later read there
    // sees new data, not an old snapshot.
    c.query_drop("INSERT INTO t VALUES (2)").await.unwrap();
    h.cluster.wait_replicated(WAIT).await.unwrap();
    let n: Option<i64> = c.query_first("SELECT COUNT(*) FROM t").await.unwrap();
    assert_eq!(n, Some(2));
    // A transaction begun with a driver API (status flags, not statement text) stays too.
    let mut tx = c.start_transaction(Default::default()).await.unwrap();
    let id: Option<i64> = tx.query_first("SELECT @@server_id").await.unwrap();
    assert_eq!(id, Some(PRIMARY_ID));
    tx.rollback().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_that_cannot_move_pins_the_session_and_replayable_state_follows_it() {
    let h = Harness::start(2).await;
    // Replayed: session variables reach the replica connection.
    let mut c = h.app().await;
    c.query_drop("SET time_zone = '+03:00', sql_mode = 'ANSI_QUOTES'")
        .await
        .unwrap();
    c.query_drop("SET NAMES latin1").await.unwrap();
    let (id, tz, mode, cs): (i64, String, String, String) = c
        .query_first("SELECT @@server_id, @@time_zone, @@sql_mode, @@character_set_client")
        .await
        .unwrap()
        .unwrap();
    assert_ne!(id, PRIMARY_ID);
    assert_eq!(
        (tz.as_str(), mode.as_str(), cs.as_str()),
        ("+03:00", "ANSI_QUOTES", "latin1")
    );
    // USE follows the session to every backend.
    c.query_drop("CREATE DATABASE other").await.unwrap();
    c.query_drop("USE other").await.unwrap();
    h.cluster.wait_replicated(WAIT).await.unwrap();
    let db: Option<String> = c.query_first("SELECT DATABASE()").await.unwrap();
    assert_eq!(db.as_deref(), Some("other"));

    // Pinned: each kind of immovable state keeps later reads on the primary.
    for (setup, check) in [
        (
            "CREATE TEMPORARY TABLE tmp (x INT)",
            "SELECT @@server_id FROM (SELECT 1) s LEFT JOIN tmp ON 1",
        ),
        ("SET @v = 5", "SELECT @@server_id + 0 * @v"),
        ("DO GET_LOCK('l', 1)", "SELECT @@server_id"),
        ("LOCK TABLES mysql.db READ", "SELECT @@server_id"),
    ] {
        let mut c = h.app().await;
        assert_ne!(server_id(&mut c).await, PRIMARY_ID);
        c.query_drop(setup).await.unwrap();
        let id: Option<i64> = c.query_first(check).await.unwrap();
        assert_eq!(id, Some(PRIMARY_ID), "{setup}");
        assert_eq!(server_id(&mut c).await, PRIMARY_ID, "{setup}: still pinned");
    }
    // SHOW WARNINGS reads the warnings of the backend that ran the previous statement.
    let mut c = h.app().await;
    c.query_drop("SELECT CAST('1x' AS INT)").await.unwrap();
    let warnings: Vec<(String, i64, String)> = c.query("SHOW WARNINGS").await.unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(warnings[0].1, 1292);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pooled_connections_carry_nothing_between_clients() {
    let h = Harness::start(1).await;
    for round in 0..5 {
        let mut c = h.app().await;
        let v: Option<Option<i64>> = c.query_first("SELECT @leak").await.unwrap();
        assert_eq!(v, Some(None), "round {round}: a user variable leaked");
        assert!(
            c.query_drop("SELECT * FROM tmp_leak").await.is_err(),
            "round {round}"
        );
        c.query_drop("SET @leak = 1").await.unwrap();
        c.query_drop("CREATE TEMPORARY TABLE tmp_leak (x INT)")
            .await
            .unwrap();
        drop(c);
        // Let the pool reset and keep the connection.
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_without_a_database_gets_none_from_a_pooled_connection() {
    let h = Harness::start(3).await;
    let no_db = h.opts(APP_USER, APP_PASSWORD, None);
    let current = "SELECT DATABASE()";
    let on_primary = "/* lagless:route=primary */ SELECT DATABASE()";
    for round in 0..3 {
        // One client chooses a database on both of its backend connections, then leaves.
        let mut chooser = Conn::new(no_db.clone()).await.unwrap();
        chooser.query_drop("USE app").await.unwrap();
        let on_replica: Option<Option<String>> = chooser.query_first(current).await.unwrap();
        assert_eq!(on_replica, Some(Some("app".into())));
        drop(chooser);
        tokio::time::sleep(Duration::from_millis(50)).await;
        // The next one logged in without a database, as a server would leave it.
        let mut fresh = Conn::new(no_db.clone()).await.unwrap();
        for sql in [current, on_primary] {
            let db: Option<Option<String>> = fresh.query_first(sql).await.unwrap();
            assert_eq!(db, Some(None), "round {round}: {sql}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reads_survive_replicas_dying_and_fall_back_to_the_primary() {
    let h = Harness::start(3).await;
    let mut c = h.app().await;
    assert_ne!(server_id(&mut c).await, PRIMARY_ID);
    h.cluster.member(1).kill9().unwrap();
    // Every read still succeeds: the failed replica is retried elsewhere before any reply.
    for _ in 0..10 {
        let id = server_id(&mut c).await;
        assert_ne!(id, 101);
    }
    h.cluster.member(2).kill9().unwrap();
    for _ in 0..10 {
        assert_eq!(
            server_id(&mut c).await,
            PRIMARY_ID,
            "no replica left: the primary serves"
        );
    }
    let fallbacks = metric_reaching(
        h.admin.unwrap(),
        "lagless_statements_total",
        "route=\"primary_fallback\"",
        10.0,
    )
    .await;
    assert!(
        fallbacks >= 10.0,
        "{fallbacks} reads counted as falling back to the primary"
    );
    // A replica that comes back takes reads again once the monitor sees it.
    h.cluster.member(2).restart().await.unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        let mut fresh = h.app().await;
        if server_id(&mut fresh).await == 102 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "replica 2 never took reads again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_dying_mid_result_fails_only_that_statement() {
    let h = Harness::start(2).await;
    let mut victim = h.app().await;
    let mut other = h.app().await;
    let mut bystander_on_primary = h.app().await;
    bystander_on_primary
        .query_drop("CREATE TABLE keep (id INT)")
        .await
        .unwrap();
    // Rows stream out (wide enough that the proxy forwards many of them before the stall,
    // rather than holding a partial result in its buffer), then the server stalls: kill it
    // once the client has rows of the result, so it really dies mid-result.
    let mut result = victim
        .query_iter("SELECT seq, REPEAT('x', 100), IF(seq = 2000, SLEEP(5), 0) FROM seq_1_to_4000")
        .await
        .unwrap();
    let first = result.next().await.unwrap().map(|row| row.get::<i64, _>(0));
    assert_eq!(first, Some(Some(1)), "the result started");
    h.cluster.member(1).kill9().unwrap();
    let err = result.collect::<mysql_async::Row>().await.unwrap_err();
    drop(result);
    assert!(
        err.to_string().contains("ERROR 1158 (08S01)")
            && err.to_string().contains("Lost connection"),
        "{err}"
    );
    // The same client goes on (on the primary now), and so do the others.
    assert_eq!(server_id(&mut victim).await, PRIMARY_ID);
    assert_eq!(server_id(&mut other).await, PRIMARY_ID);
    bystander_on_primary
        .query_drop("INSERT INTO keep VALUES (1)")
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topology_changes_are_followed_and_switching_holds_writes() {
    let mut h = Harness::start_with(3, |c| c.write_hold_timeout = Duration::from_secs(3)).await;
    let mut c = h.app().await;
    c.query_drop("CREATE TABLE s (id INT PRIMARY KEY)")
        .await
        .unwrap();
    // Remove replica 1 from the topology: sessions move off it without noticing.
    let mut topo = topology_of(&h.cluster, 0);
    topo.replicas
        .retain(|m| m.port != h.cluster.member(1).port());
    h.publish_applied(topo.clone()).await;
    for _ in 0..10 {
        let mut fresh = h.app().await;
        assert_eq!(server_id(&mut fresh).await, 102);
        assert_eq!(server_id(&mut c).await, 102);
    }
    // A lower epoch is ignored: once the proxy has judged the file, it still routes as before.
    let admin = h.admin.unwrap();
    let reloads = "lagless_topology_reloads_total";
    let ignored = metric_sum(admin, reloads, "result=\"ignored\"").await;
    let mut old = topology_of(&h.cluster, 1);
    old.replicas.clear();
    old.write_atomically(&h.topology_path).unwrap();
    let judged = metric_reaching(admin, reloads, "result=\"ignored\"", ignored + 1.0).await;
    assert_eq!(judged, ignored + 1.0, "the lower epoch was not judged");
    assert_eq!(topology_epoch(admin).await, Some(h.epoch));
    assert_eq!(
        server_id(&mut c).await,
        102,
        "the proxy went back to a lower epoch"
    );

    // "switching": writes wait instead of failing, and go on when a primary is published.
    let mut switching = topo.clone();
    switching.state = TopologyState::Switching;
    let primary = switching.primary.take();
    h.publish_applied(switching.clone()).await;
    let (status, ready) = http_get(h.admin.unwrap(), "/readyz").await;
    assert_eq!(status, 503);
    assert!(ready.contains("switching"), "{ready}");
    // Reads that need no primary head still work while writes are held (a `strict` read
    // waits like a write: the head it must see is unknown until a primary is back).
    c.query_drop("SET lagless_consistency = 'eventual'")
        .await
        .unwrap();
    assert_eq!(server_id(&mut c).await, 102);
    c.query_drop("SET lagless_consistency = DEFAULT")
        .await
        .unwrap();
    let mut back = switching.clone();
    back.state = TopologyState::Ready;
    back.primary = primary;
    back.epoch = h.epoch + 1;
    let path = h.topology_path.clone();
    let publisher = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        back.write_atomically(&path).unwrap();
    });
    let started = Instant::now();
    c.query_drop("INSERT INTO s VALUES (1)").await.unwrap();
    let held = started.elapsed();
    publisher.await.unwrap();
    h.epoch += 1;
    assert!(
        held >= Duration::from_millis(1000),
        "the write did not wait: {held:?}"
    );
    assert!(
        held < Duration::from_secs(4),
        "the write waited too long: {held:?}"
    );
    // A switch that never ends: the write fails after the hold timeout with a clear error.
    h.publish_applied(switching).await;
    let started = Instant::now();
    let err = c.query_drop("INSERT INTO s VALUES (2)").await.unwrap_err();
    assert!(err.to_string().contains("ERROR 1105 (HY000)"), "{err}");
    assert!(
        started.elapsed() >= Duration::from_millis(2500),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graceful_shutdown_lets_transactions_finish() {
    // Far longer than the test needs, so neither the waits below nor a slow machine can
    // run into it: the transaction finishes and the proxy stops because the sessions ended.
    let h = Harness::start_with(1, |c| c.shutdown_timeout = Duration::from_secs(60)).await;
    let mut busy = h.app().await;
    let mut idle = h.app().await;
    busy.query_drop("CREATE TABLE g (id INT PRIMARY KEY)")
        .await
        .unwrap();
    busy.query_drop("BEGIN").await.unwrap();
    busy.query_drop("INSERT INTO g VALUES (1)").await.unwrap();
    let _ = h.stop.send(true);
    // No new connections; idle sessions are closed. The listener had an ephemeral port: once
    // it is closed, a connect to it can be a TCP self-connection (source port = destination
    // port), which never sends a greeting, so each attempt is bounded; one that hangs reached
    // no proxy.
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::time::timeout(
        Duration::from_secs(2),
        Conn::new(h.opts("app", "app-pass", Some("app"))),
    )
    .await
    .is_ok_and(|c| c.is_ok())
    {
        assert!(
            Instant::now() < deadline,
            "new connections still accepted after the shutdown"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    while idle.query_drop("SELECT 1").await.is_ok() {
        assert!(
            Instant::now() < deadline,
            "an idle session was not closed by the shutdown"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The open transaction can still finish.
    busy.query_drop("INSERT INTO g VALUES (2)").await.unwrap();
    busy.query_drop("COMMIT").await.unwrap();
    let n: Option<i64> = h
        .cluster
        .primary()
        .app_conn()
        .await
        .unwrap()
        .query_first("SELECT COUNT(*) FROM g")
        .await
        .unwrap();
    assert_eq!(n, Some(2));
    // ...and then the session ends and the proxy stops.
    let _ = busy.query_drop("SELECT 1").await;
    tokio::time::timeout(Duration::from_secs(10), h.task)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_uses_the_proxys_connection_ids() {
    let h = Harness::start(2).await;
    let mut a = h.app().await;
    let mut b = h.app().await;
    let a_id = a.id();
    // KILL QUERY ends A's running statement, wherever it runs.
    let started = Instant::now();
    let sleeper = tokio::spawn(async move {
        let r = a.query_drop("SELECT SLEEP(20)").await;
        (a, r, started.elapsed())
    });
    // Kill only once the statement is running on the replica.
    let mut replica = h.cluster.member(1).admin_conn().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let running: Option<i64> = replica
            .query_first(
                "SELECT COUNT(*) FROM information_schema.PROCESSLIST \
                 WHERE INFO LIKE '%SLEEP(20)%' AND ID <> CONNECTION_ID()",
            )
            .await
            .unwrap();
        if running.unwrap_or(0) > 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "SELECT SLEEP(20) never ran on the replica"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    b.query_drop(format!("KILL QUERY {a_id}")).await.unwrap();
    let (mut a, slept, took) = sleeper.await.unwrap();
    let err = slept.unwrap_err();
    assert!(err.to_string().contains("1317"), "interrupted: {err}");
    assert!(took < Duration::from_secs(10), "{took:?}");
    assert_eq!(server_id(&mut a).await, 101, "the session itself goes on");
    // An id the proxy does not know is refused, never passed to a backend (where it could be
    // a replication thread).
    for id in [a_id + 100, 888_888, 999_999] {
        let err = b.query_drop(format!("KILL {id}")).await.unwrap_err();
        assert!(err.to_string().contains("1094"), "{err}");
    }
    let p = h.cluster.member(1).positions().await.unwrap();
    assert_eq!(p.io_running.as_deref(), Some("Yes"));
    // KILL CONNECTION ends A.
    b.query_drop(format!("KILL CONNECTION {a_id}"))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while a.query_drop("SELECT 1").await.is_ok() {
        assert!(Instant::now() < deadline, "KILL CONNECTION left A open");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(server_id(&mut b).await, 101);
}

/// A primary that dies before the operator has published anything: new connections and
/// writes that find it unreachable wait for the next primary (bounded by the write hold)
/// instead of failing, since nothing reached a server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_primary_holds_new_work_until_the_next_one() {
    let mut h = Harness::start_with(2, |c| c.write_hold_timeout = Duration::from_secs(5)).await;
    let mut c = h.app().await;
    c.query_drop("CREATE TABLE f (id INT PRIMARY KEY)")
        .await
        .unwrap();
    let head = h
        .cluster
        .primary()
        .positions()
        .await
        .unwrap()
        .gtid_binlog_pos;
    let replica = &h.cluster.replicas()[0];
    replica
        .wait_for_gtid(&head, Duration::from_secs(10))
        .await
        .unwrap();
    h.cluster.primary().kill9().unwrap();
    // The failover that a few hundred milliseconds later promotes the replica.
    let mut promoted = topology_of(&h.cluster, 0);
    promoted.primary = promoted.replicas.pop();
    let opts = h.opts("app", "app-pass", Some("app"));
    // Taken before the spawn, so a late start of the task cannot shorten what is measured.
    let started = Instant::now();
    let client = tokio::spawn(async move {
        let mut fresh = Conn::new(opts).await?;
        fresh.query_drop("INSERT INTO f VALUES (1)").await?;
        Ok::<_, mysql_async::Error>(started.elapsed())
    });
    tokio::time::sleep(Duration::from_millis(600)).await;
    replica
        .exec("STOP SLAVE; RESET SLAVE ALL; SET GLOBAL read_only = OFF")
        .await
        .unwrap();
    h.publish(promoted);
    let held = client
        .await
        .unwrap()
        .expect("the held login and write succeed");
    assert!(held >= Duration::from_millis(500), "it was held: {held:?}");
    // The existing session's next write goes to the new primary too.
    c.query_drop("INSERT INTO f VALUES (2)").await.unwrap();
    let ids: Option<String> = c
        .query_first("SELECT GROUP_CONCAT(id ORDER BY id) FROM f")
        .await
        .unwrap();
    assert_eq!(ids.as_deref(), Some("1,2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn while_switching_open_transactions_finish_and_new_ones_wait() {
    let mut h = Harness::start_with(3, |c| c.write_hold_timeout = Duration::from_secs(5)).await;
    let mut setup = h.app().await;
    setup
        .query_drop("CREATE TABLE sw (id INT PRIMARY KEY)")
        .await
        .unwrap();
    let mut open = h.app().await;
    open.query_drop("BEGIN").await.unwrap();
    open.query_drop("INSERT INTO sw VALUES (1)").await.unwrap();

    let topo = topology_of(&h.cluster, 0);
    let mut switching = topo.clone();
    switching.state = TopologyState::Switching;
    switching.primary = None;
    h.publish_applied(switching.clone()).await;
    // The open transaction goes on where it started, reads included, and commits there.
    open.query_drop("INSERT INTO sw VALUES (2)").await.unwrap();
    assert_eq!(server_id(&mut open).await, PRIMARY_ID);
    open.query_drop("COMMIT").await.unwrap();

    // A new transaction (from the same session, or another) waits for the next primary.
    let mut back = topo.clone();
    back.epoch = h.epoch + 1;
    let path = h.topology_path.clone();
    let publisher = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(800)).await;
        back.write_atomically(&path).unwrap();
    });
    let started = Instant::now();
    open.query_drop("BEGIN").await.unwrap();
    let held = started.elapsed();
    publisher.await.unwrap();
    h.epoch += 1;
    assert!(
        held >= Duration::from_millis(600),
        "BEGIN did not wait: {held:?}"
    );
    open.query_drop("INSERT INTO sw VALUES (3)").await.unwrap();
    open.query_drop("COMMIT").await.unwrap();
    let rows: Vec<i64> = setup.query("SELECT id FROM sw ORDER BY id").await.unwrap();
    assert_eq!(rows, [1, 2, 3]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadlock_ends_the_transaction_for_routing_too() {
    let h = Harness::start(3).await;
    let mut setup = h.app().await;
    setup
        .query_drop("CREATE TABLE dl (id INT PRIMARY KEY, v INT)")
        .await
        .unwrap();
    setup
        .query_drop("INSERT INTO dl VALUES (1, 0), (2, 0)")
        .await
        .unwrap();
    let mut a = h.app().await;
    let mut b = h.app().await;
    for (c, id) in [(&mut a, 1), (&mut b, 2)] {
        c.query_drop("BEGIN").await.unwrap();
        c.query_drop(format!("UPDATE dl SET v = 1 WHERE id = {id}"))
            .await
            .unwrap();
    }
    // a waits for b's row; b then asks for a's: one of them is chosen as the deadlock victim.
    let waiting = tokio::spawn(async move {
        let r = a.query_drop("UPDATE dl SET v = 2 WHERE id = 2").await;
        (a, r)
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rb = b.query_drop("UPDATE dl SET v = 2 WHERE id = 1").await;
    let (a, ra) = waiting.await.unwrap();
    let (mut victim, mut survivor) = match (ra, rb) {
        (Err(e), Ok(())) => {
            assert!(e.to_string().contains("1213"), "{e}");
            (a, b)
        }
        (Ok(()), Err(e)) => {
            assert!(e.to_string().contains("1213"), "{e}");
            (b, a)
        }
        other => panic!("expected exactly one deadlock victim: {other:?}"),
    };
    survivor.query_drop("COMMIT").await.unwrap();
    // The server rolled the victim's transaction back: its reads leave the primary again, as
    // they do for any session outside a transaction.
    h.cluster.wait_replicated(WAIT).await.unwrap();
    let mut ids = std::collections::BTreeSet::new();
    for _ in 0..10 {
        ids.insert(server_id(&mut victim).await);
    }
    assert!(
        !ids.contains(&PRIMARY_ID),
        "reads stayed on the primary after the deadlock: {ids:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_that_only_began_moves_to_the_next_primary() {
    let mut h = Harness::start_with(3, |c| c.write_hold_timeout = Duration::from_secs(5)).await;
    let mut setup = h.app().await;
    setup
        .query_drop("CREATE TABLE mv (id INT PRIMARY KEY)")
        .await
        .unwrap();
    h.cluster.wait_replicated(WAIT).await.unwrap();
    // Member 1 becomes the next primary.
    let next = h.cluster.member(1);
    next.exec("STOP SLAVE; RESET SLAVE ALL; SET GLOBAL read_only = OFF")
        .await
        .unwrap();
    let next_id = i64::from(next.server_id());
    let next_port = next.port();
    let mut ready = topology_of(&h.cluster, 0);
    ready.primary = Some(lagless_proxy::topology::Member::new(
        "m1",
        "127.0.0.1",
        next_port,
    ));
    ready.replicas.retain(|m| m.port != next_port);
    let publish_later = |h: &mut Harness, mut topo: lagless_proxy::topology::Topology| {
        h.epoch += 1;
        topo.epoch = h.epoch;
        let path = h.topology_path.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(800)).await;
            topo.write_atomically(&path).unwrap();
        })
    };
    let on_primary = "SELECT @@server_id FROM mv LIMIT 1 FOR UPDATE";

    // A BEGIN ran on the old primary, which is then fenced before the transaction's first
    // statement (the proxy has not heard of the switch yet): the write is refused there, and
    // the transaction is opened again on the next primary instead of failing.
    let mut a = h.app().await;
    a.query_drop("START TRANSACTION").await.unwrap();
    h.cluster
        .primary()
        .exec("SET GLOBAL read_only = ON")
        .await
        .unwrap();
    let publisher = publish_later(&mut h, ready.clone());
    let started = Instant::now();
    a.query_drop("INSERT INTO mv VALUES (1)").await.unwrap();
    let held = started.elapsed();
    publisher.await.unwrap();
    assert!(held >= Duration::from_millis(600), "no wait: {held:?}");
    let on: Option<i64> = a.query_first(on_primary).await.unwrap();
    assert_eq!(on, Some(next_id));
    a.query_drop("COMMIT").await.unwrap();

    // A BEGIN, then "switching": the transaction holds nothing yet, so it does not stay on
    // the primary being switched away; its first statement waits and it is opened again.
    let mut b = h.app().await;
    b.query_drop("BEGIN").await.unwrap();
    let mut switching = ready.clone();
    switching.state = TopologyState::Switching;
    switching.primary = None;
    h.publish_applied(switching).await;
    let publisher = publish_later(&mut h, ready.clone());
    let started = Instant::now();
    b.query_drop("INSERT INTO mv VALUES (2)").await.unwrap();
    let held = started.elapsed();
    publisher.await.unwrap();
    assert!(held >= Duration::from_millis(600), "no wait: {held:?}");
    b.query_drop("ROLLBACK").await.unwrap();
    b.query_drop("BEGIN").await.unwrap();
    b.query_drop("INSERT INTO mv VALUES (3)").await.unwrap();
    b.query_drop("COMMIT").await.unwrap();
    let rows: Vec<i64> = h
        .cluster
        .member(1)
        .query("SELECT id FROM app.mv ORDER BY id")
        .await
        .unwrap()
        .into_iter()
        .filter_map(|r| r.get(0))
        .collect();
    assert_eq!(rows, [1, 3], "the rolled-back write must not be there");
}

/// Under `NO_BACKSLASH_ESCAPES` a backslash is an ordinary character, so `'x\'` ends at the
/// backslash and what follows is code. The proxy learns the mode from the status flags of the
/// server's OK packets and reads the statement as the server does: the tail that is a string
/// by default is a locking clause here, and a locking read must run on the primary.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_backslash_escapes_changes_where_a_statement_runs() {
    let h = Harness::start(2).await;
    let mut c = h.app().await;
    c.query_drop("CREATE TABLE nbe (id INT PRIMARY KEY)")
        .await
        .unwrap();
    c.query_drop("INSERT INTO nbe VALUES (1)").await.unwrap();
    h.cluster.wait_replicated(WAIT).await.unwrap();
    let locking = r"SELECT @@server_id, 'x\' FROM nbe FOR UPDATE -- '";
    let as_string = "x' FROM nbe FOR UPDATE -- ";
    // By default the rest of the line is one string: a plain read, served by a replica.
    let (id, text): (i64, String) = c.query_first(locking).await.unwrap().unwrap();
    assert_eq!(text, as_string);
    assert_ne!(id, PRIMARY_ID, "a plain read went to the primary");

    c.query_drop("SET sql_mode = 'NO_BACKSLASH_ESCAPES'")
        .await
        .unwrap();
    // A read-only replica refuses a locking read (1290); the primary runs it.
    const ON_A_REPLICA: &str = "the locking read went to a replica";
    let (id, text): (i64, String) = c.query_first(locking).await.expect(ON_A_REPLICA).unwrap();
    assert_eq!(text, r"x\", "the server reads the backslash as a character");
    assert_eq!(id, PRIMARY_ID, "{ON_A_REPLICA}");
    // A statement prepared under the mode is read the same way.
    let prepared = r"SELECT @@server_id, 'y\' FROM nbe LOCK IN SHARE MODE -- '";
    let (id, text): (i64, String) = c
        .exec_first(prepared, ())
        .await
        .expect(ON_A_REPLICA)
        .unwrap();
    assert_eq!((id, text.as_str()), (PRIMARY_ID, r"y\"), "prepared");
    // Reads stay reads: the mode comes back with every response, replicas' too.
    for _ in 0..3 {
        let (id, text): (i64, String) = c
            .query_first(r"SELECT @@server_id, 'z\'")
            .await
            .unwrap()
            .unwrap();
        assert_ne!(id, PRIMARY_ID);
        assert_eq!(text, r"z\");
        let (id, _): (i64, String) = c.query_first(locking).await.expect(ON_A_REPLICA).unwrap();
        assert_eq!(id, PRIMARY_ID, "after a read on a replica");
    }

    // Without the flag the proxy reads backslash escapes again.
    c.query_drop("SET sql_mode = DEFAULT").await.unwrap();
    let (id, text): (i64, String) = c.query_first(locking).await.unwrap().unwrap();
    assert_eq!(text, as_string);
    assert_ne!(id, PRIMARY_ID, "a plain read went to the primary");
}

/// The status flags of the greeting the proxy sends a new client.
async fn greeting_status(h: &Harness) -> u16 {
    use lagless_proxy::protocol::handshake::Greeting;
    use lagless_proxy::protocol::packet::PacketStream;
    let tcp = tokio::net::TcpStream::connect(h.addr).await.unwrap();
    let (_, greet) = PacketStream::new(tcp).read_logical().await.unwrap();
    Greeting::parse(&greet).unwrap().status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_global_no_backslash_escapes_is_the_mode_new_sessions_start_in() {
    use lagless_proxy::protocol::constants::status::NO_BACKSLASH_ESCAPES;
    let h = Harness::start(2).await;
    let mut setup = h.app().await;
    setup
        .query_drop("CREATE TABLE nbe (id INT PRIMARY KEY)")
        .await
        .unwrap();
    setup
        .query_drop("INSERT INTO nbe VALUES (1)")
        .await
        .unwrap();
    h.cluster.wait_replicated(WAIT).await.unwrap();
    assert_eq!(greeting_status(&h).await & NO_BACKSLASH_ESCAPES, 0);
    // The servers' global mode, as an administrator sets it; no session asks for it.
    for m in h.cluster.members() {
        let mut admin = m.admin_conn().await.unwrap();
        admin
            .query_drop("SET GLOBAL sql_mode = 'NO_BACKSLASH_ESCAPES'")
            .await
            .unwrap();
    }
    // The monitor reads the primary's greeting on every tick, and passes the flag on to the
    // proxy's own greeting, which client libraries read to choose how to escape strings.
    let deadline = Instant::now() + Duration::from_secs(10);
    while greeting_status(&h).await & NO_BACKSLASH_ESCAPES == 0 {
        assert!(
            Instant::now() < deadline,
            "the proxy's greeting never said NO_BACKSLASH_ESCAPES"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A new session is lexed in that mode from its first statement.
    let locking = r"SELECT @@server_id, 'x\' FROM nbe FOR UPDATE -- '";
    const ON_A_REPLICA: &str = "the locking read went to a replica";
    let mut c = h.app().await;
    let (id, text): (i64, String) = c.query_first(locking).await.expect(ON_A_REPLICA).unwrap();
    assert_eq!((id, text.as_str()), (PRIMARY_ID, r"x\"));
    // COM_RESET_CONNECTION goes back to the global mode, not the built-in default.
    assert!(c.reset().await.unwrap(), "COM_RESET_CONNECTION was used");
    let (id, _): (i64, String) = c.query_first(locking).await.expect(ON_A_REPLICA).unwrap();
    assert_eq!(id, PRIMARY_ID, "after a reset");
    for m in h.cluster.members() {
        let mut admin = m.admin_conn().await.unwrap();
        admin
            .query_drop("SET GLOBAL sql_mode = DEFAULT")
            .await
            .unwrap();
    }
}
