use tokio::time::timeout;

use super::super::{Flavor, Member, TopologyState};
use super::*;

/// Generous for a loaded machine; a working watcher reacts in milliseconds.
const WITHIN: Duration = Duration::from_secs(3);
/// Long enough that only a filesystem notification can explain a prompt update.
const NO_POLL: Duration = Duration::from_secs(3600);
const FAST_POLL: Duration = Duration::from_millis(50);

fn demo(epoch: u64) -> Topology {
    Topology {
        cluster: "demo".into(),
        flavor: Flavor::Mariadb,
        epoch,
        state: TopologyState::Ready,
        primary: Some(Member::new("demo-0", "127.0.0.1", 3306)),
        replicas: vec![Member::new("demo-1", "127.0.0.1", 3307)],
        consistency: None,
        read_only: false,
    }
}

fn promoted(epoch: u64) -> Topology {
    Topology {
        primary: Some(Member::new("demo-1", "127.0.0.1", 3307)),
        replicas: vec![Member::new("demo-0", "127.0.0.1", 3306)],
        ..demo(epoch)
    }
}

fn options(poll_interval: Duration, notify: bool) -> WatchOptions {
    WatchOptions {
        poll_interval,
        notify,
        observer: None,
    }
}

async fn wait_for_epoch(rx: &mut watch::Receiver<Arc<Topology>>, epoch: u64) {
    let seen = timeout(WITHIN, async {
        rx.wait_for(|t| t.epoch == epoch).await.map(|_| ())
    })
    .await;
    assert!(
        matches!(seen, Ok(Ok(()))),
        "epoch {epoch} not seen within {WITHIN:?}"
    );
}

/// Waits until `condition` holds, for far longer than a working watcher needs.
async fn eventually(what: &str, condition: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(Instant::now() < deadline, "{what}: not within 10s");
        time::sleep(Duration::from_millis(10)).await;
    }
}

/// Gives the watcher time to react to something it must ignore.
async fn settle() {
    time::sleep(Duration::from_millis(300)).await;
}

fn reloader_for(path: &Path, topology: Topology) -> (Reloader, watch::Receiver<Arc<Topology>>) {
    let topology = Arc::new(topology);
    let (updates, rx) = watch::channel(Arc::clone(&topology));
    let reloader = Reloader {
        path: path.to_owned(),
        applier: Arc::new(Applier {
            current: Arc::new(ArcSwap::new(topology)),
            updates,
            turn: std::sync::Mutex::new(()),
        }),
        seen: Seen::Content(0),
    };
    (reloader, rx)
}

#[tokio::test]
async fn pushed_documents_follow_the_epoch_rule_with_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("topology.json");
    let (mut reloader, rx) = reloader_for(&path, demo(7));
    let inbox = TopologyInbox(Arc::clone(&reloader.applier));
    let json = |t: &Topology| serde_json::to_vec(t).unwrap();
    assert_eq!(inbox.offer(&json(&promoted(9))), ReloadOutcome::Applied);
    assert_eq!(**rx.borrow(), promoted(9));
    // The file, slower, brings an older epoch: it cannot take the proxy back.
    demo(8).write_atomically(&path).unwrap();
    assert_eq!(reloader.reload().await, Some(ReloadOutcome::Ignored));
    assert_eq!(inbox.offer(&json(&demo(8))), ReloadOutcome::Ignored);
    assert_eq!(inbox.offer(b"{ not json"), ReloadOutcome::Invalid);
    assert_eq!(*reloader.applier.current.load_full(), promoted(9));
}

#[test]
fn judge_follows_the_epoch_rule() {
    let current = demo(7);
    assert_eq!(judge(&current, &demo(8)), Verdict::Apply);
    assert_eq!(judge(&current, &demo(6)), Verdict::Stale);
    assert_eq!(judge(&current, &demo(7)), Verdict::Same);
    assert_eq!(judge(&current, &promoted(7)), Verdict::EpochReused);
    let other = Topology {
        cluster: "other".into(),
        ..demo(9)
    };
    assert_eq!(judge(&current, &other), Verdict::OtherCluster);
}

#[test]
fn only_reads_are_irrelevant_events() {
    use notify::event::{CreateKind, ModifyKind, RenameMode};
    assert!(!is_relevant(EventKind::Access(AccessKind::Open(
        AccessMode::Any
    ))));
    assert!(!is_relevant(EventKind::Access(AccessKind::Close(
        AccessMode::Read
    ))));
    assert!(is_relevant(EventKind::Access(AccessKind::Close(
        AccessMode::Write
    ))));
    assert!(is_relevant(EventKind::Create(CreateKind::Any)));
    assert!(is_relevant(EventKind::Modify(ModifyKind::Name(
        RenameMode::To
    ))));
    assert!(is_relevant(EventKind::Remove(
        notify::event::RemoveKind::Any
    )));
}

#[tokio::test]
async fn reloader_applies_a_higher_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("topology.json");
    let (mut reloader, rx) = reloader_for(&path, demo(7));
    promoted(8).write_atomically(&path).unwrap();
    assert_eq!(reloader.reload().await, Some(ReloadOutcome::Applied));
    assert_eq!(reloader.reload().await, None);
    assert_eq!(*reloader.applier.current.load_full(), promoted(8));
    assert!(rx.has_changed().unwrap());
    assert_eq!(**rx.borrow(), promoted(8));
}

#[tokio::test]
async fn reloader_ignores_lower_and_reused_epochs() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("topology.json");
    let (mut reloader, rx) = reloader_for(&path, demo(7));
    for ignored in [promoted(6), promoted(7)] {
        ignored.write_atomically(&path).unwrap();
        assert_eq!(reloader.reload().await, Some(ReloadOutcome::Ignored));
        assert_eq!(*reloader.applier.current.load_full(), demo(7));
        assert!(!rx.has_changed().unwrap());
    }
}

#[tokio::test]
async fn reloader_ignores_a_reformatted_document() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("topology.json");
    let (mut reloader, rx) = reloader_for(&path, demo(7));
    let compact = serde_json::to_string(&demo(7)).unwrap();
    std::fs::write(&path, compact).unwrap();
    assert_eq!(reloader.reload().await, Some(ReloadOutcome::Ignored));
    assert!(!rx.has_changed().unwrap());
}

#[tokio::test]
async fn reloader_keeps_the_last_good_topology() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("topology.json");
    let (mut reloader, rx) = reloader_for(&path, demo(7));
    let other = Topology {
        cluster: "other".into(),
        ..demo(9)
    };
    // Missing file, broken JSON, an invalid document, another cluster.
    assert_eq!(reloader.reload().await, Some(ReloadOutcome::Invalid));
    assert_eq!(
        reloader.reload().await,
        None,
        "the same error is reported once"
    );
    std::fs::write(&path, "{ not json").unwrap();
    assert_eq!(reloader.reload().await, Some(ReloadOutcome::Invalid));
    std::fs::write(&path, r#"{"cluster":"demo","epoch":9}"#).unwrap();
    assert_eq!(reloader.reload().await, Some(ReloadOutcome::Invalid));
    other.write_atomically(&path).unwrap();
    assert_eq!(reloader.reload().await, Some(ReloadOutcome::Ignored));
    assert_eq!(*reloader.applier.current.load_full(), demo(7));
    assert!(!rx.has_changed().unwrap());
    demo(9).write_atomically(&path).unwrap();
    assert_eq!(reloader.reload().await, Some(ReloadOutcome::Applied));
    assert_eq!(reloader.applier.current.load().epoch, 9);
}

#[tokio::test]
async fn start_fails_without_a_valid_topology() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("topology.json");
    let err = TopologyWatcher::start(&path, NO_POLL).await.unwrap_err();
    assert!(matches!(err, TopologyError::Read { .. }), "{err}");
    std::fs::write(&path, r#"{"cluster":""}"#).unwrap();
    let err = TopologyWatcher::start(&path, NO_POLL).await.unwrap_err();
    assert_eq!(err.to_string(), "topology field `flavor`: is required");
}

#[tokio::test]
async fn notices_an_atomic_rewrite() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("topology.json");
    demo(7).write_atomically(&path).unwrap();
    let (watcher, mut rx) = TopologyWatcher::start(&path, NO_POLL).await.unwrap();
    assert_eq!(*watcher.current(), demo(7));
    promoted(8).write_atomically(&path).unwrap();
    wait_for_epoch(&mut rx, 8).await;
    assert_eq!(*watcher.current(), promoted(8));
    let mut late = watcher.subscribe();
    assert_eq!(late.borrow_and_update().epoch, 8);
}

#[tokio::test]
async fn ignores_a_lower_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("topology.json");
    demo(7).write_atomically(&path).unwrap();
    let (watcher, mut rx) = TopologyWatcher::start(&path, FAST_POLL).await.unwrap();
    promoted(5).write_atomically(&path).unwrap();
    settle().await;
    assert_eq!(*watcher.current(), demo(7));
    assert!(!rx.has_changed().unwrap());
    promoted(9).write_atomically(&path).unwrap();
    wait_for_epoch(&mut rx, 9).await;
}

#[tokio::test]
async fn ignores_garbage_then_applies_a_good_document() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("topology.json");
    demo(7).write_atomically(&path).unwrap();
    let (watcher, mut rx) = TopologyWatcher::start(&path, NO_POLL).await.unwrap();
    std::fs::write(&path, b"\x00garbage").unwrap();
    settle().await;
    assert_eq!(*watcher.current(), demo(7));
    assert!(!rx.has_changed().unwrap());
    promoted(8).write_atomically(&path).unwrap();
    wait_for_epoch(&mut rx, 8).await;
}

/// Builds the layout kubelet gives a ConfigMap volume.
#[cfg(unix)]
fn publish_version(root: &Path, version: &str, topology: &Topology) {
    std::fs::create_dir(root.join(version)).unwrap();
    topology
        .write_atomically(&root.join(version).join("topology.json"))
        .unwrap();
}

#[cfg(unix)]
#[tokio::test]
async fn follows_a_kubernetes_configmap_swap() {
    use std::os::unix::fs::symlink;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    publish_version(root, "..2026_a", &demo(7));
    symlink("..2026_a", root.join("..data")).unwrap();
    symlink("..data/topology.json", root.join("topology.json")).unwrap();
    let (watcher, mut rx) = TopologyWatcher::start(root.join("topology.json"), NO_POLL)
        .await
        .unwrap();
    assert_eq!(watcher.current().epoch, 7);

    // Exactly what kubelet does: new version directory, new symlink renamed over `..data`.
    publish_version(root, "..2026_b", &promoted(8));
    symlink("..2026_b", root.join("..data_tmp")).unwrap();
    std::fs::rename(root.join("..data_tmp"), root.join("..data")).unwrap();
    std::fs::remove_dir_all(root.join("..2026_a")).unwrap();

    wait_for_epoch(&mut rx, 8).await;
    assert_eq!(*watcher.current(), promoted(8));
}

#[tokio::test]
async fn polling_alone_notices_changes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("topology.json");
    demo(7).write_atomically(&path).unwrap();
    let (watcher, mut rx) = TopologyWatcher::start_with(&path, options(FAST_POLL, false))
        .await
        .unwrap();
    assert!(format!("{watcher:?}").contains("notify: false"));
    promoted(8).write_atomically(&path).unwrap();
    wait_for_epoch(&mut rx, 8).await;
}

#[tokio::test]
async fn reports_reload_outcomes() {
    use std::sync::Mutex;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("topology.json");
    demo(7).write_atomically(&path).unwrap();
    let outcomes = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&outcomes);
    let options = options(FAST_POLL, false).on_reload(move |o| sink.lock().unwrap().push(o));
    let (_watcher, mut rx) = TopologyWatcher::start_with(&path, options).await.unwrap();
    let seen = |outcome: ReloadOutcome| outcomes.lock().unwrap().contains(&outcome);
    // Renamed into place, so no read can see it half written; kept until the poller
    // has judged it.
    let tmp = dir.path().join("topology.json.tmp");
    std::fs::write(&tmp, "garbage").unwrap();
    std::fs::rename(&tmp, &path).unwrap();
    eventually("the garbage reported", || seen(ReloadOutcome::Invalid)).await;
    demo(8).write_atomically(&path).unwrap();
    wait_for_epoch(&mut rx, 8).await;
    // The observer runs just after subscribers are told.
    eventually("the new epoch reported", || seen(ReloadOutcome::Applied)).await;
    let mut reported = outcomes.lock().unwrap().clone();
    reported.dedup();
    assert_eq!(reported, [ReloadOutcome::Invalid, ReloadOutcome::Applied]);
    assert_eq!(ReloadOutcome::Applied.as_str(), "applied");
}

#[tokio::test]
async fn dropping_the_watcher_stops_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("topology.json");
    demo(7).write_atomically(&path).unwrap();
    let (watcher, mut rx) = TopologyWatcher::start(&path, FAST_POLL).await.unwrap();
    drop(watcher);
    let closed = timeout(WITHIN, rx.changed()).await;
    assert!(matches!(closed, Ok(Err(_))), "watcher still running");
}

#[tokio::test]
async fn wait_for_returns_once_a_valid_topology_appears() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("topology.json");
    let writer_path = path.clone();
    let writer = tokio::spawn(async move {
        time::sleep(Duration::from_millis(100)).await;
        std::fs::write(&writer_path, "not yet").unwrap();
        time::sleep(Duration::from_millis(100)).await;
        demo(7).write_atomically(&writer_path).unwrap();
    });
    let started = timeout(
        WITHIN,
        TopologyWatcher::wait_for(&path, options(FAST_POLL, true)),
    )
    .await;
    let (watcher, _rx) = started.expect("no valid topology seen");
    assert_eq!(watcher.current().epoch, 7);
    assert_eq!(watcher.path(), path);
    writer.await.unwrap();
}
