//! Switchover, scale and reseed requests (see [`crate::local::request`] for the files):
//! taken one at a time, started, and completed once their effect is visible.

use std::time::{Duration, Instant};

use crate::local::process_table::Process;
use crate::local::request::{Request, RequestKind};
use crate::local::state::write_json;
use crate::local::status::RollStatus;
use crate::local::{LocalError, apply, cordon, mariadb, pause, read_only};
use crate::orchestrate::run::Orchestrator;
use crate::orchestrate::view::{Switchover, SwitchoverTarget};
use crate::orchestrate::{Event, Plan};

use super::Supervisor;

/// A request being carried out.
#[derive(Debug)]
pub(super) struct Pending {
    request: Request,
    started: Instant,
    /// Members a scale-up added, each to be seen replicating.
    added: Vec<String>,
}

impl Supervisor {
    /// Picks up the oldest request file, if no request is being carried out.
    /// A scale or re-seed changes members a roll may be restarting: refused until it ends.
    fn refused_while_rolling(&self, kind: &RequestKind) -> Option<String> {
        let what = match kind {
            RequestKind::Scale { .. } => "scale",
            RequestKind::Reseed { .. } => "reseed",
            _ => return None,
        };
        let rolling = self.roll.rolling.is_some() || self.roll.restart.is_some();
        rolling.then(|| {
            format!(
                "a configuration change is being rolled through the members: {what} once it \
                 is done (`status` shows the roll)"
            )
        })
    }

    pub(super) async fn take_request(&mut self) {
        if self.pending.is_some() {
            return;
        }
        let Some(request) = crate::local::request::next(&self.rt.dir) else {
            return;
        };
        tracing::info!(?request, "request");
        let before = self.settings.replicas;
        let held = match &request.kind {
            RequestKind::Switchover { .. } => Some("switchover"),
            RequestKind::Scale { .. } => Some("scaling"),
            RequestKind::Reseed { .. } => Some("re-seed"),
            RequestKind::Pause
            | RequestKind::Resume
            | RequestKind::Cordon { .. }
            | RequestKind::Uncordon { .. }
            | RequestKind::ReadOnly { .. }
            | RequestKind::Apply { .. }
            | RequestKind::Restart => None,
        }
        .and_then(|what| pause::refused_while_paused(self.settings.paused, what))
        .or_else(|| self.refused_while_rolling(&request.kind));
        let outcome = match (&request.kind, held) {
            (_, Some(refused)) => Err(LocalError::Other(refused)),
            (RequestKind::Switchover { to }, None) => {
                self.begin_switchover(&request.id, to.as_deref())
            }
            (RequestKind::Scale { replicas }, None) => self.begin_scale(*replicas).await,
            (RequestKind::Reseed { member }, None) => self.begin_reseed(member).await,
            (RequestKind::Pause, None) => self.set_paused(true).map(Some),
            (RequestKind::Resume, None) => self.set_paused(false).map(Some),
            (RequestKind::Cordon { member }, None) => self.set_cordoned(member, true).map(Some),
            (RequestKind::Uncordon { member }, None) => self.set_cordoned(member, false).map(Some),
            (RequestKind::ReadOnly { on }, None) => self.set_read_only(*on).map(Some),
            (RequestKind::Apply { manifest }, None) => self.begin_apply(manifest).map(Some),
            (RequestKind::Restart, None) => Ok(Some(self.begin_restart())),
        };
        match outcome {
            Ok(Some(done)) => self.finish(&request.id, true, done),
            Ok(None) => {
                // The members this request must see replicating before it is done.
                let added = match &request.kind {
                    RequestKind::Scale { replicas } => (before..*replicas)
                        .map(|i| self.settings.member_name(i))
                        .collect(),
                    RequestKind::Reseed { member } => vec![member.clone()],
                    RequestKind::Switchover { .. }
                    | RequestKind::Pause
                    | RequestKind::Resume
                    | RequestKind::Cordon { .. }
                    | RequestKind::Uncordon { .. }
                    | RequestKind::ReadOnly { .. }
                    | RequestKind::Apply { .. }
                    | RequestKind::Restart => Vec::new(),
                };
                self.pending = Some(Pending {
                    request,
                    started: Instant::now(),
                    added,
                });
            }
            Err(e) => self.finish(&request.id, false, e.to_string()),
        }
    }

    /// Stops `member`, replaces its data with an empty template copy and starts it again;
    /// the plan then seeds it like a new member.
    async fn begin_reseed(&mut self, member: &str) -> Result<Option<String>, LocalError> {
        if self.current_primary().as_deref() == Some(member) {
            return Err(LocalError::Other(format!(
                "{member} is the primary: switch over first (`local switchover`)"
            )));
        }
        let (layout, child) = {
            let mut shared = self.shared.lock();
            let m = shared
                .processes
                .members
                .get_mut(member)
                .filter(|m| !m.removing)
                .ok_or_else(|| LocalError::Other(format!("no member {member}")))?;
            m.process = Process::Stopped;
            m.restart_at = None;
            (m.layout.clone(), m.child.take())
        };
        if let Some(mut child) = child {
            mariadb::stop_discarding(&mut child).await;
        }
        let emptied = async {
            mariadb::remove_dir(&layout.data_dir()).await?;
            mariadb::init_member_data(&self.rt.dir.template(), &layout).await?;
            self.rt.spawn_member(&layout)
        }
        .await;
        let mut shared = self.shared.lock();
        let m = shared
            .processes
            .members
            .get_mut(member)
            .ok_or_else(|| LocalError::Other(format!("no member {member}")))?;
        match emptied {
            Ok(child) => {
                m.child = Some(child);
                m.process = Process::Starting;
            }
            Err(e) => {
                m.crashed_now();
                return Err(e);
            }
        }
        shared.note(format!("{member} emptied for a re-seed"));
        drop(shared);
        if let Some(o) = self.orchestrator.as_mut() {
            o.release_for_reseed(member);
        }
        Ok(None)
    }

    /// Pauses or resumes the orchestration from the next tick on, and keeps it so across
    /// restarts (`settings.json`).
    fn set_paused(&mut self, paused: bool) -> Result<String, LocalError> {
        let was = self.settings.paused;
        if was != paused {
            self.settings.paused = paused;
            write_json(&self.rt.dir.settings(), &self.settings, 0o644)?;
            self.apply_spec()?;
        }
        // The request's result is noted with the events: no note of its own.
        self.shared.lock().paused = paused;
        Ok(pause::toggled(&self.settings.cluster, was, paused))
    }

    /// Cordons or uncordons `member` from the next tick on (the plan publishes it with weight
    /// 0, or its weight again), and keeps it so across restarts (`settings.json`).
    fn set_cordoned(&mut self, member: &str, on: bool) -> Result<String, LocalError> {
        let members: Vec<String> = (0..self.settings.replicas)
            .map(|i| self.settings.member_name(i))
            .collect();
        let primary = self.current_primary();
        let (now, message) = cordon::cordon(
            &self.settings.cordoned,
            member,
            on,
            &members,
            primary.as_deref(),
        )
        .map_err(LocalError::Other)?;
        if now != self.settings.cordoned {
            self.settings.cordoned = now;
            write_json(&self.rt.dir.settings(), &self.settings, 0o644)?;
            self.apply_spec()?;
        }
        Ok(message)
    }

    /// Makes the whole cluster read-only or writable from the next tick on, and keeps it so
    /// across restarts (`settings.json`).
    fn set_read_only(&mut self, on: bool) -> Result<String, LocalError> {
        let was = self.settings.read_only;
        if was != on {
            self.settings.read_only = on;
            write_json(&self.rt.dir.settings(), &self.settings, 0o644)?;
            self.apply_spec()?;
        }
        self.shared.lock().read_only = on;
        Ok(read_only::toggled(
            &self.settings.cluster,
            was,
            on,
            self.settings.paused,
        ))
    }

    /// Takes a changed file's `serverConfig` as the wanted one (kept in `cluster.yaml`) and
    /// starts rolling it through the members from the next round on; the roll itself is not
    /// a request, so `pause` and the other requests are taken while it goes on.
    fn begin_apply(&mut self, manifest: &str) -> Result<String, LocalError> {
        let path = self.rt.dir.manifest();
        let wanted = crate::local::manifest::parse(manifest, &path)?;
        let changes = apply::config_changes(&self.cluster, &wanted).map_err(LocalError::Usage)?;
        if changes.is_empty() {
            // The same file again after a roll stopped (a member did not start with it, and
            // the cause was mended outside the file): the roll goes on from where it stopped.
            if self.roll.is_stopped() {
                let members = self.announce_roll("the stopped roll asked for again");
                return Ok(format!(
                    "the stopped roll goes on: {}{}",
                    roll_order(members),
                    self.roll_later()
                ));
            }
            return Ok("nothing to change: the file's serverConfig is the running one".into());
        }
        let tmp = path.with_extension("yaml.tmp");
        std::fs::write(&tmp, manifest).map_err(LocalError::io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(LocalError::io(&path))?;
        self.rt.set_wanted_config(wanted.spec.server_config.clone());
        self.cluster = wanted;
        let members = self.announce_roll(&format!("serverConfig changed ({})", changes.join(", ")));
        Ok(format!(
            "serverConfig changed ({}): {}{}",
            changes.join(", "),
            roll_order(members),
            self.roll_later()
        ))
    }

    /// Restarts every member, rolled as a configuration change is: those started before now
    /// are not current any more.
    fn begin_restart(&mut self) -> String {
        self.roll.restart_requested_ms = Some(crate::clock::unix_ms());
        let members = self.announce_roll("restart asked");
        format!("{}{}", roll_order(members), self.roll_later())
    }

    /// Starts a roll from the next round on, noted as `why`; returns the members to roll.
    fn announce_roll(&mut self, why: &str) -> u32 {
        self.roll.begin();
        let members = self.settings.replicas;
        // In the status before the request's result: `apply` and `restart` then wait for it.
        let mut shared = self.shared.lock();
        shared.roll = Some(RollStatus {
            members,
            waiting: Some("starting".into()),
            started_unix_ms: crate::clock::unix_ms(),
            ..RollStatus::default()
        });
        shared.note(format!("{why}: rolling {members} members one at a time"));
        members
    }

    fn roll_later(&self) -> &'static str {
        if self.settings.paused {
            "; orchestration is paused: the roll starts once it is resumed"
        } else {
            ""
        }
    }

    fn finish(&mut self, id: &str, ok: bool, message: String) {
        self.shared.lock().finish_request(id, ok, message);
    }

    /// `Ok(Some(message))`: nothing to do; `Ok(None)`: under way.
    fn begin_switchover(
        &mut self,
        id: &str,
        to: Option<&str>,
    ) -> Result<Option<String>, LocalError> {
        let primary = self.current_primary();
        let target = match to {
            Some(name) => {
                if !(0..self.settings.replicas).any(|i| self.settings.member_name(i) == name) {
                    return Err(LocalError::Other(format!(
                        "{name} is not a member of {}",
                        self.settings.cluster
                    )));
                }
                if primary.as_deref() == Some(name) {
                    return Ok(Some(format!("{name} is the primary already")));
                }
                SwitchoverTarget::Member(name.to_string())
            }
            None => SwitchoverTarget::Best,
        };
        self.switchover = Some(Switchover {
            id: id.to_string(),
            to: target,
        });
        self.apply_spec()?;
        Ok(None)
    }

    async fn begin_scale(&mut self, replicas: u32) -> Result<Option<String>, LocalError> {
        let max = u32::try_from(crate::crd::MAX_MEMBERS).unwrap_or(9);
        if !(1..=max).contains(&replicas) {
            return Err(LocalError::Other(format!(
                "replicas must be between 1 and {max}"
            )));
        }
        let current = self.settings.replicas;
        if replicas == current {
            return Ok(Some(format!("{current} members already")));
        }
        if replicas > current {
            for i in current..replicas {
                let layout = self.layout(i)?;
                crate::local::ports::ensure_free(layout.port, &layout.name)?;
                self.add_member(layout).await?;
            }
        } else {
            let mut shared = self.shared.lock();
            for i in replicas..current {
                if let Some(m) = shared
                    .processes
                    .members
                    .get_mut(&self.settings.member_name(i))
                {
                    m.removing = true;
                }
            }
        }
        self.settings.replicas = replicas;
        write_json(&self.rt.dir.settings(), &self.settings, 0o644)?;
        self.apply_spec()?;
        Ok(None)
    }

    /// Completes the pending request when its effect is visible.
    pub(super) fn check_request(&mut self, plan: Option<&Plan>) {
        let Some(pending) = &self.pending else {
            return;
        };
        let id = pending.request.id.clone();
        let elapsed = pending.started.elapsed();
        let outcome: Option<(bool, String)> = match &pending.request.kind {
            RequestKind::Switchover { .. } => {
                let done = self
                    .orchestrator
                    .as_ref()
                    .and_then(|o| o.history().completed_switchover.clone())
                    .is_some_and(|c| c == id);
                let refused = plan
                    .into_iter()
                    .flat_map(|p| &p.events)
                    .find_map(|e| match e {
                        Event::SwitchoverRefused { reason, .. } => Some(reason.clone()),
                        Event::SwitchoverFailed {
                            request: Some(r), ..
                        } if *r == id => Some(e.to_string()),
                        _ => None,
                    });
                if done {
                    let epoch = self
                        .orchestrator
                        .as_ref()
                        .and_then(Orchestrator::published)
                        .map_or(0, |t| t.epoch);
                    Some((
                        true,
                        format!(
                            "{} is the primary (epoch {epoch}), switched in {} ms",
                            self.current_primary().unwrap_or_default(),
                            elapsed.as_millis()
                        ),
                    ))
                } else if let Some(why) = refused {
                    Some((false, why))
                } else if elapsed > Duration::from_secs(120) {
                    Some((false, "switchover did not finish within 120 s".into()))
                } else {
                    None
                }
            }
            RequestKind::Reseed { member } => {
                let shared = self.shared.lock();
                let seeded = shared
                    .last_seeded
                    .as_ref()
                    .is_some_and(|(m, at)| m == member && *at >= pending.started);
                let replicating = shared
                    .last_tick
                    .published
                    .as_ref()
                    .is_some_and(|t| t.replicas.iter().any(|r| r.name == *member));
                if seeded && replicating {
                    Some((
                        true,
                        format!(
                            "{member} re-seeded and replicating, in {:.1} s",
                            elapsed.as_secs_f64()
                        ),
                    ))
                } else if elapsed > Duration::from_secs(1800) {
                    Some((false, "re-seeding did not finish within 30 min".into()))
                } else {
                    None
                }
            }
            // Done when taken, never pending.
            RequestKind::Pause
            | RequestKind::Resume
            | RequestKind::Cordon { .. }
            | RequestKind::Uncordon { .. }
            | RequestKind::ReadOnly { .. }
            | RequestKind::Apply { .. }
            | RequestKind::Restart => Some((true, String::new())),
            RequestKind::Scale { replicas } => {
                let shared = self.shared.lock();
                let published = shared.last_tick.published.as_ref();
                let replicating = |name: &str| {
                    published.is_some_and(|t| t.replicas.iter().any(|r| r.name == name))
                };
                let joined = pending.added.iter().all(|m| replicating(m));
                let removed = shared.processes.members.values().all(|m| !m.removing);
                if joined && removed {
                    Some((
                        true,
                        format!("{replicas} members, in {:.1} s", elapsed.as_secs_f64()),
                    ))
                } else if elapsed > Duration::from_secs(1800) {
                    Some((false, "scaling did not finish within 30 min".into()))
                } else {
                    None
                }
            }
        };
        if let Some((ok, message)) = outcome {
            if matches!(pending.request.kind, RequestKind::Switchover { .. }) && !ok {
                self.switchover = None;
                let _ = self.apply_spec();
            }
            self.pending = None;
            self.finish(&id, ok, message);
        }
    }
}

/// How `members` are rolled, for people.
fn roll_order(members: u32) -> String {
    if members == 1 {
        "restarting the only member in place (there is no replica to hand the primary role to: \
         writes fail while it restarts)"
            .to_string()
    } else {
        format!(
            "restarting {members} members one at a time, replicas first, the primary after a \
             switchover"
        )
    }
}
