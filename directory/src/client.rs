//! [`Directory`]: the directory's tables over SQL, on the global cluster's primary.

use std::collections::BTreeMap;
use std::future::Future;

use mysql_async::prelude::Queryable;
use mysql_async::{
    Conn, Opts, OptsBuilder, Pool, PoolConstraints, PoolOpts, Row, Transaction, TxOpts,
};

use crate::access::{
    LAST_SEQ, addr_of, bounded, change_of, column, connected, route_of, tenant_of,
};
use crate::error::DirectoryError;
use crate::naming::TenantId;
use crate::placement::{self, ClusterLoad, ClusterState};
use crate::route::{Change, Route, TenantState};
use crate::schema;

/// Cluster names are Kubernetes names (at most 63 characters), and the columns are that wide.
const MAX_CLUSTER_NAME: usize = 63;

// The statements. Names are qualified, so connections need no default database.
const LOCK_CHANGES: &str = "SELECT id FROM lagless_directory.change_lock WHERE id = 1 FOR UPDATE";
const ROUTE: &str =
    "SELECT cluster, version, state FROM lagless_directory.tenants WHERE tenant_id = ?";
const ROUTE_FOR_UPDATE: &str = "SELECT cluster, version, state FROM lagless_directory.tenants \
     WHERE tenant_id = ? FOR UPDATE";
const LAST_VERSION: &str = "SELECT MAX(version) FROM lagless_directory.changes WHERE tenant_id = ?";
const INSERT_TENANT: &str = "INSERT INTO lagless_directory.tenants \
     (tenant_id, cluster, version, state) VALUES (?, ?, ?, ?)";
const UPDATE_TENANT: &str = "UPDATE lagless_directory.tenants \
     SET cluster = ?, version = ?, state = ? WHERE tenant_id = ?";
const DELETE_TENANT: &str = "DELETE FROM lagless_directory.tenants WHERE tenant_id = ?";
const INSERT_CHANGE: &str = "INSERT INTO lagless_directory.changes \
     (tenant_id, cluster, version, state) VALUES (?, ?, ?, ?)";
const LIST: &str = "SELECT tenant_id, cluster, version, state FROM lagless_directory.tenants \
     ORDER BY tenant_id";
const LIST_ON: &str = "SELECT tenant_id, cluster, version, state \
     FROM lagless_directory.tenants WHERE cluster = ? ORDER BY tenant_id";
const TENANT_COUNTS: &str =
    "SELECT cluster, COUNT(*) AS tenants FROM lagless_directory.tenants GROUP BY cluster";
// Tenants are counted live (an index range per cluster): placement breaks ties on them, and
// the measured column lags by a measurement period.
const CLUSTERS: &str = "SELECT c.name, c.state, c.capacity_bytes, c.write_capacity, c.bytes, \
     c.write_rate, (SELECT COUNT(*) FROM lagless_directory.tenants t WHERE t.cluster = c.name) \
     AS tenants FROM lagless_directory.clusters c ORDER BY c.name";
const REGISTER_CLUSTER: &str = "INSERT INTO lagless_directory.clusters \
     (name, state, capacity_bytes, write_capacity) VALUES (?, ?, ?, ?) \
     ON DUPLICATE KEY UPDATE state = VALUES(state), capacity_bytes = VALUES(capacity_bytes), \
     write_capacity = VALUES(write_capacity)";
const SET_CLUSTER_STATE: &str = "UPDATE lagless_directory.clusters SET state = ? WHERE name = ?";
const UPDATE_LOAD: &str = "UPDATE lagless_directory.clusters \
     SET bytes = ?, write_rate = ?, tenants = ?, updated_at = CURRENT_TIMESTAMP(6) WHERE name = ?";

/// The directory of one pool, reached through a small connection pool to the global cluster's
/// primary. Cloning shares the connections.
#[derive(Debug, Clone)]
pub struct Directory {
    pool: Pool,
    /// `host:port`, for messages.
    addr: String,
}

/// The outcome of [`Directory::reserve`] (and [`Directory::ensure_tenant`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reserved {
    /// This call made the row.
    New(Route),
    /// A row existed already, whatever its state; nothing was changed.
    Existing(Route),
}

impl Reserved {
    pub fn route(&self) -> &Route {
        match self {
            Reserved::New(r) | Reserved::Existing(r) => r,
        }
    }

    pub fn into_route(self) -> Route {
        match self {
            Reserved::New(r) | Reserved::Existing(r) => r,
        }
    }
}

impl Directory {
    /// A directory reached with `opts` (callers set the primary's address and the account).
    /// Connections open on first use; at most four, so many proxies stay light on the global
    /// cluster.
    pub fn new(opts: Opts) -> Self {
        let addr = addr_of(&opts);
        let size = PoolConstraints::new(1, 4).unwrap_or_default();
        let opts = OptsBuilder::from_opts(opts)
            .pool_opts(PoolOpts::default().with_constraints(size))
            // Affected rows count matched rows, so an UPDATE that changes nothing still tells
            // a registered cluster from an unknown one.
            .client_found_rows(true);
        Self {
            pool: Pool::new(opts),
            addr,
        }
    }

    /// Closes the connections.
    pub async fn close(self) {
        let _ = self.pool.disconnect().await;
    }

    /// Creates the directory's database and tables where they are missing.
    pub async fn ensure_schema(&self) -> Result<(), DirectoryError> {
        let mut conn = self.conn().await?;
        for statement in schema::statements() {
            self.bounded(
                "creating the directory's tables",
                conn.query_drop(statement),
            )
            .await?;
        }
        Ok(())
    }

    /// The tenant's route, None when the directory does not know it.
    pub async fn lookup(&self, id: &TenantId) -> Result<Option<Route>, DirectoryError> {
        let what = format!("looking up tenant {id}");
        let mut conn = self.conn().await?;
        let row: Option<Row> = self
            .bounded(&what, conn.exec_first(ROUTE, (id.as_str(),)))
            .await?;
        row.map(|r| route_of(&r, id)).transpose()
    }

    /// The newest change's seq (0 when there is none): where a follower starts.
    pub async fn last_seq(&self) -> Result<u64, DirectoryError> {
        let mut conn = self.conn().await?;
        let seq: Option<u64> = self
            .bounded("reading the change log's head", conn.query_first(LAST_SEQ))
            .await?;
        Ok(seq.unwrap_or(0))
    }

    /// At most `limit` changes after `seq`, oldest first.
    pub async fn changes_since(&self, seq: u64, limit: u32) -> Result<Vec<Change>, DirectoryError> {
        let mut conn = self.conn().await?;
        let rows: Vec<Row> = self
            .bounded(
                "reading the change log",
                conn.query(crate::feed::since_sql(seq, limit)),
            )
            .await?;
        rows.iter().map(change_of).collect()
    }

    /// Every tenant, or those on `cluster`, by id.
    pub async fn list(
        &self,
        cluster: Option<&str>,
    ) -> Result<Vec<(TenantId, Route)>, DirectoryError> {
        let mut conn = self.conn().await?;
        let rows: Vec<Row> = match cluster {
            None => self.bounded("listing tenants", conn.query(LIST)).await?,
            Some(c) => {
                self.bounded("listing tenants", conn.exec(LIST_ON, (c,)))
                    .await?
            }
        };
        rows.iter()
            .map(|r| {
                let id = tenant_of(r)?;
                let route = route_of(r, &id)?;
                Ok((id, route))
            })
            .collect()
    }

    /// How many tenants each cluster holds (clusters without tenants are absent).
    pub async fn tenant_counts(&self) -> Result<BTreeMap<String, u64>, DirectoryError> {
        let mut conn = self.conn().await?;
        let rows: Vec<Row> = self
            .bounded("counting tenants", conn.query(TENANT_COUNTS))
            .await?;
        rows.iter()
            .map(|r| {
                let what = "a tenant count";
                Ok((column(r, "cluster", what)?, column(r, "tenants", what)?))
            })
            .collect()
    }

    /// The registered tenant clusters and their last measured load, by name.
    pub async fn clusters(&self) -> Result<Vec<ClusterLoad>, DirectoryError> {
        let mut conn = self.conn().await?;
        let rows: Vec<Row> = self
            .bounded("reading the clusters", conn.query(CLUSTERS))
            .await?;
        rows.iter().map(load_of).collect()
    }

    /// Registers a tenant cluster, or changes its state and capacity; the measured load is
    /// kept.
    pub async fn register_cluster(
        &self,
        name: &str,
        state: ClusterState,
        capacity_bytes: u64,
        write_capacity: f64,
    ) -> Result<(), DirectoryError> {
        check_cluster_name(name)?;
        check_rate("write capacity", write_capacity)?;
        let what = format!("registering cluster {name}");
        let mut conn = self.conn().await?;
        self.bounded(
            &what,
            conn.exec_drop(
                REGISTER_CLUSTER,
                (name, state.as_str(), capacity_bytes, write_capacity),
            ),
        )
        .await
    }

    pub async fn set_cluster_state(
        &self,
        name: &str,
        state: ClusterState,
    ) -> Result<(), DirectoryError> {
        let what = format!("setting cluster {name} {state}");
        let mut conn = self.conn().await?;
        self.bounded(
            &what,
            conn.exec_drop(SET_CLUSTER_STATE, (state.as_str(), name)),
        )
        .await?;
        registered(name, conn.affected_rows())
    }

    /// Records a cluster's measured load.
    pub async fn update_load(
        &self,
        name: &str,
        bytes: u64,
        write_rate: f64,
        tenants: u64,
    ) -> Result<(), DirectoryError> {
        check_rate("write rate", write_rate)?;
        let what = format!("recording cluster {name}'s load");
        let mut conn = self.conn().await?;
        self.bounded(
            &what,
            conn.exec_drop(UPDATE_LOAD, (bytes, write_rate, tenants, name)),
        )
        .await?;
        registered(name, conn.affected_rows())
    }

    /// Inserts the tenant in state Creating on `cluster` (one transaction with its change
    /// row); Existing when a row exists already, whatever its state. The version is 1, or one
    /// above the last version a removed tenant of the same id had, so a tenant's versions
    /// never go back.
    pub async fn reserve(&self, id: &TenantId, cluster: &str) -> Result<Reserved, DirectoryError> {
        check_cluster_name(cluster)?;
        let what = format!("reserving tenant {id} on cluster {cluster}");
        let mut conn = self.conn().await?;
        let mut tx = self.change_tx(&mut conn, &what).await?;
        if let Some(route) = self.locked_route(&mut tx, id, &what).await? {
            self.bounded(&what, tx.rollback()).await?;
            return Ok(Reserved::Existing(route));
        }
        let last: Option<Option<u64>> = self
            .bounded(&what, tx.exec_first(LAST_VERSION, (id.as_str(),)))
            .await?;
        let route = Route {
            cluster: cluster.to_string(),
            version: last.flatten().map_or(1, |v| v.saturating_add(1)),
            state: TenantState::Creating,
        };
        self.bounded(
            &what,
            tx.exec_drop(
                INSERT_TENANT,
                (id.as_str(), cluster, route.version, route.state.as_str()),
            ),
        )
        .await?;
        self.write_change(&mut tx, id, Some(&route), route.version, &what)
            .await?;
        self.bounded(&what, tx.commit()).await?;
        Ok(Reserved::New(route))
    }

    /// Creating -> Active (version + 1, with its change row). Idempotent: an active tenant's
    /// route is returned unchanged. Any other state, or an unknown tenant, is an error.
    pub async fn activate(&self, id: &TenantId) -> Result<Route, DirectoryError> {
        let what = format!("activating tenant {id}");
        let mut conn = self.conn().await?;
        let mut tx = self.change_tx(&mut conn, &what).await?;
        let Some(route) = self.locked_route(&mut tx, id, &what).await? else {
            return Err(DirectoryError::Invalid(format!(
                "tenant {id} is not in the directory"
            )));
        };
        match route.state {
            TenantState::Active => {
                self.bounded(&what, tx.rollback()).await?;
                Ok(route)
            }
            TenantState::Creating => {
                let active = Route {
                    version: route.version.saturating_add(1),
                    state: TenantState::Active,
                    ..route
                };
                self.update_route(tx, id, &active, &what).await?;
                Ok(active)
            }
            other => Err(DirectoryError::Invalid(format!(
                "tenant {id} is {other} on cluster {}, not being created",
                route.cluster
            ))),
        }
    }

    /// Compare-and-swap of a tenant's route: when the directory holds exactly `expected`
    /// (cluster, version and state), the tenant becomes `state` on `cluster` with the next
    /// version, in one transaction with its change row. Returns the new route; `Ok(None)`
    /// when the row is not `expected` any more (another writer came first), so a caller
    /// that repeats a step after a restart can tell "done already" from "lost".
    pub async fn transition(
        &self,
        id: &TenantId,
        expected: &Route,
        cluster: &str,
        state: TenantState,
    ) -> Result<Option<Route>, DirectoryError> {
        check_cluster_name(cluster)?;
        let what = format!("moving tenant {id} to {state} on cluster {cluster}");
        let mut conn = self.conn().await?;
        let mut tx = self.change_tx(&mut conn, &what).await?;
        let current = self.locked_route(&mut tx, id, &what).await?;
        if current.as_ref() != Some(expected) {
            self.bounded(&what, tx.rollback()).await?;
            return Ok(None);
        }
        let next = Route {
            cluster: cluster.to_string(),
            version: expected.version.saturating_add(1),
            state,
        };
        self.update_route(tx, id, &next, &what).await?;
        Ok(Some(next))
    }

    /// Writes the tenant's new route with its change row and commits.
    async fn update_route(
        &self,
        mut tx: Transaction<'_>,
        id: &TenantId,
        route: &Route,
        what: &str,
    ) -> Result<(), DirectoryError> {
        let params = (
            route.cluster.as_str(),
            route.version,
            route.state.as_str(),
            id.as_str(),
        );
        self.bounded(what, tx.exec_drop(UPDATE_TENANT, params))
            .await?;
        self.write_change(&mut tx, id, Some(route), route.version, what)
            .await?;
        self.bounded(what, tx.commit()).await
    }

    /// Removes the tenant's row (with a change row that has no cluster). Nothing happens for
    /// a tenant the directory does not know. Its database is not touched.
    pub async fn forget(&self, id: &TenantId) -> Result<(), DirectoryError> {
        self.remove(id, None).await.map(|_| ())
    }

    /// Create flow: an existing tenant's route is returned as it is; otherwise the tenant is
    /// placed ([`placement::choose`] over [`Directory::clusters`] with live tenant counts),
    /// reserved, `create(cluster)` runs (it creates the database on that cluster) and the
    /// tenant is activated. A failed `create` removes the reservation this call made.
    pub async fn create_tenant<F, Fut>(
        &self,
        id: &TenantId,
        create: F,
    ) -> Result<Route, DirectoryError>
    where
        F: FnOnce(String) -> Fut,
        Fut: Future<Output = Result<(), String>>,
    {
        self.ensure_tenant(id, create)
            .await
            .map(Reserved::into_route)
    }

    /// [`Directory::create_tenant`], telling a tenant this call created (New) from one that
    /// existed (Existing). A tenant left in Creating by a creator that stopped half way is
    /// finished: `create` runs on its cluster (so it must tolerate an existing database) and
    /// the tenant is activated, but a failure then leaves the reservation alone.
    pub async fn ensure_tenant<F, Fut>(
        &self,
        id: &TenantId,
        create: F,
    ) -> Result<Reserved, DirectoryError>
    where
        F: FnOnce(String) -> Fut,
        Fut: Future<Output = Result<(), String>>,
    {
        if let Some(route) = self.lookup(id).await? {
            if route.state != TenantState::Creating {
                return Ok(Reserved::Existing(route));
            }
            return self.finish_creation(id, route, create, false).await;
        }
        let loads = with_live_counts(self.clusters().await?, &self.tenant_counts().await?);
        let cluster = placement::choose(&loads, placement::random_pick())
            .ok_or_else(|| {
                DirectoryError::Invalid(format!(
                    "no place for tenant {id}: no tenant cluster is registered as open or filling"
                ))
            })?
            .name
            .clone();
        match self.reserve(id, &cluster).await? {
            Reserved::New(route) => self.finish_creation(id, route, create, true).await,
            Reserved::Existing(route) if route.state == TenantState::Creating => {
                self.finish_creation(id, route, create, false).await
            }
            existing @ Reserved::Existing(_) => Ok(existing),
        }
    }

    async fn finish_creation<F, Fut>(
        &self,
        id: &TenantId,
        reserved: Route,
        create: F,
        ours: bool,
    ) -> Result<Reserved, DirectoryError>
    where
        F: FnOnce(String) -> Fut,
        Fut: Future<Output = Result<(), String>>,
    {
        if let Err(e) = create(reserved.cluster.clone()).await {
            tracing::warn!(
                tenant = %id,
                cluster = %reserved.cluster,
                error = %e,
                "creating a tenant's database failed"
            );
            let mut message = format!(
                "tenant {id}: creating its database on cluster {} failed: {e}",
                reserved.cluster
            );
            if ours {
                // Only the row this call made, in case another creator finished it meanwhile.
                match self.remove(id, Some(&reserved)).await {
                    Ok(_) => message.push_str("; the reservation was removed"),
                    Err(f) => message.push_str(&format!(
                        "; removing the reservation failed too ({f}): `forget` it"
                    )),
                }
            }
            return Err(DirectoryError::Invalid(message));
        }
        Ok(Reserved::New(self.activate(id).await?))
    }

    /// Deletes the tenant's row with its change row; with `only`, only while the row is still
    /// that route. Returns whether a row was deleted.
    async fn remove(&self, id: &TenantId, only: Option<&Route>) -> Result<bool, DirectoryError> {
        let what = format!("removing tenant {id}");
        let mut conn = self.conn().await?;
        let mut tx = self.change_tx(&mut conn, &what).await?;
        let current = self.locked_route(&mut tx, id, &what).await?;
        let Some(route) = current.filter(|r| only.is_none_or(|o| o == r)) else {
            self.bounded(&what, tx.rollback()).await?;
            return Ok(false);
        };
        self.bounded(&what, tx.exec_drop(DELETE_TENANT, (id.as_str(),)))
            .await?;
        self.write_change(&mut tx, id, None, route.version.saturating_add(1), &what)
            .await?;
        self.bounded(&what, tx.commit()).await?;
        Ok(true)
    }

    /// Starts a transaction that changes `tenants`: it holds the change lock first, so its
    /// change row commits in seq order (see [`crate::schema`]).
    async fn change_tx<'c>(
        &self,
        conn: &'c mut Conn,
        what: &str,
    ) -> Result<Transaction<'c>, DirectoryError> {
        let mut tx = self
            .bounded(what, conn.start_transaction(TxOpts::default()))
            .await?;
        let locked: Option<u8> = self.bounded(what, tx.query_first(LOCK_CHANGES)).await?;
        if locked.is_none() {
            return Err(DirectoryError::Invalid(format!(
                "{what}: the directory has no change lock row (run ensure_schema)"
            )));
        }
        Ok(tx)
    }

    async fn locked_route(
        &self,
        tx: &mut Transaction<'_>,
        id: &TenantId,
        what: &str,
    ) -> Result<Option<Route>, DirectoryError> {
        let row: Option<Row> = self
            .bounded(what, tx.exec_first(ROUTE_FOR_UPDATE, (id.as_str(),)))
            .await?;
        row.map(|r| route_of(&r, id)).transpose()
    }

    async fn write_change(
        &self,
        tx: &mut Transaction<'_>,
        id: &TenantId,
        route: Option<&Route>,
        version: u64,
        what: &str,
    ) -> Result<(), DirectoryError> {
        let cluster = route.map(|r| r.cluster.as_str());
        let state = route.map(|r| r.state.as_str());
        self.bounded(
            what,
            tx.exec_drop(INSERT_CHANGE, (id.as_str(), cluster, version, state)),
        )
        .await
    }

    async fn conn(&self) -> Result<Conn, DirectoryError> {
        connected(&self.addr, self.pool.get_conn()).await
    }

    /// Awaits `fut` within the statement timeout, naming `what` in errors.
    async fn bounded<T>(
        &self,
        what: &str,
        fut: impl Future<Output = Result<T, mysql_async::Error>>,
    ) -> Result<T, DirectoryError> {
        bounded(&self.addr, what, fut).await
    }
}

/// The loads placement decides on: the recorded ones, with tenant counts as the directory
/// holds them now (the recorded counts lag until the next load update, and placing many
/// tenants in between would otherwise send them all to one cluster).
fn with_live_counts(
    mut loads: Vec<ClusterLoad>,
    counts: &BTreeMap<String, u64>,
) -> Vec<ClusterLoad> {
    for load in &mut loads {
        load.tenants = counts.get(&load.name).copied().unwrap_or(0);
    }
    loads
}

fn registered(name: &str, matched: u64) -> Result<(), DirectoryError> {
    if matched == 0 {
        return Err(DirectoryError::Invalid(format!(
            "cluster {name} is not registered in the directory"
        )));
    }
    Ok(())
}

fn check_cluster_name(name: &str) -> Result<(), DirectoryError> {
    let ok = !name.is_empty()
        && name.len() <= MAX_CLUSTER_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if !ok {
        return Err(DirectoryError::Invalid(format!(
            "invalid cluster name '{name}': 1-63 characters of letters, digits, '-', '_' and '.'"
        )));
    }
    Ok(())
}

fn check_rate(what: &str, value: f64) -> Result<(), DirectoryError> {
    if !value.is_finite() || value < 0.0 {
        return Err(DirectoryError::Invalid(format!(
            "{what} must be a finite number of writes per second, 0 or more, not {value}"
        )));
    }
    Ok(())
}

fn load_of(row: &Row) -> Result<ClusterLoad, DirectoryError> {
    let name: String = column(row, "name", "a cluster")?;
    let what = format!("cluster {name}");
    let state: String = column(row, "state", &what)?;
    Ok(ClusterLoad {
        state: state
            .parse()
            .map_err(|e| DirectoryError::Invalid(format!("{what}: {e}")))?,
        capacity_bytes: column(row, "capacity_bytes", &what)?,
        write_capacity: column(row, "write_capacity", &what)?,
        bytes: column(row, "bytes", &what)?,
        write_rate: column(row, "write_rate", &what)?,
        tenants: column(row, "tenants", &what)?,
        name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_use_qualified_names() {
        for sql in [
            LOCK_CHANGES,
            ROUTE,
            ROUTE_FOR_UPDATE,
            LAST_VERSION,
            INSERT_TENANT,
            UPDATE_TENANT,
            DELETE_TENANT,
            INSERT_CHANGE,
            LAST_SEQ,
            &crate::feed::since_sql(0, 1),
            LIST,
            LIST_ON,
            TENANT_COUNTS,
            CLUSTERS,
            REGISTER_CLUSTER,
            SET_CLUSTER_STATE,
            UPDATE_LOAD,
        ] {
            assert!(sql.contains(&format!("{}.", schema::DATABASE)), "{sql}");
        }
    }

    #[test]
    fn placement_sees_live_tenant_counts() {
        let load = |name: &str, tenants| ClusterLoad {
            name: name.into(),
            state: ClusterState::Open,
            capacity_bytes: 1,
            write_capacity: 1.0,
            bytes: 0,
            write_rate: 0.0,
            tenants,
        };
        let counts = BTreeMap::from([("a".to_string(), 7)]);
        let loads = with_live_counts(vec![load("a", 1), load("b", 3)], &counts);
        assert_eq!(
            loads.iter().map(|l| l.tenants).collect::<Vec<_>>(),
            vec![7, 0]
        );
    }

    #[test]
    fn names_and_rates_are_checked_before_any_sql() {
        assert!(check_cluster_name("demo-c1").is_ok());
        assert!(check_cluster_name(&"c".repeat(63)).is_ok());
        for bad in ["", "a b", "a'b", "é", &"c".repeat(64)] {
            let err = check_cluster_name(bad).unwrap_err().to_string();
            assert!(err.starts_with("invalid cluster name"), "{err}");
        }
        assert!(check_rate("write rate", 0.0).is_ok());
        for bad in [-1.0, f64::NAN, f64::INFINITY] {
            assert!(check_rate("write rate", bad).is_err());
        }
        assert_eq!(
            registered("x", 0).unwrap_err().to_string(),
            "cluster x is not registered in the directory"
        );
    }
}
