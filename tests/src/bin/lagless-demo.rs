//! A local MariaDB replication cluster with lagless-proxy in front and the orchestration loop
//! driving it (failover, quarantine), for trying Lagless out until `lagless-operator local`
//! exists. Stops (and removes every file it made) on Ctrl-C or SIGTERM.

use std::time::Duration;

use lagless_operator::orchestrate::act::FileSink;
use lagless_operator::orchestrate::observe::Credentials;
use lagless_operator::orchestrate::run::Orchestrator;
use lagless_operator::orchestrate::{ClusterSpec, MemberSpec};
use lagless_proxy::config::Config;
use lagless_proxy::server::Proxy;
use lagless_proxy::topology::{Flavor, Member, Topology, TopologyState};
use lagless_proxy::users::LookupCredentials;
use lagless_testkit::{
    ADMIN_PASSWORD, ADMIN_USER, APP_DATABASE, APP_PASSWORD, APP_USER, Cluster, REPL_PASSWORD,
    REPL_USER,
};
use tokio::signal::unix::{SignalKind, signal};

struct Args {
    members: usize,
    port: u16,
    no_proxy: bool,
}

fn args() -> Result<Args, String> {
    let mut a = Args {
        members: 3,
        port: 6033,
        no_proxy: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut number = |name: &str| -> Result<u64, String> {
            let v = it.next().ok_or(format!("{name} needs a number"))?;
            v.parse()
                .map_err(|_| format!("{name}: `{v}` is not a number"))
        };
        match arg.as_str() {
            "--members" => a.members = number("--members")? as usize,
            "--port" => {
                a.port = u16::try_from(number("--port")?).map_err(|_| "--port: too large")?
            }
            "--no-proxy" => a.no_proxy = true,
            "-h" | "--help" => {
                println!("usage: lagless-demo [--members N] [--port PROXY_PORT] [--no-proxy]");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    if a.members == 0 {
        return Err("--members must be at least 1".into());
    }
    Ok(a)
}

fn topology(cluster: &Cluster) -> Topology {
    let member =
        |m: &lagless_testkit::Member| Member::new(format!("m{}", m.index()), "127.0.0.1", m.port());
    Topology {
        cluster: "demo".into(),
        flavor: Flavor::Mariadb,
        epoch: 1,
        state: TopologyState::Ready,
        primary: Some(member(cluster.primary())),
        replicas: cluster.replicas().iter().map(member).collect(),
        consistency: None,
    }
}

/// The orchestration loop over the cluster, publishing to the proxy's topology file.
fn orchestrator(cluster: &Cluster, topology: &std::path::Path) -> Orchestrator {
    let members = cluster
        .members()
        .iter()
        .map(|m| MemberSpec::new(format!("m{}", m.index()), "127.0.0.1", m.port()))
        .collect();
    let mut spec = ClusterSpec::new("demo", members);
    spec.failover_cooldown = Duration::from_secs(10);
    Orchestrator::with_defaults(
        spec,
        Flavor::Mariadb,
        Credentials {
            user: ADMIN_USER.into(),
            password: ADMIN_PASSWORD.into(),
        },
        Credentials {
            user: REPL_USER.into(),
            password: REPL_PASSWORD.into(),
        },
        Box::new(FileSink(topology.to_path_buf())),
        Topology::read(topology).ok(),
    )
}

async fn start_proxy(cluster: &Cluster, port: u16) -> Result<(Proxy, std::path::PathBuf), String> {
    let dir = cluster.dir().join("proxy");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let topo_path = dir.join("topology.json");
    topology(cluster)
        .write_atomically(&topo_path)
        .map_err(|e| e.to_string())?;
    let users = dir.join("users.json");
    std::fs::write(
        &users,
        format!(r#"{{"users":[{{"user":"{APP_USER}","password":"{APP_PASSWORD}"}}]}}"#),
    )
    .map_err(|e| e.to_string())?;
    let mut config = Config::new(topo_path.clone());
    config.listen = ([127, 0, 0, 1], port).into();
    config.admin_listen = Some(([127, 0, 0, 1], port.saturating_add(1)).into());
    config.users_file = Some(users);
    config.lookup = Some(LookupCredentials {
        user: ADMIN_USER.into(),
        password: ADMIN_PASSWORD.into(),
    });
    config.monitor = config.lookup.clone();
    config.shutdown_timeout = Duration::from_secs(3);
    let proxy = Proxy::bind(config).await.map_err(|e| match e {
        lagless_proxy::server::StartError::Listen { addr, .. } => format!(
            "port {} is in use: stop what listens there or pick another with --port",
            addr.port()
        ),
        other => other.to_string(),
    })?;
    Ok((proxy, topo_path))
}

#[tokio::main]
async fn main() {
    let a = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    let cluster = match Cluster::builder().members(a.members).start().await {
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
    let mut proxy_task = None;
    let mut driver = None;
    if !a.no_proxy {
        match start_proxy(&cluster, a.port).await {
            Ok((proxy, topo)) => {
                let stop = proxy.shutdown_handle();
                proxy_task = Some((stop, tokio::spawn(proxy.run())));
                let mut o = orchestrator(&cluster, &topo);
                driver = Some(tokio::spawn(async move {
                    loop {
                        o.tick().await;
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                }));
                println!(
                    "\nlagless-proxy on 127.0.0.1:{} (topology: {})",
                    a.port,
                    topo.display()
                );
                println!("Connect through the proxy (reads go to replicas that have caught up):");
                println!(
                    "  mariadb -h127.0.0.1 -P{} -u{APP_USER} -p{APP_PASSWORD} {APP_DATABASE}",
                    a.port
                );
                println!("Metrics and the proxy's view:");
                println!(
                    "  curl -s 127.0.0.1:{}/metrics   curl -s 127.0.0.1:{}/topology",
                    a.port + 1,
                    a.port + 1
                );
            }
            Err(e) => {
                eprintln!("error: the proxy did not start: {e}");
                std::process::exit(1);
            }
        }
    }
    if !a.no_proxy
        && let Some(pid) = cluster.primary().pid()
    {
        println!("Watch a failover: kill the primary and keep querying through the proxy:");
        println!(
            "  kill -9 {pid}; sleep 1; curl -s 127.0.0.1:{}/topology",
            a.port + 1
        );
    }
    let p = cluster.primary().port();
    println!("\nOr the primary directly:");
    println!("  mariadb -h127.0.0.1 -P{p} -u{APP_USER} -p{APP_PASSWORD} {APP_DATABASE}");
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
    if let Some(d) = driver {
        d.abort();
    }
    if let Some((stop, task)) = proxy_task {
        let _ = stop.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    drop(cluster);
    println!("stopped");
}
