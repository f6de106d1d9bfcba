//! A failover during a tenant move, on a local pool whose clusters run their own orchestrators:
//! the source's or the target's primary is killed while the tenant is copied, while the
//! target catches up through the move's channel, while the tenant is frozen, or after the flip
//! while the source's copy is dropped, with the tenant written all along. The move ends rolled
//! back before the flip and done after it, never with two writable copies, and every
//! acknowledged write is on the cluster the directory names.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use serde_json::Value;

use lagless_testkit::conn_opts as opts;

use crate::local::wait_until;
use crate::tenant_pool::{Pool, tenant_cli};
use crate::tenant_rebalance::{home_of, primary_port, rows};

const POOL: &str = "\
apiVersion: lagless.dev/v1alpha1
kind: MySQLTenantPool
metadata:
  name: mf
spec:
  clusterTemplate:
    replicas: 2
  clusters:
    min: 2
    max: 2
  directory:
    replicas: 1
  proxy:
    replicas: 1
";

const ROWS: u32 = 50_000;

fn phase(pool: &Pool) -> Option<String> {
    let path = pool.state().join("moves").join("x.json");
    let record: Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    record["phase"].as_str().map(str::to_string)
}

/// Watches the target's primary closely (the phase can be short) until the move's channel
/// is there: the target catches up through it. False when it did not come within a second.
fn channel_seen(rt: &tokio::runtime::Runtime, target: &mysql_async::Opts) -> bool {
    rt.block_on(async {
        let Ok(mut conn) = mysql_async::Conn::new(target.clone()).await else {
            return false;
        };
        let until = Instant::now() + Duration::from_secs(1);
        while Instant::now() < until {
            let channels: Vec<mysql_async::Row> = conn
                .query("SHOW ALL SLAVES STATUS")
                .await
                .unwrap_or_default();
            if channels.iter().any(|c| {
                c.get::<String, _>("Connection_name")
                    .is_some_and(|n| n == "lagless_move_x")
            }) {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        false
    })
}

/// Each member of `cluster` with its role.
fn roles(pool: &Pool, cluster: &str) -> Vec<(String, String)> {
    let status = pool.status();
    crate::tenant_pool::cluster(&status, cluster)["members"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|m| {
            (
                m["name"].as_str().unwrap_or_default().to_string(),
                m["role"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// `local reseed` of each quarantined member of `cluster`, waiting until it replicates again.
fn reseed_quarantined(pool: &Pool, cluster: &str) -> Vec<String> {
    let quarantined: Vec<String> = roles(pool, cluster)
        .into_iter()
        .filter(|(_, r)| r == "quarantined")
        .map(|(n, _)| n)
        .collect();
    for member in &quarantined {
        eprintln!("re-seeding quarantined {member}");
        pool.ok(&["reseed", member]);
        wait_until(
            "the re-seeded member to replicate",
            Duration::from_secs(120),
            || {
                roles(pool, cluster)
                    .iter()
                    .any(|(n, r)| n == member && r == "replica")
            },
        );
    }
    quarantined
}

/// Starts `tenant move x --to <to>`, paced at 1 MiB/s, its output piped.
/// Opens a transaction holding a lock on the source's fenced copy of tenant `x` as soon as
/// it exists (polled every few milliseconds), so the move's drop of it waits.
async fn hold_fenced_copy(source_primary: &mysql_async::Opts) -> mysql_async::Conn {
    let mut c = mysql_async::Conn::new(source_primary.clone())
        .await
        .expect("admin");
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        assert!(
            Instant::now() < deadline,
            "the source's copy was never fenced"
        );
        c.query_drop("BEGIN").await.expect("a transaction");
        let held: Result<Option<i64>, _> = c
            .query_first("SELECT id FROM lagless_moved_x.bulk WHERE id = 1 LOCK IN SHARE MODE")
            .await;
        if matches!(held, Ok(Some(_))) {
            return c;
        }
        let _ = c.query_drop("ROLLBACK").await;
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
}

fn mover(pool: &Pool, to: &str) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_lagless-operator"))
        .arg("tenant")
        .arg("--state-dir")
        .arg(pool.state())
        .args(["move", "x", "--to", to, "--copy-rate-mib", "1"])
        .env_remove("LAGLESS_STATE_DIR")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the mover")
}

#[test]
fn a_failover_of_the_source_during_a_move_loses_nothing_and_leaves_one_copy() {
    failover_during_a_move(Side::Source, When::Copying, 13);
    failover_during_a_move(Side::Source, When::CatchingUp, 13);
    failover_during_a_move(Side::Source, When::Frozen, 13);
    failover_during_a_move(Side::Source, When::Cleaning, 13);
}

#[test]
fn a_failover_of_the_target_during_a_move_loses_nothing_and_leaves_one_copy() {
    failover_during_a_move(Side::Target, When::Copying, 17);
    failover_during_a_move(Side::Target, When::CatchingUp, 17);
    failover_during_a_move(Side::Target, When::Frozen, 17);
    failover_during_a_move(Side::Target, When::Cleaning, 17);
}

/// When the primary is killed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum When {
    /// The copy is being loaded into the target.
    Copying,
    /// The move's channel runs on the target's primary.
    CatchingUp,
    /// The tenant is frozen and the fence waits (up to its 2 s) for a transaction the test
    /// holds open on the source's primary.
    Frozen,
    /// After the flip: the source's fenced copy is being dropped, and the drop waits for a
    /// transaction the test holds open on it. The move only goes forward from here.
    Cleaning,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Source,
    Target,
}

fn failover_during_a_move(side: Side, when: When, skew: u32) {
    eprintln!("--- {side:?} primary killed while {when:?}");
    let (pool, base_port, _) = Pool::up(POOL, skew);
    tenant_cli(&pool, &["create", "x"]);
    let source = home_of(&pool, "x");
    let target = if source == "mf-c0" { "mf-c1" } else { "mf-c0" };
    let creds = pool.credentials();
    let cred = |k: &str| creds[k].as_str().unwrap_or_default().to_string();
    let (admin_user, admin_pw) = (cred("admin_user"), cred("admin_password"));
    let status = pool.status();
    let killed_cluster = match side {
        Side::Source => source.clone(),
        Side::Target => target.to_string(),
    };
    let killed = crate::tenant_pool::primary(&status, &killed_cluster);
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let port = primary_port(&status, &source);
        let mut conn = mysql_async::Conn::new(opts(port, &admin_user, &admin_pw, None))
            .await
            .expect("admin");
        conn.query_drop(
            "CREATE TABLE t_x.bulk (id INT PRIMARY KEY, pad VARCHAR(255)); \
             CREATE TABLE t_x.w (id BIGINT PRIMARY KEY)",
        )
        .await
        .unwrap();
        conn.query_drop(format!(
            "INSERT INTO t_x.bulk SELECT seq, REPEAT('p', 255) FROM t_x.seq_1_to_{ROWS}"
        ))
        .await
        .unwrap();
    });

    // A writer through the pool's proxy all along; a write that times out or fails may or
    // may not have happened, one that was acknowledged must be there at the end.
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::<u64>::new()));
    let writer = {
        let (stop, acked) = (stop.clone(), acked.clone());
        let app = opts(
            base_port + 50,
            &cred("app_user"),
            &cred("app_password"),
            Some("t_x"),
        );
        rt.spawn(async move {
            let mut next = 0u64;
            let mut conn: Option<mysql_async::Conn> = None;
            let (mut errors, mut last_error) = (0u64, String::new());
            while !stop.load(Ordering::Relaxed) {
                if conn.is_none() {
                    conn = mysql_async::Conn::new(app.clone()).await.ok();
                    if conn.is_none() {
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                }
                let Some(c) = conn.as_mut() else { continue };
                next += 1;
                let write = c.exec_drop("INSERT INTO w (id) VALUES (?)", (next,));
                match tokio::time::timeout(Duration::from_secs(20), write).await {
                    Ok(Ok(())) => acked.lock().unwrap().push(next),
                    Ok(Err(e)) => {
                        errors += 1;
                        last_error = e.to_string();
                        conn = None;
                    }
                    Err(_) => {
                        errors += 1;
                        last_error = "timed out".into();
                        conn = None;
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            (errors, last_error)
        })
    };
    std::thread::sleep(Duration::from_millis(500));

    // The move starts; once it gets to `when`, the primary is killed.
    let target_primary = opts(primary_port(&status, target), &admin_user, &admin_pw, None);
    let source_primary = opts(primary_port(&status, &source), &admin_user, &admin_pw, None);
    // A transaction held open on the tenant's table: the fence's rename waits for it.
    let mut holder = (when == When::Frozen).then(|| {
        rt.block_on(async {
            let mut c = mysql_async::Conn::new(source_primary.clone())
                .await
                .expect("admin");
            c.query_drop("BEGIN").await.unwrap();
            c.query_drop("UPDATE t_x.bulk SET pad = 'held' WHERE id = 1")
                .await
                .unwrap();
            c
        })
    });
    let began = Instant::now();
    let mut child = mover(&pool, target);
    // The fenced copy exists only from the fence on, for a few hundred milliseconds before it
    // is dropped: watched closely, and a transaction opened on it at once.
    if when == When::Cleaning {
        holder = Some(rt.block_on(hold_fenced_copy(&source_primary)));
    }
    wait_until("the move to get there", Duration::from_secs(60), || {
        if let Ok(Some(exit)) = child.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            panic!("the mover ended before {when:?} ({exit}): {err}");
        }
        match when {
            // The record says `copying` from the start: the copy is seen on the target.
            When::Copying => {
                rows(
                    &target_primary,
                    "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = 't_x'",
                ) > 0
            }
            When::CatchingUp => channel_seen(&rt, &target_primary),
            When::Frozen => phase(&pool).as_deref() == Some("frozen"),
            When::Cleaning => phase(&pool).as_deref() == Some("cleaning"),
        }
    });
    if when == When::Copying {
        std::thread::sleep(Duration::from_millis(500));
    }
    let said = pool.ok(&["kill", &killed]);
    assert!(said.contains(&format!("killed {killed}")), "{said}");
    eprintln!(
        "killed {killed} {:.1} s into the move",
        began.elapsed().as_secs_f64()
    );
    // On the source the held transaction went with its server; on the target's side it is
    // let go, so the fence goes in and the move meets the target's failover after it.
    if let Some(c) = holder.take()
        && side == Side::Target
    {
        rt.block_on(async {
            let mut c = c;
            let _ = c.query_drop("ROLLBACK").await;
            let _ = c.disconnect().await;
        });
    }
    wait_until("the failover", Duration::from_secs(60), || {
        let p = crate::tenant_pool::primary(&pool.status(), &killed_cluster);
        !p.is_empty() && p != killed
    });

    // The mover ends; one that could not finish rolling back is run again, as the operator
    // would, until the move is done or aborted.
    let mut runs = 0;
    let mut reseeded = Vec::new();
    let outcome = loop {
        runs += 1;
        let out = child.wait_with_output().expect("the mover ends");
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        eprintln!("mover run {runs}: {}\n{err}", out.status);
        match phase(&pool).as_deref() {
            Some("done") | Some("aborted") => break (phase(&pool).unwrap_or_default(), err),
            other => {
                assert!(
                    runs < 5,
                    "the move is still {other:?} after {runs} runs: {err}"
                );
                // A cluster that can acknowledge no write (its only replica quarantined)
                // holds the roll-back until a person re-seeds the replica.
                reseeded.extend(reseed_quarantined(&pool, &killed_cluster));
                std::thread::sleep(Duration::from_secs(2));
                child = mover(&pool, target);
            }
        }
    };
    eprintln!(
        "the move ended {} after {:.1} s and {runs} run(s)",
        outcome.0,
        began.elapsed().as_secs_f64()
    );
    let holder = if outcome.0 == "done" {
        target
    } else {
        source.as_str()
    };
    let other = if holder == target {
        source.as_str()
    } else {
        target
    };
    assert_eq!(home_of(&pool, "x"), holder, "{}", outcome.1);

    // The tenant is written again on the cluster that holds it.
    let writes_before = acked.lock().unwrap().len();
    wait_until("writes to go on", Duration::from_secs(30), || {
        acked.lock().unwrap().len() > writes_before + 20
    });
    stop.store(true, Ordering::Relaxed);
    let (errors, last_error) = rt.block_on(writer).expect("the writer");
    let acked = acked.lock().unwrap().clone();
    eprintln!(
        "{} writes acknowledged, {errors} failed or unknown (last: {last_error})",
        acked.len()
    );

    let status = pool.status();
    let holder_primary = opts(primary_port(&status, holder), &admin_user, &admin_pw, None);
    assert_eq!(
        rows(&holder_primary, "SELECT COUNT(*) FROM t_x.bulk"),
        u64::from(ROWS)
    );
    let present: Vec<u64> = rt.block_on(async {
        let mut conn = mysql_async::Conn::new(holder_primary.clone())
            .await
            .expect("admin");
        conn.query("SELECT id FROM t_x.w")
            .await
            .expect("the writes")
    });
    let present: std::collections::BTreeSet<u64> = present.into_iter().collect();
    let missing: Vec<&u64> = acked.iter().filter(|id| !present.contains(id)).collect();
    assert!(
        missing.is_empty(),
        "{} acknowledged writes are not on {holder}: {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    // The killed primary is back as a replica of the new one. Members start with replication
    // stopped, so a former target primary does not run the move's channel again by itself
    // (it did, quarantining itself with hundreds of the source's transactions its replica
    // never had); it is quarantined only when a transaction was in flight at the kill, and
    // then re-seeded, as a person would.
    wait_until("the cluster to settle", Duration::from_secs(120), || {
        let roles = roles(&pool, &killed_cluster);
        if roles.iter().any(|(_, r)| r == "quarantined") {
            reseeded.extend(reseed_quarantined(&pool, &killed_cluster));
            return false;
        }
        roles.iter().filter(|(_, r)| r == "primary").count() == 1
            && roles.iter().filter(|(_, r)| r == "replica").count() == 1
    });
    eprintln!("re-seeded: {reseeded:?}");

    // Nothing of the tenant is left where it is not, and no channel either.
    let other_primary = opts(primary_port(&status, other), &admin_user, &admin_pw, None);
    assert_eq!(
        rows(
            &other_primary,
            "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE '%x'"
        ),
        0,
        "a copy of the tenant is left on {other}"
    );
    let members: Vec<mysql_async::Opts> = [source.as_str(), target]
        .iter()
        .flat_map(|c| {
            crate::tenant_pool::cluster(&status, c)["members"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|m| m["port"].as_u64().and_then(|p| u16::try_from(p).ok()))
        .map(|port| opts(port, &admin_user, &admin_pw, None))
        .collect();
    for member in &members {
        let channels: Vec<mysql_async::Row> = rt.block_on(async {
            let mut conn = mysql_async::Conn::new(member.clone()).await.expect("admin");
            conn.query("SHOW ALL SLAVES STATUS")
                .await
                .expect("channels")
        });
        for c in channels {
            let name: String = c.get("Connection_name").unwrap_or_default();
            assert!(!name.starts_with("lagless_move"), "channel {name} is left");
            let io: String = c.get("Slave_IO_Running").unwrap_or_default();
            let sql: String = c.get("Slave_SQL_Running").unwrap_or_default();
            let error: String = c.get("Last_Error").unwrap_or_default();
            let io_error: String = c.get("Last_IO_Error").unwrap_or_default();
            assert!(
                io == "Yes" && sql == "Yes",
                "a member replicates no more: {error} {io_error}"
            );
        }
    }
}
