//! The status document: built from the shared state, written as `status.json` twice a
//! second for the other commands (see [`super::status`] for its types and how it is shown).

use std::path::Path;
use std::process::Child;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::watch;

use crate::crd::Durability;
use crate::orchestrate::Probe;
use crate::tls::files::TlsFiles;

use super::process_table::{Process, ProxyProc, Runtime};
use super::shared::{RunningCluster, SharedState};
use super::state::{LocalCredentials, Settings, write_json};
use super::status::{ConnectInfo, EventLine, MemberStatus, SeedingStatus, Status};

/// Builds the status document from the shared state.
pub fn status(shared: &RunningCluster, rt: &Runtime, settings: &Settings) -> Status {
    let snap = &shared.last_tick;
    let published = snap.published.as_ref();
    let view = snap.view.as_ref();
    let primary_name = published
        .and_then(|t| t.primary.as_ref())
        .map(|p| p.name.clone());
    let primary_exec = primary_name
        .as_deref()
        .and_then(|p| view?.member(p)?.executed.clone());
    let members = shared
        .processes
        .members
        .values()
        .map(|m| {
            let name = m.layout.name.as_str();
            let v = view.and_then(|v| v.member(name));
            let role = if m.removing {
                "removing"
            } else if primary_name.as_deref() == Some(name) {
                "primary"
            } else if snap.quarantined.iter().any(|q| q == name) {
                "quarantined"
            } else if published.is_some_and(|t| t.replicas.iter().any(|r| r.name == name)) {
                "replica"
            } else if m.process == Process::Running || m.process == Process::Seeding {
                "joining"
            } else {
                "down"
            };
            let error = v.and_then(|v| {
                v.io_error
                    .as_ref()
                    .or(v.sql_error.as_ref())
                    .map(|e| format!("replication error {}: {}", e.code, e.message))
            });
            MemberStatus {
                name: name.to_string(),
                role: role.to_string(),
                port: m.layout.port,
                pid: m.child.as_ref().map(Child::id),
                process: m.process.as_str().to_string(),
                health: v
                    .map_or("unknown", |v| match v.probe {
                        Probe::Ok => "ok",
                        Probe::Unreachable => "unreachable",
                        Probe::Hung => "hung",
                    })
                    .to_string(),
                gtid: v.and_then(|v| v.executed.as_ref()).map(ToString::to_string),
                behind: v
                    .and_then(|v| v.holdings())
                    .zip(primary_exec.as_ref())
                    .and_then(|(held, p)| held.transactions_behind(p)),
                lag_seconds: v.and_then(|v| v.lag_seconds),
                replicating: v
                    .filter(|v| v.source.is_some())
                    .map(|v| v.io_running == Some(true) && v.sql_running == Some(true)),
                error,
                restarts: m.restarts,
                cordoned: published
                    .is_some_and(|t| t.replicas.iter().any(|r| r.name == name && r.weight == 0)),
                config_pending: shared.config_pending.iter().any(|p| p == name),
                older_program: shared.older_program.iter().any(|p| p == name),
            }
        })
        .collect();
    let proxies = shared
        .processes
        .proxies
        .iter()
        .map(ProxyProc::status)
        .collect();
    let mut events: Vec<EventLine> = shared
        .journal
        .events
        .iter()
        .cloned()
        .chain(snap.events.iter().cloned())
        .collect();
    events.sort_by_key(|e| e.unix_ms);
    let excess = events.len().saturating_sub(50);
    events.drain(..excess);
    Status {
        cluster: settings.cluster.clone(),
        phase: shared.journal.phase.clone(),
        step: shared.journal.step.clone(),
        progress: shared.journal.progress.clone(),
        state: snap.state.map(|s| format!("{s:?}")),
        paused: shared.paused,
        read_only: shared.read_only,
        read_only_in_effect: published.is_some_and(|t| t.read_only)
            && primary_name
                .as_deref()
                .and_then(|p| view?.member(p))
                .is_some_and(|m| m.read_only == Some(true)),
        supervisor_pid: std::process::id(),
        updated_unix_ms: crate::clock::unix_ms(),
        epoch: published.map(|t| t.epoch),
        durability: {
            let replicas = i32::try_from(settings.replicas).unwrap_or(i32::MAX);
            let durability = Durability::of(&rt.replication, replicas);
            (!durability.is_lossless()).then(|| durability.message())
        },
        failing: snap.failing.clone(),
        primary: primary_name,
        consistency: published.and_then(|t| t.consistency.map(|m| m.to_string())),
        members,
        proxies,
        seeding: shared.seeding.as_ref().map(|s| SeedingStatus {
            member: s.member.clone(),
            donor: s.donor.clone(),
            bytes: s.bytes.load(Ordering::Relaxed),
            elapsed_ms: u64::try_from(s.started.elapsed().as_millis()).unwrap_or(u64::MAX),
        }),
        roll: shared.roll.clone(),
        events,
        // A pool's clusters are reached through the pool's proxies, not their own.
        connect: (settings.pool.is_none())
            .then(|| settings.proxy_ports(0))
            .flatten()
            .map(|(port, _)| connect_info(port, &rt.creds, &rt.dir.credentials(), rt.tls.as_ref())),
        requests: shared.requests.clone(),
        archive: shared.archive.clone(),
        backups: shared.backups.clone(),
        drills: shared.drills.clone(),
    }
}

/// How to connect to the proxy on `port` as the application account of `creds` (its
/// password kept in `credentials`), verifying the proxy with `tls`'s CA if there is one.
pub fn connect_info(
    port: u16,
    creds: &LocalCredentials,
    credentials: &Path,
    tls: Option<&TlsFiles>,
) -> ConnectInfo {
    ConnectInfo {
        host: "127.0.0.1".into(),
        port,
        user: creds.app_user.clone(),
        database: creds.database.clone(),
        credentials_file: credentials.display().to_string(),
        tls_ca: tls.map(|t| t.ca().display().to_string()),
    }
}

/// Writes `status.json` every half second until `stop`, and once more at the end.
pub async fn write_status_until(
    shared: SharedState,
    rt: Arc<Runtime>,
    settings: Settings,
    stop: watch::Receiver<bool>,
) {
    let path = rt.dir.status();
    let status = move || status(&shared.lock(), &rt, &settings);
    write_every_half_second(&path, status, "status", stop).await;
}

/// Writes what `status` makes to `path` every half second until `stop`, and once more at
/// the end; `what` names it in the log when it cannot be written.
pub async fn write_every_half_second<S: Serialize>(
    path: &Path,
    status: impl Fn() -> S,
    what: &str,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let doc = status();
        if let Err(e) = write_json(path, &doc, 0o644) {
            tracing::warn!(error = %e, "cannot write {what}");
        }
        if *stop.borrow() {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = stop.changed() => {}
        }
    }
}
