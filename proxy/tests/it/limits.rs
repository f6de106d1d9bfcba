//! Bounds on what one client can make the proxy, or the primary behind it, spend: user
//! lookups, wrong passwords, connections per address and per user, packet sizes, stalls and
//! idle sessions. Each answer is the one a server gives.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use lagless_proxy::protocol::constants::{com, header};
use lagless_proxy::protocol::messages::ErrPacket;
use lagless_proxy::users::LookupCredentials;
use lagless_testkit::{APP_PASSWORD, APP_USER};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder};
use tokio::io::AsyncWriteExt;

use super::support::{Harness, raw_login};

fn server_code(e: &mysql_async::Error) -> Option<u16> {
    match e {
        mysql_async::Error::Server(s) => Some(s.code),
        _ => None,
    }
}

/// The account the proxy reads other accounts with: `mysql.global_priv`, nothing else.
const LOOKUP_USER: &str = "lagless_lookup";
const LOOKUP_PASSWORD: &str = "lookup-secret";

/// Connections the lookup account holds on the server `admin` is connected to.
async fn lookup_connections(admin: &mut Conn) -> usize {
    let n: Option<usize> = admin
        .exec_first(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER = ?",
            (LOOKUP_USER,),
        )
        .await
        .unwrap();
    n.unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_unknown_names_use_two_lookup_connections_on_a_least_privileged_account() {
    let h = Harness::start_with(1, |c| {
        c.lookup = Some(LookupCredentials {
            user: LOOKUP_USER.into(),
            password: LOOKUP_PASSWORD.into(),
            tls: None,
        });
    })
    .await;
    h.cluster
        .primary()
        .exec(&format!(
            "CREATE USER {LOOKUP_USER}@'%' IDENTIFIED BY '{LOOKUP_PASSWORD}'; \
             GRANT SELECT ON mysql.global_priv TO {LOOKUP_USER}@'%'; \
             CREATE USER looked_up@'%' IDENTIFIED BY 'found-me'; \
             GRANT SELECT ON app.* TO looked_up@'%'"
        ))
        .await
        .unwrap();
    // The lookup account sees accounts and nothing else.
    let mut probe = h
        .cluster
        .primary()
        .conn_as(LOOKUP_USER, LOOKUP_PASSWORD, None)
        .await
        .unwrap();
    let err = probe.query_drop("SELECT * FROM app.t").await.unwrap_err();
    assert!(matches!(server_code(&err), Some(1142 | 1146)), "{err}");
    probe.disconnect().await.unwrap();

    let mut admin = h.cluster.primary().admin_conn().await.unwrap();
    // The probe's connection leaves the process list once its thread has ended.
    for _ in 0..100 {
        if lookup_connections(&mut admin).await == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let peak = Arc::new(AtomicUsize::new(0));
    let sampler = {
        let peak = peak.clone();
        tokio::spawn(async move {
            loop {
                let n = lookup_connections(&mut admin).await;
                peak.fetch_max(n, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let started = Instant::now();
    let port = h.port();
    let refused = futures::stream::iter(0..10_000u32)
        .map(|i| async move {
            let opts = OptsBuilder::default()
                .ip_or_hostname("127.0.0.1")
                .tcp_port(port)
                .user(Some(format!(
                    "nobody-{i}-{}",
                    i.wrapping_mul(2_654_435_761)
                )))
                .pass(Some("guess"))
                .prefer_socket(false);
            match Conn::new(opts).await {
                Ok(_) => None,
                Err(e) => server_code(&e),
            }
        })
        .buffer_unordered(48)
        .filter(|code| std::future::ready(*code == Some(1045)))
        .count()
        .await;
    let took = started.elapsed();
    sampler.abort();
    eprintln!(
        "10,000 unknown names refused in {took:?}; lookup connections on the primary at most {}",
        peak.load(Ordering::Relaxed)
    );
    assert_eq!(refused, 10_000);
    assert!(peak.load(Ordering::Relaxed) <= 2, "{peak:?}");
    // A name longer than any account is refused without a lookup, and real accounts still
    // log in through the same lookups.
    let long = "x".repeat(200);
    let err = Conn::new(h.opts(&long, "guess", None)).await.unwrap_err();
    assert_eq!(server_code(&err), Some(1045), "{err}");
    let mut found = Conn::new(h.opts("looked_up", "found-me", Some("app")))
        .await
        .unwrap();
    let one: Option<i64> = found.query_first("SELECT 1").await.unwrap();
    assert_eq!(one, Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_passwords_are_answered_ever_more_slowly_until_the_right_one() {
    let h = Harness::start(1).await;
    let mut took = Vec::new();
    for _ in 0..5 {
        took.push(refused_after(Conn::new(h.opts(APP_USER, "wrong", None))).await);
    }
    eprintln!("wrong passwords answered after {took:?}");
    assert_slowed_down(&took);
    assert!(took[4] >= Duration::from_secs(2), "{took:?}");
    // The right password is not held up, and clears the count.
    let started = Instant::now();
    h.app().await;
    assert!(started.elapsed() < Duration::from_millis(900));
    let started = Instant::now();
    let err = Conn::new(h.opts(APP_USER, "wrong", None))
        .await
        .unwrap_err();
    assert_eq!(server_code(&err), Some(1045), "{err}");
    assert!(started.elapsed() < Duration::from_millis(900));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guessing_through_change_user_is_slowed_down_as_a_login_is() {
    let h = Harness::start(1).await;
    let mut took = Vec::new();
    for _ in 0..4 {
        let mut c = h.app().await;
        let guess = mysql_async::ChangeUserOpts::default()
            .with_user(Some(lagless_testkit::ED25519_USER.into()))
            .with_pass(Some("guess".into()));
        took.push(refused_after(c.change_user(guess)).await);
    }
    eprintln!("wrong passwords through COM_CHANGE_USER answered after {took:?}");
    assert_slowed_down(&took);
}

/// How long `attempt` took to be refused with 1045.
async fn refused_after<T>(
    attempt: impl std::future::Future<Output = Result<T, mysql_async::Error>>,
) -> Duration {
    let started = Instant::now();
    match attempt.await {
        Ok(_) => panic!("a wrong password was accepted"),
        Err(err) => assert_eq!(server_code(&err), Some(1045), "{err}"),
    }
    started.elapsed()
}

/// The first three wrong answers come at once, the fourth a second later.
fn assert_slowed_down(took: &[Duration]) {
    assert!(
        took[..3].iter().all(|t| *t < Duration::from_millis(900)),
        "{took:?}"
    );
    assert!(took[3] >= Duration::from_secs(1), "{took:?}");
}

/// Reads the greeting and stops there: a connection that never authenticates.
async fn half_open(
    port: u16,
) -> lagless_proxy::protocol::packet::PacketStream<tokio::net::TcpStream> {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut s = lagless_proxy::protocol::packet::PacketStream::new(tcp);
    let (_, first) = s.read_logical().await.unwrap();
    assert_eq!(first.first(), Some(&10), "a greeting: {first:?}");
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_per_address_and_sessions_per_user_are_capped_with_the_servers_errors() {
    let h = Harness::start_with(1, |c| {
        c.max_unauthenticated_per_host = 2;
        c.max_user_connections = 2;
    })
    .await;
    let first = half_open(h.port()).await;
    let _second = half_open(h.port()).await;
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", h.port()))
        .await
        .unwrap();
    let mut third = lagless_proxy::protocol::packet::PacketStream::new(tcp);
    let (_, err) = third.read_logical().await.unwrap();
    assert_eq!(err.first(), Some(&header::ERR));
    assert_eq!(ErrPacket::parse(&err).unwrap().code, 1040);
    drop(first);
    // The place is given back as soon as the connection is gone.
    let mut again = None;
    for _ in 0..50 {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", h.port()))
            .await
            .unwrap();
        let mut s = lagless_proxy::protocol::packet::PacketStream::new(tcp);
        let (_, p) = s.read_logical().await.unwrap();
        if p.first() == Some(&10) {
            again = Some(s);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        again.is_some(),
        "no place after a half-open connection closed"
    );
    drop(again);
    drop(_second);
    tokio::time::sleep(Duration::from_millis(100)).await;

    let one = h.app().await;
    let _two = h.app().await;
    let err = Conn::new(h.opts(APP_USER, APP_PASSWORD, Some("app")))
        .await
        .unwrap_err();
    assert_eq!(server_code(&err), Some(1203), "{err}");
    assert!(err.to_string().contains("max_user_connections"), "{err}");
    drop(one);
    let mut back = None;
    for _ in 0..50 {
        if let Ok(c) = Conn::new(h.opts(APP_USER, APP_PASSWORD, Some("app"))).await {
            back = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(back.is_some(), "no session after one ended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_stalled_packets_end_the_connection() {
    let h = Harness::start_with(1, |c| {
        c.max_allowed_packet = Some(64 * 1024);
        c.packet_timeout = Duration::from_secs(1);
    })
    .await;
    let (mut s, _, _) = raw_login(h.port(), 0, 0).await;
    let mut query = vec![com::QUERY];
    query.extend_from_slice(format!("SELECT '{}'", "x".repeat(100 * 1024)).as_bytes());
    let mut seq = 0;
    s.send(&mut seq, &query).await.unwrap();
    let (_, reply) = s.read_logical().await.unwrap();
    let err = ErrPacket::parse(&reply).unwrap();
    assert_eq!(err.code, 1153, "{err:?}");
    assert!(s.read_logical().await.is_err(), "still open after 1153");
    // Under the limit all is well.
    let (mut s, _, _) = raw_login(h.port(), 0, 0).await;
    let mut seq = 0;
    s.send(
        &mut seq,
        &[com::QUERY, b'S', b'E', b'L', b'E', b'C', b'T', b' ', b'1'],
    )
    .await
    .unwrap();
    let (_, reply) = s.read_logical().await.unwrap();
    assert_ne!(reply.first(), Some(&header::ERR), "{reply:?}");

    // A packet announced at 1,000 bytes of which 10 arrive: cut off after the timeout.
    let (s, _, _) = raw_login(h.port(), 0, 0).await;
    let mut tcp = s.into_inner();
    let mut partial = vec![0xe8, 0x03, 0x00, 0x00, com::QUERY];
    partial.extend_from_slice(b"SELECT 1 ");
    tcp.write_all(&partial).await.unwrap();
    let started = Instant::now();
    let mut buf = [0u8; 64];
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        use tokio::io::AsyncReadExt;
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "a stalled packet kept its connection");
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn locked_and_expired_accounts_get_the_servers_answer() {
    let h = Harness::start(1).await;
    h.cluster
        .primary()
        .exec(
            "CREATE USER locked_u@'%' IDENTIFIED BY 'pw' ACCOUNT LOCK; \
             CREATE USER expired_u@'%' IDENTIFIED BY 'pw' PASSWORD EXPIRE",
        )
        .await
        .unwrap();
    for user in ["locked_u", "expired_u"] {
        let direct = OptsBuilder::default()
            .ip_or_hostname("127.0.0.1")
            .tcp_port(h.cluster.primary().port())
            .user(Some(user))
            .pass(Some("pw"))
            .prefer_socket(false);
        let direct = Conn::new(direct).await.map(|_| ()).unwrap_err();
        let proxied = Conn::new(h.opts(user, "pw", None))
            .await
            .map(|_| ())
            .unwrap_err();
        eprintln!("{user}: direct {direct}; through the proxy {proxied}");
        assert!(server_code(&direct).is_some(), "{direct}");
        assert_eq!(
            server_code(&proxied),
            server_code(&direct),
            "{user}: {proxied}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sessions_end_at_the_wait_timeout_unless_they_set_their_own() {
    let h = Harness::start_with(1, |c| c.wait_timeout = Duration::from_secs(1)).await;
    let mut idle = h.app().await;
    let mut own = h.app().await;
    own.query_drop("SET SESSION wait_timeout = 30")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    assert!(
        idle.query_drop("SELECT 1").await.is_err(),
        "an idle session outlived wait_timeout"
    );
    own.query_drop("SELECT 1").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_limits_count_idle_connections_and_keep_a_share_for_other_users() {
    let h = Harness::start_with(1, |c| {
        c.pool.max_per_backend = 3;
        c.pool.acquire_timeout = Duration::from_millis(500);
    })
    .await;
    // The application user gets two of the three connections, never the third.
    let mut app = Vec::new();
    for _ in 0..2 {
        let mut c = h.app().await;
        c.query_drop("BEGIN").await.unwrap();
        c.query_drop("SELECT 1 FROM DUAL FOR UPDATE").await.unwrap();
        app.push(c);
    }
    let err = Conn::new(h.opts(APP_USER, APP_PASSWORD, Some("app")))
        .await
        .unwrap_err();
    eprintln!("third session of one user: {err}");
    assert!(
        err.to_string().contains("holds all 2 of its connections"),
        "{err}"
    );
    // Another account still gets one.
    let mut other = Conn::new(h.opts(
        lagless_testkit::ED25519_USER,
        lagless_testkit::ED25519_PASSWORD,
        Some("app"),
    ))
    .await
    .unwrap_or_else(|e| panic!("another account's login: {e}"));
    other.query_drop("BEGIN").await.unwrap();
    other
        .query_drop("SELECT 1 FROM DUAL FOR UPDATE")
        .await
        .unwrap();
    other.query_drop("COMMIT").await.unwrap();
    // Idle connections keep their places but give them up when needed: after the app
    // sessions end, the other account can hold two at once, and the server never sees more
    // than three connections from the proxy's users.
    drop(app);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut second = Conn::new(h.opts(
        lagless_testkit::ED25519_USER,
        lagless_testkit::ED25519_PASSWORD,
        Some("app"),
    ))
    .await
    .unwrap();
    for c in [&mut other, &mut second] {
        c.query_drop("BEGIN").await.unwrap();
        c.query_drop("SELECT 1 FROM DUAL FOR UPDATE").await.unwrap();
    }
    let mut admin = h.cluster.primary().admin_conn().await.unwrap();
    let n: Option<usize> = admin
        .exec_first(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER IN (?, ?)",
            (APP_USER, lagless_testkit::ED25519_USER),
        )
        .await
        .unwrap();
    assert!(n.unwrap_or(0) <= 3, "{n:?} connections for a limit of 3");
}

/// The lines of the proxy's /metrics that start with `prefix`.
async fn metric_lines(admin: std::net::SocketAddr, prefix: &str) -> Vec<String> {
    let (_, body) = super::support::http_get(admin, "/metrics").await;
    body.lines()
        .filter(|l| l.starts_with(prefix))
        .map(str::to_string)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_pool_queues_sessions_and_never_takes_the_server_for_down() {
    let h = Harness::start_with(1, |c| {
        c.pool.acquire_timeout = Duration::from_secs(20);
    })
    .await;
    let admin_http = h.admin.unwrap();
    // The server allows 30 connections; the proxy's limit (500) fits itself to it, keeping a
    // reserve, once the monitor has read it.
    let mut admin = h.cluster.primary().admin_conn().await.unwrap();
    admin
        .query_drop("SET GLOBAL max_connections = 30")
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    let limit_line = loop {
        let lines = metric_lines(admin_http, "lagless_backend_connection_limit{").await;
        if lines.iter().any(|l| l.ends_with(" 22")) || Instant::now() > deadline {
            break lines;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        limit_line.iter().any(|l| l.ends_with(" 22")),
        "{limit_line:?}"
    );
    // 60 sessions at once, each holding a connection for 300 ms: without a limit that fits,
    // the server would refuse half of them with 1040 and the proxy would take it for down.
    let started = Instant::now();
    let sessions: Vec<_> = (0..60)
        .map(|_| {
            let opts = h.opts(APP_USER, APP_PASSWORD, Some("app"));
            tokio::spawn(async move {
                let mut c = Conn::new(opts).await?;
                c.query_drop("DO SLEEP(0.3)").await?;
                c.disconnect().await
            })
        })
        .collect();
    let mut errors = Vec::new();
    for s in sessions {
        if let Err(e) = s.await.unwrap() {
            errors.push(e.to_string());
        }
    }
    let took = started.elapsed();
    eprintln!("60 sessions through 22 connections: {took:?}");
    assert!(errors.is_empty(), "{errors:?}");
    // They queued: 60 × 300 ms through 22 places take at least three rounds.
    assert!(took >= Duration::from_millis(900), "{took:?}");
    let waits = metric_lines(admin_http, "lagless_pool_wait_seconds_count").await;
    let waited: f64 = waits
        .iter()
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert!(waited > 0.0, "{waits:?}");
    let up = metric_lines(admin_http, "lagless_backend_up{").await;
    assert!(
        !up.is_empty() && up.iter().all(|l| l.ends_with(" 1")),
        "{up:?}"
    );
    let used: Option<(String, u64)> = admin
        .query_first("SHOW GLOBAL STATUS LIKE 'Max_used_connections'")
        .await
        .unwrap();
    eprintln!("server's Max_used_connections: {used:?}");
    // And the proxy serves on.
    let mut c = h.app().await;
    c.query_drop("SELECT 1").await.unwrap();
}
