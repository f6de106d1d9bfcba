//! The fault matrix of a tenant move on real servers: the source cluster's primary, the target
//! cluster's, or the proxy the tenant is written through, killed in each phase while the tenant
//! is written; every move ends done or aborted with one writable copy holding every acknowledged
//! write, nothing left on the other cluster, no channel, and no slave position past the binary
//! log.
//!
//! These clusters have no orchestrator, so nothing fails over: the killed primary is started
//! again on its own data a second later (a crash and restart), while the mover goes on; a mover
//! that gives up in a phase (its roll-back or a forward step could not reach the server) is run
//! again from its record, as the operator does.
//!
//! The proxy runs in the test's process, so its kill is a stop: it accepts nothing more, and the
//! writer drops its connection at once (a statement in flight is never acknowledged), then
//! writes through a new proxy started a second later, which knows nothing but the directory.
//! The mover waits in the phase meanwhile (in its save), so that the new proxy starts and
//! takes the writer's statements while the move stands in that phase (a frozen tenant's are
//! held until the flip).

use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lagless_directory::{TenantId, TenantState};
use lagless_operator::pool::moves::{MoveLimits, MoveRecord, Phase, run_move};
use lagless_testkit::{APP_PASSWORD, APP_USER};
use mysql_async::prelude::*;
use mysql_async::{Conn, OptsBuilder};

use crate::tenant_move::{Fleet, NAMES, run_until_saved, start_proxy};

/// How long a killed primary stays down.
const DOWN_FOR: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Victim {
    SourcePrimary,
    TargetPrimary,
    Proxy,
}

/// Writes rows `(writer 5, n)` through the proxy at `port` every 10 ms until stopped,
/// reconnecting after an error, and dropping its connection (a statement in flight too) when
/// `proxy_gone` changes; returns the values acknowledged, each with how many proxies had gone
/// when it was sent.
fn writer(
    port: Arc<AtomicU16>,
    db: String,
    stop: Arc<AtomicBool>,
    mut proxy_gone: tokio::sync::watch::Receiver<u32>,
) -> tokio::task::JoinHandle<Vec<(u32, i32)>> {
    tokio::spawn(async move {
        let (mut acked, mut n, mut conn): (Vec<(u32, i32)>, i32, Option<Conn>) =
            (Vec::new(), 0, None);
        while !stop.load(Ordering::Relaxed) {
            if conn.is_none() {
                let opts = OptsBuilder::default()
                    .ip_or_hostname("127.0.0.1")
                    .tcp_port(port.load(Ordering::SeqCst))
                    .user(Some(APP_USER))
                    .pass(Some(APP_PASSWORD))
                    .db_name(Some(db.clone()))
                    .prefer_socket(false);
                conn = Conn::new(opts).await.ok();
            }
            if let Some(c) = conn.as_mut() {
                n += 1;
                let generation = *proxy_gone.borrow_and_update();
                tokio::select! {
                    r = c.exec_drop("INSERT INTO kv (writer, n, pad) VALUES (5, ?, 'w')", (n,)) => {
                        match r {
                            Ok(()) => acked.push((generation, n)),
                            Err(_) => conn = None,
                        }
                    }
                    _ = proxy_gone.changed() => conn = None,
                }
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        acked
    })
}

/// For each phase, a tenant of 2,000 rows moved while written, with `victim` killed in that
/// phase and started again; returns each phase's outcome and how many runs of the mover it took.
async fn kill_in_each_phase(victim: Victim) -> Vec<(Phase, Phase, u32)> {
    let fleet = Fleet::start().await;
    let cuts = [
        Phase::Copying,
        Phase::CatchingUp,
        Phase::Frozen,
        Phase::Fenced,
        Phase::Flipped,
        Phase::Cleaning,
    ];
    let tag = match victim {
        Victim::SourcePrimary => "src",
        Victim::TargetPrimary => "tgt",
        Victim::Proxy => "prx",
    };
    let mut outcomes = Vec::new();
    for (i, cut) in cuts.into_iter().enumerate() {
        let id = format!("{tag}{i}");
        let from = fleet.tenant(&id, 2_000).await;
        let to = 1 - from;
        let limits = MoveLimits {
            // Slow enough that the kill lands in the middle of the copy.
            copy_rate: if cut == Phase::Copying { 256 << 10 } else { 0 },
            ..MoveLimits::default()
        };
        let cx = fleet.context(&id, from, to, limits);
        let victim_member = match victim {
            Victim::SourcePrimary => Some(fleet.clusters[from].primary()),
            Victim::TargetPrimary => Some(fleet.clusters[to].primary()),
            Victim::Proxy => None,
        };
        // The writer's own proxy, the one a proxy kill stops.
        let (port, proxy_stop) = fleet.start_proxy().await;
        let (port, proxy_stop) = (Arc::new(AtomicU16::new(port)), Mutex::new(proxy_stop));
        let (proxy_gone_tx, proxy_gone) = tokio::sync::watch::channel(0u32);
        let stop = Arc::new(AtomicBool::new(false));
        let writes = writer(port.clone(), format!("t_{id}"), stop.clone(), proxy_gone);
        let (proxy_stop, proxy_gone_tx) = (&proxy_stop, &proxy_gone_tx);
        let kill = move || match victim_member {
            Some(member) => member.kill9().unwrap(),
            None => {
                let _ = proxy_stop.lock().unwrap().send(true);
                proxy_gone_tx.send_modify(|g| *g += 1);
            }
        };
        // A new proxy for the writer, started `DOWN_FOR` after the kill.
        let replace_proxy = {
            let (port, fleet) = (port.clone(), &fleet);
            move || async move {
                tokio::time::sleep(DOWN_FOR).await;
                let (new_port, new_stop) = fleet.start_proxy().await;
                *proxy_stop.lock().unwrap() = new_stop;
                port.store(new_port, Ordering::SeqCst);
            }
        };
        let documents = fleet.documents().to_path_buf();
        tokio::time::sleep(Duration::from_millis(200)).await;

        let (killed_tx, mut killed) = tokio::sync::watch::channel(false);
        let (finished_tx, mut finished) = tokio::sync::watch::channel(false);
        let phases = Arc::new(Mutex::new(Vec::new()));
        let mut save = {
            let phases = phases.clone();
            move |r: &MoveRecord| {
                phases.lock().unwrap().push(r.phase);
                // Killed as the phase begins (its record saved), the mover going on.
                if cut != Phase::Copying && r.phase == cut && !*killed_tx.borrow() {
                    kill();
                    if victim == Victim::Proxy {
                        // The mover stays in the phase while a new proxy starts elsewhere and
                        // the writer sends through it.
                        let (tx, rx) = std::sync::mpsc::channel();
                        let documents = documents.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(DOWN_FOR).await;
                            let _ = tx.send(start_proxy(&documents).await);
                        });
                        let (new_port, new_stop) =
                            tokio::task::block_in_place(|| rx.recv().unwrap());
                        *proxy_stop.lock().unwrap() = new_stop;
                        port.store(new_port, Ordering::SeqCst);
                        tokio::task::block_in_place(|| {
                            std::thread::sleep(Duration::from_millis(300))
                        });
                    }
                    let _ = killed_tx.send(true);
                }
            }
        };
        let kill_while_copying = async {
            if cut != Phase::Copying {
                return;
            }
            // The copy begins once the directory marks the tenant moving.
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                assert!(Instant::now() < deadline, "the tenant never became moving");
                let route = fleet.book().lookup(&cx.tenant).await.unwrap().unwrap();
                if route.state == TenantState::Moving {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
            kill();
            // Still copying: no step has ended.
            let saved = phases.lock().unwrap().clone();
            assert!(saved.is_empty(), "killed after the copy: {saved:?}");
        };
        let filtered_restarts = std::cell::Cell::new(0);
        let restart = async {
            kill_while_copying.await;
            if cut != Phase::Copying {
                tokio::select! {
                    biased;
                    _ = killed.wait_for(|k| *k) => {}
                    _ = finished.wait_for(|f| *f) => return false,
                }
            }
            match victim_member {
                Some(member) => {
                    tokio::time::sleep(DOWN_FOR).await;
                    member.restart().await.unwrap();
                    // A channel the target's primary brings back is filtered from the start,
                    // by the option file the move keeps.
                    let channels = member.query("SHOW ALL SLAVES STATUS").await.unwrap();
                    for channel in &channels {
                        let filter: String = channel.get("Replicate_Do_DB").unwrap();
                        assert_eq!(filter, format!("t_{id}"), "{victim:?} killed at {cut}");
                        filtered_restarts.set(filtered_restarts.get() + 1);
                    }
                }
                // Replaced in the mover's save already, but while copying.
                None if cut == Phase::Copying => replace_proxy().await,
                None => {}
            }
            true
        };
        let run = async {
            let record = run_move(
                &cx,
                MoveRecord::new(&cx.tenant, NAMES[from], NAMES[to]),
                &mut save,
            )
            .await;
            let _ = finished_tx.send(true);
            record
        };
        let started = Instant::now();
        let (mut record, restarted) = tokio::join!(run, restart);
        assert!(restarted, "{victim:?} never killed at {cut}: {record:?}");
        // A mover that stopped in a phase is run again from its record, as the operator does.
        let mut runs = 1;
        let first_error = record.error.clone();
        // A failure before the flip whose roll-back could not finish (the killed server was
        // down) is rolled back when resumed, never finished.
        let rolled_back_when_resumed = record.rolling_back;
        if rolled_back_when_resumed {
            assert!(cut.rolls_back(), "{victim:?} killed at {cut}: {record:?}");
        }
        while !record.phase.is_final() {
            assert!(runs < 3, "{victim:?} killed at {cut}: {record:?}");
            record = run_move(&cx, record, &mut |_: &MoveRecord| {}).await;
            runs += 1;
        }
        // The channel exists from the end of catching up to the end of flipped.
        // (After the flip the mover drops the channel as soon as the target answers, so it
        // may be gone before it is looked at; where it is there, its filter was checked.)
        if victim == Victim::TargetPrimary && matches!(cut, Phase::Frozen | Phase::Fenced) {
            assert_eq!(filtered_restarts.get(), 1, "the channel came back at {cut}");
        }
        let took = started.elapsed();
        stop.store(true, Ordering::Relaxed);
        let acked = writes.await.unwrap();
        let _ = proxy_stop.lock().unwrap().send(true);
        eprintln!(
            "{victim:?} killed at {cut}: {} after {runs} run(s) in {took:?}; {} writes acknowledged; frozen {:?} ms; first run's error {first_error:?}; last error {:?}; phases saved {:?}",
            record.phase,
            acked.len(),
            record.frozen_ms,
            record.error,
            phases.lock().unwrap()
        );
        if victim == Victim::Proxy {
            assert!(
                acked.iter().any(|(generation, _)| *generation > 0),
                "nothing written through the new proxy after a kill at {cut}"
            );
            // Killed while fenced, the new proxy started while the tenant was frozen and held
            // the writer's statements until the flip.
            if cut == Phase::Fenced {
                assert!(
                    record.frozen_ms.unwrap() >= DOWN_FOR.as_millis() as u64,
                    "{record:?}"
                );
            }
        }
        // After the flip a move only goes forward; before it, either end is right as long as
        // what follows holds.
        let ends = if cut.rolls_back() {
            vec![Phase::Done, Phase::Aborted]
        } else {
            vec![Phase::Done]
        };
        assert!(
            ends.contains(&record.phase),
            "{victim:?} killed at {cut}: {record:?}"
        );
        if rolled_back_when_resumed {
            assert_eq!(record.phase, Phase::Aborted, "{victim:?} killed at {cut}");
            assert!(!record.rolling_back, "{record:?}");
        }
        let what = format!("{victim:?} killed at {cut}");
        ended_cleanly(&fleet, &id, (from, to), &record, &acked, &what).await;
        outcomes.push((cut, record.phase, runs));
    }
    if victim == Victim::TargetPrimary {
        channel_outlives_a_target_crash(&fleet).await;
    }
    outcomes
}

/// The target's primary killed while the channel runs and nothing else fails (the mover is
/// stopped too, and the tenant written on the source meanwhile): the server brings the channel
/// back filtered, it goes on from where it was, and the resumed move ends done with every
/// acknowledged write.
async fn channel_outlives_a_target_crash(fleet: &Fleet) {
    let id = "tgtchan";
    let from = fleet.tenant(id, 2_000).await;
    let to = 1 - from;
    let cx = fleet.context(id, from, to, MoveLimits::default());
    let (port, proxy_stop) = fleet.start_proxy().await;
    let (_gone, proxy_gone) = tokio::sync::watch::channel(0u32);
    let stop = Arc::new(AtomicBool::new(false));
    let writes = writer(
        Arc::new(AtomicU16::new(port)),
        format!("t_{id}"),
        stop.clone(),
        proxy_gone,
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    let stopped = run_until_saved(
        &cx,
        MoveRecord::new(&cx.tenant, NAMES[from], NAMES[to]),
        Phase::Frozen,
    )
    .await;
    let target = fleet.clusters[to].primary();
    target.kill9().unwrap();
    tokio::time::sleep(DOWN_FOR).await;
    target.restart().await.unwrap();
    let channels = target.query("SHOW ALL SLAVES STATUS").await.unwrap();
    assert_eq!(channels.len(), 1);
    let filter: String = channels[0].get("Replicate_Do_DB").unwrap();
    assert_eq!(filter, format!("t_{id}"));
    // Written on the source while the channel was down.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let record = run_move(&cx, stopped, &mut |_: &MoveRecord| {}).await;
    stop.store(true, Ordering::Relaxed);
    let acked = writes.await.unwrap();
    let _ = proxy_stop.send(true);
    eprintln!(
        "target primary killed with the mover stopped and the channel running: {}, frozen {:?} ms, {} writes acknowledged, error {:?}",
        record.phase,
        record.frozen_ms,
        acked.len(),
        record.error
    );
    assert_eq!(record.phase, Phase::Done, "{record:?}");
    ended_cleanly(
        fleet,
        id,
        (from, to),
        &record,
        &acked,
        "target killed with the mover stopped",
    )
    .await;
}

/// What every move ends with: the directory's route active on one cluster (the target when done,
/// the source when aborted), the tenant writable there through a proxy with every acknowledged
/// write and every preloaded row on each of its servers, no copy on the other cluster, no
/// channel, no slave position past the binary log, the filter file gone.
async fn ended_cleanly(
    fleet: &Fleet,
    id: &str,
    (from, to): (usize, usize),
    record: &MoveRecord,
    acked: &[(u32, i32)],
    what: &str,
) {
    assert!(!fleet.filter_file(id, to).exists(), "{what}");
    let home = if record.phase == Phase::Done {
        to
    } else {
        from
    };
    let route = fleet
        .book()
        .lookup(&TenantId::parse(id).unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (route.cluster.as_str(), route.state),
        (NAMES[home], TenantState::Active),
        "{what}"
    );
    // Writable through a proxy where the directory says.
    let mut app = fleet.app(Some(&format!("t_{id}"))).await;
    app.query_drop("INSERT INTO kv (writer, n, pad) VALUES (3, 1, 'after')")
        .await
        .unwrap();
    drop(app);
    // Every acknowledged write on every server of the home cluster, the preloaded rows too.
    let cluster = &fleet.clusters[home];
    cluster
        .wait_replicated(Duration::from_secs(20))
        .await
        .unwrap();
    for member in cluster.members() {
        let rows = member
            .query(&format!(
                "SELECT n FROM t_{id}.kv WHERE writer = 5 ORDER BY n"
            ))
            .await
            .unwrap();
        let found: std::collections::BTreeSet<i32> =
            rows.iter().map(|r| r.get(0).unwrap()).collect();
        let lost: Vec<i32> = acked
            .iter()
            .map(|(_, n)| *n)
            .filter(|n| !found.contains(n))
            .collect();
        assert!(
            lost.is_empty(),
            "{what}: acknowledged writes lost on member {}: {lost:?}",
            member.index()
        );
        let counts = member
            .query(&format!(
                "SELECT COUNT(*) FROM t_{id}.kv WHERE writer = 99 \
                 UNION ALL SELECT COUNT(*) FROM t_{id}.kv WHERE writer = 3"
            ))
            .await
            .unwrap();
        let counts: Vec<i64> = counts.iter().map(|r| r.get(0).unwrap()).collect();
        assert_eq!(counts, vec![2_000, 1], "{what}");
    }
    // No copy on the other cluster, no channel, no slave position past the binary log.
    crate::tenant_move::only_at_home(fleet, id, home, what).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_whose_source_primary_is_killed_in_any_phase_ends_done_or_aborted() {
    crate::orchestrate::init_logging();
    let outcomes = kill_in_each_phase(Victim::SourcePrimary).await;
    eprintln!("source primary killed: {outcomes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_whose_target_primary_is_killed_in_any_phase_ends_done_or_aborted() {
    crate::orchestrate::init_logging();
    let outcomes = kill_in_each_phase(Victim::TargetPrimary).await;
    eprintln!("target primary killed: {outcomes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_whose_proxy_is_killed_in_any_phase_ends_done_or_aborted() {
    crate::orchestrate::init_logging();
    let outcomes = kill_in_each_phase(Victim::Proxy).await;
    eprintln!("proxy killed: {outcomes:?}");
}
