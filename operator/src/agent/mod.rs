//! `lagless-operator agent`: seeding in Kubernetes. The agent runs beside the database server
//! of every member pod, on the same data volume, and serves a streamed `mariadb-backup` of
//! that server to the init step of a new or wiped member (`agent fetch`), which extracts and
//! prepares it before the server starts. Both ends run the code of the local runtime's
//! seeding ([`crate::orchestrate::seed`]); see `docs/kubernetes.md`.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod client;
pub mod http;
pub mod server;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};

/// The port the agent listens on in a member pod.
pub const AGENT_PORT: u16 = 3307;

/// The file, in the data directory, that `agent fetch` writes the copy's GTID position to.
pub const POSITION_FILE: &str = "lagless-seed-position";

/// Present in the data directory while a copy is being written into it, or after the
/// operator asked for a re-seed (`POST /reseed`): the next `agent fetch`, even with
/// `--if-empty`, empties the directory and copies again, so no server starts on it.
pub const RESEED_MARKER: &str = "lagless-seed-incomplete";

/// `lagless-operator agent`: serves backups (the default) or fetches one.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct AgentArgs {
    #[command(subcommand)]
    pub command: Option<AgentCommand>,
    #[command(flatten)]
    pub serve: ServeArgs,
}

#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    /// Copy a donor's data into an empty data directory and prepare it.
    Fetch(FetchArgs),
    /// Copy this program to PATH (how a pod gives the agent to its database image).
    Install {
        /// Where to write the executable.
        path: PathBuf,
    },
}

/// Serving: `GET /backup` and `POST /reseed` (authenticated) and `GET /healthz`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// The address to listen on.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:3307")]
    pub listen: SocketAddr,
    /// The local server's data directory.
    #[arg(long, value_name = "DIR", default_value = "/var/lib/mysql")]
    pub datadir: PathBuf,
    /// The local server's port (on 127.0.0.1).
    #[arg(long, value_name = "PORT", default_value_t = 3306)]
    pub mysql_port: u16,
    /// The file holding the token callers must present (read at each request, so a rotated
    /// Secret takes effect).
    #[arg(long, value_name = "FILE", default_value = "/etc/lagless/agent/token")]
    pub token_file: PathBuf,
    /// Where each backup gets a private directory for its option file (the account) and its
    /// few temporary files; the system's temporary directory when absent.
    #[arg(long, value_name = "DIR")]
    pub scratch_dir: Option<PathBuf>,
    /// The account the backup connects to the local server with.
    #[arg(long, env = "LAGLESS_ADMIN_USER", hide_env_values = true)]
    pub admin_user: String,
    #[arg(long, env = "LAGLESS_ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: String,
}

/// Fetching: the init step of a member pod.
#[derive(Debug, Clone, Args)]
pub struct FetchArgs {
    /// A donor's agent, as `http://host:port`; repeated, they are tried in order and the
    /// first that answers `/healthz` is used.
    #[arg(long, value_name = "URL", required = true)]
    pub from: Vec<String>,
    /// The published topology (the topology ConfigMap, mounted). When it is readable and lists
    /// members, the donors are those (replicas first, then the primary) and `--from` is not
    /// used: a quarantined member is never published, so never copied.
    #[arg(long, value_name = "FILE")]
    pub topology: Option<PathBuf>,
    /// The agents' port, for donors taken from `--topology`.
    #[arg(long, value_name = "PORT", default_value_t = AGENT_PORT)]
    pub agent_port: u16,
    /// Donors whose host name starts with `<name>.` (or is `<name>`) are skipped: this pod.
    #[arg(long, value_name = "NAME", env = "HOSTNAME")]
    pub skip_self: Option<String>,
    #[arg(long, value_name = "FILE", default_value = "/etc/lagless/agent/token")]
    pub token_file: PathBuf,
    /// The data directory to fill.
    #[arg(long, value_name = "DIR", default_value = "/var/lib/mysql")]
    pub datadir: PathBuf,
    /// Empty a non-empty data directory first (else it is refused).
    #[arg(long, conflicts_with = "if_empty")]
    pub force: bool,
    /// Succeed without fetching when the data directory already holds data.
    #[arg(long)]
    pub if_empty: bool,
    /// Seconds between progress lines.
    #[arg(long, value_name = "S", default_value_t = 5)]
    pub progress_interval: u64,
}

impl FetchArgs {
    pub fn progress_every(&self) -> Duration {
        Duration::from_secs(self.progress_interval.max(1))
    }
}

/// Runs an agent command; returns the process exit code.
pub fn run(args: AgentArgs, log: &str) -> i32 {
    let filter = tracing_subscriber::EnvFilter::try_new(log)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    if let Some(AgentCommand::Install { path }) = &args.command {
        return match install(path) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("agent install: {e}");
                1
            }
        };
    }
    let runtime = match crate::runtime() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("agent: cannot start the runtime: {e}");
            return 1;
        }
    };
    match args.command {
        Some(AgentCommand::Fetch(fetch)) => match runtime.block_on(client::fetch(&fetch)) {
            Ok(outcome) => {
                eprintln!("agent fetch: {outcome}");
                0
            }
            Err(e) => {
                eprintln!("agent fetch: {e}");
                1
            }
        },
        _ => match runtime.block_on(server::serve(args.serve)) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("agent: {e}");
                1
            }
        },
    }
}

/// Copies the running executable to `path`, executable by all.
fn install(path: &std::path::Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let me = std::env::current_exe()?;
    // Through a temporary name: a pod restarted mid-copy never runs half a program.
    let partial = path.with_extension("partial");
    std::fs::copy(&me, &partial)?;
    std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o755))?;
    std::fs::rename(&partial, path)
}
