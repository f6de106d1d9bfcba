//! The loop: observe, plan, act, record — one tick at a time.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lagless_core::topology::{Flavor, Topology};

use super::act::{Actor, ProxyAccount, Seeder, Stored, TopologySink};
use super::observe::{Credentials, Observer};
use super::plan::{Action, ClusterState, Event, Plan, plan};
use super::view::CaSource;
use super::view::{ClusterSpec, ClusterView, History};

/// How often the proxies' accounts are looked for on the primary.
const ACCOUNTS_CHECK_INTERVAL: Duration = Duration::from_secs(30);
/// How long that may take (it writes, so it waits for a semi-sync acknowledgement).
const ACCOUNTS_TIMEOUT: Duration = Duration::from_secs(3);

/// How often members reload their certificate files even when the operator saw no change
/// (in Kubernetes the files change in the pods, where the operator cannot watch them).
const TLS_RELOAD_INTERVAL: Duration = Duration::from_secs(60);
/// How long one member's reload may take.
const TLS_RELOAD_TIMEOUT: Duration = Duration::from_secs(3);

/// Ticks in a row an action must fail before [`Orchestrator::failing`] reports it.
pub const FAILING_TICKS: u32 = 3;

/// Whether the members' certificates are due a reload: never done, the files changed since,
/// or the interval passed.
fn reload_due(
    last: Option<(Instant, Option<u64>)>,
    fingerprint: Option<u64>,
    now: Instant,
) -> bool {
    match last {
        None => true,
        Some((at, before)) => {
            before != fingerprint || now.saturating_duration_since(at) >= TLS_RELOAD_INTERVAL
        }
    }
}

/// How often the stored topology document is read back (see [`Orchestrator::tick`]).
const STORED_CHECK_INTERVAL: Duration = Duration::from_secs(2);

/// How many events [`Orchestrator::events`] keeps.
pub const EVENT_LOG_LEN: usize = 100;

/// A recorded event and when it was recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimedEvent {
    /// Wall-clock time, milliseconds since the Unix epoch.
    pub unix_ms: u64,
    pub event: Event,
}

/// Drives one cluster.
pub struct Orchestrator {
    pub spec: ClusterSpec,
    pub flavor: Flavor,
    observer: Observer,
    actor: Actor,
    sink: Box<dyn TopologySink>,
    history: History,
    published: Option<Topology>,
    started: Instant,
    events: EventLog,
    last_state: Option<ClusterState>,
    last_view: Option<ClusterView>,
    stored_checked: Option<Instant>,
    /// The action that failed on the last tick and why, and on how many ticks in a row.
    failing: Option<(String, u32)>,
    /// When the proxies' accounts were last looked for, and whether their passwords were set.
    accounts_checked: Option<Instant>,
    accounts_converged: bool,
    /// When the members last reloaded their certificates, and the files' fingerprint then.
    tls_reloaded: Option<(Instant, Option<u64>)>,
    /// The CAs trusted since the last reload every member took: a member still serving a
    /// certificate of a CA that was just replaced is reached through the old one, to be told
    /// to reload.
    tls_trusted: Vec<Vec<u8>>,
    /// The CA's own source while the spec holds a bundle of trusted CAs.
    tls_source: Option<CaSource>,
    /// The reload running now.
    tls_task: Option<tokio::task::JoinHandle<TlsReload>>,
}

/// What one round of certificate reloads found.
#[derive(Debug)]
struct TlsReload {
    /// The CA the round was for.
    ca: Option<Vec<u8>>,
    /// The files had changed since the round before.
    changed: bool,
    results: Vec<(String, Result<(), String>)>,
}

/// The recent events, for status displays.
#[derive(Debug, Default)]
struct EventLog {
    entries: VecDeque<TimedEvent>,
    /// The previous plan's warnings: a condition that lasts is logged once, not every tick.
    warnings: BTreeSet<String>,
}

impl EventLog {
    /// Logs one plan's events, and returns those that are new (every event but the warnings
    /// the previous plan already gave).
    fn record<'e>(&mut self, events: &'e [Event], unix_ms: u64) -> Vec<&'e Event> {
        let previous = std::mem::take(&mut self.warnings);
        let mut new = Vec::new();
        for event in events {
            if let Some(message) = event.warning() {
                self.warnings.insert(message.to_string());
                if previous.contains(message) {
                    continue;
                }
            }
            if self.entries.len() == EVENT_LOG_LEN {
                self.entries.pop_front();
            }
            self.entries.push_back(TimedEvent {
                unix_ms,
                event: event.clone(),
            });
            new.push(event);
        }
        new
    }
}

impl std::fmt::Debug for Orchestrator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Orchestrator")
            .field("cluster", &self.spec.cluster)
            .field("published", &self.published.as_ref().map(|t| t.epoch))
            .finish()
    }
}

impl Orchestrator {
    /// `published` is the topology the proxies follow now, if any (e.g. read back from the file).
    pub fn new(
        spec: ClusterSpec,
        flavor: Flavor,
        observer: Observer,
        actor: Actor,
        sink: Box<dyn TopologySink>,
        published: Option<Topology>,
    ) -> Self {
        let history = History {
            max_epoch: published.as_ref().map_or(0, |t| t.epoch),
            ..History::default()
        };
        Self {
            spec,
            flavor,
            observer,
            actor,
            sink,
            history,
            published,
            started: Instant::now(),
            events: EventLog::default(),
            last_state: None,
            last_view: None,
            stored_checked: None,
            failing: None,
            accounts_checked: None,
            accounts_converged: false,
            tls_reloaded: None,
            tls_trusted: Vec::new(),
            tls_source: None,
            tls_task: None,
        }
    }

    /// Remembers a switchover request that already completed (read back from where the
    /// platform recorded it), so a restarted operator does not run it again.
    pub fn with_completed_switchover(mut self, id: Option<String>) -> Self {
        self.history.completed_switchover = id;
        self
    }

    /// Remembers the highest epoch ever published (read back from where the platform recorded
    /// it), so the next topology is above it even if the published document was lost.
    pub fn with_max_epoch(mut self, epoch: u64) -> Self {
        self.history.max_epoch = self.history.max_epoch.max(epoch);
        self
    }

    /// The accounts the proxies use: created with the cluster, put back when missing.
    pub fn with_proxy_accounts(mut self, accounts: Vec<ProxyAccount>) -> Self {
        self.actor.proxy_accounts = accounts;
        self
    }

    /// Lets the plan seed empty members: `seeder` copies the data, and the spec says seeding
    /// is possible.
    pub fn with_seeder(mut self, seeder: Arc<dyn Seeder>) -> Self {
        self.actor.seeder = Some(seeder);
        self.spec.seeding = true;
        self
    }

    /// An orchestrator with the default timings: a member that does not answer a probe within
    /// 500 ms counts as hung, statements time out after 2 s, and a candidate gets 30 s to catch
    /// up before a promotion gives up.
    pub fn with_defaults(
        spec: ClusterSpec,
        flavor: Flavor,
        admin: Credentials,
        replication: Credentials,
        sink: Box<dyn TopologySink>,
        published: Option<Topology>,
    ) -> Self {
        let actor = Actor {
            admin: admin.clone(),
            replication,
            app_users: Vec::new(),
            proxy_accounts: Vec::new(),
            statement_timeout: Duration::from_secs(2),
            catch_up_timeout: Duration::from_secs(30),
            seeder: None,
            fences: Default::default(),
        };
        let observer = Observer::new(admin, Duration::from_millis(500));
        Self::new(spec, flavor, observer, actor, sink, published)
    }

    pub fn published(&self) -> Option<&Topology> {
        self.published.as_ref()
    }

    pub fn history(&self) -> &History {
        &self.history
    }

    /// Takes `member` out of quarantine because the platform has just emptied it for a
    /// re-seed (an explicit request): an empty member is then seeded like a new one. Returns
    /// whether it was quarantined.
    pub fn release_for_reseed(&mut self, member: &str) -> bool {
        self.history.quarantined.remove(member).is_some()
    }

    /// The last [`EVENT_LOG_LEN`] recorded events, oldest first. A warning appears when it
    /// starts (or changes), not on every tick it lasts.
    pub fn events(&self) -> impl Iterator<Item = &TimedEvent> {
        self.events.entries.iter()
    }

    /// What the last tick observed, for status displays.
    pub fn last_view(&self) -> Option<&ClusterView> {
        self.last_view.as_ref()
    }

    /// The action that has failed on [`FAILING_TICKS`] ticks in a row or more, and why: a
    /// repair that keeps failing (a primary left read-only because semi-sync cannot be turned
    /// on, say) is reported rather than only retried.
    pub fn failing(&self) -> Option<&str> {
        self.failing
            .as_ref()
            .filter(|(_, ticks)| *ticks >= FAILING_TICKS)
            .map(|(why, _)| why.as_str())
    }

    /// The state of the last tick's plan, if any tick ran.
    pub fn last_plan_state(&self) -> Option<ClusterState> {
        self.last_state
    }

    /// One round. Actions run in order and stop at the first failure; the events of the plan
    /// are recorded only when every action succeeded, so a failed promotion is planned again.
    /// A planned switchover that fails before its promotion is rolled back instead (see
    /// [`Rollback`](super::plan::Rollback)), and the returned plan's events say so.
    pub async fn tick(&mut self) -> Plan {
        // Whoever replaces the spec need not remember: seeding is possible when a seeder is.
        self.spec.seeding = self.actor.seeder.is_some();
        self.widen_trust();
        // Paused, nothing is written: not even a lost topology document is put back.
        if !self.spec.paused {
            self.check_stored().await;
        }
        let view = self
            .observer
            .observe(&self.spec, self.flavor, self.published.as_ref())
            .await;
        self.history.now_ms = self.started.elapsed().as_millis() as u64;
        let mut plan = plan(&view, &self.spec, &self.history);
        let failure = self.run_actions(&plan.actions, &view).await;
        self.failing = failure.as_ref().map(|(index, error)| {
            let what = plan
                .actions
                .get(*index)
                .map_or_else(String::new, Action::label);
            // The same action failing again counts, whatever its error says this time.
            let ticks = match &self.failing {
                Some((before, n)) if before.starts_with(&format!("{what} failed:")) => {
                    n.saturating_add(1)
                }
                _ => 1,
            };
            (format!("{what} failed: {error}"), ticks)
        });
        let recorded = match failure {
            None => plan.events.clone(),
            Some((index, error)) => {
                tracing::warn!(state = ?plan.state, %error, "action failed; planning again next tick");
                match plan.rollback.as_ref().filter(|r| r.covers(index)) {
                    Some(rollback) => {
                        let restored = self.run_actions(&rollback.actions, &view).await.is_none();
                        let event = rollback.event(error, restored);
                        // The caller sees what happened instead of the plan's promotion.
                        plan.events = vec![event.clone()];
                        vec![event]
                    }
                    None => promoted_before(&plan, index),
                }
            }
        };
        for event in &recorded {
            self.history.record(event);
        }
        let unix_ms = crate::clock::unix_ms();
        for event in self.events.record(&recorded, unix_ms) {
            if matches!(
                event,
                Event::Warning { .. }
                    | Event::SwitchoverRefused { .. }
                    | Event::SwitchoverFailed { .. }
            ) {
                tracing::warn!(%event, "cluster event");
            } else {
                tracing::info!(%event, "cluster event");
            }
        }
        if !self.spec.paused {
            self.ensure_proxy_accounts(&view).await;
        }
        // Certificates are still reloaded while paused: that changes no role or replication,
        // and a renewed certificate must be served before the old one expires.
        self.reload_tls(&view);
        self.last_state = Some(plan.state);
        self.last_view = Some(view);
        plan
    }

    /// Keeps the proxies' accounts on the primary: created and given the operator's passwords
    /// once, looked for again every [`ACCOUNTS_CHECK_INTERVAL`]. Off the failover path (never
    /// in the same step as a publish), bounded, and a failure only delays logins.
    async fn ensure_proxy_accounts(&mut self, view: &ClusterView) {
        if self.actor.proxy_accounts.is_empty()
            || self
                .accounts_checked
                .is_some_and(|at| at.elapsed() < ACCOUNTS_CHECK_INTERVAL)
        {
            return;
        }
        let Some(primary) = self
            .published
            .as_ref()
            .filter(|t| t.state == lagless_core::topology::TopologyState::Ready)
            .and_then(|t| t.primary.as_ref())
            .map(|p| p.name.clone())
        else {
            return;
        };
        if !view
            .member(&primary)
            .is_some_and(|m| m.is_reachable() && m.is_writable())
        {
            return;
        }
        self.accounts_checked = Some(Instant::now());
        let converge = !self.accounts_converged;
        let ensure = self
            .actor
            .ensure_proxy_accounts(&self.spec, &primary, view.flavor, converge);
        match tokio::time::timeout(ACCOUNTS_TIMEOUT, ensure).await {
            Ok(Ok(())) => self.accounts_converged = true,
            Ok(Err(e)) => {
                tracing::warn!(member = %primary, error = %e, "proxy accounts not ensured");
            }
            Err(_) => tracing::warn!(member = %primary, "proxy accounts not ensured in time"),
        }
    }

    /// Has every reachable member load its certificate files again (`FLUSH LOCAL SSL`): at
    /// once when the watched files change, else every [`TLS_RELOAD_INTERVAL`]. A renewed
    /// certificate then takes effect without a restart; connections already open keep theirs.
    /// The reloads run in a task of their own, so a member that hangs never holds up the tick
    /// (failure detection); the next reload waits until that task has finished.
    fn reload_tls(&mut self, view: &ClusterView) {
        if let Some(task) = self.tls_task.take_if(|t| t.is_finished()) {
            self.reloaded(task);
        }
        let Some(tls) = &self.spec.tls else {
            return;
        };
        let fingerprint = tls
            .watch
            .as_ref()
            .and_then(|dir| crate::tls::files::TlsFiles::new(dir).fingerprint());
        if self.tls_task.is_some() || !reload_due(self.tls_reloaded, fingerprint, Instant::now()) {
            return;
        }
        let changed = self
            .tls_reloaded
            .is_some_and(|(_, before)| before != fingerprint);
        self.tls_reloaded = Some((Instant::now(), fingerprint));
        // The CA as its source says now, and every CA trusted since the last reload that every
        // member took: a member still serving a certificate of a replaced CA is reached too.
        let source = self.tls_source.clone().unwrap_or_else(|| tls.ca.clone());
        let current = match &source {
            CaSource::File(path) => std::fs::read(path).ok(),
            CaSource::Pem(pem) => Some(pem.clone()),
        };
        if let Some(ca) = &current
            && !self.tls_trusted.contains(ca)
        {
            self.tls_trusted.push(ca.clone());
        }
        self.widen_trust();
        let tls = self.spec.tls.clone();
        let admin = self.actor.admin.clone();
        let flavor = view.flavor;
        let members: Vec<(String, String, u16)> = view
            .members
            .iter()
            .filter(|m| m.is_reachable())
            .filter_map(|m| self.spec.member(&m.name))
            .map(|m| (m.name.clone(), m.host.clone(), m.port))
            .collect();
        self.tls_task = Some(tokio::spawn(async move {
            let reloads = members.into_iter().map(|(name, host, port)| {
                let (admin, tls) = (admin.clone(), tls.clone());
                async move {
                    let reload = super::act::reload_tls(host, port, admin, tls, flavor);
                    let result = match tokio::time::timeout(TLS_RELOAD_TIMEOUT, reload).await {
                        Ok(result) => result,
                        Err(_) => Err("no answer in time".to_string()),
                    };
                    (name, result)
                }
            });
            TlsReload {
                ca: current,
                changed,
                results: futures::future::join_all(reloads).await,
            }
        }));
    }

    /// What a finished reload said: logged, and once every member took it, the CAs trusted
    /// only for the change-over are dropped.
    fn reloaded(&mut self, task: tokio::task::JoinHandle<TlsReload>) {
        let Some(Ok(done)) = futures::FutureExt::now_or_never(task) else {
            return;
        };
        for (member, result) in &done.results {
            match result {
                Ok(()) if done.changed => {
                    tracing::info!(member, "certificates reloaded after they changed")
                }
                Ok(()) => tracing::debug!(member, "certificates reloaded"),
                Err(e) => tracing::warn!(member, error = %e, "certificates not reloaded"),
            }
        }
        if done.results.iter().all(|(_, r)| r.is_ok()) {
            self.tls_trusted.retain(|ca| Some(ca) == done.ca.as_ref());
            self.widen_trust();
        }
    }

    /// Every connection of the operator (observing, acting, reloading) trusts each CA in
    /// `tls_trusted` while a change-over lasts, and the CA's own source again after it.
    fn widen_trust(&mut self) {
        let Some(tls) = self.spec.tls.as_mut() else {
            return;
        };
        if self.tls_trusted.len() > 1 {
            let bundle = CaSource::Pem(self.tls_trusted.join(&b'\n'));
            if tls.ca != bundle {
                // Whoever replaces the spec (the Kubernetes loop re-reads the Secret) gives a
                // new source; keep that, not a bundle of ours.
                self.tls_source = Some(std::mem::replace(&mut tls.ca, bundle));
            }
        } else if let Some(source) = self.tls_source.take() {
            tls.ca = source;
        }
    }

    /// Publishes the current topology again when its document is gone or is not what was
    /// published, under an epoch above every one published before, which the proxies still
    /// following the old document accept.
    async fn check_stored(&mut self) {
        if self
            .stored_checked
            .is_some_and(|at| at.elapsed() < STORED_CHECK_INTERVAL)
        {
            return;
        }
        self.stored_checked = Some(Instant::now());
        let Some(published) = &self.published else {
            return;
        };
        let why = match self.sink.stored().await {
            Stored::Unknown => return,
            Stored::Found(t) if t == *published => return,
            Stored::Found(t) => {
                // Whoever wrote it, the proxies may follow it: the next epoch goes above.
                self.history.max_epoch = self.history.max_epoch.max(t.epoch);
                format!("it holds epoch {} instead of {}", t.epoch, published.epoch)
            }
            Stored::Missing => "it is missing".to_string(),
            Stored::Unreadable(e) => format!("it cannot be read: {e}"),
        };
        let mut again = published.clone();
        again.epoch = self.history.max_epoch.max(again.epoch).saturating_add(1);
        tracing::warn!(
            epoch = published.epoch,
            next = again.epoch,
            reason = %why,
            "the topology document is not what was published; publishing it again"
        );
        match self.sink.publish(&again).await {
            Ok(()) => {
                self.history.max_epoch = again.epoch;
                self.published = Some(again);
            }
            Err(e) => tracing::warn!(error = %e, "publishing the topology again failed"),
        }
    }

    /// Runs `actions` in order up to the first failure: its index and error.
    async fn run_actions(
        &mut self,
        actions: &[Action],
        view: &ClusterView,
    ) -> Option<(usize, String)> {
        for (index, action) in actions.iter().enumerate() {
            match self
                .actor
                .run(action, &self.spec, view, self.sink.as_ref())
                .await
            {
                Ok(()) => {
                    if let Action::PublishTopology { topology } = action {
                        self.history.max_epoch = self.history.max_epoch.max(topology.epoch);
                        self.published = Some(topology.clone());
                    }
                }
                Err(e) => return Some((index, e.to_string())),
            }
        }
        None
    }
}

/// The promotion a plan carried out before its action `failed` did: it happened, whatever
/// failed after it (a promotion only rolls forward), so it is remembered — a switchover
/// request is then not carried out a second time, a failover starts the cooldown.
fn promoted_before(plan: &Plan, failed: usize) -> Vec<Event> {
    let promoted = plan.actions[..failed.min(plan.actions.len())]
        .iter()
        .any(|a| matches!(a, Action::Promote { .. }));
    if !promoted {
        return Vec::new();
    }
    plan.events
        .iter()
        .filter(|e| matches!(e, Event::Promoted { .. }))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn warning(text: &str) -> Event {
        Event::Warning {
            message: text.into(),
        }
    }

    fn logged(log: &EventLog) -> Vec<String> {
        log.entries.iter().map(|e| e.event.to_string()).collect()
    }

    #[test]
    fn a_promotion_that_ran_is_remembered_whatever_failed_after_it() {
        let promoted = Event::Promoted {
            member: "b".into(),
            previous: Some("a".into()),
            epoch: 3,
            cause: super::super::Cause::Switchover {
                request: Some("r1".into()),
            },
            position: None,
        };
        let plan = Plan {
            state: ClusterState::Switchover,
            actions: vec![
                Action::SetReadOnly { member: "a".into() },
                Action::Promote { member: "b".into() },
                Action::Rejoin {
                    member: "a".into(),
                    source: "b".into(),
                },
            ],
            events: vec![promoted.clone(), warning("w")],
            rollback: None,
        };
        assert_eq!(promoted_before(&plan, 2), [promoted]);
        assert!(promoted_before(&plan, 1).is_empty());
        assert!(promoted_before(&plan, 0).is_empty());
    }

    #[test]
    fn lasting_warnings_are_logged_once() {
        let mut log = EventLog::default();
        let seeded = Event::Seeded {
            member: "d".into(),
            donor: "b".into(),
        };
        assert_eq!(log.record(&[warning("x"), seeded.clone()], 1).len(), 2);
        assert!(log.record(&[warning("x")], 2).is_empty());
        log.record(&[warning("x"), warning("y")], 3);
        // Gone for a tick, then back: a new occurrence.
        log.record(&[], 4);
        log.record(&[warning("y")], 5);
        assert_eq!(
            logged(&log),
            ["warning: x", "d seeded from b", "warning: y", "warning: y"]
        );
        assert_eq!(log.entries.back().map(|e| e.unix_ms), Some(5));
    }

    #[test]
    fn a_standing_refused_switchover_is_logged_once() {
        let mut log = EventLog::default();
        let refused = Event::SwitchoverRefused {
            request: Some("r1".into()),
            reason: "switchover from a refused: no eligible replica".into(),
        };
        assert_eq!(log.record(std::slice::from_ref(&refused), 1).len(), 1);
        assert!(log.record(std::slice::from_ref(&refused), 2).is_empty());
        assert_eq!(
            logged(&log),
            ["warning: switchover from a refused: no eligible replica"]
        );
    }

    #[test]
    fn the_log_keeps_the_latest_events() {
        let mut log = EventLog::default();
        for epoch in 0..(EVENT_LOG_LEN as u64 + 5) {
            let event = Event::Bootstrapped {
                primary: "a".into(),
                epoch,
            };
            log.record(&[event], epoch);
        }
        assert_eq!(log.entries.len(), EVENT_LOG_LEN);
        assert_eq!(log.entries.front().map(|e| e.unix_ms), Some(5));
    }
}
