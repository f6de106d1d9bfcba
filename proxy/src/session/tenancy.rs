//! A session in a tenant pool: before each statement it moves to the cluster of the
//! statement's tenant, and it keeps a transaction within one tenant.

use std::sync::Arc;
use std::time::{Duration, Instant};

use lagless_directory::{TenantId, TenantState};

use super::{BackendRole, Session};
use crate::backend::Backends;
use crate::protocol::messages::ErrPacket;
use crate::protocol::wire::Reader;
use crate::route::schema_refs_where;
use crate::tenant::decide::{self, Context, Lifecycle, Owner};
use crate::tenant::{Creation, Placed, TenantRouter};

/// While a tenant is frozen, how often a held statement reads the directory itself, in case
/// this proxy's change feed lags.
const HOLD_RECHECK: Duration = Duration::from_millis(100);

/// What a statement of a tenant leaves to do once its outcome is known.
#[derive(Debug)]
pub(super) struct TenantStep {
    pub(super) id: TenantId,
    lifecycle: Lifecycle,
    creation: Option<Creation>,
    /// The command may run again on the tenant's new cluster if its data is missing where
    /// it ran (see [`Session::reroute`]); only callers that handle a reroute set
    /// `Session::reroutable` from it.
    pub(super) reroutable: bool,
}

impl Session {
    /// Moves the session to the cluster that owns the statement `sql` (a COM_QUERY's or a
    /// prepared statement's text; `use_database` is the database a `USE` in it switches to).
    /// A no-op outside tenant pools.
    pub(super) async fn follow_tenant(
        &mut self,
        sql: &[u8],
        use_database: Option<&str>,
    ) -> Result<Option<TenantStep>, ErrPacket> {
        let Some(router) = self.shared.tenants.clone() else {
            return Ok(None);
        };
        let refs = schema_refs_where(sql, self.state.sql_mode, |name| {
            router.naming.tenant_of(name).is_some()
        });
        let cx = Context {
            naming: &router.naming,
            sources: &router.sources,
            database: use_database.or(self.state.database.as_deref()),
            attribute: self.tenant_attribute.as_deref(),
        };
        let decision = decide::decide(&refs, &cx).map_err(|r| r.to_err())?;
        let (owner, lifecycle) = (decision.owner, decision.lifecycle);
        // A statement that names no database (SELECT 1, BEGIN, SET) runs where the session is;
        // one that names no tenant stays where its transaction or pinned state is.
        if decision.anywhere || (owner == Owner::Global && self.held()) {
            return Ok(None);
        }
        // The same tenant as the last statement, and no route changed since: nothing to do.
        let unchanged = lifecycle == Lifecycle::Use
            && owner == self.owner
            && router.generation() == self.placed_at;
        let mut creation = None;
        if !unchanged {
            let (placed, generation) = match (&owner, lifecycle) {
                (Owner::Tenant(id), Lifecycle::Create) => {
                    let generation = router.generation();
                    let created = router.place_new(id).await?;
                    let placed = created.placed.clone();
                    creation = Some(created);
                    (placed, generation)
                }
                // A transaction keeps running where it began while its tenant is frozen:
                // the fence waits for it to end.
                _ if self.held() => {
                    let generation = router.generation();
                    (router.place(&owner).await?, generation)
                }
                _ => {
                    let limit = self.shared.config.write_hold_timeout;
                    place_holding(&router, &owner, false, limit, self.id).await?
                }
            };
            self.enter(owner.clone(), placed.backends)?;
            self.placed_at = generation;
            self.placed_route = placed.route;
        }
        let Owner::Tenant(id) = owner else {
            return Ok(None);
        };
        if refs.ddl
            && let Some(route) = &self.placed_route
            && matches!(route.state, TenantState::Moving | TenantState::Frozen)
        {
            return Err(decide::moving_ddl(&id));
        }
        Ok(Some(TenantStep {
            id,
            lifecycle,
            creation,
            // Outside a transaction nothing is lost by running the statement again elsewhere
            // when the server says the tenant's data is not there.
            reroutable: !self.held()
                && !self.state.in_transaction
                && self.state.replica_transaction.is_none(),
        }))
    }

    /// After the server said a tenant's table or database is missing where the cached route
    /// led (`err`): reads the route again and moves the session if it changed. `Ok(true)`:
    /// run the statement again; `Ok(false)`: the route stands and the error is the client's.
    pub(super) async fn reroute(&mut self, step: &TenantStep) -> Result<bool, ErrPacket> {
        let Some(router) = self.shared.tenants.clone() else {
            return Ok(false);
        };
        let owner = Owner::Tenant(step.id.clone());
        let limit = self.shared.config.write_hold_timeout;
        let (placed, generation) = place_holding(&router, &owner, true, limit, self.id).await?;
        if placed.route == self.placed_route {
            return Ok(false);
        }
        tracing::info!(id = self.id, tenant = %step.id, to = ?placed.route, "tenant moved; statement runs again on its new cluster");
        self.enter(owner, placed.backends)?;
        self.placed_at = generation;
        self.placed_route = placed.route;
        Ok(true)
    }

    /// The session has a transaction past its `BEGIN`, or state that cannot move.
    fn held(&self) -> bool {
        let movable = self.state.fresh_begin.is_some() && self.state.pinned.is_none();
        (self.state.in_transaction && !movable)
            || self.state.pinned.is_some()
            || self
                .state
                .replica_transaction
                .as_ref()
                .is_some_and(|t| !t.fresh)
    }

    /// Binds the session to `owner`'s cluster. Outside a transaction and pinned state it may
    /// change clusters: the old connections go back to their pool, and the session's
    /// replayable state follows on the new ones. A transaction in which only its `BEGIN` ran
    /// moves with it; any other stays with its tenant.
    fn enter(&mut self, owner: Owner, backends: Arc<Backends>) -> Result<(), ErrPacket> {
        let same_cluster = Arc::ptr_eq(&self.backends, &backends);
        // A read-only transaction on a replica is a transaction like any other here; while it
        // has read nothing it moves as a lone BEGIN does.
        if let Some(tx) = &self.state.replica_transaction
            && tx.fresh
            && !same_cluster
        {
            self.state.in_transaction = true;
            self.state.fresh_begin = Some(tx.begin.clone());
            self.state.replica_transaction = None;
        }
        // One that has read nothing yet binds no tenant.
        let in_replica_transaction = self
            .state
            .replica_transaction
            .as_ref()
            .is_some_and(|tx| !tx.fresh);
        let movable = self.state.in_transaction
            && self.state.fresh_begin.is_some()
            && self.state.pinned.is_none();
        if (self.state.in_transaction && !movable) || in_replica_transaction {
            decide::check_transaction(Some(&self.owner), &owner).map_err(|r| r.to_err())?;
        }
        if same_cluster {
            if (!self.state.in_transaction || movable) && !in_replica_transaction {
                self.owner = owner;
            }
            return Ok(());
        }
        if self.state.pinned.is_some()
            || (self.state.in_transaction && !movable)
            || in_replica_transaction
        {
            return Err(ErrPacket::new(
                1105,
                "HY000",
                format!(
                    "lagless: {} is on another cluster than this session's {}; its state \
                     cannot move there",
                    decide::describe(&owner),
                    if self.state.in_transaction || in_replica_transaction {
                        "transaction"
                    } else {
                        "pinned session state (temporary tables, locks or variables)"
                    }
                ),
            ));
        }
        if movable {
            self.state.in_transaction = false;
            self.state.replay_begin = self.state.fresh_begin.take();
        }
        tracing::debug!(id = self.id, owner = %decide::describe(&owner), "session moves to another cluster");
        self.primary = None;
        self.replica = None;
        self.state.statements.forget_backend(BackendRole::Primary);
        self.state.statements.forget_backend(BackendRole::Replica);
        self.db_elsewhere = match (&self.state.database, &self.shared.tenants) {
            (Some(db), Some(router)) => !router.database_is_on(db, &backends),
            _ => false,
        };
        self.swap_writes(&backends);
        self.backends = backends;
        self.owner = owner;
        Ok(())
    }

    /// Keeps the session's writes on the cluster it leaves, and takes up those it made
    /// earlier on the one it enters.
    fn swap_writes(&mut self, entering: &Arc<Backends>) {
        if let Some(left) = self.state.last_write.take() {
            self.writes_elsewhere.push((self.backends.clone(), left));
        }
        if let Some(at) = self
            .writes_elsewhere
            .iter()
            .position(|(b, _)| Arc::ptr_eq(b, entering))
        {
            self.state.last_write = Some(self.writes_elsewhere.swap_remove(at).1);
        }
    }

    /// The default database to open connections with on the current cluster: none while it
    /// lives on another.
    pub(super) fn database_here(&self) -> Option<&str> {
        if self.db_elsewhere {
            return None;
        }
        self.state.database.as_deref()
    }

    /// Records what a tenant's statement did: a created tenant becomes active (or its
    /// reservation goes), a dropped one leaves the directory, and a routing error drops the
    /// cached route. `failed`: the client got an error, from a server (`error`) or from the
    /// proxy (a server that could not be reached).
    pub(super) async fn after_tenant_step(
        &mut self,
        step: TenantStep,
        failed: bool,
        error: Option<u16>,
    ) {
        let Some(router) = self.shared.tenants.clone() else {
            return;
        };
        let succeeded = !failed && error.is_none();
        match step.lifecycle {
            Lifecycle::Create => {
                if let Some(creation) = &step.creation {
                    router.created(&step.id, creation, succeeded).await;
                }
            }
            Lifecycle::Drop if succeeded => router.dropped(&step.id).await,
            _ if error.is_some_and(|code| super::forward::MISSING.contains(&code)) => {
                router.forget_cached(&step.id);
            }
            _ => {}
        }
    }
}

/// Places `owner`, holding while a move has the tenant frozen: until the route changes
/// (the change log, or a read of the directory every [`HOLD_RECHECK`] in case this
/// proxy's feed lags), at most the write hold timeout. `fresh` reads the directory
/// first. Returns the placement and the router generation it is current for.
async fn place_holding(
    router: &TenantRouter,
    owner: &Owner,
    mut fresh: bool,
    limit: Duration,
    session: u32,
) -> Result<(Placed, u64), ErrPacket> {
    let mut held: Option<(Instant, tokio::sync::watch::Receiver<u64>)> = None;
    loop {
        let generation = router.generation();
        let placed = if fresh {
            router.refresh(owner).await?
        } else {
            router.place(owner).await?
        };
        let frozen = placed
            .route
            .as_ref()
            .is_some_and(|r| r.state == TenantState::Frozen);
        if !frozen {
            if let Some((started, _)) = held {
                tracing::debug!(id = session, owner = %decide::describe(owner), held_ms = started.elapsed().as_millis() as u64, "held statement released");
            }
            return Ok((placed, generation));
        }
        // Watching starts at the first sight of the freeze: from then on a change wakes the
        // statement at once.
        let (started, changes) =
            held.get_or_insert_with(|| (Instant::now(), router.watch_changes()));
        let Some(left) = limit.checked_sub(started.elapsed()) else {
            return Err(decide::still_frozen(owner, limit));
        };
        fresh = tokio::select! {
            _ = changes.changed() => false,
            () = tokio::time::sleep(left.min(HOLD_RECHECK)) => true,
        };
    }
}

/// The value of connection attribute `name`, if the client sent it.
pub(super) fn connection_attribute(raw: &[u8], name: &str) -> Option<String> {
    let mut r = Reader::new(raw);
    while !r.is_empty() {
        let key = r.lenenc_bytes().ok()?;
        let value = r.lenenc_bytes().ok()?;
        if key == name.as_bytes() {
            return std::str::from_utf8(value).ok().map(str::to_owned);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs(pairs: &[(&str, &str)]) -> Vec<u8> {
        let mut out = Vec::new();
        for (k, v) in pairs {
            crate::protocol::wire::put_lenenc_bytes(&mut out, k.as_bytes());
            crate::protocol::wire::put_lenenc_bytes(&mut out, v.as_bytes());
        }
        out
    }

    #[test]
    fn finds_the_named_attribute() {
        let raw = attrs(&[("_client_name", "libmariadb"), ("lagless_tenant", "42")]);
        assert_eq!(
            connection_attribute(&raw, "lagless_tenant").as_deref(),
            Some("42")
        );
        assert_eq!(connection_attribute(&raw, "other"), None);
        // Truncated input ends the search without a panic.
        assert_eq!(
            connection_attribute(&raw[..raw.len() - 1], "lagless_tenant"),
            None
        );
        assert_eq!(connection_attribute(&[], "lagless_tenant"), None);
    }
}
