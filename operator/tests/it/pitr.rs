//! Point-in-time restores of a local cluster whose binary log is archived
//! (`spec.backup.archiveBinlogs`), on real servers: rows written through the proxy with
//! their second, a full backup, a kill -9 of the primary and a failover while writing, then
//! restores to chosen seconds (one just after the failover) and to a GTID position must give
//! exactly the rows committed up to them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use serde_json::Value;

use super::backup::{S3Server, admin, cluster, refused_restore, restore, starting, text};
use super::local::{Local, member_port, primary, wait_until};

/// `id → second` of every row of `app.p`.
fn rows(rt: &tokio::runtime::Runtime, o: &mysql_async::Opts) -> BTreeMap<u64, u64> {
    rt.block_on(async {
        let mut c = mysql_async::Conn::new(o.clone()).await.unwrap();
        let rows: Vec<(u64, u64)> = c.query("SELECT id, ts FROM app.p").await.unwrap();
        c.disconnect().await.unwrap();
        rows.into_iter().collect()
    })
}

fn utc(secs: u64) -> String {
    let out = std::process::Command::new("date")
        .args(["-u", "-d", &format!("@{secs}"), "+%Y-%m-%dT%H:%M:%SZ"])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Writes one row at a time through the proxy until stopped, reconnecting after errors (a
/// row whose insert failed may or may not be there: the source's table is the truth).
fn writer(
    opts: mysql_async::Opts,
    next: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let mut errors = 0;
            let mut conn: Option<mysql_async::Conn> = None;
            while !stop.load(Ordering::SeqCst) {
                if conn.is_none() {
                    conn = mysql_async::Conn::new(opts.clone()).await.ok();
                }
                let id = next.fetch_add(1, Ordering::SeqCst);
                let done = match conn.as_mut() {
                    Some(c) => c
                        .exec_drop(
                            "INSERT INTO app.p (id, ts) VALUES (?, UNIX_TIMESTAMP())",
                            (id,),
                        )
                        .await
                        .is_ok(),
                    None => false,
                };
                if !done {
                    errors += 1;
                    conn = None;
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            errors
        })
    })
}

/// Restores `--to to` into a new one-member cluster; returns its rows and GTID position.
fn restored(dest: &str, to: &str) -> (BTreeMap<u64, u64>, String) {
    restored_with(dest, to, &[])
}

fn restored_with(dest: &str, to: &str, extra: &[&str]) -> (BTreeMap<u64, u64>, String) {
    let (target, out) = restore("pitrr", 1, &[&["--from", dest, "--to", to], extra].concat());
    assert!(out.status.success(), "restore --to {to}:\n{}", text(&out));
    let status = target.running_status();
    let o = admin(&target, member_port(&status, &primary(&status)));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let found = rows(&rt, &o);
    let position: String = rt.block_on(async {
        let mut c = mysql_async::Conn::new(o.clone()).await.unwrap();
        let p: Option<String> = c.query_first("SELECT @@gtid_binlog_pos").await.unwrap();
        p.unwrap()
    });
    target.ok(&["down", "--purge"]);
    (found, position)
}

fn upto(truth: &BTreeMap<u64, u64>, second: u64) -> BTreeMap<u64, u64> {
    truth
        .iter()
        .filter(|(_, ts)| **ts <= second)
        .map(|(id, ts)| (*id, *ts))
        .collect()
}

/// A running cluster `name` of `replicas` members whose spec has `backup` (the YAML under
/// `backup:`), with the table `app.p` the writer fills; the admin account on its primary.
fn archived_cluster(
    name: &str,
    replicas: u32,
    backup: &str,
) -> (Local, tokio::runtime::Runtime, mysql_async::Opts, String) {
    let local = Local::new();
    {
        let _started = starting();
        let yaml = format!("{}  backup:\n{backup}", cluster(name, replicas));
        local.up(&local.manifest(name, &yaml));
    }
    let status = local.running_status();
    let first_primary = primary(&status);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let o = admin(&local, member_port(&status, &first_primary));
    rt.block_on(async {
        let mut c = mysql_async::Conn::new(o.clone()).await.unwrap();
        c.query_drop("CREATE TABLE app.p (id BIGINT PRIMARY KEY, ts BIGINT NOT NULL)")
            .await
            .unwrap();
    });
    (local, rt, o, first_primary)
}

#[test]
fn restores_to_a_second_or_a_gtid_give_exactly_the_rows_committed_up_to_it_across_a_failover() {
    let began = Instant::now();
    let dest = tempfile::tempdir().unwrap();
    let dest_text = dest.path().to_str().unwrap().to_string();
    let (local, rt, o, first_primary) = archived_cluster(
        "pitr",
        3,
        &format!("    destination: {dest_text}\n    archiveBinlogs: true\n"),
    );

    let next = Arc::new(AtomicU64::new(1));
    let stop = Arc::new(AtomicBool::new(false));
    let writing = writer(local.app_opts(), next.clone(), stop.clone());
    std::thread::sleep(Duration::from_millis(1500));
    local.ok(&["backup", "--to", &dest_text]);
    let after_backup = next.load(Ordering::SeqCst);
    // An account statement in the history a restore replays (they need the grant tables).
    rt.block_on(async {
        let mut c = mysql_async::Conn::new(o.clone()).await.unwrap();
        c.query_drop("CREATE USER 'reporting'@'%' IDENTIFIED BY 'r3port'; GRANT SELECT ON app.* TO 'reporting'@'%'")
            .await
            .unwrap();
    });
    std::thread::sleep(Duration::from_millis(2500));
    let at_kill = next.load(Ordering::SeqCst);
    local.ok(&["kill", &first_primary]);
    wait_until("a new primary", Duration::from_secs(60), || {
        let s = local.status();
        s["primary"].as_str().is_some_and(|p| p != first_primary)
    });
    // Writes go on through the proxy on the new primary for a while.
    std::thread::sleep(Duration::from_millis(2500));
    stop.store(true, Ordering::SeqCst);
    let errors = writing.join().unwrap();

    let status = local.running_status();
    let new_primary = primary(&status);
    assert_ne!(new_primary, first_primary);
    let o = admin(&local, member_port(&status, &new_primary));
    let truth = rows(&rt, &o);
    let head: String = rt.block_on(async {
        let mut c = mysql_async::Conn::new(o.clone()).await.unwrap();
        let p: Option<String> = c.query_first("SELECT @@gtid_binlog_pos").await.unwrap();
        p.unwrap()
    });
    // Every transaction of the new primary reaches the archive.
    wait_until(
        "the archive at the primary's position",
        Duration::from_secs(20),
        || local.status()["archive"]["position"].as_str() == Some(head.as_str()),
    );
    let archive: Value = local.status()["archive"].clone();
    assert!(archive["error"].is_null(), "{archive}");
    assert!(archive["segmentsStored"].as_u64().unwrap() > 3, "{archive}");
    let last_second = *truth.values().max().unwrap();
    let after_failover = truth
        .iter()
        .find(|(id, _)| **id > at_kill)
        .map(|(_, ts)| *ts)
        .expect("rows written after the failover");
    let between = truth
        .range((after_backup + at_kill) / 2..)
        .next()
        .map(|(_, ts)| *ts)
        .unwrap();
    assert!(
        truth.len() > 100,
        "{} rows, {errors} write errors",
        truth.len()
    );
    // The archive says how far it reaches every few seconds while idle.
    while now_secs() < last_second + 8 {
        std::thread::sleep(Duration::from_millis(200));
    }

    for second in [between, after_failover, last_second] {
        let (found, _) = restored(&dest_text, &utc(second));
        let expected = upto(&truth, second);
        assert!(!expected.is_empty());
        assert_eq!(
            found.keys().collect::<Vec<_>>(),
            expected.keys().collect::<Vec<_>>(),
            "restored to {} (rows up to id {} of {})",
            utc(second),
            expected.keys().last().unwrap(),
            truth.len()
        );
    }

    // To a GTID position: the one the restore to `between` reached, in the source's domain.
    let (at_between, position) = restored(&dest_text, &utc(between));
    let domain = head.split('-').next().unwrap();
    let gtid = position
        .split(',')
        .find(|g| g.starts_with(&format!("{domain}-")))
        .unwrap()
        .to_string();
    let (found, _) = restored(&dest_text, &gtid);
    assert_eq!(found, at_between, "restored to GTID {gtid}");

    // Points the archive cannot give are refused before anything is made.
    let from = ["--from", dest_text.as_str(), "--to"];
    let future = utc(now_secs() + 3600);
    refused_restore(&[&from[..], &[&future]].concat(), "covers only up to");
    let before = utc(truth.values().min().unwrap() - 60);
    refused_restore(
        &[&from[..], &[&before]].concat(),
        "no backup was taken before",
    );
    refused_restore(&[&from[..], &["yesterday"]].concat(), "neither a time");
    let beyond = format!("{domain}-1-999999999");
    refused_restore(
        &[&from[..], &[&beyond]].concat(),
        "the archive reaches GTID position",
    );
    // The archive followed the failover: segments were read from both primaries.
    let archived = dest.path().join("binlog").join("pitr");
    let mut readers = std::collections::BTreeSet::new();
    let mut segments: Vec<std::path::PathBuf> = Vec::new();
    for entry in std::fs::read_dir(&archived).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.ends_with(".binlog.json") {
            let manifest: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
            readers.insert(manifest["member"].as_str().unwrap().to_string());
        } else if name.ends_with(".binlog") {
            segments.push(path);
        }
    }
    assert!(
        readers.contains(&first_primary) && readers.contains(&new_primary),
        "segments read from {readers:?}"
    );
    // A damaged segment is found before anything is started, and nothing is left.
    segments.sort();
    let last = segments.last().unwrap();
    let mut bytes = std::fs::read(last).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0xff;
    std::fs::write(last, bytes).unwrap();
    refused_restore(&[&from[..], &[&utc(last_second)]].concat(), "is corrupt");

    eprintln!(
        "{} rows, {errors} write errors across the failover, in {:.0} s",
        truth.len(),
        began.elapsed().as_secs_f64()
    );
}

#[test]
fn the_archive_in_s3_restores_to_a_second() {
    let s3 = S3Server::start();
    let (local, rt, o, _) = archived_cluster(
        "pitrs3",
        1,
        &format!(
            "    destination: s3://backups/team/shop\n    archiveBinlogs: true\n    s3:\n      \
             endpoint: {}\n      credentialsFile: {}\n",
            s3.endpoint,
            s3.creds.display()
        ),
    );
    let next = Arc::new(AtomicU64::new(1));
    let stop = Arc::new(AtomicBool::new(false));
    let writing = writer(o.clone(), next.clone(), stop.clone());
    std::thread::sleep(Duration::from_millis(1000));
    // The spec's destination and S3 settings.
    local.ok(&["backup"]);
    std::thread::sleep(Duration::from_millis(3000));
    stop.store(true, Ordering::SeqCst);
    assert_eq!(writing.join().unwrap(), 0);
    let truth = rows(&rt, &o);
    let seconds: Vec<u64> = truth.values().copied().collect();
    let middle = seconds[seconds.len() * 3 / 4];
    while now_secs() < middle + 8 {
        std::thread::sleep(Duration::from_millis(200));
    }
    let archive = local.status()["archive"].clone();
    assert!(archive["error"].is_null(), "{archive}");
    assert_eq!(
        archive["destination"].as_str(),
        Some("s3://backups/team/shop/binlog/pitrs3")
    );
    let creds = s3.creds.clone();
    let (found, _) = restored_with("s3://backups/team/shop", &utc(middle), &s3.args(&creds));
    let expected = upto(&truth, middle);
    assert!(expected.len() < truth.len());
    assert_eq!(found, expected);
}

#[test]
fn a_restore_drill_passes_while_writes_go_on_and_finds_a_replica_that_drifted() {
    let dest = tempfile::tempdir().unwrap();
    let dest_text = dest.path().to_str().unwrap().to_string();
    let (local, rt, o, _) = archived_cluster(
        "drill",
        2,
        &format!("    destination: {dest_text}\n    archiveBinlogs: true\n"),
    );
    rt.block_on(async {
        let mut c = mysql_async::Conn::new(o.clone()).await.unwrap();
        // NULLs and odd names count too.
        c.query_drop(
            "CREATE TABLE app.`odd name` (a INT, `b``c` VARCHAR(8)); \
             INSERT INTO app.`odd name` VALUES (NULL, 'x'), (1, NULL)",
        )
        .await
        .unwrap();
    });
    let next = Arc::new(AtomicU64::new(1));
    let stop = Arc::new(AtomicBool::new(false));
    let writing = writer(local.app_opts(), next.clone(), stop.clone());
    std::thread::sleep(Duration::from_millis(500));
    local.ok(&["backup"]);
    std::thread::sleep(Duration::from_millis(1500));
    // While rows keep coming.
    let passed = local.ok(&["drill"]);
    assert!(
        passed.contains("rolled forward with the binary log archive"),
        "{passed}"
    );
    assert!(passed.contains("drill passed: 2 tables"), "{passed}");
    stop.store(true, Ordering::SeqCst);
    assert_eq!(writing.join().unwrap(), 0);
    // A replica that lost a row without a trace in any binary log.
    let status = local.running_status();
    let replica = status["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == "replica")
        .unwrap()["name"]
        .as_str()
        .unwrap()
        .to_string();
    let r = admin(&local, member_port(&status, &replica));
    rt.block_on(async {
        let mut c = mysql_async::Conn::new(r.clone()).await.unwrap();
        c.query_drop("SET sql_log_bin = 0; DELETE FROM app.p WHERE id = 2")
            .await
            .unwrap();
    });
    let out = local.run(&["drill"]);
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        text(&out).contains("drill failed: the restored data differs")
            && text(&out).contains("`app`.`p`"),
        "{}",
        text(&out)
    );
    assert!(!local.state().join("drill").exists());
}
