//! Commands the drivers used elsewhere rarely send, spoken by hand through the proxy:
//! cursors (COM_STMT_EXECUTE with a cursor, then COM_STMT_FETCH), COM_FIELD_LIST,
//! COM_STATISTICS, COM_SET_OPTION and COM_STMT_RESET, with and without CLIENT_DEPRECATE_EOF.

use std::time::Duration;

use bytes::Bytes;
use lagless_proxy::protocol::constants::{cap, com, status};
use lagless_proxy::protocol::handshake::{Greeting, HandshakeResponse};
use lagless_proxy::protocol::messages::{self, ErrPacket};
use lagless_proxy::protocol::packet::PacketStream;
use lagless_proxy::protocol::response::{ResponseKind, ResponseTracker, Step};
use mysql_async::prelude::Queryable;
use tokio::net::TcpStream;

use crate::support::{Harness, Raw};

async fn login(h: &Harness, extra_caps: u32) -> Raw {
    crate::support::raw_login(h.port(), extra_caps, 0).await.0
}

/// Sends a command and reads its whole response.
pub(crate) async fn call(
    s: &mut Raw,
    payload: &[u8],
    kind: ResponseKind,
    caps: u32,
) -> (ResponseTracker, Vec<Bytes>) {
    let mut seq = 0;
    s.send(&mut seq, payload).await.unwrap();
    let mut t = ResponseTracker::new(kind, caps);
    let mut packets = Vec::new();
    loop {
        let p = s.read_raw().await.unwrap();
        let step = t.feed(&p.payload).unwrap();
        packets.push(p.payload);
        if step == Step::Done {
            return (t, packets);
        }
    }
}

pub(crate) fn cmd(command: u8, body: &[u8]) -> Vec<u8> {
    let mut v = vec![command];
    v.extend_from_slice(body);
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cursors_fetch_in_batches_with_and_without_deprecate_eof() {
    let h = Harness::start(2).await;
    for caps in [0, cap::DEPRECATE_EOF] {
        let mut s = login(&h, caps).await;
        let (t, _) = call(
            &mut s,
            &cmd(com::STMT_PREPARE, b"SELECT seq FROM seq_1_to_10"),
            ResponseKind::Prepare,
            caps,
        )
        .await;
        let id = t.prepare.unwrap().statement_id;
        // Execute with CURSOR_TYPE_READ_ONLY: metadata only, rows come with FETCH.
        let mut exec = vec![com::STMT_EXECUTE];
        exec.extend_from_slice(&id.to_le_bytes());
        exec.push(1);
        exec.extend_from_slice(&1u32.to_le_bytes());
        let (t, packets) = call(&mut s, &exec, ResponseKind::Execute, caps).await;
        assert!(t.error.is_none(), "{packets:?}");
        assert!(t.status.unwrap() & status::CURSOR_EXISTS != 0);
        let mut rows = 0;
        loop {
            let mut fetch = vec![com::STMT_FETCH];
            fetch.extend_from_slice(&id.to_le_bytes());
            fetch.extend_from_slice(&4u32.to_le_bytes());
            let (t, packets) = call(&mut s, &fetch, ResponseKind::Fetch, caps).await;
            assert!(t.error.is_none(), "{packets:?}");
            rows += packets.len() - 1;
            if t.status.unwrap() & status::LAST_ROW_SENT != 0 {
                break;
            }
            assert!(rows <= 10);
        }
        assert_eq!(rows, 10, "caps {caps:#x}");
        // COM_STMT_RESET answers OK; FETCH after it has no cursor.
        let (t, _) = call(
            &mut s,
            &cmd(com::STMT_RESET, &id.to_le_bytes()),
            ResponseKind::Single,
            caps,
        )
        .await;
        assert!(t.error.is_none());
        let mut fetch = vec![com::STMT_FETCH];
        fetch.extend_from_slice(&id.to_le_bytes());
        fetch.extend_from_slice(&4u32.to_le_bytes());
        let (t, _) = call(&mut s, &fetch, ResponseKind::Fetch, caps).await;
        assert!(t.error.is_some());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn field_list_statistics_and_set_option() {
    let h = Harness::start(1).await;
    for caps in [0, cap::DEPRECATE_EOF] {
        let mut s = login(&h, caps).await;
        let (t, _) = call(
            &mut s,
            &cmd(com::QUERY, b"CREATE TABLE IF NOT EXISTS fl (a INT, b TEXT)"),
            ResponseKind::Query,
            caps,
        )
        .await;
        assert!(t.error.is_none());
        let (t, packets) = call(
            &mut s,
            &cmd(com::FIELD_LIST, b"fl\0"),
            ResponseKind::FieldList,
            caps,
        )
        .await;
        assert!(t.error.is_none());
        assert_eq!(
            packets.len(),
            3,
            "two column definitions and the terminator"
        );
        assert!(messages::is_terminator(packets.last().unwrap(), caps));
        let (_, packets) = call(&mut s, &[com::STATISTICS], ResponseKind::Single, caps).await;
        assert!(String::from_utf8_lossy(&packets[0]).starts_with("Uptime:"));
        // Multi-statements off: a batch is a syntax error; back on: it works.
        let (t, _) = call(
            &mut s,
            &cmd(com::SET_OPTION, &1u16.to_le_bytes()),
            ResponseKind::Single,
            caps,
        )
        .await;
        assert!(t.error.is_none());
        let (t, packets) = call(
            &mut s,
            &cmd(com::QUERY, b"SELECT 1; SELECT 2"),
            ResponseKind::Query,
            caps,
        )
        .await;
        assert_eq!(t.error, Some(1064), "{:?}", ErrPacket::parse(&packets[0]));
        let (t, _) = call(
            &mut s,
            &cmd(com::SET_OPTION, &0u16.to_le_bytes()),
            ResponseKind::Single,
            caps,
        )
        .await;
        assert!(t.error.is_none());
        let (t, _) = call(
            &mut s,
            &cmd(com::QUERY, b"SELECT 1; SELECT 2"),
            ResponseKind::Query,
            caps,
        )
        .await;
        assert!(t.error.is_none());
        // COM_PING and COM_INIT_DB.
        let (t, _) = call(&mut s, &[com::PING], ResponseKind::Single, caps).await;
        assert!(t.error.is_none());
        let (t, _) = call(
            &mut s,
            &cmd(com::INIT_DB, b"mysql"),
            ResponseKind::Single,
            caps,
        )
        .await;
        assert!(t.error.is_none());
        let (t, _) = call(
            &mut s,
            &cmd(com::INIT_DB, b"no_such_db"),
            ResponseKind::Single,
            caps,
        )
        .await;
        assert_eq!(t.error, Some(1049));
    }
}

/// The certificate the proxy presents to a TLS client right now.
async fn presented_certificate(h: &Harness) -> Vec<u8> {
    let tcp = TcpStream::connect(h.addr).await.unwrap();
    let mut s = PacketStream::new(tcp);
    let (seq, greet) = s.read_logical().await.unwrap();
    let g = Greeting::parse(&greet).unwrap();
    assert!(g.capabilities & cap::SSL != 0);
    let request = HandshakeResponse {
        capabilities: cap::PROTOCOL_41 | cap::SECURE_CONNECTION | cap::SSL,
        max_packet: 1 << 24,
        collation: 45,
        ..HandshakeResponse::default()
    };
    let mut seq = seq + 1;
    s.send(&mut seq, &request.encode_ssl_request())
        .await
        .unwrap();
    let tls = lagless_proxy::backend::tls::BackendTls::unverified().unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let stream = tls.connector().connect(name, s.into_inner()).await.unwrap();
    stream.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

fn make_cert(dir: &std::path::Path, cn: &str) {
    let status = std::process::Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args([
            "-subj",
            &format!("/CN={cn}"),
            "-keyout",
            "key.pem",
            "-out",
            "cert.pem",
        ])
        .current_dir(dir)
        .stderr(std::process::Stdio::null())
        .status()
        .expect("openssl is needed to make test certificates");
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_certificate_is_reloaded_when_its_files_change() {
    let dir = tempfile::tempdir().unwrap();
    make_cert(dir.path(), "first");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let h = Harness::start_with(1, |c| {
        c.tls_cert = Some(cert.clone());
        c.tls_key = Some(key.clone());
    })
    .await;
    let first = presented_certificate(&h).await;
    assert_eq!(first, pem_der(&cert));
    // A broken pair keeps the old certificate.
    std::fs::write(&cert, "not a certificate").unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    assert_eq!(presented_certificate(&h).await, first);
    // A new pair is picked up without a restart.
    make_cert(dir.path(), "second");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let now = presented_certificate(&h).await;
        if now != first {
            assert_eq!(now, pem_der(&cert));
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the new certificate was never served"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

fn pem_der(path: &std::path::Path) -> Vec<u8> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::from_pem_file(path)
        .unwrap()
        .to_vec()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn greeting_version_is_the_primarys_or_the_configured_one() {
    let h = Harness::start(1).await;
    let direct = h.cluster.primary().port();
    let read_greeting = |port: u16| async move {
        let mut s = PacketStream::new(TcpStream::connect(("127.0.0.1", port)).await.unwrap());
        Greeting::parse(&s.read_logical().await.unwrap().1).unwrap()
    };
    let server = read_greeting(direct).await;
    let proxied = read_greeting(h.port()).await;
    assert_eq!(proxied.server_version, server.server_version);
    assert_ne!(proxied.connection_id, 0);
    let h2 = Harness::in_front_of(h.cluster, |c| {
        c.server_version = Some("8.0.99-lagless".into())
    })
    .await;
    assert_eq!(
        read_greeting(h2.port()).await.server_version,
        "8.0.99-lagless"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_without_session_tracking_get_plain_ok_packets_and_session_consistency() {
    let h = Harness::start(2).await;
    let mut s = login(&h, 0).await;
    let q = |sql: &str| cmd(com::QUERY, sql.as_bytes());
    let (t, _) = call(
        &mut s,
        &q("CREATE TABLE st (id INT PRIMARY KEY, v INT)"),
        ResponseKind::Query,
        0,
    )
    .await;
    assert!(t.error.is_none());
    let (_, packets) = call(
        &mut s,
        &q("INSERT INTO st VALUES (1, 1), (2, 2)"),
        ResponseKind::Query,
        0,
    )
    .await;
    // The OK as a server gives it to a client without CLIENT_SESSION_TRACK: info to the end,
    // no session-state flag.
    let ok = messages::Ok::parse(&packets[0], 0).unwrap();
    assert_eq!(ok.affected_rows, 2);
    assert_eq!(ok.status & status::SESSION_STATE_CHANGED, 0);
    assert!(
        String::from_utf8_lossy(&packets[0]).ends_with("Records: 2  Duplicates: 0  Warnings: 0")
    );
    // The replica now applies everything two seconds late; `session` still reads its writes.
    h.cluster.member(1).set_master_delay(2).await.unwrap();
    let (t, _) = call(
        &mut s,
        &q("SET lagless_consistency = 'session'"),
        ResponseKind::Query,
        0,
    )
    .await;
    assert!(t.error.is_none());
    for v in 10..15 {
        let (t, _) = call(
            &mut s,
            &q(&format!("UPDATE st SET v = {v} WHERE id = 1")),
            ResponseKind::Query,
            0,
        )
        .await;
        assert!(t.error.is_none());
        let (_, packets) = call(
            &mut s,
            &q("SELECT v FROM st WHERE id = 1"),
            ResponseKind::Query,
            0,
        )
        .await;
        assert_eq!(
            &packets[3][..],
            format!("\x02{v}").as_bytes(),
            "read-your-writes"
        );
    }
}

/// A multi-statement payload whose results carry info strings ("Records: 2  Duplicates: 0
/// Warnings: 0"), for a client without session tracking: what it gets through the proxy is
/// what it gets from the server (it used to wait forever for a malformed OK).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ok_packets_with_info_reach_clients_as_the_server_sends_them() {
    let h = Harness::start(3).await;
    let mut direct = h.cluster.primary().app_conn().await.unwrap();
    let mut proxied = h.app().await;
    let mut seen = Vec::new();
    for (c, table) in [(&mut direct, "i_direct"), (&mut proxied, "i_proxied")] {
        let sql = format!(
            "CREATE TABLE {table} (id INT PRIMARY KEY); INSERT INTO {table} VALUES (1), (2); \
             UPDATE {table} SET id = id + 10"
        );
        tokio::time::timeout(Duration::from_secs(10), c.query_drop(sql))
            .await
            .expect("the multi-statement answered in time")
            .unwrap();
        let single = format!("INSERT INTO {table} VALUES (3), (4)");
        c.query_drop(single).await.unwrap();
        seen.push((c.affected_rows(), c.info().to_string()));
    }
    assert_eq!(seen[0], seen[1]);
    assert_eq!(seen[1].1, "Records: 2  Duplicates: 0  Warnings: 0");
}

/// The proxy's own answers carry the session's `NO_BACKSLASH_ESCAPES` flag as the server's do:
/// client libraries choose how to escape strings from the status flags of every OK packet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_proxys_own_answers_carry_no_backslash_escapes() {
    let h = Harness::start(1).await;
    for caps in [0, cap::DEPRECATE_EOF] {
        let mut s = login(&h, caps).await;
        let flag = |t: &ResponseTracker| t.status.unwrap() & status::NO_BACKSLASH_ESCAPES != 0;
        let ping = cmd(com::PING, b"");
        let (t, _) = call(&mut s, &ping, ResponseKind::Single, caps).await;
        assert!(!flag(&t), "caps {caps:#x}: before the mode is set");
        let set = cmd(com::QUERY, b"SET sql_mode = 'NO_BACKSLASH_ESCAPES'");
        let (t, _) = call(&mut s, &set, ResponseKind::Query, caps).await;
        assert!(flag(&t), "caps {caps:#x}: the server's OK");
        let (t, _) = call(&mut s, &ping, ResponseKind::Single, caps).await;
        assert!(flag(&t), "caps {caps:#x}: the proxy's OK to COM_PING");
        let show = cmd(com::QUERY, b"SHOW lagless_consistency");
        let (t, packets) = call(&mut s, &show, ResponseKind::Query, caps).await;
        assert!(t.error.is_none(), "{packets:?}");
        assert!(flag(&t), "caps {caps:#x}: the proxy's own result set");
        let reset = cmd(com::QUERY, b"SET sql_mode = DEFAULT");
        let (t, _) = call(&mut s, &reset, ResponseKind::Query, caps).await;
        assert!(!flag(&t), "caps {caps:#x}: the server's OK after the reset");
        let (t, _) = call(&mut s, &ping, ResponseKind::Single, caps).await;
        assert!(!flag(&t), "caps {caps:#x}: the proxy's OK after the reset");
    }
}
