//! `spec.tls` end to end on the local runtime: every connection encrypted and verified, and
//! certificates renewed (and the CA replaced) without restarting a server or a proxy.

use std::time::{Duration, Instant};

use lagless_operator::tls::files::TlsFiles;
use mysql_async::prelude::Queryable;
use serde_json::Value;

use crate::local::{Local, member_port, primary, wait_until};

const CLUSTER: &str = "\
apiVersion: lagless.dev/v1alpha1
kind: MySQLCluster
metadata:
  name: sealed
spec:
  replicas: 3
  tls: {}
";

fn tls_opts(port: u16, user: &str, password: &str, ca: &std::path::Path) -> mysql_async::Opts {
    mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(port)
        .user(Some(user))
        .pass(Some(password))
        .prefer_socket(false)
        .ssl_opts(Some(
            mysql_async::SslOpts::default()
                .with_root_certs(vec![ca.to_path_buf().into()])
                .with_disable_built_in_roots(true),
        ))
        .into()
}

fn plain_opts(port: u16, user: &str, password: &str) -> mysql_async::Opts {
    mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(port)
        .user(Some(user))
        .pass(Some(password))
        .prefer_socket(false)
        .into()
}

fn cred(creds: &Value, key: &str) -> String {
    creds[key].as_str().unwrap_or_default().to_string()
}

/// The first row `sql` returns, or `None` when the server cannot be reached or answers none.
async fn first_row(opts: mysql_async::Opts, sql: &str) -> Option<mysql_async::Row> {
    let mut conn = mysql_async::Conn::new(opts).await.ok()?;
    let row = conn.query_first(sql).await.ok().flatten();
    let _ = conn.disconnect().await;
    row
}

/// `SHOW GLOBAL STATUS` value `name` of the server at `port`.
async fn status_of(opts: mysql_async::Opts, name: &str) -> Result<String, mysql_async::Error> {
    let mut conn = mysql_async::Conn::new(opts).await?;
    let row: Option<(String, String)> = conn
        .query_first(format!("SHOW GLOBAL STATUS LIKE '{name}'"))
        .await?;
    let _ = conn.disconnect().await;
    Ok(row.map(|(_, v)| v).unwrap_or_default())
}

#[test]
fn every_connection_is_verified_tls_and_certificates_renew_without_restarts() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let local = Local::new();
    let manifest = local.manifest("sealed", CLUSTER);
    let banner = local.up(&manifest);
    let files = TlsFiles::new(local.state().join("tls"));
    let ca = files.ca();
    assert!(
        banner.contains(&format!(
            "--ssl-ca={} --ssl-verify-server-cert",
            ca.display()
        )),
        "the banner shows how to connect over TLS:\n{banner}"
    );
    let status = local.running_status();
    let creds = local.credentials();
    let (app, app_pw) = (cred(&creds, "app_user"), cred(&creds, "app_password"));
    let (admin, admin_pw) = (cred(&creds, "admin_user"), cred(&creds, "admin_password"));
    let members: Vec<(String, u16)> = status["members"]
        .as_array()
        .expect("members")
        .iter()
        .map(|m| {
            let name = m["name"].as_str().unwrap_or_default().to_string();
            let port = member_port(&status, &name);
            (name, port)
        })
        .collect();
    let first_primary = primary(&status);

    rt.block_on(async {
        // Through the proxy, verified against the cluster's CA: writes and reads work, and
        // the proxy's own session is encrypted.
        let mut conn = mysql_async::Conn::new(tls_opts(local.proxy_port, &app, &app_pw, &ca))
            .await
            .expect("TLS client through the proxy");
        conn.query_drop("CREATE TABLE IF NOT EXISTS app.t (id INT PRIMARY KEY)")
            .await
            .expect("create");
        conn.query_drop("INSERT INTO app.t VALUES (1)")
            .await
            .expect("insert");
        let n: Option<u64> = conn
            .query_first("SELECT COUNT(*) FROM app.t")
            .await
            .expect("strict read over TLS");
        assert_eq!(n, Some(1));
        let _ = conn.disconnect().await;

        // A client without TLS is refused by the proxy, with the server's error.
        let refused = mysql_async::Conn::new(plain_opts(local.proxy_port, &app, &app_pw)).await;
        match refused {
            Err(mysql_async::Error::Server(e)) => assert_eq!(e.code, 3159, "{e}"),
            other => panic!("a plain client got {:?}", other.map(|_| ())),
        }
        // A certificate from another CA is not trusted.
        let stranger = tempfile::tempdir().expect("tempdir");
        let other = TlsFiles::new(stranger.path());
        other
            .ensure(
                "sealed",
                &lagless_operator::tls::local_names(),
                std::time::SystemTime::now(),
            )
            .expect("another CA");
        assert!(
            mysql_async::Conn::new(tls_opts(local.proxy_port, &app, &app_pw, &other.ca()))
                .await
                .is_err(),
            "a client trusting another CA must not connect"
        );

        for (name, port) in &members {
            // Members refuse unencrypted TCP, so every connection that works (the proxies'
            // queries, monitor and lookups, the operator's, replication) is encrypted.
            assert!(
                mysql_async::Conn::new(plain_opts(*port, &admin, &admin_pw))
                    .await
                    .is_err(),
                "{name} accepted an unencrypted connection"
            );
            let mut conn = mysql_async::Conn::new(tls_opts(*port, &admin, &admin_pw, &ca))
                .await
                .expect("TLS to a member");
            let secure: Option<String> = conn
                .query_first("SELECT @@require_secure_transport")
                .await
                .expect("read");
            assert_eq!(secure.as_deref(), Some("1"), "{name}");
            if *name != first_primary {
                let row: Option<mysql_async::Row> = conn
                    .query_first("SHOW SLAVE STATUS")
                    .await
                    .expect("slave status");
                let row = row.expect("a replica replicates");
                let get = |col: &str| -> String {
                    row.get_opt::<String, _>(col)
                        .and_then(Result::ok)
                        .unwrap_or_default()
                };
                assert_eq!(get("Master_SSL_Allowed"), "Yes", "{name}");
                assert_eq!(get("Master_SSL_Verify_Server_Cert"), "Yes", "{name}");
                assert_eq!(get("Slave_IO_Running"), "Yes", "{name}");
            }
            let _ = conn.disconnect().await;
        }
    });

    // Renewal: a new certificate from the same CA is served by every member without a
    // restart (the orchestrator has them reload it when the files change).
    let pids = Local::pids(&local.running_status());
    let before: Vec<String> = members
        .iter()
        .map(|(_, port)| {
            rt.block_on(status_of(
                tls_opts(*port, &admin, &admin_pw, &ca),
                "Ssl_server_not_before",
            ))
            .expect("not_before")
        })
        .collect();
    // `not_before` has one-second resolution.
    std::thread::sleep(Duration::from_millis(1100));
    files
        .renew(
            "sealed",
            &lagless_operator::tls::local_names(),
            std::time::SystemTime::now(),
        )
        .expect("renew");
    let renewed = Instant::now();
    wait_until(
        "every member to serve the renewed certificate",
        Duration::from_secs(15),
        || {
            members.iter().zip(&before).all(|((_, port), old)| {
                rt.block_on(status_of(
                    tls_opts(*port, &admin, &admin_pw, &ca),
                    "Ssl_server_not_before",
                ))
                .is_ok_and(|now| !now.is_empty() && &now != old)
            })
        },
    );
    eprintln!(
        "renewed certificate served by every member in {:?}",
        renewed.elapsed()
    );

    // A new CA: once the files change, a client trusting only the new CA reaches the
    // primary and the replicas through the proxy, and the old CA is no longer accepted.
    let old_ca = std::fs::read(&ca).expect("old CA");
    let old_ca_file = local.state().join("old-ca.crt");
    std::fs::write(&old_ca_file, &old_ca).expect("keep the old CA");
    std::fs::remove_file(&ca).expect("remove CA");
    std::fs::remove_file(files.dir.join("ca.key")).expect("remove CA key");
    files
        .ensure(
            "sealed",
            &lagless_operator::tls::local_names(),
            std::time::SystemTime::now(),
        )
        .expect("new CA");
    assert_ne!(std::fs::read(&ca).expect("new CA"), old_ca);
    let replaced = Instant::now();
    wait_until(
        "every member and the proxy to serve the new CA's certificates",
        Duration::from_secs(20),
        || {
            rt.block_on(async {
                for (_, port) in &members {
                    match mysql_async::Conn::new(tls_opts(*port, &admin, &admin_pw, &ca)).await {
                        Ok(conn) => {
                            let _ = conn.disconnect().await;
                        }
                        Err(_) => return false,
                    }
                }
                let Ok(mut conn) =
                    mysql_async::Conn::new(tls_opts(local.proxy_port, &app, &app_pw, &ca)).await
                else {
                    return false;
                };
                // A write (the primary) and a strict read (a replica, or the primary).
                let ok = conn
                    .query_drop("INSERT INTO app.t VALUES (2) ON DUPLICATE KEY UPDATE id = id")
                    .await
                    .is_ok()
                    && conn
                        .query_first::<u64, _>("SELECT COUNT(*) FROM app.t")
                        .await
                        .is_ok_and(|n| n == Some(2));
                let _ = conn.disconnect().await;
                ok
            })
        },
    );
    eprintln!(
        "new CA in effect on every member and proxy in {:?}",
        replaced.elapsed()
    );
    rt.block_on(async {
        assert!(
            mysql_async::Conn::new(tls_opts(local.proxy_port, &app, &app_pw, &old_ca_file))
                .await
                .is_err(),
            "the proxy still serves a certificate of the old CA"
        );
    });
    // Nothing restarted on the way.
    assert_eq!(
        Local::pids(&local.running_status()),
        pids,
        "a process restarted"
    );
    let status = local.running_status();
    assert_eq!(primary(&status), first_primary, "no failover on the way");
    // Replication still runs: each replica reconnects to the primary, verifying it with the
    // new CA, and the write made under the new CA reaches it.
    for (name, port) in members.iter().filter(|(n, _)| *n != first_primary) {
        rt.block_on(async {
            let mut conn = mysql_async::Conn::new(tls_opts(*port, &admin, &admin_pw, &ca))
                .await
                .expect("TLS to a replica with the new CA");
            conn.query_drop("STOP SLAVE IO_THREAD")
                .await
                .expect("stop io");
            conn.query_drop("START SLAVE IO_THREAD")
                .await
                .expect("start io");
            let _ = conn.disconnect().await;
        });
        let opts = tls_opts(*port, &admin, &admin_pw, &ca);
        wait_until(
            &format!("{name} to reconnect"),
            Duration::from_secs(10),
            || {
                let row = rt.block_on(first_row(opts.clone(), "SHOW SLAVE STATUS"));
                row.and_then(|r| r.get_opt::<String, _>("Slave_IO_Running"))
                    .and_then(Result::ok)
                    .is_some_and(|v| v == "Yes")
            },
        );
        wait_until(
            &format!("{name} to apply the write"),
            Duration::from_secs(10),
            || {
                let row = rt.block_on(first_row(opts.clone(), "SELECT COUNT(*) FROM app.t"));
                row.and_then(|r| r.get_opt::<u64, _>(0))
                    .and_then(Result::ok)
                    == Some(2)
            },
        );
    }
}
