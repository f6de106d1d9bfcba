//! The `local` subcommands on a pool: `up` (preparing the state directory, running the pool
//! supervisor in the foreground or the background), `status`, `down`, and which cluster a
//! command about one member or cluster is for.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::crd::MySQLTenantPool;
use crate::crd::tenant_pool::directory_name;
use crate::local::daemon::{claim, local_tls, spawn_signal_handler};
use crate::local::mariadb::Binaries;
use crate::local::process::signal;
use crate::local::state::{self, LocalCredentials, read_json, write_json};
use crate::local::{LocalError, console, ports};

use super::layout::{self, cluster_of_member};
use super::status::{PoolCluster, PoolStatus};
use super::supervisor::{
    PoolRuntime, PoolSupervisor, SharedPool, cluster_statuses, status, write_status_until,
};
use super::{PoolDir, PoolSettings, cluster_dirs};

/// What `local up` was given, as far as a pool is concerned.
#[derive(Debug, Clone, Default)]
pub struct UpOptions {
    pub state_dir: Option<PathBuf>,
    pub name: Option<String>,
    pub base_port: Option<u16>,
    pub proxy_port: Option<u16>,
}

/// Everything `up` checks and records before any process starts: the manifest, ports, the
/// accounts and every cluster's state directory.
pub fn prepare(
    text: &str,
    source: &Path,
    options: &UpOptions,
) -> Result<(PoolDir, MySQLTenantPool), LocalError> {
    let pool = crate::local::manifest::parse_pool(text, source)?;
    let name = pool.name().to_string();
    let dir = PoolDir::new(state::root_for(
        options.state_dir.as_deref(),
        options.name.as_deref(),
        &name,
    )?);
    state::ensure_stopped(&name, dir.supervisor_pid(), dir.running())?;
    if dir.root().join("cluster.yaml").is_file() {
        return Err(LocalError::Other(format!(
            "{} holds a cluster, not a pool: use another --state-dir",
            dir.root().display()
        )));
    }
    std::fs::create_dir_all(dir.root()).map_err(LocalError::io(dir.root()))?;
    let previous: Option<PoolSettings> = read_json(&dir.settings()).ok();
    if let Some(p) = &previous
        && p.pool != name
    {
        return Err(LocalError::Other(format!(
            "{} holds pool {}, not {name}: use another --state-dir, or remove it with \
             `lagless-operator local --state-dir {} down --purge`",
            dir.root().display(),
            p.pool,
            dir.root().display()
        )));
    }
    let spec = &pool.spec;
    let (min, max) = (
        u32::try_from(spec.clusters.min).unwrap_or(1),
        u32::try_from(spec.clusters.max).unwrap_or(1),
    );
    let settings = PoolSettings {
        pool: name.clone(),
        base_port: options
            .base_port
            .or(previous.as_ref().map(|p| p.base_port))
            .unwrap_or(3307),
        proxy_port: options
            .proxy_port
            .or(previous.as_ref().map(|p| p.proxy_port))
            .unwrap_or(6033),
        // A restarted pool keeps the clusters it grew to.
        clusters: previous.as_ref().map_or(0, |p| p.clusters).max(min),
    };
    if settings.clusters > max {
        return Err(LocalError::Usage(format!(
            "{}: spec.clusters.max is {max}, but pool {name} has {} clusters, which hold \
             tenants: raise it to at least {}",
            source.display(),
            settings.clusters,
            settings.clusters
        )));
    }
    let proxies = u32::try_from(spec.proxy.replicas.max(1)).unwrap_or(1);
    layout::check_port_ranges(&settings, max, proxies)?;
    Binaries::locate()?;
    let clusters = layout::local_clusters(&pool, &settings, |cluster| {
        cluster_dirs::previous_settings(&dir, cluster)
    })?;
    for cluster in &clusters {
        let state = dir.cluster(cluster.name());
        if let Some(pid) = state.supervisor_pid() {
            return Err(LocalError::AlreadyRunning(cluster.name().to_string(), pid));
        }
        ports::ensure_members_free(&cluster.settings)?;
    }
    ports::ensure_proxies_free(settings.proxy_port, usize::try_from(proxies).unwrap_or(1))?;
    let creds = if dir.credentials().is_file() {
        let mut creds: LocalCredentials = read_json(&dir.credentials())?;
        if creds.fill_in()? {
            write_json(&dir.credentials(), &creds, 0o600)?;
        }
        creds
    } else {
        let creds = LocalCredentials::generate()?;
        write_json(&dir.credentials(), &creds, 0o600)?;
        creds
    };
    let manifest = dir.manifest();
    std::fs::write(&manifest, text).map_err(LocalError::io(&manifest))?;
    write_json(&dir.settings(), &settings, 0o644)?;
    let tls = spec.cluster_template.tls.is_some();
    for cluster in &clusters {
        cluster_dirs::write(&dir, cluster, &creds, tls)?;
    }
    // A stale status from an earlier run must not be mistaken for this one's.
    let _ = std::fs::remove_file(dir.status());
    Ok((dir, pool))
}

/// Runs the pool supervisor in this process until SIGINT/SIGTERM. With `display` (the command
/// prefix for the banner), shows progress and then a live view; the log goes to
/// `operator.log` either way.
pub fn supervise(
    dir: &PoolDir,
    log_filter: &str,
    display: Option<String>,
) -> Result<(), LocalError> {
    let text = std::fs::read_to_string(dir.manifest()).map_err(LocalError::io(&dir.manifest()))?;
    let pool = crate::local::manifest::parse_pool(&text, &dir.manifest())?;
    let settings: PoolSettings = read_json(&dir.settings())?;
    let creds: LocalCredentials = read_json(&dir.credentials())?;
    let _lock = claim(
        &dir.lock(),
        &dir.pid(),
        &dir.log(),
        log_filter,
        &settings.pool,
        || dir.supervisor_pid(),
    )?;
    // One CA for the whole pool: each proxy verifies every cluster's members with it.
    let tls = match &pool.spec.cluster_template.tls {
        Some(_) => Some(local_tls(dir.tls(), pool.name())?),
        None => None,
    };
    let rt = PoolRuntime {
        dir: dir.clone(),
        pool,
        creds,
        bins: Binaries::locate()?,
        tls,
        log_filter: log_filter.to_string(),
    };
    let runtime = crate::runtime()
        .map_err(|e| LocalError::Other(format!("cannot start the runtime: {e}")))?;
    let shows = display.is_some();
    let result = runtime.block_on(async move {
        let (stop_tx, stop_rx) = watch::channel(false);
        spawn_signal_handler(stop_tx, "pool");
        let shared = SharedPool::default();
        let supervisor = PoolSupervisor::new(rt, settings.clone(), shared.clone())?;
        let rt = supervisor.runtime();
        let writer = tokio::spawn(write_status_until(
            shared.clone(),
            rt.clone(),
            settings.clone(),
            stop_rx.clone(),
        ));
        let (done_tx, done_rx) = watch::channel(false);
        let view = display.map(|prefix| {
            let (shared, rt, settings) = (shared.clone(), rt.clone(), settings.clone());
            let banner_rt = rt.clone();
            tokio::spawn(console::live_view(
                move || current(&shared, &rt, &settings),
                move |s| banner_text(s, &banner_rt.creds, &prefix, banner_rt.dir.root()),
                "pool",
                done_rx,
            ))
        });
        let result = supervisor.run(stop_rx).await;
        let _ = done_tx.send(true);
        if let Some(view) = view {
            let _ = view.await;
        }
        writer.abort();
        let last = status(&shared.lock(), &rt, &settings);
        let _ = write_json(&rt.dir.status(), &last, 0o644);
        result
    });
    let _ = std::fs::remove_file(dir.pid());
    if shows && result.is_ok() {
        println!(
            "stopped; the data is kept in {} (`lagless-operator local down --purge` deletes it)",
            dir.root().display()
        );
    }
    result
}

/// The pool's status now, each cluster's part from its own status file.
fn current(shared: &SharedPool, rt: &PoolRuntime, settings: &PoolSettings) -> PoolStatus {
    let s = status(&shared.lock(), rt, settings);
    let names: Vec<String> = s.clusters.iter().map(|c| c.name.clone()).collect();
    s.with_clusters(&cluster_statuses(&rt.dir, &names))
}

fn banner_text(s: &PoolStatus, creds: &LocalCredentials, prefix: &str, root: &Path) -> String {
    let mut out = String::new();
    let tenant_clusters: Vec<&PoolCluster> =
        s.clusters.iter().filter(|c| c.role == "tenants").collect();
    out.push_str(&format!(
        "Lagless tenant pool \"{}\" is running: {} tenant clusters, the directory in {}, {} \
         lagless-proxy.\n\n",
        s.pool,
        tenant_clusters.len(),
        s.directory,
        s.proxies.len()
    ));
    if let Some(p) = s.proxies.first() {
        let tls = s.connect.as_ref().map(|c| c.tls_args()).unwrap_or_default();
        out.push_str(
            "Connect through a proxy; a tenant's database (t_<id>) is placed on a cluster when \
             it is created, and every statement about it goes there:\n",
        );
        out.push_str(&format!(
            "  mariadb -h127.0.0.1 -P{}{tls} -u{} -p{} -e 'CREATE DATABASE t_42'\n",
            p.port, creds.app_user, creds.app_password
        ));
        out.push_str(&format!(
            "  mariadb -h127.0.0.1 -P{}{tls} -u{} -p{} t_42\n\n",
            p.port, creds.app_user, creds.app_password
        ));
    }
    let member = tenant_clusters
        .get(1)
        .or(tenant_clusters.first())
        .and_then(|c| c.primary.clone())
        .unwrap_or_else(|| "MEMBER".into());
    let cluster = tenant_clusters
        .get(1)
        .or(tenant_clusters.first())
        .map_or("CLUSTER", |c| c.name.as_str());
    for (cmd, what) in [
        ("status".to_string(), "clusters, tenants, load, members"),
        (
            format!("kill {member}"),
            "crash a primary; its cluster fails over",
        ),
        (
            format!("switchover --name {cluster}"),
            "hand a cluster's primary role over",
        ),
        (
            "logs [operator|CLUSTER|MEMBER|proxy-0]".to_string(),
            "the pool's log, a cluster's or a server's",
        ),
        ("down [--purge]".to_string(), "stop (and delete the data)"),
    ] {
        out.push_str(&format!("  {prefix} {cmd:<38} {what}\n"));
    }
    out.push_str(&format!("State directory: {}\n", root.display()));
    out
}

/// Starts the pool supervisor in the background and waits until the pool is up.
pub fn detach(dir: &PoolDir, prefix: &str) -> Result<(), LocalError> {
    console::detach(
        dir.root(),
        &dir.log(),
        &dir.status(),
        "the pool",
        |s: &PoolStatus| {
            let creds: LocalCredentials = read_json(&dir.credentials())?;
            Ok(banner_text(s, &creds, prefix, dir.root()))
        },
    )
}

/// The pool's status: the pool supervisor's file, each cluster's part from its own.
pub fn read_status(dir: &PoolDir) -> Result<PoolStatus, LocalError> {
    if !dir.manifest().is_file() {
        return Err(LocalError::NoCluster(dir.root().to_path_buf()));
    }
    let settings: Option<PoolSettings> = read_json(&dir.settings()).ok();
    let pool = settings
        .map(|s| s.pool)
        .unwrap_or_else(|| dir.root().display().to_string());
    let mut s: PoolStatus = read_json(&dir.status()).unwrap_or_else(|_| PoolStatus {
        pool: pool.clone(),
        directory: directory_name(&pool),
        ..PoolStatus::default()
    });
    if s.clusters.is_empty() {
        s.clusters = dir
            .cluster_names()
            .into_iter()
            .map(|name| PoolCluster {
                role: if name == s.directory {
                    "directory".into()
                } else {
                    "tenants".into()
                },
                name,
                ..PoolCluster::default()
            })
            .collect();
    }
    if !dir.running() {
        s.phase = "stopped".into();
        for p in &mut s.proxies {
            p.pid = None;
            p.running = false;
        }
    }
    s.moves = super::read_moves(&dir.moves());
    let names: Vec<String> = s.clusters.iter().map(|c| c.name.clone()).collect();
    Ok(s.with_clusters(&cluster_statuses(dir, &names)))
}

/// `local status` on a pool.
pub fn show(dir: &PoolDir, json: bool, watch: bool) -> Result<(), LocalError> {
    console::show(|| read_status(dir), json, watch)
}

/// `local down` on a pool: the pool supervisor stops its proxies and clusters; a cluster
/// supervisor that outlived it is stopped too.
pub fn down(dir: &PoolDir, purge: bool) -> Result<(), LocalError> {
    let name = read_json::<PoolSettings>(&dir.settings())
        .map(|s| s.pool)
        .unwrap_or_else(|_| dir.root().display().to_string());
    match dir.supervisor_pid() {
        Some(pid) => {
            print!("stopping pool {name} ...");
            let _ = std::io::stdout().flush();
            let began = Instant::now();
            stop_and_wait(pid, || dir.running(), &dir.log())?;
            println!(" stopped in {:.1} s", began.elapsed().as_secs_f64());
        }
        None if !dir.manifest().is_file() => {
            return Err(LocalError::NoCluster(dir.root().to_path_buf()));
        }
        None => println!("pool {name} is not running"),
    }
    for cluster in dir.cluster_names() {
        let state = dir.cluster(&cluster);
        if let Some(pid) = state.supervisor_pid() {
            println!("stopping cluster {cluster}, still running on its own ...");
            stop_and_wait(pid, || state.running(), &state.log())?;
        }
    }
    if purge {
        std::fs::remove_dir_all(dir.root()).map_err(LocalError::io(dir.root()))?;
        println!("deleted {}", dir.root().display());
    } else {
        println!(
            "data kept in {}; `down --purge` deletes it, `up` starts it again",
            dir.root().display()
        );
    }
    Ok(())
}

/// SIGTERM to `pid`, then waits (up to 300 s) until `running` turns false.
fn stop_and_wait(pid: u32, running: impl Fn() -> bool, log: &Path) -> Result<(), LocalError> {
    signal(pid, libc::SIGTERM).map_err(|e| LocalError::Other(e.to_string()))?;
    console::wait_stopped(pid, running, log, Duration::from_secs(300))
}

/// The cluster of the pool a switchover is for: the one `to` is a member of, else the one
/// `--name` gives (other than the pool's own name).
pub fn switchover_cluster(
    clusters: &[String],
    pool: &str,
    name: Option<&str>,
    to: Option<&str>,
) -> Result<String, LocalError> {
    let named = name.filter(|n| *n != pool);
    if let Some(to) = to {
        let cluster = member_cluster(clusters, pool, to)?;
        if let Some(named) = named
            && named != cluster
        {
            return Err(LocalError::Usage(format!(
                "{to} is a member of {cluster}, not of {named}"
            )));
        }
        return Ok(cluster);
    }
    match named {
        Some(named) if clusters.iter().any(|c| c == named) => Ok(named.to_string()),
        Some(named) => Err(LocalError::Usage(format!(
            "pool {pool} has no cluster {named}; its clusters are {}",
            clusters.join(", ")
        ))),
        None => Err(LocalError::Usage(format!(
            "pool {pool} has several clusters: choose one with --name CLUSTER or --to MEMBER \
             (clusters: {})",
            clusters.join(", ")
        ))),
    }
}

/// The cluster of the pool that `member` belongs to.
pub fn member_cluster(clusters: &[String], pool: &str, member: &str) -> Result<String, LocalError> {
    cluster_of_member(member, clusters)
        .map(str::to_string)
        .ok_or_else(|| {
            LocalError::Other(format!(
                "pool {pool} has no member {member}: members are <cluster>-<ordinal>, the \
                 clusters {}",
                clusters.join(", ")
            ))
        })
}

/// The log `local logs TARGET` prints for a pool: the pool supervisor's (`operator`), a
/// cluster's supervisor's, a member's error log, or a pool proxy's.
pub fn log_path(dir: &PoolDir, target: Option<&str>) -> Result<PathBuf, LocalError> {
    let clusters = dir.cluster_names();
    Ok(match target {
        None | Some("operator") => dir.log(),
        Some(t) if t.starts_with("proxy-") => {
            let index: usize = t["proxy-".len()..]
                .parse()
                .map_err(|_| LocalError::Other(format!("no proxy {t}")))?;
            dir.proxy(index).join("proxy.log")
        }
        Some(cluster) if clusters.iter().any(|c| c == cluster) => dir.cluster(cluster).log(),
        Some(member) => {
            let pool = dir
                .root()
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let cluster = member_cluster(&clusters, &pool, member)?;
            dir.cluster(&cluster).member(member).join("error.log")
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clusters() -> Vec<String> {
        ["demo-c0", "demo-c1", "demo-directory"]
            .map(String::from)
            .into()
    }

    #[test]
    fn a_switchover_names_its_cluster_or_a_member() {
        let c = clusters();
        let target = |name, to| switchover_cluster(&c, "demo", name, to);
        assert_eq!(target(None, Some("demo-c1-1")).unwrap(), "demo-c1");
        assert_eq!(target(Some("demo-c0"), None).unwrap(), "demo-c0");
        assert_eq!(target(Some("demo"), Some("demo-c0-1")).unwrap(), "demo-c0");
        assert_eq!(
            target(Some("demo-directory"), None).unwrap(),
            "demo-directory"
        );
        let err = target(None, None).unwrap_err().to_string();
        assert!(err.contains("--name CLUSTER or --to MEMBER"), "{err}");
        assert!(err.contains("demo-c0, demo-c1"), "{err}");
        assert!(target(Some("demo-c9"), None).is_err());
        assert!(target(Some("demo-c0"), Some("demo-c1-0")).is_err());
        assert!(target(None, Some("demo-c9-0")).is_err());
    }

    #[test]
    fn logs_of_the_pool_its_clusters_members_and_proxies() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = PoolDir::new(tmp.path().join("demo"));
        for c in clusters() {
            std::fs::create_dir_all(dir.clusters().join(&c)).unwrap();
            std::fs::write(dir.clusters().join(&c).join("cluster.yaml"), "x").unwrap();
        }
        assert_eq!(log_path(&dir, None).unwrap(), dir.log());
        assert_eq!(
            log_path(&dir, Some("proxy-1")).unwrap(),
            dir.root().join("proxies/1/proxy.log")
        );
        assert_eq!(
            log_path(&dir, Some("demo-c1")).unwrap(),
            dir.cluster("demo-c1").log()
        );
        assert_eq!(
            log_path(&dir, Some("demo-c1-0")).unwrap(),
            dir.cluster("demo-c1").member("demo-c1-0").join("error.log")
        );
        assert!(log_path(&dir, Some("other-0")).is_err());
    }
}
