//! End to end: `lagless-operator local` driven as a user drives it, the binary and nothing
//! else — real mariadbd processes, real proxies, a client workload through the proxy.

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use serde_json::Value;

pub(crate) fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_lagless-operator"))
}

/// `count` consecutive free loopback ports in `from..from + 5000`: each call (tests run in
/// parallel threads) and each process starts from a different block. The callers' ranges stay
/// below the test kit's (20000..32000) and Linux's ephemeral ports (32768+), so neither the
/// kit's servers nor outgoing client sockets take them between the check and the bind.
fn free_ports(from: u16, count: u16) -> u16 {
    static CALLS: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
    let call = CALLS.fetch_add(1, Ordering::Relaxed) % 8;
    let process = u16::try_from(std::process::id() % 50).unwrap_or(0);
    let mut base = from + (process * 8 + call) * 10;
    loop {
        let all_free =
            (0..count).all(|i| TcpListener::bind((Ipv4Addr::LOCALHOST, base + i)).is_ok());
        if all_free {
            return base;
        }
        base += 80;
        assert!(base + count < from + 5000, "no free port range");
    }
}

/// Runs `lagless-operator local --state-dir STATE ARGS`.
pub(crate) fn run_local(state: &Path, args: &[&str]) -> Output {
    bin()
        .arg("local")
        .arg("--state-dir")
        .arg(state)
        .args(args)
        .output()
        .expect("run lagless-operator")
}

/// Runs a `local` command on `state` that must succeed (else the operator's log is shown);
/// returns its standard output.
pub(crate) fn ok_local(state: &Path, args: &[&str]) -> String {
    let out = run_local(state, args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "`local {}` failed ({}):\n{stdout}\n{}\n--- operator.log ---\n{}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr),
        std::fs::read_to_string(state.join("operator.log")).unwrap_or_default()
    );
    stdout
}

/// One local cluster in a temporary state directory; `down` on drop, so a failing test
/// leaves no process behind.
pub(crate) struct Local {
    dir: tempfile::TempDir,
    pub(crate) base_port: u16,
    pub(crate) proxy_port: u16,
}

impl Local {
    pub(crate) fn new() -> Self {
        // Members (up to 9) and proxies come from ranges that cannot overlap.
        Self {
            dir: tempfile::tempdir().expect("temp dir"),
            base_port: free_ports(8000, 9),
            proxy_port: free_ports(14000, 2),
        }
    }

    pub(crate) fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub(crate) fn run(&self, args: &[&str]) -> Output {
        run_local(&self.state(), args)
    }

    /// Runs a command that must succeed; returns its standard output.
    pub(crate) fn ok(&self, args: &[&str]) -> String {
        ok_local(&self.state(), args)
    }

    pub(crate) fn up(&self, manifest: &Path) -> String {
        self.ok(&[
            "up",
            "-f",
            manifest.to_str().expect("utf-8 path"),
            "--detach",
            "--base-port",
            &self.base_port.to_string(),
            "--proxy-port",
            &self.proxy_port.to_string(),
        ])
    }

    pub(crate) fn status(&self) -> Value {
        let text = self.ok(&["status", "--output", "json"]);
        serde_json::from_str(&text).expect("status is JSON")
    }

    /// The status once it shows the cluster running with a PID for every member and proxy:
    /// `status.json` is rewritten every 500 ms, so a read right after a change may predate it.
    pub(crate) fn running_status(&self) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let status = self.status();
            let all_have_pids = ["members", "proxies"].iter().all(|list| {
                status[*list].as_array().is_some_and(|items| {
                    !items.is_empty() && items.iter().all(|i| i["pid"].is_u64())
                })
            });
            if status["phase"] == "running" && all_have_pids {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "not running with every PID: {status}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Connection options for the application account through the cluster's proxy.
    pub(crate) fn app_opts(&self) -> mysql_async::Opts {
        let creds = self.credentials();
        opts(
            self.proxy_port,
            creds["app_user"].as_str().unwrap(),
            creds["app_password"].as_str().unwrap(),
        )
    }

    pub(crate) fn credentials(&self) -> Value {
        let text = std::fs::read_to_string(self.state().join("credentials.json")).expect("creds");
        serde_json::from_str(&text).expect("credentials are JSON")
    }

    pub(crate) fn manifest(&self, name: &str, body: &str) -> PathBuf {
        let path = self.dir.path().join(format!("{name}.yaml"));
        std::fs::write(&path, body).expect("write manifest");
        path
    }

    /// Every PID the status lists: supervisor, members, proxies.
    pub(crate) fn pids(status: &Value) -> Vec<u32> {
        let mut pids = vec![status["supervisor_pid"].as_u64().unwrap_or(0) as u32];
        for list in ["members", "proxies"] {
            for item in status[list].as_array().into_iter().flatten() {
                if let Some(pid) = item["pid"].as_u64() {
                    pids.push(pid as u32);
                }
            }
        }
        pids
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        if std::env::var_os("LAGLESS_E2E_KEEP").is_some() {
            eprintln!("kept: {}", self.dir.path().display());
            let _ = std::mem::replace(&mut self.dir, tempfile::tempdir().expect("temp dir")).keep();
            return;
        }
        let _ = self.run(&["down"]);
    }
}

pub(crate) fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

pub(crate) fn primary(status: &Value) -> String {
    status["primary"].as_str().unwrap_or_default().to_string()
}

pub(crate) fn member_port(status: &Value, name: &str) -> u16 {
    status["members"]
        .as_array()
        .and_then(|ms| ms.iter().find(|m| m["name"] == name))
        .and_then(|m| m["port"].as_u64())
        .unwrap_or(0) as u16
}

/// The events a `status --output json` lists, oldest first.
pub(crate) fn events(status: &Value) -> Vec<String> {
    status["events"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["message"].as_str().map(str::to_string))
        .collect()
}

pub(crate) fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let began = Instant::now();
    while !done() {
        assert!(began.elapsed() < timeout, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub(crate) fn opts(port: u16, user: &str, password: &str) -> mysql_async::Opts {
    mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(port)
        .user(Some(user))
        .pass(Some(password))
        .db_name(Some("app"))
        .prefer_socket(false)
        .into()
}

/// Writes through the proxy and, on another connection, reads back the newest acknowledged
/// row: under `strict` a read must see every write acknowledged before it started.
struct Workload {
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicU64>,
    reads: Arc<AtomicU64>,
    stale: Arc<AtomicU64>,
    write_errors: Arc<AtomicU64>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Workload {
    fn start(rt: &tokio::runtime::Runtime, o: mysql_async::Opts) -> Self {
        let w = Self {
            stop: Arc::default(),
            acked: Arc::default(),
            reads: Arc::default(),
            stale: Arc::default(),
            write_errors: Arc::default(),
            tasks: Vec::new(),
        };
        let (stop, acked, errors, opts) = (
            w.stop.clone(),
            w.acked.clone(),
            w.write_errors.clone(),
            o.clone(),
        );
        let writer = rt.spawn(async move {
            let mut conn: Option<mysql_async::Conn> = None;
            while !stop.load(Ordering::Relaxed) {
                if conn.is_none() {
                    conn = mysql_async::Conn::new(opts.clone()).await.ok();
                }
                let Some(c) = conn.as_mut() else {
                    errors.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                match c.query_drop("INSERT INTO e2e (v) VALUES ('x')").await {
                    Ok(()) => {
                        acked.fetch_max(c.last_insert_id().unwrap_or(0), Ordering::SeqCst);
                    }
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        conn = None;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
        });
        let (stop, acked, reads, stale) = (
            w.stop.clone(),
            w.acked.clone(),
            w.reads.clone(),
            w.stale.clone(),
        );
        let reader = rt.spawn(async move {
            let mut conn: Option<mysql_async::Conn> = None;
            while !stop.load(Ordering::Relaxed) {
                if conn.is_none() {
                    conn = mysql_async::Conn::new(o.clone()).await.ok();
                }
                let Some(c) = conn.as_mut() else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                let before = acked.load(Ordering::SeqCst);
                match c
                    .query_first::<Option<u64>, _>("SELECT MAX(id) FROM e2e")
                    .await
                {
                    Ok(seen) => {
                        reads.fetch_add(1, Ordering::Relaxed);
                        if seen.flatten().unwrap_or(0) < before {
                            stale.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Err(_) => {
                        conn = None;
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                }
            }
        });
        Self {
            tasks: vec![writer, reader],
            ..w
        }
    }

    /// Waits until `more` writes beyond the current ones are acknowledged.
    fn wait_for_writes(&self, more: u64, timeout: Duration) {
        let target = self.acked.load(Ordering::SeqCst) + more;
        wait_until("writes through the proxy", timeout, || {
            self.acked.load(Ordering::SeqCst) >= target
        });
    }

    fn stop(self, rt: &tokio::runtime::Runtime) -> (u64, u64, u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            let _ = rt.block_on(t);
        }
        (
            self.acked.load(Ordering::SeqCst),
            self.reads.load(Ordering::Relaxed),
            self.stale.load(Ordering::Relaxed),
            self.write_errors.load(Ordering::Relaxed),
        )
    }
}

const CLUSTER: &str = "\
apiVersion: lagless.dev/v1alpha1
kind: MySQLCluster
metadata:
  name: e2e
spec:
  replicas: 3
  replication:
    semiSync: true
  proxy:
    replicas: 1
    defaultConsistency: strict
";

#[test]
fn up_failover_scale_switchover_down_without_a_stale_read() {
    let local = Local::new();
    let manifest = local.manifest("e2e", CLUSTER);
    let began = Instant::now();
    let banner = local.up(&manifest);
    let up_in = began.elapsed();
    let connect = format!("mariadb -h127.0.0.1 -P{} -uapp -p", local.proxy_port);
    assert!(
        banner.contains(&connect),
        "the banner says how to connect:\n{banner}"
    );

    // A second `up` on a running cluster says so and changes nothing.
    let again = local.run(&["up", "-f", manifest.to_str().unwrap(), "--detach"]);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already running"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );

    let status = local.status();
    assert_eq!(status["phase"], "running");
    let first_primary = primary(&status);
    let roles: Vec<&str> = status["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(
        roles.iter().filter(|r| **r == "primary").count(),
        1,
        "{roles:?}"
    );
    assert_eq!(
        roles.iter().filter(|r| **r == "replica").count(),
        2,
        "{roles:?}"
    );

    let app = local.app_opts();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut c = mysql_async::Conn::new(app.clone()).await.unwrap();
        c.query_drop("CREATE TABLE e2e (id BIGINT AUTO_INCREMENT PRIMARY KEY, v VARCHAR(10))")
            .await
            .unwrap();
    });
    let work = Workload::start(&rt, app.clone());
    work.wait_for_writes(200, Duration::from_secs(30));

    // Crash the primary: a replica takes over and writes go on.
    let killed_at = Instant::now();
    local.ok(&["kill", &first_primary]);
    // Counted once the server is dead; two new acknowledgements, since the first could be a
    // write the old primary committed just before it died.
    let after_kill = work.acked.load(Ordering::SeqCst);
    wait_until("writes after the kill", Duration::from_secs(30), || {
        work.acked.load(Ordering::SeqCst) >= after_kill + 2
    });
    let failover = killed_at.elapsed();
    wait_until("a new primary", Duration::from_secs(30), || {
        let p = primary(&local.status());
        !p.is_empty() && p != first_primary
    });
    work.wait_for_writes(50, Duration::from_secs(30));
    let second_primary = primary(&local.status());

    // The crashed primary may hold a transaction nobody acknowledged (semi-sync commits to
    // its binary log before the replica's ack), which quarantines it when it returns;
    // re-seeding brings it back either way.
    let reseeded = local.ok(&["reseed", &first_primary]);
    assert!(reseeded.contains("re-seeded and replicating"), "{reseeded}");
    let status = local.status();
    let old = status["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == first_primary.as_str())
        .cloned()
        .unwrap();
    assert_eq!(old["role"], "replica", "{status}");

    // Grow by one member: it is seeded from a replica while the writes go on.
    let scaled = local.ok(&["scale", "4"]);
    assert!(scaled.contains("4 members"), "{scaled}");
    let status = local.status();
    let new_member = "e2e-3";
    let new = status["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == new_member)
        .cloned()
        .unwrap_or_else(|| panic!("{new_member} in {status}"));
    assert_eq!(new["role"], "replica", "{status}");
    // In the operator's log: the status keeps only the latest events, which a slow machine's
    // warnings may have pushed this one out of.
    let log = std::fs::read_to_string(local.state().join("operator.log")).unwrap_or_default();
    assert!(
        log.contains(&format!("{new_member} seeded from")),
        "{}",
        status["events"]
    );

    // A planned switchover to the new member, under the same load.
    let switched = local.ok(&["switchover", "--to", new_member]);
    assert!(
        switched.contains(&format!("{new_member} is the primary")),
        "{switched}"
    );
    work.wait_for_writes(50, Duration::from_secs(30));
    let (acked, reads, stale, write_errors) = work.stop(&rt);
    assert!(reads > 100, "the reader ran ({reads} reads)");
    assert_eq!(stale, 0, "stale reads under strict ({reads} reads)");

    // Every acknowledged write is on every member, and the tables match.
    let status = local.status();
    assert_eq!(primary(&status), new_member);
    let creds = local.credentials();
    let admin_user = creds["admin_user"].as_str().unwrap();
    let admin_password = creds["admin_password"].as_str().unwrap();
    let names: Vec<String> = status["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names.len(), 4);
    let mut checksums = Vec::new();
    rt.block_on(async {
        let mut p = mysql_async::Conn::new(opts(
            member_port(&status, new_member),
            admin_user,
            admin_password,
        ))
        .await
        .unwrap();
        let head: String = p
            .query_first("SELECT @@gtid_binlog_pos")
            .await
            .unwrap()
            .unwrap();
        for name in &names {
            let port = member_port(&status, name);
            let mut c = mysql_async::Conn::new(opts(port, admin_user, admin_password))
                .await
                .unwrap();
            // MASTER_GTID_WAIT follows what replication applied: ask the replicas only.
            if name != new_member {
                let applied: Option<i64> = c
                    .query_first(format!("SELECT MASTER_GTID_WAIT('{head}', 30)"))
                    .await
                    .unwrap();
                assert_eq!(applied, Some(0), "{name} caught up with {head}");
            }
            let missing: Option<u64> = c
                .query_first(format!(
                    "SELECT {acked} - COUNT(*) FROM app.e2e WHERE id <= {acked}"
                ))
                .await
                .unwrap();
            let (_, sum): (String, Option<i64>) = c
                .query_first("CHECKSUM TABLE app.e2e")
                .await
                .unwrap()
                .unwrap();
            checksums.push((name.clone(), sum, missing));
        }
    });
    for (name, _, missing) in &checksums {
        assert_eq!(
            *missing,
            Some(0),
            "{name} lacks acknowledged writes: {checksums:?}"
        );
    }
    assert!(
        checksums.windows(2).all(|w| w[0].1 == w[1].1),
        "tables differ: {checksums:?}"
    );

    let pids = Local::pids(&status);
    let down = local.ok(&["down"]);
    assert!(down.contains("stopped"), "{down}");
    let left: Vec<u32> = pids.iter().copied().filter(|p| alive(*p)).collect();
    assert!(left.is_empty(), "processes left after down: {left:?}");
    let stopped = local.status();
    assert_eq!(stopped["phase"], "stopped");
    println!(
        "up {:.1} s; failover (kill -9 of {first_primary} -> {second_primary}, writes accepted again) {:.2} s; \
         {acked} writes ({write_errors} failed and retried), {reads} strict reads, 0 stale",
        up_in.as_secs_f64(),
        failover.as_secs_f64()
    );
}

#[test]
fn bad_input_gets_a_clear_error() {
    let local = Local::new();
    let expect_error = |args: &[&str], code: i32, needle: &str| {
        let out = local.run(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(code),
            "`{}`: {stderr}",
            args.join(" ")
        );
        assert!(
            stderr.contains(needle),
            "`{}` should say {needle:?}: {stderr}",
            args.join(" ")
        );
    };
    let broken = local.manifest("broken", "apiVersion: lagless.dev/v1alpha1\nkind: [oops\n");
    expect_error(&["up", "-f", broken.to_str().unwrap()], 2, "broken.yaml");
    let typo = local.manifest(
        "typo",
        &CLUSTER.replace("defaultConsistency", "defaultConsistancy"),
    );
    expect_error(
        &["up", "-f", typo.to_str().unwrap()],
        2,
        "spec.proxy.defaultConsistancy: unknown field",
    );
    let invalid = local.manifest("invalid", &CLUSTER.replace("replicas: 3", "replicas: 0"));
    expect_error(&["up", "-f", invalid.to_str().unwrap()], 2, "spec.replicas");
    let wrong_type = local.manifest("wrong", &CLUSTER.replace("replicas: 3", "replicas: many"));
    expect_error(
        &["up", "-f", wrong_type.to_str().unwrap()],
        2,
        "spec.replicas: invalid type",
    );
    let missing = local.dir.path().join("absent.yaml");
    expect_error(&["up", "-f", missing.to_str().unwrap()], 1, "absent.yaml");

    // A port in use is reported with what to do, before anything starts.
    let held = TcpListener::bind((Ipv4Addr::LOCALHOST, local.base_port + 1)).unwrap();
    let good = local.manifest("good", CLUSTER);
    expect_error(
        &[
            "up",
            "-f",
            good.to_str().unwrap(),
            "--base-port",
            &local.base_port.to_string(),
            "--proxy-port",
            &local.proxy_port.to_string(),
        ],
        1,
        &format!("port {} (for e2e-1) is in use", local.base_port + 1),
    );
    drop(held);
    assert!(
        !local.state().join("supervisor.pid").exists(),
        "nothing started after a refused up"
    );

    // Proxy ports inside the members' range are refused before anything starts.
    expect_error(
        &[
            "up",
            "-f",
            good.to_str().unwrap(),
            "--base-port",
            &local.base_port.to_string(),
            "--proxy-port",
            &(local.base_port + 2).to_string(),
        ],
        2,
        "overlap",
    );

    // Commands on a cluster that is not running say so.
    expect_error(&["switchover"], 1, "not running");
    expect_error(&["kill", "e2e-0"], 1, "not running");
    let out = bin()
        .args(["local", "--state-dir"])
        .arg(local.dir.path().join("nothing-here"))
        .arg("status")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no local cluster"));
}

/// The foreground `up` (what scripts/demo.sh runs): progress, the banner, then Ctrl-C stops
/// everything and keeps the data; `up` again restarts the same cluster on its data.
#[test]
fn foreground_up_stops_on_ctrl_c_and_restarts_on_its_data() {
    use std::io::{BufRead, BufReader};
    let local = Local::new();
    let manifest = local.manifest(
        "fg",
        &CLUSTER
            .replace("name: e2e", "name: fg")
            .replace("replicas: 3", "replicas: 2")
            .replace("semiSync: true", "semiSync: false"),
    );
    let start = |extra: &[&str]| {
        let mut cmd = bin();
        cmd.arg("local")
            .arg("--state-dir")
            .arg(local.state())
            .arg("up")
            .args(extra)
            .args([
                "--base-port",
                &local.base_port.to_string(),
                "--proxy-port",
                &local.proxy_port.to_string(),
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        cmd.spawn().expect("start lagless-operator")
    };
    let mut child = start(&["-f", manifest.to_str().unwrap()]);
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        seen.push(line.clone());
        if line.starts_with("State directory:") {
            break;
        }
    }
    let text = seen.join("\n");
    if !text.contains("State directory:") {
        // It stopped before the banner: say why.
        let out = child.wait_with_output().unwrap();
        panic!(
            "`local up` ended early ({}):\n{text}\n{}\n--- operator.log ---\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            std::fs::read_to_string(local.state().join("operator.log")).unwrap_or_default()
        );
    }
    assert!(
        text.contains("starting 2 mariadbd servers ..."),
        "progress is shown:\n{text}"
    );
    assert!(text.contains("Lagless cluster \"fg\" is running"), "{text}");
    // The commands it suggests reach this cluster's state directory.
    let suggested = format!(
        "lagless-operator local --state-dir {} status",
        local.state().display()
    );
    assert!(text.contains(&suggested), "{text}");
    let status = local.running_status();
    let pids = Local::pids(&status);
    let table = local.ok(&["status"]);
    assert!(
        table.contains("fg-0") && table.contains("primary"),
        "{table}"
    );
    let log = local.ok(&["logs", "fg-1", "-n", "5"]);
    assert!(!log.trim().is_empty(), "a member's error log is shown");

    // Ctrl-C: everything stops, the data stays.
    let pid = child.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-INT", &pid])
            .status()
            .unwrap()
            .success()
    );
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let exit = child.wait().unwrap();
    assert!(exit.success(), "{exit}: {}", rest.join("\n"));
    assert!(
        rest.join("\n").contains("the data is kept"),
        "{}",
        rest.join("\n")
    );
    let left: Vec<u32> = pids.iter().copied().filter(|p| alive(*p)).collect();
    assert!(left.is_empty(), "processes left after Ctrl-C: {left:?}");
    assert!(local.state().join("members/fg-0/data").is_dir());

    // `up` without a file restarts the same cluster from its state directory.
    let out = local.ok(&["up", "--detach"]);
    assert!(out.contains("is running"), "{out}");
    let again = local.status();
    assert_eq!(again["members"].as_array().map(Vec::len), Some(2));
    assert!(
        again["epoch"].as_u64() >= status["epoch"].as_u64(),
        "{again}"
    );
    local.ok(&["down", "--purge"]);
    assert!(!local.state().exists());
}

/// The reported reproduction (one write, a switchover, a switchover back), then sysbench
/// `oltp_read_write` with 32 threads and server-side prepared statements through the proxy
/// while the primary is switched over three times: not one client error or reconnect, and no
/// second without completed transactions. `bench/soak.sh` is the long version.
#[test]
fn switchovers_back_and_forth_under_sysbench_without_a_client_error() {
    let local = Local::new();
    let manifest = local.manifest("sw", CLUSTER);
    local.up(&manifest);
    let status = local.running_status();
    let first = primary(&status);
    let creds = local.credentials();
    let (user, password) = (
        creds["app_user"].as_str().unwrap().to_string(),
        creds["app_password"].as_str().unwrap().to_string(),
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let app = opts(local.proxy_port, &user, &password);
        let mut c = mysql_async::Conn::new(app).await.unwrap();
        c.query_drop("CREATE TABLE one (i INT PRIMARY KEY); INSERT INTO one VALUES (1)")
            .await
            .unwrap();
    });
    let there = local.ok(&["switchover"]);
    assert!(there.contains("switched in"), "{there}");
    let back = local.ok(&["switchover", "--to", &first]);
    assert!(back.contains("switched in"), "{back}");
    assert_eq!(primary(&local.running_status()), first);

    let sysbench = |args: &[&str]| {
        let mut cmd = Command::new("sysbench");
        cmd.args([
            "oltp_read_write",
            "--db-driver=mysql",
            "--mysql-host=127.0.0.1",
            &format!("--mysql-port={}", local.proxy_port),
            &format!("--mysql-user={user}"),
            &format!("--mysql-password={password}"),
            "--mysql-db=app",
            "--tables=4",
            "--table-size=10000",
        ]);
        cmd.args(args);
        cmd
    };
    let prepared = sysbench(&["prepare"]).output().expect("sysbench installed");
    assert!(
        prepared.status.success(),
        "{}",
        String::from_utf8_lossy(&prepared.stderr)
    );
    let run = sysbench(&[
        "run",
        "--threads=32",
        "--time=20",
        "--report-interval=1",
        "--db-ps-mode=auto",
        "--mysql-ignore-errors=1213,1205",
    ])
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .expect("sysbench run");
    let mut switched = Vec::new();
    for _ in 0..3 {
        std::thread::sleep(Duration::from_secs(5));
        switched.push(local.ok(&["switchover"]).trim().to_string());
    }
    let out = run.wait_with_output().expect("sysbench ends");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report = format!(
        "{switched:#?}\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "sysbench failed:\n{report}");
    let total = |label: &str| -> u64 {
        stdout
            .lines()
            .find_map(|l| l.trim().strip_prefix(label))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no `{label}` in the sysbench report:\n{report}"))
    };
    // sysbench stops at the first error other than the ones it is told to retry: deadlocks
    // and lock wait timeouts, which this workload produces on any server (counted as "ignored
    // errors"). Its success means no client saw any other error.
    assert!(!stdout.contains("FATAL"), "{report}");
    eprintln!("deadlocks retried: {}", total("ignored errors:"));
    assert_eq!(total("reconnects:"), 0, "{report}");
    assert!(total("transactions:") > 100, "{report}");
    // Every one-second report completed transactions: a switchover is a pause, not an outage.
    let idle_seconds: Vec<&str> = stdout
        .lines()
        .filter(|l| l.starts_with('[') && l.contains(" tps: 0.00 "))
        .collect();
    assert!(
        idle_seconds.is_empty(),
        "seconds without a transaction:\n{report}"
    );
    eprintln!("{switched:?}");
}
