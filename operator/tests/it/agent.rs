//! The seeding agent between two real data directories on this machine: a server of the test
//! kit is the donor, its agent serves the backup over HTTP, and `agent fetch` fills an empty
//! directory with a prepared copy.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use lagless_operator::agent::client::{
    AgentTls, FetchError, Fetched, Url, cancel_reseed, fetch, request_reseed,
};
use lagless_operator::agent::server::Server;
use lagless_operator::agent::{FetchArgs, POSITION_FILE, RESEED_MARKER, ServeArgs};
use lagless_operator::tls::files::TlsFiles;
use lagless_testkit::{ADMIN_PASSWORD, ADMIN_USER, Cluster};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const TOKEN: &str = "agent-test-token-0123456789";

/// A donor of one member with a few MB of data, and its agent on a free port.
async fn donor(dir: &Path) -> (Cluster, String) {
    donor_with(dir, None).await
}

/// [`donor`], its agent serving TLS with `tls` (certificate and key files) when given.
async fn donor_with(dir: &Path, tls: Option<(PathBuf, PathBuf)>) -> (Cluster, String) {
    let (tls_cert, tls_key) = tls.unzip();
    let cluster = Cluster::builder().members(1).start().await.unwrap();
    let m = cluster.primary();
    m.exec(
        "CREATE DATABASE IF NOT EXISTS seedtest;
         CREATE TABLE seedtest.blobs (id INT PRIMARY KEY AUTO_INCREMENT, body LONGTEXT)
             ENGINE=InnoDB;",
    )
    .await
    .unwrap();
    for _ in 0..8 {
        m.exec("INSERT INTO seedtest.blobs (body) VALUES (REPEAT(MD5(RAND()), 32768))")
            .await
            .unwrap();
    }
    let token_file = dir.join("token");
    std::fs::write(&token_file, format!("{TOKEN}\n")).unwrap();
    let server = Server::bind(ServeArgs {
        listen: "127.0.0.1:0".parse().unwrap(),
        datadir: m.data_dir(),
        mysql_port: m.port(),
        token_file,
        scratch_dir: Some(dir.to_path_buf()),
        admin_user: ADMIN_USER.into(),
        admin_password: ADMIN_PASSWORD.into(),
        tls_ca: None,
        tls_cert,
        tls_key,
    })
    .await
    .unwrap();
    let url = format!("http://{}", server.local_addr().unwrap());
    tokio::spawn(server.run());
    (cluster, url)
}

fn fetch_args(from: Vec<String>, token_file: &Path, datadir: &Path) -> FetchArgs {
    FetchArgs {
        from,
        topology: None,
        agent_port: 3307,
        skip_self: None,
        token_file: token_file.to_path_buf(),
        datadir: datadir.to_path_buf(),
        force: false,
        if_empty: false,
        progress_interval: 1,
        tls_ca: None,
    }
}

async fn raw_request(url: &str, request: &[u8]) -> String {
    let addr = url.trim_start_matches("http://");
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(15), stream.read_to_end(&mut answer)).await;
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_streams_a_prepared_copy_with_the_donors_position() {
    let dir = tempfile::tempdir().unwrap();
    let (cluster, url) = donor(dir.path()).await;
    let donor_pos = cluster.primary().positions().await.unwrap().gtid_binlog_pos;
    assert!(!donor_pos.is_empty());
    let target = dir.path().join("copy");
    // A fresh filesystem's lost+found does not make the directory hold data.
    std::fs::create_dir_all(target.join("lost+found")).unwrap();
    // A donor that does not answer is passed over for the next.
    // (Port 1: privileged and unused, so never taken by a parallel test.)
    let dead = "http://127.0.0.1:1".to_string();
    let args = fetch_args(vec![dead, url.clone()], &dir.path().join("token"), &target);
    let started = Instant::now();
    let fetched = fetch(&args).await.unwrap();
    let took = started.elapsed();
    let Fetched::Copied {
        donor,
        bytes,
        elapsed,
        gtid_position,
    } = fetched
    else {
        panic!("nothing copied: {fetched:?}");
    };
    assert_eq!(donor, url);
    let mb_s = bytes as f64 / 1_048_576.0 / elapsed.as_secs_f64();
    eprintln!(
        "agent stream: {:.1} MiB in {:.2} s ({mb_s:.1} MB/s, prepare included; {took:?} overall)",
        bytes as f64 / 1_048_576.0,
        elapsed.as_secs_f64()
    );
    assert!(bytes > 4 * 1_048_576, "{bytes} bytes");
    assert_eq!(gtid_position, donor_pos);
    let written = std::fs::read_to_string(target.join(POSITION_FILE)).unwrap();
    assert_eq!(written.trim(), donor_pos);
    let table = std::fs::metadata(target.join("seedtest/blobs.ibd")).unwrap();
    assert!(table.len() > 4 * 1_048_576, "{}", table.len());
    assert!(target.join("seedtest/blobs.frm").exists());
    assert!(target.join("mysql").is_dir());
    assert!(target.join("ibdata1").exists());

    // Fetching again into the filled directory is refused, or skipped with --if-empty.
    let again = fetch(&args).await.unwrap_err();
    assert!(matches!(again, FetchError::NotEmpty(_)), "{again}");
    let skip = FetchArgs {
        if_empty: true,
        ..args.clone()
    };
    assert_eq!(fetch(&skip).await.unwrap(), Fetched::AlreadyHasData);
    assert!(target.join("seedtest/blobs.ibd").exists());
    assert!(!target.join("lagless-seed-incomplete").exists());

    // A copy cut short (the pod killed mid-copy) left its marker: even --if-empty copies again
    // instead of letting the server start on half a data directory.
    std::fs::write(target.join("lagless-seed-incomplete"), b"").unwrap();
    std::fs::write(target.join("half-written.ibd"), b"junk").unwrap();
    let redone = fetch(&skip).await.unwrap();
    assert!(matches!(redone, Fetched::Copied { .. }), "{redone:?}");
    assert!(!target.join("half-written.ibd").exists());
    assert!(!target.join("lagless-seed-incomplete").exists());
    assert!(target.join("seedtest/blobs.ibd").exists());

    // The operator's re-seed request: the target's own agent marks its data (the token is
    // required), and the pod's next init step copies afresh even with --if-empty.
    let own = Server::bind(ServeArgs {
        listen: "127.0.0.1:0".parse().unwrap(),
        datadir: target.clone(),
        mysql_port: 1,
        token_file: dir.path().join("token"),
        scratch_dir: Some(dir.path().to_path_buf()),
        admin_user: ADMIN_USER.into(),
        admin_password: ADMIN_PASSWORD.into(),
        tls_ca: None,
        tls_cert: None,
        tls_key: None,
    })
    .await
    .unwrap();
    let own_url = Url::parse(&format!("http://{}", own.local_addr().unwrap())).unwrap();
    tokio::spawn(own.run());
    let refused = request_reseed(&own_url, "wrong-token", None, None)
        .await
        .unwrap_err();
    assert!(refused.contains("401"), "{refused}");
    assert!(!target.join(RESEED_MARKER).exists());
    // Marked and taken back: nothing happens at the next start.
    request_reseed(&own_url, TOKEN, None, None).await.unwrap();
    assert!(target.join(RESEED_MARKER).exists());
    cancel_reseed(&own_url, TOKEN, None).await.unwrap();
    assert!(!target.join(RESEED_MARKER).exists());
    assert_eq!(fetch(&skip).await.unwrap(), Fetched::AlreadyHasData);

    // Marked with no donor answering: the copy fails, the data is gone, and the mark stays so
    // the next attempt copies again (member 0 must not start as a new, empty cluster).
    request_reseed(&own_url, TOKEN, None, None).await.unwrap();
    std::fs::write(target.join("errant-leftover"), b"x").unwrap();
    let only_dead = FetchArgs {
        from: vec!["http://127.0.0.1:1".into()],
        ..skip.clone()
    };
    let err = fetch(&only_dead).await.unwrap_err();
    assert!(matches!(err, FetchError::NoDonor(_)), "{err}");
    assert!(target.join(RESEED_MARKER).exists());
    assert!(!target.join("errant-leftover").exists());
    assert!(!target.join("seedtest").exists());

    // Marked with the operator's donor: it is used first, before any of --from.
    let donor = Url::parse(&url).unwrap();
    request_reseed(&own_url, TOKEN, Some(&donor), None)
        .await
        .unwrap();
    let reseeded = fetch(&only_dead).await.unwrap();
    let Fetched::Copied { donor: used, .. } = &reseeded else {
        panic!("nothing copied: {reseeded:?}");
    };
    assert_eq!(used, &url);
    assert!(!target.join(RESEED_MARKER).exists());
    assert!(target.join("seedtest/blobs.ibd").exists());

    // With a published topology, its members are the donors and --from is not used: a
    // member that is not published (a quarantined one, say) is never copied from.
    let donor_port = donor.port;
    let topology = |host: &str| {
        let path = dir.path().join(format!("topology-{host}.json"));
        let json = serde_json::json!({
            "cluster": "c", "flavor": "mariadb", "epoch": 3, "state": "ready",
            "primary": {"name": "c-0", "host": "127.0.0.2", "port": 3306},
            "replicas": [{"name": "c-1", "host": host, "port": 3306}],
        });
        std::fs::write(&path, json.to_string()).unwrap();
        path
    };
    let published = FetchArgs {
        topology: Some(topology("127.0.0.1")),
        agent_port: donor_port,
        ..only_dead.clone()
    };
    request_reseed(&own_url, TOKEN, None, None).await.unwrap();
    let copied = fetch(&published).await.unwrap();
    let Fetched::Copied { donor: used, .. } = &copied else {
        panic!("nothing copied: {copied:?}");
    };
    assert_eq!(used, &format!("http://127.0.0.1:{donor_port}"));
    let unpublished = FetchArgs {
        topology: Some(topology("127.0.0.3")),
        from: vec![url.clone()],
        ..published.clone()
    };
    request_reseed(&own_url, TOKEN, None, None).await.unwrap();
    let err = fetch(&unpublished).await.unwrap_err();
    assert!(matches!(err, FetchError::NoDonor(_)), "{err}");
    assert!(target.join(RESEED_MARKER).exists());
    // Nor is the donor a mark names, once it is no longer published.
    request_reseed(&own_url, TOKEN, Some(&donor), None)
        .await
        .unwrap();
    let err = fetch(&unpublished).await.unwrap_err();
    assert!(matches!(err, FetchError::NoDonor(_)), "{err}");

    // A mark on what the topology makes the primary (a mark that outlived its request) is
    // refused, and the data kept.
    let copied = fetch(&published).await.unwrap();
    assert!(matches!(copied, Fetched::Copied { .. }), "{copied:?}");
    request_reseed(&own_url, TOKEN, None, None).await.unwrap();
    let path = dir.path().join("topology-primary.json");
    let json = serde_json::json!({
        "cluster": "c", "flavor": "mariadb", "epoch": 4, "state": "ready",
        "primary": {"name": "c-2", "host": "c-2.c-headless.ns.svc", "port": 3306},
        "replicas": [{"name": "c-1", "host": "127.0.0.1", "port": 3306}],
    });
    std::fs::write(&path, json.to_string()).unwrap();
    let on_primary = FetchArgs {
        skip_self: Some("c-2".into()),
        topology: Some(path),
        ..published.clone()
    };
    let err = fetch(&on_primary).await.unwrap_err();
    assert!(matches!(err, FetchError::MarkedPrimary(_)), "{err}");
    assert!(
        target.join("seedtest/blobs.ibd").exists(),
        "the data is kept"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_refuses_a_wrong_token_and_bad_requests() {
    let dir = tempfile::tempdir().unwrap();
    let (_cluster, url) = donor(dir.path()).await;
    let wrong = dir.path().join("wrong-token");
    std::fs::write(&wrong, "not-the-token").unwrap();
    let target = dir.path().join("copy");
    let err = fetch(&fetch_args(vec![url.clone()], &wrong, &target))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("401"), "{err}");
    let left: Vec<_> = std::fs::read_dir(&target)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "written despite the refusal: {left:?}");

    let answer = raw_request(&url, b"GET /backup HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 401 "), "{answer}");
    let answer = raw_request(&url, b"GET /healthz HTTP/1.1\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
    let answer = raw_request(&url, b"GET /etc/passwd HTTP/1.1\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 404 "), "{answer}");
    let answer = raw_request(&url, b"POST /backup HTTP/1.1\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 405 "), "{answer}");
    let answer = raw_request(&url, b"POST /reseed HTTP/1.1\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 401 "), "{answer}");
    let answer = raw_request(&url, b"GET /reseed HTTP/1.1\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 405 "), "{answer}");
    let answer = raw_request(&url, b"DELETE /reseed HTTP/1.1\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 401 "), "{answer}");
    let auth = format!("Authorization: Bearer {TOKEN}");
    let bad_donor = format!("POST /reseed?donor=x/y HTTP/1.1\r\n{auth}\r\n\r\n");
    let answer = raw_request(&url, bad_donor.as_bytes()).await;
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    let answer = raw_request(&url, b"\x16\x03\x01 not http\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    let mut huge = b"GET /backup HTTP/1.1\r\nX: ".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 64 * 1024));
    let answer = raw_request(&url, &huge).await;
    assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
    // The agent still serves after all that.
    let answer = raw_request(&url, b"GET /healthz HTTP/1.1\r\n\r\n").await;
    assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_refuses_a_non_empty_data_directory_before_any_request() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("data");
    std::fs::create_dir_all(&target).unwrap();
    std::fs::write(target.join("ibdata1"), b"precious").unwrap();
    // No donor runs: the refusal comes before any connection.
    let args = fetch_args(
        vec!["http://127.0.0.1:1".into()],
        &dir.path().join("absent-token"),
        &target,
    );
    let err = fetch(&args).await.unwrap_err();
    assert!(matches!(err, FetchError::NotEmpty(_)), "{err}");
    assert_eq!(std::fs::read(target.join("ibdata1")).unwrap(), b"precious");
}

/// The entries of `dir` (none when it does not exist).
fn left_in(dir: &Path) -> Vec<std::ffi::OsString> {
    std::fs::read_dir(dir)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_over_tls_serves_only_clients_that_verify_it() {
    let dir = tempfile::tempdir().unwrap();
    let certs = TlsFiles::new(dir.path().join("tls"));
    let names = lagless_operator::tls::local_names();
    certs.ensure("test", &names, SystemTime::now()).unwrap();
    let other = TlsFiles::new(dir.path().join("other-ca"));
    other.ensure("other", &names, SystemTime::now()).unwrap();
    let (cluster, url) = donor_with(dir.path(), Some((certs.cert(), certs.key()))).await;
    let donor_pos = cluster.primary().positions().await.unwrap().gtid_binlog_pos;
    let token = dir.path().join("token");
    let host_port = url.trim_start_matches("http://").to_string();

    // A plain client is refused by the handshake, at once rather than at a timeout.
    let target = dir.path().join("plain");
    let started = Instant::now();
    let err = fetch(&fetch_args(vec![url.clone()], &token, &target))
        .await
        .unwrap_err();
    assert!(matches!(err, FetchError::NoDonor(_)), "{err}");
    assert!(err.to_string().contains("answered with TLS"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(10), "{err}");
    assert!(left_in(&target).is_empty(), "{:?}", left_in(&target));
    let started = Instant::now();
    let answer = raw_request(&url, b"GET /healthz HTTP/1.1\r\n\r\n").await;
    assert!(!answer.contains("HTTP/1.1"), "{answer}");
    assert!(started.elapsed() < Duration::from_secs(10));

    // A client with another CA does not trust the agent: nothing is copied.
    let target = dir.path().join("other");
    let with_other = FetchArgs {
        tls_ca: Some(other.ca()),
        ..fetch_args(vec![url.clone()], &token, &target)
    };
    let err = fetch(&with_other).await.unwrap_err();
    assert!(matches!(err, FetchError::NoDonor(_)), "{err}");
    let message = err.to_string();
    assert!(
        message.contains(&format!("TLS handshake with {host_port} failed")),
        "{message}"
    );
    assert!(message.contains("certificate"), "{message}");
    assert!(left_in(&target).is_empty(), "{:?}", left_in(&target));

    // A CA file that holds no certificate is an error before any connection.
    let not_a_ca = dir.path().join("not-a-ca.crt");
    std::fs::write(&not_a_ca, "nothing here\n").unwrap();
    let err = fetch(&FetchArgs {
        tls_ca: Some(not_a_ca),
        ..with_other.clone()
    })
    .await
    .unwrap_err();
    assert!(matches!(err, FetchError::Tls(_)), "{err}");

    // With the agent's CA: the same prepared copy as over plain HTTP.
    let target = dir.path().join("copy");
    let args = FetchArgs {
        tls_ca: Some(certs.ca()),
        ..fetch_args(vec![url.clone()], &token, &target)
    };
    let fetched = fetch(&args).await.unwrap();
    let Fetched::Copied {
        donor,
        bytes,
        elapsed,
        gtid_position,
    } = fetched
    else {
        panic!("nothing copied: {fetched:?}");
    };
    assert_eq!(donor, url);
    eprintln!(
        "agent stream over TLS: {:.1} MiB in {:.2} s (prepare included)",
        bytes as f64 / 1_048_576.0,
        elapsed.as_secs_f64()
    );
    assert!(bytes > 4 * 1_048_576, "{bytes} bytes");
    assert_eq!(gtid_position, donor_pos);
    let written = std::fs::read_to_string(target.join(POSITION_FILE)).unwrap();
    assert_eq!(written.trim(), donor_pos);
    let table = std::fs::metadata(target.join("seedtest/blobs.ibd")).unwrap();
    assert!(table.len() > 4 * 1_048_576, "{}", table.len());
    assert!(target.join("mysql").is_dir());
    assert!(!target.join(RESEED_MARKER).exists());

    // The operator's calls, with the CA as the PEM it reads from a Secret.
    let own = Server::bind(ServeArgs {
        listen: "127.0.0.1:0".parse().unwrap(),
        datadir: target.clone(),
        mysql_port: 1,
        token_file: token.clone(),
        scratch_dir: Some(dir.path().to_path_buf()),
        admin_user: ADMIN_USER.into(),
        admin_password: ADMIN_PASSWORD.into(),
        tls_ca: None,
        tls_cert: Some(certs.cert()),
        tls_key: Some(certs.key()),
    })
    .await
    .unwrap();
    let own_url = Url::parse(&format!("http://{}", own.local_addr().unwrap())).unwrap();
    tokio::spawn(own.run());
    let ca = AgentTls::from_ca_pem(&std::fs::read(certs.ca()).unwrap()).unwrap();
    let wrong_ca = AgentTls::from_ca_file(&other.ca()).unwrap();
    let err = request_reseed(&own_url, TOKEN, None, None)
        .await
        .unwrap_err();
    assert!(err.contains("answered with TLS"), "{err}");
    let err = request_reseed(&own_url, TOKEN, None, Some(&wrong_ca))
        .await
        .unwrap_err();
    assert!(err.contains("TLS handshake with 127.0.0.1:"), "{err}");
    assert!(!target.join(RESEED_MARKER).exists());
    request_reseed(&own_url, TOKEN, None, Some(&ca))
        .await
        .unwrap();
    assert!(target.join(RESEED_MARKER).exists());
    cancel_reseed(&own_url, TOKEN, Some(&ca)).await.unwrap();
    assert!(!target.join(RESEED_MARKER).exists());
}
