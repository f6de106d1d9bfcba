//! The tenant commands for a pool reached through one of its proxies: a Kubernetes pool's
//! Service (for example through `kubectl port-forward svc/<pool> 3306`), or any pool whose
//! state directory is elsewhere. Tenants are created as an application creates them, by
//! `CREATE DATABASE` through the proxy, which places them; the directory is read through the
//! proxy too (its tables are in the global cluster).

use std::time::{Duration, Instant};

use lagless_directory::{Directory, Route, TenantId, TenantNaming, TenantState};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts};

use super::{Action, ListFormat, TenantCliError, describe, json, rows, table};

/// How long `create` waits for the proxy to record the new tenant as active: it does so right
/// after relaying the server's answer.
const ACTIVE_WAIT: Duration = Duration::from_secs(5);

/// Runs `action` against the pool behind the proxy `opts` points at.
pub(super) async fn run(
    action: &Action,
    opts: Opts,
    naming: &TenantNaming,
) -> Result<String, TenantCliError> {
    let directory = Directory::new(opts.clone());
    let result = match action {
        Action::Create(id) => create(&directory, opts, naming, id).await,
        Action::Where(id) => {
            let route = directory
                .lookup(id)
                .await?
                .ok_or_else(|| TenantCliError::UnknownTenant(id.clone()))?;
            Ok(format!("{}\n", describe(id, &route, naming)))
        }
        Action::List { cluster, format } => {
            let tenants = directory.list(cluster.as_deref()).await?;
            let rows = rows(&tenants, naming);
            match format {
                ListFormat::Table => Ok(table(&rows, cluster.as_deref())),
                ListFormat::Json => json(&rows),
            }
        }
        // A move needs each cluster's servers, which a proxy does not expose.
        Action::Move(..) | Action::Rebalance { .. } => Err(TenantCliError::Usage(
            "tenant move and rebalance run on a local pool (--state-dir); moves in Kubernetes \
             are not built yet"
                .into(),
        )),
        Action::Schema => Ok(super::schema_sql()),
    };
    directory.close().await;
    result
}

async fn create(
    directory: &Directory,
    opts: Opts,
    naming: &TenantNaming,
    id: &TenantId,
) -> Result<String, TenantCliError> {
    let existed = directory.lookup(id).await?.is_some();
    let database = naming.database(id);
    let mut conn = Conn::new(opts)
        .await
        .map_err(|e| TenantCliError::Pool(format!("cannot reach the proxy: {e}")))?;
    // Ids are [a-z0-9_] and the pattern's text around them is checked the same way: the name
    // needs no escaping beyond its quotes.
    let created = conn
        .query_drop(format!("CREATE DATABASE IF NOT EXISTS `{database}`"))
        .await
        .map_err(|e| TenantCliError::Pool(format!("CREATE DATABASE {database}: {e}")));
    let _ = conn.disconnect().await;
    created?;
    let route = wait_active(directory, id).await?;
    let mut line = describe(id, &route, naming);
    if existed {
        line.push_str(" (it existed already)");
    }
    line.push('\n');
    Ok(line)
}

/// The tenant's route once it is no longer being created (or the last seen after the wait).
async fn wait_active(directory: &Directory, id: &TenantId) -> Result<Route, TenantCliError> {
    let deadline = Instant::now() + ACTIVE_WAIT;
    loop {
        let route = directory
            .lookup(id)
            .await?
            .ok_or_else(|| TenantCliError::UnknownTenant(id.clone()))?;
        if route.state != TenantState::Creating || Instant::now() >= deadline {
            return Ok(route);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
