use clap::Parser;

/// Lagless proxy: one MySQL endpoint in front of a replication cluster.
#[derive(Debug, Parser)]
#[command(name = "lagless-proxy", version, about, long_about = None)]
struct Cli {
    /// Log filter, in `tracing` env-filter syntax.
    #[arg(long, env = "LAGLESS_LOG", default_value = "info")]
    log: String,
}

fn main() {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&cli.log))
        .init();
    eprintln!("lagless-proxy {}", lagless_proxy::VERSION);
}
