//! Faults between machines, on real servers: every member and every proxy in a Linux network
//! namespace of its own (made here with `ip netns`, veth pairs and a bridge), the orchestrator
//! and the clients in the test's namespace. A write load and strict readers run through the
//! proxies while faults are injected; afterwards every acknowledged write must exist and no
//! strict read may have missed a write acknowledged before it was sent.
//!
//! One pass over each fault runs in CI. `bench/chaos.sh` runs the same test for longer
//! (`LAGLESS_CHAOS_SECONDS`: random faults until then; `LAGLESS_CHAOS_QUIET_SECONDS`: a load
//! without faults first, which must cause no failover).

use std::collections::BTreeSet;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lagless_core::topology::{Flavor, Topology, TopologyState};
use lagless_operator::kube::orchestration::events_after;
use lagless_operator::orchestrate::act::{FileSink, ProxyAccount, ProxyRole};
use lagless_operator::orchestrate::observe::Credentials;
use lagless_operator::orchestrate::run::Orchestrator;
use lagless_operator::orchestrate::{
    Cause, ClusterSpec, ClusterState, Event, MemberSpec, SemiSync, Switchover, SwitchoverTarget,
};
use lagless_testkit::{APP_PASSWORD, APP_USER, Cluster, Placement, REPL_PASSWORD, REPL_USER};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder};

use super::orchestrate::{KitSeeder, admin};

const MEMBERS: usize = 3;
const PROXIES: usize = 2;
const PROXY_PORT: u16 = 6033;
/// How long one client operation may take before its outcome counts as unknown.
const OP_TIMEOUT: Duration = Duration::from_secs(20);

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("ip runs (the fault tests need iproute2)");
    assert!(
        out.status.success(),
        "ip {}: {} (the fault tests need root, for network namespaces)",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A bridge in the test's namespace and one namespace per node, each with a veth on the
/// bridge. Removed when dropped.
struct Net {
    prefix: String,
    subnet: String,
    nodes: Vec<String>,
}

impl Net {
    fn new() -> Self {
        let pid = std::process::id();
        let prefix = format!("lc{}", pid % 10_000);
        let subnet = format!("10.66.{}", 20 + pid % 200);
        let net = Self {
            prefix,
            subnet,
            nodes: Vec::new(),
        };
        net.remove_all();
        let br = net.bridge();
        ip(&["link", "add", &br, "type", "bridge"]);
        ip(&["addr", "add", &format!("{}/24", net.root_ip()), "dev", &br]);
        ip(&["link", "set", &br, "up"]);
        net
    }

    fn bridge(&self) -> String {
        format!("{}br", self.prefix)
    }

    /// The test's own address: the orchestrator's and the clients'.
    fn root_ip(&self) -> String {
        format!("{}.1", self.subnet)
    }

    /// A namespace `<prefix><name>` listening on `.<octet>`.
    fn add(&mut self, name: &str, octet: u8) -> Placement {
        let ns = format!("{}{name}", self.prefix);
        let veth = format!("{ns}v");
        let host = format!("{}.{octet}", self.subnet);
        ip(&["netns", "add", &ns]);
        ip(&[
            "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
        ]);
        ip(&["link", "set", &veth, "master", &self.bridge(), "up"]);
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{host}/24"),
            "dev",
            "eth0",
        ]);
        ip(&["-n", &ns, "link", "set", "eth0", "up"]);
        ip(&["-n", &ns, "link", "set", "lo", "up"]);
        self.nodes.push(ns.clone());
        Placement { netns: ns, host }
    }

    /// `ns` can no longer exchange packets with `peer` (its replies are dropped).
    fn cut(ns: &str, peer: &str) {
        ip(&["-n", ns, "route", "add", "blackhole", &format!("{peer}/32")]);
    }

    fn heal(ns: &str, peer: &str) {
        ip(&["-n", ns, "route", "del", "blackhole", &format!("{peer}/32")]);
    }

    /// `ns` can exchange packets with nobody.
    fn isolate(ns: &str) {
        ip(&["-n", ns, "link", "set", "eth0", "down"]);
    }

    fn rejoin(ns: &str) {
        ip(&["-n", ns, "link", "set", "eth0", "up"]);
    }

    fn remove_all(&self) {
        let quiet = |args: &[&str]| {
            let _ = Command::new("ip").args(args).stderr(Stdio::null()).status();
        };
        // Also what a killed run left behind (one chaos run at a time uses these names).
        let listed = Command::new("ip").args(["netns", "list"]).output();
        let stale = listed.map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
        for ns in stale
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(' ').next())
        {
            let ours = ns.starts_with("lc")
                && ns.len() > 3
                && ns[2..ns.len() - 2].bytes().all(|b| b.is_ascii_digit())
                && matches!(ns.as_bytes()[ns.len() - 2], b'm' | b'p');
            if ours {
                quiet(&["link", "del", &format!("{ns}v")]);
                quiet(&["netns", "del", ns]);
            }
        }
        let bridges = Command::new("ip")
            .args(["-o", "link", "show", "type", "bridge"])
            .output();
        let bridges = bridges.map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
        for line in bridges.unwrap_or_default().lines() {
            let name = line.split(": ").nth(1).unwrap_or_default();
            let name = name.split('@').next().unwrap_or_default();
            if name.starts_with("lc") && name.ends_with("br") {
                quiet(&["link", "del", name]);
            }
        }
        quiet(&["link", "del", &self.bridge()]);
        for n in ["m0", "m1", "m2", "p0", "p1"] {
            let ns = format!("{}{n}", self.prefix);
            quiet(&["link", "del", &format!("{ns}v")]);
            quiet(&["netns", "del", &ns]);
        }
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        self.remove_all();
    }
}

/// A lagless-proxy process in a namespace of its own, following the topology file.
struct ProxyProcess {
    child: Child,
    host: String,
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The proxies' least-privileged accounts, which the orchestrator creates.
const LOOKUP: (&str, &str) = ("lagless_lookup", "chaos-lookup-pw");
const MONITOR: (&str, &str) = ("lagless_monitor", "chaos-monitor-pw");

/// Accounts are looked up on the members with the least-privileged account, as in production.
fn start_proxy(at: &Placement, topology: &std::path::Path) -> ProxyProcess {
    let child = Command::new("ip")
        .args(["netns", "exec", &at.netns])
        .arg(env!("CARGO_BIN_EXE_lagless-operator"))
        .arg("proxy")
        .arg(format!("--listen={}:{PROXY_PORT}", at.host))
        .arg(format!("--topology={}", topology.display()))
        .args([
            "--consistency",
            "strict",
            "--monitor-interval-ms",
            "200",
            "--log",
            "warn",
        ])
        .env("LAGLESS_PROXY_LOOKUP_USER", LOOKUP.0)
        .env("LAGLESS_PROXY_LOOKUP_PASSWORD", LOOKUP.1)
        .env("LAGLESS_PROXY_MONITOR_USER", MONITOR.0)
        .env("LAGLESS_PROXY_MONITOR_PASSWORD", MONITOR.1)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .expect("the proxy starts");
    ProxyProcess {
        child,
        host: at.host.clone(),
    }
}

fn app_opts(host: &str) -> OptsBuilder {
    OptsBuilder::default()
        .ip_or_hostname(host.to_string())
        .tcp_port(PROXY_PORT)
        .user(Some(APP_USER))
        .pass(Some(APP_PASSWORD))
        .prefer_socket(false)
}

/// What the clients saw.
#[derive(Default)]
struct Record {
    acked: Mutex<Vec<u64>>,
    unknown: AtomicU64,
    reads: AtomicU64,
    stale: Mutex<Vec<u64>>,
    /// The highest id whose write was acknowledged: a strict read sent after this must see it.
    last_acked: AtomicU64,
}

async fn with_timeout<T>(
    f: impl std::future::Future<Output = Result<T, mysql_async::Error>>,
) -> Option<T> {
    tokio::time::timeout(OP_TIMEOUT, f).await.ok()?.ok()
}

/// The client's connection, opened again after a failure (a pause first when that fails too).
async fn connected<'c>(conn: &'c mut Option<Conn>, host: &str) -> Option<&'c mut Conn> {
    if conn.is_none() {
        *conn = with_timeout(Conn::new(app_opts(host))).await;
        if conn.is_none() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    conn.as_mut()
}

async fn writer(host: String, next: Arc<AtomicU64>, record: Arc<Record>, stop: Arc<AtomicBool>) {
    let mut conn: Option<Conn> = None;
    while !stop.load(Ordering::Relaxed) {
        let Some(c) = connected(&mut conn, &host).await else {
            continue;
        };
        let id = next.fetch_add(1, Ordering::Relaxed);
        match with_timeout(c.exec_drop("INSERT INTO chaos.t (id) VALUES (?)", (id,))).await {
            Some(()) => {
                record.acked.lock().unwrap().push(id);
                record.last_acked.fetch_max(id, Ordering::SeqCst);
            }
            None => {
                // It may or may not have committed; either is allowed.
                record.unknown.fetch_add(1, Ordering::Relaxed);
                conn = None;
            }
        }
    }
}

async fn reader(host: String, record: Arc<Record>, stop: Arc<AtomicBool>) {
    let mut conn: Option<Conn> = None;
    while !stop.load(Ordering::Relaxed) {
        let Some(c) = connected(&mut conn, &host).await else {
            continue;
        };
        let want = record.last_acked.load(Ordering::SeqCst);
        if want == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        }
        let got: Option<Option<i64>> =
            with_timeout(c.exec_first("SELECT COUNT(*) FROM chaos.t WHERE id = ?", (want,))).await;
        match got {
            Some(count) => {
                record.reads.fetch_add(1, Ordering::Relaxed);
                if count != Some(1) {
                    record.stale.lock().unwrap().push(want);
                }
            }
            None => conn = None,
        }
    }
}

struct Chaos {
    cluster: Arc<Cluster>,
    orchestrator: Arc<tokio::sync::Mutex<Orchestrator>>,
    topology: std::path::PathBuf,
    root_ip: String,
    /// Member `i`'s namespace.
    namespaces: Vec<String>,
    faults: Vec<String>,
}

impl Chaos {
    fn member_ns(&self, name: &str) -> String {
        self.namespaces[self.member(name).index()].clone()
    }

    fn member(&self, name: &str) -> &lagless_testkit::Member {
        let i: usize = name[1..].parse().expect("m<i>");
        self.cluster.member(i)
    }

    async fn primary(&self) -> String {
        let o = self.orchestrator.lock().await;
        o.published()
            .and_then(|t| t.primary.as_ref())
            .map(|p| p.name.clone())
            .unwrap_or_default()
    }

    async fn epoch(&self) -> u64 {
        self.orchestrator
            .lock()
            .await
            .published()
            .map_or(0, |t| t.epoch)
    }

    /// Waits until the cluster is healthy with every member replicating; a member quarantined
    /// on the way (an old primary holding a write nobody acknowledged) is wiped and seeded
    /// again, as an operator would.
    async fn settle(&self, limit: Duration) {
        let started = Instant::now();
        loop {
            let (state, quarantined, replicas) = {
                let o = self.orchestrator.lock().await;
                (
                    o.last_plan_state(),
                    o.history().quarantined.keys().cloned().collect::<Vec<_>>(),
                    o.published().map_or(0, |t| t.replicas.len()),
                )
            };
            for member in &quarantined {
                eprintln!("chaos: re-seeding quarantined {member}");
                self.member(member).wipe().await.expect("wipe");
                self.orchestrator.lock().await.release_for_reseed(member);
            }
            if quarantined.is_empty()
                && state == Some(ClusterState::Healthy)
                && replicas == MEMBERS - 1
            {
                return;
            }
            assert!(
                started.elapsed() < limit,
                "not healthy after {limit:?}: {state:?}, quarantined {quarantined:?}, {replicas} replicas"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    async fn run_fault(&mut self, fault: usize) {
        let primary = self.primary().await;
        let ns = self.member_ns(&primary);
        let before = self.epoch().await;
        let started = Instant::now();
        let name = match fault {
            0 => {
                // The orchestrator cannot reach the primary; its replicas and the proxies
                // can: no failover may happen.
                Net::cut(&ns, &self.root_ip);
                tokio::time::sleep(Duration::from_secs(5)).await;
                let still = self.primary().await;
                Net::heal(&ns, &self.root_ip);
                assert_eq!(
                    still, primary,
                    "failed over while the primary served everyone else"
                );
                "orchestrator cut off from the primary"
            }
            1 => {
                self.member(&primary).pause().expect("SIGSTOP");
                self.wait_for_new_primary(&primary, Duration::from_secs(20))
                    .await;
                eprintln!(
                    "chaos: paused primary replaced after {:?}",
                    started.elapsed()
                );
                self.member(&primary).resume().expect("SIGCONT");
                "SIGSTOP of the primary"
            }
            2 => {
                Net::isolate(&ns);
                self.wait_for_new_primary(&primary, Duration::from_secs(20))
                    .await;
                eprintln!(
                    "chaos: isolated primary replaced after {:?}",
                    started.elapsed()
                );
                Net::rejoin(&ns);
                "primary isolated from everyone"
            }
            3 => {
                // Cut from its replicas only: it stays primary, and with semi-sync it can
                // acknowledge nothing until they are back.
                let replicas: Vec<(String, String)> = self
                    .cluster
                    .members()
                    .iter()
                    .filter(|m| format!("m{}", m.index()) != primary)
                    .map(|m| {
                        (
                            self.member_ns(&format!("m{}", m.index())),
                            m.host().to_string(),
                        )
                    })
                    .collect();
                let host = self.member(&primary).host().to_string();
                for (rns, rhost) in &replicas {
                    Net::cut(&ns, rhost);
                    Net::cut(rns, &host);
                }
                tokio::time::sleep(Duration::from_secs(4)).await;
                for (rns, rhost) in &replicas {
                    Net::heal(&ns, rhost);
                    Net::heal(rns, &host);
                }
                "primary cut off from its replicas"
            }
            4 => {
                {
                    let mut o = self.orchestrator.lock().await;
                    o.spec.switchover = Some(Switchover {
                        id: format!("chaos-{}", self.faults.len()),
                        to: SwitchoverTarget::Best,
                    });
                }
                // Killed as soon as the switchover has begun: the proxies were told to hold
                // writes ("switching"), the old primary is draining or fenced.
                let deadline = Instant::now() + Duration::from_secs(10);
                while Topology::read(&self.topology)
                    .map_or(true, |t| t.state != TopologyState::Switching)
                {
                    assert!(Instant::now() < deadline, "the switchover never began");
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                self.member(&primary).kill9().expect("kill -9");
                tokio::time::sleep(Duration::from_secs(2)).await;
                self.member(&primary).restart().await.expect("restart");
                "kill -9 of the primary mid-switchover"
            }
            _ => {
                std::fs::remove_file(&self.topology).expect("remove the topology");
                let deadline = Instant::now() + Duration::from_secs(10);
                while self.epoch().await <= before {
                    assert!(
                        Instant::now() < deadline,
                        "the topology was not published again"
                    );
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                let on_disk = Topology::read(&self.topology).map(|t| t.epoch).unwrap_or(0);
                assert!(on_disk > before, "{on_disk} after {before}");
                "topology document deleted"
            }
        };
        eprintln!("chaos: {name} (epoch {before} -> {})", self.epoch().await);
        self.faults.push(name.to_string());
        self.settle(Duration::from_secs(90)).await;
    }

    async fn wait_for_new_primary(&self, old: &str, limit: Duration) {
        let started = Instant::now();
        loop {
            let now = self.primary().await;
            if !now.is_empty() && now != old {
                return;
            }
            assert!(started.elapsed() < limit, "no new primary after {limit:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn secs_from_env(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_between_machines_lose_no_acknowledged_write_and_serve_no_stale_read() {
    super::orchestrate::init_logging();
    let mut net = Net::new();
    let placements: Vec<Placement> = (0..MEMBERS)
        .map(|i| net.add(&format!("m{i}"), 10 + i as u8))
        .collect();
    let namespaces: Vec<String> = placements.iter().map(|p| p.netns.clone()).collect();
    let proxy_places: Vec<Placement> = (0..PROXIES)
        .map(|i| net.add(&format!("p{i}"), 20 + i as u8))
        .collect();
    let cluster = Arc::new(
        Cluster::builder()
            .members(MEMBERS)
            .placements(placements)
            .start()
            .await
            .expect("the cluster starts in its namespaces"),
    );
    let dir = tempfile::tempdir().unwrap();
    let topology = dir.path().join("topology.json");

    let members = cluster
        .members()
        .iter()
        .map(|m| MemberSpec::new(format!("m{}", m.index()), m.host(), m.port()))
        .collect();
    let mut spec = ClusterSpec::new("chaos", members);
    spec.semi_sync = Some(SemiSync { acks: 1 });
    spec.failover_cooldown = Duration::from_secs(2);
    let seeder = Arc::new(KitSeeder::new(cluster.clone()));
    let orchestrator = Orchestrator::with_defaults(
        spec,
        Flavor::Mariadb,
        admin(),
        Credentials {
            user: REPL_USER.into(),
            password: REPL_PASSWORD.into(),
        },
        Box::new(FileSink(topology.clone())),
        None,
    )
    .with_seeder(seeder)
    .with_proxy_accounts(
        [(ProxyRole::Lookup, LOOKUP), (ProxyRole::Monitor, MONITOR)]
            .into_iter()
            .map(|(role, (user, password))| ProxyAccount {
                role,
                creds: Credentials {
                    user: user.into(),
                    password: password.into(),
                },
            })
            .collect(),
    );
    let orchestrator = Arc::new(tokio::sync::Mutex::new(orchestrator));
    let failovers = Arc::new(AtomicU64::new(0));
    let switchovers = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let ticking = {
        let (o, stop, failovers) = (orchestrator.clone(), stop.clone(), failovers.clone());
        let switchovers = switchovers.clone();
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                // What happened, not what was planned: a plan whose action fails is planned
                // again on the next tick.
                let recorded = {
                    let mut o = o.lock().await;
                    let before = o.events().last().cloned();
                    o.tick().await;
                    events_after(o.events(), before.as_ref())
                };
                for e in recorded.iter().map(|t| &t.event) {
                    match e {
                        Event::Promoted {
                            cause: Cause::Failover,
                            ..
                        } => {
                            failovers.fetch_add(1, Ordering::Relaxed);
                        }
                        Event::Promoted {
                            cause: Cause::Switchover { request: Some(id) },
                            ..
                        } => switchovers.lock().unwrap().push(id.clone()),
                        _ => {}
                    }
                    eprintln!("chaos: {e}");
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        })
    };
    let mut chaos = Chaos {
        cluster: cluster.clone(),
        orchestrator: orchestrator.clone(),
        topology: topology.clone(),
        root_ip: net.root_ip(),
        namespaces,
        faults: Vec::new(),
    };
    chaos.settle(Duration::from_secs(60)).await;
    let proxies: Vec<ProxyProcess> = proxy_places
        .iter()
        .map(|p| start_proxy(p, &topology))
        .collect();

    // The schema, through a proxy once it answers.
    let started = Instant::now();
    let mut c = loop {
        if let Ok(c) = Conn::new(app_opts(&proxies[0].host)).await {
            break c;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the proxy never answered"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    c.query_drop("CREATE DATABASE IF NOT EXISTS chaos")
        .await
        .unwrap();
    c.query_drop("CREATE TABLE chaos.t (id BIGINT PRIMARY KEY)")
        .await
        .unwrap();
    drop(c);

    let record = Arc::new(Record::default());
    let next = Arc::new(AtomicU64::new(1));
    let work_stop = Arc::new(AtomicBool::new(false));
    let mut work = Vec::new();
    for p in &proxies {
        work.push(tokio::spawn(writer(
            p.host.clone(),
            next.clone(),
            record.clone(),
            work_stop.clone(),
        )));
        work.push(tokio::spawn(reader(
            p.host.clone(),
            record.clone(),
            work_stop.clone(),
        )));
    }

    // A load without faults: no failover.
    let quiet = Duration::from_secs(secs_from_env("LAGLESS_CHAOS_QUIET_SECONDS").unwrap_or(8));
    tokio::time::sleep(quiet).await;
    assert_eq!(
        failovers.load(Ordering::Relaxed),
        0,
        "a failover without a fault"
    );
    let quiet_writes = record.acked.lock().unwrap().len();
    assert!(quiet_writes > 0, "no write was acknowledged in {quiet:?}");

    // Each fault once, then random ones until the time is up (a soak).
    let until =
        secs_from_env("LAGLESS_CHAOS_SECONDS").map(|s| Instant::now() + Duration::from_secs(s));
    // LAGLESS_CHAOS_FAULTS=2,2,2 runs the listed faults instead (to repeat one many times).
    let listed: Option<Vec<usize>> = std::env::var("LAGLESS_CHAOS_FAULTS").ok().map(|v| {
        v.split(',')
            .map(|f| match f.trim().parse() {
                Ok(n) if n < 6 => n,
                _ => panic!("LAGLESS_CHAOS_FAULTS: `{f}` is not a fault number from 0 to 5"),
            })
            .collect()
    });
    for fault in listed.unwrap_or_else(|| (0..6).collect()) {
        chaos.run_fault(fault).await;
    }
    let mut n = 6usize;
    while until.is_some_and(|u| Instant::now() < u) {
        // A cheap deterministic spread over the faults.
        chaos.run_fault((n * 7 + 3) % 6).await;
        n += 1;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    work_stop.store(true, Ordering::Relaxed);
    for w in work {
        let _ = tokio::time::timeout(OP_TIMEOUT * 2, w).await;
    }
    chaos.settle(Duration::from_secs(90)).await;

    // Every acknowledged write is on the primary.
    let primary = chaos.primary().await;
    let mut p = chaos.member(&primary).admin_conn().await.unwrap();
    let present: BTreeSet<u64> = p
        .query::<u64, _>("SELECT id FROM chaos.t")
        .await
        .unwrap()
        .into_iter()
        .collect();
    let acked = record.acked.lock().unwrap().clone();
    let lost: Vec<u64> = acked
        .iter()
        .copied()
        .filter(|id| !present.contains(id))
        .collect();
    let stale = record.stale.lock().unwrap().clone();
    eprintln!(
        "chaos: {} faults, {} failovers; {} writes acknowledged, {} unknown, {} lost; {} strict reads, {} stale",
        chaos.faults.len(),
        failovers.load(Ordering::Relaxed),
        acked.len(),
        record.unknown.load(Ordering::Relaxed),
        lost.len(),
        record.reads.load(Ordering::Relaxed),
        stale.len(),
    );
    stop.store(true, Ordering::Relaxed);
    let _ = ticking.await;
    drop(proxies);
    assert!(lost.is_empty(), "acknowledged writes lost: {lost:?}");
    // A switchover request is carried out once, even when its old primary dies midway.
    let requests = switchovers.lock().unwrap().clone();
    let distinct: BTreeSet<&String> = requests.iter().collect();
    assert_eq!(
        distinct.len(),
        requests.len(),
        "switchovers repeated: {requests:?}"
    );
    assert!(stale.is_empty(), "stale strict reads of ids {stale:?}");
    assert!(
        record.reads.load(Ordering::Relaxed) > 0,
        "no strict read completed"
    );
    drop(net);
}
