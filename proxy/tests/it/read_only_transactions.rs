//! `START TRANSACTION READ ONLY` on real servers: served by a replica that has what the
//! session's consistency needs, its statements kept there until it ends, a statement that
//! belongs on the primary moving a transaction that has read nothing and refused in one that
//! has, and the switch that keeps every transaction on the primary.

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
        let v: Option<i32> = c.query_first("SELECT v FROM t WHERE id = 1").await.unwrap();
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
    c.query_drop("START TRANSACTION").await.unwrap();
    assert_eq!(server_id(&mut c).await, PRIMARY_ID);
    c.query_drop("ROLLBACK").await.unwrap();
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
    let _: Option<i32> = direct
        .query_first("SELECT v FROM t WHERE id = 1")
        .await
        .unwrap();
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
    let rows: Option<i64> = direct
        .query_first("SELECT COUNT(*) FROM t WHERE id = 3")
        .await
        .unwrap();
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
    let v: Option<i32> = reader
        .query_first("SELECT v FROM t WHERE id = 1")
        .await
        .unwrap();
    assert_eq!(v, Some(11));
    assert_eq!(server_id(&mut reader).await, PRIMARY_ID);
    reader.query_drop("COMMIT").await.unwrap();
    // Caught up, the replica serves the next one, which sees the write too.
    replica.start_sql_thread().await.unwrap();
    h.cluster
        .wait_replicated(Duration::from_secs(20))
        .await
        .unwrap();
    reader
        .query_drop("START TRANSACTION READ ONLY")
        .await
        .unwrap();
    let v: Option<i32> = reader
        .query_first("SELECT v FROM t WHERE id = 1")
        .await
        .unwrap();
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
    let v: Option<i32> = again
        .query_first("SELECT v FROM t WHERE id = 1")
        .await
        .unwrap();
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
