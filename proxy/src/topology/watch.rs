//! Keeping a proxy's topology current while the operator republishes it.
//!
//! Kubernetes mounts the ConfigMap as a directory in which `topology.json` is a symlink
//! through `..data`, and publishes a new version by renaming a fresh `..data` symlink over
//! the old one. A watch on the file itself only sees the old target vanish, so the watcher
//! watches the parent directory and re-reads the file on any change there. It also re-reads
//! on a timer and compares a hash of the content, because notifications can be lost
//! (inotify queue overflow, network filesystems, an exhausted inotify instance limit).

use std::hash::{DefaultHasher, Hash, Hasher};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use notify::event::{AccessKind, AccessMode};
use notify::{EventKind, RecommendedWatcher, RecursiveMode, Watcher as _};
use tokio::sync::{Notify, oneshot, watch};
use tokio::time::{self, Instant, MissedTickBehavior};
use tracing::{debug, info, warn};

use super::diff::TopologyDiff;
use super::{Topology, TopologyError};

/// How often the file is re-read when no notification arrives.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(2);

/// Keeps a zero interval from turning the timer into a busy loop.
const MIN_POLL_INTERVAL: Duration = Duration::from_millis(10);

/// Lets a burst of events end before the read: kubelet's swap alone is several events.
const SETTLE_DELAY: Duration = Duration::from_millis(20);

/// What became of a topology file whose content changed; the labels of the reload metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ReloadOutcome {
    /// A higher epoch replaced the topology in force.
    Applied,
    /// A valid document that broke the epoch rule, named another cluster or changed nothing.
    Ignored,
    /// The file could not be read, parsed or validated.
    Invalid,
}

impl ReloadOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Ignored => "ignored",
            Self::Invalid => "invalid",
        }
    }
}

/// Called from the watcher's task after each reload, e.g. to count reloads in metrics.
pub type ReloadObserver = Arc<dyn Fn(ReloadOutcome) + Send + Sync>;

/// How a [`TopologyWatcher`] notices changes.
#[derive(Clone)]
pub struct WatchOptions {
    /// Period of the fallback re-read.
    pub poll_interval: Duration,
    /// Watch the parent directory for filesystem events; when false only the timer is used.
    pub notify: bool,
    /// Told of every reload, e.g. to count them in metrics.
    pub observer: Option<ReloadObserver>,
}

impl WatchOptions {
    /// Sets the function told of every reload.
    pub fn on_reload(mut self, observer: impl Fn(ReloadOutcome) + Send + Sync + 'static) -> Self {
        self.observer = Some(Arc::new(observer));
        self
    }
}

impl Default for WatchOptions {
    fn default() -> Self {
        Self {
            poll_interval: DEFAULT_POLL_INTERVAL,
            notify: true,
            observer: None,
        }
    }
}

impl std::fmt::Debug for WatchOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WatchOptions")
            .field("poll_interval", &self.poll_interval)
            .field("notify", &self.notify)
            .field("observer", &self.observer.is_some())
            .finish()
    }
}

/// The proxy's live view of the topology file.
///
/// Dropping the watcher stops the background task; subscribers then see their channel close.
pub struct TopologyWatcher {
    path: PathBuf,
    current: Arc<ArcSwap<Topology>>,
    applier: Arc<Applier>,
    updates: watch::Receiver<Arc<Topology>>,
    fs_watcher: Option<RecommendedWatcher>,
    /// Dropped with the watcher, which tells the background task to stop.
    _stop: oneshot::Sender<()>,
}

impl TopologyWatcher {
    /// Loads the topology at `path` and keeps it current. Fails when the file cannot be read
    /// or is not a valid topology: a proxy does not start blind.
    pub async fn start(
        path: impl Into<PathBuf>,
        poll_interval: Duration,
    ) -> Result<(Self, watch::Receiver<Arc<Topology>>), TopologyError> {
        let options = WatchOptions {
            poll_interval,
            ..WatchOptions::default()
        };
        Self::start_with(path, options).await
    }

    /// As [`TopologyWatcher::start`], with every option.
    pub async fn start_with(
        path: impl Into<PathBuf>,
        options: WatchOptions,
    ) -> Result<(Self, watch::Receiver<Arc<Topology>>), TopologyError> {
        let path = path.into();
        let events = Arc::new(Notify::new());
        // Watch before the first read so that a change in between is not missed.
        let fs_watcher = if options.notify {
            watch_directory(&path, Arc::clone(&events))
        } else {
            None
        };
        let (topology, hash) = load(&path).await?;
        Ok(Self::launch(
            path, options, topology, hash, fs_watcher, events,
        ))
    }

    /// Waits until `path` holds a valid topology, then starts as [`TopologyWatcher::start_with`].
    /// For a proxy told to wait for its topology; bound it with a timeout if needed.
    pub async fn wait_for(
        path: impl Into<PathBuf>,
        options: WatchOptions,
    ) -> (Self, watch::Receiver<Arc<Topology>>) {
        let path = path.into();
        let mut last_error = None;
        loop {
            match Self::try_start(&path, &options).await {
                Ok(started) => return started,
                Err(error) => log_wait(&path, &error, &mut last_error),
            }
            time::sleep(options.poll_interval.max(MIN_POLL_INTERVAL)).await;
        }
    }

    /// Sets up the directory watch only once the file is valid, so that a missing directory
    /// does not produce a warning on every attempt.
    async fn try_start(
        path: &Path,
        options: &WatchOptions,
    ) -> Result<(Self, watch::Receiver<Arc<Topology>>), TopologyError> {
        load(path).await?;
        Self::start_with(path, options.clone()).await
    }

    /// The topology in force now; cheap enough for every routing decision.
    pub fn current(&self) -> Arc<Topology> {
        self.current.load_full()
    }

    /// A receiver that is notified whenever a new topology is applied.
    pub fn subscribe(&self) -> watch::Receiver<Arc<Topology>> {
        self.updates.clone()
    }

    /// The watched file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where documents pushed by the operator (to the admin endpoint) are offered: judged by
    /// the same epoch rule as the file, one at a time with it, so the faster of the two wins
    /// and neither can take the proxy back.
    pub fn inbox(&self) -> TopologyInbox {
        TopologyInbox(Arc::clone(&self.applier))
    }

    fn launch(
        path: PathBuf,
        options: WatchOptions,
        topology: Topology,
        hash: u64,
        fs_watcher: Option<RecommendedWatcher>,
        events: Arc<Notify>,
    ) -> (Self, watch::Receiver<Arc<Topology>>) {
        info!(
            path = %path.display(),
            cluster = %topology.cluster,
            epoch = topology.epoch,
            notify = fs_watcher.is_some(),
            poll_interval_ms = options.poll_interval.as_millis(),
            "watching the topology file"
        );
        let topology = Arc::new(topology);
        let current = Arc::new(ArcSwap::new(Arc::clone(&topology)));
        let (sender, updates) = watch::channel(topology);
        let (stop, stopped) = oneshot::channel();
        let applier = Arc::new(Applier {
            current: Arc::clone(&current),
            updates: sender,
            turn: std::sync::Mutex::new(()),
        });
        let reloader = Reloader {
            path: path.clone(),
            applier: Arc::clone(&applier),
            seen: Seen::Content(hash),
        };
        let poll_interval = options.poll_interval.max(MIN_POLL_INTERVAL);
        tokio::spawn(run(
            reloader,
            events,
            stopped,
            poll_interval,
            options.observer,
        ));
        let watcher = Self {
            path,
            current,
            applier,
            updates: updates.clone(),
            fs_watcher,
            _stop: stop,
        };
        (watcher, updates)
    }
}

impl std::fmt::Debug for TopologyWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopologyWatcher")
            .field("path", &self.path)
            .field("epoch", &self.current.load().epoch)
            .field("notify", &self.fs_watcher.is_some())
            .finish()
    }
}

/// Logs a failed wait once per distinct error, not once per attempt.
fn log_wait(path: &Path, error: &TopologyError, last_error: &mut Option<String>) {
    let message = error.to_string();
    if last_error.as_deref() != Some(message.as_str()) {
        warn!(path = %path.display(), error = %message, "waiting for a valid topology");
        *last_error = Some(message);
    }
}

async fn load(path: &Path) -> Result<(Topology, u64), TopologyError> {
    let bytes = tokio::fs::read(path)
        .await
        .map_err(|source| TopologyError::Read {
            path: path.to_owned(),
            source,
        })?;
    Ok((Topology::parse(&bytes)?, content_hash(&bytes)))
}

fn content_hash(bytes: &[u8]) -> u64 {
    let mut hasher = DefaultHasher::new();
    bytes.hash(&mut hasher);
    hasher.finish()
}

/// Re-reads on every filesystem event or timer tick until the watcher is dropped.
async fn run(
    mut reloader: Reloader,
    events: Arc<Notify>,
    mut stopped: oneshot::Receiver<()>,
    poll_interval: Duration,
    observer: Option<ReloadObserver>,
) {
    let mut ticker = time::interval_at(Instant::now() + poll_interval, poll_interval);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = &mut stopped => break,
            () = events.notified() => time::sleep(SETTLE_DELAY).await,
            _ = ticker.tick() => {}
        }
        let outcome = reloader.reload().await;
        if let (Some(outcome), Some(observer)) = (outcome, &observer) {
            observer(outcome);
        }
    }
    debug!(path = %reloader.path.display(), "topology watcher stopped");
}

/// Watches the directory holding `path`. Failure is not fatal: the timer still re-reads.
fn watch_directory(path: &Path, events: Arc<Notify>) -> Option<RecommendedWatcher> {
    let dir = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent.to_owned(),
        _ => PathBuf::from("."),
    };
    // Runs on notify's own thread; `Notify` keeps one pending wake-up, so a burst of events
    // costs one read and nothing blocks here.
    let handler = move |event: notify::Result<notify::Event>| match event {
        Ok(event) if is_relevant(event.kind) => events.notify_one(),
        Ok(_) => {}
        Err(error) => {
            warn!(%error, "filesystem notification error; re-reading the topology");
            events.notify_one();
        }
    };
    let watcher = notify::recommended_watcher(handler).and_then(|mut watcher| {
        watcher.watch(&dir, RecursiveMode::NonRecursive)?;
        Ok(watcher)
    });
    match watcher {
        Ok(watcher) => Some(watcher),
        Err(error) => {
            warn!(
                dir = %dir.display(),
                %error,
                "cannot watch the topology directory; relying on the periodic re-read"
            );
            None
        }
    }
}

/// Opening a file changes nothing, and the watcher's own reads would otherwise wake it
/// again and again.
fn is_relevant(kind: EventKind) -> bool {
    match kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) => false,
        _ => true,
    }
}

/// What the last read found, so an unchanged file is neither re-parsed nor re-logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    Content(u64),
    Unreadable(io::ErrorKind),
}

/// What to do with a valid document, given the topology in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    Apply,
    /// Same epoch, same content: a rewrite that changes nothing.
    Same,
    /// Lower epoch: a proxy never goes back.
    Stale,
    /// Same epoch, different content: the operator must raise the epoch.
    EpochReused,
    /// A proxy serves one cluster for its whole life.
    OtherCluster,
}

fn judge(current: &Topology, candidate: &Topology) -> Verdict {
    if candidate.cluster != current.cluster {
        return Verdict::OtherCluster;
    }
    match candidate.epoch.cmp(&current.epoch) {
        std::cmp::Ordering::Greater => Verdict::Apply,
        std::cmp::Ordering::Less => Verdict::Stale,
        std::cmp::Ordering::Equal if candidate == current => Verdict::Same,
        std::cmp::Ordering::Equal => Verdict::EpochReused,
    }
}

/// The topology in force and its subscribers, and the one way to change them.
struct Applier {
    current: Arc<ArcSwap<Topology>>,
    updates: watch::Sender<Arc<Topology>>,
    /// Judging and applying are one step: two documents offered at once (the file and a push)
    /// must not both pass the epoch test against the same old topology.
    turn: std::sync::Mutex<()>,
}

/// A handle that offers topology documents pushed to the proxy; see
/// [`TopologyWatcher::inbox`].
#[derive(Clone)]
pub struct TopologyInbox(Arc<Applier>);

impl std::fmt::Debug for TopologyInbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TopologyInbox")
            .field("epoch", &self.0.current.load().epoch)
            .finish()
    }
}

impl TopologyInbox {
    /// Offers a pushed document: applied when its epoch is higher, as a file would be.
    pub fn offer(&self, bytes: &[u8]) -> ReloadOutcome {
        self.0.consider(bytes, "a pushed document")
    }
}

/// The background task's state: the file and what its last read found.
struct Reloader {
    path: PathBuf,
    applier: Arc<Applier>,
    seen: Seen,
}

impl Reloader {
    /// Re-reads the file; `None` when its content is what the last read found.
    async fn reload(&mut self) -> Option<ReloadOutcome> {
        let read = tokio::fs::read(&self.path).await;
        let seen = match &read {
            Ok(bytes) => Seen::Content(content_hash(bytes)),
            Err(error) => Seen::Unreadable(error.kind()),
        };
        if seen == self.seen {
            return None;
        }
        self.seen = seen;
        match read {
            Ok(bytes) => Some(self.applier.consider(&bytes, "the topology file")),
            Err(error) => {
                warn!(
                    path = %self.path.display(),
                    %error,
                    "cannot read the topology file; keeping the current topology"
                );
                Some(ReloadOutcome::Invalid)
            }
        }
    }
}

impl Applier {
    fn consider(&self, bytes: &[u8], from: &str) -> ReloadOutcome {
        let candidate = match Topology::parse(bytes) {
            Ok(candidate) => candidate,
            Err(error) => {
                warn!(
                    from,
                    %error,
                    current_epoch = self.current.load().epoch,
                    "ignoring an invalid topology document; keeping the current topology"
                );
                return ReloadOutcome::Invalid;
            }
        };
        let _turn = self.turn.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.current.load_full();
        let verdict = judge(&current, &candidate);
        match verdict {
            Verdict::Apply => self.apply(&current, candidate, from),
            Verdict::Same => debug!(
                epoch = current.epoch,
                "topology file rewritten without changes"
            ),
            Verdict::Stale => warn!(
                epoch = candidate.epoch,
                current_epoch = current.epoch,
                "ignoring a topology with a lower epoch; a proxy never goes back"
            ),
            Verdict::EpochReused => warn!(
                epoch = candidate.epoch,
                "ignoring a topology that changed without a new epoch"
            ),
            Verdict::OtherCluster => warn!(
                cluster = %candidate.cluster,
                current_cluster = %current.cluster,
                "ignoring a topology for another cluster"
            ),
        }
        if verdict == Verdict::Apply {
            ReloadOutcome::Applied
        } else {
            ReloadOutcome::Ignored
        }
    }

    fn apply(&self, old: &Topology, new: Topology, from: &str) {
        info!(
            from,
            cluster = %new.cluster,
            from_epoch = old.epoch,
            epoch = new.epoch,
            state = %new.state,
            primary = new.primary.as_ref().map_or("none", |p| p.name.as_str()),
            changes = %TopologyDiff::between(old, &new),
            "topology updated"
        );
        let new = Arc::new(new);
        self.current.store(Arc::clone(&new));
        // `send_replace` succeeds even when nobody subscribed.
        self.updates.send_replace(new);
    }
}

#[cfg(test)]
mod tests {
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
}
