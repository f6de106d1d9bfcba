//! The decisions of a cluster's backups, as pure functions: which member gives the copy,
//! which `MySQLBackup` runs next, and when the schedule runs.

use lagless_core::topology::Topology;

use crate::backup::schedule::Schedule;
use crate::crd::backup::{BackupPhase, MySQLBackup};
use crate::orchestrate::ClusterView;

/// How far back a scheduled run missed while no operator ran is still taken.
pub const MISSED_RUN_WINDOW_SECS: u64 = 3600;

/// The member a backup is taken from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceMember {
    pub name: String,
    pub host: String,
    pub port: u16,
}

/// A published replica that replicates cleanly and has applied what the primary had when
/// observed (or reports no delay), the least behind first; the primary only when it is the
/// only member. Otherwise why none can give a backup now.
pub fn choose_source(
    view: Option<&ClusterView>,
    published: Option<&Topology>,
    members: usize,
) -> Result<SourceMember, String> {
    let (Some(view), Some(published)) = (view, published) else {
        return Err("the cluster has not been observed and published yet".into());
    };
    let Some(primary) = published.primary.as_ref() else {
        return Err("no primary is published".into());
    };
    let primary_view = view.member(&primary.name);
    if members <= 1 {
        return match primary_view {
            Some(p) if p.is_reachable() => Ok(SourceMember {
                name: primary.name.clone(),
                host: primary.host.clone(),
                port: primary.port,
            }),
            _ => Err(format!(
                "{} (the only member) does not answer",
                primary.name
            )),
        };
    }
    let head = primary_view.and_then(|p| p.executed.as_ref());
    let mut candidates = Vec::new();
    let mut states = Vec::new();
    for r in &published.replicas {
        let Some(m) = view.member(&r.name) else {
            states.push(format!("{} not observed", r.name));
            continue;
        };
        let behind = match (head, m.executed.as_ref()) {
            (Some(head), Some(mine)) => mine.transactions_behind(head),
            _ => None,
        };
        let caught_up = behind == Some(0) || m.lag_seconds == Some(0);
        if m.is_reachable() && m.replicates_cleanly() && caught_up {
            candidates.push((behind.unwrap_or(0), r));
        } else {
            states.push(format!(
                "{} {}",
                r.name,
                if !m.is_reachable() {
                    "does not answer".to_string()
                } else if !m.replicates_cleanly() {
                    "does not replicate cleanly".to_string()
                } else {
                    format!(
                        "is behind ({} transactions, {} s)",
                        behind.map_or("?".into(), |b| b.to_string()),
                        m.lag_seconds.map_or("?".into(), |s| s.to_string())
                    )
                }
            ));
        }
    }
    candidates.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.name.cmp(&b.1.name)));
    match candidates.first() {
        Some((_, r)) => Ok(SourceMember {
            name: r.name.clone(),
            host: r.host.clone(),
            port: r.port,
        }),
        None if published.replicas.is_empty() => {
            Err("no replica is published to take a backup from".into())
        }
        None => Err(format!(
            "no replica is caught up to take a backup from: {}",
            states.join(", ")
        )),
    }
}

/// The member a restore drill compares with: a published replica that replicates cleanly
/// (how far behind does not matter: the comparison is at its snapshot), the least behind; the
/// primary of a one-member cluster.
pub fn drill_source(
    view: Option<&ClusterView>,
    published: Option<&Topology>,
    members: usize,
) -> Result<SourceMember, String> {
    let (Some(view), Some(published)) = (view, published) else {
        return Err("the cluster has not been observed and published yet".into());
    };
    if members <= 1 {
        return choose_source(Some(view), Some(published), members);
    }
    let head = published
        .primary
        .as_ref()
        .and_then(|p| view.member(&p.name))
        .and_then(|p| p.executed.as_ref());
    published
        .replicas
        .iter()
        .filter_map(|r| Some((r, view.member(&r.name)?)))
        .filter(|(_, m)| m.is_reachable() && m.replicates_cleanly())
        .min_by_key(|(r, m)| {
            let behind = match (head, m.executed.as_ref()) {
                (Some(head), Some(mine)) => mine.transactions_behind(head),
                _ => None,
            };
            (behind.unwrap_or(u64::MAX), r.name.clone())
        })
        .map(|(r, _)| SourceMember {
            name: r.name.clone(),
            host: r.host.clone(),
            port: r.port,
        })
        .ok_or_else(|| "no replica is replicating to take a snapshot from".to_string())
}

/// [`choose_source`], limited to `preferred` (`spec.backup.member`) when it is given: that
/// replica once it has caught up, never another member (the primary only when it is the
/// only member).
pub fn choose_source_for(
    view: Option<&ClusterView>,
    published: Option<&Topology>,
    members: usize,
    preferred: Option<&str>,
) -> Result<SourceMember, String> {
    let (Some(name), Some(topology)) = (preferred.filter(|_| members > 1), published) else {
        return choose_source(view, published, members);
    };
    if topology.primary.as_ref().is_some_and(|p| p.name == name) {
        return Err(format!(
            "{name} (spec.backup.member) is the primary: backups come from a replica"
        ));
    }
    let mut only = topology.clone();
    only.replicas.retain(|r| r.name == name);
    if only.replicas.is_empty() {
        return Err(format!(
            "{name} (spec.backup.member) is not a published replica"
        ));
    }
    choose_source(view, Some(&only), members)
}

fn phase(b: &MySQLBackup) -> Option<BackupPhase> {
    b.status.as_ref().and_then(|s| s.phase)
}

/// The backup to run next: the oldest not yet started (by creation, then name), backups
/// before drills (a drill waiting for the archiver holds up no backup).
pub fn next_to_run(backups: &[MySQLBackup]) -> Option<&MySQLBackup> {
    backups
        .iter()
        .filter(|b| matches!(phase(b), None | Some(BackupPhase::Pending)))
        .filter(|b| b.metadata.deletion_timestamp.is_none())
        .min_by(|a, b| {
            let key = |b: &MySQLBackup| {
                (
                    b.spec.drill,
                    b.metadata.creation_timestamp.as_ref().map(|t| t.0),
                    b.metadata.name.clone(),
                )
            };
            key(a).cmp(&key(b))
        })
}

/// Backups left `Running` by an operator that stopped: none runs when this is asked.
pub fn interrupted(backups: &[MySQLBackup]) -> Vec<&MySQLBackup> {
    backups
        .iter()
        .filter(|b| phase(b) == Some(BackupPhase::Running))
        .collect()
}

/// The schedule's run that is due now (the latest scheduled time in the window before `now`,
/// not before the cluster was created), and the next one after `now`, Unix seconds.
pub fn scheduled_runs(schedule: &Schedule, created: u64, now: u64) -> (Option<u64>, Option<u64>) {
    let from = now.saturating_sub(MISSED_RUN_WINDOW_SECS).max(created);
    let mut due = None;
    let mut at = schedule.next_after(from);
    while let Some(t) = at {
        if t > now {
            break;
        }
        due = Some(t);
        at = schedule.next_after(t);
    }
    (due, at)
}

#[cfg(test)]
mod tests;
