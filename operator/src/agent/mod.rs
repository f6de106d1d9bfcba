//! `lagless-operator agent`: seeding in Kubernetes. The agent runs beside the database server
//! of every member pod, on the same data volume, and serves a streamed `mariadb-backup` of
//! that server to the init step of a new or wiped member (`agent fetch`), which extracts and
//! prepares it before the server starts. Both ends run the code of the local runtime's
//! seeding ([`crate::orchestrate::seed`]); see `docs/kubernetes.md`. With `--tls-cert` and
//! `--tls-key` the agent speaks HTTP over TLS only, and its clients verify it against a CA
//! ([`tls`]).
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod archive;
pub mod client;
pub mod http;
pub mod restore;
pub mod server;
pub mod tls;

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
    /// Restore a backup into the empty data directory of a new cluster's first member.
    Restore(Box<restore::RestoreArgs>),
    /// Archive the published primary's binary log (the archiver pod of a cluster).
    Archive(Box<archive::ArchiveArgs>),
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
    /// The account the backup connects to the local server with; serving refuses to start
    /// without it. (Not a required option: `agent fetch` must parse without it.)
    #[arg(
        long,
        env = "LAGLESS_ADMIN_USER",
        hide_env_values = true,
        default_value = "",
        hide_default_value = true
    )]
    pub admin_user: String,
    #[arg(
        long,
        env = "LAGLESS_ADMIN_PASSWORD",
        hide_env_values = true,
        default_value = "",
        hide_default_value = true
    )]
    pub admin_password: String,
    /// The CA the local server's certificate chains to: the backup's connection then uses
    /// TLS (a server that refuses unencrypted connections needs it).
    #[arg(long, value_name = "FILE", env = "LAGLESS_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// The certificate chain the agent presents: every connection is then TLS (`agent fetch
    /// --tls-ca` and the operator verify it). Re-read when the file changes.
    #[arg(
        long,
        value_name = "FILE",
        env = "LAGLESS_AGENT_TLS_CERT",
        requires = "tls_key"
    )]
    pub tls_cert: Option<PathBuf>,
    /// The private key of `--tls-cert`. Re-read when the file changes.
    #[arg(
        long,
        value_name = "FILE",
        env = "LAGLESS_AGENT_TLS_KEY",
        requires = "tls_cert"
    )]
    pub tls_key: Option<PathBuf>,
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
    /// The CA the donors' agents' certificates chain to: connections to them are then TLS,
    /// and each donor's certificate must carry the host name it is reached by. Without it,
    /// plain HTTP.
    #[arg(long, value_name = "FILE", env = "LAGLESS_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
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
        Some(AgentCommand::Restore(restore)) => {
            match runtime.block_on(restore::restore(&restore)) {
                Ok(outcome) => {
                    eprintln!("agent restore: {outcome}");
                    0
                }
                Err(e) => {
                    eprintln!("agent restore: {e}");
                    1
                }
            }
        }
        Some(AgentCommand::Archive(args)) => match runtime.block_on(archive::archive(&args)) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("agent archive: {e}");
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

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        command: Command,
    }

    #[derive(Debug, clap::Subcommand)]
    enum Command {
        Agent(AgentArgs),
    }

    fn parse(args: &[&str]) -> Result<AgentArgs, clap::Error> {
        let args = ["lagless-operator", "agent"].iter().chain(args);
        Cli::try_parse_from(args).map(|cli| match cli.command {
            Command::Agent(agent) => agent,
        })
    }

    #[test]
    fn fetch_needs_none_of_the_servers_options() {
        let agent = parse(&["fetch", "--from", "http://db-0:3307", "--tls-ca", "/ca"]).unwrap();
        let Some(AgentCommand::Fetch(fetch)) = agent.command else {
            panic!("not a fetch: {agent:?}");
        };
        assert_eq!(fetch.tls_ca.as_deref(), Some(std::path::Path::new("/ca")));
        let plain = parse(&["fetch", "--from", "http://db-0:3307"]).unwrap();
        assert!(matches!(plain.command, Some(AgentCommand::Fetch(_))));
    }

    #[tokio::test]
    async fn serving_needs_the_backup_account() {
        let mut args = parse(&["--listen", "127.0.0.1:0"]).unwrap().serve;
        args.admin_user.clear();
        let Err(err) = server::Server::bind(args).await else {
            panic!("an agent without the backup account");
        };
        assert!(err.to_string().contains("--admin-user"), "{err}");
    }

    #[test]
    fn the_servers_certificate_and_key_go_together() {
        let serve = ["--admin-user", "u", "--admin-password", "p"];
        let with = |extra: &[&str]| parse(&[&serve[..], extra].concat());
        let both = with(&["--tls-cert", "/c", "--tls-key", "/k"])
            .unwrap()
            .serve;
        assert_eq!(both.tls_cert.as_deref(), Some(std::path::Path::new("/c")));
        assert_eq!(both.tls_key.as_deref(), Some(std::path::Path::new("/k")));
        assert!(with(&["--tls-cert", "/c"]).is_err());
        assert!(with(&["--tls-key", "/k"]).is_err());
        let neither = with(&[]).unwrap().serve;
        assert_eq!((neither.tls_cert, neither.tls_key), (None, None));
    }
}
