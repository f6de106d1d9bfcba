//! The SQL of a tenant move, one function a step; [`super::run`] decides which
//! runs when. Every step may be repeated after a restart.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use lagless_core::gtid::MariadbPosition;
use lagless_directory::{Directory, Route, TenantId, TenantState};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row};

use super::pace::Pace;
use super::plan::{self, MoveLimits};
use super::snapshot::{self, Snapshot};
use super::sql::{Endpoint, STATEMENT_LIMIT, first, kill_connection, run, tables};
use crate::orchestrate::act::sql_quote;

/// How many bytes of the snapshot go to the target between two checks of its pace.
const PACE_STEP: u64 = 64 << 10;
/// How many bytes of the snapshot go to the target between two waits for its replicas.
const REPLICA_STEP: u64 = 128 << 10;
/// The longest one wait for the target's replicas; past it the copy goes on (and says so).
const REPLICA_WAIT: Duration = Duration::from_secs(2);
/// The longest wait for the snapshot server's next row: far longer than any pause of the
/// copy's own, so only a server that stopped answering meets it.
const ROW_WAIT: Duration = Duration::from_secs(120);
/// Round trips to the target's primary measured before the copy, for the pace to follow.
const BASELINE_SAMPLES: usize = 9;

/// Everything a move needs to know about the two clusters and the directory.
pub struct MoveContext {
    pub tenant: TenantId,
    /// The tenant's database, `t_<id>` by default.
    pub database: String,
    pub directory: Directory,
    pub source_primary: Endpoint,
    /// Where the snapshot is read: a caught-up replica of the source, or its primary.
    pub snapshot_from: Endpoint,
    /// The source cluster's GTID domain.
    pub source_domain: u32,
    /// The account the target's primary replicates from `snapshot_from` with.
    pub replication: (String, String),
    pub target_primary: Endpoint,
    /// The target's replicas: the copy waits for them as it goes, so that they stay close to
    /// their primary and the target's other tenants' reads on them do not wait long.
    pub target_replicas: Vec<Endpoint>,
    /// An option file the target's primary reads at start (in its `!includedir`), where the
    /// channel's filter is kept so that a restart does not bring the channel back unfiltered.
    pub filter_file: Option<PathBuf>,
    pub limits: MoveLimits,
}

fn position(text: &str) -> Result<MariadbPosition, String> {
    MariadbPosition::parse(text).map_err(|e| format!("GTID position '{text}': {e}"))
}

/// What must hold before a move starts: the tenant active on the source (or `moving` there,
/// from an interrupted attempt), its tables movable, and the target's primary replicating from
/// nowhere.
pub async fn preconditions(cx: &MoveContext, from: &str, to: &str) -> Result<Route, String> {
    let route = cx
        .directory
        .lookup(&cx.tenant)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("tenant {} is not in the directory", cx.tenant))?;
    if from == to || route.cluster == to {
        return Err(format!("tenant {} is on cluster {to} already", cx.tenant));
    }
    // `moving`: an earlier run of this move stopped while copying.
    if route.cluster != from || !matches!(route.state, TenantState::Active | TenantState::Moving) {
        return Err(format!(
            "tenant {} is {} on cluster {}, not active on {from}",
            cx.tenant, route.state, route.cluster
        ));
    }
    let mut source = cx.source_primary.primary_conn().await?;
    tables(&mut source, &cx.database).await?;
    let mut target = cx.target_primary.primary_conn().await?;
    let channels: Vec<Row> = target
        .query("SHOW ALL SLAVES STATUS")
        .await
        .map_err(|e| format!("SHOW ALL SLAVES STATUS on the target: {e}"))?;
    let ours = plan::channel_name(&cx.tenant);
    let others = channels
        .iter()
        .filter_map(|r| r.get::<String, _>("Connection_name"))
        .filter(|name| *name != ours)
        .count();
    if others > 0 {
        return Err("the target's primary replicates from another server".into());
    }
    Ok(route)
}

/// Where a move reads its snapshot: the server on record once it has been read (its binary
/// log is the channel's, whatever the source's topology says later), else a replica of the
/// source, which carries the snapshot's load, else (a cluster of one) its primary.
pub fn snapshot_server(
    record: &super::plan::MoveRecord,
    source_primary: &Endpoint,
    first_replica: Option<Endpoint>,
) -> Endpoint {
    match &record.snapshot_server {
        Some((host, port)) => Endpoint {
            host: host.clone(),
            port: *port,
            ..source_primary.clone()
        },
        None => first_replica.unwrap_or_else(|| source_primary.clone()),
    }
}

/// The snapshot: one consistent read of the tenant's database on `snapshot_from`, with its
/// positions, written into the target's primary (dropping a leftover copy of an earlier
/// attempt first) at the copy's pace, waiting for the target's replicas as it goes.
pub async fn copy(cx: &MoveContext) -> Result<Snapshot, String> {
    let mut target = cx.target_primary.primary_conn().await?;
    // A copy made again (its record lost a later step) must not leave an earlier attempt's
    // channel in place: started again, it would go on from that attempt's position.
    let channel = plan::channel_name(&cx.tenant);
    remove_channel(&mut target, &channel).await?;
    run(
        &mut target,
        &format!("DROP DATABASE IF EXISTS {}", plan::ident(&cx.database)),
    )
    .await?;
    drop(target);
    // The snapshot must hold every schema change made before the tenant was marked moving
    // (the proxies refuse them from then on): the channel filters statements by their
    // default database, so one made with another default database would never reach the
    // target. A replica catches up to the source's head first.
    let from = &cx.snapshot_from;
    let replica = (&from.host, from.port) != (&cx.source_primary.host, cx.source_primary.port);
    if replica && let Some(head) = source_head(cx).await? {
        let mut conn = from.conn().await?;
        let secs = cx.limits.catch_up_timeout.as_secs();
        let waited: Option<i64> = first(
            &mut conn,
            &format!("SELECT MASTER_GTID_WAIT('{}', {secs})", sql_quote(&head)),
        )
        .await?;
        if waited != Some(0) {
            return Err(format!(
                "the snapshot replica {}:{} did not reach the source's {head} within {secs} s",
                from.host, from.port
            ));
        }
    }
    let mut source = snapshot::Source::open(from).await?;
    let (create_db, tables) = source.schema(&cx.database).await?;
    // The loader writes as the administrator, whom `read_only` does not stop: a target
    // primary demoted during the copy (a switchover leaves it running) is noticed by `Flow`.
    let mut target = cx.target_primary.primary_conn().await?;
    snapshot::prepare_target(&mut target, &cx.database, &create_db, &tables).await?;
    let mut flow = Flow::start(cx, &mut target).await?;
    for table in &tables {
        let prefix = snapshot::insert_prefix(table);
        let mut batch = prefix.clone();
        let mut rows = source.rows(&cx.database, table).await?;
        loop {
            let next = tokio::time::timeout(ROW_WAIT, rows.next())
                .await
                .map_err(|_| {
                    format!(
                        "reading {}.{}: no row within {} s",
                        cx.database,
                        table.name,
                        ROW_WAIT.as_secs()
                    )
                })?
                .map_err(|e| format!("reading {}.{}: {e}", cx.database, table.name))?;
            let Some(row) = next else {
                break;
            };
            if batch.len() > prefix.len() {
                batch.push(b',');
            }
            snapshot::push_row(&mut batch, &row.unwrap(), &table.columns);
            if batch.len() >= snapshot::BATCH {
                flow.write(cx, &mut target, &table.name, &batch).await?;
                batch.clone_from(&prefix);
            }
        }
        if batch.len() > prefix.len() {
            flow.write(cx, &mut target, &table.name, &batch).await?;
        }
    }
    let snapshot = source.snapshot.clone();
    source.finish().await;
    tracing::info!(
        tenant = %cx.tenant,
        tables = tables.len(),
        bytes = flow.sent,
        ms = flow.began.elapsed().as_millis() as u64,
        replicas_waited_ms = flow.replicas.waited.as_millis() as u64,
        slowest_rate = flow.slowest,
        fastest_rate = flow.fastest,
        "snapshot loaded into the target"
    );
    Ok(snapshot)
}

/// The copy's pace as it writes: every [`PACE_STEP`] bytes it waits as long as its pace
/// says, and every [`REPLICA_STEP`] bytes it checks the target's primary is still writable,
/// measures its round trip (for a pace that follows it) and waits for the target's replicas.
struct Flow {
    began: Instant,
    sent: u64,
    paced: u64,
    synced: u64,
    pace: Pace,
    slowest: u64,
    fastest: u64,
    replicas: ReplicaPace,
}

impl Flow {
    async fn start(cx: &MoveContext, target: &mut Conn) -> Result<Self, String> {
        let replicas = ReplicaPace::connect(cx).await;
        let mut pace = Pace::new(cx.limits.copy_rate, cx.limits.latency_allowance);
        if pace.follows() {
            let mut samples = Vec::with_capacity(BASELINE_SAMPLES);
            for _ in 0..BASELINE_SAMPLES {
                let asked = Instant::now();
                first::<i64>(target, "SELECT @@read_only").await?;
                samples.push(asked.elapsed());
            }
            pace.set_baseline(&mut samples);
        }
        Ok(Self {
            began: Instant::now(),
            sent: 0,
            paced: 0,
            synced: 0,
            slowest: pace.rate(),
            fastest: pace.rate(),
            pace,
            replicas,
        })
    }

    /// Sends one `INSERT` of `table`'s rows, then paces.
    async fn write(
        &mut self,
        cx: &MoveContext,
        target: &mut Conn,
        table: &str,
        sql: &[u8],
    ) -> Result<(), String> {
        // Not `run`: the statement holds the tenant's data, which no error message repeats.
        match tokio::time::timeout(STATEMENT_LIMIT, target.query_drop(sql)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                return Err(format!(
                    "loading {}.{table} into the target: {e}",
                    cx.database
                ));
            }
            Err(_) => {
                kill_connection(target).await;
                return Err(format!(
                    "loading {}.{table} into the target: no answer within {} s",
                    cx.database,
                    STATEMENT_LIMIT.as_secs()
                ));
            }
        }
        self.sent += sql.len() as u64;
        if self.sent - self.synced >= REPLICA_STEP {
            self.synced = self.sent;
            let asked = Instant::now();
            let read_only: Option<i64> = first(target, "SELECT @@read_only").await?;
            // The round trip the target's other tenants see now, the copy's included.
            self.pace.observe(asked.elapsed());
            self.slowest = self.slowest.min(self.pace.rate());
            self.fastest = self.fastest.max(self.pace.rate());
            if read_only != Some(0) {
                return Err(format!(
                    "the target's primary {}:{} turned read-only during the copy",
                    cx.target_primary.host, cx.target_primary.port
                ));
            }
            self.replicas.wait(cx).await;
        }
        if self.sent - self.paced >= PACE_STEP {
            let wait = self
                .pace
                .delay(self.sent - self.paced, self.began.elapsed());
            self.paced = self.sent;
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
        }
        Ok(())
    }
}

/// Keeps the target's replicas close while the copy loads: every [`REPLICA_STEP`] bytes the
/// copy waits until they have applied what the target's primary has committed. Their lag is
/// then what applying one step takes, whatever pace the primary could take; a replica that
/// cannot be reached or waited for does not stop the copy.
struct ReplicaPace {
    primary: Option<Conn>,
    replicas: Vec<Conn>,
    waited: Duration,
}

impl ReplicaPace {
    async fn connect(cx: &MoveContext) -> Self {
        let mut replicas = Vec::new();
        for r in &cx.target_replicas {
            match r.conn().await {
                Ok(c) => replicas.push(c),
                Err(e) => {
                    tracing::warn!(tenant = %cx.tenant, error = %e, "a target replica is not waited for during the copy")
                }
            }
        }
        let primary = if replicas.is_empty() {
            None
        } else {
            cx.target_primary.primary_conn().await.ok()
        };
        Self {
            primary,
            replicas,
            waited: Duration::ZERO,
        }
    }

    async fn wait(&mut self, cx: &MoveContext) {
        let Some(primary) = self.primary.as_mut() else {
            return;
        };
        let Ok(Some(head)) = first::<String>(primary, "SELECT @@gtid_binlog_pos").await else {
            return;
        };
        let started = Instant::now();
        let sql = format!(
            "SELECT MASTER_GTID_WAIT('{}', {})",
            sql_quote(&head),
            REPLICA_WAIT.as_secs_f64()
        );
        for replica in &mut self.replicas {
            if first::<i64>(replica, &sql).await.ok().flatten() != Some(0) {
                tracing::warn!(tenant = %cx.tenant, %head, "a target replica did not catch up with the copy in time; going on");
            }
        }
        self.waited += started.elapsed();
    }
}

/// Starts (or, after a restart, restarts) the channel filtered to the tenant's database on
/// the target's primary, reading the snapshot server's binary log from the snapshot's
/// coordinates.
///
/// By file and offset, not by GTID: a GTID connection sends the target's whole position, and
/// MariaDB 10.11 checks every domain of it against the source's binary log, `DO_DOMAIN_IDS`
/// notwithstanding (MDEV-28213). Once a tenant has moved from A to B, B's binary log holds A's
/// domain, and a later move from B back to A fails with 1236 "not in the master's binlog".
/// The channel's applier still records every GTID in `gtid_slave_pos`, which the waits use.
pub async fn start_channel(cx: &MoveContext, binlog: &(String, u64)) -> Result<(), String> {
    let channel = plan::channel_name(&cx.tenant);
    let mut target = cx.target_primary.primary_conn().await?;
    let exists = channel_exists(&mut target, &channel).await?;
    use_channel(&mut target, &channel).await?;
    if exists {
        run(&mut target, "STOP SLAVE").await?;
    } else {
        let (user, password) = &cx.replication;
        let (file, offset) = binlog;
        run(
            &mut target,
            &format!(
                "CHANGE MASTER TO MASTER_HOST='{}', MASTER_PORT={}, MASTER_USER='{}', \
                 MASTER_PASSWORD='{}', MASTER_USE_GTID=no, MASTER_LOG_FILE='{}', \
                 MASTER_LOG_POS={offset}, MASTER_CONNECT_RETRY=1",
                sql_quote(&cx.snapshot_from.host),
                cx.snapshot_from.port,
                sql_quote(user),
                sql_quote(password),
                sql_quote(file),
            ),
        )
        .await?;
    }
    // The filter is kept in the option file (a restart reads it before the channel starts)
    // and set in the running server before every start.
    if let Some(file) = &cx.filter_file {
        write_filter(file, &channel, &cx.database)?;
    }
    run(
        &mut target,
        &format!("SET GLOBAL replicate_do_db = '{}'", sql_quote(&cx.database)),
    )
    .await?;
    run(&mut target, "START SLAVE").await
}

/// Makes `channel` the one this connection's replication statements name.
pub(super) async fn use_channel(conn: &mut Conn, channel: &str) -> Result<(), String> {
    run(
        conn,
        &format!("SET @@default_master_connection = '{}'", sql_quote(channel)),
    )
    .await
}

/// Stops and forgets `channel` on the target's primary, if it exists.
async fn remove_channel(target: &mut Conn, channel: &str) -> Result<(), String> {
    if channel_exists(target, channel).await? {
        run(target, &format!("STOP SLAVE '{}'", sql_quote(channel))).await?;
        run(target, &format!("RESET SLAVE '{}' ALL", sql_quote(channel))).await?;
    }
    Ok(())
}

async fn channel_exists(conn: &mut Conn, channel: &str) -> Result<bool, String> {
    let rows: Vec<Row> = conn
        .query("SHOW ALL SLAVES STATUS")
        .await
        .map_err(|e| format!("SHOW ALL SLAVES STATUS: {e}"))?;
    Ok(rows
        .iter()
        .any(|r| r.get::<String, _>("Connection_name").as_deref() == Some(channel)))
}

/// The `SHOW ALL SLAVES STATUS` row of the move's channel.
async fn channel_status(target: &mut Conn, channel: &str) -> Result<Row, String> {
    let rows: Vec<Row> = target
        .query("SHOW ALL SLAVES STATUS")
        .await
        .map_err(|e| format!("SHOW ALL SLAVES STATUS: {e}"))?;
    rows.into_iter()
        .find(|r| r.get::<String, _>("Connection_name").as_deref() == Some(channel))
        .ok_or_else(|| format!("the move's channel {channel} is gone from the target"))
}

/// Makes sure the channel's applier runs only filtered, before anything starts it: a
/// restarted server forgets a filter kept in memory only (in Kubernetes there is no option
/// file for it), so with the applier stopped the filter is set again; an applier found
/// running without it (started by hand, or by a server without `skip_slave_start`) is
/// stopped at once, and that is an error.
pub(super) async fn ensure_filter(
    cx: &MoveContext,
    target: &mut Conn,
    channel: &str,
) -> Result<(), String> {
    let row = channel_status(target, channel).await?;
    let text = |name: &str| {
        row.get::<Option<String>, _>(name)
            .flatten()
            .unwrap_or_default()
    };
    if text("Replicate_Do_DB") == cx.database {
        return Ok(());
    }
    if text("Slave_SQL_Running") == "Yes" {
        let _ = run(target, &format!("STOP SLAVE '{}'", sql_quote(channel))).await;
        return Err(format!(
            "the move's channel runs without its filter (Replicate_Do_DB='{}')",
            text("Replicate_Do_DB")
        ));
    }
    use_channel(target, channel).await?;
    run(
        target,
        &format!("SET GLOBAL replicate_do_db = '{}'", sql_quote(&cx.database)),
    )
    .await
}

/// The channel is running, filtered to the tenant's database, without errors.
pub async fn check_channel(cx: &MoveContext) -> Result<(), String> {
    let channel = plan::channel_name(&cx.tenant);
    let mut target = cx.target_primary.primary_conn().await?;
    ensure_filter(cx, &mut target, &channel).await?;
    let row = channel_status(&mut target, &channel).await?;
    let text = |name: &str| {
        row.get::<Option<String>, _>(name)
            .flatten()
            .unwrap_or_default()
    };
    for (flag, error) in [
        ("Slave_IO_Running", "Last_IO_Error"),
        ("Slave_SQL_Running", "Last_SQL_Error"),
    ] {
        if text(flag) != "Yes" && !text(error).is_empty() {
            return Err(format!("the move's channel stopped: {}", text(error)));
        }
    }
    // Servers start with replication stopped (their orchestrator starts what should run): a
    // target primary that restarted during the move gets its channel back here, with its
    // filter (from its option file, or set above).
    if text("Slave_IO_Running") == "No" || text("Slave_SQL_Running") == "No" {
        tracing::info!(tenant = %cx.tenant, "starting the move's stopped channel");
        use_channel(&mut target, &channel).await?;
        run(&mut target, "START SLAVE").await?;
    }
    Ok(())
}

/// How long the target takes to apply what the source's primary has written by now.
pub async fn lag(cx: &MoveContext, limit: Duration) -> Result<Option<Duration>, String> {
    let mut source = cx.source_primary.primary_conn().await?;
    let head: String = first(&mut source, "SELECT @@gtid_binlog_pos")
        .await?
        .unwrap_or_default();
    let Some(g) = position(&head)?.get(cx.source_domain).copied() else {
        return Ok(Some(Duration::ZERO));
    };
    wait_for(cx, &g.to_string(), limit).await
}

/// Waits until the target's primary has passed `gtid` (filtered transactions count), at most
/// `limit`; `None` when it did not.
pub async fn wait_for(
    cx: &MoveContext,
    gtid: &str,
    limit: Duration,
) -> Result<Option<Duration>, String> {
    let mut target = cx.target_primary.primary_conn().await?;
    let started = Instant::now();
    let secs = limit.as_secs_f64().max(0.001);
    let waited: Option<i64> = first(
        &mut target,
        &format!("SELECT MASTER_GTID_WAIT('{}', {secs:.3})", sql_quote(gtid)),
    )
    .await?;
    Ok((waited == Some(0)).then(|| started.elapsed()))
}

/// Moves the tenant in the directory to `state` on `cluster`, from one of the states `from`
/// lists on cluster `on` (compare-and-swap on the route read). Done already when the
/// directory shows the result; any other route is an error, and nothing changes.
pub async fn transition(
    cx: &MoveContext,
    (on, from): (&str, &[TenantState]),
    cluster: &str,
    state: TenantState,
) -> Result<Route, String> {
    let current = current_route(cx).await?;
    if current.cluster == cluster && current.state == state {
        return Ok(current);
    }
    if current.cluster != on || !from.contains(&current.state) {
        return Err(format!(
            "tenant {} is {} on {} in the directory, not what the move left there",
            cx.tenant, current.state, current.cluster
        ));
    }
    cx.directory
        .transition(&cx.tenant, &current, cluster, state)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| {
            format!(
                "tenant {}'s directory entry changed under the move",
                cx.tenant
            )
        })
}

/// The tenant's route as the directory holds it now.
pub async fn current_route(cx: &MoveContext) -> Result<Route, String> {
    cx.directory
        .lookup(&cx.tenant)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("tenant {} left the directory during its move", cx.tenant))
}

/// The fence: every table of the tenant on the source's primary renamed into the fenced
/// database at once, with no default database so the channel filters it. Returns the
/// rename's GTID. A repeat after a restart finds the tables moved and returns `None`.
pub async fn fence(cx: &MoveContext) -> Result<Option<String>, String> {
    let mut source = cx.source_primary.primary_conn().await?;
    let tables = tables(&mut source, &cx.database).await?;
    if tables.is_empty() {
        return Ok(None);
    }
    let fenced = plan::fenced_database(&cx.tenant);
    run(
        &mut source,
        &format!("CREATE DATABASE IF NOT EXISTS {}", plan::ident(&fenced)),
    )
    .await?;
    run(
        &mut source,
        &plan::rename_sql(&cx.database, &fenced, &tables, Some(cx.limits.fence_wait)),
    )
    .await?;
    first::<String>(&mut source, "SELECT @@last_gtid").await
}

/// The source's current GTID of its domain: where the target must be once the fence is in.
pub async fn source_head(cx: &MoveContext) -> Result<Option<String>, String> {
    let mut source = cx.source_primary.primary_conn().await?;
    let head: String = first(&mut source, "SELECT @@gtid_binlog_pos")
        .await?
        .unwrap_or_default();
    Ok(position(&head)?
        .get(cx.source_domain)
        .map(ToString::to_string))
}

/// Writes `<channel>.replicate_do_db=<database>` to `file`, atomically. A server reads it
/// fine while no channel of that name exists.
fn write_filter(file: &std::path::Path, channel: &str, database: &str) -> Result<(), String> {
    let text = format!(
        "# The filter of tenant move channel {channel}; removed when the move ends.\n\
         [mariadbd]\n{channel}.replicate_do_db={database}\n"
    );
    let tmp = file.with_extension("tmp");
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, file))
        .map_err(|e| format!("{}: {e}", file.display()))
}

/// Removes the move's channel from the target's primary and leaves its `gtid_slave_pos`
/// equal to its binary log, so that a later switchover can make it a replica (the filtered
/// fence would otherwise stay in it, a GTID its new primary never had).
pub async fn drop_channel(cx: &MoveContext) -> Result<(), String> {
    let channel = plan::channel_name(&cx.tenant);
    let mut target = cx.target_primary.primary_conn().await?;
    remove_channel(&mut target, &channel).await?;
    run(&mut target, "STOP ALL SLAVES").await?;
    run(&mut target, "SET GLOBAL gtid_slave_pos = @@gtid_binlog_pos").await?;
    if let Some(file) = &cx.filter_file {
        match std::fs::remove_file(file) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("{}: {e}", file.display())),
        }
    }
    Ok(())
}

/// After the flip: the source's fenced copy and its emptied database go.
pub async fn clean_source(cx: &MoveContext) -> Result<(), String> {
    let mut source = cx.source_primary.primary_conn().await?;
    run(
        &mut source,
        &format!(
            "DROP DATABASE IF EXISTS {}",
            plan::ident(&plan::fenced_database(&cx.tenant))
        ),
    )
    .await?;
    run(
        &mut source,
        &format!("DROP DATABASE IF EXISTS {}", plan::ident(&cx.database)),
    )
    .await
}

/// Before the flip, first half of a roll-back: the source's tables back where they were.
pub async fn restore_source(cx: &MoveContext) -> Result<(), String> {
    let fenced = plan::fenced_database(&cx.tenant);
    let mut source = cx.source_primary.primary_conn().await?;
    let moved = tables(&mut source, &fenced).await?;
    if !moved.is_empty() {
        run(
            &mut source,
            &plan::rename_sql(&fenced, &cx.database, &moved, None),
        )
        .await?;
    }
    run(
        &mut source,
        &format!("DROP DATABASE IF EXISTS {}", plan::ident(&fenced)),
    )
    .await
}

/// Second half of a roll-back, once the tenant is served by the source again: the move's
/// channel and the target's copy gone.
pub async fn clean_target(cx: &MoveContext) -> Result<(), String> {
    drop_channel(cx).await?;
    let mut target = cx.target_primary.primary_conn().await?;
    run(
        &mut target,
        &format!("DROP DATABASE IF EXISTS {}", plan::ident(&cx.database)),
    )
    .await
}
