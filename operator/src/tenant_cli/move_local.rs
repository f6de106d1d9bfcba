//! `tenant move` on a local pool: the move runs in this command, its record saved in the
//! pool's state directory after every step, so that running the command again after an
//! interruption resumes it (see `pool::moves`).

use std::path::PathBuf;
use std::time::Instant;

use lagless_directory::{Directory, TenantId};
use mysql_async::prelude::Queryable;

use super::{LocalPool, TenantCliError, check_cluster, primary_of, read_topology};
use crate::local::state::{read_json, write_json};
use crate::pool::moves::measure;
use crate::pool::moves::rebalance::{self, RebalanceLimits};
use crate::pool::moves::steps::snapshot_server;
use crate::pool::moves::{Endpoint, MoveContext, MoveLimits, MoveRecord, Phase, run_move};

/// How long a tenant whose move was rolled back is left out of rebalancing plans.
const ABORTED_KEPT_OUT: std::time::Duration = std::time::Duration::from_secs(3600);

impl LocalPool {
    /// Where the record of tenant `id`'s move is kept.
    fn move_record(&self, id: &TenantId) -> PathBuf {
        self.paths.root.join("moves").join(format!("{id}.json"))
    }

    /// Whether tenant `id`'s last move was rolled back within [`ABORTED_KEPT_OUT`]: planned
    /// again at once, the same move would most likely fail the same way (a tenant that cannot
    /// be moved, one written too fast to catch up), and keep the others from moving.
    fn aborted_lately(&self, id: &TenantId) -> bool {
        let path = self.move_record(id);
        let aborted =
            read_json::<MoveRecord>(&path).is_ok_and(|r| r.phase == Phase::Aborted && !r.refused());
        let recent = std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|at| at.elapsed().ok())
            .is_some_and(|age| age < ABORTED_KEPT_OUT);
        aborted && recent
    }

    fn endpoint(&self, member: &lagless_core::topology::Member) -> Endpoint {
        Endpoint {
            host: member.host.clone(),
            port: member.port,
            user: self.credentials.admin_user.clone(),
            password: self.credentials.admin_password.clone(),
        }
    }

    /// Moves tenant `id` to cluster `to`, or resumes its unfinished move there.
    pub(super) async fn move_tenant(
        &self,
        directory: &Directory,
        id: &TenantId,
        to: &str,
        pace: super::CopyPace,
    ) -> Result<String, TenantCliError> {
        check_cluster(&self.document, to)?;
        if self.ca.is_some() {
            return Err(TenantCliError::Usage(
                "tenant moves do not run on pools with TLS yet".into(),
            ));
        }
        let path = self.move_record(id);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| TenantCliError::Pool(format!("{}: {e}", dir.display())))?;
        }
        // One mover per tenant; the kernel drops the lock with a killed mover.
        let lock = path.with_extension("lock");
        let _held = match lagless_mariadbd::process::FileLock::try_acquire(&lock) {
            Ok(Some(held)) => held,
            Ok(None) => {
                return Err(TenantCliError::Usage(format!(
                    "another `tenant move` of tenant {id} is running"
                )));
            }
            Err(e) => return Err(TenantCliError::Pool(format!("{}: {e}", lock.display()))),
        };
        let record = match read_json::<MoveRecord>(&path) {
            Ok(r) if !r.phase.is_final() => {
                if r.to != to {
                    return Err(TenantCliError::Usage(format!(
                        "tenant {id} has an unfinished move to {} ({}): run the command with \
                         --to {} to finish it",
                        r.to, r.phase, r.to
                    )));
                }
                eprintln!("resuming the move of tenant {id} to {to} ({})", r.phase);
                r
            }
            _ => {
                let route = directory
                    .lookup(id)
                    .await?
                    .ok_or_else(|| TenantCliError::UnknownTenant(id.clone()))?;
                MoveRecord::new(id, &route.cluster, to)
            }
        };
        let mut cx = self.move_context(id, &record).await?;
        cx.limits.copy_rate = pace.bytes();
        cx.limits.latency_allowance = pace.allowance();
        let mut last = None;
        let mut save = |r: &MoveRecord| {
            if last != Some(r.phase) {
                eprintln!("tenant {id}: {}", r.phase);
                last = Some(r.phase);
            }
            if let Err(e) = write_json(&path, r, 0o644) {
                tracing::warn!(error = %e, "cannot save the move's record");
            }
        };
        // On record from the start: a mover stopped while copying (the longest phase, before
        // the first step ends) is found unfinished and resumed, and nobody starts another.
        save(&record);
        let started = Instant::now();
        let record = run_move(&cx, record, &mut save).await;
        let error = record.error.clone().unwrap_or_default();
        match record.phase {
            Phase::Done => Ok(format!(
                "tenant {id} moved from {} to {} in {} ms (writes held {} ms)\n",
                record.from,
                record.to,
                started.elapsed().as_millis(),
                record.frozen_ms.unwrap_or(0)
            )),
            Phase::Aborted if record.refused() => {
                Err(TenantCliError::Pool(format!("tenant {id}: move {error}")))
            }
            Phase::Aborted => Err(TenantCliError::Pool(format!(
                "the move was rolled back; tenant {id} stays on {}: {error}",
                record.from
            ))),
            phase if record.rolling_back => Err(TenantCliError::Pool(format!(
                "the move failed {phase} and is not rolled back yet: {error}; run the command \
                 again to finish rolling it back"
            ))),
            phase => Err(TenantCliError::Pool(format!(
                "the move stopped {phase}: {error}; run the command again to go on"
            ))),
        }
    }

    async fn move_context(
        &self,
        id: &TenantId,
        record: &MoveRecord,
    ) -> Result<MoveContext, TenantCliError> {
        let topology_of = |name: &str| {
            let cluster = self
                .document
                .cluster(name)
                .ok_or_else(|| TenantCliError::Usage(format!("no cluster {name} in the pool")))?;
            read_topology(name, &cluster.topology)
        };
        let source = topology_of(&record.from)?;
        let target = topology_of(&record.to)?;
        let source_primary = self.endpoint(primary_of(&source).map_err(TenantCliError::Pool)?);
        let target_member = primary_of(&target).map_err(TenantCliError::Pool)?;
        let target_primary = self.endpoint(target_member);
        // The member's option-file directory, where the local runtime runs it.
        let conf_dir = self
            .paths
            .root
            .join("clusters")
            .join(&record.to)
            .join("members")
            .join(&target_member.name)
            .join("conf.d");
        let filter_file = conf_dir
            .is_dir()
            .then(|| conf_dir.join(format!("lagless-move-{id}.cnf")));
        let snapshot_from = snapshot_server(
            record,
            &source_primary,
            source.replicas.first().map(|r| self.endpoint(r)),
        );
        let mut conn = source_primary.conn().await.map_err(TenantCliError::Pool)?;
        let domain: Option<u32> = conn
            .query_first("SELECT @@gtid_domain_id")
            .await
            .map_err(|e| TenantCliError::Pool(format!("the source's GTID domain: {e}")))?;
        drop(conn);
        Ok(MoveContext {
            tenant: id.clone(),
            database: self.document.naming().database(id),
            directory: self.directory()?,
            source_primary,
            snapshot_from,
            source_domain: domain.unwrap_or(0),
            replication: (
                self.credentials.replication_user.clone(),
                self.credentials.replication_password.clone(),
            ),
            target_primary,
            target_replicas: target.replicas.iter().map(|r| self.endpoint(r)).collect(),
            filter_file,
            limits: MoveLimits::default(),
        })
    }
}

impl LocalPool {
    /// Plans moves that even out the clusters' use of space and, with `apply`, runs them one
    /// after another.
    pub(super) async fn rebalance(
        &self,
        directory: &Directory,
        limits: RebalanceLimits,
        apply: bool,
        pace: super::CopyPace,
    ) -> Result<String, TenantCliError> {
        let naming = self.document.naming();
        let mut loads = directory.clusters().await?;
        // Each tenant's writes: the rows it changes over a short window, as its share of its
        // cluster's measured write rate.
        let mut primaries = Vec::new();
        for cluster in &self.document.clusters {
            let topology = read_topology(&cluster.name, &cluster.topology)?;
            let primary = self.endpoint(primary_of(&topology).map_err(TenantCliError::Pool)?);
            let conn = primary.conn().await.map_err(TenantCliError::Pool)?;
            primaries.push((cluster.name.clone(), conn));
        }
        let measured = measure::tenants(primaries, &mut loads, &naming, |id| {
            !self.aborted_lately(id)
        })
        .await
        .map_err(TenantCliError::Pool)?;
        for note in &measured.notes {
            eprintln!("{note}");
        }
        let sizes = measured.tenants;
        let moves = rebalance::plan(&loads, &sizes, limits);
        if moves.is_empty() {
            let spread = rebalance::spread(&loads);
            if spread > limits.margin {
                return Ok(format!(
                    "the clusters' use differs by {:.0}%, but no tenant's move would narrow \
                     that: nothing to move\n",
                    spread * 100.0
                ));
            }
            return Ok(format!(
                "the clusters are used evenly (within {:.0}%): nothing to move\n",
                limits.margin * 100.0
            ));
        }
        let mut out = String::new();
        for m in &moves {
            out.push_str(&format!(
                "move tenant {} ({} bytes, {:.1} writes/s): {} -> {}\n",
                m.tenant, m.bytes, m.write_rate, m.from, m.to
            ));
        }
        if apply {
            for m in &moves {
                out.push_str(&self.move_tenant(directory, &m.tenant, &m.to, pace).await?);
            }
        }
        Ok(out)
    }
}
