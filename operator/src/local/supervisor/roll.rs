//! Rolling a `serverConfig` change (`apply`), or a restart of every member (`restart`),
//! through the running members: the supervisor
//! carries out the steps [`crate::orchestrate::roll::next`] decides, one per round, and
//! restarts a member's server in a task of its own so the orchestration loop goes on.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt as _;
use tokio::task::JoinHandle;

use crate::local::process_table::{Process, Runtime, record_config};
use crate::local::shared::SharedState;
use crate::local::status::RollStatus;
use crate::local::{LocalError, mariadb, proxy_admin};
use crate::orchestrate::roll::{self, Phase, RollMember, RollView, Rolling, Step};
use crate::orchestrate::view::{Switchover, SwitchoverTarget};
use crate::orchestrate::{ClusterState, Event, Plan};

use super::Supervisor;

/// How long after a failed switchover the roll asks for another.
const SWITCHOVER_RETRY: Duration = Duration::from_secs(10);
/// How long a stopping server gets before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(60);

/// What the supervisor remembers of a roll between rounds. Nothing of it is kept across
/// restarts: which member runs which configuration is (beside each member's data).
#[derive(Debug, Default)]
pub(super) struct RollState {
    /// The member being rolled.
    pub(super) rolling: Option<Rolling>,
    /// The member's restart, under way.
    pub(super) restart: Option<JoinHandle<Result<(), LocalError>>>,
    /// The switchover the roll asked for, until it is done or failed.
    switchover: Option<String>,
    switchover_failed: Option<Instant>,
    /// Why the roll stopped; cleared by the next `apply`.
    stopped: Option<String>,
    /// When the member being rolled left read routing (or began restarting).
    member_began: Option<Instant>,
    /// The primary whose position the member being rolled catches up to.
    catch_up_from: Option<String>,
    /// When the roll (or this supervisor, for one found under way) began.
    started: Option<(Instant, u64)>,
    /// `restart` asked for every member to be restarted: those started before this (Unix
    /// milliseconds) are rolled. Not kept: `up` starts every member anew.
    pub(super) restart_requested_ms: Option<u64>,
}

impl RollState {
    /// Whether the roll stopped (a member did not start with the wanted configuration).
    pub(super) fn is_stopped(&self) -> bool {
        self.stopped.is_some()
    }

    /// A new `apply`: the roll (re)starts from what is observed.
    pub(super) fn begin(&mut self) {
        self.stopped = None;
        self.started = Some((Instant::now(), crate::clock::unix_ms()));
    }
}

impl Supervisor {
    /// One round of the roll: at most one step.
    pub(super) async fn roll(&mut self, plan: Option<&Plan>) {
        let Some(plan) = plan else {
            return;
        };
        self.finish_restart();
        self.anchor_catch_up();
        self.watch_roll_switchover(plan);
        let wanted = self.rt.wanted_config();
        let members = self.roll_members(&wanted);
        let pending: Vec<String> = members
            .iter()
            .filter(|m| !m.current)
            .map(|m| m.name.clone())
            .collect();
        self.report_members(&wanted);
        if pending.is_empty() && self.roll.rolling.is_none() && self.roll.restart.is_none() {
            if let Some((began, _)) = self.roll.started.take() {
                self.shared.lock().note(format!(
                    "roll done: all {} members restarted as wanted, in {:.1} s",
                    members.len(),
                    began.elapsed().as_secs_f64()
                ));
            }
            self.roll.stopped = None;
            self.shared.lock().roll = None;
            return;
        }
        if self.roll.started.is_none() {
            // Found under way (started before this supervisor, or by `up -f`).
            self.roll.begin();
        }
        // A stopped roll takes no step but one: the member whose restart failed (it runs its
        // previous serverConfig again) goes back into read routing once it has caught up.
        let catching_up =
            (self.roll.rolling.as_ref()).is_some_and(|r| r.phase == Phase::CatchingUp);
        let stopped = self.roll.stopped.clone();
        let step = if let Some(why) = stopped.as_ref().filter(|_| !catching_up) {
            Step::Wait(why.clone())
        } else {
            let switching = self.switchover.as_ref().is_some_and(|s| {
                self.orchestrator
                    .as_ref()
                    .and_then(|o| o.history().completed_switchover.as_deref())
                    != Some(s.id.as_str())
            });
            let proxies_drained = self.proxies_drained(&members).await;
            let next = roll::next(&RollView {
                members: &members,
                paused: self.settings.paused,
                healthy: plan.state == ClusterState::Healthy,
                switching,
                rolling: self.roll.rolling.as_ref(),
                proxies_drained,
                now_ms: crate::clock::unix_ms(),
            });
            match (stopped, next) {
                (Some(why), step) if !matches!(step, Step::Readmit(_)) => Step::Wait(why),
                (_, step) => step,
            }
        };
        let waiting = self.take_roll_step(step);
        let current = u32::try_from(members.len() - pending.len()).unwrap_or(0);
        let status = RollStatus {
            current,
            members: u32::try_from(members.len()).unwrap_or(0),
            member: self.roll.rolling.as_ref().map(|r| r.member.clone()),
            phase: (self.roll.rolling.as_ref()).map(|r| r.phase.as_str().to_string()),
            waiting,
            stopped: self.roll.stopped.clone(),
            started_unix_ms: self.roll.started.map_or(0, |(_, ms)| ms),
        };
        self.shared.lock().roll = Some(status);
    }

    /// Carries out `step`; returns why the roll waits, if it does.
    fn take_roll_step(&mut self, step: Step) -> Option<String> {
        let now = crate::clock::unix_ms();
        match step {
            Step::Done => None,
            Step::Wait(why) => Some(why),
            Step::Drain(member) => {
                let again = self
                    .roll
                    .rolling
                    .as_ref()
                    .is_some_and(|r| r.member == member);
                if !again {
                    self.roll.member_began = Some(Instant::now());
                    tracing::info!(%member, "roll: draining");
                    self.shared.lock().note(format!(
                        "rolling {member}: out of read routing, then restarted with the wanted \
                         serverConfig"
                    ));
                }
                self.set_rolling(Some(Rolling {
                    member: member.clone(),
                    phase: Phase::Draining,
                    since_ms: now,
                    catch_up_to: None,
                }));
                Some(format!("taking {member} out of read routing"))
            }
            Step::Restart(member) => {
                self.start_restart(&member);
                None
            }
            Step::Readmit(member) => {
                let took = self.roll.member_began.take().map(|at| at.elapsed());
                self.set_rolling(None);
                self.shared.lock().note(format!(
                    "{member} restarted and has caught up ({:.1} s in all); back in read \
                     routing",
                    took.unwrap_or_default().as_secs_f64()
                ));
                None
            }
            Step::Switchover { from } => {
                if self
                    .roll
                    .switchover_failed
                    .is_some_and(|at| at.elapsed() < SWITCHOVER_RETRY)
                {
                    return Some(format!(
                        "the switchover away from {from} failed; asking again shortly"
                    ));
                }
                let id = format!("roll-{now}");
                self.shared.lock().note(format!(
                    "every replica is rolled: switching the primary role over from {from}"
                ));
                self.switchover = Some(Switchover {
                    id: id.clone(),
                    to: SwitchoverTarget::Best,
                });
                self.roll.switchover = Some(id);
                if let Err(e) = self.apply_spec() {
                    tracing::warn!(error = %e, "roll: switchover not asked");
                }
                Some(format!("switching the primary role over from {from}"))
            }
        }
    }

    /// Sets the member being rolled, which is out of read routing while it is.
    fn set_rolling(&mut self, rolling: Option<Rolling>) {
        self.roll.rolling = rolling;
        if let Err(e) = self.apply_spec() {
            tracing::warn!(error = %e, "roll: spec not applied");
        }
    }

    /// While a member drains out of read routing: whether every proxy of the cluster follows
    /// a topology without it in reads and runs no statement on it (their admin `/topology`).
    /// `None` for a cluster without proxies of its own (a pool's).
    async fn proxies_drained(&self, members: &[RollMember]) -> Option<bool> {
        let rolling = self.roll.rolling.as_ref()?;
        let draining = rolling.phase == Phase::Draining
            && members
                .iter()
                .any(|m| m.name == rolling.member && !m.in_reads);
        if !draining {
            return None;
        }
        let ports: Vec<u16> = (self.shared.lock().processes.proxies.iter())
            .map(|p| p.admin_port)
            .collect();
        if ports.is_empty() {
            return None;
        }
        let member = rolling.member.clone();
        let answers = ports.into_iter().map(|port| {
            let member = member.clone();
            async move {
                match proxy_admin::topology(port).await {
                    // An answer that cannot be read says nothing was drained: the roll waits
                    // for a readable one, at most the drain limit.
                    Some(json) => proxy_admin::drained(&json, &member),
                    // A proxy that does not answer routes nothing; started again, it reads
                    // the topology as it is now.
                    None => true,
                }
            }
        });
        let drained: Vec<bool> = futures::future::join_all(answers).await;
        Some(drained.iter().all(|&ok| ok))
    }

    /// Marks in the status the members that run an older `serverConfig`, and those started
    /// before `mariadbd` was replaced.
    fn report_members(&self, wanted: &BTreeMap<String, String>) {
        let program_changed = self.rt.program_changed_ms();
        let mut shared = self.shared.lock();
        let (mut config_pending, mut older_program) = (Vec::new(), Vec::new());
        for m in shared.processes.members.values().filter(|m| !m.removing) {
            let record = self.rt.member_record(&m.layout);
            if record.as_ref().is_some_and(|r| r.server_config != *wanted) {
                config_pending.push(m.layout.name.clone());
            }
            if record
                .zip(program_changed)
                .is_some_and(|(r, changed)| r.started_unix_ms < changed)
            {
                older_program.push(m.layout.name.clone());
            }
        }
        shared.config_pending = config_pending;
        shared.older_program = older_program;
    }

    /// The roll's view of every member the cluster keeps.
    fn roll_members(&self, wanted: &BTreeMap<String, String>) -> Vec<RollMember> {
        let shared = self.shared.lock();
        let published = shared.last_tick.published.as_ref();
        let view = shared.last_tick.view.as_ref();
        (0..self.settings.replicas)
            .filter_map(|i| shared.processes.members.get(&self.settings.member_name(i)))
            .filter(|m| !m.removing)
            .map(|m| {
                let record = self.rt.member_record(&m.layout);
                let restarted = self.roll.restart_requested_ms.is_none_or(|asked| {
                    record.as_ref().is_some_and(|r| r.started_unix_ms >= asked)
                });
                let current = self.rt.member_config(&m.layout) == *wanted && restarted;
                let spec = self.orchestrator.as_ref().map(|o| &o.spec);
                RollMember::observed(&m.layout.name, spec, published, view, current)
            })
            .collect()
    }

    /// Stops `member`'s server and starts it with the wanted configuration, in a task.
    fn start_restart(&mut self, member: &str) {
        let taken = {
            let mut shared = self.shared.lock();
            shared.processes.members.get_mut(member).map(|m| {
                m.process = Process::Stopped;
                m.restart_at = None;
                (m.layout.clone(), m.child.take())
            })
        };
        let Some((layout, child)) = taken else {
            return;
        };
        tracing::info!(%member, "roll: restarting");
        if self.roll.rolling.is_none() {
            // Restarted in place, never drained (a one-member cluster).
            self.roll.member_began = Some(Instant::now());
        }
        self.roll.rolling = Some(Rolling {
            member: member.to_string(),
            phase: Phase::Restarting,
            since_ms: crate::clock::unix_ms(),
            catch_up_to: None,
        });
        let (rt, shared) = (self.rt.clone(), self.shared.clone());
        let wanted = self.rt.wanted_config();
        self.roll.restart = Some(tokio::spawn(restart(rt, shared, layout, child, wanted)));
    }

    /// Takes the result of a restart, if it finished.
    fn finish_restart(&mut self) {
        let Some(task) = self.roll.restart.as_mut() else {
            return;
        };
        if let Some(result) = task.now_or_never() {
            self.roll.restart = None;
            self.restart_finished(result);
        }
    }

    /// The member catches up from what the primary holds now, or, if it did not start, the
    /// roll stops.
    fn restart_finished(&mut self, result: Result<Result<(), LocalError>, tokio::task::JoinError>) {
        let outcome = result.unwrap_or_else(|e| Err(LocalError::Other(e.to_string())));
        let Some(rolling) = self.roll.rolling.as_mut() else {
            return;
        };
        let member = rolling.member.clone();
        // Either way out of read routing until it has caught up; a failed start, running its
        // previous configuration again, also stops the roll.
        rolling.phase = Phase::CatchingUp;
        rolling.since_ms = crate::clock::unix_ms();
        self.roll.catch_up_from = None;
        self.anchor_catch_up();
        if let Err(e) = outcome {
            let why = format!(
                "{member} did not start with the new serverConfig, so it runs its previous one \
                 again; fix the file and `apply` it again: {}",
                start_failure(&e)
            );
            tracing::warn!(%member, error = %e, "roll stopped");
            self.shared
                .lock()
                .note(format!("warning: roll stopped: {why}"));
            self.roll.stopped = Some(why);
        }
    }

    /// Sets what the member being rolled must apply: what the primary holds now. Again after
    /// a failover, since a new primary may lack what the old one held and never acknowledged.
    fn anchor_catch_up(&mut self) {
        let Some(rolling) = self.roll.rolling.as_mut() else {
            return;
        };
        let shared = self.shared.lock();
        roll::anchor_catch_up(
            rolling,
            &mut self.roll.catch_up_from,
            shared.last_tick.published.as_ref(),
            shared.last_tick.view.as_ref(),
        );
    }

    /// Waits up to `limit` for a member's restart under way, so that it is back in the
    /// process table.
    pub(super) async fn finish_roll_restart(&mut self, limit: Duration) {
        let Some(mut task) = self.roll.restart.take() else {
            return;
        };
        match tokio::time::timeout(limit, &mut task).await {
            Ok(result) => self.restart_finished(result),
            Err(_) => self.roll.restart = Some(task),
        }
    }

    /// Notices the roll's switchover done or failed.
    fn watch_roll_switchover(&mut self, plan: &Plan) {
        let Some(id) = self.roll.switchover.clone() else {
            return;
        };
        let done = self
            .orchestrator
            .as_ref()
            .and_then(|o| o.history().completed_switchover.as_deref())
            == Some(id.as_str());
        let failed = plan.events.iter().find_map(|e| match e {
            Event::SwitchoverFailed {
                request: Some(r), ..
            }
            | Event::SwitchoverRefused {
                request: Some(r), ..
            } if *r == id => Some(e.to_string()),
            _ => None,
        });
        if done {
            self.roll.switchover = None;
            let primary = self.current_primary().unwrap_or_default();
            self.shared
                .lock()
                .note(format!("roll: {primary} is the primary"));
        } else if let Some(why) = failed {
            self.roll.switchover = None;
            self.roll.switchover_failed = Some(Instant::now());
            self.switchover = None;
            if let Err(e) = self.apply_spec() {
                tracing::warn!(error = %e, "roll: spec not applied");
            }
            self.shared
                .lock()
                .note(format!("warning: roll: the switchover failed: {why}"));
        }
    }
}

/// Why a server did not start, in one line: the server's own errors when its log has them
/// (`unknown variable 'x=1'`), else the whole error.
fn start_failure(e: &LocalError) -> String {
    if let LocalError::Server(lagless_mariadbd::ServerError::ServerStart {
        reason,
        tail,
        log,
        ..
    }) = e
    {
        let errors: Vec<&str> = tail
            .lines()
            .filter_map(|l| l.split_once("[ERROR] ").map(|(_, what)| what))
            .filter(|what| *what != "Aborting")
            .collect();
        if !errors.is_empty() {
            return format!("{reason}: {} (log: {})", errors.join("; "), log.display());
        }
    }
    e.to_string()
}

/// Stops the member's server cleanly and starts it with `wanted`; a server that does not
/// start with it is started again with its previous configuration (left to the
/// supervisor's restarts), and the error says why.
async fn restart(
    rt: Arc<Runtime>,
    shared: SharedState,
    layout: mariadb::ServerLayout,
    child: Option<std::process::Child>,
    wanted: BTreeMap<String, String>,
) -> Result<(), LocalError> {
    if let Some(mut child) = child {
        mariadb::stop(&mut child, STOP_GRACE).await;
    }
    // Recorded only once it is up: until then the member's configuration is the one it ran,
    // which a crash restart (or the next supervisor, if this one dies meanwhile) starts.
    let (child, ready) = match rt.spawn_unrecorded(&layout, &wanted) {
        Ok(mut child) => {
            let ready = mariadb::wait_ready(&mut child, &layout, &rt.creds, rt.tls.as_ref()).await;
            (Some(child), ready)
        }
        Err(e) => (None, Err(e)),
    };
    let failed = ready.is_err();
    let ready = ready.and_then(|()| record_config(&layout, &wanted));
    let mut shared = shared.lock();
    if let Some(m) = shared.processes.members.get_mut(&layout.name) {
        match child {
            Some(mut child) if failed => {
                let _ = child.kill();
                let _ = child.wait();
                m.crashed_now();
            }
            Some(child) => {
                m.child = Some(child);
                m.process = Process::Running;
            }
            None => m.crashed_now(),
        }
    }
    ready
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_start_failure_is_told_by_the_servers_own_errors() {
        let e = LocalError::Server(lagless_mariadbd::ServerError::ServerStart {
            member: "s-1".into(),
            reason: "mariadbd exited (exit status: 7)".into(),
            log: "/s/members/s-1/error.log".into(),
            tail: "2026-12-07  6:40:04 0 [Note] Plugin 'FEEDBACK' is disabled.\n\
                   2026-12-07  6:40:04 0 [ERROR] /usr/sbin/mariadbd: unknown variable 'x=1'\n\
                   2026-12-07  6:40:04 0 [ERROR] Aborting"
                .into(),
        });
        assert_eq!(
            start_failure(&e),
            "mariadbd exited (exit status: 7): /usr/sbin/mariadbd: unknown variable 'x=1' \
             (log: /s/members/s-1/error.log)"
        );
        let other = LocalError::Other("no port".into());
        assert_eq!(start_failure(&other), "no port");
    }
}
