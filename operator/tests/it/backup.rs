//! Backups and restores of local clusters, driven through the `lagless-operator` binary:
//! real mariadbd and mariadb-backup, a real directory, and a real S3-compatible server
//! (moto in server mode, started per test on a loopback port, with its IAM checks on so
//! that keys and signatures are verified).

use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use serde_json::Value;

use super::local::{Local, member_port, opts, primary, run_local, wait_until};

pub(crate) fn cluster(name: &str, replicas: u32) -> String {
    format!(
        "apiVersion: lagless.dev/v1alpha1\nkind: MySQLCluster\nmetadata:\n  name: {name}\n\
         spec:\n  replicas: {replicas}\n  proxy:\n    replicas: 1\n"
    )
}

pub(crate) fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The admin account of a local cluster, connected to `port`.
pub(crate) fn admin(local: &Local, port: u16) -> mysql_async::Opts {
    let creds = local.credentials();
    let o = opts(
        port,
        creds["admin_user"].as_str().unwrap(),
        creds["admin_password"].as_str().unwrap(),
    );
    mysql_async::OptsBuilder::from_opts(o)
        .db_name(None::<String>)
        .into()
}

pub(crate) fn sql(rt: &tokio::runtime::Runtime, o: &mysql_async::Opts, statements: &[String]) {
    rt.block_on(async {
        let mut c = mysql_async::Conn::new(o.clone()).await.unwrap();
        for s in statements {
            c.query_drop(s).await.unwrap();
        }
        c.disconnect().await.unwrap();
    });
}

/// Row count and `CHECKSUM TABLE` of `app.t`.
fn table_state(rt: &tokio::runtime::Runtime, o: &mysql_async::Opts) -> (u64, u64) {
    rt.block_on(async {
        let mut c = mysql_async::Conn::new(o.clone()).await.unwrap();
        let count: Option<u64> = c.query_first("SELECT COUNT(*) FROM app.t").await.unwrap();
        let sum: Option<(String, u64)> = c.query_first("CHECKSUM TABLE app.t").await.unwrap();
        c.disconnect().await.unwrap();
        (count.unwrap(), sum.unwrap().1)
    })
}

fn gtid_binlog_pos(rt: &tokio::runtime::Runtime, o: &mysql_async::Opts) -> String {
    rt.block_on(async {
        let mut c = mysql_async::Conn::new(o.clone()).await.unwrap();
        let pos: Option<String> = c.query_first("SELECT @@gtid_binlog_pos").await.unwrap();
        pos.unwrap()
    })
}

/// `rows` rows from `from` on in `app.t` (created on the first call).
fn write_rows(rt: &tokio::runtime::Runtime, o: &mysql_async::Opts, from: u32, rows: u32) {
    let values: Vec<String> = (from..from + rows)
        .map(|i| format!("({i}, REPEAT('r{i}', 20))"))
        .collect();
    sql(
        rt,
        o,
        &[
            "CREATE TABLE IF NOT EXISTS app.t (id INT PRIMARY KEY, v VARCHAR(200))".into(),
            format!("INSERT INTO app.t VALUES {}", values.join(",")),
        ],
    );
}

/// Held from choosing a cluster's ports until it listens on them: the port helper checks
/// that ports are free, and these tests start several clusters at once.
static STARTING: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub(crate) fn starting() -> std::sync::MutexGuard<'static, ()> {
    STARTING.lock().unwrap_or_else(|e| e.into_inner())
}

/// A running cluster of `replicas` members holding 500 rows.
fn source(name: &str, replicas: u32) -> (Local, tokio::runtime::Runtime, mysql_async::Opts) {
    let started = starting();
    let local = Local::new();
    local.up(&local.manifest(name, &cluster(name, replicas)));
    drop(started);
    let status = local.running_status();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let o = admin(&local, member_port(&status, &primary(&status)));
    write_rows(&rt, &o, 0, 500);
    (local, rt, o)
}

fn backups(args: &[&str]) -> Vec<Value> {
    let out = run_local(
        Path::new("/nonexistent"),
        &[&["backups", "--output", "json"], args].concat(),
    );
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Restores into a new cluster of its own state directory and ports; returns it running.
pub(crate) fn restore(name: &str, replicas: u32, args: &[&str]) -> (Local, Output) {
    let _started = starting();
    let target = Local::new();
    let file = target.manifest(name, &cluster(name, replicas));
    let (base, proxy) = (target.base_port.to_string(), target.proxy_port.to_string());
    let mut all = vec![
        "restore",
        "-f",
        file.to_str().unwrap(),
        "--detach",
        "--base-port",
        &base,
        "--proxy-port",
        &proxy,
    ];
    all.extend_from_slice(args);
    let out = target.run(&all);
    (target, out)
}

/// A restore that must be refused: no state directory, so nothing to start.
pub(crate) fn refused_restore(args: &[&str], expect: &str) {
    let (target, out) = restore("never", 1, args);
    assert!(!out.status.success(), "restored:\n{}", text(&out));
    assert!(
        text(&out).contains(expect),
        "expected `{expect}` in:\n{}",
        text(&out)
    );
    assert!(
        !target.state().exists(),
        "a refused restore left {}",
        target.state().display()
    );
}

#[test]
fn directory_backup_restores_exactly_the_rows_at_backup_time() {
    let began = Instant::now();
    let (local, rt, primary_opts) = source("bkdir", 2);
    let at_backup = table_state(&rt, &primary_opts);
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("backups");
    let dest = dest.to_str().unwrap();
    let out = local.ok(&["backup", "--to", dest]);
    assert!(
        out.contains("taken from bkdir-1"),
        "a replica gives it: {out}"
    );
    write_rows(&rt, &primary_opts, 500, 300);
    assert_eq!(table_state(&rt, &primary_opts).0, 800);

    let listed = backups(&["--from", &format!("file://{dest}")]);
    assert_eq!(listed.len(), 1, "{listed:?}");
    let manifest = &listed[0];
    assert_eq!(manifest["cluster"], "bkdir");
    assert_eq!(manifest["member"], "bkdir-1");
    let position = manifest["gtidPosition"].as_str().unwrap().to_string();
    assert!(!position.is_empty());
    assert_eq!(manifest["sha256"].as_str().unwrap().len(), 64);

    let (restored, out) = restore("bkdir2", 2, &["--from", dest]);
    assert!(out.status.success(), "{}", text(&out));
    let status = restored.running_status();
    let p = primary(&status);
    assert_eq!(p, "bkdir2-0", "the restored member leads");
    let new_primary = admin(&restored, member_port(&status, &p));
    assert_eq!(table_state(&rt, &new_primary), at_backup);
    assert!(
        gtid_binlog_pos(&rt, &new_primary).contains(&position),
        "the restored history starts at the backup's position {position}"
    );
    // The second member is seeded from the restored one and holds the same rows.
    let replica = admin(&restored, member_port(&status, "bkdir2-1"));
    wait_until("the seeded replica", Duration::from_secs(30), || {
        rt.block_on(async {
            let Ok(mut c) = mysql_async::Conn::new(replica.clone()).await else {
                return false;
            };
            let n: Result<Option<u64>, _> = c.query_first("SELECT COUNT(*) FROM app.t").await;
            matches!(n, Ok(Some(500)))
        })
    });
    assert_eq!(table_state(&rt, &replica), at_backup);
    // A restore into a directory that holds a cluster is refused.
    let file = restored.manifest("bkdir2", &cluster("bkdir2", 2));
    let again = restored.run(&["restore", "--from", dest, "-f", file.to_str().unwrap()]);
    assert!(
        !again.status.success() && text(&again).contains("is not empty"),
        "{}",
        text(&again)
    );
    eprintln!(
        "directory round trip in {:.1} s",
        began.elapsed().as_secs_f64()
    );
}

/// A moto S3 server on a loopback port with IAM checks on, a bucket `backups` and a key
/// allowed to use it; stopped on drop.
pub(crate) struct S3Server {
    child: Child,
    pub(crate) endpoint: String,
    pub(crate) creds: PathBuf,
    _dir: tempfile::TempDir,
}

impl S3Server {
    pub(crate) fn start() -> Self {
        Self::start_at(Ipv4Addr::LOCALHOST)
    }

    /// On `address` (one of this machine's, such as a test network's bridge).
    pub(crate) fn start_at(address: Ipv4Addr) -> Self {
        // A port the kernel chose as free; moto binds it a moment later.
        let port = TcpListener::bind((address, 0))
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("python3")
            .args([
                "-m",
                "moto.server",
                "-H",
                &address.to_string(),
                "-p",
                &port.to_string(),
            ])
            // The first three requests (the user, its key and policy) go unchecked; every
            // later one is checked against them.
            .env("INITIAL_NO_AUTH_ACTION_COUNT", "3")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect(
                "moto is needed: python3 -m pip install 'moto[server]' (scripts/setup.sh does)",
            );
        let endpoint = format!("http://{address}:{port}");
        let began = Instant::now();
        while TcpStream::connect((address, port)).is_err() {
            assert!(
                began.elapsed() < Duration::from_secs(30),
                "moto did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        let setup = Command::new("python3")
            .args(["-c", SETUP, &endpoint])
            .output()
            .unwrap();
        assert!(setup.status.success(), "{}", text(&setup));
        let dir = tempfile::tempdir().unwrap();
        let creds = dir.path().join("s3.env");
        std::fs::write(&creds, &setup.stdout).unwrap();
        Self {
            child,
            endpoint,
            creds,
            _dir: dir,
        }
    }

    pub(crate) fn args<'a>(&'a self, creds: &'a Path) -> Vec<&'a str> {
        vec![
            "--s3-endpoint",
            &self.endpoint,
            "--s3-credentials",
            creds.to_str().unwrap(),
        ]
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const SETUP: &str = r#"
import json, sys, boto3
ep = sys.argv[1]
kw = dict(endpoint_url=ep, region_name="us-east-1")
iam = boto3.client("iam", aws_access_key_id="setup", aws_secret_access_key="setup", **kw)
iam.create_user(UserName="backup")
key = iam.create_access_key(UserName="backup")["AccessKey"]
iam.put_user_policy(UserName="backup", PolicyName="s3", PolicyDocument=json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
s3 = boto3.client("s3", aws_access_key_id=key["AccessKeyId"],
                  aws_secret_access_key=key["SecretAccessKey"], **kw)
s3.create_bucket(Bucket="backups")
print("AWS_ACCESS_KEY_ID=" + key["AccessKeyId"])
print("AWS_SECRET_ACCESS_KEY=" + key["SecretAccessKey"])
"#;

#[test]
fn s3_backup_restores_the_chosen_backup() {
    let s3 = S3Server::start();
    let (local, rt, primary_opts) = source("bks3", 1);
    let first_state = table_state(&rt, &primary_opts);
    let to = ["backup", "--to", "s3://backups/team/bks3"];
    let out = local.ok(&[&to[..], &s3.args(&s3.creds)].concat());
    assert!(
        out.contains("taken from bks3-0"),
        "the only member gives it: {out}"
    );
    write_rows(&rt, &primary_opts, 500, 100);
    local.ok(&[&to[..], &s3.args(&s3.creds)].concat());

    let from = ["--from", "s3://backups/team/bks3"];
    let listed = backups(&[&from[..], &s3.args(&s3.creds)].concat());
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert!(
        listed[0]["finishedUnixMs"].as_u64() >= listed[1]["finishedUnixMs"].as_u64(),
        "newest first"
    );
    let older = listed[1]["id"].as_str().unwrap().to_string();

    let restore_args = [&from[..], &["--backup", &older], &s3.args(&s3.creds)].concat();
    let (restored, out) = restore("bks3r", 1, &restore_args);
    assert!(out.status.success(), "{}", text(&out));
    let status = restored.running_status();
    let o = admin(&restored, member_port(&status, "bks3r-0"));
    assert_eq!(
        table_state(&rt, &o),
        first_state,
        "the rows of the older backup"
    );

    // Retention: a third backup keeping two deletes the oldest, manifest and object.
    let out = local.ok(&[&to[..], &["--keep", "2"], &s3.args(&s3.creds)].concat());
    assert!(
        out.contains(&format!("deleted older backups: {older}")),
        "{out}"
    );
    let kept = backups(&[&from[..], &s3.args(&s3.creds)].concat());
    assert_eq!(kept.len(), 2, "{kept:?}");
    assert_eq!(kept[1]["id"], listed[0]["id"]);
    let gone = restore("bks3g", 1, &restore_args).1;
    assert!(
        text(&gone).contains(&format!("no backup {older}")),
        "{}",
        text(&gone)
    );
}

#[test]
fn wrong_s3_credentials_are_refused_and_the_good_backup_stays() {
    let s3 = S3Server::start();
    let (local, _rt, _) = source("bkkey", 1);
    let to = ["backup", "--to", "s3://backups/bkkey"];
    local.ok(&[&to[..], &s3.args(&s3.creds)].concat());
    let good = std::fs::read_to_string(&s3.creds).unwrap();
    let wrong_secret = s3._dir.path().join("wrong-secret.env");
    let key_line = good.lines().next().unwrap();
    std::fs::write(
        &wrong_secret,
        format!("{key_line}\nAWS_SECRET_ACCESS_KEY=not-it\n"),
    )
    .unwrap();
    let unknown_key = s3._dir.path().join("unknown-key.env");
    std::fs::write(
        &unknown_key,
        "AWS_ACCESS_KEY_ID=AKIANOBODY\nAWS_SECRET_ACCESS_KEY=x\n",
    )
    .unwrap();
    for (creds, code) in [
        (&wrong_secret, "SignatureDoesNotMatch"),
        (&unknown_key, "InvalidAccessKeyId"),
    ] {
        // A failed backup deletes nothing, whatever it was to keep.
        let out = local.run(&[&to[..], &["--keep", "1"], &s3.args(creds)].concat());
        assert!(!out.status.success(), "{}", text(&out));
        let said = text(&out);
        assert!(
            said.contains("refused the request") && said.contains(code),
            "{said}"
        );
        let from = ["--from", "s3://backups/bkkey"];
        let out = run_local(
            Path::new("/nonexistent"),
            &[&["backups"], &from[..], &s3.args(creds)].concat(),
        );
        assert!(
            !out.status.success() && text(&out).contains(code),
            "{}",
            text(&out)
        );
        refused_restore(&[&from[..], &s3.args(creds)].concat(), code);
    }
    let listed = backups(&[
        "--from",
        "s3://backups/bkkey",
        "--s3-endpoint",
        &s3.endpoint,
        "--s3-credentials",
        s3.creds.to_str().unwrap(),
    ]);
    assert_eq!(listed.len(), 1, "the good backup, and only it: {listed:?}");
}

#[test]
fn unreachable_storage_is_a_clear_error() {
    let closed = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("s3.env");
    std::fs::write(&creds, "AWS_ACCESS_KEY_ID=a\nAWS_SECRET_ACCESS_KEY=b\n").unwrap();
    let endpoint = format!("http://127.0.0.1:{closed}");
    let s3 = [
        "--s3-endpoint",
        &endpoint,
        "--s3-credentials",
        creds.to_str().unwrap(),
    ];
    let from = ["--from", "s3://backups/x"];
    let out = run_local(
        Path::new("/nonexistent"),
        &[&["backups"], &from[..], &s3[..]].concat(),
    );
    assert!(!out.status.success());
    assert!(
        text(&out).contains(&format!("cannot reach {endpoint}")),
        "{}",
        text(&out)
    );
    refused_restore(&[&from[..], &s3[..]].concat(), "cannot reach");
    // A restore that was killed midway leaves a directory `up` refuses to start.
    let interrupted = Local::new();
    std::fs::create_dir_all(interrupted.state()).unwrap();
    std::fs::write(interrupted.state().join("restore.incomplete"), "x").unwrap();
    let file = interrupted.manifest("cut", &cluster("cut", 1));
    let out = interrupted.run(&["up", "-f", file.to_str().unwrap(), "--detach"]);
    assert!(
        !out.status.success() && text(&out).contains("a restore that did not finish"),
        "{}",
        text(&out)
    );
    // A directory that is not there holds no backup to restore.
    let missing = dir.path().join("missing");
    refused_restore(&["--from", missing.to_str().unwrap()], "not found");

    // A backup to storage that cannot be reached fails before the copy, and writes nothing
    // where the good backups are.
    let (local, _rt, _) = source("bknet", 1);
    let good = dir.path().join("good");
    local.ok(&["backup", "--to", good.to_str().unwrap()]);
    let out = local.run(&[&["backup", "--to", "s3://backups/x"], &s3[..]].concat());
    assert!(
        !out.status.success() && text(&out).contains("cannot reach"),
        "{}",
        text(&out)
    );
    let blocked = dir.path().join("a-file");
    std::fs::write(&blocked, "").unwrap();
    let under_a_file = blocked.join("backups");
    let out = local.run(&["backup", "--to", under_a_file.to_str().unwrap()]);
    assert!(!out.status.success(), "{}", text(&out));
    assert_eq!(
        std::fs::read_dir(&good).unwrap().count(),
        2,
        "one object, one manifest"
    );
}

/// A directory with one backup of a one-member cluster, and that backup's object.
fn one_backup(name: &str) -> (tempfile::TempDir, PathBuf, Vec<u8>) {
    let (local, _rt, _) = source(name, 1);
    let dir = tempfile::tempdir().unwrap();
    local.ok(&["backup", "--to", dir.path().to_str().unwrap()]);
    drop(local);
    let object = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.to_string_lossy().ends_with(".xbstream.zst"))
        .unwrap();
    let bytes = std::fs::read(&object).unwrap();
    (dir, object, bytes)
}

#[test]
fn a_corrupt_backup_is_refused_before_anything_starts() {
    let (dir, object, mut bytes) = one_backup("bkbad");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&object, &bytes).unwrap();
    refused_restore(&["--from", dir.path().to_str().unwrap()], "is corrupt");
}

#[test]
fn a_truncated_backup_is_refused_before_anything_starts() {
    let (dir, object, bytes) = one_backup("bkcut");
    std::fs::write(&object, &bytes[..bytes.len() * 2 / 3]).unwrap();
    refused_restore(&["--from", dir.path().to_str().unwrap()], "is truncated");
}

#[test]
fn scheduled_backups_and_drills_run_and_keep_only_what_the_policy_says_with_the_archive_pruned() {
    let dest = tempfile::tempdir().unwrap();
    let dest_text = dest.path().to_str().unwrap().to_string();
    let local = Local::new();
    {
        let _started = starting();
        let yaml = format!(
            "{}  backup:\n    destination: {dest_text}\n    archiveBinlogs: true\n    \
             schedule: \"* * * * *\"\n    keep: 1\n    drillSchedule: \"* * * * *\"\n",
            cluster("bksched", 2)
        );
        local.up(&local.manifest("bksched", &yaml));
    }
    let status = local.running_status();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let o = admin(&local, member_port(&status, &primary(&status)));
    write_rows(&rt, &o, 0, 100);
    // Without --to: the spec's destination. A scheduled backup may run beside it (the
    // schedule is every minute): the manual one is the id the command prints.
    let said = local.ok(&["backup"]);
    let manual = backups(&["--from", &dest_text]);
    let manual_id = manual
        .iter()
        .filter_map(|b| b["id"].as_str())
        .find(|id| said.contains(&format!("backup {id} ")))
        .unwrap_or_else(|| panic!("{said} names none of {manual:?}"))
        .to_string();
    let manual_finished = manual
        .iter()
        .find(|b| b["id"] == manual_id.as_str())
        .and_then(|b| b["finishedUnixMs"].as_u64())
        .unwrap();
    write_rows(&rt, &o, 100, 100);
    let began = Instant::now();
    // A scheduled backup begun after the manual one ended: keep 1 leaves it alone.
    let started_after = |id: &str| {
        backups(&["--from", &dest_text])
            .iter()
            .find(|b| b["id"] == id)
            .and_then(|b| b["startedUnixMs"].as_u64())
            .is_some_and(|at| at > manual_finished)
    };
    wait_until("a scheduled backup", Duration::from_secs(150), || {
        let status = local.status();
        status["backups"]["succeeded"].as_u64() >= Some(1)
            && status["backups"]["lastId"]
                .as_str()
                .is_some_and(|id| id != manual_id && started_after(id))
    });
    let status = local.status();
    let scheduled = status["backups"]["lastId"].as_str().unwrap().to_string();
    assert_ne!(scheduled, manual_id);
    assert!(status["backups"]["nextAt"].is_string(), "{status}");
    // keep: 1: the manual backup is gone, the scheduled one is the only one.
    let listed = backups(&["--from", &dest_text]);
    let ids: Vec<&str> = listed.iter().map(|b| b["id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec![scheduled.as_str()]);
    // The archive before the kept backup is pruned: its first segment is gone, later ones
    // stay.
    let archive = dest.path().join("binlog").join("bksched");
    assert!(!archive.join("0000000001.binlog.json").exists());
    assert!(!archive.join("0000000001.binlog").exists());
    let left = std::fs::read_dir(&archive)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".binlog.json")
        })
        .count();
    assert!(left >= 1, "every segment was pruned");
    // The drill of the same minute passed (on whichever backup was newest then).
    wait_until("a scheduled restore drill", Duration::from_secs(60), || {
        local.status()["drills"]["succeeded"].as_u64() >= Some(1)
    });
    let drills = local.status()["drills"].clone();
    assert_eq!(drills["failed"].as_u64(), Some(0), "{drills}");
    assert!(drills["lastError"].is_null(), "{drills}");
    let table = local.ok(&["status"]);
    assert!(table.contains("backups `* * * * *`"), "{table}");
    assert!(
        table.contains("restore drills `* * * * *`: 1 passed"),
        "{table}"
    );
    assert!(table.contains("binary log archive"), "{table}");
    eprintln!(
        "scheduled backup after {:.0} s",
        began.elapsed().as_secs_f64()
    );
}

/// A tmpfs of `size`, unmounted when dropped (mounting needs root, as CI runs the suite).
struct SmallDisk(tempfile::TempDir);

impl SmallDisk {
    fn mount(size: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "mount (needs root): {}", text(&out));
        Self(dir)
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.0.path()).status();
    }
}

#[test]
fn a_full_disk_fails_the_backup_cleanly_and_the_older_one_stays_whole() {
    let (local, rt, o) = source("bkfull", 1);
    let disk = SmallDisk::mount("2m");
    let dest = disk.0.path().to_str().unwrap().to_string();
    local.ok(&["backup", "--to", &dest, "--keep", "1"]);
    let at_first = table_state(&rt, &o);
    // About 4 MiB after compression: more than the disk has left.
    sql(
        &rt,
        &o,
        &[
            "CREATE TABLE app.big (id INT PRIMARY KEY AUTO_INCREMENT, b TEXT)".into(),
            "INSERT INTO app.big (b) SELECT HEX(RANDOM_BYTES(1024)) FROM app.seq_1_to_4096".into(),
        ],
    );
    let out = local.run(&["backup", "--to", &dest, "--keep", "1"]);
    assert!(!out.status.success(), "a backup fit:\n{}", text(&out));
    assert!(
        text(&out).contains("No space left on device"),
        "{}",
        text(&out)
    );
    // Nothing of the failed backup is left, and --keep deleted nothing.
    let listed = backups(&["--from", &dest]);
    assert_eq!(listed.len(), 1, "{listed:?}");
    let mut names: Vec<String> = std::fs::read_dir(&dest)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
        .collect();
    names.sort();
    let id = listed[0]["id"].as_str().unwrap();
    assert_eq!(
        names,
        vec![format!("{id}.json"), format!("{id}.xbstream.zst")]
    );
    let (restored, out) = restore("bkfullr", 1, &["--from", &dest]);
    assert!(out.status.success(), "{}", text(&out));
    let status = restored.running_status();
    let r = admin(&restored, member_port(&status, &primary(&status)));
    assert_eq!(table_state(&rt, &r), at_first);
}
