//! What a rebalancing plan is made from, measured on each tenant cluster's primary: every
//! tenant's bytes, and its share of its cluster's writes from the rows it changed over a short
//! window. Shared by `lagless-operator tenant rebalance` and the Kubernetes pool loop.

use std::time::Duration;

use lagless_directory::placement::ClusterLoad;
use lagless_directory::{TenantId, TenantNaming};
use mysql_async::Conn;
use mysql_async::prelude::Queryable;

use super::rebalance::TenantSize;
use crate::pool::load;

/// How long each tenant's changed rows are counted for.
pub const WRITE_WINDOW: Duration = Duration::from_secs(2);
/// How long one reading of a primary's table statistics may take.
const WRITE_READ_LIMIT: Duration = Duration::from_secs(5);

/// What was measured: the tenants, and what could not be (said to the user, not an error).
#[derive(Debug, Default)]
pub struct Measured {
    pub tenants: Vec<TenantSize>,
    pub notes: Vec<String>,
}

/// Measures the tenants on `primaries` (each cluster's name and a connection to its primary),
/// and sets each of `loads` to its tenants' sums: writes no tenant made (or none measured)
/// cannot be moved, so they do not count. `movable` says which tenants a plan may move.
pub async fn tenants(
    primaries: Vec<(String, Conn)>,
    loads: &mut [ClusterLoad],
    naming: &TenantNaming,
    movable: impl Fn(&TenantId) -> bool,
) -> Result<Measured, String> {
    let mut measured = Measured::default();
    let mut started = Vec::new();
    for (name, mut conn) in primaries {
        let before = load::rows_changed(&mut conn, "%", WRITE_READ_LIMIT).await;
        started.push((name, conn, before));
    }
    tokio::time::sleep(WRITE_WINDOW).await;
    for (name, mut conn, before) in started {
        let rate = loads
            .iter()
            .find(|l| l.name == name)
            .map_or(0.0, |l| l.write_rate);
        let writes = match before {
            Ok(before) => load::rows_changed(&mut conn, "%", WRITE_READ_LIMIT)
                .await
                .map(|after| load::write_shares(&before, &after, rate)),
            Err(e) => Err(e),
        };
        let writes = writes.unwrap_or_else(|e| {
            measured.notes.push(format!(
                "{name}: tenants' writes not measured ({e}); space alone decides"
            ));
            Default::default()
        });
        // A schema of views only sums to NULL: 0.
        let sizes = conn.query(
            "SELECT TABLE_SCHEMA, CAST(COALESCE(SUM(DATA_LENGTH + INDEX_LENGTH), 0) AS UNSIGNED) \
             FROM information_schema.TABLES GROUP BY TABLE_SCHEMA",
        );
        let rows: Vec<(String, u64)> = tokio::time::timeout(WRITE_READ_LIMIT, sizes)
            .await
            .map_err(|_| format!("sizes on {name}: no answer within 5 s"))?
            .map_err(|e| format!("sizes on {name}: {e}"))?;
        let _ = conn.disconnect().await;
        for (schema, bytes) in rows {
            if let Some(Ok(id)) = naming.tenant_of(&schema) {
                measured.tenants.push(TenantSize {
                    movable: movable(&id),
                    write_rate: writes.get(&schema).copied().unwrap_or(0.0),
                    id,
                    cluster: name.clone(),
                    bytes,
                });
            }
        }
    }
    for load in loads.iter_mut() {
        let mine = || measured.tenants.iter().filter(|t| t.cluster == load.name);
        load.bytes = mine().map(|t| t.bytes).sum();
        load.write_rate = mine().map(|t| t.write_rate).sum();
    }
    Ok(measured)
}
