//! Carrying out a plan's actions with SQL, and publishing topologies.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use lagless_core::gtid::GtidSet;
use lagless_core::topology::{Flavor, Topology};
use mysql_async::Conn;
use mysql_async::prelude::Queryable;

use super::fence;
use super::observe::{Credentials, opts};
use super::plan::Action;
use super::redact::redact;
use super::view::{ClusterSpec, ClusterView, MemberSpec, ServerTls};

/// Why an action failed; the tick stops there and the next tick plans again.
#[derive(Debug, thiserror::Error)]
pub enum ActError {
    // A server's error may quote the statement, and a statement may hold a password: the
    // message is redacted when the error is made (see [`ActError::sql`]), Debug included.
    #[error("{member}: {message}")]
    Sql { member: String, message: String },
    #[error("{member}: {what} did not finish within {secs} s")]
    Timeout {
        member: String,
        what: String,
        secs: u64,
    },
    #[error("{member}: unreadable GTID position: {reason}")]
    Position { member: String, reason: String },
    #[error("{0} is not in the spec")]
    UnknownMember(String),
    #[error("publishing the topology: {0}")]
    Publish(String),
    #[error("seeding {member} from {donor}: {reason}")]
    Seed {
        member: String,
        donor: String,
        reason: String,
    },
}

impl ActError {
    /// A server's refusal of a statement on `member`, its text redacted.
    pub fn sql(member: &str, source: &mysql_async::Error) -> Self {
        ActError::Sql {
            member: member.to_string(),
            message: redact(&source.to_string()),
        }
    }
}

/// Where topologies go: a file in local mode, a ConfigMap in Kubernetes. Its answer decides
/// whether the orchestrator counts a topology as published, so it is awaited in place.
pub trait TopologySink: Send + Sync {
    fn publish<'a>(&'a self, topology: &'a Topology) -> BoxFuture<'a, Result<(), String>>;

    /// The document as stored now, read back so that one deleted or damaged behind the
    /// orchestrator's back is published again.
    fn stored(&self) -> BoxFuture<'_, Stored> {
        Box::pin(async { Stored::Unknown })
    }
}

/// What a [`TopologySink`] holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    /// It could not be read back (the store did not answer): nothing to conclude.
    Unknown,
    Missing,
    Unreadable(String),
    Found(Topology),
}

/// Writes the topology file the proxies watch, atomically.
#[derive(Debug, Clone)]
pub struct FileSink(pub PathBuf);

impl FileSink {
    /// Where the highest epoch ever published is kept, beside the document: deleting or
    /// damaging the document does not lose it.
    fn epoch_file(&self) -> PathBuf {
        let mut name = self.0.clone().into_os_string();
        name.push(".max-epoch");
        PathBuf::from(name)
    }

    /// The highest epoch this sink ever published (0 when none is recorded).
    pub fn recorded_epoch(&self) -> u64 {
        std::fs::read_to_string(self.epoch_file())
            .ok()
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(0)
    }
}

impl FileSink {
    /// Records the highest epoch, then replaces the document atomically.
    pub fn write(&self, topology: &Topology) -> Result<(), String> {
        let highest = self.recorded_epoch().max(topology.epoch);
        let record = self.epoch_file();
        let tmp = record.with_extension("tmp");
        std::fs::write(&tmp, format!("{highest}\n"))
            .and_then(|()| std::fs::rename(&tmp, &record))
            .map_err(|e| format!("{}: {e}", record.display()))?;
        topology
            .write_atomically(&self.0)
            .map_err(|e| e.to_string())
    }

    /// The document as it is on disk.
    pub fn read(&self) -> Stored {
        match std::fs::read(&self.0) {
            Ok(bytes) => match Topology::parse(&bytes) {
                Ok(topology) => Stored::Found(topology),
                Err(e) => Stored::Unreadable(e.to_string()),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Stored::Missing,
            Err(_) => Stored::Unknown,
        }
    }
}

/// A small file on a local disk: written and read in place.
impl TopologySink for FileSink {
    fn publish<'a>(&'a self, topology: &'a Topology) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move { self.write(topology) })
    }

    fn stored(&self) -> BoxFuture<'_, Stored> {
        Box::pin(async move { self.read() })
    }
}

/// The platform's half of seeding: stop `member`, replace its data with a copy of `donor`'s
/// (see [`super::seed::seed`]), start it again (read-only, no replication configured), and say
/// at which GTID position the copy was taken.
pub trait Seeder: Send + Sync {
    fn seed<'a>(
        &'a self,
        member: &'a MemberSpec,
        donor: &'a MemberSpec,
    ) -> futures::future::BoxFuture<'a, Result<SeedOutcome, String>>;
}

/// What a [`Seeder`] did.
#[derive(Debug, Clone)]
pub struct SeedOutcome {
    /// The donor's GTID position at the copy's consistent point: replication starts here.
    pub gtid_position: String,
    pub bytes: u64,
    pub elapsed: Duration,
}

impl SeedOutcome {
    pub fn mb_per_s(&self) -> f64 {
        self.bytes as f64 / 1_048_576.0 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// What a proxy's account is for, and so what it may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyRole {
    /// Reads accounts (to verify logins): the account table, nothing else.
    Lookup,
    /// Reads positions and replication status, nothing else.
    Monitor,
}

/// An account a proxy uses.
#[derive(Debug, Clone)]
pub struct ProxyAccount {
    pub role: ProxyRole,
    pub creds: Credentials,
}

impl ProxyAccount {
    /// The least a proxy needs for its role.
    pub fn grant(&self, flavor: Flavor) -> &'static str {
        match (self.role, flavor) {
            (ProxyRole::Lookup, Flavor::Mariadb) => "SELECT ON mysql.global_priv",
            (ProxyRole::Lookup, Flavor::Mysql) => "SELECT ON mysql.user",
            (ProxyRole::Monitor, Flavor::Mariadb) => "BINLOG MONITOR, SLAVE MONITOR ON *.*",
            (ProxyRole::Monitor, Flavor::Mysql) => "REPLICATION CLIENT ON *.*",
        }
    }

    /// Creates the account if missing and grants what its role needs.
    pub fn statements(&self, flavor: Flavor) -> [String; 2] {
        let user = sql_quote(&self.creds.user);
        [
            format!(
                "CREATE USER IF NOT EXISTS '{user}'@'%' IDENTIFIED BY '{}'",
                sql_quote(&self.creds.password)
            ),
            format!("GRANT {} TO '{user}'@'%'", self.grant(flavor)),
        ]
    }
}

/// How often a replica hears from an idle source (MariaDB `MASTER_HEARTBEAT_PERIOD`, seconds).
pub const HEARTBEAT_PERIOD: &str = "0.25";
/// `slave_net_timeout` of every member, seconds: a replica that hears nothing for this long,
/// not even a heartbeat, reconnects and so reports its source lost. Failure detection waits
/// for that (the holistic check), so this bounds how soon a hung primary is replaced. Four
/// heartbeats must go missing first, and a replica that reconnects needlessly only resumes
/// from its GTID position: a failover also needs the primary to fail three probes in a row.
pub const NET_TIMEOUT_SECS: u32 = 1;

/// How long a failover waits for a replica's `STOP SLAVE IO_THREAD`: an IO thread stuck on
/// a hung source holds it up to `slave_net_timeout`, and the server completes it regardless.
const REPLICA_STOP_WAIT: Duration = Duration::from_millis(500);

/// How long a freshly seeded server may take to accept connections.
const SEEDED_START_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs actions against the members.
pub struct Actor {
    pub admin: Credentials,
    pub replication: Credentials,
    /// Application accounts bootstrap creates on the primary (they replicate to the rest).
    pub app_users: Vec<Credentials>,
    /// The proxies' accounts, created with the others and put back when missing.
    pub proxy_accounts: Vec<ProxyAccount>,
    pub statement_timeout: Duration,
    /// How long a candidate may take to apply its relay log or catch up.
    pub catch_up_timeout: Duration,
    /// Copies data into members; without one, [`Action::Seed`] fails.
    pub seeder: Option<Arc<dyn Seeder>>,
    /// Fences still trying in the background, by member: stopped once that member is made
    /// a replica or a primary again, so a late success cannot fence it in its new role.
    pub fences: fence::Fences,
}

impl std::fmt::Debug for Actor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Actor")
            .field("admin", &self.admin)
            .field("replication", &self.replication)
            .field("app_users", &self.app_users)
            .field("proxy_accounts", &self.proxy_accounts)
            .field("statement_timeout", &self.statement_timeout)
            .field("catch_up_timeout", &self.catch_up_timeout)
            .field("seeder", &self.seeder.is_some())
            .finish()
    }
}

impl Actor {
    /// Awaits `fut` on `member` within the statement timeout, naming what timed out.
    async fn bounded<T>(
        &self,
        member: &str,
        what: &str,
        fut: impl std::future::Future<Output = Result<T, mysql_async::Error>>,
    ) -> Result<T, ActError> {
        tokio::time::timeout(self.statement_timeout, fut)
            .await
            .map_err(|_| ActError::Timeout {
                member: member.to_string(),
                what: redact(what),
                secs: self.statement_timeout.as_secs(),
            })?
            .map_err(|source| ActError::sql(member, &source))
    }

    async fn conn(&self, spec: &ClusterSpec, member: &str) -> Result<Conn, ActError> {
        let m = spec
            .member(member)
            .ok_or_else(|| ActError::UnknownMember(member.to_string()))?;
        self.bounded(
            member,
            "connecting",
            Conn::new(opts(&m.host, m.port, &self.admin, spec.tls.as_ref())),
        )
        .await
    }

    /// Connects, retrying connection failures until `patience` has passed: for a server that
    /// was just started.
    async fn conn_patiently(
        &self,
        spec: &ClusterSpec,
        member: &str,
        patience: Duration,
    ) -> Result<Conn, ActError> {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            match self.conn(spec, member).await {
                Err(e @ (ActError::Sql { .. } | ActError::Timeout { .. }))
                    if tokio::time::Instant::now() < deadline =>
                {
                    tracing::debug!(member, error = %e, "not accepting connections yet");
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                other => return other,
            }
        }
    }

    /// Runs statements on one member, each bounded by the statement timeout.
    async fn exec(
        &self,
        spec: &ClusterSpec,
        member: &str,
        statements: &[String],
    ) -> Result<(), ActError> {
        let conn = self.conn(spec, member).await?;
        self.exec_on(conn, member, statements).await
    }

    async fn exec_on(
        &self,
        mut conn: Conn,
        member: &str,
        statements: &[String],
    ) -> Result<(), ActError> {
        for sql in statements {
            self.bounded(member, sql, conn.query_drop(sql)).await?;
        }
        let _ = conn.disconnect().await;
        Ok(())
    }

    /// Statements that make a member replicate from `source` by GTID (`slave_pos`); with
    /// `demote`, its own binary log history joins its replication position first.
    fn change_source(
        &self,
        spec: &ClusterSpec,
        source: &str,
        demote: bool,
    ) -> Result<Vec<String>, ActError> {
        let demote = if demote {
            ", MASTER_DEMOTE_TO_SLAVE=1"
        } else {
            ""
        };
        let s = spec
            .member(source)
            .ok_or_else(|| ActError::UnknownMember(source.to_string()))?;
        // Replication over TLS verifies the source's certificate and name; without it, the
        // CHANGE clears any TLS a previous spec asked for.
        let ssl = match &spec.tls {
            Some(tls) => format!(
                ", MASTER_SSL=1, MASTER_SSL_CA='{}', MASTER_SSL_VERIFY_SERVER_CERT=1",
                sql_quote(&tls.member_ca_path)
            ),
            None => ", MASTER_SSL=0".into(),
        };
        Ok(vec![
            "STOP SLAVE".into(),
            format!(
                "CHANGE MASTER TO MASTER_HOST='{}', MASTER_PORT={}, MASTER_USER='{}', MASTER_PASSWORD='{}', \
                 MASTER_USE_GTID=slave_pos{demote}, MASTER_CONNECT_RETRY=1, MASTER_HEARTBEAT_PERIOD={HEARTBEAT_PERIOD}{ssl}",
                sql_quote(&s.host),
                s.port,
                sql_quote(&self.replication.user),
                sql_quote(&self.replication.password)
            ),
            "SET GLOBAL read_only = ON".into(),
            // A former primary must stop waiting for acknowledgements before it applies
            // anything: each applied transaction would wait for a replica it does not have.
            "SET GLOBAL rpl_semi_sync_master_enabled = OFF".into(),
            // The IO thread reads this when it starts: a replica acknowledges from its first
            // transaction, so a primary it may become never waits on one that does not.
            format!(
                "SET GLOBAL rpl_semi_sync_slave_enabled = {}",
                if spec.semi_sync.is_some() {
                    "ON"
                } else {
                    "OFF"
                }
            ),
            "START SLAVE".into(),
        ])
    }

    /// Runs one action. `view` is the observation the plan was made from.
    pub async fn run(
        &self,
        action: &Action,
        spec: &ClusterSpec,
        view: &ClusterView,
        sink: &dyn TopologySink,
    ) -> Result<(), ActError> {
        tracing::info!(?action, "acting");
        // Members being removed are in the view but no longer in the spec.
        let widened;
        let spec = if view.members.iter().all(|m| spec.member(&m.name).is_some()) {
            spec
        } else {
            let mut wider = spec.clone();
            for m in view
                .members
                .iter()
                .filter(|m| spec.member(&m.name).is_none())
            {
                wider
                    .members
                    .push(MemberSpec::new(m.name.clone(), m.host.clone(), m.port));
            }
            widened = wider;
            &widened
        };
        match action {
            Action::Bootstrap { primary, replicas } => {
                let mut sql = self.bootstrap_primary();
                for account in &self.proxy_accounts {
                    sql.extend(account.statements(view.flavor));
                }
                self.exec(spec, primary, &sql).await?;
                for r in replicas {
                    let sql = self.change_source(spec, primary, false)?;
                    self.exec(spec, r, &sql).await?;
                }
                Ok(())
            }
            // Semi-sync was set up by the action before (see `plan`).
            Action::PublishTopology { topology } => {
                sink.publish(topology).await.map_err(ActError::Publish)
            }
            Action::FenceReplicas { members } => {
                // All at once and briefly: an IO thread stuck on a hung source can hold
                // `STOP SLAVE` until its own timeout, and the server finishes the stop anyway.
                let stop_io = ["STOP SLAVE IO_THREAD".to_string()];
                let stop_io = &stop_io;
                let stops = members.iter().map(|m| async move {
                    let stop = self.exec(spec, m, stop_io);
                    match tokio::time::timeout(REPLICA_STOP_WAIT, stop).await {
                        Ok(Ok(())) => {}
                        // A member that cannot be reached cannot replicate either.
                        Ok(Err(e)) => {
                            tracing::warn!(member = %m, error = %e, "could not fence; going on");
                        }
                        Err(_) => {
                            tracing::warn!(member = %m, "IO thread still stopping; going on");
                        }
                    }
                });
                futures::future::join_all(stops).await;
                Ok(())
            }
            Action::FencePrimary { member } => {
                let m = spec
                    .member(member)
                    .ok_or_else(|| ActError::UnknownMember(member.clone()))?;
                self.fences
                    .start(fence::Target {
                        member: member.clone(),
                        host: m.host.clone(),
                        port: m.port,
                        admin: self.admin.clone(),
                        replication_user: self.replication.user.clone(),
                        flavor: view.flavor,
                        tls: spec.tls.clone(),
                    })
                    .await;
                Ok(())
            }
            Action::SetReadOnly { member } => {
                let sql: Vec<String> = fence::read_only_statements(view.flavor)
                    .iter()
                    .map(|s| s.to_string())
                    .collect();
                self.exec(spec, member, &sql).await
            }
            Action::SetWritable { member } => {
                self.fences.stop(member);
                self.exec(spec, member, &["SET GLOBAL read_only = OFF".into()])
                    .await
            }
            Action::KillClientConnections { member } => self.kill_clients(spec, member).await,
            Action::WaitRelayApplied { member, until } => {
                self.exec(spec, member, &["START SLAVE SQL_THREAD".into()])
                    .await?;
                self.wait_for(spec, view.flavor, member, until, self.catch_up_timeout)
                    .await
            }
            Action::DrainTransactions { member, timeout } => {
                self.drain(spec, member, *timeout).await
            }
            Action::WaitCaughtUp {
                member,
                source,
                timeout,
            } => {
                let mut conn = self.conn(spec, source).await?;
                let head: Option<String> = conn
                    .query_first(position_query(view.flavor))
                    .await
                    .map_err(|e| ActError::sql(source, &e))?;
                let head = GtidSet::parse(view.flavor, &head.unwrap_or_default()).map_err(|e| {
                    ActError::Position {
                        member: source.clone(),
                        reason: e.to_string(),
                    }
                })?;
                self.wait_for(spec, view.flavor, member, &head, *timeout)
                    .await
            }
            Action::Promote { member } => {
                self.fences.stop(member);
                let sql = [
                    "STOP SLAVE",
                    "RESET SLAVE ALL",
                    "SET GLOBAL read_only = OFF",
                ];
                self.exec(spec, member, &sql.map(String::from)).await
            }
            Action::Repoint { member, source } => {
                let sql = self.change_source(spec, source, false)?;
                self.exec(spec, member, &sql).await
            }
            Action::Rejoin { member, source } => {
                self.fences.stop(member);
                // One connection: a rejoin is on a switchover's way to writes again.
                let mut conn = self.conn(spec, member).await?;
                let mut sql = self.other_channels(&mut conn, view.flavor, member).await?;
                // A former primary's own transactions are in its binlog position, not in its
                // replication position: MASTER_DEMOTE_TO_SLAVE moves them there, so that the
                // position it replicates from, and every MASTER_GTID_WAIT on it (the proxies'
                // strict reads, a later switchover's catch-up), include them.
                sql.extend(self.change_source(spec, source, true)?);
                self.exec_on(conn, member, &sql).await
            }
            Action::RestartReplication { member } => {
                self.exec(spec, member, &["START SLAVE".into()]).await
            }
            Action::Quarantine { member, reason } => {
                tracing::warn!(member = %member, reason = %reason, "quarantined");
                // Out of the cluster until re-seeded: it must not acknowledge writes either.
                // A failover leaves quarantined members out of the candidates' comparison, so
                // a write only it had acknowledged would be lost.
                let stop = match view.flavor {
                    Flavor::Mariadb => "STOP ALL SLAVES",
                    Flavor::Mysql => "STOP REPLICA",
                };
                let _ = self
                    .exec(
                        spec,
                        member,
                        &["SET GLOBAL read_only = ON".into(), stop.into()],
                    )
                    .await;
                if let Err(e) = self.remove_other_channels(spec, view.flavor, member).await {
                    tracing::warn!(member = %member, error = %e, "channels of a quarantined member");
                }
                Ok(())
            }
            Action::Decommission { member } => {
                let _ = self
                    .exec(
                        spec,
                        member,
                        &["STOP SLAVE".into(), "SET GLOBAL read_only = ON".into()],
                    )
                    .await;
                Ok(())
            }
            Action::Seed {
                member,
                donor,
                source,
            } => self.seed(spec, member, donor, source).await,
            Action::EnsureSemiSync { primary, replicas } => {
                self.semi_sync_on(spec, primary, replicas.iter().map(String::as_str))
                    .await
            }
            Action::DisableSemiSync { member } => {
                let sql = ["SET GLOBAL rpl_semi_sync_master_enabled = OFF".to_string()];
                self.exec(spec, member, &sql).await
            }
        }
    }

    /// Has the platform copy `donor` into `member`, then points `member` at `source` from the
    /// copy's position.
    async fn seed(
        &self,
        spec: &ClusterSpec,
        member: &str,
        donor: &str,
        source: &str,
    ) -> Result<(), ActError> {
        let failed = |reason: String| ActError::Seed {
            member: member.to_string(),
            donor: donor.to_string(),
            reason,
        };
        let seeder = self
            .seeder
            .as_ref()
            .ok_or_else(|| failed("this platform cannot seed".into()))?;
        let spec_of = |name: &str| {
            spec.member(name)
                .ok_or_else(|| ActError::UnknownMember(name.to_string()))
        };
        let (target, from) = (spec_of(member)?, spec_of(donor)?);
        tracing::info!(member, donor, "seeding");
        let outcome = seeder.seed(target, from).await.map_err(failed)?;
        tracing::info!(
            member,
            donor,
            bytes = outcome.bytes,
            mb = outcome.bytes / 1_048_576,
            mb_per_s = %format_args!("{:.1}", outcome.mb_per_s()),
            elapsed = ?outcome.elapsed,
            position = %outcome.gtid_position,
            "seeded"
        );
        let position = sql_quote(&outcome.gtid_position);
        let mut sql = vec![
            // It may come up writable, as its option file says.
            "SET GLOBAL read_only = ON".to_string(),
            "STOP SLAVE".into(),
            "RESET SLAVE ALL".into(),
            // The copy has no binary log: record its history there too, so that as a primary
            // it would still serve replicas from this position onwards.
            "RESET MASTER".into(),
            format!("SET GLOBAL gtid_binlog_state = '{position}'"),
            format!("SET GLOBAL gtid_slave_pos = '{position}'"),
        ];
        sql.extend(self.change_source(spec, source, false)?);
        let conn = self
            .conn_patiently(spec, member, SEEDED_START_TIMEOUT)
            .await?;
        self.exec_on(conn, member, &sql).await
    }

    /// Creates the proxies' accounts on `primary` where they are missing; with `converge`,
    /// also sets their passwords and grants to what the operator holds (a state directory or a
    /// Secret from before, a rotated password).
    pub async fn ensure_proxy_accounts(
        &self,
        spec: &ClusterSpec,
        primary: &str,
        flavor: Flavor,
        converge: bool,
    ) -> Result<(), ActError> {
        if self.proxy_accounts.is_empty() {
            return Ok(());
        }
        let mut conn = self.conn(spec, primary).await?;
        let mut sql = Vec::new();
        for account in &self.proxy_accounts {
            if converge {
                sql.extend(account.statements(flavor));
                sql.push(format!(
                    "ALTER USER '{}'@'%' IDENTIFIED BY '{}'",
                    sql_quote(&account.creds.user),
                    sql_quote(&account.creds.password)
                ));
                continue;
            }
            let found: Option<String> = self
                .bounded(
                    primary,
                    "looking for the proxies' accounts",
                    conn.exec_first(
                        "SELECT User FROM mysql.user WHERE User = ? LIMIT 1",
                        (account.creds.user.clone(),),
                    ),
                )
                .await?;
            if found.is_none() {
                sql.extend(account.statements(flavor));
            }
        }
        self.exec_on(conn, primary, &sql).await
    }

    /// Lossless semi-synchronous replication: acknowledgements on `replicas`, then waiting on
    /// `primary`, after syncing its binary log and before committing (AFTER_SYNC), never
    /// falling back to asynchronous replication. MariaDB waits for one acknowledgement; `acks`
    /// above 1 is honoured by the plan (how many members it must hear from before promoting),
    /// not by the server.
    async fn semi_sync_on(
        &self,
        spec: &ClusterSpec,
        primary: &str,
        replicas: impl Iterator<Item = &str>,
    ) -> Result<(), ActError> {
        for r in replicas {
            let mut conn = self.conn(spec, r).await?;
            let on: Option<i64> = conn
                .query_first("SELECT @@rpl_semi_sync_slave_enabled")
                .await
                .map_err(|source| ActError::sql(r, &source))?;
            if on != Some(1) {
                // The IO thread reads the setting when it starts.
                let sql = [
                    "SET GLOBAL rpl_semi_sync_slave_enabled = ON",
                    "STOP SLAVE IO_THREAD",
                    "START SLAVE IO_THREAD",
                ];
                self.exec_on(conn, r, &sql.map(String::from)).await?;
            } else {
                let _ = conn.disconnect().await;
            }
        }
        let sql = [
            "SET GLOBAL rpl_semi_sync_master_wait_point = AFTER_SYNC",
            "SET GLOBAL rpl_semi_sync_master_timeout = 4294967295",
            "SET GLOBAL rpl_semi_sync_master_wait_no_slave = ON",
            "SET GLOBAL rpl_semi_sync_master_enabled = ON",
        ];
        self.exec(spec, primary, &sql.map(String::from)).await
    }

    fn bootstrap_primary(&self) -> Vec<String> {
        let mut sql = vec![
            format!(
                "CREATE USER IF NOT EXISTS '{}'@'%' IDENTIFIED BY '{}'",
                sql_quote(&self.replication.user),
                sql_quote(&self.replication.password)
            ),
            format!(
                "GRANT REPLICATION SLAVE ON *.* TO '{}'@'%'",
                sql_quote(&self.replication.user)
            ),
        ];
        for u in &self.app_users {
            sql.push(format!(
                "CREATE USER IF NOT EXISTS '{}'@'%' IDENTIFIED BY '{}'",
                sql_quote(&u.user),
                sql_quote(&u.password)
            ));
        }
        // Still read-only: the plan turns semi-sync on before it makes the primary writable.
        sql
    }

    /// Stops and removes every named replication channel of `member` (MariaDB), on a
    /// connection of its own; see [`Self::other_channels`].
    async fn remove_other_channels(
        &self,
        spec: &ClusterSpec,
        flavor: Flavor,
        member: &str,
    ) -> Result<(), ActError> {
        let mut conn = self.conn(spec, member).await?;
        let sql = self.other_channels(&mut conn, flavor, member).await?;
        if sql.is_empty() {
            let _ = conn.disconnect().await;
            return Ok(());
        }
        self.exec_on(conn, member, &sql).await
    }

    /// The statements that stop and remove every named replication channel `conn`'s member
    /// has (MariaDB; none when it has none). A member the orchestrator demotes replicates from
    /// its primary only: a channel of its own, such as a tenant move's on a primary that a
    /// failover replaced, would start again with the server and keep writing transactions its
    /// new primary never had.
    async fn other_channels(
        &self,
        conn: &mut Conn,
        flavor: Flavor,
        member: &str,
    ) -> Result<Vec<String>, ActError> {
        if flavor != Flavor::Mariadb {
            return Ok(Vec::new());
        }
        let rows: Vec<mysql_async::Row> = self
            .bounded(
                member,
                "listing replication channels",
                conn.query("SHOW ALL SLAVES STATUS"),
            )
            .await?;
        let channels: Vec<String> = rows
            .iter()
            .filter_map(|r| {
                r.get_opt::<String, _>("Connection_name")
                    .and_then(Result::ok)
            })
            .filter(|name| !name.is_empty())
            .collect();
        if channels.is_empty() {
            return Ok(Vec::new());
        }
        tracing::warn!(
            member,
            ?channels,
            "removing replication channels of a demoted member"
        );
        let mut sql: Vec<String> = channels
            .iter()
            .flat_map(|c| {
                let c = sql_quote(c);
                [
                    format!("STOP SLAVE '{c}'"),
                    format!("RESET SLAVE '{c}' ALL"),
                ]
            })
            .collect();
        // A filtered channel leaves the GTIDs it skipped in `gtid_slave_pos`, ahead of the
        // binary log: the member would ask its new primary for transactions it never had.
        sql.push("STOP ALL SLAVES".into());
        sql.push("SET GLOBAL gtid_slave_pos = @@gtid_binlog_pos".into());
        Ok(sql)
    }

    /// Ends the client connections that hold a transaction open on a server that just went
    /// read-only: those can no longer commit their writes and only hold locks. Connections
    /// without a transaction are left alone: a statement they run gets the read-only error,
    /// which lagless-proxy turns into a wait for the new primary, while killing it mid-flight
    /// would leave the client unsure whether it ran.
    async fn kill_clients(&self, spec: &ClusterSpec, member: &str) -> Result<(), ActError> {
        let mut conn = self.conn(spec, member).await?;
        let ids: Vec<u64> = conn
            .exec(
                format!("SELECT t.trx_mysql_thread_id {CLIENT_TRANSACTIONS}"),
                (self.replication.user.clone(),),
            )
            .await
            .map_err(|source| ActError::sql(member, &source))?;
        for id in ids {
            let _ = conn.query_drop(format!("KILL CONNECTION {id}")).await;
        }
        Ok(())
    }

    /// Waits up to `timeout` until `member` has applied `until`.
    ///
    /// "Applied" is judged on the executed position the observer reads (MariaDB
    /// `@@gtid_binlog_pos`, MySQL `@@gtid_executed`), which holds a member's own former writes
    /// as a primary; MariaDB's `MASTER_GTID_WAIT` compares with `@@gtid_slave_pos` only, which
    /// lacks them, so on its own it never returns for a former primary that no new transaction
    /// reached. It still serves to wake up as soon as replication gets there.
    async fn wait_for(
        &self,
        spec: &ClusterSpec,
        flavor: Flavor,
        member: &str,
        until: &GtidSet,
        timeout: Duration,
    ) -> Result<(), ActError> {
        let mut conn = self.conn(spec, member).await?;
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let executed: Option<String> = self
                .bounded(
                    member,
                    "reading the position",
                    conn.query_first(position_query(flavor)),
                )
                .await?;
            let executed = GtidSet::parse(flavor, &executed.unwrap_or_default()).map_err(|e| {
                ActError::Position {
                    member: member.to_string(),
                    reason: e.to_string(),
                }
            })?;
            if has_applied(&executed, until) {
                return Ok(());
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if left.is_zero() {
                return Err(ActError::Timeout {
                    member: member.to_string(),
                    what: format!("applying {until}"),
                    secs: timeout.as_secs(),
                });
            }
            let step = left.min(WAIT_STEP).as_secs_f64();
            let sql = match flavor {
                Flavor::Mariadb => format!("SELECT MASTER_GTID_WAIT('{until}', {step})"),
                Flavor::Mysql => format!("SELECT WAIT_FOR_EXECUTED_GTID_SET('{until}', {step})"),
            };
            let waited: Option<i64> = self.bounded(member, &sql, conn.query_first(&sql)).await?;
            if waited == Some(0) {
                return Ok(());
            }
        }
    }

    /// Waits up to `timeout` until no client transaction is open on `member`.
    ///
    /// InnoDB lists a transaction from its first statement, not from `BEGIN`: a free server
    /// counts only once [`DRAIN_SETTLE`] has passed since the proxies were told to hold new
    /// transactions, time for a `BEGIN` sent just before to be followed by its statement.
    /// `INNODB_TRX` is a snapshot that the server refreshes only when it was not read for
    /// 100 ms, so reads are spaced [`DRAIN_POLL`] apart: a faster poll would see the same
    /// snapshot forever.
    async fn drain(
        &self,
        spec: &ClusterSpec,
        member: &str,
        timeout: Duration,
    ) -> Result<(), ActError> {
        if timeout.is_zero() {
            return Ok(());
        }
        let started = tokio::time::Instant::now();
        let mut conn = self.conn(spec, member).await?;
        loop {
            let open: Option<i64> = self
                .bounded(
                    member,
                    "counting open transactions",
                    conn.exec_first(
                        format!("SELECT COUNT(*) {CLIENT_TRANSACTIONS}"),
                        (self.replication.user.clone(),),
                    ),
                )
                .await?;
            let open = open.unwrap_or(0);
            let waited = started.elapsed();
            if open == 0 && waited >= DRAIN_SETTLE {
                tracing::info!(member, ?waited, "open transactions finished");
                break;
            }
            if waited >= timeout {
                tracing::warn!(
                    member,
                    open,
                    ?timeout,
                    "transactions still open after the drain; they are ended"
                );
                break;
            }
            tokio::time::sleep(DRAIN_POLL).await;
        }
        let _ = conn.disconnect().await;
        Ok(())
    }
}

/// How long one `MASTER_GTID_WAIT` of a catch-up lasts before the position is read again.
const WAIT_STEP: Duration = Duration::from_millis(100);
/// How often a drain counts open transactions (just over InnoDB's 100 ms snapshot refresh),
/// and how long after its start a count of none is believed.
const DRAIN_POLL: Duration = Duration::from_millis(105);
const DRAIN_SETTLE: Duration = Duration::from_millis(50);

/// Transactions of clients (not replication, not the server's own threads, not ours).
const CLIENT_TRANSACTIONS: &str = "FROM information_schema.INNODB_TRX t \
     JOIN information_schema.PROCESSLIST p ON p.ID = t.trx_mysql_thread_id \
     WHERE p.ID <> CONNECTION_ID() AND p.USER NOT IN (?, 'system user', 'event_scheduler')";

/// Whether a member whose executed position is `executed` has applied `until`.
pub fn has_applied(executed: &GtidSet, until: &GtidSet) -> bool {
    executed.contains(until)
}

fn position_query(flavor: Flavor) -> &'static str {
    match flavor {
        Flavor::Mariadb => "SELECT @@gtid_binlog_pos",
        Flavor::Mysql => "SELECT @@gtid_executed",
    }
}

/// Doubles quotes and backslashes for a single-quoted SQL string.
pub(crate) fn sql_quote(s: &str) -> String {
    s.replace('\\', "\\\\").replace('\'', "''")
}

/// Has the server at `host:port` load its certificate files again, without a restart; owns
/// what it needs, so it can run off the orchestration's tick.
pub async fn reload_tls(
    host: String,
    port: u16,
    admin: Credentials,
    tls: Option<ServerTls>,
    flavor: Flavor,
) -> Result<(), String> {
    let mut conn = Conn::new(opts(&host, port, &admin, tls.as_ref()))
        .await
        .map_err(|e| redact(&e.to_string()))?;
    let result = conn
        .query_drop(reload_tls_statement(flavor))
        .await
        .map_err(|e| redact(&e.to_string()));
    let _ = conn.disconnect().await;
    result
}

/// The statement that has a server load its certificate files again. Never binary-logged: a
/// replica would otherwise write a transaction of its own (errant to the rest of the
/// cluster), and the primary's would replay on every replica.
pub fn reload_tls_statement(flavor: Flavor) -> &'static str {
    match flavor {
        Flavor::Mariadb => "FLUSH LOCAL SSL",
        // Neither binary-logged nor replicated.
        Flavor::Mysql => "ALTER INSTANCE RELOAD TLS",
    }
}
