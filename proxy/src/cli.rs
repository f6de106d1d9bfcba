//! The `lagless-proxy` program: logging, runtime, signals around [`Proxy`]. Shared by the
//! `lagless-proxy` binary and `lagless-operator proxy`, which the local runtime starts so one
//! installed binary is enough.

use crate::config::{Args, Config};
use crate::server::Proxy;

fn init_logging(filter: &str, json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second initialisation (a host program that set up logging already) keeps the first.
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}

pub use lagless_serve::{terminated, until_terminated};

/// The runtime the proxy is run on. With event loops it only accepts connections and runs
/// the background work the sessions share (the head reads); otherwise it carries the
/// sessions too, on `workers` threads (0: one per core; 1: the current thread).
fn runtime_for(workers: usize, loops: bool) -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = match (loops, workers) {
        (true, _) | (false, 1) => tokio::runtime::Builder::new_current_thread(),
        _ => tokio::runtime::Builder::new_multi_thread(),
    };
    if !loops && workers > 1 {
        builder.worker_threads(workers);
    }
    builder.enable_all().build()
}

/// Runs the proxy until SIGTERM or SIGINT, then drains. Returns the process exit code.
pub fn run(args: Args) -> i32 {
    init_logging(&args.log, args.log_json);
    let workers = args.worker_threads;
    let config = match Config::try_from(args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let runtime = match runtime_for(workers, config.session_loops > 0) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return 1;
        }
    };
    runtime.block_on(async move {
        let proxy = match Proxy::bind(config).await {
            Ok(p) => p,
            Err(e) => {
                eprintln!("error: {e}");
                return 1;
            }
        };
        if let Ok(addr) = proxy.local_addr() {
            tracing::info!(%addr, admin = ?proxy.admin_addr(), version = crate::VERSION, "lagless-proxy listening");
        }
        let stop = proxy.shutdown_handle();
        tokio::spawn(async move {
            match terminated().await {
                Ok(signal) => tracing::info!("{signal}: draining"),
                Err(e) => {
                    tracing::error!(error = %e, "cannot install signal handlers");
                    return;
                }
            }
            let _ = stop.send(true);
        });
        proxy.run().await;
        0
    })
}
