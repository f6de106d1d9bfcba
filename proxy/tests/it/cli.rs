//! Real command-line clients through the proxy: the `mariadb` CLI and sysbench.

use std::process::Output;
use std::time::Duration;

use tokio::process::Command;

use crate::support::Harness;

async fn run(cmd: &mut Command) -> Output {
    let fut = cmd.kill_on_drop(true).output();
    tokio::time::timeout(Duration::from_secs(120), fut)
        .await
        .expect("the command did not finish within 120 s")
        .expect("the command could not start (is it installed? run scripts/setup.sh)")
}

async fn mariadb(port: u16, user: &str, password: &str, sql: &str) -> Output {
    run(Command::new("mariadb")
        .args([
            "--no-defaults",
            "-h127.0.0.1",
            "--batch",
            "--local-infile=1",
        ])
        .arg(format!("-P{port}"))
        .arg(format!("-u{user}"))
        .arg(format!("-p{password}"))
        .args(["app", "-e", sql]))
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_cli_output_matches_the_server() {
    let h = Harness::start(1).await;
    let setup = "CREATE TABLE c (id INT PRIMARY KEY, s VARCHAR(20), d DECIMAL(8,3), t DATETIME); \
                 INSERT INTO c VALUES (1, 'a\\tb', 1.5, '2024-01-02 03:04:05'), (2, NULL, -2, NULL);";
    let out = mariadb(h.port(), "app", "app-pass", setup).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let q = "SELECT * FROM c ORDER BY id; SELECT COUNT(*) AS n FROM c; SHOW TABLES; \
             SELECT @@autocommit; SHOW WARNINGS; USE mysql; SELECT DATABASE();";
    let via = mariadb(h.port(), "app", "app-pass", q).await;
    let direct = mariadb(h.cluster.primary().port(), "app", "app-pass", q).await;
    assert!(
        via.status.success(),
        "{}",
        String::from_utf8_lossy(&via.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&via.stdout),
        String::from_utf8_lossy(&direct.stdout)
    );
    assert!(String::from_utf8_lossy(&via.stdout).contains("a\\tb\t1.500\t2024-01-02 03:04:05"));
    // Errors read the same as the server's.
    let via = mariadb(h.port(), "app", "app-pass", "SELECT * FROM nope").await;
    let direct = mariadb(
        h.cluster.primary().port(),
        "app",
        "app-pass",
        "SELECT * FROM nope",
    )
    .await;
    assert!(!via.status.success());
    assert_eq!(
        String::from_utf8_lossy(&via.stderr),
        String::from_utf8_lossy(&direct.stderr)
    );
    let via = mariadb(h.port(), "app", "wrong", "SELECT 1").await;
    let direct = mariadb(h.cluster.primary().port(), "app", "wrong", "SELECT 1").await;
    assert_eq!(
        String::from_utf8_lossy(&via.stderr),
        String::from_utf8_lossy(&direct.stderr)
    );
    assert!(String::from_utf8_lossy(&via.stderr).contains("ERROR 1045 (28000)"));
    // The ed25519 client plugin of the CLI.
    let out = mariadb(h.port(), "app_ed", "ed-pass", "SELECT CURRENT_USER()").await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("app_ed@%"));
    // LOAD DATA LOCAL INFILE from the CLI.
    let file = h.dir.path().join("cli.tsv");
    std::fs::write(&file, "10\tx\t1\t\\N\n11\ty\t2\t\\N\n").unwrap();
    let sql = format!(
        "LOAD DATA LOCAL INFILE '{}' INTO TABLE c; SELECT COUNT(*) FROM c",
        file.display()
    );
    let out = mariadb(h.port(), "app", "app-pass", &sql).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stdout).ends_with("4\n"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// Runs one sysbench workload and returns (transactions, errors, reconnects).
async fn sysbench(
    port: u16,
    workload: &str,
    ps_mode: &str,
    threads: u32,
    extra: &[&str],
) -> (u64, u64, u64) {
    let out = run(Command::new("sysbench")
        .args([
            "--db-driver=mysql",
            "--mysql-host=127.0.0.1",
            "--mysql-user=app",
            "--mysql-password=app-pass",
        ])
        .args([
            "--mysql-db=app",
            "--tables=2",
            "--table-size=2000",
            "--events=0",
            "--time=2",
        ])
        .arg(format!("--mysql-port={port}"))
        .arg(format!("--db-ps-mode={ps_mode}"))
        .arg(format!("--threads={threads}"))
        .args(extra)
        .args([workload, "run"]))
    .await;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "sysbench {workload} failed:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let field = |name: &str| -> u64 {
        text.lines()
            .find(|l| l.trim_start().starts_with(name))
            .and_then(|l| {
                l.split_whitespace()
                    .nth(if name == "ignored errors:" { 2 } else { 1 })
            })
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no `{name}` in sysbench output:\n{text}"))
    };
    (
        field("transactions:"),
        field("ignored errors:"),
        field("reconnects:"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sysbench_workloads_run_without_errors() {
    let h = Harness::start(3).await;
    let prepare = run(Command::new("sysbench")
        .args([
            "--db-driver=mysql",
            "--mysql-host=127.0.0.1",
            "--mysql-user=app",
            "--mysql-password=app-pass",
        ])
        .args(["--mysql-db=app", "--tables=2", "--table-size=2000"])
        .arg(format!("--mysql-port={}", h.port()))
        .args(["oltp_read_write", "prepare"]))
    .await;
    assert!(
        prepare.status.success(),
        "{}",
        String::from_utf8_lossy(&prepare.stderr)
    );
    h.cluster
        .wait_replicated(Duration::from_secs(30))
        .await
        .unwrap();
    for ps_mode in ["auto", "disable"] {
        for (workload, threads, extra) in [
            ("oltp_point_select", 4, &[][..]),
            ("oltp_read_only", 4, &[][..]),
            // Without BEGIN/COMMIT the read-only statements go to the replicas.
            ("oltp_read_only", 4, &["--skip_trx=on"][..]),
            // One writer thread: row-lock deadlocks between writers are the workload's, not ours.
            ("oltp_read_write", 1, &[][..]),
        ] {
            let (tx, errors, reconnects) =
                sysbench(h.port(), workload, ps_mode, threads, extra).await;
            eprintln!("{workload} {extra:?} ps-mode={ps_mode}: {tx} transactions, {errors} errors");
            assert!(tx > 0, "{workload}: no transactions");
            assert_eq!(
                (errors, reconnects),
                (0, 0),
                "{workload} {extra:?} ps-mode={ps_mode}"
            );
        }
    }
}

#[test]
fn proxy_binary_help_version_and_bad_flags() {
    let bin = env!("CARGO_BIN_EXE_lagless-proxy");
    let out = std::process::Command::new(bin)
        .arg("--version")
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("lagless-proxy {}", env!("CARGO_PKG_VERSION"))
    );
    let out = std::process::Command::new(bin)
        .arg("--help")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("--topology"));
    // A missing topology file is a clear start-up error, not a panic.
    let out = std::process::Command::new(bin)
        .args([
            "--topology",
            "/nonexistent/topology.json",
            "--users",
            "/nonexistent/users.json",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/topology.json"), "{err}");
    // Flags that do not make sense together are refused before anything starts.
    let out = std::process::Command::new(bin)
        .args(["--topology", "t.json", "--consistency", "sometimes"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown consistency mode"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_cli_with_compression() {
    let h = Harness::start(1).await;
    let out = run(Command::new("mariadb")
        .args([
            "--no-defaults",
            "-h127.0.0.1",
            "--batch",
            "--compress",
            "-uapp",
            "-papp-pass",
            "app",
        ])
        .arg(format!("-P{}", h.port()))
        .args([
            "-e",
            "SELECT REPEAT('ab', 50000) AS r; SHOW STATUS LIKE 'Compression'",
        ]))
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&"ab".repeat(50000)),
        "the result came back whole"
    );
}

/// The proxy's own errors (no backend reachable) must read as errors in Connector/C based
/// clients: an error packet with a client-side code (2003, 2013) is "malformed" to them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_cli_reads_the_proxys_own_errors() {
    let h = Harness::start_with(1, |c| {
        c.write_hold_timeout = std::time::Duration::from_millis(300);
    })
    .await;
    h.cluster.primary().kill9().unwrap();
    let out = mariadb(h.port(), "app", "app-pass", "SELECT 1").await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(!stderr.contains("malformed"), "{stderr}");
    assert!(
        stderr.contains("ERROR 1105 (08S01): Can't connect to MySQL server"),
        "{stderr}"
    );
}
