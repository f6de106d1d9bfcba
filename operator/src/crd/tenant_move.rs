//! `MySQLTenantMove`: one tenant of a `MySQLTenantPool` moved to another of the pool's
//! clusters while it is written, by the operator (`kube::tenant_move`), through the phases
//! of `lagless-operator tenant move` (docs/tenants.md).

use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How long one phase took.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq)]
pub struct PhaseTiming {
    pub phase: String,
    pub ms: i64,
}

/// What the operator reports of a move.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct MySQLTenantMoveStatus {
    /// `pending` (waiting for its turn or for the pool), then `copying`, `catching up`,
    /// `frozen`, `fenced`, `flipped`, `cleaning`, and `done` or `aborted`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phase: Option<String>,
    /// The cluster the tenant was on when the move started.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// What went wrong last (an aborted move's reason), or what a pending move waits for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// How long the tenant's statements were held, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frozen_ms: Option<i64>,
    /// The source's GTID position the copy was taken at.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub timings: Vec<PhaseTiming>,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// The mover's whole record, as JSON: what an operator that restarts goes on from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<String>,
}

/// Phases a move ends in.
pub const FINAL_PHASES: [&str; 2] = ["done", "aborted"];

impl MySQLTenantMoveStatus {
    pub fn is_final(&self) -> bool {
        self.phase
            .as_deref()
            .is_some_and(|p| FINAL_PHASES.contains(&p))
    }
}

/// One tenant moved between the clusters of a MySQLTenantPool.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, JsonSchema, Clone, Debug, PartialEq)]
#[kube(
    group = "lagless.dev",
    version = "v1alpha1",
    kind = "MySQLTenantMove",
    plural = "mysqltenantmoves",
    shortname = "tenantmove",
    namespaced,
    status = "MySQLTenantMoveStatus",
    derive = "PartialEq",
    doc = "A tenant of a MySQLTenantPool moved to another of its clusters while it is written: copied, caught up, frozen for a moment, fenced on the source, verified, and flipped in the directory.",
    printcolumn(name = "Pool", type_ = "string", json_path = ".spec.pool"),
    printcolumn(name = "Tenant", type_ = "string", json_path = ".spec.tenant"),
    printcolumn(name = "From", type_ = "string", json_path = ".status.from"),
    printcolumn(name = "To", type_ = "string", json_path = ".spec.to"),
    printcolumn(name = "Phase", type_ = "string", json_path = ".status.phase"),
    printcolumn(name = "Held ms", type_ = "integer", json_path = ".status.frozenMs"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct MySQLTenantMoveSpec {
    /// The MySQLTenantPool (in the same namespace).
    #[schemars(length(min = 1, max = 63))]
    pub pool: String,
    /// The tenant's id, as the directory knows it.
    #[schemars(length(min = 1, max = 48), regex(pattern = r"^[a-z0-9_]+$"))]
    pub tenant: String,
    /// The cluster to move it to: one of the pool's tenant clusters (`<pool>-c<n>`).
    #[schemars(length(min = 1, max = 63))]
    pub to: String,
    /// The copy's pace in MiB/s (0: no limit); the pool's `spec.rebalance.copyRateMiB` when
    /// absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 10240))]
    pub copy_rate_mib: Option<u32>,
    /// With a pace: how many percent the target primary's round trip may rise during the copy
    /// before the pace halves (0, the default, keeps the pace fixed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(max = 1000))]
    pub copy_latency_allowance: Option<u32>,
}

impl MySQLTenantMove {
    /// A move of `tenant` in `pool` to cluster `to`, named for them and the time.
    pub fn of_tenant(
        pool: &str,
        tenant: &str,
        to: &str,
        copy_rate_mib: Option<u32>,
        unix_secs: i64,
    ) -> Self {
        // Object names take no `_`; tenant ids take no `-`, so no two tenants share a name.
        let name = format!("{pool}-{}-{unix_secs}", tenant.replace('_', "-"));
        Self::new(
            &name,
            MySQLTenantMoveSpec {
                pool: pool.to_string(),
                tenant: tenant.to_string(),
                to: to.to_string(),
                copy_rate_mib,
                copy_latency_allowance: None,
            },
        )
    }
}
