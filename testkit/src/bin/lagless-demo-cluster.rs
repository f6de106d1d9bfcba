//! Starts a local MariaDB replication cluster from the test kit and prints how to connect.
//! Stops (and removes every file it made) on Ctrl-C.

use lagless_testkit::{APP_DATABASE, APP_PASSWORD, APP_USER, Cluster};

fn members_arg() -> Result<usize, String> {
    let mut args = std::env::args().skip(1);
    let mut members = 3;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--members" => {
                let value = args.next().ok_or("--members needs a number")?;
                members = value
                    .parse()
                    .map_err(|_| format!("--members: `{value}` is not a number"))?;
            }
            "-h" | "--help" => {
                println!("usage: lagless-demo-cluster [--members N]");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok(members)
}

#[tokio::main]
async fn main() {
    let members = match members_arg() {
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
    println!("\nConnect to the primary:");
    println!("  mariadb -h127.0.0.1 -P{p} -u{APP_USER} -p{APP_PASSWORD} {APP_DATABASE}");
    if let Some(r) = cluster.replicas().first() {
        println!("Watch a replica:");
        println!(
            "  mariadb -h127.0.0.1 -P{} -u{APP_USER} -p{APP_PASSWORD} {APP_DATABASE}",
            r.port()
        );
    }
    println!("\nPress Ctrl-C to stop; everything is removed on exit.");
    let _ = tokio::signal::ctrl_c().await;
    drop(cluster);
    println!("stopped");
}
