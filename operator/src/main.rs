use clap::{Parser, Subcommand};

/// Lagless operator: runs MySQL/MariaDB replication clusters in Kubernetes or locally.
#[derive(Debug, Parser)]
#[command(name = "lagless-operator", version, about, long_about = None)]
struct Cli {
    /// Log filter, in `tracing` env-filter syntax.
    #[arg(long, env = "LAGLESS_LOG", default_value = "info")]
    log: String,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a cluster on this machine, without Kubernetes (mariadbd processes + lagless-proxy).
    Local(lagless_operator::local::cli::LocalArgs),
    /// Print a CustomResourceDefinition as YAML (MySQLCluster unless --kind says otherwise).
    Crd {
        /// `MySQLCluster`, `MySQLTenantPool`, `accounts` (`MySQLDatabase`, `MySQLUser` and
        /// `MySQLGrant`), `MySQLBackup`, `MySQLTenantMove`, or `all` (one multi-document YAML).
        #[arg(long, default_value = "MySQLCluster", value_parser = ["MySQLCluster", "MySQLTenantPool", "accounts", "MySQLBackup", "MySQLTenantMove", "all"])]
        kind: String,
    },
    /// Run lagless-proxy (the same program as the `lagless-proxy` binary).
    Proxy(Box<lagless_proxy::config::Args>),
    /// Run the Kubernetes controller: reconcile MySQLClusters (see docs/kubernetes.md).
    Controller(lagless_operator::kube::controller::ControllerArgs),
    /// Seeding agent of a member pod: serve backups of the local server, or `fetch` one
    /// into an empty data directory (see docs/kubernetes.md).
    Agent(Box<lagless_operator::agent::AgentArgs>),
    /// Create, list and locate tenants of a tenant pool.
    Tenant(lagless_operator::tenant_cli::TenantArgs),
    /// The kubectl plugin (`kubectl lagless …`, when this binary is named kubectl-lagless):
    /// status, switchover, reseed, pause, resume and logs of MySQLClusters.
    Kubectl(lagless_operator::kubectl::PluginArgs),
}

fn main() {
    // Installed as `kubectl-lagless` (a symlink or copy), this binary is the kubectl plugin.
    if lagless_operator::kubectl::invoked_as_plugin(std::env::args_os().next().as_ref()) {
        std::process::exit(lagless_operator::kubectl::main_from_args(
            std::env::args_os(),
        ));
    }
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Crd { kind }) => print!(
            "{}",
            match kind.as_str() {
                "MySQLTenantPool" => lagless_operator::crd::tenant_pool_crd_yaml(),
                "accounts" => lagless_operator::crd::accounts_crds_yaml(),
                "MySQLBackup" => lagless_operator::crd::backup_crd_yaml(),
                "MySQLTenantMove" => lagless_operator::crd::tenant_move_crd_yaml(),
                "all" => lagless_operator::crd::all_crds_yaml(),
                _ => lagless_operator::crd::crd_yaml(),
            }
        ),
        Some(Command::Local(args)) => {
            std::process::exit(lagless_operator::local::cli::run(args, &cli.log))
        }
        Some(Command::Proxy(args)) => std::process::exit(lagless_proxy::cli::run(*args)),
        Some(Command::Controller(args)) => {
            std::process::exit(lagless_operator::kube::controller::run(args, &cli.log))
        }
        Some(Command::Agent(args)) => {
            std::process::exit(lagless_operator::agent::run(*args, &cli.log))
        }
        Some(Command::Tenant(args)) => std::process::exit(lagless_operator::tenant_cli::run(args)),
        Some(Command::Kubectl(args)) => std::process::exit(lagless_operator::kubectl::run(args)),
        None => {
            eprintln!(
                "lagless-operator {}: choose a command (`local` runs a cluster on this machine, \
                 `controller` reconciles MySQLClusters in Kubernetes); see --help",
                lagless_operator::VERSION
            );
            std::process::exit(2);
        }
    }
}
