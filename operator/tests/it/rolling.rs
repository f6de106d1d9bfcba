//! A `serverConfig` change rolled through a running local cluster (`local apply`), end to end
//! with real servers and a real proxy: a writer and strict readers (two with reads of 2 s)
//! run through the proxy the whole time and see no error and no stale read; every member ends
//! with the new setting, the primary role moves exactly once, by switchover. Nothing restarts
//! while paused. A setting the server refuses stops the roll at its first member, which runs
//! its previous configuration again. A roll interrupted by `down` goes on after `up`;
//! `restart` rolls every member onto a re-pointed mariadbd.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use serde_json::Value;

use crate::local::{Local, events, member_port, opts, primary, wait_until};

fn cluster(server_config: &str) -> String {
    format!(
        "\
apiVersion: lagless.dev/v1alpha1
kind: MySQLCluster
metadata:
  name: roll
spec:
  replicas: 3
  serverConfig:
{server_config}
  proxy:
    replicas: 1
    defaultConsistency: strict
"
    )
}

/// Counts of what the clients saw.
#[derive(Default)]
struct Seen {
    acked: AtomicU64,
    reads: AtomicU64,
    stale: AtomicU64,
    errors: AtomicU64,
}

/// One writer and a reader per query of `reads` through the proxy, each on one connection
/// kept for the whole run; any error counts (a reconnect would hide one), and an old answer
/// counts as stale unless the query asks for `eventual` reads.
fn start_clients(
    rt: &tokio::runtime::Runtime,
    app: &mysql_async::Opts,
    reads: &[&'static str],
    seen: &Arc<Seen>,
    stop: &Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<Vec<String>>> {
    let mut tasks = Vec::new();
    let (o, seen_w, stop_w) = (app.clone(), seen.clone(), stop.clone());
    tasks.push(rt.spawn(async move {
        let mut errors = Vec::new();
        let mut c = mysql_async::Conn::new(o).await.expect("writer connects");
        while !stop_w.load(Ordering::Relaxed) {
            match c.query_drop("INSERT INTO rolled (v) VALUES ('x')").await {
                Ok(()) => {
                    let id = c.last_insert_id().unwrap_or(0);
                    seen_w.acked.fetch_max(id, Ordering::SeqCst);
                }
                Err(e) => {
                    seen_w.errors.fetch_add(1, Ordering::Relaxed);
                    errors.push(format!("write: {e}"));
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
        errors
    }));
    for &sql in reads {
        let (o, seen, stop) = (app.clone(), seen.clone(), stop.clone());
        let strict = !sql.contains("consistency=eventual");
        tasks.push(rt.spawn(async move {
            let mut errors = Vec::new();
            let mut c = mysql_async::Conn::new(o).await.expect("reader connects");
            while !stop.load(Ordering::Relaxed) {
                let before = seen.acked.load(Ordering::SeqCst);
                match c.query_first::<Option<u64>, _>(sql).await {
                    Ok(max) => {
                        seen.reads.fetch_add(1, Ordering::Relaxed);
                        if strict && max.flatten().unwrap_or(0) < before {
                            seen.stale.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    Err(e) => {
                        seen.errors.fetch_add(1, Ordering::Relaxed);
                        errors.push(format!("read: {e}"));
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                }
            }
            errors
        }));
    }
    tasks
}

/// `name`'s value on every member, read on the member itself as the administrator.
fn variable_on_members(
    rt: &tokio::runtime::Runtime,
    local: &Local,
    status: &Value,
    name: &str,
) -> Vec<(String, String)> {
    let creds = local.credentials();
    let (user, password) = (
        creds["admin_user"].as_str().unwrap().to_string(),
        creds["admin_password"].as_str().unwrap().to_string(),
    );
    let members: Vec<String> = status["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap().to_string())
        .collect();
    rt.block_on(async {
        let mut values = Vec::new();
        for m in members {
            let o: mysql_async::Opts = mysql_async::OptsBuilder::from_opts(opts(
                member_port(status, &m),
                &user,
                &password,
            ))
            .db_name(None::<String>)
            .into();
            let mut c = mysql_async::Conn::new(o).await.expect("member answers");
            let row: Option<(String, String)> = c
                .query_first(format!("SHOW VARIABLES LIKE '{name}'"))
                .await
                .expect("SHOW VARIABLES");
            values.push((m, row.map(|r| r.1).unwrap_or_default()));
            let _ = c.disconnect().await;
        }
        values
    })
}

#[test]
fn a_server_config_change_rolls_through_the_members_without_a_client_error() {
    let began = Instant::now();
    let local = Local::new();
    let manifest = local.manifest("roll", &cluster("    max_connections: '151'"));
    local.up(&manifest);
    let status = local.running_status();
    let first = primary(&status);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let app = local.app_opts();
    rt.block_on(async {
        let mut c = mysql_async::Conn::new(app.clone()).await.unwrap();
        c.query_drop("CREATE TABLE rolled (id BIGINT AUTO_INCREMENT PRIMARY KEY, v CHAR(1))")
            .await
            .unwrap();
    });
    let pids_before = Local::pids(&status);
    let before = variable_on_members(&rt, &local, &status, "max_connections");
    assert!(before.iter().all(|(_, v)| v == "151"), "{before:?}");

    let seen = Arc::new(Seen::default());
    let stop = Arc::new(AtomicBool::new(false));
    // Three quick readers, two whose reads take 2 s (the drain outlasts them), and one whose
    // reads may go to any replica, a lagging one included (`eventual`: errors count, staleness
    // does not).
    let quick = "SELECT MAX(id) FROM rolled";
    let slow = "SELECT m FROM (SELECT MAX(id) AS m FROM rolled) t WHERE SLEEP(2) = 0";
    let any = "SELECT /* lagless:consistency=eventual */ MAX(id) FROM rolled";
    let clients = start_clients(
        &rt,
        &app,
        &[quick, quick, quick, slow, slow, any],
        &seen,
        &stop,
    );
    wait_until("writes through the proxy", Duration::from_secs(10), || {
        seen.acked.load(Ordering::SeqCst) > 20
    });

    // The same file with the setting changed and one added, taken while paused: nothing
    // restarts until the orchestration is resumed.
    let changed = local.manifest(
        "roll-changed",
        &cluster("    max_connections: '321'\n    long_query_time: '7'"),
    );
    assert!(local.ok(&["pause"]).contains("paused"));
    let said = local.ok(&["apply", "-f", changed.to_str().unwrap()]);
    assert!(
        said.contains("goes on once the orchestration is resumed"),
        "{said}"
    );
    std::thread::sleep(Duration::from_secs(2));
    let paused = local.running_status();
    assert_eq!(Local::pids(&paused), pids_before, "restarted while paused");
    assert!(
        paused["members"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["config_pending"] == true),
        "{paused}"
    );
    // Resumed, it rolls while the clients run.
    let asked = Instant::now();
    local.ok(&["resume"]);
    let roll_done = || {
        let s = local.status();
        s.get("roll").is_none() && events(&s).iter().any(|e| e.starts_with("roll done"))
    };
    wait_until("the roll to finish", Duration::from_secs(60), roll_done);
    let rolled_in = asked.elapsed();
    assert!(said.contains("max_connections: 151 -> 321"), "{said}");
    // Writes and reads go on after the roll too.
    let acked_after_roll = seen.acked.load(Ordering::SeqCst);
    wait_until("writes after the roll", Duration::from_secs(10), || {
        seen.acked.load(Ordering::SeqCst) > acked_after_roll + 20
    });
    stop.store(true, Ordering::Relaxed);
    let mut client_errors = Vec::new();
    for task in clients {
        client_errors.extend(rt.block_on(task).expect("client task"));
    }
    let (acked, reads, stale, errors) = (
        seen.acked.load(Ordering::SeqCst),
        seen.reads.load(Ordering::Relaxed),
        seen.stale.load(Ordering::Relaxed),
        seen.errors.load(Ordering::Relaxed),
    );
    let status = local.running_status();
    let log = || std::fs::read_to_string(local.state().join("operator.log")).unwrap_or_default();
    assert_eq!(errors, 0, "client errors: {client_errors:?}\n{}", log());
    assert_eq!(stale, 0, "stale strict reads ({reads} reads)");
    assert!(reads > 100, "only {reads} reads");

    // Every member runs the new setting, the added one too.
    let after = variable_on_members(&rt, &local, &status, "max_connections");
    assert!(after.iter().all(|(_, v)| v == "321"), "{after:?}");
    let added = variable_on_members(&rt, &local, &status, "long_query_time");
    assert!(added.iter().all(|(_, v)| v.starts_with("7.")), "{added:?}");
    assert!(status.get("roll").is_none(), "{status}");
    // Each server was restarted (a new process); the supervisor and the proxy were not.
    let pids_after = Local::pids(&status);
    assert_eq!(pids_after[0], pids_before[0], "the supervisor");
    for (name, pid) in ["members"]
        .iter()
        .flat_map(|l| status[*l].as_array().unwrap())
        .map(|m| {
            (
                m["name"].as_str().unwrap(),
                m["pid"].as_u64().unwrap() as u32,
            )
        })
    {
        assert!(!pids_before.contains(&pid), "{name} was not restarted");
    }
    assert_eq!(pids_after.last(), pids_before.last(), "the proxy");

    // The primary moved once, by the roll's switchover, away from the first primary, after
    // both replicas had been restarted; then the old primary was restarted too.
    let noted = events(&status);
    let promotions: Vec<&String> = noted.iter().filter(|e| e.contains(" promoted (")).collect();
    assert_eq!(promotions.len(), 1, "{noted:#?}");
    assert!(promotions[0].contains("switchover"), "{noted:#?}");
    assert_ne!(primary(&status), first);
    let restarted: Vec<&String> = noted.iter().filter(|e| e.starts_with("rolling ")).collect();
    assert_eq!(restarted.len(), 3, "{noted:#?}");
    assert!(
        restarted[2].starts_with(&format!("rolling {first}:")),
        "{noted:#?}"
    );
    eprintln!(
        "rolled 3 members in {:.1} s under load: {acked} writes, {reads} reads (one reader eventual), 0 \
         errors, 0 stale; primary {first} -> {}",
        rolled_in.as_secs_f64(),
        primary(&status)
    );

    // A setting the server refuses: the first member restarted does not start with it, runs
    // its previous configuration again, and the roll stops there saying why.
    let refused = local.manifest(
        "roll-refused",
        &cluster("    max_connections: '321'\n    long_query_time: '7'\n    no_such_option: '1'"),
    );
    let out = local.run(&["apply", "-f", refused.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(
        stderr.contains("did not start with the new serverConfig"),
        "{stderr}"
    );
    wait_until(
        "every member back and replicating",
        Duration::from_secs(30),
        || {
            let s = local.status();
            s["state"] == "Healthy"
                && s["members"].as_array().is_some_and(|ms| {
                    ms.iter()
                        .all(|m| m["health"] == "ok" && m["config_pending"] == true)
                })
        },
    );
    let status = local.status();
    assert!(
        status["roll"]["stopped"]
            .as_str()
            .is_some_and(|s| s.contains("unknown variable 'no_such_option=1'")),
        "{status}"
    );
    let kept = variable_on_members(&rt, &local, &status, "max_connections");
    assert!(kept.iter().all(|(_, v)| v == "321"), "{kept:?}");
    // The same file again goes on with the stopped roll (here to stop at the same member).
    let again = local.run(&["apply", "-f", refused.to_str().unwrap()]);
    let (said, stderr) = (
        String::from_utf8_lossy(&again.stdout),
        String::from_utf8_lossy(&again.stderr),
    );
    assert!(said.contains("the stopped roll goes on"), "{said}{stderr}");
    assert!(
        !again.status.success() && stderr.contains("did not start with the new serverConfig"),
        "{said}{stderr}"
    );
    // The member that did not start with it is back in read routing once caught up, though
    // the roll stays stopped.
    let admin = crate::maintenance::admin_port(&status);
    let replicas: Vec<String> = status["members"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["role"] == "replica")
        .filter_map(|m| m["name"].as_str().map(str::to_string))
        .collect();
    wait_until(
        "every replica back in read routing",
        Duration::from_secs(30),
        || {
            replicas
                .iter()
                .all(|r| crate::maintenance::proxy_weight(admin, r).is_some_and(|w| w > 0))
        },
    );
    // The good file again: every member runs it already, nothing restarts.
    let pids_kept = Local::pids(&local.running_status());
    let said = local.ok(&["apply", "-f", changed.to_str().unwrap()]);
    assert_eq!(
        Local::pids(&local.running_status()),
        pids_kept,
        "restarted again"
    );
    assert!(
        said.contains("every member runs the new serverConfig"),
        "{said}"
    );

    // A roll interrupted by `down` goes on after `up`: each member starts with the
    // configuration it ran, and the rest are rolled.
    let third = local.manifest(
        "roll-third",
        &cluster("    max_connections: '400'\n    long_query_time: '7'"),
    );
    local.ok(&["apply", "-f", third.to_str().unwrap(), "--no-wait"]);
    wait_until("one member rolled", Duration::from_secs(30), || {
        local.status()["roll"]["current"].as_u64() >= Some(1)
    });
    local.ok(&["down"]);
    // Started again on mariadbd through a symbolic link, as a version switch would point it.
    let link = local.state().with_file_name("mariadbd");
    let program = std::fs::canonicalize(
        lagless_mariadbd::Binaries::locate()
            .expect("mariadbd")
            .mariadbd,
    )
    .unwrap();
    std::os::unix::fs::symlink(&program, &link).unwrap();
    let up = crate::local::bin()
        .args(["local", "--state-dir"])
        .arg(local.state())
        .args(["up", "--detach"])
        .env("LAGLESS_MARIADBD", &link)
        .output()
        .unwrap();
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    // Events are the new supervisor's only.
    wait_until(
        "the roll to finish after up",
        Duration::from_secs(60),
        roll_done,
    );
    let status = local.running_status();
    let last = variable_on_members(&rt, &local, &status, "max_connections");
    assert!(last.iter().all(|(_, v)| v == "400"), "{last:?}");
    // Only the members not rolled before `down` were rolled after `up`.
    let events = events(&status);
    let rolled_after_up = events.iter().filter(|e| e.starts_with("rolling ")).count();
    assert!((1..=2).contains(&rolled_after_up), "{events:#?}");

    // The link re-pointed (a new version): every member is marked as started before, and
    // `restart` rolls them all onto it, the primary after one more switchover.
    std::thread::sleep(Duration::from_millis(100));
    let replaced = link.with_extension("new");
    std::os::unix::fs::symlink(&program, &replaced).unwrap();
    std::fs::rename(&replaced, &link).unwrap();
    let older = |s: &Value| {
        s["members"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["older_program"] == true)
            .count()
    };
    wait_until("members marked as older", Duration::from_secs(10), || {
        older(&local.status()) == 3
    });
    let before_restart = local.running_status();
    let said = local.ok(&["restart"]);
    assert!(said.contains("every member is restarted"), "{said}");
    let restarted = local.running_status();
    assert_eq!(older(&restarted), 0, "{restarted}");
    let old_pids = Local::pids(&before_restart);
    for m in restarted["members"].as_array().unwrap() {
        let pid = m["pid"].as_u64().unwrap() as u32;
        assert!(!old_pids.contains(&pid), "{} not restarted", m["name"]);
    }
    assert_ne!(primary(&restarted), primary(&before_restart));
    eprintln!("{:.1} s in all", began.elapsed().as_secs_f64());
}
