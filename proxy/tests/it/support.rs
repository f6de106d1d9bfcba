//! A real cluster from the test kit with a proxy in front, in this process.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use lagless_proxy::config::Config;
use lagless_proxy::protocol::constants::{cap, header};
use lagless_proxy::protocol::handshake::{Greeting, HandshakeResponse};
use lagless_proxy::protocol::packet::PacketStream;
use lagless_proxy::server::Proxy;
use lagless_proxy::topology::{Flavor, Member, Topology, TopologyState};
use lagless_testkit::{
    ADMIN_PASSWORD, ADMIN_USER, APP_DATABASE, APP_PASSWORD, APP_USER, Cluster, ED25519_PASSWORD,
    ED25519_USER,
};
use mysql_async::{Conn, Opts, OptsBuilder};
use tokio::sync::watch;

/// A cluster, a topology file describing it, and a running proxy.
pub struct Harness {
    pub cluster: Cluster,
    pub addr: SocketAddr,
    pub admin: Option<SocketAddr>,
    pub topology_path: PathBuf,
    pub dir: tempfile::TempDir,
    pub stop: watch::Sender<bool>,
    pub task: tokio::task::JoinHandle<()>,
    pub epoch: u64,
}

/// The topology of a kit cluster as started: member 0 primary, the rest replicas.
pub fn topology_of(cluster: &Cluster, epoch: u64) -> Topology {
    let member =
        |m: &lagless_testkit::Member| Member::new(format!("m{}", m.index()), "127.0.0.1", m.port());
    Topology {
        cluster: "test".into(),
        flavor: Flavor::Mariadb,
        epoch,
        state: TopologyState::Ready,
        primary: Some(member(cluster.primary())),
        replicas: cluster.replicas().iter().map(member).collect(),
        consistency: None,
        read_only: false,
    }
}

impl Harness {
    pub async fn start(members: usize) -> Self {
        Self::start_with(members, |_| {}).await
    }

    pub async fn start_with(members: usize, tune: impl FnOnce(&mut Config)) -> Self {
        let cluster = Cluster::builder().members(members).start().await.unwrap();
        Self::in_front_of(cluster, tune).await
    }

    pub async fn in_front_of(cluster: Cluster, tune: impl FnOnce(&mut Config)) -> Self {
        init_logging();
        let dir = tempfile::tempdir().unwrap();
        let topology_path = dir.path().join("topology.json");
        topology_of(&cluster, 1)
            .write_atomically(&topology_path)
            .unwrap();
        let users = dir.path().join("users.json");
        std::fs::write(
            &users,
            format!(
                r#"{{"users":[{{"user":"{APP_USER}","password":"{APP_PASSWORD}"}},
                    {{"user":"{ED25519_USER}","password":"{ED25519_PASSWORD}","plugin":"ed25519"}}]}}"#
            ),
        )
        .unwrap();
        let mut config = Config::new(topology_path.clone());
        config.listen = "127.0.0.1:0".parse().unwrap();
        config.admin_listen = Some("127.0.0.1:0".parse().unwrap());
        config.users_file = Some(users);
        config.lookup = Some(lagless_proxy::users::LookupCredentials {
            user: ADMIN_USER.into(),
            password: ADMIN_PASSWORD.into(),
            tls: None,
        });
        config.monitor = config.lookup.clone();
        config.monitor_interval = Duration::from_millis(200);
        config.topology_poll = Duration::from_millis(200);
        config.shutdown_timeout = Duration::from_secs(5);
        // Tests of where reads go and of what they see check the replicas' side: a cheap
        // statement would otherwise move to the primary once its cost is known. The tests of
        // that rule turn it back on.
        config.cheap_reads_on_primary = 0.0;
        // Both schedulers, each for half of the tests, fixed per test by its name: the
        // default work-stealing runtime, and `--scheduler loops` with two event loops.
        config.session_loops = loops_for_this_test();
        tune(&mut config);
        let proxy = Proxy::bind(config).await.unwrap();
        let addr = proxy.local_addr().unwrap();
        let admin = proxy.admin_addr();
        let stop = proxy.shutdown_handle();
        let task = tokio::spawn(proxy.run());
        Self {
            cluster,
            addr,
            admin,
            topology_path,
            dir,
            stop,
            task,
            epoch: 1,
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn opts(&self, user: &str, password: &str, db: Option<&str>) -> Opts {
        OptsBuilder::default()
            .ip_or_hostname("127.0.0.1")
            .tcp_port(self.port())
            .user(Some(user))
            .pass(Some(password))
            .db_name(db)
            .prefer_socket(false)
            .into()
    }

    /// An application connection through the proxy.
    pub async fn app(&self) -> Conn {
        Conn::new(self.opts(APP_USER, APP_PASSWORD, Some("app")))
            .await
            .unwrap()
    }

    /// Publishes a new topology with the next epoch.
    pub fn publish(&mut self, mut topo: Topology) {
        self.epoch += 1;
        topo.epoch = self.epoch;
        topo.write_atomically(&self.topology_path).unwrap();
    }

    /// Publishes a new topology with the next epoch and waits until the proxy uses it.
    pub async fn publish_applied(&mut self, topo: Topology) {
        self.publish(topo);
        self.wait_for_epoch(self.epoch).await;
    }

    /// Waits until the proxy has applied the topology of `epoch`: its admin `/topology`
    /// serves it (what routing reads) and the epoch gauge shows it (set once the proxy has
    /// followed the change: pools, health and default consistency).
    pub async fn wait_for_epoch(&self, epoch: u64) {
        let admin = self.admin.expect("the harness has an admin listener");
        let deadline = Instant::now() + APPLY_WAIT;
        loop {
            let (serving, gauge) = (topology_epoch(admin).await, epoch_gauge(admin).await);
            if serving == Some(epoch) && gauge == Some(epoch) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "epoch {epoch} not applied within {APPLY_WAIT:?}: /topology has {serving:?}, \
                 the gauge {gauge:?}"
            );
            tokio::time::sleep(POLL).await;
        }
    }
}

/// Bound on waiting for the proxy to apply a published topology; it takes milliseconds.
const APPLY_WAIT: Duration = Duration::from_secs(10);
/// Bound on waiting for a counter to account for statements already answered.
const METRIC_WAIT: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(20);

/// The epoch the proxy serves on its admin `/topology`.
pub async fn topology_epoch(admin: SocketAddr) -> Option<u64> {
    let (status, body) = http_get(admin, "/topology").await;
    if status != 200 {
        return None;
    }
    let doc: serde_json::Value = serde_json::from_str(&body).ok()?;
    doc["epoch"].as_u64()
}

/// The `lagless_topology_epoch` gauge from the proxy's /metrics.
async fn epoch_gauge(admin: SocketAddr) -> Option<u64> {
    let (_, body) = http_get(admin, "/metrics").await;
    body.lines()
        .find_map(|l| l.strip_prefix("lagless_topology_epoch "))
        .and_then(|v| v.trim().parse().ok())
}

/// `GET path` on the admin listener; returns (status, body).
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    http_exchange(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes(),
    )
    .await
}

/// Sends `request` as is on the admin listener; returns (status, body).
pub async fn http_exchange(addr: SocketAddr, request: &[u8]) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

/// Proxy logs in test output when `LAGLESS_TEST_LOG` is set (e.g. `debug`).
pub fn init_logging() {
    if let Ok(filter) = std::env::var("LAGLESS_TEST_LOG") {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_test_writer()
            .try_init();
    }
}

/// A second proxy, as a separate process running the real binary, in front of the same
/// cluster and reading the same topology file. Killed when dropped.
pub struct ProxyProcess {
    pub port: u16,
    _child: tokio::process::Child,
}

impl ProxyProcess {
    pub fn opts(&self, user: &str, password: &str, db: Option<&str>) -> Opts {
        OptsBuilder::default()
            .ip_or_hostname("127.0.0.1")
            .tcp_port(self.port)
            .user(Some(user))
            .pass(Some(password))
            .db_name(db)
            .prefer_socket(false)
            .into()
    }
}

/// A second proxy, in a process of its own, with the defaults of the program (so, unlike the
/// harness's proxy, cheap strict reads run on the primary) and `extra` arguments.
pub async fn spawn_proxy_process(h: &Harness, extra: &[&str]) -> ProxyProcess {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_lagless-proxy"))
        .arg("--topology")
        .arg(&h.topology_path)
        .arg("--users")
        .arg(h.dir.path().join("users.json"))
        .args([
            "--lookup-user",
            ADMIN_USER,
            "--lookup-password",
            ADMIN_PASSWORD,
        ])
        .args(["--monitor-interval-ms", "200", "--log", "warn"])
        .args(extra)
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the proxy process did not start"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    ProxyProcess {
        port,
        _child: child,
    }
}

/// The sum of every series of a counter family whose labels contain `label` (e.g.
/// `mode="strict"`), from the proxy's /metrics.
pub async fn metric_sum(admin: SocketAddr, family: &str, label: &str) -> f64 {
    let (_, body) = http_get(admin, "/metrics").await;
    body.lines()
        .filter(|l| l.starts_with(&format!("{family}{{")) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// [`metric_sum`] once it reaches `at_least`, or its value after [`METRIC_WAIT`]. The proxy
/// counts a statement after it has sent the response, so a count read right after the last
/// reply can still miss it; callers assert on the returned value.
pub async fn metric_reaching(admin: SocketAddr, family: &str, label: &str, at_least: f64) -> f64 {
    let deadline = Instant::now() + METRIC_WAIT;
    loop {
        let value = metric_sum(admin, family, label).await;
        if value >= at_least || Instant::now() >= deadline {
            return value;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// A client connection spoken by hand.
pub type Raw = PacketStream<tokio::net::TcpStream>;

/// A hand-driven login as the app user with the given capabilities; returns the stream, the
/// greeting and the capabilities in force.
pub async fn raw_login(port: u16, caps: u32, ext_caps: u32) -> (Raw, Greeting, u32) {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    tcp.set_nodelay(true).unwrap();
    let mut s = PacketStream::new(tcp);
    let (seq, greet) = s.read_logical().await.unwrap();
    let g = Greeting::parse(&greet).unwrap();
    let caps = (cap::PROTOCOL_41
        | cap::SECURE_CONNECTION
        | cap::PLUGIN_AUTH
        | cap::CONNECT_WITH_DB
        | cap::TRANSACTIONS
        | cap::MULTI_STATEMENTS
        | cap::MULTI_RESULTS
        | caps)
        & g.capabilities;
    let resp = HandshakeResponse {
        capabilities: caps,
        ext_capabilities: ext_caps & g.ext_capabilities,
        max_packet: 1 << 24,
        collation: 45,
        user: APP_USER.into(),
        auth_response: mysql_common::scramble::scramble_native(
            &g.scramble,
            APP_PASSWORD.as_bytes(),
        )
        .unwrap()
        .to_vec(),
        database: Some(APP_DATABASE.into()),
        auth_plugin: Some("mysql_native_password".into()),
        attributes: Vec::new(),
    };
    let mut seq = seq + 1;
    s.send(&mut seq, &resp.encode()).await.unwrap();
    let (_, ok) = s.read_logical().await.unwrap();
    assert_eq!(ok.first(), Some(&header::OK), "login failed: {ok:?}");
    (s, g, caps)
}

/// Event loops for the calling test (2 for half of the tests, by a hash of the test's name,
/// which libtest gives its thread; 0, the default scheduler, for the others).
fn loops_for_this_test() -> usize {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut hasher = DefaultHasher::new();
    std::thread::current()
        .name()
        .unwrap_or_default()
        .hash(&mut hasher);
    let loops = if hasher.finish() % 2 == 1 { 2 } else { 0 };
    eprintln!(
        "sessions on {}",
        if loops > 0 {
            "2 event loops"
        } else {
            "the work-stealing runtime"
        }
    );
    loops
}
