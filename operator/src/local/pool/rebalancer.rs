//! The pool supervisor's rebalancer. Each round it asks [`rebalancing::next`] what to do and
//! runs it as a child `lagless-operator tenant --state-dir <pool> move|rebalance`, so that a
//! move the operator starts is exactly a move a person could have started: the same record,
//! lock and resumption, and `local status` lists it. The child's output goes to
//! `<pool>/rebalance.log`.

use std::path::{Path, PathBuf};
use std::process::Child;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::crd::tenant_pool::RebalanceSpec;
use crate::local::LocalError;
use crate::local::process::{FileLock, spawn_tied};
use crate::local::process_table::{own_command, stop_together};
use crate::local::restart::backoff;
use crate::local::status::Status;
use crate::pool::moves::MoveRecord;
use crate::pool::rebalancing::{self, ClusterHealth, Next, Unfinished};

/// A cluster status older than this says nothing about the cluster's health now.
const FRESH: Duration = Duration::from_secs(10);

/// What `local status` shows of the rebalancer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RebalanceStatus {
    pub enabled: bool,
    /// What runs now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub running: Option<String>,
    /// Why nothing starts, while that lasts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<String>,
    /// How the last run ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<String>,
}

/// The child that runs, with what it is for.
#[derive(Debug)]
struct Mover {
    child: Child,
    what: String,
}

#[derive(Debug)]
pub struct Rebalancer {
    root: PathBuf,
    log_filter: String,
    mover: Option<Mover>,
    ended: Option<Instant>,
    /// Runs that failed in a row: an unfinished move that keeps failing (a roll-back waiting
    /// for a person) is taken up again less and less often, as a crashing process is.
    failures: u32,
    pub status: RebalanceStatus,
}

impl Rebalancer {
    pub fn new(root: &Path, log_filter: &str) -> Self {
        Self {
            root: root.to_path_buf(),
            log_filter: log_filter.to_string(),
            mover: None,
            ended: None,
            failures: 0,
            status: RebalanceStatus::default(),
        }
    }

    fn log(&self) -> PathBuf {
        self.root.join("rebalance.log")
    }

    /// One round: reaps a finished child, then starts what the decision asks for, with the
    /// clusters' statuses `clusters` reads (only when a start is possible). Returns the events
    /// worth noting.
    pub fn round(
        &mut self,
        spec: &RebalanceSpec,
        clusters: impl FnOnce() -> Vec<(String, Option<Status>)>,
        now_unix_ms: u64,
    ) -> Vec<String> {
        let mut notes = Vec::new();
        self.status.enabled = spec.enabled;
        if let Some(m) = self.mover.as_mut()
            && let Ok(Some(exit)) = m.child.try_wait()
        {
            let what = m.what.clone();
            self.mover = None;
            self.ended = Some(Instant::now());
            self.status.running = None;
            let last = if exit.success() {
                self.failures = 0;
                format!("{what}: done")
            } else {
                self.failures = self.failures.saturating_add(1);
                let tail = crate::local::mariadb::tail(&self.log(), 1);
                let why = match tail.trim() {
                    "" => exit.to_string(),
                    line => line.to_string(),
                };
                format!("{what}: failed: {why}")
            };
            notes.push(format!("rebalancing: {last}"));
            self.status.last = Some(last);
        }
        let since = self.ended.map(|at| at.elapsed());
        let resume_after = backoff(self.failures).max(rebalancing::RESUME_AFTER);
        // Nothing can start: no reading of records and statuses.
        if !spec.enabled || self.mover.is_some() || since.is_some_and(|d| d < resume_after) {
            return notes;
        }
        let unfinished = unfinished_moves(&self.root.join("moves"));
        let health: Vec<ClusterHealth> = clusters()
            .iter()
            .map(|(name, status)| health(name, status.as_ref(), now_unix_ms))
            .collect();
        let next = rebalancing::next(spec, since, &unfinished, &health);
        let started = match next {
            Next::Idle => {
                self.status.waiting = None;
                return notes;
            }
            Next::Hold(why) => {
                if self.status.waiting.as_ref() != Some(&why) {
                    notes.push(why.clone());
                    self.status.waiting = Some(why);
                }
                return notes;
            }
            Next::Resume { tenant, to } => self.start(
                format!("resuming the move of tenant {tenant} to {to}"),
                &["move", &tenant, "--to", &to],
                spec,
            ),
            Next::Rebalance => {
                let margin = spec.margin.to_string();
                let moves = spec.max_moves.to_string();
                self.start(
                    "rebalancing the clusters".to_string(),
                    &[
                        "rebalance",
                        "--margin",
                        &margin,
                        "--max-moves",
                        &moves,
                        "--apply",
                    ],
                    spec,
                )
            }
        };
        self.status.waiting = None;
        match started {
            Ok(what) => {
                self.status.running = Some(what.clone());
                notes.push(format!("rebalancing: {what}"));
            }
            Err(e) => {
                // Counted as a run, so the next try waits for the interval.
                self.ended = Some(Instant::now());
                let last = format!("cannot start: {e}");
                notes.push(format!("rebalancing: {last}"));
                self.status.last = Some(last);
            }
        }
        notes
    }

    fn start(
        &mut self,
        what: String,
        args: &[&str],
        spec: &RebalanceSpec,
    ) -> Result<String, LocalError> {
        let mut cmd = own_command(&self.log())?;
        cmd.arg("tenant")
            .arg("--state-dir")
            .arg(&self.root)
            .args(args)
            .arg("--copy-rate-mib")
            .arg(spec.copy_rate_mib.to_string())
            .env("LAGLESS_LOG", &self.log_filter);
        tracing::info!(what = %what, "rebalancing");
        let child = spawn_tied(cmd).map_err(|e| LocalError::Command {
            command: format!("lagless-operator tenant {}", args.join(" ")),
            detail: e.to_string(),
        })?;
        self.mover = Some(Mover {
            child,
            what: what.clone(),
        });
        Ok(what)
    }

    /// Stops a running move (it resumes from its record at the next start).
    pub async fn stop(&mut self) {
        if let Some(m) = self.mover.take() {
            stop_together(vec![m.child], Duration::from_secs(10)).await;
        }
    }
}

/// A cluster's health from its supervisor's status, if that is fresh.
fn health(name: &str, status: Option<&Status>, now_unix_ms: u64) -> ClusterHealth {
    let fresh = status
        .filter(|s| now_unix_ms.saturating_sub(s.updated_unix_ms) <= FRESH.as_millis() as u64);
    let busy = fresh.and_then(|s| {
        if s.paused {
            Some("paused")
        } else if s.read_only || s.read_only_in_effect {
            Some("read-only")
        } else if s.roll.is_some() {
            Some("rolling")
        } else if s.seeding.is_some() {
            Some("seeding")
        } else {
            None
        }
    });
    ClusterHealth {
        name: name.to_string(),
        state: fresh.and_then(|s| s.state.clone()),
        max_lag_seconds: fresh.and_then(|s| {
            s.members
                .iter()
                .filter(|m| m.role == "replica")
                .filter_map(|m| m.lag_seconds)
                .max()
        }),
        busy,
    }
}

/// The moves on record in `dir` that have not ended, by tenant.
fn unfinished_moves(dir: &Path) -> Vec<Unfinished> {
    // By tenant, as `read_moves` gives them.
    super::read_moves(dir)
        .into_iter()
        .filter(|r: &MoveRecord| !r.phase.is_final())
        .map(|r| Unfinished {
            running: FileLock::is_held(&dir.join(format!("{}.lock", r.tenant))),
            tenant: r.tenant,
            to: r.to,
        })
        .collect()
}
