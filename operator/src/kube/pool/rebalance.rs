//! `spec.rebalance` in Kubernetes. At every round of a pool's loop ([`super::operate`]) the
//! same decision as the local runtime's rebalancer ([`rebalancing::next`]), over the pool's
//! `MySQLTenantMove`s and its clusters' statuses, and the same plan
//! ([`moves::rebalance::plan`]) over the tenants measured on each primary
//! ([`moves::measure`]). A planned move is a `MySQLTenantMove` the pool owns (labelled
//! [`REBALANCE_LABEL`]), run by the move controller like one made by hand; the pool's
//! `Rebalancing` condition says what the last look did.

use std::collections::BTreeSet;
use std::time::Duration;

use ::kube::api::{Api, ListParams, PostParams};
use ::kube::{Client, Resource, ResourceExt};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use k8s_openapi::jiff::Timestamp;
use lagless_directory::TenantNaming;
use lagless_directory::placement::ClusterLoad;
use mysql_async::Opts;

use crate::crd::tenant_move::MySQLTenantMove;
use crate::crd::tenant_pool::{MySQLTenantPool, POOL_LABEL};
use crate::crd::{Condition, ConditionStatus, MySQLCluster, Phase};
use crate::pool::moves::measure;
use crate::pool::moves::rebalance::{self, PlannedMove, RebalanceLimits};
use crate::pool::rebalancing::{self, ClusterHealth, Next, Unfinished};

/// The label of the moves the pool's rebalancing made.
pub const REBALANCE_LABEL: &str = "lagless.dev/rebalance";

/// How long connecting to a primary to measure its tenants may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a tenant whose move was rolled back is left out of plans.
const ABORTED_KEPT_OUT: Duration = Duration::from_secs(3600);

/// What the last look did, for the pool's `Rebalancing` condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rebalancing {
    /// A move of the pool runs.
    pub moving: bool,
    pub reason: &'static str,
    pub message: String,
}

/// One look's outcome.
#[derive(Debug)]
pub struct Look {
    pub said: Rebalancing,
    /// The moves it made.
    pub planned: Vec<PlannedMove>,
    /// It measured the tenants (and planned): the interval counts from now.
    pub measured: bool,
}

/// A cluster's health, as its status says: `Healthy` while `Running`, its phase otherwise;
/// busy while paused, read-only or rolling a change.
pub fn health(name: &str, cluster: Option<&MySQLCluster>) -> ClusterHealth {
    let status = cluster.and_then(|c| c.status.as_ref());
    let condition = |type_: &str| {
        status.is_some_and(|s| {
            s.conditions
                .iter()
                .any(|c| c.type_ == type_ && c.status == ConditionStatus::True)
        })
    };
    let busy = if status.and_then(|s| s.phase) == Some(Phase::Paused) {
        Some("paused")
    } else if cluster.is_some_and(|c| c.spec.read_only) || condition(Condition::READ_ONLY) {
        Some("read-only")
    } else if condition(Condition::ROLLING) {
        Some("rolling")
    } else {
        None
    };
    ClusterHealth {
        name: name.to_string(),
        state: status.and_then(|s| s.phase).map(|p| match p {
            Phase::Running => "Healthy".to_string(),
            other => format!("{other:?}"),
        }),
        max_lag_seconds: status.and_then(|s| {
            s.members
                .iter()
                .filter_map(|m| m.lag_ms)
                .map(|ms| u64::try_from(ms).unwrap_or(0).div_ceil(1000))
                .max()
        }),
        busy,
    }
}

fn of_pool<'a>(
    moves: &'a [MySQLTenantMove],
    pool: &'a str,
) -> impl Iterator<Item = &'a MySQLTenantMove> {
    moves.iter().filter(move |m| m.spec.pool == pool)
}

fn finished_at(m: &MySQLTenantMove) -> Option<Timestamp> {
    m.status.as_ref()?.finished_at.as_deref()?.parse().ok()
}

/// The pool's moves that have not ended. The move controller drives every one of them, so
/// each counts as running: the pool waits for it, and never resumes it itself.
pub fn unfinished(moves: &[MySQLTenantMove], pool: &str) -> Vec<Unfinished> {
    of_pool(moves, pool)
        .filter(|m| !m.status.as_ref().is_some_and(|s| s.is_final()))
        .map(|m| Unfinished {
            tenant: m.spec.tenant.clone(),
            to: m.spec.to.clone(),
            running: true,
        })
        .collect()
}

/// How long ago the last move the rebalancing made ended; none when none has.
pub fn since_last(moves: &[MySQLTenantMove], pool: &str, now: Timestamp) -> Option<Duration> {
    of_pool(moves, pool)
        .filter(|m| m.labels().contains_key(REBALANCE_LABEL))
        .filter_map(finished_at)
        .max()
        .map(|at| now.duration_since(at).try_into().unwrap_or(Duration::ZERO))
}

/// Tenants whose move was rolled back within [`ABORTED_KEPT_OUT`]: planned again at once, the
/// same move would most likely fail the same way. A move refused before it started (no
/// record) changed nothing and keeps nobody out.
pub fn kept_out(moves: &[MySQLTenantMove], pool: &str, now: Timestamp) -> BTreeSet<String> {
    of_pool(moves, pool)
        .filter(|m| {
            m.status
                .as_ref()
                .is_some_and(|s| s.phase.as_deref() == Some("aborted") && s.record.is_some())
        })
        .filter(|m| {
            // A time ahead of this clock (skew) counts as now.
            finished_at(m).is_some_and(|at| {
                Duration::try_from(now.duration_since(at)).unwrap_or(Duration::ZERO)
                    < ABORTED_KEPT_OUT
            })
        })
        .map(|m| m.spec.tenant.clone())
        .collect()
}

/// The `MySQLTenantMove` of a planned move, owned by the pool.
pub fn move_for(pool: &MySQLTenantPool, planned: &PlannedMove, unix_secs: i64) -> MySQLTenantMove {
    let owner = OwnerReference {
        api_version: MySQLTenantPool::api_version(&()).into_owned(),
        kind: MySQLTenantPool::kind(&()).into_owned(),
        name: pool.name_any(),
        uid: pool.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    };
    let mut mv = MySQLTenantMove::of_tenant(
        &pool.name_any(),
        planned.tenant.as_str(),
        &planned.to,
        Some(pool.spec.rebalance.copy_rate_mib),
        unix_secs,
    );
    mv.metadata.namespace = pool.namespace();
    mv.metadata.labels = Some(
        [
            (POOL_LABEL.to_string(), pool.name_any()),
            (REBALANCE_LABEL.to_string(), "true".to_string()),
        ]
        .into(),
    );
    mv.metadata.owner_references = Some(vec![owner]);
    mv
}

/// One look: what the decision says, and the moves it starts. `clusters` are all of the
/// pool's (the directory's too), `loads` the directory's record of its tenant clusters,
/// `since_look` the time since the last look that measured, and `admin` how to reach a
/// tenant cluster's primary as the administrator (none: no primary).
pub async fn look(
    client: &Client,
    pool: &MySQLTenantPool,
    clusters: &[String],
    mut loads: Vec<ClusterLoad>,
    since_look: Option<Duration>,
    admin: impl Fn(&str) -> Option<Opts>,
) -> Result<Look, String> {
    let namespace = pool.namespace().unwrap_or_default();
    let name = pool.name_any();
    let moves_api: Api<MySQLTenantMove> = Api::namespaced(client.clone(), &namespace);
    let moves = moves_api
        .list(&ListParams::default())
        .await
        .map_err(|e| format!("listing MySQLTenantMoves: {e}"))?
        .items;
    let clusters_api: Api<MySQLCluster> = Api::namespaced(client.clone(), &namespace);
    let listed = clusters_api
        .list(&ListParams::default().labels(&format!("{POOL_LABEL}={name}")))
        .await
        .map_err(|e| format!("listing the pool's MySQLClusters: {e}"))?
        .items;
    let health: Vec<ClusterHealth> = clusters
        .iter()
        .map(|c| health(c, listed.iter().find(|l| l.name_any() == *c)))
        .collect();
    let now = Timestamp::now();
    let idle = |message: String| Rebalancing {
        moving: false,
        reason: "Idle",
        message,
    };
    // The interval counts from the last look that measured, or the end of the last move it
    // made, whichever came later.
    let since = match (since_last(&moves, &name, now), since_look) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let quiet = |said: Rebalancing| Look {
        said,
        planned: Vec::new(),
        measured: false,
    };
    let open = unfinished(&moves, &name);
    let moving = !open.is_empty();
    match rebalancing::next(&pool.spec.rebalance, since, &open, &health) {
        Next::Idle | Next::Resume { .. } => {
            let message = if moving {
                "a move of the pool runs".to_string()
            } else {
                "waiting for the next look".to_string()
            };
            return Ok(quiet(Rebalancing {
                moving,
                reason: if moving { "Moving" } else { "Idle" },
                message,
            }));
        }
        Next::Hold(why) => {
            return Ok(quiet(Rebalancing {
                moving,
                reason: if moving { "Moving" } else { "Waiting" },
                message: why,
            }));
        }
        Next::Rebalance => {}
    }
    let mut primaries = Vec::new();
    for load in &loads {
        let Some(opts) = admin(&load.name) else {
            return Ok(quiet(Rebalancing {
                moving: false,
                reason: "Waiting",
                message: format!("rebalancing waits: {} has no primary", load.name),
            }));
        };
        let conn = tokio::time::timeout(CONNECT_TIMEOUT, mysql_async::Conn::new(opts))
            .await
            .map_err(|_| format!("{}: no connection to its primary within 5 s", load.name))?
            .map_err(|e| format!("{}: {e}", load.name))?;
        primaries.push((load.name.clone(), conn));
    }
    let kept = kept_out(&moves, &name, now);
    let naming = TenantNaming::parse(&pool.spec.tenant_database).unwrap_or_default();
    let measured = measure::tenants(primaries, &mut loads, &naming, |id| {
        !kept.contains(id.as_str())
    })
    .await?;
    for note in &measured.notes {
        tracing::warn!(pool = %name, %note, "rebalancing");
    }
    let limits = RebalanceLimits {
        margin: pool.spec.rebalance.margin,
        max_moves: usize::try_from(pool.spec.rebalance.max_moves).unwrap_or(1),
    };
    let planned = rebalance::plan(&loads, &measured.tenants, limits);
    if planned.is_empty() {
        let spread = rebalance::spread(&loads);
        let message = if spread > limits.margin {
            format!(
                "the clusters' use differs by {:.0}%, but no tenant's move would narrow that",
                spread * 100.0
            )
        } else {
            format!(
                "the clusters are used evenly (within {:.0}%)",
                limits.margin * 100.0
            )
        };
        return Ok(Look {
            said: idle(message),
            planned: Vec::new(),
            measured: true,
        });
    }
    let stamp = now.as_second();
    for m in &planned {
        let object = move_for(pool, m, stamp);
        match moves_api.create(&PostParams::default(), &object).await {
            Ok(_) => {}
            Err(::kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => {
                return Err(format!(
                    "creating MySQLTenantMove {}: {e}",
                    object.name_any()
                ));
            }
        }
    }
    let message = planned
        .iter()
        .map(|m| format!("tenant {} from {} to {}", m.tenant, m.from, m.to))
        .collect::<Vec<_>>()
        .join("; ");
    Ok(Look {
        said: Rebalancing {
            moving: true,
            reason: "Moving",
            message: format!("moving {message}"),
        },
        planned,
        measured: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::MemberStatus;
    use crate::crd::tenant_move::{MySQLTenantMoveSpec, MySQLTenantMoveStatus};
    use lagless_directory::TenantId;

    fn mv(
        name: &str,
        tenant: &str,
        phase: Option<&str>,
        finished: Option<&str>,
        made: bool,
    ) -> MySQLTenantMove {
        let mut m = MySQLTenantMove::new(
            name,
            MySQLTenantMoveSpec {
                pool: "demo".into(),
                tenant: tenant.into(),
                to: "demo-c1".into(),
                copy_rate_mib: None,
                copy_latency_allowance: None,
            },
        );
        if made {
            m.metadata.labels = Some([(REBALANCE_LABEL.to_string(), "true".to_string())].into());
        }
        m.status = phase.map(|p| MySQLTenantMoveStatus {
            phase: Some(p.into()),
            finished_at: finished.map(str::to_string),
            record: (p != "pending").then(|| "{}".to_string()),
            ..Default::default()
        });
        m
    }

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn moves_of_the_pool_decide_waits_and_who_is_kept_out() {
        let moves = [
            mv("a", "1", Some("copying"), None, false),
            mv("b", "2", Some("done"), Some("2026-12-07T10:00:00Z"), true),
            mv(
                "c",
                "3",
                Some("aborted"),
                Some("2026-12-07T10:30:00Z"),
                true,
            ),
            mv(
                "d",
                "4",
                Some("aborted"),
                Some("2026-12-07T08:00:00Z"),
                false,
            ),
            mv("e", "5", None, None, false),
        ];
        let open = unfinished(&moves, "demo");
        let tenants: Vec<&str> = open.iter().map(|u| u.tenant.as_str()).collect();
        assert_eq!(tenants, ["1", "5"]);
        assert!(open.iter().all(|u| u.running));
        assert!(unfinished(&moves, "other").is_empty());
        // The last move rebalancing made ended at 10:30 (made by hand do not count).
        assert_eq!(
            since_last(&moves, "demo", at("2026-12-07T10:31:00Z")),
            Some(Duration::from_secs(60))
        );
        assert_eq!(
            since_last(&moves[..1], "demo", at("2026-12-07T10:31:00Z")),
            None
        );
        // Rolled back within the hour: kept out; earlier, or refused (no record): not.
        let kept = kept_out(&moves, "demo", at("2026-12-07T11:00:00Z"));
        assert_eq!(kept.into_iter().collect::<Vec<_>>(), ["3"]);
        let mut refused = mv(
            "f",
            "6",
            Some("aborted"),
            Some("2026-12-07T10:59:00Z"),
            false,
        );
        if let Some(s) = refused.status.as_mut() {
            s.record = None;
        }
        assert!(kept_out(&[refused], "demo", at("2026-12-07T11:00:00Z")).is_empty());
    }

    #[test]
    fn a_cluster_is_healthy_while_running_and_busy_while_paused_read_only_or_rolling() {
        let mut cluster: MySQLCluster = serde_json::from_value(serde_json::json!({
            "apiVersion": "lagless.dev/v1alpha1",
            "kind": "MySQLCluster",
            "metadata": {"name": "demo-c0"},
            "spec": {"replicas": 2},
        }))
        .unwrap();
        assert_eq!(health("demo-c0", None).state, None);
        assert_eq!(health("demo-c0", Some(&cluster)).state, None);
        let member = |lag_ms| MemberStatus {
            name: "m".into(),
            role: crate::crd::MemberRole::Replica,
            gtid_position: None,
            lag_ms,
            transactions_behind: None,
            healthy: true,
            errant: None,
            cordoned: false,
        };
        cluster.status = Some(crate::crd::MySQLClusterStatus {
            phase: Some(Phase::Running),
            members: vec![member(Some(2500)), member(None)],
            ..Default::default()
        });
        let h = health("demo-c0", Some(&cluster));
        assert_eq!(
            (h.state.as_deref(), h.max_lag_seconds, h.busy),
            (Some("Healthy"), Some(3), None)
        );
        cluster.spec.read_only = true;
        assert_eq!(health("demo-c0", Some(&cluster)).busy, Some("read-only"));
        cluster.spec.read_only = false;
        if let Some(s) = cluster.status.as_mut() {
            s.phase = Some(Phase::FailingOver);
        }
        assert_eq!(
            health("demo-c0", Some(&cluster)).state.as_deref(),
            Some("FailingOver")
        );
        if let Some(s) = cluster.status.as_mut() {
            s.phase = Some(Phase::Paused);
        }
        assert_eq!(health("demo-c0", Some(&cluster)).busy, Some("paused"));
    }

    #[test]
    fn a_planned_move_is_a_tenant_move_the_pool_owns() {
        let mut pool: MySQLTenantPool = serde_json::from_value(serde_json::json!({
            "apiVersion": "lagless.dev/v1alpha1",
            "kind": "MySQLTenantPool",
            "metadata": {"name": "demo", "namespace": "shop"},
            "spec": {"clusters": {"min": 2, "max": 4}},
        }))
        .unwrap();
        pool.metadata.uid = Some("u-1".into());
        pool.spec.rebalance.copy_rate_mib = 3;
        let planned = PlannedMove {
            tenant: TenantId::parse("big_one").unwrap(),
            from: "demo-c0".into(),
            to: "demo-c1".into(),
            bytes: 10,
            write_rate: 0.0,
        };
        let m = move_for(&pool, &planned, 1_700_000_000);
        assert_eq!(m.name_any(), "demo-big-one-1700000000");
        assert_eq!(m.namespace().as_deref(), Some("shop"));
        assert_eq!(m.spec.tenant, "big_one");
        assert_eq!(m.spec.to, "demo-c1");
        assert_eq!(m.spec.copy_rate_mib, Some(3));
        assert!(m.labels().contains_key(REBALANCE_LABEL));
        assert_eq!(m.labels().get(POOL_LABEL).map(String::as_str), Some("demo"));
        let owner = &m.owner_references()[0];
        assert_eq!(
            (
                owner.kind.as_str(),
                owner.name.as_str(),
                owner.uid.as_str(),
                owner.controller
            ),
            ("MySQLTenantPool", "demo", "u-1", Some(true))
        );
    }
}
