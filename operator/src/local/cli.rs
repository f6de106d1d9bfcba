//! The `local` subcommands.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::{Args, Subcommand, ValueEnum};
use tokio::sync::watch;

use crate::backup::archive;
use crate::backup::store::Store;
use crate::crd::MySQLCluster;

use super::backup::{self as backups, S3Args};
use super::daemon::{claim, local_tls, spawn_signal_handler};
use super::manifest::POOL_KIND;
use super::mariadb::{self, Binaries};
use super::pool::cli as pool_cli;
use super::pool::{PoolDir, PoolSettings};
use super::process::signal;
use super::process_table::Runtime;
use super::request::{self, RequestKind};
use super::shared::SharedState;
use super::state::{self, LocalCredentials, Settings, StateDir, read_json, write_json};
use super::status::Status;
use super::status_report::write_status_until;
use super::supervisor::Supervisor;
use super::{LocalError, console};

/// Run a cluster on this machine: mariadbd processes, lagless-proxy, the orchestration.
#[derive(Debug, Args)]
pub struct LocalArgs {
    /// The cluster's state directory [default: ~/.local/share/lagless/<name>].
    #[arg(long, global = true, env = "LAGLESS_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Which cluster, when several exist under the default directory; in a tenant pool, which
    /// of its clusters (`switchover --name <pool>-c1`).
    #[arg(long, global = true)]
    pub name: Option<String>,
    #[command(subcommand)]
    pub command: LocalCommand,
}

#[derive(Debug, Subcommand)]
pub enum LocalCommand {
    /// Start the cluster (or tenant pool) described by a MySQLCluster (or MySQLTenantPool) file,
    /// or restart a stopped one.
    Up(UpArgs),
    /// Stop every process of the cluster; the data is kept unless --purge.
    Down {
        /// Also delete the state directory, data included.
        #[arg(long)]
        purge: bool,
    },
    /// Members, roles, positions, lag and proxy endpoints.
    Status {
        #[arg(long, short, value_enum, default_value = "table")]
        output: Output,
        /// Redraw every second until interrupted.
        #[arg(long, short)]
        watch: bool,
    },
    /// Hand the primary role to another member (planned, no errors for clients).
    Switchover {
        /// The member to promote [default: the best replica].
        #[arg(long)]
        to: Option<String>,
    },
    /// Stop orchestrating (no failover, switchover, re-pointing or re-seed) until `resume`;
    /// the members are still observed and reported. For maintenance done by hand.
    Pause,
    /// Orchestrate again after `pause`: what waited is planned again from what is seen now.
    Resume,
    /// Keep a member out of read routing (the proxies send it no reads) until `uncordon`; it
    /// keeps replicating. A primary is cordoned once it is a replica.
    Cordon {
        /// The member, e.g. shop-1.
        member: String,
    },
    /// Route reads to a cordoned member again.
    Uncordon {
        /// The member, e.g. shop-1.
        member: String,
    },
    /// Make the whole cluster read-only (`on`: the primary refuses writes with error 1290,
    /// reads go on) or writable again (`off`).
    ReadOnly {
        #[arg(value_enum)]
        state: Switch,
    },
    /// Change the running cluster's spec.serverConfig to a MySQLCluster file's: members are
    /// restarted with it one at a time, replicas first (each out of read routing, then caught
    /// up), the primary after a switchover. Waits until every member runs it.
    Apply {
        /// The MySQLCluster YAML.
        #[arg(long, short)]
        file: PathBuf,
        /// Return once the change is taken; `status` shows the roll.
        #[arg(long)]
        no_wait: bool,
    },
    /// Restart every member the same way, one at a time, replicas first, the primary after a
    /// switchover: e.g. after upgrading MariaDB (`status` marks members started before
    /// mariadbd was replaced). Waits until every member is restarted.
    Restart {
        /// Return once the restart is taken; `status` shows the roll.
        #[arg(long)]
        no_wait: bool,
    },
    /// Simulate a crash: SIGKILL a member's mariadbd.
    Kill {
        /// The member, e.g. shop-0.
        member: String,
    },
    /// Empty a member and copy the data into it again from a replica (the way back for a
    /// quarantined member; what it held alone is discarded).
    Reseed {
        /// The member, e.g. shop-0.
        member: String,
    },
    /// Change the number of members; new ones are seeded from a replica.
    Scale {
        /// Members wanted (1-9).
        replicas: u32,
    },
    /// Print a log: the operator's (default), a member's error log, or a proxy's.
    Logs {
        /// `operator`, a member name (shop-1) or a proxy (proxy-0).
        target: Option<String>,
        /// Keep printing what is appended.
        #[arg(long, short)]
        follow: bool,
        /// Lines to print from the end.
        #[arg(long, short = 'n', default_value_t = 50)]
        lines: usize,
    },
    /// Take a full backup (mariadb-backup, zstd) from a caught-up replica, or the primary of a
    /// one-member cluster, into a directory or S3; its manifest is written last.
    Backup {
        /// A directory (a path or file:///path) or s3://bucket/prefix [default:
        /// spec.backup.destination, with its S3 settings].
        #[arg(long)]
        to: Option<String>,
        /// Once this backup is complete, delete this cluster's older complete backups there
        /// beyond the newest KEEP (this one included).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        keep: Option<u32>,
        #[command(flatten)]
        s3: S3Args,
    },
    /// A restore drill: the newest backup restored into a scratch server, rolled forward with
    /// the binary log archive to a consistent snapshot of a replicating replica, and every
    /// table compared with that snapshot.
    Drill {
        /// A directory or s3://bucket/prefix [default: spec.backup.destination].
        #[arg(long)]
        from: Option<String>,
        /// The backup's id [default: the newest that precedes the snapshot].
        #[arg(long)]
        backup: Option<String>,
        #[command(flatten)]
        s3: S3Args,
    },
    /// List the complete backups at a destination, newest first.
    Backups {
        /// A directory (a path or file:///path) or s3://bucket/prefix.
        #[arg(long)]
        from: String,
        #[arg(long, short, value_enum, default_value = "table")]
        output: Output,
        #[command(flatten)]
        s3: S3Args,
    },
    /// Create a new cluster from a backup: every member starts from the backup (checked
    /// against its manifest first), the first as primary, the others replicating from it.
    Restore(RestoreArgs),
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// A directory (a path or file:///path) or s3://bucket/prefix.
    #[arg(long)]
    pub from: String,
    /// The backup's id [default: the newest, or with --to the newest taken before it].
    #[arg(long)]
    pub backup: Option<String>,
    /// Recover to a point in time: a second (`2026-12-07T06:32:14Z`, or `2026-12-07
    /// 06:32:14`, UTC; every transaction up to and including it) or a GTID position
    /// (`0-1-123`, included), by replaying the binary log archive onto the backup.
    #[arg(long)]
    pub to: Option<String>,
    /// The new cluster's MySQLCluster YAML.
    #[arg(long, short)]
    pub file: PathBuf,
    /// Start in the background and return once the cluster is up.
    #[arg(long, short)]
    pub detach: bool,
    /// As for `up`.
    #[arg(long)]
    pub base_port: Option<u16>,
    /// As for `up`.
    #[arg(long)]
    pub proxy_port: Option<u16>,
    #[command(flatten)]
    pub s3: S3Args,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// The MySQLCluster or MySQLTenantPool YAML [default: the one the state directory holds].
    #[arg(long, short)]
    pub file: Option<PathBuf>,
    /// Start in the background and return once the cluster is up.
    #[arg(long, short)]
    pub detach: bool,
    /// Member i listens on BASE_PORT + i [default: 3307, or the port chosen before].
    #[arg(long)]
    pub base_port: Option<u16>,
    /// Proxy i listens on PROXY_PORT + 2i, its HTTP admin endpoint on the next port
    /// [default: 6033, or the port chosen before].
    #[arg(long)]
    pub proxy_port: Option<u16>,
    /// Run as the background supervisor (used by --detach).
    #[arg(long, hide = true)]
    pub supervise: bool,
}

/// `on` or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Switch {
    On,
    Off,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

/// Runs a `local` command; returns the exit code.
pub fn run(mut args: LocalArgs, log_filter: &str) -> i32 {
    // Servers and installers run in other working directories: every path must be absolute.
    if let Some(dir) = args.state_dir.take() {
        args.state_dir = Some(std::path::absolute(&dir).unwrap_or(dir));
    }
    let result = match args.command {
        LocalCommand::Up(ref up) => self::up(&args, up, log_filter),
        LocalCommand::Backups {
            ref from,
            output,
            ref s3,
        } => backups::list(from, s3, output == Output::Json),
        LocalCommand::Restore(ref restore) => self::restore(&args, restore, log_filter),
        _ => dir(&args).and_then(|d| {
            if PoolDir::is_pool(d.root()) {
                on_pool(&args, &PoolDir::new(d.root()))
            } else {
                on_cluster(&args, &d)
            }
        }),
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            e.exit_code()
        }
    }
}

/// A command other than `up` on a cluster.
fn on_cluster(args: &LocalArgs, d: &StateDir) -> Result<(), LocalError> {
    match args.command {
        LocalCommand::Up(_) | LocalCommand::Backups { .. } | LocalCommand::Restore(_) => Ok(()),
        LocalCommand::Backup {
            ref to,
            keep,
            ref s3,
        } => backups::backup(d, to.as_deref(), keep, s3),
        LocalCommand::Drill {
            ref from,
            ref backup,
            ref s3,
        } => super::drill::drill(d, from.as_deref(), backup.as_deref(), s3),
        LocalCommand::Down { purge } => down(d, purge),
        LocalCommand::Status { output, watch } => show(d, output, watch),
        LocalCommand::Switchover { ref to } => switchover(d, to.clone()),
        LocalCommand::Kill { ref member } => kill(d, member),
        LocalCommand::Pause => pause(d, RequestKind::Pause),
        LocalCommand::Resume => pause(d, RequestKind::Resume),
        LocalCommand::Cordon { ref member } => pause(
            d,
            RequestKind::Cordon {
                member: member.clone(),
            },
        ),
        LocalCommand::Uncordon { ref member } => pause(
            d,
            RequestKind::Uncordon {
                member: member.clone(),
            },
        ),
        LocalCommand::ReadOnly { state } => pause(
            d,
            RequestKind::ReadOnly {
                on: state == Switch::On,
            },
        ),
        LocalCommand::Scale { replicas } => scale(d, replicas),
        LocalCommand::Reseed { ref member } => reseed(d, member),
        LocalCommand::Apply { ref file, no_wait } => apply(d, file, no_wait),
        LocalCommand::Restart { no_wait } => {
            println!("{}", submit_and_wait(d, RequestKind::Restart)?);
            if no_wait {
                return Ok(());
            }
            wait_for_roll(d, "every member is restarted")
        }
        LocalCommand::Logs {
            ref target,
            follow,
            lines,
        } => logs(d, target.as_deref(), follow, lines),
    }
}

/// A command other than `up` on a tenant pool: about the pool, or about one of its clusters
/// (found from a member's name or `--name`), which is an ordinary local cluster.
fn on_pool(args: &LocalArgs, pool: &PoolDir) -> Result<(), LocalError> {
    let clusters = pool.cluster_names();
    let pool_name = read_json::<PoolSettings>(&pool.settings())
        .map(|s| s.pool)
        .unwrap_or_default();
    match args.command {
        LocalCommand::Up(_) | LocalCommand::Backups { .. } | LocalCommand::Restore(_) => Ok(()),
        LocalCommand::Backup { .. } | LocalCommand::Drill { .. } => {
            Err(LocalError::Usage(format!(
                "back up one of pool {pool_name}'s clusters: --state-dir {}",
                pool.cluster(clusters.first().map_or("CLUSTER", String::as_str))
                    .root()
                    .display()
            )))
        }
        LocalCommand::Down { purge } => pool_cli::down(pool, purge),
        LocalCommand::Status { output, watch } => {
            pool_cli::show(pool, output == Output::Json, watch)
        }
        LocalCommand::Switchover { ref to } => {
            let cluster = pool_cli::switchover_cluster(
                &clusters,
                &pool_name,
                args.name.as_deref(),
                to.as_deref(),
            )?;
            switchover(&pool.cluster(&cluster), to.clone())
        }
        LocalCommand::Kill { ref member } => {
            let cluster = pool_cli::member_cluster(&clusters, &pool_name, member)?;
            kill(&pool.cluster(&cluster), member)
        }
        LocalCommand::Pause | LocalCommand::Resume => {
            // One cluster at a time: which one must be said.
            let cluster =
                pool_cli::switchover_cluster(&clusters, &pool_name, args.name.as_deref(), None)?;
            let kind = match args.command {
                LocalCommand::Pause => RequestKind::Pause,
                _ => RequestKind::Resume,
            };
            pause(&pool.cluster(&cluster), kind)
        }
        LocalCommand::Cordon { ref member } | LocalCommand::Uncordon { ref member } => {
            let cluster = pool_cli::member_cluster(&clusters, &pool_name, member)?;
            let member = member.clone();
            let kind = match args.command {
                LocalCommand::Cordon { .. } => RequestKind::Cordon { member },
                _ => RequestKind::Uncordon { member },
            };
            pause(&pool.cluster(&cluster), kind)
        }
        LocalCommand::ReadOnly { state } => {
            // One cluster at a time: which one must be said.
            let cluster =
                pool_cli::switchover_cluster(&clusters, &pool_name, args.name.as_deref(), None)?;
            pause(
                &pool.cluster(&cluster),
                RequestKind::ReadOnly {
                    on: state == Switch::On,
                },
            )
        }
        LocalCommand::Reseed { ref member } => {
            let cluster = pool_cli::member_cluster(&clusters, &pool_name, member)?;
            reseed(&pool.cluster(&cluster), member)
        }
        LocalCommand::Apply { .. } => Err(LocalError::Usage(format!(
            "pool {pool_name}'s clusters take their spec from the pool's file; `apply` changes \
             a cluster of its own"
        ))),
        LocalCommand::Restart { no_wait } => {
            // One cluster at a time: which one must be said.
            let cluster =
                pool_cli::switchover_cluster(&clusters, &pool_name, args.name.as_deref(), None)?;
            let dir = pool.cluster(&cluster);
            println!("{}", submit_and_wait(&dir, RequestKind::Restart)?);
            if no_wait {
                return Ok(());
            }
            wait_for_roll(&dir, "every member is restarted")
        }
        LocalCommand::Scale { .. } => Err(LocalError::Usage(format!(
            "pool {pool_name}'s clusters all have the template's size \
             (spec.clusterTemplate.replicas); the pool grows by clusters, not members"
        ))),
        LocalCommand::Logs {
            ref target,
            follow,
            lines,
        } => print_log(&pool_cli::log_path(pool, target.as_deref())?, follow, lines),
    }
}

fn dir(args: &LocalArgs) -> Result<StateDir, LocalError> {
    state::resolve(args.state_dir.as_deref(), args.name.as_deref())
}

/// How to repeat `--state-dir` in the commands printed for the user.
fn command_prefix(args: &LocalArgs, dir: &StateDir) -> String {
    match &args.state_dir {
        Some(_) => format!(
            "lagless-operator local --state-dir {}",
            dir.root().display()
        ),
        None => "lagless-operator local".to_string(),
    }
}

fn cluster_name(cluster: &MySQLCluster) -> String {
    cluster.metadata.name.clone().unwrap_or_default()
}

// ---------------------------------------------------------------------------------------------
// up

fn up(args: &LocalArgs, up: &UpArgs, log_filter: &str) -> Result<(), LocalError> {
    if up.supervise {
        let dir = args
            .state_dir
            .clone()
            .ok_or_else(|| LocalError::Other("--supervise needs --state-dir".into()))?;
        if PoolDir::is_pool(&dir) {
            return pool_cli::supervise(&PoolDir::new(dir), log_filter, None);
        }
        return supervise(&StateDir::new(dir), log_filter, None);
    }
    if let Some((text, source)) = pool_manifest(args, up)? {
        let options = pool_cli::UpOptions {
            state_dir: args.state_dir.clone(),
            name: args.name.clone(),
            base_port: up.base_port,
            proxy_port: up.proxy_port,
        };
        let (dir, _) = pool_cli::prepare(&text, &source, &options)?;
        let prefix = command_prefix(args, &StateDir::new(dir.root()));
        return if up.detach {
            pool_cli::detach(&dir, &prefix)
        } else {
            pool_cli::supervise(&dir, log_filter, Some(prefix))
        };
    }
    let (dir, cluster) = prepare(args, up)?;
    if up.detach {
        detach(args, &dir, &cluster)
    } else {
        supervise(&dir, log_filter, Some(command_prefix(args, &dir)))
    }
}

/// `restore`: the backup is found (and the storage reached) before anything is created; the
/// new cluster's state directory is made as `up` makes it, its members restored, then the
/// cluster started. A restore that fails removes the state directory it made: nothing
/// half-restored is left to start.
fn restore(args: &LocalArgs, r: &RestoreArgs, log_filter: &str) -> Result<(), LocalError> {
    let (location, store) = r.s3.store(&r.from)?;
    let runtime = crate::runtime()
        .map_err(|e| LocalError::Other(format!("cannot start the runtime: {e}")))?;
    let backup = runtime.block_on(backups::find(&store, r.backup.as_deref()))?;
    let pitr = match &r.to {
        None => None,
        Some(to) => {
            let target = archive::Target::parse(to).map_err(LocalError::Usage)?;
            // The archive of the cluster the backups are of.
            let archive_location = archive::location(&location, &backup.cluster);
            let options = r.s3.options(&location)?;
            let archive_store = Store::open(&archive_location, options.as_ref())?;
            let all: Vec<_> = runtime
                .block_on(backups::manifests(&store))?
                .into_iter()
                .filter(|m| m.cluster == backup.cluster)
                .collect();
            let (segments, archived, covered) =
                runtime.block_on(super::pitr::read_archive(&archive_store))?;
            let plan = super::pitr::plan(
                &all,
                r.backup.as_deref(),
                target,
                segments,
                &archived,
                covered,
            )
            .map_err(|e| LocalError::Usage(format!("cannot restore to {to}: {e}")))?;
            Some((archive_store, plan))
        }
    };
    let backup = pitr
        .as_ref()
        .map_or(backup, |(_, plan)| plan.backup.clone());
    match &pitr {
        None => println!("restoring backup {} from {location}", backup.id),
        Some((_, plan)) => println!(
            "restoring backup {} from {location}, then its archived transactions up to {} \
             ({} segments)",
            backup.id,
            plan.target,
            plan.segments.len()
        ),
    }
    let text = std::fs::read_to_string(&r.file).map_err(LocalError::io(&r.file))?;
    let name = cluster_name(&super::manifest::parse(&text, &r.file)?);
    let root = state::root_for(args.state_dir.as_deref(), args.name.as_deref(), &name)?;
    // Removed again if the restore fails, so it must hold nothing else.
    let empty = std::fs::read_dir(&root).map_or(true, |mut d| d.next().is_none());
    if !empty {
        return Err(LocalError::Usage(format!(
            "{} is not empty; a restore makes a new cluster: choose another --state-dir, or \
             remove a cluster there with `lagless-operator local --state-dir {} down --purge`",
            root.display(),
            root.display()
        )));
    }
    let up = UpArgs {
        file: Some(r.file.clone()),
        detach: r.detach,
        base_port: r.base_port,
        proxy_port: r.proxy_port,
        supervise: false,
    };
    let made = prepare(args, &up).and_then(|(dir, cluster)| {
        // Until the members are filled, the directory must not look like a cluster to `up`
        // (should this process be killed midway).
        let marker = dir.restoring();
        std::fs::write(&marker, backup.id.as_bytes()).map_err(LocalError::io(&marker))?;
        let settings: Settings = read_json(&dir.settings())?;
        let mut creds: LocalCredentials = read_json(&dir.credentials())?;
        if creds.fill_in()? {
            write_json(&dir.credentials(), &creds, 0o600)?;
        }
        runtime.block_on(backups::restore_members(
            &dir,
            &settings,
            &creds,
            &store,
            &backup,
            pitr.as_ref().map(|(s, p)| (s, p)),
        ))?;
        std::fs::remove_file(&marker).map_err(LocalError::io(&marker))?;
        Ok((dir, cluster))
    });
    drop(runtime);
    let (dir, cluster) = match made {
        Ok(made) => made,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&root);
            return Err(e);
        }
    };
    if r.detach {
        detach(args, &dir, &cluster)
    } else {
        supervise(&dir, log_filter, Some(command_prefix(args, &dir)))
    }
}

/// The pool manifest `up` starts, with where it was read: the `-f` file when it is a
/// `MySQLTenantPool`, else the pool kept in the state directory, if that holds one.
fn pool_manifest(args: &LocalArgs, up: &UpArgs) -> Result<Option<(String, PathBuf)>, LocalError> {
    if let Some(file) = &up.file {
        let text = std::fs::read_to_string(file).map_err(LocalError::io(file))?;
        let is_pool = super::manifest::kind_of(&text).as_deref() == Some(POOL_KIND);
        return Ok(is_pool.then(|| (text, file.clone())));
    }
    let Ok(dir) = dir(args) else {
        return Ok(None);
    };
    if !PoolDir::is_pool(dir.root()) {
        return Ok(None);
    }
    let path = PoolDir::new(dir.root()).manifest();
    let text = std::fs::read_to_string(&path).map_err(LocalError::io(&path))?;
    Ok(Some((text, path)))
}

/// Everything `up` checks and records before any process starts.
fn prepare(args: &LocalArgs, up: &UpArgs) -> Result<(StateDir, MySQLCluster), LocalError> {
    let (cluster, text) = match (&up.file, &args.state_dir, &args.name) {
        (Some(file), _, _) => {
            let text = std::fs::read_to_string(file).map_err(LocalError::io(file))?;
            (super::manifest::parse(&text, file)?, text)
        }
        (None, _, _) => {
            let dir = dir(args).map_err(|e| match e {
                LocalError::NoCluster(root) => LocalError::Other(format!(
                    "no cluster under {}: pass the MySQLCluster file with -f FILE",
                    root.display()
                )),
                other => other,
            })?;
            let file = dir.manifest();
            let text = std::fs::read_to_string(&file).map_err(|_| {
                LocalError::Other(format!(
                    "{} holds no cluster: pass the MySQLCluster file with -f FILE",
                    dir.root().display()
                ))
            })?;
            (super::manifest::parse(&text, &file)?, text)
        }
    };
    let name = cluster_name(&cluster);
    let dir = StateDir::new(state::root_for(
        args.state_dir.as_deref(),
        args.name.as_deref(),
        &name,
    )?);
    state::ensure_stopped(&name, dir.supervisor_pid(), dir.running())?;
    if dir.restoring().exists() {
        return Err(LocalError::Usage(format!(
            "{} holds a restore that did not finish: remove it with `lagless-operator local \
             --state-dir {} down --purge` and restore again",
            dir.root().display(),
            dir.root().display()
        )));
    }
    std::fs::create_dir_all(dir.root()).map_err(LocalError::io(dir.root()))?;
    let previous: Option<Settings> = read_json(&dir.settings()).ok();
    if let Some(pool) = previous.as_ref().and_then(|p| p.pool.as_deref()) {
        return Err(LocalError::Usage(format!(
            "cluster {name} belongs to tenant pool {pool}, which starts it: run `up` on the \
             pool's state directory"
        )));
    }
    if let Some(p) = &previous
        && p.cluster != name
    {
        return Err(LocalError::Other(format!(
            "{} holds cluster {}, not {name}: use another --state-dir, or remove it with \
             `lagless-operator local --state-dir {} down --purge`",
            dir.root().display(),
            p.cluster,
            dir.root().display()
        )));
    }
    let namespace = cluster.metadata.namespace.as_deref().unwrap_or("default");
    let settings = Settings {
        cluster: name.clone(),
        base_port: up
            .base_port
            .or(previous.as_ref().map(|p| p.base_port))
            .unwrap_or(3307),
        proxy_port: up
            .proxy_port
            .or(previous.as_ref().map(|p| p.proxy_port))
            .unwrap_or(6033),
        replicas: u32::try_from(cluster.spec.replicas).unwrap_or(1),
        server_id_base: previous
            .as_ref()
            .map_or(cluster.spec.server_id_base(namespace, &name), |p| {
                p.server_id_base
            }),
        gtid_domain_id: previous
            .as_ref()
            .map_or(cluster.spec.gtid_domain_id(namespace, &name), |p| {
                p.gtid_domain_id
            }),
        pool: None,
        paused: super::pause::paused_at_up(
            up.file.is_some(),
            cluster.spec.paused,
            previous.as_ref().map(|p| p.paused),
            dir.topology().is_file(),
        )
        .map_err(LocalError::Usage)?,
        cordoned: super::cordon::cordoned_at_up(
            up.file.is_some(),
            &cluster.spec.cordoned,
            previous.as_ref().map(|p| p.cordoned.as_slice()),
        ),
        read_only: super::read_only::read_only_at_up(
            up.file.is_some(),
            cluster.spec.read_only,
            previous.as_ref().map(|p| p.read_only),
        ),
        backup_credentials: match &up.file {
            Some(file) => backup_credentials(&cluster, file),
            None => previous.as_ref().and_then(|p| p.backup_credentials.clone()),
        },
    };
    // A restarted cluster keeps members it was scaled to; the file only sets the first size.
    let settings = match &previous {
        Some(p) if up.file.is_none() => Settings {
            replicas: p.replicas,
            ..settings
        },
        _ => settings,
    };
    check_port_ranges(&settings, &cluster)?;
    Binaries::locate()?;
    super::ports::ensure_members_free(&settings)?;
    let proxies = usize::try_from(cluster.spec.proxy.replicas.max(1)).unwrap_or(1);
    super::ports::ensure_proxies_free(settings.proxy_port, proxies)?;
    if !dir.credentials().is_file() {
        write_json(&dir.credentials(), &LocalCredentials::generate()?, 0o600)?;
    }
    let manifest = dir.manifest();
    std::fs::write(&manifest, text).map_err(LocalError::io(&manifest))?;
    write_json(&dir.settings(), &settings, 0o644)?;
    // A stale status from an earlier run must not be mistaken for this one's.
    let _ = std::fs::remove_file(dir.status());
    Ok((dir, cluster))
}

/// `spec.backup.s3.credentialsFile`, relative to the cluster file's directory.
fn backup_credentials(cluster: &MySQLCluster, file: &Path) -> Option<PathBuf> {
    let named = cluster
        .spec
        .backup
        .as_ref()?
        .s3
        .as_ref()?
        .credentials_file
        .as_ref()?;
    let base = file.parent().unwrap_or(Path::new("."));
    let path = base.join(named);
    Some(std::path::absolute(&path).unwrap_or(path))
}

const MAX_MEMBERS: u32 = crate::crd::MAX_MEMBERS.unsigned_abs();

/// Members may grow to the most a cluster can have; proxies must stay out of that range.
fn check_port_ranges(settings: &Settings, cluster: &MySQLCluster) -> Result<(), LocalError> {
    let members = u32::from(settings.base_port)..u32::from(settings.base_port) + MAX_MEMBERS;
    let proxies = u32::try_from(cluster.spec.proxy.replicas.max(1)).unwrap_or(1);
    let proxy_ports = u32::from(settings.proxy_port)..u32::from(settings.proxy_port) + 2 * proxies;
    if members.start < proxy_ports.end && proxy_ports.start < members.end {
        return Err(LocalError::Usage(format!(
            "the proxy ports {}-{} overlap the member ports {}-{} (members may grow to 9): choose --base-port and --proxy-port further apart",
            proxy_ports.start,
            proxy_ports.end - 1,
            members.start,
            members.end - 1
        )));
    }
    Ok(())
}

/// Runs the supervisor in this process until SIGINT/SIGTERM. With `display` (the command
/// prefix to print in the banner), shows progress and then a live view on the terminal; the
/// log goes to `operator.log` either way.
fn supervise(dir: &StateDir, log_filter: &str, display: Option<String>) -> Result<(), LocalError> {
    let text = std::fs::read_to_string(dir.manifest()).map_err(LocalError::io(&dir.manifest()))?;
    let cluster = super::manifest::parse(&text, &dir.manifest())?;
    let settings: Settings = read_json(&dir.settings())?;
    let mut creds: LocalCredentials = read_json(&dir.credentials())?;
    if creds.fill_in()? {
        write_json(&dir.credentials(), &creds, 0o600)?;
    }
    let _lock = claim(
        &dir.lock(),
        &dir.pid(),
        &dir.log(),
        log_filter,
        &settings.cluster,
        || dir.supervisor_pid(),
    )?;
    let tls = match &cluster.spec.tls {
        Some(_) => Some(local_tls(dir.tls(), &settings.cluster)?),
        None => None,
    };
    let rt = Runtime {
        dir: dir.clone(),
        bins: Binaries::locate()?,
        creds,
        server_config: cluster.spec.server_config.clone().into(),
        replication: cluster.spec.replication.clone(),
        consistency: cluster.spec.proxy.default_consistency.clone(),
        tls,
    };
    let runtime = crate::runtime()
        .map_err(|e| LocalError::Other(format!("cannot start the runtime: {e}")))?;
    let shows = display.is_some();
    let result = runtime.block_on(async move {
        let (stop_tx, stop_rx) = watch::channel(false);
        spawn_signal_handler(stop_tx, "cluster");
        let shared = SharedState::default();
        let supervisor = Supervisor::new(rt, cluster, settings.clone(), shared.clone());
        let rt = supervisor.runtime();
        let writer = tokio::spawn(write_status_until(
            shared.clone(),
            rt.clone(),
            settings.clone(),
            stop_rx.clone(),
        ));
        let (done_tx, done_rx) = watch::channel(false);
        let view = display.map(|prefix| {
            let (shared, rt, settings) = (shared.clone(), rt.clone(), settings.clone());
            let banner_rt = rt.clone();
            tokio::spawn(console::live_view(
                move || super::status_report::status(&shared.lock(), &rt, &settings),
                move |s| banner_text(s, &banner_rt.creds, &prefix, &banner_rt.dir),
                "cluster",
                done_rx,
            ))
        });
        let result = supervisor.run(stop_rx).await;
        let _ = done_tx.send(true);
        if let Some(view) = view {
            let _ = view.await;
        }
        writer.abort();
        let final_status = super::status_report::status(&shared.lock(), &rt, &settings);
        let _ = write_json(&rt.dir.status(), &final_status, 0o644);
        result
    });
    let _ = std::fs::remove_file(dir.pid());
    if shows && result.is_ok() {
        println!(
            "stopped; the data is kept in {} (`lagless-operator local down --purge` deletes it)",
            dir.root().display()
        );
    }
    result
}

fn banner_text(s: &Status, creds: &LocalCredentials, prefix: &str, dir: &StateDir) -> String {
    let mut out = String::new();
    let proxy = s.proxies.first();
    let members = s.members.len();
    out.push_str(&format!(
        "Lagless cluster \"{}\" is running: {members} MariaDB members (primary {}), {} lagless-proxy.\n\n",
        s.cluster,
        s.primary.as_deref().unwrap_or("-"),
        s.proxies.len()
    ));
    if let Some(p) = proxy {
        out.push_str(
            "Connect through the proxy (writes go to the primary, reads to replicas that have caught up):\n",
        );
        let tls = s.connect.as_ref().map(|c| c.tls_args()).unwrap_or_default();
        out.push_str(&format!(
            "  mariadb -h127.0.0.1 -P{}{tls} -u{} -p{} {}\n",
            p.port, creds.app_user, creds.app_password, creds.database
        ));
        out.push_str(&format!(
            "Proxy metrics and topology: curl -s 127.0.0.1:{0}/metrics ; curl -s 127.0.0.1:{0}/topology\n\n",
            p.admin_port
        ));
    }
    let primary = s.primary.as_deref().unwrap_or("MEMBER");
    for (cmd, what) in [
        ("status".to_string(), "members, roles, positions, lag"),
        (
            format!("kill {primary}"),
            "crash the primary; watch the failover",
        ),
        (
            "switchover [--to MEMBER]".to_string(),
            "hand the primary role over",
        ),
        (
            format!("scale {}", members + 1),
            "add a member, seeded from a replica",
        ),
        (
            "logs [MEMBER|proxy-0]".to_string(),
            "the operator's log, or a server's",
        ),
        ("down [--purge]".to_string(), "stop (and delete the data)"),
    ] {
        out.push_str(&format!("  {prefix} {cmd:<26} {what}\n"));
    }
    out.push_str(&format!("State directory: {}\n", dir.root().display()));
    out
}

/// Starts the supervisor in the background and waits until the cluster is up.
fn detach(args: &LocalArgs, dir: &StateDir, cluster: &MySQLCluster) -> Result<(), LocalError> {
    console::detach(
        dir.root(),
        &dir.log(),
        &dir.status(),
        &format!("cluster {}", cluster_name(cluster)),
        |s: &Status| {
            let creds: LocalCredentials = read_json(&dir.credentials())?;
            Ok(banner_text(s, &creds, &command_prefix(args, dir), dir))
        },
    )
}

// ---------------------------------------------------------------------------------------------
// Commands on a running cluster

fn require_running(dir: &StateDir) -> Result<Status, LocalError> {
    let name = dir
        .root()
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if !dir.running() {
        return Err(LocalError::NotRunning(name));
    }
    read_json(&dir.status())
}

fn down(dir: &StateDir, purge: bool) -> Result<(), LocalError> {
    let name = read_json::<Settings>(&dir.settings())
        .map(|s| s.cluster)
        .unwrap_or_else(|_| dir.root().display().to_string());
    match dir.supervisor_pid() {
        Some(pid) => {
            signal(pid, libc::SIGTERM).map_err(|e| LocalError::Other(e.to_string()))?;
            print!("stopping {name} ...");
            let _ = std::io::stdout().flush();
            let began = Instant::now();
            console::wait_stopped(pid, || dir.running(), &dir.log(), Duration::from_secs(180))?;
            println!(" stopped in {:.1} s", began.elapsed().as_secs_f64());
        }
        None if !dir.manifest().is_file() => {
            return Err(LocalError::NoCluster(dir.root().to_path_buf()));
        }
        None => println!("{name} is not running"),
    }
    if purge {
        std::fs::remove_dir_all(dir.root()).map_err(LocalError::io(dir.root()))?;
        println!("deleted {}", dir.root().display());
    } else {
        println!(
            "data kept in {}; `down --purge` deletes it, `up` starts it again",
            dir.root().display()
        );
    }
    Ok(())
}

fn show(dir: &StateDir, output: Output, watch: bool) -> Result<(), LocalError> {
    console::show(|| read_status(dir), output == Output::Json, watch)
}

/// The cluster's status, every process marked stopped when no supervisor runs.
fn read_status(dir: &StateDir) -> Result<Status, LocalError> {
    let running = dir.running();
    let mut s: Status = match read_json(&dir.status()) {
        Ok(s) => s,
        Err(_) if dir.manifest().is_file() => Status {
            cluster: dir
                .root()
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
            ..Status::default()
        },
        Err(_) => return Err(LocalError::NoCluster(dir.root().to_path_buf())),
    };
    if !running {
        s.phase = "stopped".into();
        for m in &mut s.members {
            m.pid = None;
            m.process = "stopped".into();
        }
        for p in &mut s.proxies {
            p.pid = None;
            p.running = false;
        }
    }
    Ok(s)
}

/// Files a request and waits for its result, printing seeding progress meanwhile.
fn submit_and_wait(dir: &StateDir, kind: RequestKind) -> Result<String, LocalError> {
    require_running(dir)?;
    let id = request::submit(dir, kind)?;
    let mut last_progress = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(200));
        if !dir.running() {
            return Err(LocalError::Other(
                "the supervisor stopped before the request finished".into(),
            ));
        }
        let Ok(s) = read_json::<Status>(&dir.status()) else {
            continue;
        };
        if let Some(result) = s.result(&id) {
            return if result.ok {
                Ok(result.message.clone())
            } else {
                Err(LocalError::Other(result.message.clone()))
            };
        }
        if let Some(seed) = &s.seeding
            && last_progress.elapsed() > Duration::from_secs(1)
        {
            last_progress = Instant::now();
            let mib = seed.bytes as f64 / 1_048_576.0;
            let secs = seed.elapsed_ms as f64 / 1000.0;
            println!(
                "seeding {} from {}: {mib:.1} MiB in {secs:.1} s",
                seed.member, seed.donor
            );
        }
    }
}

fn switchover(dir: &StateDir, to: Option<String>) -> Result<(), LocalError> {
    let message = submit_and_wait(dir, RequestKind::Switchover { to })?;
    println!("{message}");
    Ok(())
}

fn scale(dir: &StateDir, replicas: u32) -> Result<(), LocalError> {
    let max = MAX_MEMBERS;
    if !(1..=max).contains(&replicas) {
        return Err(LocalError::Other(format!(
            "scale: {replicas} members asked; between 1 and {max} are possible"
        )));
    }
    let message = submit_and_wait(dir, RequestKind::Scale { replicas })?;
    println!("{message}");
    Ok(())
}

fn reseed(dir: &StateDir, member: &str) -> Result<(), LocalError> {
    let message = submit_and_wait(
        dir,
        RequestKind::Reseed {
            member: member.to_string(),
        },
    )?;
    println!("{message}");
    Ok(())
}

/// `pause`, `resume`, `cordon`, `uncordon` or `read-only`: carried out by the supervisor at
/// once.
fn pause(dir: &StateDir, kind: RequestKind) -> Result<(), LocalError> {
    let message = submit_and_wait(dir, kind)?;
    println!("{message}");
    Ok(())
}

/// `apply`: the file is checked here first (a refusal needs no running supervisor to explain
/// it), then handed to the supervisor, whose roll this waits for, printing its progress.
fn apply(dir: &StateDir, file: &Path, no_wait: bool) -> Result<(), LocalError> {
    require_running(dir)?;
    let text = std::fs::read_to_string(file).map_err(LocalError::io(file))?;
    let wanted = super::manifest::parse(&text, file)?;
    let running = super::manifest::load(&dir.manifest())?;
    let changes = super::apply::config_changes(&running, &wanted).map_err(LocalError::Usage)?;
    // The same file again goes on with a roll that stopped; the supervisor says which.
    let stopped = read_json::<super::status::Status>(&dir.status())
        .is_ok_and(|s| s.roll.is_some_and(|r| r.stopped.is_some()));
    if changes.is_empty() && !stopped {
        println!("nothing to change: the file's serverConfig is the running one");
        return Ok(());
    }
    let message = submit_and_wait(dir, RequestKind::Apply { manifest: text })?;
    println!("{message}");
    if no_wait {
        return Ok(());
    }
    wait_for_roll(dir, "every member runs the new serverConfig")
}

/// Waits for the roll `apply` or `restart` started, printing its progress; `done` is said at
/// the end, with the primary.
fn wait_for_roll(dir: &StateDir, done: &str) -> Result<(), LocalError> {
    let mut last = String::new();
    loop {
        if !dir.running() {
            return Err(LocalError::Other(
                "the supervisor stopped before the roll finished; `up` goes on with it".into(),
            ));
        }
        if let Ok(s) = read_json::<Status>(&dir.status()) {
            let Some(roll) = &s.roll else {
                println!(
                    "{done}; the primary is {}",
                    s.primary.as_deref().unwrap_or("-")
                );
                return Ok(());
            };
            if let Some(why) = &roll.stopped {
                return Err(LocalError::Other(format!("the roll stopped: {why}")));
            }
            let line = roll.describe();
            if line != last {
                println!("{line}");
                last = line;
            }
            if roll
                .waiting
                .as_deref()
                .is_some_and(|w| w.contains("paused"))
            {
                println!("the roll goes on once the orchestration is resumed (`resume`)");
                return Ok(());
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn kill(dir: &StateDir, member: &str) -> Result<(), LocalError> {
    let s = require_running(dir)?;
    let Some(m) = s.member(member) else {
        let names: Vec<&str> = s.members.iter().map(|m| m.name.as_str()).collect();
        return Err(LocalError::Other(format!(
            "no member {member}; the members are {}",
            names.join(", ")
        )));
    };
    let pid = m
        .pid
        .ok_or_else(|| LocalError::Other(format!("{member} has no running process now")))?;
    signal(pid, libc::SIGKILL).map_err(|e| LocalError::Other(e.to_string()))?;
    println!(
        "killed {member} ({}, pid {pid}). It is restarted shortly, as a crashed pod would be{}",
        m.role,
        if m.role == "primary" {
            "; a replica takes over as primary first. Watch: lagless-operator local status --watch"
        } else {
            "."
        }
    );
    Ok(())
}

fn logs(
    dir: &StateDir,
    target: Option<&str>,
    follow: bool,
    lines: usize,
) -> Result<(), LocalError> {
    let path = match target {
        None | Some("operator") => dir.log(),
        Some(t) if t.starts_with("proxy-") => {
            let index: usize = t["proxy-".len()..]
                .parse()
                .map_err(|_| LocalError::Other(format!("no proxy {t}")))?;
            dir.proxy(index).join("proxy.log")
        }
        Some(member) => dir.member(member).join("error.log"),
    };
    print_log(&path, follow, lines)
}

/// Prints the end of the log at `path`, then (with `follow`) what is appended to it.
fn print_log(path: &Path, follow: bool, lines: usize) -> Result<(), LocalError> {
    let path = path.to_path_buf();
    if !path.is_file() {
        return Err(LocalError::Other(format!(
            "no log at {}: the target is `operator`, a member name or proxy-N (or, in a \
             pool, a cluster name)",
            path.display()
        )));
    }
    println!("{}", mariadb::tail(&path, lines));
    if !follow {
        return Ok(());
    }
    let mut offset = std::fs::metadata(&path).map_or(0, |m| m.len());
    loop {
        std::thread::sleep(Duration::from_millis(250));
        let len = std::fs::metadata(&path).map_or(0, |m| m.len());
        if len < offset {
            offset = 0;
        }
        if len > offset {
            use std::io::{Read, Seek, SeekFrom};
            let mut file = std::fs::File::open(&path).map_err(LocalError::io(&path))?;
            file.seek(SeekFrom::Start(offset))
                .map_err(LocalError::io(&path))?;
            let mut buf = Vec::new();
            file.read_to_end(&mut buf).map_err(LocalError::io(&path))?;
            offset = offset.saturating_add(buf.len() as u64);
            let _ = std::io::stdout().write_all(&buf);
            let _ = std::io::stdout().flush();
        }
    }
}
