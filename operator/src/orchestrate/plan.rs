//! The decision: from one observed [`ClusterView`], the [`ClusterSpec`] and the [`History`],
//! which state the cluster is in and what to do about it.
//!
//! [`plan`] classifies first, MOCO-style, then builds the ordered actions for that state:
//!
//! - no topology was ever published and every member is empty: **bootstrap**;
//! - no primary is published (a switch was interrupted, or the cluster is being adopted):
//!   **recover** by adopting the one writable member that holds everything, else by electing;
//! - the published primary answers: **switch over** when asked (or when the primary is being
//!   scaled away), and **repair** everything else: fence stray writers, quarantine errant
//!   members, rejoin, repoint, restart replication, keep the published topology current;
//! - the published primary does not answer: **fail over** only once it has failed enough probes
//!   *and* every replica that followed it has lost it too, and only outside the cooldown.
//!
//! Promotion is always to a member whose `executed ∪ retrieved` contains that of every other
//! reachable member, so no transaction another member received is lost; ties go to the higher
//! promotion priority, then to the smaller name. When no promotable member qualifies the plan
//! stops at [`ClusterState::Incomplete`] and says why, rather than lose data.

use std::cmp::Reverse;
use std::collections::BTreeSet;
use std::time::Duration;

use lagless_core::gtid::GtidSet;
use lagless_core::topology::{Flavor, Member, Topology, TopologyState};

use super::view::{
    ClusterSpec, ClusterView, History, MemberSpec, MemberView, Probe, Promotion, ReplicationError,
    SwitchoverTarget,
};

/// What the cluster is doing, as far as this tick can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClusterState {
    /// Fresh servers: choose a primary and start replication (or wait for every member).
    Bootstrapping,
    /// Nothing to do.
    Healthy,
    /// The primary is fine; something else needs repair or attention.
    Degraded,
    /// The primary does not answer, but it has not failed enough probes yet or its replicas
    /// still see it: wait.
    PrimaryUnconfirmedDown,
    /// The primary is dead: fail over.
    PrimaryDown,
    /// A planned switchover is under way.
    Switchover,
    /// A failover is needed but the previous one was too recent.
    Cooldown,
    /// No primary is published: finish an interrupted switch or adopt a running cluster.
    Recovering,
    /// No safe decision exists (e.g. no promotable member holds every transaction).
    Incomplete,
}

/// One step for the actor. Each carries what the actor needs; the plan's order is the order
/// to run them in, and the actor stops at the first that fails.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Create users on `primary` (still read-only) and start the replicas on GTID replication;
    /// the plan makes it writable afterwards, with [`Action::SetWritable`].
    Bootstrap {
        primary: String,
        replicas: Vec<String>,
    },
    /// Write the topology document the proxies follow.
    PublishTopology {
        topology: Topology,
    },
    /// Stop the IO threads of these members, so a (semi-sync) primary can no longer commit
    /// through them and their retrieved sets stop moving.
    FenceReplicas {
        members: Vec<String>,
    },
    /// Best effort, bounded in time, failure ignored: set a primary being replaced read-only and
    /// end every client connection it has, in case it is only hung or cut off from the
    /// orchestrator but not from its clients.
    FencePrimary {
        member: String,
    },
    SetReadOnly {
        member: String,
    },
    /// Make the published primary writable again (e.g. it restarted read-only).
    SetWritable {
        member: String,
    },
    KillClientConnections {
        member: String,
    },
    /// Start the SQL thread if needed and wait until `member` has applied `until` (its whole
    /// relay log, as observed).
    WaitRelayApplied {
        member: String,
        until: GtidSet,
    },
    /// Wait (up to `timeout`) until no client transaction is open on `member`, so that work
    /// in flight on a primary about to be fenced can commit; a timeout is not a failure (what
    /// is still open is ended by the [`Action::KillClientConnections`] that follows).
    DrainTransactions {
        member: String,
        timeout: Duration,
    },
    /// Read `source`'s executed set now (it is read-only) and wait up to `timeout` until
    /// `member` applied it.
    WaitCaughtUp {
        member: String,
        source: String,
        timeout: Duration,
    },
    /// Stop and reset replication, make writable. With semi-sync wanted, the plan has turned
    /// it on for this member first ([`Action::EnsureSemiSync`]).
    Promote {
        member: String,
    },
    /// Point replication at `source` with GTID auto-positioning (MariaDB `slave_pos`), start.
    Repoint {
        member: String,
        source: String,
    },
    /// Like [`Action::Repoint`] for a member that has no source at all (a returning old
    /// primary or a member added after bootstrap); it is read-only by now.
    Rejoin {
        member: String,
        source: String,
    },
    /// Start stopped replication threads that stopped without an error a restart cannot fix.
    RestartReplication {
        member: String,
    },
    /// Keep `member` out of traffic and promotion: record it, set it read-only if reachable.
    Quarantine {
        member: String,
        reason: String,
    },
    /// Scale-down: stop and reset replication on a member the spec no longer has.
    Decommission {
        member: String,
    },
    /// Replace `member`'s data with a copy of `donor`'s, then replicate from `source` (the
    /// primary) starting at the copy's GTID position.
    Seed {
        member: String,
        donor: String,
        source: String,
    },
    /// Lossless semi-sync on: acknowledgements on `replicas`, waiting on `primary`. Comes
    /// before anything that makes `primary` writable, and wherever the settings drifted off.
    EnsureSemiSync {
        primary: String,
        replicas: Vec<String>,
    },
    /// Stop `member` (the primary) waiting for acknowledgements the spec no longer asks for.
    DisableSemiSync {
        member: String,
    },
}

/// Why a member became primary.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Cause {
    Failover,
    Switchover {
        request: Option<String>,
    },
    /// Elected while no primary was published.
    Recovery,
}

/// Something to record (resource status, a Kubernetes event) once the actions succeeded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Bootstrapped {
        primary: String,
        epoch: u64,
    },
    Promoted {
        member: String,
        previous: Option<String>,
        epoch: u64,
        cause: Cause,
        /// What the member holds at promotion, when known at plan time.
        position: Option<GtidSet>,
    },
    /// A running primary was taken over as is.
    Adopted {
        member: String,
        epoch: u64,
    },
    Quarantined {
        member: String,
        reason: String,
    },
    /// `member` now holds a copy of `donor`'s data and replicates from the primary.
    Seeded {
        member: String,
        donor: String,
    },
    /// A planned switchover failed before its candidate was promoted; the old primary was given
    /// the role back (`restored`), or the next tick recovers the cluster.
    SwitchoverFailed {
        request: Option<String>,
        primary: String,
        candidate: String,
        reason: String,
        restored: bool,
    },
    /// A switchover (requested, or needed because the spec no longer has the primary) cannot
    /// be carried out: `reason` says why, in a whole sentence. Nothing was changed; the plan
    /// refuses again on every tick while the request stands.
    SwitchoverRefused {
        request: Option<String>,
        reason: String,
    },
    /// Needs attention; no action was planned for it.
    Warning {
        message: String,
    },
}

/// The outcome of [`plan`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub state: ClusterState,
    pub actions: Vec<Action>,
    pub events: Vec<Event>,
    /// How to undo a planned switchover whose step failed before the promotion.
    pub rollback: Option<Rollback>,
}

/// A planned switchover's way back. Between publishing "switching" and promoting the candidate
/// only the old primary can have taken writes (it was fenced read-only, so the candidate has
/// nothing it lacks): if a step there fails, making it writable again and publishing it again
/// is safe, and much better than a cluster without a primary. From the promotion on, a
/// switchover only rolls forward (the next tick adopts or re-elects).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rollback {
    /// A failure of an action whose index is in `from..until` runs [`Rollback::actions`]; one
    /// before `from` changed nothing the proxies see.
    pub from: usize,
    pub until: usize,
    pub actions: Vec<Action>,
    pub request: Option<String>,
    pub primary: String,
    pub candidate: String,
}

impl Rollback {
    pub fn covers(&self, failed_action: usize) -> bool {
        (self.from..self.until).contains(&failed_action)
    }

    /// The event to record once the rollback ran.
    pub fn event(&self, reason: String, restored: bool) -> Event {
        Event::SwitchoverFailed {
            request: self.request.clone(),
            primary: self.primary.clone(),
            candidate: self.candidate.clone(),
            reason,
            restored,
        }
    }
}

impl History {
    /// Remembers what an event says happened. Call it only for events whose actions ran.
    pub fn record(&mut self, event: &Event) {
        match event {
            Event::Promoted {
                member,
                previous,
                cause,
                position,
                ..
            } => {
                self.last_promotion = Some(Promotion {
                    from: previous.clone(),
                    to: member.clone(),
                    position: position.clone(),
                });
                match cause {
                    Cause::Failover => self.last_failover_ms = Some(self.now_ms),
                    Cause::Switchover { request: Some(id) } => {
                        self.completed_switchover = Some(id.clone());
                    }
                    Cause::Switchover { request: None } | Cause::Recovery => {}
                }
            }
            Event::Quarantined { member, reason } => {
                self.quarantined.insert(member.clone(), reason.clone());
            }
            Event::SwitchoverFailed {
                request: Some(id), ..
            } => self.failed_switchover = Some(id.clone()),
            // Fresh data from a donor: whatever made the member errant is gone.
            Event::Seeded { member, .. } => {
                self.quarantined.remove(member);
            }
            Event::Bootstrapped { .. }
            | Event::Adopted { .. }
            | Event::SwitchoverFailed { request: None, .. }
            | Event::SwitchoverRefused { .. }
            | Event::Warning { .. } => {}
        }
    }
}

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Cause::Failover => f.write_str("failover"),
            Cause::Switchover { request: Some(id) } => write!(f, "switchover {id}"),
            Cause::Switchover { request: None } => f.write_str("switchover"),
            Cause::Recovery => f.write_str("recovery"),
        }
    }
}

/// One line for status displays and logs.
impl std::fmt::Display for Event {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Event::Bootstrapped { primary, epoch } => {
                write!(f, "bootstrapped with primary {primary}, epoch {epoch}")
            }
            Event::Promoted {
                member,
                previous,
                epoch,
                cause,
                ..
            } => {
                write!(f, "{member} promoted ({cause}")?;
                if let Some(previous) = previous {
                    write!(f, " from {previous}")?;
                }
                write!(f, "), epoch {epoch}")
            }
            Event::Adopted { member, epoch } => {
                write!(f, "{member} adopted as primary, epoch {epoch}")
            }
            Event::Quarantined { member, reason } => write!(f, "{member} quarantined: {reason}"),
            Event::Seeded { member, donor } => write!(f, "{member} seeded from {donor}"),
            Event::SwitchoverFailed {
                request,
                primary,
                candidate,
                reason,
                restored,
            } => {
                f.write_str("switchover")?;
                if let Some(id) = request {
                    write!(f, " {id}")?;
                }
                write!(f, " from {primary} to {candidate} failed: {reason}; ")?;
                if *restored {
                    write!(f, "{primary} is the primary again")
                } else {
                    f.write_str("the cluster is recovered on the next tick")
                }
            }
            Event::SwitchoverRefused { reason, .. } => write!(f, "warning: {reason}"),
            Event::Warning { message } => write!(f, "warning: {message}"),
        }
    }
}

impl Event {
    /// The text of an event that reports a lasting condition rather than something done (a
    /// warning, a refused switchover): the plan gives it again on every tick while the
    /// condition lasts.
    pub fn warning(&self) -> Option<&str> {
        match self {
            Event::Warning { message } => Some(message),
            Event::SwitchoverRefused { reason, .. } => Some(reason),
            _ => None,
        }
    }
}

/// Decides what to do. Pure: the same inputs always give the same plan, whatever the order of
/// `view.members`.
pub fn plan(view: &ClusterView, spec: &ClusterSpec, history: &History) -> Plan {
    let ctx = Ctx::new(view, spec, history);
    let plan = if let Some(bootstrap) = bootstrap(&ctx) {
        bootstrap
    } else if let Some(published) = ctx.published_primary() {
        match ctx.member(&published.name).filter(|m| m.is_reachable()) {
            Some(primary) => primary_alive(&ctx, primary),
            None => primary_failing(&ctx, published),
        }
    } else {
        recover(&ctx)
    };
    let plan = semi_sync_before_publishing(plan, spec);
    if spec.paused { held(plan) } else { plan }
}

/// The plan of a paused cluster: a report only. Its state stands; its actions and what they
/// would have recorded wait, to be planned again from what is observed once the cluster is
/// resumed, and one warning names what waits, so a dead primary left alone is not left unsaid.
/// A plan with nothing to do keeps its warnings; one with actions does not, since its
/// warnings may describe those actions ("failover from a to c without semi-sync: …").
pub fn held(plan: Plan) -> Plan {
    let mut events: Vec<Event> = Vec::new();
    if plan.actions.is_empty() {
        events.extend(
            plan.events
                .into_iter()
                .filter(|e| matches!(e, Event::Warning { .. })),
        );
    } else {
        let what = match plan.state {
            ClusterState::Bootstrapping => "the bootstrap",
            ClusterState::PrimaryDown => "a failover",
            ClusterState::Switchover => "a switchover",
            ClusterState::Recovering => "electing a primary",
            ClusterState::Healthy
            | ClusterState::Degraded
            | ClusterState::PrimaryUnconfirmedDown
            | ClusterState::Cooldown
            | ClusterState::Incomplete => "repairs",
        };
        // Names and members only: the text stays the same while the situation does, so a
        // lasting warning is reported once.
        let mut steps: Vec<String> = plan.actions.iter().map(Action::label).collect();
        steps.dedup();
        events.push(Event::Warning {
            message: format!(
                "orchestration is paused; held until it is resumed: {what} ({})",
                steps.join(", ")
            ),
        });
    }
    Plan {
        state: plan.state,
        actions: Vec::new(),
        events,
        rollback: None,
    }
}

impl Action {
    /// The action's name and member, for status lines and logs (`EnsureSemiSync on m0`).
    pub fn label(&self) -> String {
        let debug = format!("{self:?}");
        let name = debug
            .split([' ', '{', '('])
            .next()
            .unwrap_or_default()
            .to_string();
        let member = match self {
            Action::Bootstrap { primary, .. } | Action::EnsureSemiSync { primary, .. } => {
                Some(primary)
            }
            Action::SetReadOnly { member }
            | Action::SetWritable { member }
            | Action::FencePrimary { member }
            | Action::KillClientConnections { member }
            | Action::WaitRelayApplied { member, .. }
            | Action::DrainTransactions { member, .. }
            | Action::WaitCaughtUp { member, .. }
            | Action::Promote { member }
            | Action::Repoint { member, .. }
            | Action::Rejoin { member, .. }
            | Action::RestartReplication { member }
            | Action::Quarantine { member, .. }
            | Action::Decommission { member }
            | Action::Seed { member, .. }
            | Action::DisableSemiSync { member } => Some(member),
            Action::PublishTopology { .. } | Action::FenceReplicas { .. } => None,
        };
        match member {
            Some(m) => format!("{name} on {m}"),
            None => name,
        }
    }
}

/// Under semi-sync, every topology published with a primary is preceded by
/// [`Action::EnsureSemiSync`] for that primary and its replicas: the proxies send writes only
/// to a primary that waits for acknowledgements. Indices of the rollback move with the
/// actions; an inserted action belongs with the publication after it.
fn semi_sync_before_publishing(mut plan: Plan, spec: &ClusterSpec) -> Plan {
    if spec.semi_sync.is_none() {
        return plan;
    }
    let (actions, new_index) = with_semi_sync(std::mem::take(&mut plan.actions));
    plan.actions = actions;
    if let Some(rollback) = plan.rollback.as_mut() {
        rollback.from = new_index(rollback.from);
        rollback.until = new_index(rollback.until);
        rollback.actions = with_semi_sync(std::mem::take(&mut rollback.actions)).0;
    }
    plan
}

/// `actions` with the semi-sync set-up inserted, and where each old index went: to the first
/// action of its group (an inserted set-up and its publication are one step); an index past
/// the end maps past the new end.
fn with_semi_sync(actions: Vec<Action>) -> (Vec<Action>, impl Fn(usize) -> usize) {
    let mut out: Vec<Action> = Vec::with_capacity(actions.len() + 1);
    let mut moved = Vec::with_capacity(actions.len() + 1);
    for action in actions {
        let group = out.len();
        if let Action::PublishTopology { topology } = &action
            && let Some(primary) = &topology.primary
        {
            let ensure = Action::EnsureSemiSync {
                primary: primary.name.clone(),
                replicas: topology.replicas.iter().map(|r| r.name.clone()).collect(),
            };
            // Already set up since the previous publication (before a promotion, say): once
            // is enough.
            let since_publish = out
                .iter()
                .rev()
                .take_while(|a| !matches!(a, Action::PublishTopology { .. }));
            if !since_publish.into_iter().any(|a| *a == ensure) {
                out.push(ensure);
            }
        }
        moved.push(group);
        out.push(action);
    }
    let end = out.len();
    moved.push(end);
    let new_index = move |old: usize| moved.get(old).copied().unwrap_or(end);
    (out, new_index)
}

// ---------------------------------------------------------------------------------------------
// Context and plan building

/// The inputs, with the members sorted by name so that nothing depends on observation order.
struct Ctx<'a> {
    view: &'a ClusterView,
    spec: &'a ClusterSpec,
    history: &'a History,
    members: Vec<&'a MemberView>,
}

impl<'a> Ctx<'a> {
    fn new(view: &'a ClusterView, spec: &'a ClusterSpec, history: &'a History) -> Self {
        let mut members: Vec<_> = view.members.iter().collect();
        members.sort_by(|a, b| a.name.cmp(&b.name));
        Self {
            view,
            spec,
            history,
            members,
        }
    }

    fn member(&self, name: &str) -> Option<&'a MemberView> {
        self.members.iter().copied().find(|m| m.name == name)
    }

    fn spec_of(&self, name: &str) -> Option<&'a MemberSpec> {
        self.spec.member(name)
    }

    fn in_spec(&self, name: &str) -> bool {
        self.spec_of(name).is_some()
    }

    fn reachable(&self) -> impl Iterator<Item = &'a MemberView> + '_ {
        self.members.iter().copied().filter(|m| m.is_reachable())
    }

    fn was_quarantined(&self, name: &str) -> bool {
        self.history.quarantined.contains_key(name)
    }

    /// The primary of the published topology, when it is in the ready state.
    fn published_primary(&self) -> Option<&'a Member> {
        self.view
            .published
            .as_ref()
            .filter(|t| t.state == TopologyState::Ready)
            .and_then(|t| t.primary.as_ref())
    }

    fn is_published_replica(&self, name: &str) -> bool {
        self.view
            .published
            .as_ref()
            .is_some_and(|t| t.replicas.iter().any(|r| r.name == name))
    }

    /// Above the published epoch and above every epoch ever published: a topology document
    /// that was deleted or corrupted must not make the proxies' next one look older.
    fn next_epoch(&self) -> u64 {
        self.view
            .published
            .as_ref()
            .map_or(0, |t| t.epoch)
            .max(self.history.max_epoch)
            .saturating_add(1)
    }

    /// Makes `member` writable; with semi-sync wanted, turns it on there first unless the
    /// view shows it on already.
    fn make_writable(&self, steps: &mut Steps, member: &MemberView) {
        let on = member.semi_sync.is_some_and(|s| s.source_enabled);
        if self.spec.semi_sync.is_some() && !on {
            steps.act(Action::EnsureSemiSync {
                primary: member.name.clone(),
                replicas: Vec::new(),
            });
        }
        steps.act(Action::SetWritable {
            member: member.name.clone(),
        });
        self.keep_read_only(steps, &member.name);
    }

    /// In a read-only cluster, a member just made primary (writable, or promoted) is made
    /// read-only again before any topology publishes it: it takes the role, not writes.
    fn keep_read_only(&self, steps: &mut Steps, member: &str) {
        if self.spec.read_only {
            steps.act(Action::SetReadOnly {
                member: member.to_owned(),
            });
        }
    }

    /// Turns semi-sync on for `member` about to be promoted, when the spec wants it.
    fn semi_sync_before_promotion(&self, steps: &mut Steps, member: &str) {
        if self.spec.semi_sync.is_some() {
            steps.act(Action::EnsureSemiSync {
                primary: member.to_owned(),
                replicas: Vec::new(),
            });
        }
    }

    fn failover_after(&self) -> u32 {
        self.spec.failover_after_probes.max(1)
    }

    fn priority(&self, m: &MemberView) -> i32 {
        self.spec_of(&m.name)
            .map_or(i32::MIN, |s| s.promotion_priority)
    }

    /// May become primary: wanted, allowed, not quarantined, readable, and able to apply its
    /// relay log (a member whose SQL thread failed would never finish applying it). Lag is
    /// deliberately not a criterion.
    fn promotable(&self, m: &MemberView) -> bool {
        self.spec_of(&m.name).is_some_and(|s| !s.never_promote)
            && !self.was_quarantined(&m.name)
            && m.is_reachable()
            && m.sql_error.is_none()
    }

    /// Reachable members whose data must survive a promotion: all but quarantined ones (their
    /// extra transactions are errant by definition) and `except`.
    fn pool(&self, except: Option<&str>) -> Vec<&'a MemberView> {
        self.reachable()
            .filter(|m| Some(m.name.as_str()) != except && !self.was_quarantined(&m.name))
            .collect()
    }

    /// The address the topology publishes for `name`: the spec's, else the observed one;
    /// with the read weight [`read_weight`] gives it.
    fn topology_member(&self, name: &str) -> Option<Member> {
        let member = if let Some(s) = self.spec_of(name) {
            Member::new(&s.name, &s.host, s.port)
        } else {
            self.member(name)
                .map(|m| Member::new(&m.name, &m.host, m.port))?
        };
        Some(Member {
            weight: read_weight(self.spec.cordoned.contains(name)),
            ..member
        })
    }

    fn is_cordoned(&self, name: &str) -> bool {
        self.spec.cordoned.contains(name)
    }

    fn ready_topology(&self, primary: &str, replicas: &[&str], epoch: u64) -> Topology {
        let mut names: Vec<&str> = replicas.iter().copied().filter(|r| *r != primary).collect();
        names.sort_unstable();
        names.dedup();
        Topology {
            cluster: self.spec.cluster.clone(),
            flavor: self.view.flavor,
            epoch,
            state: TopologyState::Ready,
            // A cordon applies to replicas: the primary's weight is carried, never 0.
            primary: self.topology_member(primary).map(|m| Member {
                weight: read_weight(false),
                ..m
            }),
            replicas: names
                .into_iter()
                .filter_map(|n| self.topology_member(n))
                .collect(),
            consistency: self.spec.consistency,
            read_only: self.spec.read_only,
        }
    }

    /// "No primary, hold writes", keeping the replicas the proxies already read from.
    fn switching_topology(&self, epoch: u64) -> Topology {
        Topology {
            cluster: self.spec.cluster.clone(),
            flavor: self.view.flavor,
            epoch,
            state: TopologyState::Switching,
            primary: None,
            replicas: self
                .view
                .published
                .as_ref()
                .map(|t| t.replicas.clone())
                .unwrap_or_default(),
            consistency: self.spec.consistency,
            read_only: self.spec.read_only,
        }
    }

    /// With lossless semi-sync, an acknowledged write is on at least `acks` replicas; it can
    /// only be missed if that many members cannot be read. MariaDB waits for exactly one
    /// acknowledgement whatever the spec says, so there it is 1. A member that answered but
    /// whose position could not be read counts as unread. Returns why promotion must wait.
    fn semi_sync_gap(&self, except: Option<&str>) -> Option<String> {
        let wanted = self.spec.semi_sync?;
        let acks = match self.view.flavor {
            Flavor::Mariadb => 1,
            Flavor::Mysql => wanted.acks.max(1),
        };
        let unread: Vec<&str> = self
            .spec
            .members
            .iter()
            .map(|s| s.name.as_str())
            .filter(|n| Some(*n) != except)
            .filter(|n| !self.member(n).is_some_and(MemberView::is_reachable))
            .collect();
        let count = u32::try_from(unread.len()).unwrap_or(u32::MAX);
        (count >= acks).then(|| {
            format!(
                "semi-sync: {} cannot be read and may hold acknowledged writes",
                unread.join(", ")
            )
        })
    }
}

/// Actions and events accumulated for one plan.
#[derive(Default)]
struct Steps {
    actions: Vec<Action>,
    events: Vec<Event>,
    rollback: Option<Rollback>,
}

impl Steps {
    fn act(&mut self, action: Action) {
        self.actions.push(action);
    }

    fn warn(&mut self, message: impl Into<String>) {
        self.events.push(Event::Warning {
            message: message.into(),
        });
    }

    fn finish(self, state: ClusterState) -> Plan {
        Plan {
            state,
            actions: self.actions,
            events: self.events,
            rollback: self.rollback,
        }
    }
}

/// A plan that only reports.
fn report(state: ClusterState, message: impl Into<String>) -> Plan {
    let mut steps = Steps::default();
    steps.warn(message);
    steps.finish(state)
}

fn names<'m>(members: impl IntoIterator<Item = &'m MemberView>) -> Vec<String> {
    members.into_iter().map(|m| m.name.clone()).collect()
}

// ---------------------------------------------------------------------------------------------
// Candidates

/// The read weight a replica is published with: none while it is cordoned, so the proxies
/// send it no reads; the default otherwise.
pub fn read_weight(cordoned: bool) -> u32 {
    if cordoned {
        0
    } else {
        lagless_core::topology::DEFAULT_WEIGHT
    }
}

/// How much a member is wanted as the next primary among those fit for it (every one of
/// them holds what the others hold): one not cordoned before any cordoned one, then the
/// higher promotion priority. A cordoned member is promoted only when no other is fit — a
/// cordon takes a member out of reads, and keeping the cluster writable matters more. An
/// explicit `switchover` to a cordoned member is carried out as asked.
pub fn preference(cordoned: bool, priority: i32) -> (bool, i32) {
    (!cordoned, priority)
}

/// The promotable member of `pool` whose holdings contain every other's; one not cordoned
/// first, then the higher priority, then the smaller name, among several (see [`preference`]).
fn choose_candidate<'a>(ctx: &Ctx<'a>, pool: &[&'a MemberView]) -> Result<&'a MemberView, String> {
    let held: Vec<(&MemberView, GtidSet)> = pool
        .iter()
        .filter_map(|m| Some((*m, m.holdings()?)))
        .collect();
    let complete: Vec<&MemberView> = held
        .iter()
        .filter(|(_, h)| held.iter().all(|(_, other)| h.contains(other)))
        .map(|(m, _)| *m)
        .collect();
    if complete.is_empty() {
        return Err("no reachable member holds every transaction the others hold".into());
    }
    complete
        .iter()
        .copied()
        .filter(|m| ctx.promotable(m))
        .max_by_key(|m| {
            (
                preference(ctx.is_cordoned(&m.name), ctx.priority(m)),
                Reverse(m.name.as_str()),
            )
        })
        .ok_or_else(|| {
            format!(
                "only {} hold every transaction, and none of them may be promoted",
                names(complete.iter().copied()).join(", ")
            )
        })
}

/// Whether `m` holds everything every member of `pool` holds.
fn holds_all(m: &MemberView, pool: &[&MemberView]) -> bool {
    let Some(mine) = m.holdings() else {
        return false;
    };
    pool.iter()
        .filter_map(|o| o.holdings())
        .all(|theirs| mine.contains(&theirs))
}

// ---------------------------------------------------------------------------------------------
// Bootstrap

/// Whether a member shows any sign of having been part of a cluster.
fn has_history(m: &MemberView) -> bool {
    let used = |set: &Option<GtidSet>| set.as_ref().is_some_and(|s| !s.is_empty());
    used(&m.executed) || used(&m.retrieved) || m.source.is_some()
}

/// Bootstraps only when nothing was ever published and every spec member is reachable and
/// empty: a member that cannot be read might hold the data, and a primary chosen without it
/// would later make it look errant.
fn bootstrap(ctx: &Ctx<'_>) -> Option<Plan> {
    if ctx.view.published.is_some() || ctx.members.iter().any(|m| has_history(m)) {
        return None;
    }
    let waiting: Vec<&str> = ctx
        .spec
        .members
        .iter()
        .filter(|s| !ctx.member(&s.name).is_some_and(MemberView::is_reachable))
        .map(|s| s.name.as_str())
        .collect();
    if !waiting.is_empty() {
        return Some(report(
            ClusterState::Bootstrapping,
            format!("waiting for {} before bootstrapping", waiting.join(", ")),
        ));
    }
    let Some(primary) = ctx
        .spec
        .members
        .iter()
        .filter(|s| !s.never_promote && !ctx.was_quarantined(&s.name))
        .max_by_key(|s| {
            (
                preference(ctx.is_cordoned(&s.name), s.promotion_priority),
                Reverse(s.name.as_str()),
            )
        })
    else {
        return Some(report(
            ClusterState::Incomplete,
            "no member may become the first primary",
        ));
    };
    let mut replicas: Vec<String> = ctx
        .spec
        .members
        .iter()
        .filter(|s| s.name != primary.name)
        .map(|s| s.name.clone())
        .collect();
    replicas.sort_unstable();
    let epoch = ctx.next_epoch();
    let replica_refs: Vec<&str> = replicas.iter().map(String::as_str).collect();
    let topology = ctx.ready_topology(&primary.name, &replica_refs, epoch);
    let mut steps = Steps::default();
    steps.act(Action::Bootstrap {
        primary: primary.name.clone(),
        replicas: replicas.clone(),
    });
    if ctx.spec.semi_sync.is_some() {
        steps.act(Action::EnsureSemiSync {
            primary: primary.name.clone(),
            replicas,
        });
    }
    steps.act(Action::SetWritable {
        member: primary.name.clone(),
    });
    ctx.keep_read_only(&mut steps, &primary.name);
    steps.act(Action::PublishTopology { topology });
    steps.events.push(Event::Bootstrapped {
        primary: primary.name.clone(),
        epoch,
    });
    Some(steps.finish(ClusterState::Bootstrapping))
}

// ---------------------------------------------------------------------------------------------
// Failover

fn primary_failing(ctx: &Ctx<'_>, published: &Member) -> Plan {
    let old = ctx.member(&published.name);
    // A primary that is not even observed counts as having failed every probe.
    let failures = old.map_or(u32::MAX, |m| m.consecutive_failures);
    let needed = ctx.failover_after();
    if failures < needed {
        return report(
            ClusterState::PrimaryUnconfirmedDown,
            format!(
                "primary {} failed {failures} of {needed} probes",
                published.name
            ),
        );
    }
    // Every member that answered, its position readable or not: its replication threads
    // were read either way.
    let still_connected: Vec<&str> = ctx
        .members
        .iter()
        .filter(|m| m.probe == Probe::Ok && m.name != published.name)
        .filter(|m| m.replicates_from(&published.host, published.port))
        .filter(|m| m.io_running != Some(false))
        .map(|m| m.name.as_str())
        .collect();
    if !still_connected.is_empty() {
        return report(
            ClusterState::PrimaryUnconfirmedDown,
            format!(
                "primary {} does not answer but {} still replicate from it",
                published.name,
                still_connected.join(", ")
            ),
        );
    }
    if let Some(until) = cooldown_until(ctx) {
        return report(
            ClusterState::Cooldown,
            format!(
                "primary {} is down; no failover before {until} ms (cooldown)",
                published.name
            ),
        );
    }
    failover(ctx, &published.name)
}

/// The end of the cooldown, while it lasts.
fn cooldown_until(ctx: &Ctx<'_>) -> Option<u64> {
    let cooldown = u64::try_from(ctx.spec.failover_cooldown.as_millis()).unwrap_or(u64::MAX);
    let until = ctx.history.last_failover_ms?.saturating_add(cooldown);
    (ctx.history.now_ms < until).then_some(until)
}

fn failover(ctx: &Ctx<'_>, old: &str) -> Plan {
    let pool = ctx.pool(Some(old));
    if let Some(gap) = ctx.semi_sync_gap(Some(old)) {
        return report(ClusterState::Incomplete, gap);
    }
    let candidate = match choose_candidate(ctx, &pool) {
        Ok(candidate) => candidate,
        Err(why) => {
            return report(
                ClusterState::Incomplete,
                format!("primary {old} is down; {why}"),
            );
        }
    };
    let mut steps = Steps::default();
    let epoch = ctx.next_epoch();
    steps.act(Action::PublishTopology {
        topology: ctx.switching_topology(epoch),
    });
    let fenced = names(ctx.reachable().filter(|m| m.name != old));
    steps.act(Action::FenceReplicas { members: fenced });
    // Whatever the probe said: the orchestrator may be cut off from a primary its clients
    // still reach. An unreachable one is cut off from its replicas (above), and with semi-sync
    // can then acknowledge nothing more.
    steps.act(Action::FencePrimary {
        member: old.to_owned(),
    });
    if ctx.spec.semi_sync.is_none() {
        let held = candidate
            .holdings()
            .map_or_else(String::new, |h| format!(" beyond {h}"));
        steps.warn(format!(
            "failover from {old} to {} without semi-sync: writes {old} acknowledged{held} are lost",
            candidate.name
        ));
    }
    let position = promote(ctx, &mut steps, candidate, &pool);
    let replicas = replicas_after_promotion(ctx, candidate, &pool, old);
    steps.act(Action::PublishTopology {
        topology: ctx.ready_topology(&candidate.name, &replicas, epoch.saturating_add(1)),
    });
    steps.events.push(Event::Promoted {
        member: candidate.name.clone(),
        previous: Some(old.to_owned()),
        epoch: epoch.saturating_add(1),
        cause: Cause::Failover,
        position,
    });
    steps.finish(ClusterState::PrimaryDown)
}

/// Waits for the candidate's relay log, promotes it and repoints the rest of `pool` (members
/// the spec still wants). Returns what the candidate holds.
fn promote(
    ctx: &Ctx<'_>,
    steps: &mut Steps,
    candidate: &MemberView,
    pool: &[&MemberView],
) -> Option<GtidSet> {
    let position = candidate.holdings();
    // Only a member that replicates has a relay log to apply: a restarted former primary has
    // none, and starting an SQL thread without a source fails.
    if let Some(until) = position.as_ref().filter(|_| candidate.source.is_some()) {
        steps.act(Action::WaitRelayApplied {
            member: candidate.name.clone(),
            until: until.clone(),
        });
    }
    // Only now: a member waiting for acknowledgements would wait on each transaction it
    // applies from its relay log.
    ctx.semi_sync_before_promotion(steps, &candidate.name);
    steps.act(Action::Promote {
        member: candidate.name.clone(),
    });
    ctx.keep_read_only(steps, &candidate.name);
    for m in pool
        .iter()
        .filter(|m| m.name != candidate.name && ctx.in_spec(&m.name))
    {
        steps.act(Action::Repoint {
            member: m.name.clone(),
            source: candidate.name.clone(),
        });
    }
    position
}

/// The replicas to publish after a promotion: the repointed pool, plus published replicas that
/// cannot be reached right now (they stay listed, as on any tick), never the old primary.
fn replicas_after_promotion<'a>(
    ctx: &Ctx<'a>,
    candidate: &MemberView,
    pool: &[&'a MemberView],
    old: &str,
) -> Vec<&'a str> {
    let repointed = pool.iter().map(|m| m.name.as_str());
    let absent = ctx
        .members
        .iter()
        .filter(|m| !m.is_reachable() && ctx.is_published_replica(&m.name))
        .map(|m| m.name.as_str());
    repointed
        .chain(absent)
        .filter(|n| *n != candidate.name && *n != old)
        .filter(|n| ctx.in_spec(n) && !ctx.was_quarantined(n))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Recovery: no primary is published

fn recover(ctx: &Ctx<'_>) -> Plan {
    let writable: Vec<&MemberView> = ctx.reachable().filter(|m| m.is_writable()).collect();
    if writable.len() > 1 {
        let mut steps = Steps::default();
        for m in &writable {
            steps.act(Action::SetReadOnly {
                member: m.name.clone(),
            });
        }
        steps.warn(format!(
            "{} are all writable with no primary published; set read-only, someone must \
             decide which history wins",
            names(writable.iter().copied()).join(", ")
        ));
        return steps.finish(ClusterState::Incomplete);
    }
    let pool = ctx.pool(None);
    if let [w] = writable.as_slice()
        && w.source.is_none()
        && ctx.in_spec(&w.name)
        && !ctx.was_quarantined(&w.name)
        && holds_all(w, &pool)
    {
        return adopt(ctx, w, &pool);
    }
    elect(ctx, writable.first().copied(), &pool)
}

/// Takes over a running primary that holds everything: repoint whoever does not follow it.
fn adopt(ctx: &Ctx<'_>, primary: &MemberView, pool: &[&MemberView]) -> Plan {
    let mut steps = Steps::default();
    let others: Vec<&MemberView> = pool
        .iter()
        .copied()
        .filter(|m| m.name != primary.name && ctx.in_spec(&m.name))
        .collect();
    for m in others
        .iter()
        .filter(|m| !m.replicates_from(&primary.host, primary.port))
    {
        steps.act(Action::Repoint {
            member: m.name.clone(),
            source: primary.name.clone(),
        });
    }
    let epoch = ctx.next_epoch();
    let replicas: Vec<&str> = others.iter().map(|m| m.name.as_str()).collect();
    steps.act(Action::PublishTopology {
        topology: ctx.ready_topology(&primary.name, &replicas, epoch),
    });
    steps.events.push(Event::Adopted {
        member: primary.name.clone(),
        epoch,
    });
    steps.finish(ClusterState::Recovering)
}

/// Promotes the most complete member. Every member that cannot be read must have failed
/// enough probes first: until then it might be the one holding the most.
fn elect(ctx: &Ctx<'_>, stray_writer: Option<&MemberView>, pool: &[&MemberView]) -> Plan {
    let needed = ctx.failover_after();
    let waiting: Vec<&str> = ctx
        .members
        .iter()
        .filter(|m| !m.is_reachable() && m.consecutive_failures < needed)
        .filter(|m| ctx.in_spec(&m.name) && !ctx.was_quarantined(&m.name))
        .map(|m| m.name.as_str())
        .collect();
    if !waiting.is_empty() {
        return report(
            ClusterState::Incomplete,
            format!(
                "no primary; waiting for {} to answer or fail {needed} probes",
                waiting.join(", ")
            ),
        );
    }
    if let Some(gap) = ctx.semi_sync_gap(None) {
        return report(ClusterState::Incomplete, gap);
    }
    let candidate = match choose_candidate(ctx, pool) {
        Ok(candidate) => candidate,
        Err(why) => return report(ClusterState::Incomplete, format!("no primary; {why}")),
    };
    let mut steps = Steps::default();
    if let Some(w) = stray_writer {
        steps.act(Action::SetReadOnly {
            member: w.name.clone(),
        });
    }
    steps.act(Action::FenceReplicas {
        members: names(ctx.reachable()),
    });
    let position = promote(ctx, &mut steps, candidate, pool);
    let epoch = ctx.next_epoch();
    let replicas = replicas_after_promotion(ctx, candidate, pool, &candidate.name);
    steps.act(Action::PublishTopology {
        topology: ctx.ready_topology(&candidate.name, &replicas, epoch),
    });
    steps.events.push(Event::Promoted {
        member: candidate.name.clone(),
        previous: None,
        epoch,
        cause: Cause::Recovery,
        position,
    });
    steps.finish(ClusterState::Recovering)
}

// ---------------------------------------------------------------------------------------------
// The primary answers

fn primary_alive(ctx: &Ctx<'_>, primary: &MemberView) -> Plan {
    let mut steps = Steps::default();
    let quarantined = fence_and_quarantine(ctx, primary, &mut steps);
    if let Some((target, request)) = switchover_due(ctx, primary) {
        let id = request.clone();
        match switchover(ctx, primary, &target, request, &quarantined, &mut steps) {
            Ok(()) => return steps.finish(ClusterState::Switchover),
            Err(reason) => steps.events.push(Event::SwitchoverRefused {
                request: id,
                reason,
            }),
        }
    }
    repair(ctx, primary, &quarantined, &mut steps);
    publish_if_changed(ctx, primary, &quarantined, &mut steps);
    // Turned read-only: the proxies learn it first, so a write refused meanwhile is answered
    // at once rather than held for a next primary.
    if ctx.spec.read_only && primary.read_only == Some(false) {
        steps.act(Action::SetReadOnly {
            member: primary.name.clone(),
        });
    }
    semi_sync_drift(ctx, primary, &quarantined, &mut steps);
    decommission(ctx, primary, &mut steps);
    // A copy is slow and may fail: everything else in this plan (publishing without the member
    // being copied, repairs, scale-down) must not wait for it or fail with it.
    let (seeds, mut actions): (Vec<_>, Vec<_>) = std::mem::take(&mut steps.actions)
        .into_iter()
        .partition(|a| matches!(a, Action::Seed { .. }));
    actions.extend(seeds);
    steps.actions = actions;
    let state = if steps.actions.is_empty() && steps.events.is_empty() {
        ClusterState::Healthy
    } else {
        ClusterState::Degraded
    };
    steps.finish(state)
}

/// How a member's data relates to the primary's.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Clean,
    /// It holds transactions that are not in the primary's history.
    Errant(String),
    /// It received from the primary transactions the primary no longer has: the primary lost
    /// data (e.g. a crash without durable settings), so the member is not at fault.
    PrimaryBehind,
}

/// Errant transactions: in the member's executed set but not in the primary's. The view reads
/// the primary last (see [`ClusterView`]), so a replica cannot be legitimately ahead of it; a
/// replica that *received* more than the primary has means the primary lost data instead.
/// Three more signs catch what MariaDB's one-GTID-per-domain positions would otherwise hide:
/// the same sequence number from different servers, a returning old primary ahead of what its
/// successor held at promotion, and the primary refusing the member's position (error 1236,
/// which also means the history the member needs was purged — either way only a re-seed helps).
fn judge(ctx: &Ctx<'_>, primary: &MemberView, m: &MemberView) -> Verdict {
    let (Some(p_exec), Some(m_exec)) = (&primary.executed, &m.executed) else {
        return Verdict::Clean;
    };
    let from_primary = m.replicates_from(&primary.host, primary.port);
    let retrieved = m.retrieved.as_ref().filter(|_| from_primary);
    if retrieved.is_some_and(|r| !p_exec.contains(r)) {
        return Verdict::PrimaryBehind;
    }
    // An empty member has nothing errant: refused, it only needs the copy it will be seeded.
    if let Some(err) = m
        .io_error
        .as_ref()
        .filter(|e| from_primary && e.source_lacks_position())
        .filter(|_| !needs_seed(ctx, primary, m))
    {
        return Verdict::Errant(format!(
            "the primary refuses its position ({}: {})",
            err.code, err.message
        ));
    }
    if !p_exec.contains(m_exec) {
        return Verdict::Errant(format!("executed {m_exec}, beyond the primary's {p_exec}"));
    }
    if let Some(clash) = same_seq_other_server(p_exec, m_exec) {
        return Verdict::Errant(clash);
    }
    if !from_primary && let Some(why) = ahead_of_successor(ctx, primary, m, m_exec) {
        return Verdict::Errant(why);
    }
    Verdict::Clean
}

/// MariaDB: one domain at the same sequence number but written by different servers.
fn same_seq_other_server(primary: &GtidSet, member: &GtidSet) -> Option<String> {
    let (GtidSet::Mariadb(p), GtidSet::Mariadb(m)) = (primary, member) else {
        return None;
    };
    m.gtids().iter().find_map(|g| {
        let theirs = p.get(g.domain)?;
        (theirs.seq == g.seq && theirs.server_id != g.server_id)
            .then(|| format!("executed {g} where the primary has {theirs}"))
    })
}

/// A former primary holding transactions its successor did not have when promoted.
fn ahead_of_successor(
    ctx: &Ctx<'_>,
    primary: &MemberView,
    m: &MemberView,
    m_exec: &GtidSet,
) -> Option<String> {
    let promotion = ctx.history.last_promotion.as_ref()?;
    let at = promotion.position.as_ref()?;
    let deposed = promotion.from.as_deref() == Some(m.name.as_str());
    (deposed && promotion.to == primary.name && !at.contains(m_exec)).then(|| {
        format!(
            "former primary executed {m_exec}; {} held {at} when promoted",
            promotion.to
        )
    })
}

/// No member but the primary may be writable; errant members are quarantined. Returns every
/// quarantined member, old and new.
fn fence_and_quarantine(
    ctx: &Ctx<'_>,
    primary: &MemberView,
    steps: &mut Steps,
) -> BTreeSet<String> {
    let mut quarantined: BTreeSet<String> = ctx.history.quarantined.keys().cloned().collect();
    let mut primary_behind = Vec::new();
    for m in ctx.reachable().filter(|m| m.name != primary.name) {
        if m.is_writable() {
            // Its clients first: a commit waiting for an acknowledgement that cannot come
            // (its replicas follow the new primary) would block `read_only` forever, and
            // must end as an error to its client, never as a success.
            steps.act(Action::KillClientConnections {
                member: m.name.clone(),
            });
            steps.act(Action::SetReadOnly {
                member: m.name.clone(),
            });
        }
        if ctx.was_quarantined(&m.name) {
            continue;
        }
        match judge(ctx, primary, m) {
            Verdict::Clean => {}
            Verdict::PrimaryBehind => primary_behind.push(m.name.as_str()),
            Verdict::Errant(reason) => {
                steps.act(Action::Quarantine {
                    member: m.name.clone(),
                    reason: reason.clone(),
                });
                steps.events.push(Event::Quarantined {
                    member: m.name.clone(),
                    reason,
                });
                quarantined.insert(m.name.clone());
            }
        }
    }
    if !primary_behind.is_empty() {
        steps.warn(format!(
            "primary {} lacks transactions it sent to {}",
            primary.name,
            primary_behind.join(", ")
        ));
    }
    quarantined
}

// ---------------------------------------------------------------------------------------------
// Switchover

/// A switchover is due when one was requested and not yet carried out, or when the spec no
/// longer has the primary (a primary is never removed without handing over first) or asks it
/// to hand its role over (a roll).
fn switchover_due(
    ctx: &Ctx<'_>,
    primary: &MemberView,
) -> Option<(SwitchoverTarget, Option<String>)> {
    if !ctx.in_spec(&primary.name) || ctx.spec.hand_over.as_deref() == Some(&primary.name) {
        return Some((SwitchoverTarget::Best, None));
    }
    let request = ctx.spec.switchover.as_ref()?;
    let id = Some(request.id.as_str());
    if ctx.history.completed_switchover.as_deref() == id
        || ctx.history.failed_switchover.as_deref() == id
    {
        return None;
    }
    match &request.to {
        SwitchoverTarget::Member(name) if *name == primary.name => None,
        target => Some((target.clone(), Some(request.id.clone()))),
    }
}

fn switchover(
    ctx: &Ctx<'_>,
    primary: &MemberView,
    target: &SwitchoverTarget,
    request: Option<String>,
    quarantined: &BTreeSet<String>,
    steps: &mut Steps,
) -> Result<(), String> {
    let eligible = |m: &MemberView| {
        m.name != primary.name
            && ctx.promotable(m)
            && !quarantined.contains(&m.name)
            && m.replicates_from(&primary.host, primary.port)
    };
    let candidate = match target {
        SwitchoverTarget::Member(name) => {
            ctx.member(name).filter(|m| eligible(m)).ok_or_else(|| {
                format!(
                    "switchover to {name} refused: it is not a healthy, promotable replica of {}",
                    primary.name
                )
            })?
        }
        SwitchoverTarget::Best => ctx
            .reachable()
            .filter(|m| eligible(m))
            .max_by_key(|m| {
                let behind = primary
                    .executed
                    .as_ref()
                    .zip(m.holdings())
                    .and_then(|(p, h)| h.transactions_behind(p))
                    .unwrap_or(u64::MAX);
                (
                    preference(ctx.is_cordoned(&m.name), ctx.priority(m)),
                    Reverse(behind),
                    Reverse(m.name.as_str()),
                )
            })
            .ok_or_else(|| {
                format!(
                    "switchover from {} refused: no eligible replica",
                    primary.name
                )
            })?,
    };
    let epoch = ctx.next_epoch();
    let old = primary.name.clone();
    let mut replicas = steady_replicas(ctx, primary, quarantined);
    let from = steps.actions.len();
    steps.act(Action::PublishTopology {
        topology: ctx.switching_topology(epoch),
    });
    // Proxies now hold new transactions; those already open on the old primary may finish.
    steps.act(Action::DrainTransactions {
        member: old.clone(),
        timeout: ctx.spec.switchover_drain,
    });
    steps.act(Action::SetReadOnly {
        member: old.clone(),
    });
    steps.act(Action::KillClientConnections {
        member: old.clone(),
    });
    steps.act(Action::WaitCaughtUp {
        member: candidate.name.clone(),
        source: old.clone(),
        timeout: ctx.spec.switchover_catch_up,
    });
    let mut back = Steps::default();
    ctx.make_writable(&mut back, primary);
    back.act(Action::PublishTopology {
        topology: ctx.ready_topology(&old, &replicas, epoch.saturating_add(1)),
    });
    ctx.semi_sync_before_promotion(steps, &candidate.name);
    steps.rollback = Some(Rollback {
        from,
        until: steps.actions.len(),
        actions: back.actions,
        request: request.clone(),
        primary: old.clone(),
        candidate: candidate.name.clone(),
    });
    steps.act(Action::Promote {
        member: candidate.name.clone(),
    });
    ctx.keep_read_only(steps, &candidate.name);
    let keep_old = ctx.in_spec(&old);
    for m in ctx.reachable().filter(|m| {
        m.name != old
            && m.name != candidate.name
            && ctx.in_spec(&m.name)
            && !quarantined.contains(&m.name)
    }) {
        steps.act(Action::Repoint {
            member: m.name.clone(),
            source: candidate.name.clone(),
        });
    }
    if keep_old {
        // Its own writes are in its binary log, not in its replication position (which may be
        // from before it became primary): it rejoins from its binary log position.
        steps.act(Action::Rejoin {
            member: old.clone(),
            source: candidate.name.clone(),
        });
        replicas.push(&primary.name);
    }
    steps.act(Action::PublishTopology {
        topology: ctx.ready_topology(&candidate.name, &replicas, epoch.saturating_add(1)),
    });
    if !keep_old {
        steps.act(Action::Decommission {
            member: old.clone(),
        });
    }
    steps.events.push(Event::Promoted {
        member: candidate.name.clone(),
        previous: Some(old),
        epoch: epoch.saturating_add(1),
        cause: Cause::Switchover { request },
        position: None,
    });
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Repairs with a live primary

fn repair(ctx: &Ctx<'_>, primary: &MemberView, quarantined: &BTreeSet<String>, steps: &mut Steps) {
    if primary.read_only == Some(true) && !ctx.spec.read_only {
        ctx.make_writable(steps, primary);
    }
    if let Some((host, port)) = &primary.source {
        steps.warn(format!(
            "primary {} has a replication source configured ({host}:{port})",
            primary.name
        ));
    }
    let replicas = ctx.reachable().filter(|m| {
        m.name != primary.name && ctx.in_spec(&m.name) && !quarantined.contains(&m.name)
    });
    let mut seeding = false;
    for m in replicas {
        if !needs_seed(ctx, primary, m) {
            repair_replica(primary, m, steps);
        } else if !seeding {
            // One copy at a time: it is heavy on the donor and the network. The others wait,
            // untouched, for a later tick.
            seeding = true;
            let donor = choose_donor(ctx, primary, m, quarantined);
            steps.act(Action::Seed {
                member: m.name.clone(),
                donor: donor.to_owned(),
                source: primary.name.clone(),
            });
            steps.events.push(Event::Seeded {
                member: m.name.clone(),
                donor: donor.to_owned(),
            });
        }
    }
}

/// Whether `m` should be given a copy of the data rather than replay the whole history: the
/// platform can seed, there is something to copy, and `m` holds nothing and either was never
/// pointed at a source or had its (empty) position refused, e.g. because the binary logs it
/// needs were purged.
fn needs_seed(ctx: &Ctx<'_>, primary: &MemberView, m: &MemberView) -> bool {
    let empty = |set: &Option<GtidSet>| set.as_ref().is_none_or(GtidSet::is_empty);
    let refused = m
        .io_error
        .as_ref()
        .is_some_and(ReplicationError::source_lacks_position);
    ctx.spec.seeding
        && m.name != primary.name
        && m.is_reachable()
        && ctx.in_spec(&m.name)
        && !ctx.was_quarantined(&m.name)
        && empty(&m.executed)
        && empty(&m.retrieved)
        && (m.source.is_none() || refused)
        && !empty(&primary.executed)
}

/// Where `member`'s copy comes from: the healthy replica of `primary` least behind it (then
/// by name), which spares the primary the load; the primary itself when there is none.
fn choose_donor<'a>(
    ctx: &Ctx<'a>,
    primary: &'a MemberView,
    member: &MemberView,
    quarantined: &BTreeSet<String>,
) -> &'a str {
    ctx.reachable()
        .filter(|d| d.name != primary.name && d.name != member.name)
        .filter(|d| ctx.in_spec(&d.name) && !quarantined.contains(&d.name))
        .filter(|d| d.replicates_from(&primary.host, primary.port) && d.replicates_cleanly())
        .min_by_key(|d| {
            let behind = d
                .holdings()
                .zip(primary.executed.as_ref())
                .and_then(|(h, p)| h.transactions_behind(p))
                .unwrap_or(u64::MAX);
            (behind, d.name.as_str())
        })
        .map_or(primary.name.as_str(), |d| d.name.as_str())
}

/// Semi-sync settings drift (a restarted server comes back with its option file's values, a
/// person changes them): the plan keeps them as the spec says between publishes too. An
/// unobserved state (plugin not loaded) is left alone.
fn semi_sync_drift(
    ctx: &Ctx<'_>,
    primary: &MemberView,
    quarantined: &BTreeSet<String>,
    steps: &mut Steps,
) {
    // A demoted primary that still waits for acknowledgements would stall its own replication
    // (each applied transaction is a commit that waits, forever, for a replica of its own).
    for m in ctx
        .reachable()
        .filter(|m| m.name != primary.name && m.semi_sync.is_some_and(|s| s.source_enabled))
    {
        // Turning it off releases commits still waiting for an acknowledgement: their
        // clients must be gone first, or a write no replica has would be reported done.
        let kill = Action::KillClientConnections {
            member: m.name.clone(),
        };
        if !steps.actions.contains(&kill) {
            steps.act(kill);
        }
        steps.act(Action::DisableSemiSync {
            member: m.name.clone(),
        });
    }
    if ctx.spec.semi_sync.is_none() {
        // A primary still waiting for acknowledgements (forever, as configured) could block
        // writes once nobody means to send them.
        if primary.semi_sync.is_some_and(|s| s.source_enabled) {
            steps.act(Action::DisableSemiSync {
                member: primary.name.clone(),
            });
        }
        return;
    }
    // Publishing a topology turns semi-sync on everywhere it lists.
    if steps
        .actions
        .iter()
        .any(|a| matches!(a, Action::PublishTopology { topology } if topology.primary.is_some()))
    {
        return;
    }
    let primary_off = primary.semi_sync.is_some_and(|s| !s.source_enabled);
    let replicas = names(
        ctx.reachable()
            .filter(|m| m.name != primary.name && !quarantined.contains(&m.name))
            .filter(|m| ctx.is_published_replica(&m.name))
            .filter(|m| m.replicates_from(&primary.host, primary.port))
            .filter(|m| m.semi_sync.is_some_and(|s| !s.replica_enabled)),
    );
    if primary_off || !replicas.is_empty() {
        steps.act(Action::EnsureSemiSync {
            primary: primary.name.clone(),
            replicas,
        });
    }
}

fn repair_replica(primary: &MemberView, m: &MemberView, steps: &mut Steps) {
    let member = m.name.clone();
    let source = primary.name.clone();
    if m.source.is_none() {
        steps.act(Action::Rejoin { member, source });
    } else if !m.replicates_from(&primary.host, primary.port) {
        steps.act(Action::Repoint { member, source });
    } else if let Some(err) = &m.sql_error {
        // Applying failed: restarting repeats the failure; a person must look.
        steps.warn(format!(
            "replica {member} stopped applying: {} {}",
            err.code, err.message
        ));
    } else if m.io_running == Some(false) || m.sql_running == Some(false) {
        steps.act(Action::RestartReplication { member });
    }
}

/// The replicas a ready topology lists with `primary` alive: those following it, and listed
/// ones that cannot be reached right now (so a blip does not churn the epoch).
fn steady_replicas<'a>(
    ctx: &Ctx<'a>,
    primary: &MemberView,
    quarantined: &BTreeSet<String>,
) -> Vec<&'a str> {
    ctx.members
        .iter()
        .filter(|m| {
            m.name != primary.name && ctx.in_spec(&m.name) && !quarantined.contains(&m.name)
        })
        .filter(|m| {
            if m.is_reachable() {
                // A member awaiting a copy may point at the primary but holds nothing yet.
                m.replicates_from(&primary.host, primary.port) && !needs_seed(ctx, primary, m)
            } else {
                ctx.is_published_replica(&m.name)
            }
        })
        .map(|m| m.name.as_str())
        .collect()
}

fn publish_if_changed(
    ctx: &Ctx<'_>,
    primary: &MemberView,
    quarantined: &BTreeSet<String>,
    steps: &mut Steps,
) {
    let replicas = steady_replicas(ctx, primary, quarantined);
    let wanted = ctx.ready_topology(&primary.name, &replicas, ctx.next_epoch());
    let unchanged = ctx.view.published.as_ref().is_some_and(|t| {
        Topology {
            epoch: wanted.epoch,
            ..t.clone()
        } == wanted
    });
    if !unchanged {
        steps.act(Action::PublishTopology { topology: wanted });
    }
}

/// Scale-down: members the spec no longer has leave after the topology stopped listing them.
fn decommission(ctx: &Ctx<'_>, primary: &MemberView, steps: &mut Steps) {
    for m in ctx
        .members
        .iter()
        .filter(|m| m.name != primary.name && !ctx.in_spec(&m.name))
    {
        steps.act(Action::Decommission {
            member: m.name.clone(),
        });
    }
}

#[cfg(test)]
mod tests;
