//! A Rust driver (mysql_async) through the proxy: text and binary protocol, prepared
//! statements over every column type, multi-statements, LOAD DATA LOCAL, change user, reset,
//! large packets, TLS and caching_sha2_password.

use std::time::Duration;

use mysql_async::prelude::*;
use mysql_async::{ChangeUserOpts, Conn, OptsBuilder, Row, SslOpts, Value, WhiteListFsHandler};

use crate::support::Harness;

const WAIT: Duration = Duration::from_secs(20);

const ALL_TYPES: &str = "CREATE TABLE types (
    id INT PRIMARY KEY,
    ti TINYINT, si SMALLINT UNSIGNED, mi MEDIUMINT, i INT, bi BIGINT UNSIGNED,
    de DECIMAL(30,10), f FLOAT, d DOUBLE, bt BIT(12),
    dt DATE, tm TIME(3), dtm DATETIME(6), ts TIMESTAMP(2) NULL, y YEAR,
    c CHAR(5), vc VARCHAR(300), bin BINARY(4), vb VARBINARY(50),
    tt TINYTEXT, tx TEXT, mt MEDIUMTEXT, tb TINYBLOB, bl BLOB, lb LONGBLOB,
    e ENUM('a','b','c'), st SET('x','y','z'), j JSON, u UUID, ip INET6, n INT NULL
)";

const ROWS: &str = "INSERT INTO types VALUES
 (1, -128, 65535, -8388608, -2147483648, 18446744073709551615,
  12345678901234567890.0123456789, 3.5, -2.25e-300, b'101010101010',
  '1000-01-01', '-838:59:59.999', '9999-12-31 23:59:59.999999', '2038-01-19 03:14:07.99', 2155,
  'ab', REPEAT('v', 300), x'00ff00ff', x'deadbeef',
  'tiny', 'text é ü 漢字 😀', REPEAT('m', 70000), x'01', x'0203', REPEAT(x'ff', 100000),
  'c', 'x,z', '{\"k\": [1, 2.5, \"s\", null]}', '123e4567-e89b-12d3-a456-426614174000', '::1', NULL),
 (2, 0, 0, 0, 0, 0, 0, 0, 0, b'0', '2024-02-29', '00:00:00', '2024-02-29 12:00:00', NULL, 1901,
  '', '', x'00000000', '', '', '', '', '', '', '', 'a', '', '[]', '00000000-0000-0000-0000-000000000000', '::ffff:1.2.3.4', NULL)";

async fn direct(h: &Harness) -> Conn {
    h.cluster.primary().app_conn().await.unwrap()
}

async fn with_types(h: &Harness) {
    let mut conn = direct(h).await;
    conn.query_drop(ALL_TYPES).await.unwrap();
    conn.query_drop(ROWS).await.unwrap();
    h.cluster.wait_replicated(WAIT).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_and_binary_results_match_the_server_for_every_type() {
    let h = Harness::start(2).await;
    with_types(&h).await;
    let mut via = h.app().await;
    let mut dir = direct(&h).await;
    let q = "SELECT * FROM types ORDER BY id";
    let text_via: Vec<Row> = via.query(q).await.unwrap();
    let text_dir: Vec<Row> = dir.query(q).await.unwrap();
    assert_eq!(text_via.len(), 2);
    for (a, b) in text_via.iter().zip(&text_dir) {
        assert_eq!(a.clone().unwrap(), b.clone().unwrap());
    }
    // Binary protocol: the same rows through a prepared statement.
    let bin_via: Vec<Row> = via.exec(q, ()).await.unwrap();
    let bin_dir: Vec<Row> = dir.exec(q, ()).await.unwrap();
    for (a, b) in bin_via.iter().zip(&bin_dir) {
        assert_eq!(a.clone().unwrap(), b.clone().unwrap());
    }
    let big: Vec<u8> = text_via[0].get("lb").unwrap();
    assert_eq!(big.len(), 100_000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prepared_statements_bind_every_parameter_type() {
    let h = Harness::start(2).await;
    let mut via = h.app().await;
    via.query_drop(
        "CREATE TABLE p (id INT PRIMARY KEY, i BIGINT, u BIGINT UNSIGNED, d DOUBLE, f FLOAT, \
         s VARCHAR(100), b BLOB, dt DATETIME(6), t TIME(6), n INT NULL, de DECIMAL(10,2))",
    )
    .await
    .unwrap();
    let stmt = via
        .prep("INSERT INTO p VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
        .await
        .unwrap();
    let rows = vec![
        vec![
            Value::Int(1),
            Value::Int(i64::MIN),
            Value::UInt(u64::MAX),
            Value::Double(1.5e300),
            Value::Float(-0.5),
            Value::Bytes("héllo".into()),
            Value::Bytes(vec![0, 1, 2, 255]),
            Value::Date(2024, 2, 29, 23, 59, 58, 123_456),
            Value::Time(true, 1, 2, 3, 4, 5),
            Value::NULL,
            Value::Bytes("12345678.91".into()),
        ],
        vec![
            Value::Int(2),
            Value::Int(0),
            Value::UInt(0),
            Value::Double(0.0),
            Value::Float(0.0),
            Value::Bytes(Vec::new()),
            Value::Bytes(Vec::new()),
            Value::Date(1000, 1, 1, 0, 0, 0, 0),
            Value::Time(false, 0, 0, 0, 0, 0),
            Value::Int(7),
            Value::Bytes("-1.00".into()),
        ],
    ];
    for r in &rows {
        via.exec_drop(&stmt, r.clone()).await.unwrap();
    }
    h.cluster.wait_replicated(WAIT).await.unwrap();
    // Read back through the proxy (a replica) with a parameterised read, twice, so the
    // second execution reuses the statement without re-sending types.
    let sel = via
        .prep("SELECT i, u, d, s, b, dt, t, n, de FROM p WHERE id = ?")
        .await
        .unwrap();
    for _ in 0..2 {
        let got: Row = via.exec_first(&sel, (1,)).await.unwrap().unwrap();
        assert_eq!(got.get::<i64, _>(0), Some(i64::MIN));
        assert_eq!(got.get::<u64, _>(1), Some(u64::MAX));
        assert_eq!(got.get::<f64, _>(2), Some(1.5e300));
        assert_eq!(got.get::<String, _>(3).as_deref(), Some("héllo"));
        assert_eq!(got.get::<Vec<u8>, _>(4), Some(vec![0, 1, 2, 255]));
        assert_eq!(
            got.get::<Value, _>(5),
            Some(Value::Date(2024, 2, 29, 23, 59, 58, 123_456))
        );
        assert_eq!(
            got.get::<Value, _>(6),
            Some(Value::Time(true, 1, 2, 3, 4, 5))
        );
        assert_eq!(got.get::<Value, _>(7), Some(Value::NULL));
        assert_eq!(got.get::<String, _>(8).as_deref(), Some("12345678.91"));
    }
    let ids: Vec<i32> = via
        .exec(&sel, (2,))
        .await
        .unwrap()
        .into_iter()
        .map(|r: Row| r.len() as i32)
        .collect();
    assert_eq!(ids, vec![9]);
    via.close(sel).await.unwrap();
    via.close(stmt).await.unwrap();
    // A statement that fails to prepare reports the server's error.
    let err = via.prep("SELECT * FROM no_such_table").await.unwrap_err();
    assert!(
        matches!(err, mysql_async::Error::Server(ref e) if e.code == 1146),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_statements_and_multiple_result_sets() {
    let h = Harness::start(2).await;
    let mut via = h.app().await;
    let mut result = via
        .query_iter("CREATE TABLE m (id INT PRIMARY KEY); INSERT INTO m VALUES (1),(2); SELECT 1 AS a; SELECT id FROM m ORDER BY id; SELECT 'x', 'y'")
        .await
        .unwrap();
    let mut sets = Vec::new();
    while !result.is_empty() {
        let rows: Vec<Row> = result.collect().await.unwrap();
        sets.push(rows.len());
    }
    drop(result);
    assert_eq!(sets, vec![0, 0, 1, 2, 1]);
    // A stored procedure returns several result sets over COM_QUERY and COM_STMT_EXECUTE.
    via.query_drop("CREATE PROCEDURE two() BEGIN SELECT 1; SELECT 2, 3; END")
        .await
        .unwrap();
    let mut r = via.query_iter("CALL two()").await.unwrap();
    let first: Vec<Row> = r.collect().await.unwrap();
    let second: Vec<(i32, i32)> = r.collect().await.unwrap();
    drop(r);
    assert_eq!(first.len(), 1);
    assert_eq!(second, vec![(2, 3)]);
    let pairs: Vec<(i32, i32)> = {
        let mut r = via.exec_iter("CALL two()", ()).await.unwrap();
        let _: Vec<Row> = r.collect().await.unwrap();
        r.collect().await.unwrap()
    };
    assert_eq!(pairs, vec![(2, 3)]);
    // An error in the middle stops the batch and is reported.
    let err = via
        .query_drop("SELECT 1; SELECT * FROM nope; SELECT 2")
        .await
        .unwrap_err();
    assert!(
        matches!(err, mysql_async::Error::Server(ref e) if e.code == 1146),
        "{err}"
    );
    let one: Option<i32> = via.query_first("SELECT 1").await.unwrap();
    assert_eq!(one, Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_data_local_infile() {
    let h = Harness::start(2).await;
    let file = h.dir.path().join("rows.csv");
    let body: String = (0..5000).map(|i| format!("{i},name-{i}\n")).collect();
    std::fs::write(&file, body).unwrap();
    let opts = OptsBuilder::from_opts(h.opts("app", "app-pass", Some("app")))
        .local_infile_handler(Some(WhiteListFsHandler::new(&[file.clone()][..])));
    let mut via = Conn::new(opts).await.unwrap();
    via.query_drop("CREATE TABLE li (id INT PRIMARY KEY, name VARCHAR(20))")
        .await
        .unwrap();
    via.query_drop(format!(
        "LOAD DATA LOCAL INFILE '{}' INTO TABLE li FIELDS TERMINATED BY ','",
        file.display()
    ))
    .await
    .unwrap();
    let n: Option<i64> = via
        .query_first("SELECT /* lagless:route=primary */ COUNT(*) FROM li")
        .await
        .unwrap();
    assert_eq!(n, Some(5000));
    // A file the client refuses to send: mysql_async gives up on that connection (as it does
    // against a server); the proxy drops its half-used backend connection and serves others.
    let err = via
        .query_drop("LOAD DATA LOCAL INFILE '/etc/hostname' INTO TABLE li")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("/etc/hostname"), "{err}");
    let mut again = h.app().await;
    let n: Option<i64> = again
        .query_first("SELECT /* lagless:route=primary */ COUNT(*) FROM li")
        .await
        .unwrap();
    assert_eq!(n, Some(5000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn change_user_and_reset_connection() {
    let h = Harness::start(2).await;
    let mut via = h.app().await;
    via.query_drop("CREATE TEMPORARY TABLE tmp (x INT)")
        .await
        .unwrap();
    via.query_drop("SET @v = 42").await.unwrap();
    let v: Option<i32> = via.query_first("SELECT @v").await.unwrap();
    assert_eq!(v, Some(42), "a pinned session keeps its user variables");
    // COM_RESET_CONNECTION clears session state.
    assert!(via.reset().await.unwrap());
    let v: Option<Option<i32>> = via.query_first("SELECT @v").await.unwrap();
    assert_eq!(v, Some(None));
    assert!(via.query_drop("SELECT * FROM tmp").await.is_err());
    // COM_CHANGE_USER to another user, then back.
    via.change_user(
        ChangeUserOpts::default()
            .with_user(Some("app_ed".into()))
            .with_pass(Some("ed-pass".into()))
            .with_db_name(Some("app".into())),
    )
    .await
    .unwrap();
    let who: Option<String> = via.query_first("SELECT CURRENT_USER()").await.unwrap();
    assert_eq!(who.as_deref(), Some("app_ed@%"));
    via.change_user(
        ChangeUserOpts::default()
            .with_user(Some("app".into()))
            .with_pass(Some("app-pass".into())),
    )
    .await
    .unwrap();
    let who: Option<String> = via.query_first("SELECT CURRENT_USER()").await.unwrap();
    assert_eq!(who.as_deref(), Some("app@%"));
    // A wrong password is refused like a server refuses it.
    let err = via
        .change_user(
            ChangeUserOpts::default()
                .with_user(Some("app".into()))
                .with_pass(Some("wrong".into())),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, mysql_async::Error::Server(ref e) if e.code == 1045),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packets_over_16_mib_both_ways() {
    // The proxy takes its packet limit from the primary, as the monitor reads it.
    let cluster = lagless_testkit::Cluster::builder()
        .members(1)
        .config_line("max_allowed_packet=64M")
        .start()
        .await
        .unwrap();
    let h = Harness::in_front_of(cluster, |_| {}).await;
    let mut via = h.app().await;
    via.query_drop("CREATE TABLE big (id INT PRIMARY KEY, b LONGBLOB)")
        .await
        .unwrap();
    let blob: Vec<u8> = (0..20 * 1024 * 1024).map(|i| (i % 251) as u8).collect();
    // Binary protocol: one COM_STMT_EXECUTE spanning two packets.
    via.exec_drop("INSERT INTO big VALUES (1, ?)", (blob.clone(),))
        .await
        .unwrap();
    // Text protocol: a 40 MB COM_QUERY (hex literal).
    let hex: String = blob[..8 * 1024 * 1024]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    via.query_drop(format!("INSERT INTO big VALUES (2, x'{hex}')"))
        .await
        .unwrap();
    let got: Option<Vec<u8>> = via
        .query_first("SELECT b FROM big WHERE id = 1")
        .await
        .unwrap();
    assert!(
        got.as_deref() == Some(&blob[..]),
        "20 MiB row came back different"
    );
    let got: Option<Vec<u8>> = via
        .exec_first("SELECT b FROM big WHERE id = ?", (2,))
        .await
        .unwrap();
    assert_eq!(got.map(|b| b.len()), Some(8 * 1024 * 1024));
}

fn self_signed(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let status = std::process::Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl is needed to make a test certificate");
    assert!(status.success());
    (cert, key)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_tls_refuses_plain_clients_as_the_server_does() {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(certs.path());
    let h = Harness::start_with(1, |c| {
        c.tls_cert = Some(cert.clone());
        c.tls_key = Some(key.clone());
        c.require_tls = true;
    })
    .await;
    let err = Conn::new(h.opts("app", "app-pass", Some("app")))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, mysql_async::Error::Server(e) if e.code == 3159),
        "{err}"
    );
    let ssl = SslOpts::default().with_danger_accept_invalid_certs(true);
    let opts = OptsBuilder::from_opts(h.opts("app", "app-pass", Some("app"))).ssl_opts(ssl);
    let mut conn = Conn::new(opts).await.unwrap();
    let one: Option<i64> = conn.query_first("SELECT 1").await.unwrap();
    assert_eq!(one, Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_clients_and_caching_sha2() {
    let certs = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(certs.path());
    let h = Harness::start_with(2, |c| {
        c.tls_cert = Some(cert.clone());
        c.tls_key = Some(key.clone());
        c.auth_plugin = "caching_sha2_password".into();
    })
    .await;
    let ssl = SslOpts::default().with_danger_accept_invalid_certs(true);
    let opts = OptsBuilder::from_opts(h.opts("app", "app-pass", Some("app"))).ssl_opts(ssl.clone());
    let mut conn = Conn::new(opts).await.unwrap();
    conn.query_drop("CREATE TABLE tl (id INT PRIMARY KEY)")
        .await
        .unwrap();
    conn.exec_drop("INSERT INTO tl VALUES (?)", (1,))
        .await
        .unwrap();
    let n: Option<i64> = conn
        .query_first("SELECT /* lagless:route=primary */ COUNT(*) FROM tl")
        .await
        .unwrap();
    assert_eq!(n, Some(1));
    // caching_sha2 fast path without TLS, and a wrong password refused.
    let mut plain = Conn::new(h.opts("app", "app-pass", Some("app")))
        .await
        .unwrap();
    let one: Option<i32> = plain.query_first("SELECT 1").await.unwrap();
    assert_eq!(one, Some(1));
    let err = Conn::new(h.opts("app", "bad", Some("app")))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("1045") || err.to_string().contains("Access denied"),
        "{err}"
    );
    // ed25519 accounts still work when the greeting offers caching_sha2.
    let mut ed =
        Conn::new(OptsBuilder::from_opts(h.opts("app_ed", "ed-pass", Some("app"))).ssl_opts(ssl))
            .await
            .unwrap();
    let who: Option<String> = ed.query_first("SELECT CURRENT_USER()").await.unwrap();
    assert_eq!(who.as_deref(), Some("app_ed@%"));
}

/// With the primary gone (a failover under way), accounts are looked up on a replica: the
/// client is told the server is unreachable, never that its password is wrong.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_are_looked_up_on_a_replica_while_the_primary_is_down() {
    let h = Harness::start_with(2, |c| {
        c.user_cache_ttl = std::time::Duration::ZERO;
        c.write_hold_timeout = std::time::Duration::from_millis(300);
    })
    .await;
    h.cluster
        .primary()
        .exec("CREATE USER 'late'@'%' IDENTIFIED BY 'late-pass'; GRANT SELECT ON *.* TO 'late'@'%'")
        .await
        .unwrap();
    let head = h
        .cluster
        .primary()
        .positions()
        .await
        .unwrap()
        .gtid_binlog_pos;
    h.cluster.replicas()[0]
        .wait_for_gtid(&head, std::time::Duration::from_secs(10))
        .await
        .unwrap();
    h.cluster.primary().kill9().unwrap();
    let err = Conn::new(h.opts("late", "late-pass", None))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("1105") && err.contains("Can't connect"),
        "{err}"
    );
    let err = Conn::new(h.opts("late", "wrong", None))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("1045"),
        "a wrong password is still refused: {err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_created_on_the_primary_work_at_once() {
    let h = Harness::start(2).await;
    h.cluster
        .primary()
        .exec("CREATE USER 'late'@'%' IDENTIFIED BY 'late-pass'; GRANT SELECT ON *.* TO 'late'@'%'")
        .await
        .unwrap();
    let mut c = Conn::new(h.opts("late", "late-pass", None)).await.unwrap();
    let who: Option<String> = c.query_first("SELECT CURRENT_USER()").await.unwrap();
    assert_eq!(who.as_deref(), Some("late@%"));
    let err = Conn::new(h.opts("late", "wrong", None)).await.unwrap_err();
    assert!(
        err.to_string().contains("1045") || err.to_string().contains("Access denied"),
        "{err}"
    );
    let err = Conn::new(h.opts("nobody", "x", None)).await.unwrap_err();
    assert!(
        err.to_string().contains("1045") || err.to_string().contains("Access denied"),
        "{err}"
    );
    // A database the user cannot use gets the server's own error.
    let err = Conn::new(h.opts("app", "app-pass", Some("missing_db")))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("1049") || err.to_string().contains("Unknown database"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compression_protocol() {
    let h = Harness::start(2).await;
    let opts = OptsBuilder::from_opts(h.opts("app", "app-pass", Some("app")))
        .compression(mysql_async::Compression::fast());
    let mut c = Conn::new(opts).await.unwrap();
    c.query_drop("CREATE TABLE z (id INT PRIMARY KEY, s TEXT)")
        .await
        .unwrap();
    let stmt = c.prep("INSERT INTO z VALUES (?, ?)").await.unwrap();
    for i in 0..50 {
        c.exec_drop(&stmt, (i, "x".repeat(i * 1000))).await.unwrap();
    }
    h.cluster.wait_replicated(WAIT).await.unwrap();
    // A large, compressible result read from a replica, in the text and binary protocols.
    let rows: Vec<(i32, String)> = c.query("SELECT id, s FROM z ORDER BY id").await.unwrap();
    assert_eq!(rows.len(), 50);
    assert_eq!(rows[49].1.len(), 49_000);
    let total: Option<i64> = c
        .exec_first("SELECT SUM(LENGTH(s)) FROM z WHERE id >= ?", (0,))
        .await
        .unwrap();
    assert_eq!(total, Some((0..50).map(|i| i * 1000).sum()));
    let mut r = c.query_iter("SELECT 1; SELECT 2").await.unwrap();
    let a: Vec<i32> = r.collect().await.unwrap();
    let b: Vec<i32> = r.collect().await.unwrap();
    drop(r);
    assert_eq!((a, b), (vec![1], vec![2]));
}

/// A CA and a server certificate it signed for 127.0.0.1; returns (ca, cert, key).
fn ca_and_server_cert(
    dir: &std::path::Path,
) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let openssl = |args: &[&str]| {
        let status = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .stderr(std::process::Stdio::null())
            .status()
            .expect("openssl is needed to make test certificates");
        assert!(status.success(), "openssl {args:?}");
    };
    openssl(&[
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=lagless-test-ca",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ]);
    openssl(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n",
    )
    .unwrap();
    openssl(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        "san.ext",
        "-out",
        "server.pem",
    ]);
    (
        dir.join("ca.pem"),
        dir.join("server.pem"),
        dir.join("server.key"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_to_backends_verified_against_a_ca() {
    let certs = tempfile::tempdir().unwrap();
    let (ca, cert, key) = ca_and_server_cert(certs.path());
    let cluster = lagless_testkit::Cluster::builder()
        .members(2)
        .config_line(format!("ssl_cert={}", cert.display()))
        .config_line(format!("ssl_key={}", key.display()))
        .start()
        .await
        .unwrap();
    let h = Harness::in_front_of(cluster, |c| {
        c.backend_tls = lagless_proxy::config::BackendTlsMode::Verify;
        c.backend_ca = Some(ca.clone());
    })
    .await;
    let mut c = h.app().await;
    for q in [
        "SHOW SESSION STATUS LIKE 'Ssl_version'",
        "SHOW /* lagless:route=primary */ SESSION STATUS LIKE 'Ssl_version'",
    ] {
        let row: Option<(String, String)> = c.query_first(q).await.unwrap();
        let version = row.map(|r| r.1).unwrap_or_default();
        assert!(
            version.starts_with("TLS"),
            "{q}: backend connection not encrypted: {version:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_tls_refuses_an_unknown_certificate() {
    let certs = tempfile::tempdir().unwrap();
    let (_, cert, key) = ca_and_server_cert(certs.path());
    let other = tempfile::tempdir().unwrap();
    let (other_ca, _, _) = ca_and_server_cert(other.path());
    let cluster = lagless_testkit::Cluster::builder()
        .members(1)
        .config_line(format!("ssl_cert={}", cert.display()))
        .config_line(format!("ssl_key={}", key.display()))
        .start()
        .await
        .unwrap();
    let h = Harness::in_front_of(cluster, |c| {
        c.backend_tls = lagless_proxy::config::BackendTlsMode::Verify;
        c.backend_ca = Some(other_ca.clone());
    })
    .await;
    let err = Conn::new(h.opts("app", "app-pass", Some("app")))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("ERROR 1105 (HY000)"), "{err}");
    assert!(
        err.to_string().contains("invalid peer certificate"),
        "{err}"
    );
}
