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
    /// Print the MySQLCluster CustomResourceDefinition as YAML.
    Crd,
}

fn main() {
    let cli = Cli::parse();
    if let Some(Command::Crd) = cli.command {
        print!("{}", lagless_operator::crd::crd_yaml());
        return;
    }
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&cli.log))
        .init();
    eprintln!(
        "lagless-operator {}: the Kubernetes controller and the `local` runtime are not available yet; \
         see docs/architecture.md",
        lagless_operator::VERSION
    );
    std::process::exit(2);
}
