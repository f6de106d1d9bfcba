//! Starts a test-kit cluster (real mariadbd processes on GTID replication, on free loopback
//! ports) and keeps it until Ctrl-C, for benchmarks and experiments that need bare servers.
//! The product's own way to run a cluster locally is `lagless-operator local up`.

use lagless_testkit::{APP_DATABASE, APP_PASSWORD, APP_USER, Cluster};
use tokio::signal::unix::{SignalKind, signal};

fn members() -> Result<usize, String> {
    let mut members = 3;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--members" => {
                let v = it.next().ok_or("--members needs a number")?;
                members = v
                    .parse()
                    .map_err(|_| format!("--members: `{v}` is not a number"))?;
            }
            "-h" | "--help" => {
                println!("usage: lagless-kit [--members N]");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    if members == 0 {
        return Err("--members must be at least 1".into());
    }
    Ok(members)
}

#[tokio::main]
async fn main() {
    let members = match members() {
        Ok(n) => n,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    let cluster = match Cluster::builder().members(members).start().await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    };
    println!(
        "MariaDB replication cluster up in {:.2?} ({})",
        cluster.started_in(),
        cluster.dir().display()
    );
    for m in cluster.members() {
        let role = if m.index() == 0 { "primary" } else { "replica" };
        println!(
            "  {role:<8} 127.0.0.1:{}  server_id={}",
            m.port(),
            m.server_id()
        );
    }
    let p = cluster.primary().port();
    println!("\n  mariadb -h127.0.0.1 -P{p} -u{APP_USER} -p{APP_PASSWORD} {APP_DATABASE}");
    println!("\nPress Ctrl-C to stop; everything is removed on exit.");
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        eprintln!("error: cannot install signal handlers");
        std::process::exit(1);
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    drop(cluster);
    println!("stopped");
}
