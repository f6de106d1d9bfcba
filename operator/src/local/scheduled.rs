//! Scheduled jobs of a local cluster, run by the supervisor's process at each time their
//! schedule names: full backups (`spec.backup.schedule`), each followed by the retention
//! policy (`keep`, `keepDays`, the archived binary log included), and restore drills
//! (`spec.backup.drillSchedule`).

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::backup::archive;
use crate::backup::manifest::rfc3339;
use crate::backup::schedule::Schedule;
use crate::backup::store::Store;
use crate::crd::MySQLCluster;

use super::LocalError;
use super::backup::{backup_now, retain};
use super::state::{LocalCredentials, Settings, StateDir};
use super::status::ScheduleStatus;

pub struct ScheduleTask {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
    pub status: Arc<Mutex<ScheduleStatus>>,
}

fn unix_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What a schedule runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Job {
    /// A full backup, then the retention policy.
    Backup,
    /// A restore drill ([`super::drill`]).
    Drill,
}

/// Starts the schedule of `job` if the spec has one.
pub fn start(
    job: Job,
    dir: &StateDir,
    cluster: &MySQLCluster,
    settings: &Settings,
    creds: &LocalCredentials,
) -> Result<Option<ScheduleTask>, LocalError> {
    let Some(backup) = cluster.spec.backup.clone() else {
        return Ok(None);
    };
    let text = match job {
        Job::Backup => backup.schedule.as_deref(),
        Job::Drill => backup.drill_schedule.as_deref(),
    };
    let Some(text) = text else {
        return Ok(None);
    };
    let schedule = Schedule::parse(text).map_err(LocalError::Usage)?;
    let s3 = super::backup::s3_args(cluster, settings);
    let (location, store) = s3.store(&backup.destination)?;
    let archive = Store::open(
        &archive::location(&location, &settings.cluster),
        s3.options(&location)?.as_ref(),
    )?;
    let status = Arc::new(Mutex::new(ScheduleStatus {
        schedule: schedule.to_string(),
        destination: location.to_string(),
        ..ScheduleStatus::default()
    }));
    let (stop, mut stopped) = watch::channel(false);
    let (dir, settings, creds) = (dir.clone(), settings.clone(), creds.clone());
    let shared = status.clone();
    let task = tokio::spawn(async move {
        loop {
            let Some(next) = schedule.next_after(unix_secs()) else {
                return;
            };
            if let Ok(mut s) = shared.lock() {
                s.next_at = Some(rfc3339(next * 1000));
            }
            let wait = Duration::from_secs(next.saturating_sub(unix_secs()));
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stopped.changed() => return,
            }
            tracing::info!(cluster = %settings.cluster, schedule = %schedule, ?job, "scheduled job");
            let run = async {
                match job {
                    Job::Backup => {
                        let manifest = backup_now(&dir, &settings, &creds, &store).await?;
                        let removed = retain(
                            &store,
                            Some(&archive),
                            &settings.cluster,
                            backup.keep,
                            backup.keep_days,
                        )
                        .await?;
                        tracing::info!(id = %manifest.id, removed = removed.len(), "scheduled backup complete");
                        Ok::<_, LocalError>(manifest.id)
                    }
                    Job::Drill => {
                        let place = super::drill::Place {
                            location: &location,
                            store: &store,
                            archive: &archive,
                        };
                        let say = |line: &str| tracing::info!("{line}");
                        super::drill::drill_now(&dir, &settings, &creds, &place, None, &say).await
                    }
                }
            };
            let result = tokio::select! {
                r = run => r,
                _ = stopped.changed() => return,
            };
            let Ok(mut s) = shared.lock() else {
                return;
            };
            match result {
                Ok(id) => {
                    s.last_id = Some(id);
                    s.last_at = Some(rfc3339(unix_secs() * 1000));
                    s.last_error = None;
                    s.succeeded += 1;
                }
                Err(e) => {
                    tracing::warn!(error = %e, ?job, "scheduled job failed");
                    s.last_error = Some(e.to_string());
                    s.failed += 1;
                }
            }
        }
    });
    Ok(Some(ScheduleTask { stop, task, status }))
}

impl ScheduleTask {
    pub fn status(&self) -> ScheduleStatus {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Stops the schedule; a backup under way is abandoned (it leaves no manifest, so it is
    /// no backup).
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let mut task = self.task;
        if tokio::time::timeout(Duration::from_secs(10), &mut task)
            .await
            .is_err()
        {
            task.abort();
        }
    }
}
