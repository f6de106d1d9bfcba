//! `lagless-operator tenant`: create, list and locate the tenants of a tenant pool: a local
//! pool by its state directory, or any pool through one of its proxies ([`via_proxy`]).
//!
//! The pool's state directory holds what the commands need: the pool document (`pool.json`:
//! the directory's cluster, the tenant clusters' topology files, the naming pattern), the
//! accounts (`credentials.json`) and, with TLS, the CA (`tls/ca.crt`). The directory's
//! primary comes from `clusters/<directory>/topology.json`.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

mod move_local;
mod via_proxy;

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use lagless_core::topology::{Member, Topology};
use lagless_directory::{
    Directory, DirectoryError, InvalidTenant, PoolDocument, Reserved, Route, TenantId,
    TenantNaming, TenantState,
};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, OptsBuilder, SslOpts};
use serde::Serialize;

use crate::local::state::{LocalCredentials, read_json};

/// How long creating a tenant's database may take, connection included.
const CREATE_TIMEOUT: Duration = Duration::from_secs(30);

/// Create, list and locate tenants of a tenant pool.
#[derive(Debug, Args)]
#[command(
    after_help = "A local pool: --state-dir names its state directory. Any pool, a Kubernetes \
                  one included: --proxy names one of its proxies (e.g. after `kubectl \
                  port-forward svc/<pool> 3306`), with an account that may create databases \
                  and read lagless_directory."
)]
pub struct TenantArgs {
    /// The tenant pool's local state directory.
    #[arg(
        long,
        global = true,
        env = "LAGLESS_STATE_DIR",
        conflicts_with = "proxy"
    )]
    pub state_dir: Option<PathBuf>,
    /// A proxy of the pool, HOST:PORT: tenants are created through it and the directory read
    /// through it.
    #[arg(long, global = true, env = "LAGLESS_TENANT_PROXY", requires = "user")]
    pub proxy: Option<String>,
    /// The account to log in to the proxy with.
    #[arg(long, global = true, env = "LAGLESS_TENANT_USER")]
    pub user: Option<String>,
    /// Its password.
    #[arg(
        long,
        global = true,
        env = "LAGLESS_TENANT_PASSWORD",
        hide_env_values = true
    )]
    pub password: Option<String>,
    /// With --proxy: how the pool names a tenant's database.
    #[arg(long, global = true, default_value = "t_{id}")]
    pub tenant_database: String,
    #[command(subcommand)]
    pub command: TenantCommand,
}

#[derive(Debug, Subcommand)]
pub enum TenantCommand {
    /// Place a new tenant on a tenant cluster and create its database there.
    Create {
        /// The tenant id: 1-48 characters of a-z, 0-9 and _.
        id: String,
    },
    /// List the tenants with their cluster, database, version and state.
    List {
        /// Only the tenants on this cluster.
        #[arg(long)]
        cluster: Option<String>,
        /// How to print the list.
        #[arg(long, short, value_enum, default_value = "table")]
        output: ListFormat,
    },
    /// Print which cluster holds a tenant, and its database.
    Where {
        /// The tenant id.
        id: String,
    },
    /// Move a tenant to another cluster while it is written (local pools): copy, catch up,
    /// a short freeze, fence, verify, flip, clean. Run it again to resume an interrupted
    /// move.
    Move {
        /// The tenant id.
        id: String,
        /// The cluster to move it to.
        #[arg(long)]
        to: String,
        #[command(flatten)]
        pace: CopyPace,
    },
    /// Plan moves that even out the tenant clusters' use of space (local pools): the largest
    /// tenant of the fullest cluster that narrows the gap goes to the emptiest, while they
    /// differ by more than the margin. Prints the plan; --apply runs it.
    Rebalance {
        /// Utilisations closer than this (a fraction) count as even.
        #[arg(long, default_value_t = 0.10)]
        margin: f64,
        /// Moves at most, run one after another.
        #[arg(long, default_value_t = 1)]
        max_moves: usize,
        /// Run the planned moves.
        #[arg(long)]
        apply: bool,
        #[command(flatten)]
        pace: CopyPace,
    },
    /// Print the directory's tables as SQL (idempotent), for a directory set up by hand.
    Schema,
}

/// How fast a move's snapshot is loaded into the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::Args)]
pub struct CopyPace {
    /// MiB a second the snapshot is loaded into the target cluster at most, so that its other
    /// tenants keep their latency; 0: as fast as it goes.
    #[arg(
        long,
        default_value_t = crate::pool::moves::DEFAULT_COPY_RATE >> 20,
        value_parser = clap::value_parser!(u64).range(0..=10240)
    )]
    pub copy_rate_mib: u64,
    /// The copy slows down (to 0.25 MiB/s at the least) while the target's primary answers
    /// more than this many percent slower than before the copy began, and speeds up again
    /// after; 0: a fixed pace. Needs a `--copy-rate-mib` above 0, the pace it starts from.
    #[arg(long, default_value_t = 0, value_name = "PERCENT")]
    pub copy_latency_allowance: u32,
}

impl CopyPace {
    pub(crate) fn bytes(self) -> u64 {
        self.copy_rate_mib.saturating_mul(1 << 20)
    }

    pub(crate) fn allowance(self) -> f64 {
        f64::from(self.copy_latency_allowance) / 100.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListFormat {
    Table,
    Json,
}

/// Why a tenant command failed.
#[derive(Debug, thiserror::Error)]
pub enum TenantCliError {
    /// Bad input: a missing option, a directory that holds no pool, an unknown cluster.
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    InvalidId(#[from] InvalidTenant),
    #[error("tenant {0} is not in the directory")]
    UnknownTenant(TenantId),
    /// The pool's files or servers.
    #[error("{0}")]
    Pool(String),
    #[error(transparent)]
    Directory(#[from] DirectoryError),
}

impl TenantCliError {
    /// 2 for bad input, 1 for everything else.
    pub fn exit_code(&self) -> i32 {
        match self {
            TenantCliError::Usage(_)
            | TenantCliError::InvalidId(_)
            | TenantCliError::UnknownTenant(_) => 2,
            TenantCliError::Pool(_) | TenantCliError::Directory(_) => 1,
        }
    }
}

/// Runs a `tenant` command; returns the exit code.
pub fn run(args: TenantArgs) -> i32 {
    match execute(args) {
        Ok(text) => {
            print!("{text}");
            0
        }
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    }
}

fn execute(args: TenantArgs) -> Result<String, TenantCliError> {
    // Bad ids are refused before any file is read.
    let action = Action::of(args.command)?;
    if let Action::Schema = action {
        return Ok(schema_sql());
    }
    if let Some(proxy) = &args.proxy {
        let opts = proxy_opts(proxy, args.user.as_deref(), args.password.as_deref())?;
        let naming = TenantNaming::parse(&args.tenant_database)
            .map_err(|e| TenantCliError::Usage(format!("--tenant-database: {e}")))?;
        return runtime()?.block_on(via_proxy::run(&action, opts, &naming));
    }
    let root = args.state_dir.ok_or_else(|| {
        TenantCliError::Usage(
            "say which pool: --state-dir (or LAGLESS_STATE_DIR), a local pool's state \
             directory, or --proxy HOST:PORT with --user and --password, one of its proxies"
                .into(),
        )
    })?;
    let pool = LocalPool::open(PoolPaths::new(root))?;
    if let Action::List {
        cluster: Some(c), ..
    } = &action
    {
        check_cluster(&pool.document, c)?;
    }
    runtime()?.block_on(async {
        let directory = pool.directory()?;
        let result = match &action {
            Action::Create(id) => pool.create(&directory, id).await,
            Action::Where(id) => pool.locate(&directory, id).await,
            Action::Move(id, to, pace) => pool.move_tenant(&directory, id, to, *pace).await,
            Action::Rebalance {
                limits,
                apply,
                pace,
            } => pool.rebalance(&directory, *limits, *apply, *pace).await,
            Action::List { cluster, format } => {
                pool.list(&directory, cluster.as_deref(), *format).await
            }
            Action::Schema => Ok(schema_sql()),
        };
        directory.close().await;
        result
    })
}

fn runtime() -> Result<tokio::runtime::Runtime, TenantCliError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| TenantCliError::Pool(format!("cannot start the runtime: {e}")))
}

/// How to reach a pool's proxy: `HOST:PORT` and an account.
pub fn proxy_opts(
    proxy: &str,
    user: Option<&str>,
    password: Option<&str>,
) -> Result<Opts, TenantCliError> {
    let (host, port) = proxy
        .rsplit_once(':')
        .and_then(|(h, p)| Some((h.trim_matches(['[', ']']), p.parse::<u16>().ok()?)))
        .filter(|(h, _)| !h.is_empty())
        .ok_or_else(|| TenantCliError::Usage(format!("--proxy {proxy}: expected HOST:PORT")))?;
    let user = user.ok_or_else(|| TenantCliError::Usage("--proxy needs --user".into()))?;
    Ok(OptsBuilder::default()
        .ip_or_hostname(host)
        .tcp_port(port)
        .user(Some(user))
        .pass(password)
        .prefer_socket(false)
        .into())
}

/// A command with its input checked.
#[derive(Debug, Clone, PartialEq)]
enum Action {
    Create(TenantId),
    Where(TenantId),
    /// The tenant, the cluster it goes to, the copy's pace.
    Move(TenantId, String, CopyPace),
    Rebalance {
        limits: crate::pool::moves::rebalance::RebalanceLimits,
        apply: bool,
        pace: CopyPace,
    },
    List {
        cluster: Option<String>,
        format: ListFormat,
    },
    /// Needs no pool.
    Schema,
}

impl Action {
    fn of(command: TenantCommand) -> Result<Self, TenantCliError> {
        Ok(match command {
            TenantCommand::Create { id } => Action::Create(TenantId::parse(&id)?),
            TenantCommand::Where { id } => Action::Where(TenantId::parse(&id)?),
            TenantCommand::Move { id, to, pace } => Action::Move(TenantId::parse(&id)?, to, pace),
            TenantCommand::Rebalance {
                margin,
                max_moves,
                apply,
                pace,
            } => {
                if !(0.0..=1.0).contains(&margin) {
                    return Err(TenantCliError::Usage(format!(
                        "--margin {margin}: a fraction from 0 to 1"
                    )));
                }
                Action::Rebalance {
                    limits: crate::pool::moves::rebalance::RebalanceLimits { margin, max_moves },
                    apply,
                    pace,
                }
            }
            TenantCommand::List { cluster, output } => Action::List {
                cluster,
                format: output,
            },
            TenantCommand::Schema => Action::Schema,
        })
    }
}

/// The directory's DDL, one statement per line.
fn schema_sql() -> String {
    lagless_directory::schema::statements()
        .iter()
        .map(|s| format!("{s};\n"))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// The pool's files

/// Paths in a pool's state directory that these commands read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolPaths {
    root: PathBuf,
}

impl PoolPaths {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }
    pub fn document(&self) -> PathBuf {
        self.root.join("pool.json")
    }
    pub fn credentials(&self) -> PathBuf {
        self.root.join("credentials.json")
    }
    /// The CA every cluster's certificate is issued by, when the pool runs with TLS.
    pub fn ca(&self) -> PathBuf {
        self.root.join("tls").join("ca.crt")
    }
    /// The topology file of the pool's cluster `name` (the directory's cluster included).
    pub fn topology(&self, name: &str) -> PathBuf {
        self.root.join("clusters").join(name).join("topology.json")
    }
}

/// What the commands know about the pool once its files are read.
struct LocalPool {
    paths: PoolPaths,
    document: PoolDocument,
    credentials: LocalCredentials,
    ca: Option<PathBuf>,
}

impl LocalPool {
    fn open(paths: PoolPaths) -> Result<Self, TenantCliError> {
        let doc_path = paths.document();
        if !doc_path.is_file() {
            return Err(TenantCliError::Usage(format!(
                "{} holds no tenant pool ({} is missing)",
                paths.root.display(),
                doc_path.display()
            )));
        }
        let document =
            PoolDocument::read(&doc_path).map_err(|e| TenantCliError::Pool(e.to_string()))?;
        let credentials: LocalCredentials = read_json(&paths.credentials())
            .map_err(|e| TenantCliError::Pool(format!("the pool's accounts: {e}")))?;
        let ca = Some(paths.ca()).filter(|ca| ca.is_file());
        Ok(Self {
            paths,
            document,
            credentials,
            ca,
        })
    }

    fn directory(&self) -> Result<Directory, TenantCliError> {
        let name = &self.document.directory;
        let topology = read_topology(name, &self.paths.topology(name))?;
        let primary = primary_of(&topology).map_err(TenantCliError::Pool)?;
        Ok(Directory::new(member_opts(
            primary,
            &self.credentials,
            self.ca.as_deref(),
        )))
    }

    /// The primary's address of tenant cluster `cluster`, when its topology says.
    fn primary_addr(&self, cluster: &str) -> Option<String> {
        let path = &self.document.cluster(cluster)?.topology;
        let topology = Topology::read(path).ok()?;
        topology.primary.map(|p| p.addr())
    }

    async fn create(&self, directory: &Directory, id: &TenantId) -> Result<String, TenantCliError> {
        let naming = self.document.naming();
        let database = naming.database(id);
        let reserved = directory
            .ensure_tenant(id, |cluster| self.create_database(cluster, &database))
            .await?;
        let existed = matches!(reserved, Reserved::Existing(_));
        let mut line = describe(id, reserved.route(), &naming);
        if existed {
            line.push_str(" (it existed already)");
        }
        line.push('\n');
        Ok(line)
    }

    /// `CREATE DATABASE` on the cluster's primary. `IF NOT EXISTS`: the directory, not the
    /// cluster, says whether the tenant exists, and a creation cut short may be finished.
    async fn create_database(&self, cluster: String, database: &str) -> Result<(), String> {
        let path = &self
            .document
            .cluster(&cluster)
            .ok_or_else(|| {
                format!(
                    "cluster {cluster} is in the directory but not in the pool document {}",
                    self.paths.document().display()
                )
            })?
            .topology;
        let topology = read_topology(&cluster, path).map_err(|e| e.to_string())?;
        let primary = primary_of(&topology)?;
        let opts = member_opts(primary, &self.credentials, self.ca.as_deref());
        let work = async {
            let mut conn = Conn::new(opts).await?;
            conn.query_drop(create_database_sql(database)).await?;
            conn.disconnect().await
        };
        match tokio::time::timeout(CREATE_TIMEOUT, work).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(format!("{}: {e}", primary.addr())),
            Err(_) => Err(format!(
                "{}: no answer within {}s",
                primary.addr(),
                CREATE_TIMEOUT.as_secs()
            )),
        }
    }

    async fn locate(&self, directory: &Directory, id: &TenantId) -> Result<String, TenantCliError> {
        let route = directory
            .lookup(id)
            .await?
            .ok_or_else(|| TenantCliError::UnknownTenant(id.clone()))?;
        let mut line = describe(id, &route, &self.document.naming());
        if let Some(addr) = self.primary_addr(&route.cluster) {
            line.push_str(&format!("; primary {addr}"));
        }
        line.push('\n');
        Ok(line)
    }

    async fn list(
        &self,
        directory: &Directory,
        cluster: Option<&str>,
        format: ListFormat,
    ) -> Result<String, TenantCliError> {
        let tenants = directory.list(cluster).await?;
        let rows = rows(&tenants, &self.document.naming());
        Ok(match format {
            ListFormat::Table => table(&rows, cluster),
            ListFormat::Json => json(&rows)?,
        })
    }
}

fn read_topology(cluster: &str, path: &Path) -> Result<Topology, TenantCliError> {
    Topology::read(path).map_err(|e| TenantCliError::Pool(format!("cluster {cluster}: {e}")))
}

fn primary_of(topology: &Topology) -> Result<&Member, String> {
    topology.primary.as_ref().ok_or_else(|| {
        format!(
            "cluster {} has no primary right now (a switchover or failover is under way); \
             try again in a moment",
            topology.cluster
        )
    })
}

/// Connection options for a member as the pool's admin account, over TLS verified against
/// the pool's CA when it has one.
fn member_opts(member: &Member, creds: &LocalCredentials, ca: Option<&Path>) -> Opts {
    let builder = OptsBuilder::default()
        .ip_or_hostname(member.host.clone())
        .tcp_port(member.port)
        .user(Some(creds.admin_user.clone()))
        .pass(Some(creds.admin_password.clone()))
        // Stay on TCP: the topology's address is the one to use.
        .prefer_socket(false);
    match ca {
        None => builder.into(),
        Some(ca) => builder
            .ssl_opts(Some(
                SslOpts::default()
                    .with_root_certs(vec![ca.to_path_buf().into()])
                    .with_disable_built_in_roots(true),
            ))
            .into(),
    }
}

/// Ids are `[a-z0-9_]` and patterns `[A-Za-z0-9_$]` around them, so the name needs no
/// escaping inside backticks.
fn create_database_sql(database: &str) -> String {
    format!("CREATE DATABASE IF NOT EXISTS `{database}`")
}

fn check_cluster(doc: &PoolDocument, cluster: &str) -> Result<(), TenantCliError> {
    if doc.cluster(cluster).is_some() {
        return Ok(());
    }
    let known: Vec<&str> = doc.clusters.iter().map(|c| c.name.as_str()).collect();
    Err(TenantCliError::Usage(format!(
        "cluster {cluster} is not a tenant cluster of pool {} (its clusters: {})",
        doc.pool,
        if known.is_empty() {
            "none yet".to_string()
        } else {
            known.join(", ")
        }
    )))
}

// ---------------------------------------------------------------------------------------------
// Output

/// "tenant 42: cluster demo-c1, database t_42, version 2", with the state when the tenant is
/// not active.
pub fn describe(id: &TenantId, route: &Route, naming: &TenantNaming) -> String {
    let mut line = format!(
        "tenant {id}: cluster {}, database {}, version {}",
        route.cluster,
        naming.database(id),
        route.version
    );
    if route.state != TenantState::Active {
        line.push_str(&format!(", state {}", route.state));
    }
    line
}

/// One tenant as `list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TenantRow {
    pub tenant: String,
    pub cluster: String,
    pub database: String,
    pub version: u64,
    pub state: TenantState,
}

pub fn rows(tenants: &[(TenantId, Route)], naming: &TenantNaming) -> Vec<TenantRow> {
    tenants
        .iter()
        .map(|(id, route)| TenantRow {
            tenant: id.to_string(),
            cluster: route.cluster.clone(),
            database: naming.database(id),
            version: route.version,
            state: route.state,
        })
        .collect()
}

/// Aligned columns under a header; a sentence when there is nothing to show.
pub fn table(rows: &[TenantRow], cluster: Option<&str>) -> String {
    if rows.is_empty() {
        return match cluster {
            Some(c) => format!("no tenants on cluster {c}\n"),
            None => "no tenants\n".to_string(),
        };
    }
    let header = ["TENANT", "CLUSTER", "DATABASE", "VERSION", "STATE"];
    let cells: Vec<[String; 5]> = rows
        .iter()
        .map(|r| {
            [
                r.tenant.clone(),
                r.cluster.clone(),
                r.database.clone(),
                r.version.to_string(),
                r.state.to_string(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &cells {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let line = |cells: [&str; 5]| {
        let mut s = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                s.push_str(cell);
            } else {
                s.push_str(&format!("{cell:<w$}  "));
            }
        }
        s.push('\n');
        s
    };
    let mut out = line(header);
    for row in &cells {
        out.push_str(&line(row.each_ref().map(String::as_str)));
    }
    out
}

fn json(rows: &[TenantRow]) -> Result<String, TenantCliError> {
    let mut text = serde_json::to_string_pretty(rows)
        .map_err(|e| TenantCliError::Pool(format!("cannot print the list: {e}")))?;
    text.push('\n');
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_addresses() {
        let opts = proxy_opts("127.0.0.1:6033", Some("app"), Some("pw")).unwrap();
        assert_eq!(
            (opts.ip_or_hostname(), opts.tcp_port()),
            ("127.0.0.1", 6033)
        );
        let v6 = proxy_opts("[::1]:3306", Some("app"), None).unwrap();
        assert_eq!(v6.ip_or_hostname(), "::1");
        for bad in ["6033", "host:", ":3306", "host:port", "host:70000"] {
            assert!(
                matches!(
                    proxy_opts(bad, Some("app"), None),
                    Err(TenantCliError::Usage(_))
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            proxy_opts("h:1", None, None),
            Err(TenantCliError::Usage(_))
        ));
    }

    fn id(s: &str) -> TenantId {
        TenantId::parse(s).unwrap()
    }

    fn route(cluster: &str, version: u64, state: TenantState) -> Route {
        Route {
            cluster: cluster.into(),
            version,
            state,
        }
    }

    #[test]
    fn paths_follow_the_pool_layout() {
        let p = PoolPaths::new("/var/pools/demo");
        assert_eq!(p.document(), Path::new("/var/pools/demo/pool.json"));
        assert_eq!(
            p.credentials(),
            Path::new("/var/pools/demo/credentials.json")
        );
        assert_eq!(p.ca(), Path::new("/var/pools/demo/tls/ca.crt"));
        assert_eq!(
            p.topology("demo-directory"),
            Path::new("/var/pools/demo/clusters/demo-directory/topology.json")
        );
    }

    #[test]
    fn a_tenant_is_described_in_one_line() {
        let naming = TenantNaming::default();
        assert_eq!(
            describe(
                &id("42"),
                &route("demo-c1", 2, TenantState::Active),
                &naming
            ),
            "tenant 42: cluster demo-c1, database t_42, version 2"
        );
        assert_eq!(
            describe(
                &id("42"),
                &route("demo-c1", 1, TenantState::Creating),
                &TenantNaming::parse("shop_{id}").unwrap()
            ),
            "tenant 42: cluster demo-c1, database shop_42, version 1, state creating"
        );
    }

    #[test]
    fn the_list_is_an_aligned_table_or_json() {
        let tenants = vec![
            (id("42"), route("demo-c1", 2, TenantState::Active)),
            (
                id("a_long_tenant_name"),
                route("demo-c10", 11, TenantState::Frozen),
            ),
        ];
        let rows = rows(&tenants, &TenantNaming::default());
        assert_eq!(
            table(&rows, None),
            "\
TENANT              CLUSTER   DATABASE              VERSION  STATE
42                  demo-c1   t_42                  2        active
a_long_tenant_name  demo-c10  t_a_long_tenant_name  11       frozen
"
        );
        assert_eq!(table(&[], None), "no tenants\n");
        assert_eq!(table(&[], Some("c9")), "no tenants on cluster c9\n");
        let parsed: serde_json::Value = serde_json::from_str(&json(&rows).unwrap()).unwrap();
        assert_eq!(
            parsed[0],
            serde_json::json!({
                "tenant": "42", "cluster": "demo-c1", "database": "t_42",
                "version": 2, "state": "active"
            })
        );
        assert_eq!(json(&[]).unwrap(), "[]\n");
    }

    #[test]
    fn databases_are_created_quoted_and_idempotently() {
        assert_eq!(
            create_database_sql("t_42"),
            "CREATE DATABASE IF NOT EXISTS `t_42`"
        );
    }

    #[test]
    fn ids_are_checked_before_anything_runs() {
        assert_eq!(
            Action::of(TenantCommand::Create { id: "42".into() }).unwrap(),
            Action::Create(id("42"))
        );
        for command in [
            TenantCommand::Create { id: "4 2".into() },
            TenantCommand::Where { id: String::new() },
        ] {
            assert_eq!(Action::of(command).unwrap_err().exit_code(), 2);
        }
        assert_eq!(
            Action::of(TenantCommand::List {
                cluster: None,
                output: ListFormat::Json
            })
            .unwrap(),
            Action::List {
                cluster: None,
                format: ListFormat::Json
            }
        );
    }

    #[test]
    fn bad_input_exits_2_and_the_rest_1() {
        let bad_id = TenantCliError::from(TenantId::parse("Nope").unwrap_err());
        assert_eq!(bad_id.exit_code(), 2);
        assert_eq!(
            bad_id.to_string(),
            "invalid tenant id 'Nope': only lowercase letters a-z, digits 0-9 and _ are allowed"
        );
        let unknown = TenantCliError::UnknownTenant(id("9"));
        assert_eq!(unknown.exit_code(), 2);
        assert_eq!(unknown.to_string(), "tenant 9 is not in the directory");
        let down = TenantCliError::from(DirectoryError::Unreachable("x".into()));
        assert_eq!(down.exit_code(), 1);
        assert_eq!(TenantCliError::Pool("x".into()).exit_code(), 1);
    }

    #[test]
    fn clusters_outside_the_pool_are_refused() {
        let doc: PoolDocument = serde_json::from_str(
            r#"{"pool": "demo", "directory": "demo-directory", "clusters": [
                {"name": "demo-c1", "topology": "clusters/demo-c1/topology.json"}]}"#,
        )
        .unwrap();
        assert!(check_cluster(&doc, "demo-c1").is_ok());
        let err = check_cluster(&doc, "demo-directory").unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert_eq!(
            err.to_string(),
            "cluster demo-directory is not a tenant cluster of pool demo (its clusters: demo-c1)"
        );
    }

    #[test]
    fn members_are_reached_over_tcp_as_the_admin() {
        let creds = LocalCredentials {
            admin_user: "lagless_admin".into(),
            admin_password: "pw".into(),
            ..LocalCredentials::generate().unwrap()
        };
        let member = Member::new("demo-c1-0", "127.0.0.1", 3317);
        let plain = member_opts(&member, &creds, None);
        assert_eq!(
            (plain.ip_or_hostname(), plain.tcp_port()),
            ("127.0.0.1", 3317)
        );
        assert_eq!(plain.user(), Some("lagless_admin"));
        assert!(!plain.prefer_socket());
        assert!(plain.ssl_opts().is_none());
        let tls = member_opts(&member, &creds, Some(Path::new("/p/tls/ca.crt")));
        assert!(tls.ssl_opts().is_some());
    }
}
