//! Seeds a data directory from a donor with the operator's seeding code and prints what it
//! took. Used by `bench/seed.sh`.
//!
//!     seed DONOR_HOST DONOR_PORT DONOR_DATADIR TARGET_DIR USER PASSWORD

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use lagless_operator::orchestrate::observe::Credentials;
use lagless_operator::orchestrate::seed::{Donor, seed};

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [host, port, datadir, target, user, password] = args.as_slice() else {
        eprintln!("usage: seed DONOR_HOST DONOR_PORT DONOR_DATADIR TARGET_DIR USER PASSWORD");
        std::process::exit(2);
    };
    let Ok(port) = port.parse() else {
        eprintln!("error: `{port}` is not a port");
        std::process::exit(2);
    };
    let progress = Arc::new(AtomicU64::new(0));
    let shown = progress.clone();
    let reporter = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(2)).await;
            eprintln!(
                "  {:.0} MiB copied",
                shown.load(Ordering::Relaxed) as f64 / 1_048_576.0
            );
        }
    });
    let donor = Donor {
        host: host.clone(),
        port,
        datadir: datadir.into(),
        tls_ca: None,
    };
    let creds = Credentials {
        user: user.clone(),
        password: password.clone(),
    };
    match seed(&donor, &creds, std::path::Path::new(target), progress).await {
        Ok(r) => {
            reporter.abort();
            println!(
                "seeded {:.0} MiB in {:.1} s: {:.1} MB/s (copy and prepare); position {}",
                r.bytes as f64 / 1_048_576.0,
                r.elapsed.as_secs_f64(),
                r.mb_per_s(),
                r.gtid_position
            );
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
