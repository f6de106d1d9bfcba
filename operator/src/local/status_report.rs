//! The status document: built from the shared state, written as `status.json` twice a
//! second for the other commands (see [`super::status`] for its types and how it is shown).

use std::process::Child;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::watch;

use crate::crd::Durability;
use crate::orchestrate::Probe;

use super::process_table::{Process, Runtime};
use super::shared::{RunningCluster, SharedState};
use super::state::{Settings, write_json};
use super::status::{ConnectInfo, EventLine, MemberStatus, ProxyStatus, SeedingStatus, Status};

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
            }
        })
        .collect();
    let proxies = shared
        .processes
        .proxies
        .iter()
        .map(|p| ProxyStatus {
            name: format!("proxy-{}", p.index),
            port: p.port,
            admin_port: p.admin_port,
            pid: p.child.as_ref().map(Child::id),
            running: p.child.is_some(),
            restarts: p.restarts,
        })
        .collect();
    let mut events: Vec<EventLine> = shared
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
        phase: shared.phase.clone(),
        step: shared.step.clone(),
        progress: shared.progress.clone(),
        state: snap.state.map(|s| format!("{s:?}")),
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
        events,
        // A pool's clusters are reached through the pool's proxies, not their own.
        connect: (settings.pool.is_none())
            .then(|| settings.proxy_ports(0))
            .flatten()
            .map(|(port, _)| ConnectInfo {
                host: "127.0.0.1".into(),
                port,
                user: rt.creds.app_user.clone(),
                database: rt.creds.database.clone(),
                credentials_file: rt.dir.credentials().display().to_string(),
                tls_ca: rt.tls.as_ref().map(|t| t.ca().display().to_string()),
            }),
        requests: shared.requests.clone(),
    }
}

/// Writes `status.json` every half second until `stop`, and once more at the end.
pub async fn write_status_until(
    shared: SharedState,
    rt: Arc<Runtime>,
    settings: Settings,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let doc = status(&shared.lock(), &rt, &settings);
        if let Err(e) = write_json(&rt.dir.status(), &doc, 0o644) {
            tracing::warn!(error = %e, "cannot write status");
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
