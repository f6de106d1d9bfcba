//! Multiplexing on real servers: many sessions on few backend connections, state that pins a
//! session to its connection, and replayable state and prepared statements that follow a
//! session from one connection to the next.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use lagless_testkit::{APP_PASSWORD, APP_USER};
use mysql_async::Conn;
use mysql_async::prelude::Queryable;

use super::support::{Harness, metric_sum};

/// A proxy that multiplexes onto at most `connections` per server.
async fn multiplexing(connections: usize) -> Harness {
    Harness::start_with(1, |c| {
        c.pool.multiplex = true;
        c.pool.max_per_backend = connections;
        c.pool.max_per_user = connections;
        c.pool.acquire_timeout = Duration::from_secs(20);
    })
    .await
}

/// The application account's connections on the server now.
async fn app_connections(admin: &mut Conn) -> usize {
    let n: Option<u64> = admin
        .query_first(format!(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = '{APP_USER}'"
        ))
        .await
        .unwrap();
    n.unwrap_or(0) as usize
}

/// The statements the server has prepared so far.
async fn prepares(admin: &mut Conn) -> u64 {
    let row: Option<(String, u64)> = admin
        .query_first("SHOW GLOBAL STATUS LIKE 'Com_stmt_prepare'")
        .await
        .unwrap();
    row.map_or(0, |r| r.1)
}

/// Sessions that keep taking and giving back connections while `stop` is unset: any
/// connection a pinned session gave back would be taken by one of them.
fn churn(h: &Harness, sessions: usize, stop: Arc<AtomicBool>) -> Vec<tokio::task::JoinHandle<u64>> {
    (0..sessions)
        .map(|_| {
            let opts = h.opts(APP_USER, APP_PASSWORD, Some("app"));
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut c = Conn::new(opts).await.unwrap();
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    c.query_drop("DO 1").await.unwrap();
                    n += 1;
                }
                n
            })
        })
        .collect()
}

async fn stop_churn(stop: &AtomicBool, tasks: Vec<tokio::task::JoinHandle<u64>>) -> u64 {
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap();
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forty_sessions_run_on_four_connections() {
    let h = multiplexing(4).await;
    let mut admin = h.cluster.primary().admin_conn().await.unwrap();
    admin
        .query_drop("CREATE TABLE app.kv (id INT PRIMARY KEY, v INT NOT NULL)")
        .await
        .unwrap();
    let mut sessions = Vec::new();
    for _ in 0..40 {
        sessions.push(h.app().await);
    }
    let most = Arc::new(AtomicUsize::new(0));
    let most_pooled = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let proxy_admin = h.admin.expect("an admin listener");
    let connects = || metric_sum(proxy_admin, "lagless_backend_connect_total", "backend=");
    let connects_before = connects().await;
    let watcher = {
        let (most, most_pooled, stop) = (most.clone(), most_pooled.clone(), stop.clone());
        let mut admin = h.cluster.primary().admin_conn().await.unwrap();
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                most.fetch_max(app_connections(&mut admin).await, Ordering::Relaxed);
                // Idle and in use: every connection the proxy holds.
                let pooled =
                    metric_sum(proxy_admin, "lagless_backend_connections", "backend=").await;
                most_pooled.fetch_max(pooled as usize, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
    };
    let work: Vec<_> = sessions
        .into_iter()
        .enumerate()
        .map(|(i, mut c)| {
            tokio::spawn(async move {
                for round in 0..20 {
                    let id = (i * 100 + round) as i32;
                    c.exec_drop("INSERT INTO kv VALUES (?, ?)", (id, round as i32))
                        .await?;
                    let v: Option<i32> =
                        c.exec_first("SELECT v FROM kv WHERE id = ?", (id,)).await?;
                    assert_eq!(v, Some(round as i32));
                }
                Ok::<_, mysql_async::Error>(c)
            })
        })
        .collect();
    let mut open = Vec::new();
    for w in work {
        open.push(w.await.unwrap().expect("a session's statement failed"));
    }
    stop.store(true, Ordering::Relaxed);
    watcher.await.unwrap();
    // Every session is still open, and all of them ran on four connections at most.
    assert_eq!(open.len(), 40);
    let (most, most_pooled) = (
        most.load(Ordering::Relaxed),
        most_pooled.load(Ordering::Relaxed),
    );
    let opened = (connects().await - connects_before) as usize;
    eprintln!(
        "40 sessions: at most {most} application connections on the server, {most_pooled} \
         held by the proxy; {opened} opened while they ran"
    );
    assert!(
        (1..=4).contains(&most_pooled),
        "the proxy held {most_pooled}"
    );
    // The server may see one more: a connection the proxy just closed (an idle one given up
    // for a login with other state) can still be closing there while its replacement logs in.
    assert!(
        (1..=5).contains(&most),
        "{most} connections on the server, {opened} opened during the run"
    );
    let rows: Option<u64> = admin
        .query_first("SELECT COUNT(*) FROM app.kv")
        .await
        .unwrap();
    assert_eq!(rows, Some(800));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_that_lives_on_a_connection_keeps_the_session_there() {
    // Each pinned session below holds a connection until it leaves; two more serve the
    // sessions that keep taking and giving back connections meanwhile.
    let h = multiplexing(4).await;
    let mut admin = h.cluster.primary().admin_conn().await.unwrap();
    admin
        .query_drop(
            "CREATE TABLE app.auto (id INT AUTO_INCREMENT PRIMARY KEY, v INT); \
             INSERT INTO app.auto (v) VALUES (1), (2), (3)",
        )
        .await
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let churners = churn(&h, 2, stop.clone());
    let pause = || tokio::time::sleep(Duration::from_millis(50));

    // A temporary table.
    let mut temp = h.app().await;
    temp.query_drop("CREATE TEMPORARY TABLE scratch (x INT)")
        .await
        .unwrap();
    pause().await;
    temp.query_drop("INSERT INTO scratch VALUES (1)")
        .await
        .unwrap();
    pause().await;
    let n: Option<u64> = temp
        .query_first("SELECT COUNT(*) FROM scratch")
        .await
        .unwrap();
    assert_eq!(n, Some(1));
    // The pinned session is counted as such while it lives.
    let admin_http = h.admin.unwrap();
    let holding = |reason: &'static str| {
        super::support::metric_sum(admin_http, "lagless_multiplex_sessions_holding", reason)
    };
    assert_eq!(holding("reason=\"pinned\"").await, 1.0);
    temp.disconnect().await.unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while holding("reason=\"pinned\"").await != 0.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "a pinned session that left is still counted"
        );
        pause().await;
    }

    // A user lock: released by the connection that took it.
    let mut locker = h.app().await;
    let got: Option<i64> = locker
        .query_first("SELECT GET_LOCK('mx', 0)")
        .await
        .unwrap();
    assert_eq!(got, Some(1));
    pause().await;
    let released: Option<i64> = locker
        .query_first("SELECT RELEASE_LOCK('mx')")
        .await
        .unwrap();
    assert_eq!(released, Some(1));
    locker.disconnect().await.unwrap();

    // LOCK TABLES.
    let mut tables = h.app().await;
    tables.query_drop("LOCK TABLES auto READ").await.unwrap();
    pause().await;
    let n: Option<u64> = tables
        .query_first("SELECT COUNT(*) FROM auto")
        .await
        .unwrap();
    assert_eq!(n, Some(3));
    tables.query_drop("UNLOCK TABLES").await.unwrap();
    tables.disconnect().await.unwrap();

    // SQL_CALC_FOUND_ROWS and FOUND_ROWS().
    let mut found = h.app().await;
    let _: Vec<i32> = found
        .query("SELECT SQL_CALC_FOUND_ROWS id FROM auto LIMIT 1")
        .await
        .unwrap();
    pause().await;
    let rows: Option<u64> = found.query_first("SELECT FOUND_ROWS()").await.unwrap();
    assert_eq!(rows, Some(3));
    found.disconnect().await.unwrap();

    // A generated id and LAST_INSERT_ID().
    let mut inserter = h.app().await;
    inserter
        .query_drop("INSERT INTO auto (v) VALUES (4)")
        .await
        .unwrap();
    pause().await;
    let id: Option<u64> = inserter
        .query_first("SELECT LAST_INSERT_ID()")
        .await
        .unwrap();
    assert_eq!(id, Some(4));
    inserter.disconnect().await.unwrap();

    // Warnings, read by the next statement.
    let mut warned = h.app().await;
    warned
        .query_drop("SELECT CAST('x' AS SIGNED)")
        .await
        .unwrap();
    pause().await;
    let warnings: Vec<(String, u32, String)> = warned.query("SHOW WARNINGS").await.unwrap();
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    warned.disconnect().await.unwrap();

    // A transaction.
    let mut tx = h.app().await;
    tx.query_drop("BEGIN").await.unwrap();
    tx.query_drop("INSERT INTO auto (v) VALUES (5)")
        .await
        .unwrap();
    pause().await;
    let mine: Option<u64> = tx
        .query_first("SELECT COUNT(*) FROM auto WHERE v = 5")
        .await
        .unwrap();
    assert_eq!(mine, Some(1));
    tx.query_drop("ROLLBACK").await.unwrap();

    let ran = stop_churn(&stop, churners).await;
    assert!(ran > 0, "the other sessions ran meanwhile");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_state_follows_a_session_to_other_connections() {
    let h = multiplexing(2).await;
    let mut admin = h.cluster.primary().admin_conn().await.unwrap();
    admin
        .query_drop("CREATE DATABASE other; CREATE TABLE app.named (id INT PRIMARY KEY)")
        .await
        .unwrap();
    let settings = [
        ("+01:00", "ANSI_QUOTES", "app", "utf8mb4"),
        ("+02:00", "NO_BACKSLASH_ESCAPES", "other", "latin1"),
        ("-03:00", "STRICT_TRANS_TABLES", "app", "utf8mb3"),
        ("+04:30", "", "other", "utf8mb4"),
        ("SYSTEM", "PIPES_AS_CONCAT", "app", "latin1"),
        ("+05:00", "ANSI_QUOTES", "other", "utf8mb3"),
    ];
    let tasks: Vec<_> = settings
        .iter()
        .map(|&(tz, mode, db, charset)| {
            let opts = h.opts(APP_USER, APP_PASSWORD, Some("app"));
            tokio::spawn(async move {
                let mut c = Conn::new(opts).await.unwrap();
                c.query_drop(format!("SET time_zone = '{tz}'"))
                    .await
                    .unwrap();
                c.query_drop(format!("SET sql_mode = '{mode}'"))
                    .await
                    .unwrap();
                c.query_drop(format!("USE {db}")).await.unwrap();
                c.query_drop(format!("SET NAMES {charset}")).await.unwrap();
                for _ in 0..30 {
                    let row: Option<(String, String, String, String)> = c
                        .query_first(
                            "SELECT @@time_zone, @@sql_mode, DATABASE(), @@character_set_client",
                        )
                        .await
                        .unwrap();
                    assert_eq!(
                        row,
                        Some((tz.into(), mode.into(), db.into(), charset.into()))
                    );
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_statements_run_on_whichever_connection_a_session_gets() {
    let h = multiplexing(2).await;
    let mut admin = h.cluster.primary().admin_conn().await.unwrap();
    admin
        .query_drop(
            "CREATE TABLE app.ps (id INT PRIMARY KEY, v VARCHAR(20)); \
             INSERT INTO app.ps VALUES (1, 'one'), (2, 'two'), (3, 'three')",
        )
        .await
        .unwrap();
    let before = prepares(&mut admin).await;
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let opts = h.opts(APP_USER, APP_PASSWORD, Some("app"));
            tokio::spawn(async move {
                let mut c = Conn::new(opts).await.unwrap();
                let by_id = c.prep("SELECT v FROM ps WHERE id = ?").await.unwrap();
                let sum = c.prep("SELECT ? + ?").await.unwrap();
                for round in 0..30i64 {
                    let id = (i + round) % 3 + 1;
                    let v: Option<String> = c.exec_first(&by_id, (id,)).await.unwrap();
                    let want = ["one", "two", "three"][(id - 1) as usize];
                    assert_eq!(v.as_deref(), Some(want));
                    let s: Option<i64> = c.exec_first(&sum, (round, i)).await.unwrap();
                    assert_eq!(s, Some(round + i));
                }
                c.close(by_id).await.unwrap();
                c.close(sum).await.unwrap();
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    // Statements stay prepared on the proxy's two connections for whichever session lands
    // there: the server prepared each client's two statements once (16) and each text on
    // each connection again only when the bound of 20 had closed it (the clients' own
    // prepares add copies), not once per execution that changed connection (up to 480 more).
    let prepared = prepares(&mut admin).await.saturating_sub(before);
    eprintln!(
        "the server prepared {prepared} statements for 16 client prepares and 480 executions"
    );
    assert!((16..=120).contains(&prepared), "{prepared}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_left_out_of_multiplexing_keep_a_connection_each() {
    let h = Harness::start_with(1, |c| {
        c.pool.multiplex = true;
        c.pool.multiplex_except = vec![APP_USER.to_string()];
    })
    .await;
    let mut admin = h.cluster.primary().admin_conn().await.unwrap();
    let mut sessions = Vec::new();
    for _ in 0..3 {
        let mut c = h.app().await;
        c.query_drop("DO 1").await.unwrap();
        sessions.push(c);
    }
    // Each kept its own connection after its statement, as without multiplexing (the pool
    // may hold an idle one besides, from a connection a login used and gave back).
    let in_use = metric_sum(h.admin.unwrap(), "lagless_backend_connections", "in_use").await;
    assert_eq!(in_use, 3.0);
    assert!(app_connections(&mut admin).await >= 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_prepared_in_one_database_never_serves_another() {
    // One connection for everyone: both sessions' statements live on it.
    let h = multiplexing(1).await;
    let mut admin = h.cluster.primary().admin_conn().await.unwrap();
    admin
        .query_drop(
            "CREATE DATABASE one; CREATE DATABASE two; \
             CREATE TABLE one.ps (v VARCHAR(10)); INSERT INTO one.ps VALUES ('one'); \
             CREATE TABLE two.ps (v VARCHAR(10)); INSERT INTO two.ps VALUES ('two')",
        )
        .await
        .unwrap();
    let mut first = Conn::new(h.opts(APP_USER, APP_PASSWORD, Some("one")))
        .await
        .unwrap();
    let mut second = Conn::new(h.opts(APP_USER, APP_PASSWORD, Some("two")))
        .await
        .unwrap();
    let a = first.prep("SELECT v FROM ps").await.unwrap();
    let b = second.prep("SELECT v FROM ps").await.unwrap();
    for _ in 0..5 {
        let v: Option<String> = first.exec_first(&a, ()).await.unwrap();
        assert_eq!(v.as_deref(), Some("one"));
        let v: Option<String> = second.exec_first(&b, ()).await.unwrap();
        assert_eq!(v.as_deref(), Some("two"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_open_cursor_keeps_its_session_on_one_connection_until_it_is_read() {
    use lagless_proxy::protocol::constants::{com, status};
    use lagless_proxy::protocol::response::ResponseKind;

    use super::commands::{call, cmd};

    let h = multiplexing(4).await;
    let admin_http = h.admin.unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let churners = churn(&h, 2, stop.clone());
    let mut s = super::support::raw_login(h.port(), 0, 0).await.0;
    let (t, _) = call(
        &mut s,
        &cmd(com::STMT_PREPARE, b"SELECT seq FROM seq_1_to_10"),
        ResponseKind::Prepare,
        0,
    )
    .await;
    let id = t.prepare.unwrap().statement_id;
    // Executed with CURSOR_TYPE_READ_ONLY: the rows stay on the server that opened it, and
    // every FETCH must reach that connection while the others are busy with other sessions.
    let mut exec = vec![com::STMT_EXECUTE];
    exec.extend_from_slice(&id.to_le_bytes());
    exec.push(1);
    exec.extend_from_slice(&1u32.to_le_bytes());
    let (t, packets) = call(&mut s, &exec, ResponseKind::Execute, 0).await;
    assert!(t.error.is_none(), "{packets:?}");
    assert!(t.status.unwrap() & status::CURSOR_EXISTS != 0);
    let mut rows = 0;
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            super::support::metric_sum(
                admin_http,
                "lagless_multiplex_sessions_holding",
                "reason=\"open cursor\""
            )
            .await,
            1.0,
            "the cursor's session is counted as holding its connection"
        );
        let mut fetch = vec![com::STMT_FETCH];
        fetch.extend_from_slice(&id.to_le_bytes());
        fetch.extend_from_slice(&3u32.to_le_bytes());
        let (t, packets) = call(&mut s, &fetch, ResponseKind::Fetch, 0).await;
        assert!(t.error.is_none(), "{packets:?}");
        rows += packets.len() - 1;
        if t.status.unwrap() & status::LAST_ROW_SENT != 0 {
            break;
        }
        assert!(rows <= 10);
    }
    assert_eq!(rows, 10);
    let ran = stop_churn(&stop, churners).await;
    assert!(ran > 0, "the other sessions ran meanwhile");
}
