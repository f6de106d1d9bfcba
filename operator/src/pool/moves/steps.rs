//! The SQL and processes of a tenant move, one function a step; [`super::run`] decides which
//! runs when. Every step may be repeated after a restart.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use lagless_core::gtid::MariadbPosition;
use lagless_directory::{Directory, Route, TenantId, TenantState};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, Row};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::Command;

use super::pace::Pace;
use super::plan::{self, MoveLimits};
use crate::orchestrate::act::sql_quote;

/// How many bytes of the snapshot go to the target between two checks of its pace.
const PACE_STEP: u64 = 64 << 10;
/// How many bytes of the snapshot go to the target between two waits for its replicas.
const REPLICA_STEP: u64 = 128 << 10;
/// The longest one wait for the target's replicas; past it the copy goes on (and says so).
const REPLICA_WAIT: Duration = Duration::from_secs(2);
/// Round trips to the target's primary measured before the copy, for the pace to follow.
const BASELINE_SAMPLES: usize = 9;

/// A server the mover reaches, with the account it uses there.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
}

impl Endpoint {
    fn opts(&self) -> Opts {
        mysql_async::OptsBuilder::default()
            .ip_or_hostname(self.host.clone())
            .tcp_port(self.port)
            .user(Some(self.user.clone()))
            .pass(Some(self.password.clone()))
            .prefer_socket(false)
            .into()
    }

    pub async fn conn(&self) -> Result<Conn, String> {
        tokio::time::timeout(Duration::from_secs(10), Conn::new(self.opts()))
            .await
            .map_err(|_| format!("{}:{}: no connection within 10 s", self.host, self.port))?
            .map_err(|e| format!("{}:{}: {e}", self.host, self.port))
    }

    /// A connection to a server that must still be its cluster's primary. One that a failover
    /// made a read-only replica would take the move's statements (the administrator passes
    /// `read_only`) as errant transactions, and give an old head.
    pub async fn primary_conn(&self) -> Result<Conn, String> {
        let mut conn = self.conn().await?;
        let state: Option<(i64, i64, Option<i64>)> = conn
            .query_first(
                "SELECT @@read_only, @@rpl_semi_sync_master_enabled, \
                 (SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS \
                  WHERE VARIABLE_NAME = 'RPL_SEMI_SYNC_MASTER_CLIENTS')",
            )
            .await
            .map_err(|e| format!("{}:{}: {e}", self.host, self.port))?;
        let refusal = match state {
            // With lossless semi-sync and no replica connected, every write would wait for an
            // acknowledgement that cannot come: refused now rather than left waiting.
            Some((0, 1, Some(0))) => {
                Some("acknowledges no write: semi-sync is on and no replica is connected")
            }
            Some((0, _, _)) => None,
            _ => Some(
                "is read-only: not a writable primary (a failover or switchover, or the \
                 cluster set read-only)",
            ),
        };
        if let Some(why) = refusal {
            let _ = conn.disconnect().await;
            return Err(format!("{}:{} {why}", self.host, self.port));
        }
        Ok(conn)
    }
}

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

/// How long one of the move's own statements (DDL, channel commands) may take. A cluster that
/// can acknowledge no write (its only replica lost, semi-sync waiting) would hold the move
/// forever; bounded, the step fails, the record says why, and the move goes on when run again.
const STATEMENT_LIMIT: Duration = Duration::from_secs(30);

pub(super) async fn run(conn: &mut Conn, sql: &str) -> Result<(), String> {
    let shown = crate::orchestrate::redact::redact(sql);
    match tokio::time::timeout(STATEMENT_LIMIT, conn.query_drop(sql)).await {
        Ok(done) => done.map_err(|e| format!("{shown}: {e}")),
        Err(_) => {
            // Given up here, the statement would still wait there, holding its locks (a
            // re-seed's backup of that server waits for it): it is ended.
            kill_connection(conn).await;
            Err(format!(
                "{shown}: no answer within {} s (can the cluster acknowledge writes?)",
                STATEMENT_LIMIT.as_secs()
            ))
        }
    }
}

/// Ends `conn`'s session on its server, from a connection of its own; best effort.
async fn kill_connection(conn: &Conn) {
    let id = conn.id();
    let kill = async {
        let mut other = Conn::new(conn.opts().clone()).await?;
        other.query_drop(format!("KILL CONNECTION {id}")).await?;
        other.disconnect().await
    };
    match tokio::time::timeout(Duration::from_secs(5), kill).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(id, error = %e, "cannot end a stuck statement's session"),
        Err(_) => tracing::warn!(id, "cannot end a stuck statement's session in 5 s"),
    }
}

pub(super) async fn first<T: mysql_async::prelude::FromValue>(
    conn: &mut Conn,
    sql: &str,
) -> Result<Option<T>, String> {
    let row: Option<Row> = conn
        .query_first(sql)
        .await
        .map_err(|e| format!("{sql}: {e}"))?;
    Ok(row.and_then(|r| r.get::<Option<T>, _>(0)).flatten())
}

fn position(text: &str) -> Result<MariadbPosition, String> {
    MariadbPosition::parse(text).map_err(|e| format!("GTID position '{text}': {e}"))
}

/// The tenant's tables on `conn`'s server, refusing what a move cannot carry.
pub async fn tables(conn: &mut Conn, db: &str) -> Result<Vec<String>, String> {
    let q = sql_quote(db);
    let rows: Vec<(String, String)> = conn
        .query(format!(
            "SELECT TABLE_NAME, TABLE_TYPE FROM information_schema.TABLES \
             WHERE TABLE_SCHEMA = '{q}' ORDER BY TABLE_NAME"
        ))
        .await
        .map_err(|e| format!("listing the tables of {db}: {e}"))?;
    if let Some((view, _)) = rows.iter().find(|(_, kind)| kind != "BASE TABLE") {
        return Err(format!(
            "{db}.{view} is a view: a move renames tables across databases, which views prevent"
        ));
    }
    let triggers: Option<u64> = first(
        conn,
        &format!("SELECT COUNT(*) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = '{q}'"),
    )
    .await?;
    if triggers.unwrap_or(0) > 0 {
        return Err(format!(
            "{db} has triggers: a move renames tables across databases, which triggers prevent"
        ));
    }
    // The copy carries tables only, and the source's database is dropped once moved.
    let routines: Option<u64> = first(
        conn,
        &format!(
            "SELECT (SELECT COUNT(*) FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = '{q}') \
             + (SELECT COUNT(*) FROM information_schema.EVENTS WHERE EVENT_SCHEMA = '{q}')"
        ),
    )
    .await?;
    if routines.unwrap_or(0) > 0 {
        return Err(format!(
            "{db} has stored routines or events, which a move does not carry"
        ));
    }
    Ok(rows.into_iter().map(|(name, _)| name).collect())
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

/// Where a snapshot was taken: the source's GTID position, and the snapshot server's own
/// binary-log coordinates, where the channel starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub gtid: String,
    pub binlog: (String, u64),
}

/// The snapshot: `mariadb-dump` of the tenant's database from `snapshot_from`, consistent and
/// with its positions, streamed into the target's primary (dropping a leftover copy of an
/// earlier attempt first).
pub async fn copy(cx: &MoveContext) -> Result<Snapshot, String> {
    let mut target = cx.target_primary.primary_conn().await?;
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
    let mut dump = Command::new("mariadb-dump")
        .args(["--single-transaction", "--gtid", "--master-data=2"])
        .args(["--skip-triggers", "--no-tablespaces", "--protocol=TCP"])
        // Statements of at most 32 KiB: the target applies the copy in short steps, and the
        // pace below spreads them, instead of holding a core for each megabyte.
        .arg("--net-buffer-length=32768")
        .arg(format!("--host={}", from.host))
        .arg(format!("--port={}", from.port))
        .arg(format!("--user={}", from.user))
        .args(["--databases", &cx.database])
        .env("MYSQL_PWD", &from.password)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run mariadb-dump: {e}"))?;
    let to = &cx.target_primary;
    let mut load = Command::new("mariadb")
        .args(["--protocol=TCP", "--batch"])
        .arg(format!("--host={}", to.host))
        .arg(format!("--port={}", to.port))
        .arg(format!("--user={}", to.user))
        .env("MYSQL_PWD", &to.password)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run mariadb: {e}"))?;
    let (Some(out), Some(mut into)) = (dump.stdout.take(), load.stdin.take()) else {
        return Err("the dump's pipes were not opened".into());
    };
    let mut lines = BufReader::new(out).lines();
    // The loader writes as the administrator, whom `read_only` does not stop: a target
    // primary demoted during the copy (a switchover leaves it running) is noticed here.
    let mut guard = cx.target_primary.primary_conn().await?;
    let (mut gtid, mut binlog) = (None, None);
    let (began, mut sent, mut paced, mut synced) = (Instant::now(), 0u64, 0u64, 0u64);
    let mut replicas = ReplicaPace::connect(cx).await;
    let mut pace = Pace::new(cx.limits.copy_rate, cx.limits.latency_allowance);
    if pace.follows() {
        let mut samples = Vec::with_capacity(BASELINE_SAMPLES);
        for _ in 0..BASELINE_SAMPLES {
            let asked = Instant::now();
            first::<i64>(&mut guard, "SELECT @@read_only").await?;
            samples.push(asked.elapsed());
        }
        pace.set_baseline(&mut samples);
    }
    let (mut slowest, mut fastest) = (pace.rate(), pace.rate());
    while let Some(line) = lines
        .next_line()
        .await
        .map_err(|e| format!("reading the dump: {e}"))?
    {
        if line.starts_with("--") {
            if gtid.is_none() {
                gtid = plan::dump_position(&line).map(str::to_string);
            }
            if binlog.is_none() {
                binlog = plan::dump_coordinates(&line);
            }
        }
        into.write_all(line.as_bytes())
            .await
            .and(into.write_all(b"\n").await)
            .map_err(|e| format!("loading the dump into the target: {e}"))?;
        sent += line.len() as u64 + 1;
        if sent - synced >= REPLICA_STEP {
            synced = sent;
            let asked = Instant::now();
            let read_only: Option<i64> = first(&mut guard, "SELECT @@read_only").await?;
            // The round trip the target's other tenants see now, the copy's included.
            pace.observe(asked.elapsed());
            slowest = slowest.min(pace.rate());
            fastest = fastest.max(pace.rate());
            if read_only != Some(0) {
                return Err(format!(
                    "the target's primary {}:{} turned read-only during the copy",
                    cx.target_primary.host, cx.target_primary.port
                ));
            }
            replicas.wait(cx).await;
        }
        if sent - paced >= PACE_STEP {
            let wait = pace.delay(sent - paced, began.elapsed());
            paced = sent;
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
        }
    }
    drop(into);
    tracing::info!(
        tenant = %cx.tenant,
        bytes = sent,
        ms = began.elapsed().as_millis() as u64,
        replicas_waited_ms = replicas.waited.as_millis() as u64,
        slowest_rate = slowest,
        fastest_rate = fastest,
        "snapshot loaded into the target"
    );
    let dumped = dump
        .wait_with_output()
        .await
        .map_err(|e| format!("mariadb-dump: {e}"))?;
    let loaded = load
        .wait_with_output()
        .await
        .map_err(|e| format!("mariadb: {e}"))?;
    if !dumped.status.success() {
        return Err(format!(
            "mariadb-dump failed: {}",
            String::from_utf8_lossy(&dumped.stderr).trim()
        ));
    }
    if !loaded.status.success() {
        return Err(format!(
            "loading the snapshot into the target failed: {}",
            String::from_utf8_lossy(&loaded.stderr).trim()
        ));
    }
    match (gtid, binlog) {
        (Some(gtid), Some(binlog)) => Ok(Snapshot { gtid, binlog }),
        _ => Err("the dump carried no position (is the snapshot server's binary log on?)".into()),
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

async fn channel_exists(conn: &mut Conn, channel: &str) -> Result<bool, String> {
    let rows: Vec<Row> = conn
        .query("SHOW ALL SLAVES STATUS")
        .await
        .map_err(|e| format!("SHOW ALL SLAVES STATUS: {e}"))?;
    Ok(rows
        .iter()
        .any(|r| r.get::<String, _>("Connection_name").as_deref() == Some(channel)))
}

/// The channel is running, filtered to the tenant's database, without errors.
pub async fn check_channel(cx: &MoveContext) -> Result<(), String> {
    let channel = plan::channel_name(&cx.tenant);
    let mut target = cx.target_primary.primary_conn().await?;
    let rows: Vec<Row> = target
        .query("SHOW ALL SLAVES STATUS")
        .await
        .map_err(|e| format!("SHOW ALL SLAVES STATUS: {e}"))?;
    let Some(row) = rows
        .iter()
        .find(|r| r.get::<String, _>("Connection_name").as_deref() == Some(channel.as_str()))
    else {
        return Err(format!(
            "the move's channel {channel} is gone from the target"
        ));
    };
    let text = |name: &str| {
        row.get::<Option<String>, _>(name)
            .flatten()
            .unwrap_or_default()
    };
    if text("Replicate_Do_DB") != cx.database {
        // A server restart brings the channel back without its filter: stop it at once.
        let _ = run(
            &mut target,
            &format!("STOP SLAVE '{}'", sql_quote(&channel)),
        )
        .await;
        return Err(format!(
            "the move's channel runs without its filter (Replicate_Do_DB='{}')",
            text("Replicate_Do_DB")
        ));
    }
    for (flag, error) in [
        ("Slave_IO_Running", "Last_IO_Error"),
        ("Slave_SQL_Running", "Last_SQL_Error"),
    ] {
        if text(flag) != "Yes" && !text(error).is_empty() {
            return Err(format!("the move's channel stopped: {}", text(error)));
        }
    }
    // Servers start with replication stopped (their orchestrator starts what should run): a
    // target primary that restarted during the move gets its channel back here, filtered by
    // its option file (checked above).
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
    if channel_exists(&mut target, &channel).await? {
        run(
            &mut target,
            &format!("STOP SLAVE '{}'", sql_quote(&channel)),
        )
        .await?;
        run(
            &mut target,
            &format!("RESET SLAVE '{}' ALL", sql_quote(&channel)),
        )
        .await?;
    }
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
