//! What a client sees through the proxy is what the server itself answers: each test runs the
//! same steps directly against the primary and through the proxy and compares the answers.

use std::time::{Duration, Instant};

use bytes::Bytes;
use lagless_proxy::protocol::constants::{cap, com, ext, status};
use lagless_proxy::protocol::messages::Ok as OkPacket;
use lagless_proxy::protocol::response::{ResponseKind, ResponseTracker, Step};
use lagless_testkit::{ADMIN_PASSWORD, ADMIN_USER, APP_DATABASE, APP_PASSWORD, APP_USER, Cluster};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row};

use crate::support::{Harness, Raw, raw_login};

/// The two ways to the same data: the primary itself, and the proxy.
fn ports(h: &Harness) -> [(&'static str, u16); 2] {
    [("direct", h.cluster.primary().port()), ("proxy", h.port())]
}

async fn app_at(port: u16) -> Conn {
    Conn::new(
        mysql_async::OptsBuilder::default()
            .ip_or_hostname("127.0.0.1")
            .tcp_port(port)
            .user(Some(APP_USER))
            .pass(Some(APP_PASSWORD))
            .db_name(Some(APP_DATABASE))
            .prefer_socket(false),
    )
    .await
    .unwrap()
}

fn server_error(e: mysql_async::Error) -> (u16, String) {
    match e {
        mysql_async::Error::Server(e) => (e.code, e.message),
        other => panic!("expected a server error, got {other}"),
    }
}

/// Sends a query and reads its whole response (every result set).
async fn raw_query(s: &mut Raw, sql: &str, caps: u32) -> Vec<Bytes> {
    let mut seq = 0;
    let payload = [&[com::QUERY][..], sql.as_bytes()].concat();
    s.send(&mut seq, &payload).await.unwrap();
    let mut t = ResponseTracker::new(ResponseKind::Query, caps);
    let mut packets = Vec::new();
    loop {
        let p = s.read_raw().await.unwrap();
        let step = t.feed(&p.payload).unwrap();
        packets.push(p.payload);
        if step == Step::Done {
            return packets;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_set_run_as_a_prepared_statement_holds_for_later_reads() {
    let h = Harness::start(2).await;
    for (way, port) in ports(&h) {
        let mut c = app_at(port).await;
        // Binary protocol: the value is bound at execution.
        c.exec_drop("SET time_zone = ?", ("+05:00",)).await.unwrap();
        let tz: Option<String> = c.query_first("SELECT @@time_zone").await.unwrap();
        assert_eq!(tz.as_deref(), Some("+05:00"), "{way}: binary-protocol SET");
        // SQL level.
        c.query_drop("EXECUTE IMMEDIATE 'SET sql_mode = ''ANSI_QUOTES'''")
            .await
            .unwrap();
        let mode: Option<String> = c.query_first("SELECT @@sql_mode").await.unwrap();
        assert_eq!(mode.as_deref(), Some("ANSI_QUOTES"), "{way}: SQL-level SET");
        c.query_drop("PREPARE s FROM 'SET character_set_results = ?'")
            .await
            .unwrap();
        c.query_drop("SET @cs = 'latin1'").await.unwrap();
        c.query_drop("EXECUTE s USING @cs").await.unwrap();
        let cs: Option<String> = c
            .query_first("SELECT @@character_set_results")
            .await
            .unwrap();
        assert_eq!(cs.as_deref(), Some("latin1"), "{way}: PREPARE/EXECUTE SET");
        c.disconnect().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_extended_metadata_reaches_the_client_as_from_the_server() {
    let h = Harness::start(2).await;
    h.cluster
        .primary()
        .exec(
            "CREATE TABLE app.typed (j JSON, u UUID, i INET6); \
             INSERT INTO app.typed VALUES ('{\"a\": 1}', UUID(), '::1')",
        )
        .await
        .unwrap();
    let mut answers = Vec::new();
    for (way, port) in ports(&h) {
        let (mut s, g, caps) = raw_login(
            port,
            cap::DEPRECATE_EOF,
            ext::EXTENDED_METADATA | ext::PROGRESS,
        )
        .await;
        assert_eq!(
            g.capabilities & cap::LONG_PASSWORD,
            0,
            "{way}: a MariaDB greeting leaves CLIENT_MYSQL out"
        );
        assert_ne!(
            g.ext_capabilities & ext::EXTENDED_METADATA,
            0,
            "{way}: extended metadata offered"
        );
        let packets = raw_query(&mut s, "SELECT j, u, i FROM app.typed", caps).await;
        // Column definitions: packets 1..=3 after the column count.
        let defs: Vec<Bytes> = packets[1..4].to_vec();
        for (def, format) in defs.iter().zip([&b"json"[..], b"uuid", b"inet6"]) {
            assert!(
                def.windows(format.len()).any(|w| w == format),
                "{way}: column definition without its format {:?}: {def:?}",
                String::from_utf8_lossy(format)
            );
        }
        answers.push(defs);
    }
    assert_eq!(
        answers[0], answers[1],
        "column definitions differ from the server's"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_by_connection_id_and_inside_multi_statements() {
    let h = Harness::start(2).await;
    for (way, port) in ports(&h) {
        // The session's own query and connection.
        let mut c = app_at(port).await;
        let e = c
            .query_drop("KILL QUERY CONNECTION_ID()")
            .await
            .unwrap_err();
        assert_eq!(server_error(e).0, 1317, "{way}: KILL QUERY CONNECTION_ID()");
        let one: Option<u8> = c.query_first("SELECT 1").await.unwrap();
        assert_eq!(one, Some(1), "{way}: the session goes on after KILL QUERY");
        let e = c.query_drop("KILL CONNECTION_ID()").await.unwrap_err();
        assert_eq!(server_error(e).0, 1927, "{way}: KILL CONNECTION_ID()");
        drop(c);

        // Another session of the same user, named by the id CONNECTION_ID() gave it.
        let mut victim = app_at(port).await;
        let thread: u64 = victim
            .query_first("SELECT CONNECTION_ID()")
            .await
            .unwrap()
            .unwrap();
        let mut killer = app_at(port).await;
        let sleeping = tokio::spawn(async move {
            let started = Instant::now();
            let r = victim.query_drop("SELECT SLEEP(20)").await;
            (r, started.elapsed(), victim)
        });
        tokio::time::sleep(Duration::from_millis(500)).await;
        killer
            .query_drop(format!("KILL QUERY {thread}"))
            .await
            .unwrap();
        let (r, took, mut victim) = sleeping.await.unwrap();
        // SLEEP interrupted by KILL QUERY returns 1 rather than failing.
        assert!(
            took < Duration::from_secs(10),
            "{way}: KILL QUERY by thread id did not stop the statement ({r:?} after {took:?})"
        );
        // A multi-statement with a KILL in it: OK for the KILL, then the next result.
        let mut results = killer
            .query_iter(format!("KILL {thread}; SELECT 7"))
            .await
            .unwrap();
        let mut sets = Vec::new();
        while !results.is_empty() {
            let rows: Vec<Row> = results.collect().await.unwrap();
            sets.push(rows.len());
        }
        drop(results);
        assert_eq!(sets, vec![0, 1], "{way}: KILL <id>; SELECT 7");
        let gone = victim.query_drop("SELECT 1").await;
        assert!(gone.is_err(), "{way}: the killed session still works");
        // An unknown id and another user's session.
        let e = killer.query_drop("KILL 999999").await.unwrap_err();
        assert_eq!(
            server_error(e),
            (1094, "Unknown thread id: 999999".into()),
            "{way}"
        );
        killer.disconnect().await.unwrap();
    }
    // Another user's session, by backend thread id, is refused as the server refuses it.
    let mut admin = Conn::new(h.opts(ADMIN_USER, ADMIN_PASSWORD, None))
        .await
        .unwrap();
    let thread: u64 = admin
        .query_first("SELECT CONNECTION_ID()")
        .await
        .unwrap()
        .unwrap();
    let mut app = h.app().await;
    let e = app.query_drop(format!("KILL {thread}")).await.unwrap_err();
    assert_eq!(server_error(e).0, 1095, "KILL of another user's session");
    let still: Option<u8> = admin.query_first("SELECT 1").await.unwrap();
    assert_eq!(still, Some(1));
}

async fn primary_server_id(cluster: &Cluster) -> Option<u64> {
    cluster
        .primary()
        .query("SELECT @@server_id")
        .await
        .unwrap()
        .first()
        .and_then(|r| r.get(0))
}

/// Threads on the primary running `what`, other than the asking one.
async fn running(cluster: &Cluster, what: &str) -> usize {
    let rows = cluster
        .primary()
        .query(&format!(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST \
             WHERE INFO LIKE '%{what}%' AND ID <> CONNECTION_ID()"
        ))
        .await
        .unwrap();
    rows.first().and_then(|r| r.get::<u64, _>(0)).unwrap_or(0) as usize
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_is_cancelled_when_its_client_goes_away() {
    let h = Harness::start(1).await;
    // A statement that would run for a minute.
    let (mut s, _, _) = raw_login(h.port(), 0, 0).await;
    let mut seq = 0;
    s.send(&mut seq, b"\x03SELECT SLEEP(60) AS gone_client_sleep")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(running(&h.cluster, "gone_client_sleep").await, 1);
    drop(s);
    let deadline = Instant::now() + Duration::from_secs(3);
    while running(&h.cluster, "gone_client_sleep").await > 0 {
        assert!(
            Instant::now() < deadline,
            "the statement of a client that left is still running"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A lock wait: once the client is gone, the lock must not be taken by its statement.
    let mut holder = h.cluster.primary().app_conn().await.unwrap();
    holder
        .query_drop("SELECT GET_LOCK('gone_client_lock', 0)")
        .await
        .unwrap();
    let (mut s, _, _) = raw_login(h.port(), 0, 0).await;
    let mut seq = 0;
    s.send(&mut seq, b"\x03SELECT GET_LOCK('gone_client_lock', 60)")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(s);
    tokio::time::sleep(Duration::from_millis(500)).await;
    holder
        .query_drop("SELECT RELEASE_LOCK('gone_client_lock')")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let free: Option<u8> = holder
        .query_first("SELECT IS_FREE_LOCK('gone_client_lock')")
        .await
        .unwrap();
    assert_eq!(free, Some(1), "the lock went to a client that had left");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_and_variables_come_from_the_right_server() {
    let h = Harness::start(2).await;
    let primary_id = primary_server_id(&h.cluster).await;
    let mut c = h.app().await;
    // Reads first, so that the session's last backend is a replica.
    for _ in 0..3 {
        c.query_drop("SELECT 1").await.unwrap();
    }
    for sql in [
        "SELECT @@global.server_id",
        "SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_VARIABLES \
         WHERE VARIABLE_NAME = 'SERVER_ID'",
    ] {
        let id: Option<u64> = c.query_first(sql).await.unwrap();
        assert_eq!(id, primary_id, "{sql}");
    }
    let row: Option<(String, u64)> = c
        .query_first("SHOW GLOBAL VARIABLES LIKE 'server_id'")
        .await
        .unwrap();
    assert_eq!(row.map(|r| r.1), primary_id, "SHOW GLOBAL VARIABLES");
    // Session counters are those of the connection that served the session's statements.
    c.query_drop("SELECT 1").await.unwrap();
    let row: Option<(String, u64)> = c
        .query_first("SHOW SESSION STATUS LIKE 'Com_select'")
        .await
        .unwrap();
    assert!(
        row.is_some_and(|r| r.1 >= 1),
        "SHOW SESSION STATUS on a connection that served no SELECT"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_sessions_see_current_globals_and_no_tracking_of_the_proxys_own() {
    let h = Harness::start(1).await;
    // A pooled connection from before the change.
    let mut early = h.app().await;
    early.query_drop("SELECT 1").await.unwrap();
    early.disconnect().await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    h.cluster
        .primary()
        .exec("SET GLOBAL max_allowed_packet = 33554432")
        .await
        .unwrap();
    for (way, port) in ports(&h) {
        let mut c = app_at(port).await;
        let max: Option<u64> = c.query_first("SELECT @@max_allowed_packet").await.unwrap();
        assert_eq!(
            max,
            Some(33_554_432),
            "{way}: a new session's max_allowed_packet"
        );
        c.disconnect().await.unwrap();
    }
    // Session tracking: the proxy's own last_gtid never shows unless the client asks.
    h.cluster
        .primary()
        .exec("CREATE TABLE app.tracked (id INT PRIMARY KEY AUTO_INCREMENT)")
        .await
        .unwrap();
    for (way, port) in ports(&h) {
        let (mut s, _, caps) = raw_login(port, cap::SESSION_TRACK, 0).await;
        let ok = raw_query(&mut s, "INSERT INTO app.tracked VALUES ()", caps).await;
        let ok = OkPacket::parse(&ok[0], caps).unwrap();
        assert_eq!(
            ok.status & status::SESSION_STATE_CHANGED,
            0,
            "{way}: untracked state reported: {ok:?}"
        );
        raw_query(
            &mut s,
            "SET session_track_system_variables = 'last_gtid'",
            caps,
        )
        .await;
        let ok = raw_query(&mut s, "INSERT INTO app.tracked VALUES ()", caps).await;
        let ok = OkPacket::parse(&ok[0], caps).unwrap();
        assert!(
            ok.session_state.windows(9).any(|w| w == b"last_gtid"),
            "{way}: last_gtid asked for but not reported: {ok:?}"
        );
    }
    h.cluster
        .primary()
        .exec("SET GLOBAL max_allowed_packet = DEFAULT")
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sql_auto_is_null_finds_the_row_just_inserted() {
    let h = Harness::start(2).await;
    h.cluster
        .primary()
        .exec("CREATE TABLE app.auto (id INT PRIMARY KEY AUTO_INCREMENT, x INT)")
        .await
        .unwrap();
    for (way, port) in ports(&h) {
        let mut c = app_at(port).await;
        c.query_drop("SET sql_auto_is_null = 1").await.unwrap();
        c.query_drop("INSERT INTO app.auto (x) VALUES (1)")
            .await
            .unwrap();
        let last = c.last_insert_id();
        let id: Option<u64> = c
            .query_first("SELECT id FROM app.auto WHERE id IS NULL")
            .await
            .unwrap();
        assert_eq!(id, last, "{way}: WHERE id IS NULL after an insert");
        c.disconnect().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_say_whether_a_password_was_sent_as_the_server_does() {
    let h = Harness::start(1).await;
    for (way, port) in ports(&h) {
        for (password, using) in [("wrong", "YES"), ("", "NO")] {
            let opts = mysql_async::OptsBuilder::default()
                .ip_or_hostname("127.0.0.1")
                .tcp_port(port)
                .user(Some(APP_USER))
                .pass(Some(password))
                .prefer_socket(false);
            let e = Conn::new(opts).await.unwrap_err();
            let (code, message) = server_error(e);
            assert_eq!(code, 1045, "{way}");
            assert!(
                message.ends_with(&format!("(using password: {using})")),
                "{way}: {message}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accounts_the_proxy_cannot_verify_authenticate_with_the_primary() {
    let h = Harness::start(2).await;
    // Not in the users file: the proxy finds the account, but not its password.
    h.cluster
        .primary()
        .exec(
            "CREATE USER 'relayed'@'%' IDENTIFIED VIA ed25519 USING PASSWORD('relayed-pass'); \
             GRANT ALL ON app.* TO 'relayed'@'%'; \
             CREATE TABLE app.relayed (id INT PRIMARY KEY)",
        )
        .await
        .unwrap();
    let opts = |password: &str| {
        let mut o = mysql_async::OptsBuilder::from_opts(h.opts("relayed", password, Some("app")));
        o = o.prefer_socket(false);
        o
    };
    // The server's ed25519 nonce is 32 random bytes, relayed as they are. mysql_common
    // (`AuthSwitchRequest::plugin_data`) drops a last byte of 0 as if it ended a string, so
    // this client signs the wrong nonce in one login of 256, through a proxy or not (the
    // MariaDB C client takes all 32). Access denied three times running is the proxy's; any
    // other error at once.
    let mut refusals = Vec::new();
    let mut c = loop {
        match Conn::new(opts("relayed-pass")).await {
            Ok(c) => break c,
            Err(mysql_async::Error::Server(e)) if e.code == 1045 && refusals.len() < 2 => {
                refusals.push(e.message)
            }
            Err(e) => panic!("three relayed logins refused: {refusals:?}, {e}"),
        }
    };
    c.query_drop("INSERT INTO app.relayed VALUES (1)")
        .await
        .unwrap();
    let n: Option<u64> = c
        .query_first("SELECT COUNT(*) FROM app.relayed")
        .await
        .unwrap();
    assert_eq!(n, Some(1), "a read after the session's own write");
    // Reads stay on the primary: this session has no other connection.
    let on: Option<u64> = c.query_first("SELECT @@server_id").await.unwrap();
    let primary = primary_server_id(&h.cluster).await;
    assert_eq!(on, primary);
    c.query_drop("SET @kept = 1").await.unwrap();
    c.reset().await.unwrap();
    let kept: Option<Option<u8>> = c.query_first("SELECT @kept").await.unwrap();
    assert_eq!(
        kept,
        Some(None),
        "COM_RESET_CONNECTION on a relayed session"
    );
    let again: Option<u8> = c.query_first("SELECT 1").await.unwrap();
    assert_eq!(again, Some(1));
    c.disconnect().await.unwrap();
    // A wrong password gets the server's refusal, with the client's host.
    let e = Conn::new(opts("wrong")).await.unwrap_err();
    let (code, message) = server_error(e);
    assert_eq!(code, 1045);
    assert!(
        message.contains("'relayed'@'127.0.0.1'") && message.ends_with("(using password: YES)"),
        "{message}"
    );
}
