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

use super::TopologyDiff;
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
mod tests;
