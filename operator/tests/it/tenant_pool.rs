//! End to end: a tenant pool run by `lagless-operator local` — the directory's cluster, three
//! tenant clusters of two members, the pool's proxies. A thousand tenants created through a
//! proxy, spread evenly and each only on its cluster; strict reads through the other proxy; a
//! crash that fails one cluster over while the others' writes go on undisturbed; the directory
//! stopped while cached tenants keep working.

use std::net::{Ipv4Addr, TcpListener};
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use lagless_directory::PoolDocument;
use mysql_async::prelude::Queryable;
use serde_json::Value;

use crate::local::{alive, ok_local, run_local, wait_until};

const POOL: &str = "\
apiVersion: lagless.dev/v1alpha1
kind: MySQLTenantPool
metadata:
  name: e2e
spec:
  clusterTemplate:
    replicas: 2
  clusters:
    min: 3
    max: 3
  directory:
    replicas: 1
  proxy:
    replicas: 2
";

/// A block of 100 free loopback ports between the other end-to-end tests' ranges (members
/// below 13000, proxies below 18000) and the test kit's (20000 and up): the pool's members
/// take the first 40, its proxies 4 from the 50th.
/// `skew` keeps the pool tests of one run on different blocks.
fn free_block(skew: u32) -> u16 {
    let mut base =
        18000 + u16::try_from(std::process::id().wrapping_add(skew) % 19).unwrap_or(0) * 100;
    loop {
        let free = (0..40)
            .chain(50..54)
            .all(|i| TcpListener::bind((Ipv4Addr::LOCALHOST, base + i)).is_ok());
        if free {
            return base;
        }
        base = if base >= 19800 { 18000 } else { base + 100 };
    }
}

/// A pool in a temporary state directory; `down` on drop, so a failing test leaves no
/// process behind.
pub(crate) struct Pool {
    dir: tempfile::TempDir,
}

impl Pool {
    /// `local up -f` of the pool `yaml` in a fresh directory, on a free block of ports
    /// (`skew`: see [`free_block`]). Returns the pool, its first port and the banner.
    pub(crate) fn up(yaml: &str, skew: u32) -> (Pool, u16, String) {
        let dir = tempfile::tempdir().expect("temp dir");
        let manifest = dir.path().join("pool.yaml");
        std::fs::write(&manifest, yaml).unwrap();
        let base_port = free_block(skew);
        let pool = Pool { dir };
        let banner = pool.ok(&[
            "up",
            "-f",
            manifest.to_str().unwrap(),
            "--detach",
            "--base-port",
            &base_port.to_string(),
            "--proxy-port",
            &(base_port + 50).to_string(),
        ]);
        (pool, base_port, banner)
    }

    pub(crate) fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    fn run(&self, args: &[&str]) -> Output {
        run_local(&self.state(), args)
    }

    pub(crate) fn ok(&self, args: &[&str]) -> String {
        ok_local(&self.state(), args)
    }

    /// The pool's accounts, as `up` wrote them.
    pub(crate) fn credentials(&self) -> Value {
        let text = std::fs::read_to_string(self.state().join("credentials.json")).expect("creds");
        serde_json::from_str(&text).expect("credentials are JSON")
    }

    pub(crate) fn status(&self) -> Value {
        serde_json::from_str(&self.ok(&["status", "--output", "json"])).expect("status is JSON")
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        let _ = self.run(&["down"]);
    }
}

pub(crate) fn cluster<'a>(status: &'a Value, name: &str) -> &'a Value {
    status["clusters"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["name"] == name))
        .unwrap_or_else(|| panic!("no cluster {name} in {status}"))
}

pub(crate) fn primary(status: &Value, name: &str) -> String {
    cluster(status, name)["primary"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

/// Every PID the status lists: the pool supervisor, members, proxies.
fn pids(status: &Value) -> Vec<u32> {
    let mut pids = vec![status["supervisor_pid"].as_u64().unwrap_or(0) as u32];
    for c in status["clusters"].as_array().into_iter().flatten() {
        for m in c["members"].as_array().into_iter().flatten() {
            pids.extend(m["pid"].as_u64().map(|p| p as u32));
        }
    }
    for p in status["proxies"].as_array().into_iter().flatten() {
        pids.extend(p["pid"].as_u64().map(|p| p as u32));
    }
    pids
}

const TENANTS: u32 = 1000;

fn percentile(samples: &[Duration], p: f64) -> Duration {
    let mut sorted = samples.to_vec();
    sorted.sort();
    let at = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len().max(1)) - 1;
    sorted.get(at).copied().unwrap_or_default()
}

/// `lagless-operator tenant …`: on the pool's state directory, or through a proxy when
/// `args` say `--proxy`.
pub(crate) fn tenant_cli(pool: &Pool, args: &[&str]) -> String {
    let mut command = Command::new(env!("CARGO_BIN_EXE_lagless-operator"));
    command.arg("tenant");
    if !args.contains(&"--proxy") {
        command.arg("--state-dir").arg(pool.state());
    }
    let out = command
        .args(args)
        .output()
        .expect("run lagless-operator tenant");
    assert!(
        out.status.success(),
        "`tenant {}`: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_pool_routes_a_thousand_tenants_and_fails_one_cluster_over_alone() {
    let began = Instant::now();
    let (pool, base_port, banner) = Pool::up(POOL, 0);
    eprintln!("pool up in {:.1} s", began.elapsed().as_secs_f64());
    assert!(
        banner.contains(&format!("-P{}", base_port + 50)),
        "the banner says how to connect:\n{banner}"
    );

    // The directory's cluster and three tenant clusters, each with a primary, on the ports
    // of their slots.
    let status = pool.status();
    assert_eq!(status["phase"], "running", "{status}");
    let names: Vec<&str> = status["clusters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["e2e-directory", "e2e-c0", "e2e-c1", "e2e-c2"]);
    for (slot, name) in names.iter().enumerate() {
        let c = cluster(&status, name);
        assert_eq!(c["phase"], "running", "{c}");
        let members = c["members"].as_array().unwrap();
        assert_eq!(members.len(), if slot == 0 { 1 } else { 2 }, "{c}");
        assert_eq!(
            members[0]["port"].as_u64(),
            Some(u64::from(base_port) + 10 * slot as u64),
            "{c}"
        );
        let primary = primary(&status, name);
        assert!(primary.starts_with(&format!("{name}-")), "{c}");
        if slot > 0 {
            assert_eq!(c["state"], "open", "{c}");
        }
    }
    assert_eq!(status["proxies"].as_array().unwrap().len(), 2);

    // The pool document lists the tenant clusters and where each publishes its topology.
    let doc = PoolDocument::read(&pool.state().join("pool.json")).expect("pool.json");
    assert_eq!(doc.pool, "e2e");
    assert_eq!(doc.directory, "e2e-directory");
    let listed: Vec<&str> = doc.clusters.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(listed, ["e2e-c0", "e2e-c1", "e2e-c2"]);
    for c in &doc.clusters {
        assert!(c.topology.is_file(), "{}", c.topology.display());
    }

    // Every cluster has the pool's accounts: the proxy logs the client in.
    let creds = pool.credentials();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let answer: Option<u32> = rt.block_on(async {
        let opts: mysql_async::Opts = mysql_async::OptsBuilder::default()
            .ip_or_hostname("127.0.0.1")
            .tcp_port(base_port + 50)
            .user(creds["app_user"].as_str())
            .pass(creds["app_password"].as_str())
            .prefer_socket(false)
            .into();
        let mut conn = mysql_async::Conn::new(opts)
            .await
            .expect("login through the proxy");
        conn.query_first("SELECT 1").await.expect("a query")
    });
    assert_eq!(answer, Some(1));

    let app = |port: u16| -> mysql_async::Opts {
        mysql_async::OptsBuilder::default()
            .ip_or_hostname("127.0.0.1")
            .tcp_port(port)
            .user(creds["app_user"].as_str())
            .pass(creds["app_password"].as_str())
            .prefer_socket(false)
            .into()
    };
    let admin = |port: u64| -> mysql_async::Opts {
        mysql_async::OptsBuilder::default()
            .ip_or_hostname("127.0.0.1")
            .tcp_port(u16::try_from(port).unwrap())
            .user(creds["admin_user"].as_str())
            .pass(creds["admin_password"].as_str())
            .prefer_socket(false)
            .into()
    };
    let (proxy_a, proxy_b) = (base_port + 50, base_port + 52);

    // A thousand tenants created through one proxy, four clients at a time; each of the
    // first hundred gets a table and a row.
    let created = Instant::now();
    rt.block_on(async {
        let mut clients = Vec::new();
        for c in 0..4u32 {
            let opts = app(proxy_a);
            clients.push(tokio::spawn(async move {
                let mut conn = mysql_async::Conn::new(opts).await.expect("login");
                for i in (c..TENANTS).step_by(4) {
                    conn.query_drop(format!("CREATE DATABASE t_{i}"))
                        .await
                        .unwrap_or_else(|e| panic!("CREATE DATABASE t_{i}: {e}"));
                    if i < 100 {
                        conn.query_drop(format!(
                            "CREATE TABLE t_{i}.items (id INT PRIMARY KEY, v VARCHAR(20))"
                        ))
                        .await
                        .unwrap();
                        conn.query_drop(format!("INSERT INTO t_{i}.items VALUES (1, 't_{i}')"))
                            .await
                            .unwrap();
                    }
                }
            }));
        }
        for c in clients {
            c.await.expect("a creating client");
        }
    });
    eprintln!(
        "{TENANTS} tenants created in {:.1} s",
        created.elapsed().as_secs_f64()
    );

    // They spread within 20 % of even, as the directory says.
    let listed = tenant_cli(&pool, &["list", "--output", "json"]);
    let listed: Value = serde_json::from_str(&listed).expect("tenant list is JSON");
    let mut home = std::collections::BTreeMap::new();
    for t in listed.as_array().expect("a list") {
        home.insert(
            t["tenant"].as_str().unwrap().to_string(),
            t["cluster"].as_str().unwrap().to_string(),
        );
    }
    assert_eq!(home.len(), TENANTS as usize);
    let even = f64::from(TENANTS) / 3.0;
    eprintln!(
        "tenants per cluster: {:?}",
        ["e2e-c0", "e2e-c1", "e2e-c2"].map(|c| home.values().filter(|h| *h == c).count())
    );
    for name in ["e2e-c0", "e2e-c1", "e2e-c2"] {
        let n = home.values().filter(|c| *c == name).count() as f64;
        assert!(
            (n - even).abs() <= even * 0.2,
            "{name} holds {n} of {TENANTS} tenants (even: {even:.0})"
        );
    }

    // Each tenant's database and rows are on its cluster's servers only.
    let status = pool.status();
    rt.block_on(async {
        for name in ["e2e-directory", "e2e-c0", "e2e-c1", "e2e-c2"] {
            for member in cluster(&status, name)["members"].as_array().unwrap() {
                let mut conn = mysql_async::Conn::new(admin(member["port"].as_u64().unwrap()))
                    .await
                    .expect("admin login on a member");
                let dbs: Vec<String> = conn.query("SHOW DATABASES LIKE 't\\_%'").await.unwrap();
                for db in &dbs {
                    let id = db.trim_start_matches("t_");
                    assert_eq!(
                        home.get(id).map(String::as_str),
                        Some(name),
                        "{db} found on {}",
                        member["name"]
                    );
                }
                if name == "e2e-directory" {
                    assert!(dbs.is_empty(), "tenant databases on the directory: {dbs:?}");
                } else {
                    let expected = home.values().filter(|c| *c == name).count();
                    assert_eq!(dbs.len(), expected, "{}", member["name"]);
                    let rows: Option<u64> = conn
                        .query_first(format!(
                            "SELECT COUNT(*) FROM ({}) AS everything",
                            (0..100)
                                .filter(|i| home[&i.to_string()] == name)
                                .map(|i| format!("SELECT id FROM t_{i}.items"))
                                .collect::<Vec<_>>()
                                .join(" UNION ALL ")
                        ))
                        .await
                        .unwrap();
                    let here = (0..100).filter(|i| home[&i.to_string()] == name).count();
                    assert_eq!(rows, Some(here as u64), "{}", member["name"]);
                }
            }
        }
    });

    // Strict reads through the second proxy see every write acknowledged by the first.
    let stale = rt.block_on(async {
        let mut writer = mysql_async::Conn::new(app(proxy_a)).await.unwrap();
        let mut reader = mysql_async::Conn::new(app(proxy_b)).await.unwrap();
        let mut stale = 0;
        for round in 0..300u32 {
            let t = round % 100;
            let value = format!("w{round}");
            writer
                .exec_drop(
                    format!("UPDATE t_{t}.items SET v = ? WHERE id = 1"),
                    (value.clone(),),
                )
                .await
                .unwrap();
            let seen: Option<String> = reader
                .query_first(format!("SELECT v FROM t_{t}.items WHERE id = 1"))
                .await
                .unwrap();
            stale += usize::from(seen.as_deref() != Some(value.as_str()));
        }
        stale
    });
    assert_eq!(stale, 0, "stale strict reads through the second proxy");

    // `lagless-operator tenant` through a proxy, as for a pool in Kubernetes.
    let through_proxy = |args: &[&str]| {
        let proxy = format!("127.0.0.1:{proxy_a}");
        let mut all = vec![
            "--proxy",
            proxy.as_str(),
            "--user",
            creds["admin_user"].as_str().unwrap(),
            "--password",
            creds["admin_password"].as_str().unwrap(),
        ];
        all.extend_from_slice(args);
        tenant_cli(&pool, &all)
    };
    let said = through_proxy(&["create", "5000"]);
    assert!(said.starts_with("tenant 5000: cluster e2e-c"), "{said}");
    assert!(!said.contains("state"), "created and active: {said}");
    let cluster_of_5000 = said.split(", ").next().unwrap_or_default().to_string();
    let located = through_proxy(&["where", "5000"]);
    assert!(located.starts_with(&cluster_of_5000), "{located} / {said}");
    let all: Value = serde_json::from_str(&through_proxy(&["list", "-o", "json"])).unwrap();
    assert_eq!(all.as_array().map(Vec::len), Some(TENANTS as usize + 1));

    // Writes to tenants of c0 and c2 run all along; c1 loses its primary meanwhile.
    let others: Vec<u32> = (0..100)
        .filter(|i| home[&i.to_string()] != "e2e-c1")
        .collect();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let failover_at = std::sync::Arc::new(std::sync::Mutex::new(None::<Instant>));
    let load = {
        let (opts, stop, failover_at) = (app(proxy_a), stop.clone(), failover_at.clone());
        rt.spawn(async move {
            let mut conn = mysql_async::Conn::new(opts).await.unwrap();
            let (mut before, mut during) = (Vec::new(), Vec::new());
            let mut n = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let t = others[n % others.len()];
                n += 1;
                let began = Instant::now();
                conn.query_drop(format!("UPDATE t_{t}.items SET v = 'load' WHERE id = 1"))
                    .await
                    .expect("a write to a tenant of another cluster");
                let took = began.elapsed();
                match *failover_at.lock().unwrap() {
                    None => before.push(took),
                    Some(_) => during.push(took),
                }
            }
            (before, during)
        })
    };
    std::thread::sleep(Duration::from_secs(2));

    // Crash c1's primary: c1 fails over, the others keep theirs.
    let before: Vec<String> = names.iter().map(|n| primary(&status, n)).collect();
    let killed = primary(&status, "e2e-c1");
    *failover_at.lock().unwrap() = Some(Instant::now());
    let said = pool.ok(&["kill", &killed]);
    assert!(said.contains(&format!("killed {killed}")), "{said}");
    wait_until("c1 to fail over", Duration::from_secs(40), || {
        let p = primary(&pool.status(), "e2e-c1");
        !p.is_empty() && p != killed
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (calm, during) = rt.block_on(load).expect("the load");
    let (calm_p50, calm_p99) = (percentile(&calm, 0.5), percentile(&calm, 0.99));
    let (during_p50, during_p99) = (percentile(&during, 0.5), percentile(&during, 0.99));
    eprintln!(
        "other clusters' writes: before the crash p50 {calm_p50:?} p99 {calm_p99:?} ({} writes); \
         during c1's failover p50 {during_p50:?} p99 {during_p99:?} max {:?} ({} writes)",
        calm.len(),
        during.iter().max(),
        during.len()
    );
    assert!(during.len() > 20, "writes went on during the failover");
    assert!(
        during_p50 <= calm_p50 * 3 + Duration::from_millis(5)
            && during.iter().all(|d| *d < Duration::from_secs(1)),
        "c1's failover slowed the other clusters' writes: p50 {calm_p50:?} -> {during_p50:?}, \
         max {:?}",
        during.iter().max()
    );
    // c1's tenants are served again by its new primary.
    let c1_tenant = (0..100).find(|i| home[&i.to_string()] == "e2e-c1").unwrap();
    rt.block_on(async {
        let mut conn = mysql_async::Conn::new(app(proxy_a)).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match conn
                .query_drop(format!(
                    "UPDATE t_{c1_tenant}.items SET v = 'back' WHERE id = 1"
                ))
                .await
            {
                Ok(()) => break,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("c1 not writable yet: {e}");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("c1's tenant is not writable after the failover: {e}"),
            }
        }
    });

    // The directory's server stopped (SIGSTOP): sessions keep using the tenants they have
    // cached, and a new tenant gets a clear error instead of a hang.
    rt.block_on(async {
        let mut conn = mysql_async::Conn::new(app(proxy_a)).await.unwrap();
        conn.query_drop("SELECT v FROM t_2.items").await.unwrap();
        let directory_pid = cluster(&pool.status(), "e2e-directory")["members"][0]["pid"]
            .as_u64()
            .expect("the directory member's pid") as i32;
        // SAFETY: a plain signal to a process this test's pool started.
        unsafe { libc::kill(directory_pid, libc::SIGSTOP) };
        let began = Instant::now();
        let cached: Option<String> = conn
            .query_first("SELECT v FROM t_2.items WHERE id = 1")
            .await
            .expect("a cached tenant while the directory is stopped");
        assert!(cached.is_some());
        conn.query_drop("UPDATE t_3.items SET v = 'dir-down' WHERE id = 1")
            .await
            .expect("a write to a cached tenant while the directory is stopped");
        assert!(
            began.elapsed() < Duration::from_secs(1),
            "{:?}",
            began.elapsed()
        );
        let refused = conn.query_drop("CREATE DATABASE t_new").await;
        let waited = began.elapsed();
        // SAFETY: as above.
        unsafe { libc::kill(directory_pid, libc::SIGCONT) };
        match refused {
            Err(mysql_async::Error::Server(e)) => {
                assert_eq!(e.code, 1105, "{e:?}");
                assert!(e.message.contains("directory"), "{}", e.message);
            }
            other => panic!("a new tenant with the directory stopped: {other:?}"),
        }
        assert!(waited < Duration::from_secs(5), "refused after {waited:?}");
    });
    let after = pool.status();
    for (name, was) in names.iter().zip(&before) {
        if *name != "e2e-c1" {
            assert_eq!(primary(&after, name), *was, "{name} kept its primary");
        }
    }
    // The killed member comes back, as a replica.
    wait_until(
        "the killed member to rejoin",
        Duration::from_secs(40),
        || {
            let s = pool.status();
            cluster(&s, "e2e-c1")["members"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|m| m["name"] == killed.as_str() && m["role"] == "replica")
        },
    );

    // `down --purge` stops every process and deletes the state.
    let pids = pids(&pool.status());
    assert!(pids.len() >= 9, "{pids:?}");
    let out = pool.ok(&["down", "--purge"]);
    assert!(out.contains("deleted"), "{out}");
    assert!(!pool.state().exists());
    wait_until("every process to exit", Duration::from_secs(10), || {
        pids.iter().all(|p| !alive(*p))
    });
    assert!(
        began.elapsed() < Duration::from_secs(240),
        "the whole test took {:.0} s",
        began.elapsed().as_secs_f64()
    );
}
