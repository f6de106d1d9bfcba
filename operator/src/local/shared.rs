//! What the supervisor's loop, the seeder and the status writer share: the processes, the
//! start's progress, what the orchestration last saw, recent events and request results.

use std::collections::VecDeque;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use lagless_core::topology::Topology;

use crate::orchestrate::{ClusterState, ClusterView};

use super::process_table::ProcessTable;
use super::status::{EventLine, RequestResult, RollStatus};

/// A seeding in progress.
#[derive(Debug)]
pub struct Seeding {
    pub member: String,
    pub donor: String,
    pub bytes: Arc<AtomicU64>,
    pub started: Instant,
}

/// What the orchestration last saw and did, copied after each tick.
#[derive(Debug, Default)]
pub struct LastTick {
    pub state: Option<ClusterState>,
    pub view: Option<ClusterView>,
    pub published: Option<Topology>,
    pub quarantined: Vec<String>,
    pub events: Vec<EventLine>,
    pub failing: Option<String>,
}

/// A supervisor's phase, the steps of its start and its recent events, a cluster's or a
/// pool's.
#[derive(Debug, Default)]
pub struct Journal {
    pub phase: String,
    pub step: String,
    /// The start's steps in order (see [`super::status::Status::progress`]).
    pub progress: Vec<String>,
    pub events: VecDeque<EventLine>,
}

impl Journal {
    /// Logs an event (`what`'s: `cluster` or `pool`) and keeps it (the last 100) for the
    /// status.
    pub fn note(&mut self, what: &str, message: String) {
        tracing::info!(%message, "{what} event");
        self.events.push_back(EventLine {
            unix_ms: crate::clock::unix_ms(),
            message,
        });
        while self.events.len() > 100 {
            self.events.pop_front();
        }
    }

    pub fn set_step(&mut self, phase: &str, step: String) {
        self.phase = phase.to_string();
        self.step = step;
        if phase == "starting" && self.progress.len() < 32 {
            self.progress.push(self.step.clone());
        }
        tracing::info!(phase, step = %self.step, "progress");
    }
}

/// The running cluster as the supervisor knows it: everything `status.json` is made from.
#[derive(Debug, Default)]
pub struct RunningCluster {
    pub journal: Journal,
    pub processes: ProcessTable,
    pub seeding: Option<Seeding>,
    /// The member whose copy last completed, and when.
    pub last_seeded: Option<(String, Instant)>,
    pub last_tick: LastTick,
    pub requests: Vec<RequestResult>,
    /// Orchestration paused.
    pub paused: bool,
    /// The whole cluster read-only (`read-only on`).
    pub read_only: bool,
    /// The binary log archive, when the spec asks for one.
    pub archive: Option<crate::backup::archiver::ArchiveStatus>,
    /// Scheduled backups, when the spec has a schedule.
    pub backups: Option<super::status::ScheduleStatus>,
    /// Scheduled restore drills, when the spec has a schedule for them.
    pub drills: Option<super::status::ScheduleStatus>,
    /// A `serverConfig` change being rolled, as the status shows it.
    pub roll: Option<RollStatus>,
    /// Members whose servers run an older `serverConfig`.
    pub config_pending: Vec<String>,
    /// Members started before `mariadbd` was last replaced (upgraded).
    pub older_program: Vec<String>,
}

/// [`RunningCluster`] behind a mutex that is never held across an await.
#[derive(Debug, Clone, Default)]
pub struct SharedState(Arc<Mutex<RunningCluster>>);

impl SharedState {
    pub fn lock(&self) -> MutexGuard<'_, RunningCluster> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl RunningCluster {
    /// Logs an event and keeps it (the last 100) for the status.
    pub fn note(&mut self, message: impl Into<String>) {
        self.journal.note("cluster", message.into());
    }

    pub fn set_step(&mut self, phase: &str, step: impl Into<String>) {
        self.journal.set_step(phase, step.into());
    }

    /// Keeps a request's result (the last 20) and notes it.
    pub fn finish_request(&mut self, id: &str, ok: bool, message: String) {
        self.note(format!(
            "request {id} {}: {message}",
            if ok { "done" } else { "failed" }
        ));
        self.requests.push(RequestResult {
            id: id.to_string(),
            ok,
            message,
        });
        let excess = self.requests.len().saturating_sub(20);
        self.requests.drain(..excess);
    }
}
