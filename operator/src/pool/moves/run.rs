//! Drives a move through its phases, saving the record after every step so that a restarted
//! mover goes on where it stopped: before the flip any failure rolls the move back, after it
//! the move only goes forward.

use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use lagless_directory::TenantState;

use super::plan::{MoveRecord, NOT_STARTED, Phase};
use super::steps::{self, MoveContext};
use super::verify;

/// How long a roll-forward step waits before it tries again.
const RETRY: Duration = Duration::from_millis(500);
/// Attempts of a step that only rolls forward, before the move is left for a later resume.
const FORWARD_ATTEMPTS: u32 = 20;
/// How often the channel's lag is measured while catching up.
const LAG_POLL: Duration = Duration::from_millis(100);

/// Where a move's record goes after every change, before the move goes on: what a restarted
/// mover resumes from. A closure saves at once (a file); a saver that must wait for another
/// service (the Kubernetes status) returns once the record is kept.
pub trait SaveRecord: Send {
    fn save<'a>(&'a mut self, record: &'a MoveRecord) -> BoxFuture<'a, ()>;
}

impl<F: FnMut(&MoveRecord) + Send> SaveRecord for F {
    fn save<'a>(&'a mut self, record: &'a MoveRecord) -> BoxFuture<'a, ()> {
        self(record);
        Box::pin(std::future::ready(()))
    }
}

/// Runs `record`'s move to `Done` or `Aborted` (or, when a step after the flip keeps
/// failing, leaves it in its phase with the error, to be resumed). `save` keeps every change
/// of the record before the move goes on.
pub async fn run_move(
    cx: &MoveContext,
    mut record: MoveRecord,
    save: &mut dyn SaveRecord,
) -> MoveRecord {
    // A flip that committed though its answer was lost (a timeout, a dropped connection)
    // leaves the tenant on the target: the move goes on from there, never back.
    if record.resumes_by_rolling_back()
        && steps::current_route(cx)
            .await
            .is_ok_and(|r| r.cluster == record.to && r.state == TenantState::Active)
    {
        record.rolling_back = false;
        record.error = None;
        record.phase = Phase::Flipped;
        save.save(&record).await;
    }
    // A failure before the flip whose roll-back could not finish: the roll-back is finished
    // now, whatever the phase would do if run again.
    if record.resumes_by_rolling_back() {
        match roll_back(cx, &record).await {
            Ok(()) => {
                record.rolling_back = false;
                record.error = record
                    .error
                    .take()
                    .map(|e| format!("{e}; rolled back when resumed"));
                record.phase = Phase::Aborted;
            }
            Err(e) => {
                // The first failure and the last attempt's, however many were made.
                let error = record.error.take().unwrap_or_default();
                let first = error.split("; rolling back again failed: ").next();
                record.error = Some(format!(
                    "{}; rolling back again failed: {e}",
                    first.unwrap_or_default()
                ));
            }
        }
        save.save(&record).await;
        return record;
    }
    // A move that cannot start changes nothing. One stopped while copying left the tenant
    // `moving` and maybe part of a copy: that is rolled back.
    if record.phase == Phase::Copying
        && let Err(error) = steps::preconditions(cx, &record.from, &record.to).await
    {
        let ours = steps::current_route(cx)
            .await
            .is_ok_and(|r| r.cluster == record.from && r.state == TenantState::Moving);
        record.error = Some(format!("{NOT_STARTED}: {error}"));
        if ours && let Err(e) = roll_back(cx, &record).await {
            record.error = Some(format!("{NOT_STARTED}: {error}; rolling back failed: {e}"));
            record.rolling_back = true;
            save.save(&record).await;
            return record;
        }
        record.phase = Phase::Aborted;
        save.save(&record).await;
        return record;
    }
    let mut frozen_at: Option<Instant> = None;
    let mut attempts = 0;
    while !record.phase.is_final() {
        let started = Instant::now();
        let phase = record.phase;
        tracing::info!(tenant = %record.tenant, %phase, "tenant move");
        match step(cx, &mut record, &mut frozen_at).await {
            Ok(next) => {
                record
                    .timings
                    .push((phase, started.elapsed().as_millis() as u64));
                record.phase = next;
                record.error = None;
                attempts = 0;
            }
            Err(error) if phase.rolls_back() => {
                tracing::warn!(tenant = %record.tenant, %phase, %error, "tenant move fails; rolling back");
                record.error = Some(format!("{phase}: {error}"));
                save.save(&record).await;
                if let Err(e) = roll_back(cx, &record).await {
                    // Left in its phase: a resume rolls back again (it does not run the
                    // phase again, see `MoveRecord::resumes_by_rolling_back`).
                    record.error = Some(format!("{phase}: {error}; rolling back failed: {e}"));
                    record.rolling_back = true;
                    save.save(&record).await;
                    return record;
                }
                if let Some(at) = frozen_at {
                    record.frozen_ms = Some(at.elapsed().as_millis() as u64);
                }
                record.phase = Phase::Aborted;
            }
            Err(error) => {
                attempts += 1;
                record.error = Some(format!("{phase}: {error}"));
                tracing::warn!(tenant = %record.tenant, %phase, %error, attempts, "tenant move step failed; trying again");
                if attempts >= FORWARD_ATTEMPTS {
                    save.save(&record).await;
                    return record;
                }
                tokio::time::sleep(RETRY).await;
            }
        }
        save.save(&record).await;
    }
    record
}

async fn step(
    cx: &MoveContext,
    record: &mut MoveRecord,
    frozen_at: &mut Option<Instant>,
) -> Result<Phase, String> {
    let limits = cx.limits;
    match record.phase {
        Phase::Copying => {
            // From now on the proxies refuse schema changes to the tenant.
            let active = [TenantState::Active, TenantState::Moving];
            steps::transition(
                cx,
                (&record.from, &active),
                &record.from,
                TenantState::Moving,
            )
            .await?;
            let snapshot = steps::copy(cx).await?;
            record.snapshot = Some(snapshot.gtid);
            record.snapshot_binlog = Some(snapshot.binlog);
            record.snapshot_server = Some((cx.snapshot_from.host.clone(), cx.snapshot_from.port));
            Ok(Phase::CatchingUp)
        }
        Phase::CatchingUp => {
            let binlog = record
                .snapshot_binlog
                .clone()
                .ok_or("no snapshot position recorded")?;
            steps::start_channel(cx, &binlog).await?;
            let deadline = Instant::now() + limits.catch_up_timeout;
            loop {
                steps::check_channel(cx).await?;
                if steps::lag(cx, limits.max_lag_to_freeze).await?.is_some() {
                    if record.compared_at.is_some() {
                        return Ok(Phase::Frozen);
                    }
                    // Compared now, the freeze only re-checks what is written meanwhile;
                    // the lag is measured again after the applier's pause.
                    match verify::precheck(cx).await? {
                        Some(at) => record.compared_at = Some(at),
                        None => return Ok(Phase::Frozen),
                    }
                    continue;
                }
                if Instant::now() > deadline {
                    return Err(format!(
                        "the target did not catch up within {} s",
                        limits.catch_up_timeout.as_secs()
                    ));
                }
                tokio::time::sleep(LAG_POLL).await;
            }
        }
        Phase::Frozen => {
            let moving = [TenantState::Moving];
            steps::transition(
                cx,
                (&record.from, &moving),
                &record.from,
                TenantState::Frozen,
            )
            .await?;
            *frozen_at = Some(Instant::now());
            let fence = match steps::fence(cx).await? {
                Some(gtid) => Some(gtid),
                // Fenced already, by the run before a restart.
                None => record.fence.clone().or(steps::source_head(cx).await?),
            };
            record.fence = fence;
            Ok(Phase::Fenced)
        }
        Phase::Fenced => {
            // A flip that committed before a restart, its record unsaved: go on from there.
            let route = steps::current_route(cx).await?;
            if route.cluster == record.to && route.state == TenantState::Active {
                return Ok(Phase::Flipped);
            }
            let Some(at) = *frozen_at else {
                // Resumed after a restart: the freeze began before it, so no time is left.
                return Err("the mover restarted while the tenant was frozen".into());
            };
            let left = |what: &str| {
                limits.max_frozen.checked_sub(at.elapsed()).ok_or_else(|| {
                    format!(
                        "frozen for more than {} ms ({what})",
                        limits.max_frozen.as_millis()
                    )
                })
            };
            if let Some(fence) = record.fence.clone() {
                steps::wait_for(cx, &fence, left("catching up")?)
                    .await?
                    .ok_or_else(|| {
                        format!(
                            "the target did not reach the fence {fence} within {} ms of the freeze",
                            limits.max_frozen.as_millis()
                        )
                    })?;
            }
            steps::check_channel(cx).await?;
            let compare = async {
                let only = match &record.compared_at {
                    Some(at) => verify::changed_since(cx, at).await?,
                    None => None,
                };
                tracing::info!(tenant = %record.tenant, tables = ?only, "comparing the tenant's copies");
                verify::verify(cx, only.as_deref()).await
            };
            tokio::time::timeout(left("verifying")?, compare)
                .await
                .map_err(|_| {
                    format!(
                        "the checksums did not finish within {} ms of the freeze",
                        limits.max_frozen.as_millis()
                    )
                })??;
            left("verified")?;
            let frozen = [TenantState::Frozen];
            steps::transition(cx, (&record.from, &frozen), &record.to, TenantState::Active).await?;
            record.frozen_ms = Some(at.elapsed().as_millis() as u64);
            Ok(Phase::Flipped)
        }
        Phase::Flipped => {
            steps::drop_channel(cx).await?;
            Ok(Phase::Cleaning)
        }
        Phase::Cleaning => {
            steps::clean_source(cx).await?;
            Ok(Phase::Done)
        }
        Phase::Done | Phase::Aborted => Ok(record.phase),
    }
}

/// Before the flip: the source serves the tenant again, writable, and the target forgets it.
async fn roll_back(cx: &MoveContext, record: &MoveRecord) -> Result<(), String> {
    // The target's copy is dropped only while the directory sends the tenant to the source.
    let route = cx
        .directory
        .lookup(&cx.tenant)
        .await
        .map_err(|e| e.to_string())?;
    match route {
        Some(r) if r.cluster == record.from => {
            steps::restore_source(cx).await?;
            // Writable again as soon as the source is whole: a target that cannot be cleaned
            // now (its primary just failed over) does not keep the tenant frozen.
            let held = [
                TenantState::Moving,
                TenantState::Frozen,
                TenantState::Active,
            ];
            steps::transition(cx, (&record.from, &held), &record.from, TenantState::Active).await?;
            steps::clean_target(cx).await
        }
        Some(r) => Err(format!(
            "tenant {} is on {} in the directory, not on the source {}: not rolled back",
            record.tenant, r.cluster, record.from
        )),
        None => Err(format!("tenant {} left the directory", record.tenant)),
    }
}
