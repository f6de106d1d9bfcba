//! Transactions on replicas, on real servers. `START TRANSACTION READ ONLY`: served by a
//! replica that has what the session's consistency needs, its statements kept there until it
//! ends, a statement that belongs on the primary moving a transaction that has read nothing
//! and refused in one that has. Optimistic plain transactions: read on a replica, moved to the
//! primary at the first write with their reads checked there, rolled back with a deadlock's
//! error when those changed. And the switches that keep transactions on the primary.

use std::time::Duration;

use mysql_async::Conn;
use mysql_async::prelude::*;

use crate::support::Harness;

const PRIMARY_ID: i64 = 100;
/// ER_CANT_EXECUTE_IN_READ_ONLY_TRANSACTION.
const READ_ONLY_TRANSACTION: u16 = 1792;

async fn server_id(conn: &mut Conn) -> i64 {
    conn.query_first("SELECT @@server_id")
        .await
        .unwrap()
        .unwrap()
}

async fn cluster(read_only_on_replicas: bool) -> Harness {
    let h = Harness::start_with(2, |c| c.read_only_on_replicas = read_only_on_replicas).await;
    let mut admin = h.cluster.primary().admin_conn().await.unwrap();
    admin
        .query_drop(
            "CREATE TABLE app.t (id INT PRIMARY KEY, v INT); INSERT INTO app.t VALUES (1, 10)",
        )
        .await
        .unwrap();
    h.cluster
        .wait_replicated(Duration::from_secs(20))
        .await
        .unwrap();
    h
}

/// Row `id`'s `v`, read by `conn`.
async fn value(conn: &mut Conn, id: i32) -> Option<i32> {
    conn.query_first(format!("SELECT v FROM t WHERE id = {id}"))
        .await
        .unwrap()
}

/// Rows with `id`, counted by `conn`.
async fn rows(conn: &mut Conn, id: i32) -> Option<i64> {
    conn.query_first(format!("SELECT COUNT(*) FROM t WHERE id = {id}"))
        .await
        .unwrap()
}

fn code(e: mysql_async::Error) -> u16 {
    match e {
        mysql_async::Error::Server(e) => e.code,
        other => panic!("not a server error: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_transaction_runs_on_a_replica_until_it_ends() {
    let h = cluster(true).await;
    let mut c = h.app().await;
    for _ in 0..3 {
        c.query_drop("START TRANSACTION READ ONLY").await.unwrap();
        let on = server_id(&mut c).await;
        assert_ne!(on, PRIMARY_ID, "a replica serves the transaction");
        let v = value(&mut c, 1).await;
        assert_eq!(v, Some(10));
        assert_eq!(server_id(&mut c).await, on, "it stays on one replica");
        c.query_drop("COMMIT").await.unwrap();
    }
    // Prepared statements run in it too.
    c.query_drop("START TRANSACTION READ ONLY").await.unwrap();
    let v: Option<i32> = c
        .exec_first("SELECT v FROM t WHERE id = ?", (1,))
        .await
        .unwrap();
    assert_eq!(v, Some(10));
    let id: Option<i64> = c.exec_first("SELECT @@server_id", ()).await.unwrap();
    assert_ne!(id, Some(PRIMARY_ID));
    c.query_drop("ROLLBACK").await.unwrap();
    // After it, writes go to the primary as ever.
    c.query_drop("INSERT INTO t VALUES (2, 20)").await.unwrap();
    let mut direct = h.cluster.primary().app_conn().await.unwrap();
    let n = rows(&mut direct, 2).await;
    assert_eq!(n, Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statements_that_belong_on_the_primary_move_a_fresh_transaction_and_are_refused_later() {
    let h = cluster(true).await;
    let mut direct = h.cluster.primary().app_conn().await.unwrap();
    let mut c = h.app().await;

    // What the primary itself answers a write in a READ ONLY transaction.
    direct
        .query_drop("START TRANSACTION READ ONLY")
        .await
        .unwrap();
    let _ = value(&mut direct, 1).await;
    let want = code(
        direct
            .query_drop("INSERT INTO t VALUES (3, 30)")
            .await
            .unwrap_err(),
    );
    assert_eq!(want, READ_ONLY_TRANSACTION);
    direct.query_drop("ROLLBACK").await.unwrap();

    // A write right after the start: the transaction opens on the primary, which refuses it.
    c.query_drop("START TRANSACTION READ ONLY").await.unwrap();
    let got = code(
        c.query_drop("INSERT INTO t VALUES (3, 30)")
            .await
            .unwrap_err(),
    );
    assert_eq!(got, want);
    assert_eq!(server_id(&mut c).await, PRIMARY_ID, "the transaction moved");
    c.query_drop("ROLLBACK").await.unwrap();

    // So does a locking read right after the start (MariaDB refuses those in a READ ONLY
    // transaction too); a user lock runs there.
    c.query_drop("START TRANSACTION READ ONLY").await.unwrap();
    let got = code(
        c.query_drop("SELECT v FROM t WHERE id = 1 FOR UPDATE")
            .await
            .unwrap_err(),
    );
    assert_eq!(got, READ_ONLY_TRANSACTION);
    c.query_drop("ROLLBACK").await.unwrap();
    c.query_drop("START TRANSACTION READ ONLY").await.unwrap();
    let got: Option<i32> = c.query_first("SELECT GET_LOCK('x', 0)").await.unwrap();
    assert_eq!(got, Some(1));
    assert_eq!(server_id(&mut c).await, PRIMARY_ID);
    c.query_drop("COMMIT").await.unwrap();
    let _: Option<i32> = c.query_first("SELECT RELEASE_LOCK('x')").await.unwrap();
    // (A user lock binds the session to its primary connection for good.)
    let mut c = h.app().await;

    // After a read on the replica, the same statements get the primary's error code, and the
    // transaction goes on where it was.
    c.query_drop("START TRANSACTION READ ONLY").await.unwrap();
    let on = server_id(&mut c).await;
    assert_ne!(on, PRIMARY_ID);
    for sql in [
        "INSERT INTO t VALUES (3, 30)",
        "SELECT v FROM t WHERE id = 1 FOR UPDATE",
        "SELECT GET_LOCK('x', 0)",
    ] {
        let got = code(c.query_drop(sql).await.unwrap_err());
        assert_eq!(got, READ_ONLY_TRANSACTION, "{sql}");
    }
    assert_eq!(server_id(&mut c).await, on);
    c.query_drop("COMMIT").await.unwrap();
    let rows = rows(&mut direct, 3).await;
    assert_eq!(rows, Some(0), "nothing was written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_transaction_sees_every_acknowledged_write() {
    let h = cluster(true).await;
    let replica = h.cluster.member(1);
    let mut c = h.app().await;
    // A replica that applies nothing: the transaction waits for it (bounded), then starts on
    // the primary, and sees the write either way.
    replica.stop_sql_thread().await.unwrap();
    c.query_drop("UPDATE t SET v = 11 WHERE id = 1")
        .await
        .unwrap();
    let mut reader = h.app().await;
    reader
        .query_drop("START TRANSACTION READ ONLY")
        .await
        .unwrap();
    let v = value(&mut reader, 1).await;
    assert_eq!(v, Some(11));
    assert_eq!(server_id(&mut reader).await, PRIMARY_ID);
    reader.query_drop("COMMIT").await.unwrap();
    // Caught up, the replica serves the next one, which sees the write too.
    replica.start_sql_thread().await.unwrap();
    h.cluster
        .wait_replicated(Duration::from_secs(20))
        .await
        .unwrap();
    // The start that gave up waiting left nothing open on the replica: autocommit reads
    // there see each new write.
    for v in [12, 13] {
        c.exec_drop("UPDATE t SET v = ? WHERE id = 1", (v,))
            .await
            .unwrap();
        let seen = value(&mut reader, 1).await;
        assert_eq!(seen, Some(v));
    }
    c.query_drop("UPDATE t SET v = 11 WHERE id = 1")
        .await
        .unwrap();
    reader
        .query_drop("START TRANSACTION READ ONLY")
        .await
        .unwrap();
    let v = value(&mut reader, 1).await;
    assert_eq!(v, Some(11));
    assert_ne!(server_id(&mut reader).await, PRIMARY_ID);
    reader.query_drop("COMMIT").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_lost_in_a_transaction_ends_the_session_as_the_server_would() {
    let h = cluster(true).await;
    let mut c = h.app().await;
    c.query_drop("START TRANSACTION READ ONLY").await.unwrap();
    assert_ne!(server_id(&mut c).await, PRIMARY_ID);
    // The replica's connection of this session is killed.
    let mut admin = h.cluster.member(1).admin_conn().await.unwrap();
    let ids: Vec<u64> = admin
        .query("SELECT ID FROM information_schema.PROCESSLIST WHERE USER = 'app'")
        .await
        .unwrap();
    assert!(!ids.is_empty());
    for id in ids {
        admin.query_drop(format!("KILL {id}")).await.unwrap();
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    // The transaction is gone, so is the session: never a statement run outside it.
    let err = c
        .query_first::<i32, _>("SELECT v FROM t WHERE id = 1")
        .await
        .unwrap_err();
    assert!(
        !matches!(err, mysql_async::Error::Server(_)) || code(err) == 1927,
        "the session ends or names the lost transaction"
    );
    let mut again = h.app().await;
    let v = value(&mut again, 1).await;
    assert_eq!(v, Some(10));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_switch_keeps_read_only_transactions_on_the_primary() {
    let h = cluster(false).await;
    let mut c = h.app().await;
    c.query_drop("START TRANSACTION READ ONLY").await.unwrap();
    assert_eq!(server_id(&mut c).await, PRIMARY_ID);
    c.query_drop("COMMIT").await.unwrap();
}

async fn moves(h: &Harness, result: &str) -> f64 {
    crate::support::metric_sum(
        h.admin.unwrap(),
        "lagless_optimistic_moves_total",
        &format!("result=\"{result}\""),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plain_transaction_reads_on_a_replica_and_moves_to_the_primary_to_write_once() {
    let h = cluster(true).await;
    let mut c = h.app().await;
    // Only reads: the replica serves it all.
    c.query_drop("BEGIN").await.unwrap();
    assert_ne!(server_id(&mut c).await, PRIMARY_ID);
    let v = value(&mut c, 1).await;
    assert_eq!(v, Some(10));
    c.query_drop("COMMIT").await.unwrap();

    // Reads (text and prepared), then a write: the transaction moves, its reads checked on
    // the primary, and commits once.
    c.query_drop("BEGIN").await.unwrap();
    let v = value(&mut c, 1).await;
    let w: Option<i32> = c
        .exec_first("SELECT v FROM t WHERE id = ?", (1,))
        .await
        .unwrap();
    assert_eq!((v, w), (Some(10), Some(10)));
    c.query_drop("UPDATE t SET v = v + 1 WHERE id = 1")
        .await
        .unwrap();
    assert_eq!(server_id(&mut c).await, PRIMARY_ID, "the transaction moved");
    let mine = value(&mut c, 1).await;
    assert_eq!(mine, Some(11), "it sees its own write");
    c.query_drop("COMMIT").await.unwrap();
    let mut direct = h.cluster.primary().app_conn().await.unwrap();
    let v = value(&mut direct, 1).await;
    assert_eq!(v, Some(11), "applied exactly once");
    assert_eq!(moves(&h, "moved").await, 1.0);

    // A write as the first statement opens the transaction on the primary; no move needed.
    let mut fresh = h.app().await;
    fresh.query_drop("BEGIN").await.unwrap();
    fresh
        .query_drop("INSERT INTO t VALUES (5, 50)")
        .await
        .unwrap();
    fresh.query_drop("COMMIT").await.unwrap();
    let n = rows(&mut direct, 5).await;
    assert_eq!(n, Some(1));
    // A locking read belongs on the primary too.
    fresh.query_drop("BEGIN").await.unwrap();
    let v: Option<i32> = fresh
        .query_first("SELECT v FROM t WHERE id = 5 FOR UPDATE")
        .await
        .unwrap();
    assert_eq!(v, Some(50));
    assert_eq!(server_id(&mut fresh).await, PRIMARY_ID);
    fresh.query_drop("COMMIT").await.unwrap();
    assert_eq!(moves(&h, "moved").await, 1.0, "neither of those moved");

    // Prepared BEGIN and COMMIT (as sysbench prepares them) do the same.
    let mut prepared = h.app().await;
    // (A move proves it started on a replica: reading @@server_id in it would make the move
    // fail, the primary's being another.)
    prepared.exec_drop("BEGIN", ()).await.unwrap();
    let v: Option<i32> = prepared
        .exec_first("SELECT v FROM t WHERE id = ?", (5,))
        .await
        .unwrap();
    assert_eq!(v, Some(50));
    prepared
        .exec_drop("UPDATE t SET v = v + 1 WHERE id = ?", (5,))
        .await
        .unwrap();
    prepared.exec_drop("COMMIT", ()).await.unwrap();
    let v = value(&mut direct, 5).await;
    assert_eq!(v, Some(51));
    assert_eq!(moves(&h, "moved").await, 2.0);

    // A driver that closes every statement after one execution (Go's database/sql): the
    // reads it closed are prepared again on the primary from what the proxy kept.
    let closing = mysql_async::OptsBuilder::from_opts(h.opts(
        lagless_testkit::APP_USER,
        lagless_testkit::APP_PASSWORD,
        Some("app"),
    ))
    .stmt_cache_size(0);
    let mut go = mysql_async::Conn::new(closing).await.unwrap();
    go.query_drop("BEGIN").await.unwrap();
    for id in [1, 5] {
        let stmt = go.prep("SELECT v FROM t WHERE id = ?").await.unwrap();
        let v: Option<i32> = go.exec_first(&stmt, (id,)).await.unwrap();
        assert!(v.is_some());
        go.close(stmt).await.unwrap();
    }
    let update = go
        .prep("UPDATE t SET v = v + 1 WHERE id = ?")
        .await
        .unwrap();
    go.exec_drop(&update, (5,)).await.unwrap();
    go.close(update).await.unwrap();
    go.query_drop("COMMIT").await.unwrap();
    let v = value(&mut direct, 5).await;
    assert_eq!(v, Some(52), "applied exactly once");
    assert_eq!(moves(&h, "moved").await, 3.0);
    assert_eq!(moves(&h, "failed").await, 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_whose_reads_changed_is_rolled_back_with_a_deadlock_error_and_leaves_no_trace() {
    let h = cluster(true).await;
    let mut c = h.app().await;
    let mut direct = h.cluster.primary().app_conn().await.unwrap();
    c.query_drop("BEGIN").await.unwrap();
    let v = value(&mut c, 1).await;
    assert_eq!(v, Some(10));
    // Someone else changes what it read, before it writes.
    direct
        .query_drop("UPDATE t SET v = 99 WHERE id = 1")
        .await
        .unwrap();
    let err = c
        .query_drop("INSERT INTO t VALUES (7, 70)")
        .await
        .unwrap_err();
    assert_eq!(code(err), 1213);
    assert_eq!(moves(&h, "failed").await, 1.0);
    // Nothing of it was applied, and the session is out of it: a COMMIT now commits nothing.
    c.query_drop("COMMIT").await.unwrap();
    let n = rows(&mut direct, 7).await;
    assert_eq!(n, Some(0));
    // Run again, as an application retries a deadlock: it starts on the primary now and
    // commits.
    c.query_drop("BEGIN").await.unwrap();
    let v = value(&mut c, 1).await;
    assert_eq!(v, Some(99));
    assert_eq!(server_id(&mut c).await, PRIMARY_ID);
    c.query_drop("INSERT INTO t VALUES (7, 70)").await.unwrap();
    c.query_drop("COMMIT").await.unwrap();
    let n = rows(&mut direct, 7).await;
    assert_eq!(n, Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_switch_keeps_plain_transactions_on_the_primary() {
    let h = Harness::start_with(2, |c| c.optimistic_transactions = false).await;
    let mut c = h.app().await;
    c.query_drop("BEGIN").await.unwrap();
    assert_eq!(server_id(&mut c).await, PRIMARY_ID);
    c.query_drop("COMMIT").await.unwrap();
}
