//! The state directory of one local cluster: everything the runtime keeps, in one place, so
//! commands run from other terminals find the cluster.
//!
//! ```text
//! <dir>/cluster.yaml        the MySQLCluster as last given to `up`
//! <dir>/settings.json       ports, member count and ids chosen at the first `up`
//! <dir>/credentials.json    generated passwords (mode 0600)
//! <dir>/supervisor.lock     held by the running supervisor (flock)
//! <dir>/supervisor.pid
//! <dir>/status.json         rewritten by the supervisor twice a second
//! <dir>/topology.json       what the proxies follow
//! <dir>/operator.log
//! <dir>/template/           the initialised data directory new members start from
//! <dir>/members/<name>/     my.cnf, data/, error.log, the socket
//! <dir>/proxies/<n>/        proxy.log
//! <dir>/requests/           switchover, scale and reseed requests (results: status.json)
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::orchestrate::act::{ProxyAccount, ProxyRole};
use crate::orchestrate::observe::Credentials;

use super::LocalError;

/// Paths inside one cluster's state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn manifest(&self) -> PathBuf {
        self.root.join("cluster.yaml")
    }
    pub fn settings(&self) -> PathBuf {
        self.root.join("settings.json")
    }
    /// Present while a restore fills the members: such a cluster is never started.
    pub fn restoring(&self) -> PathBuf {
        self.root.join("restore.incomplete")
    }
    pub fn credentials(&self) -> PathBuf {
        self.root.join("credentials.json")
    }
    pub fn lock(&self) -> PathBuf {
        self.root.join("supervisor.lock")
    }
    pub fn pid(&self) -> PathBuf {
        self.root.join("supervisor.pid")
    }
    pub fn status(&self) -> PathBuf {
        self.root.join("status.json")
    }
    /// The certificate files (`ca.crt`, `tls.crt`, `tls.key`) and the CA that issues them.
    pub fn tls(&self) -> PathBuf {
        self.root.join("tls")
    }
    pub fn topology(&self) -> PathBuf {
        self.root.join("topology.json")
    }
    pub fn log(&self) -> PathBuf {
        self.root.join("operator.log")
    }
    pub fn template(&self) -> PathBuf {
        self.root.join("template")
    }
    pub fn member(&self, name: &str) -> PathBuf {
        self.root.join("members").join(name)
    }
    pub fn proxy(&self, index: usize) -> PathBuf {
        self.root.join("proxies").join(index.to_string())
    }
    pub fn requests(&self) -> PathBuf {
        self.root.join("requests")
    }

    /// Whether a supervisor runs for this cluster now.
    pub fn running(&self) -> bool {
        super::process::FileLock::is_held(&self.lock())
    }

    /// The running supervisor's PID, if one runs.
    pub fn supervisor_pid(&self) -> Option<u32> {
        super::daemon::running_pid(&self.lock(), &self.pid())
    }
}

/// The state directory `up` uses for the cluster or pool `name`: `--state-dir`, else `name`
/// under [`default_root`]. Fails when `--name` (`wanted`) names another.
pub fn root_for(
    state_dir: Option<&Path>,
    wanted: Option<&str>,
    name: &str,
) -> Result<PathBuf, LocalError> {
    if let Some(wanted) = wanted
        && wanted != name
    {
        return Err(LocalError::Other(format!(
            "--name {wanted} does not match the file's metadata.name ({name})"
        )));
    }
    Ok(match state_dir {
        Some(d) => d.to_path_buf(),
        None => default_root().join(name),
    })
}

/// Fails when a supervisor for `name` runs (`pid`), or holds the lock (`running`) without
/// having recorded its PID yet.
pub fn ensure_stopped(name: &str, pid: Option<u32>, running: bool) -> Result<(), LocalError> {
    match pid {
        Some(pid) => Err(LocalError::AlreadyRunning(name.to_string(), pid)),
        None if running => Err(LocalError::AlreadyRunning(name.to_string(), 0)),
        None => Ok(()),
    }
}

/// Where clusters live unless `--state-dir` says otherwise: `$LAGLESS_HOME`, else
/// `$XDG_DATA_HOME/lagless`, else `~/.local/share/lagless`.
pub fn default_root() -> PathBuf {
    if let Some(dir) = std::env::var_os("LAGLESS_HOME") {
        return PathBuf::from(dir);
    }
    if let Some(dir) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("lagless");
    }
    match std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        Some(home) => PathBuf::from(home).join(".local/share/lagless"),
        None => PathBuf::from(".lagless"),
    }
}

/// The state directory a command acts on: `--state-dir`, else `--name` under the default
/// root, else the only cluster there.
pub fn resolve(state_dir: Option<&Path>, name: Option<&str>) -> Result<StateDir, LocalError> {
    match state_dir {
        Some(dir) => Ok(StateDir::new(dir)),
        None => resolve_in(&default_root(), name),
    }
}

fn resolve_in(root: &Path, name: Option<&str>) -> Result<StateDir, LocalError> {
    let holds = |dir: &Path| dir.join("cluster.yaml").is_file() || dir.join("pool.yaml").is_file();
    let entries = || {
        std::fs::read_dir(root)
            .map(|entries| entries.filter_map(Result::ok).map(|e| e.path()).collect())
            .unwrap_or_else(|_| Vec::<PathBuf>::new())
    };
    if let Some(name) = name {
        let dir = root.join(name);
        if holds(&dir) {
            return Ok(StateDir::new(dir));
        }
        // A cluster of a tenant pool lives inside the pool's directory; commands on it go
        // through the pool.
        let pool = entries()
            .into_iter()
            .find(|p| p.join("pool.yaml").is_file() && holds(&p.join("clusters").join(name)));
        return Ok(StateDir::new(pool.unwrap_or(dir)));
    }
    let mut found: Vec<String> = entries()
        .into_iter()
        .filter(|p| holds(p))
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    found.sort();
    match found.as_slice() {
        [only] => Ok(StateDir::new(root.join(only))),
        [] => Err(LocalError::NoCluster(root.to_path_buf())),
        several => Err(LocalError::Ambiguous(
            root.to_path_buf(),
            several.join(", "),
        )),
    }
}

/// Choices made at the first `up` and kept, so restarts use the same ports and ids.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    pub cluster: String,
    /// Member `i` listens on `base_port + i`.
    pub base_port: u16,
    /// Proxy `i` listens on `proxy_port + 2i`, its admin HTTP endpoint on the port after.
    pub proxy_port: u16,
    /// Members wanted now (`scale` changes it).
    pub replicas: u32,
    pub server_id_base: u32,
    pub gtid_domain_id: u32,
    /// The tenant pool this cluster belongs to: its proxies are the pool's, so the cluster's
    /// supervisor starts none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pool: Option<String>,
    /// Orchestration paused: `spec.paused` of the file `up -f` was given, then `pause` and
    /// `resume` (kept across restarts).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
    /// Members kept out of read routing: `spec.cordoned` of the file `up -f` was given, then
    /// `cordon` and `uncordon` (kept across restarts).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cordoned: Vec<String>,
    /// The whole cluster read-only: `spec.readOnly` of the file `up -f` was given, then
    /// `read-only on|off` (kept across restarts).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only: bool,
    /// `spec.backup.s3.credentialsFile`, made absolute against the cluster file's directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_credentials: Option<std::path::PathBuf>,
}

impl Settings {
    pub fn member_name(&self, index: u32) -> String {
        format!("{}-{index}", self.cluster)
    }

    pub fn member_port(&self, index: u32) -> Option<u16> {
        u16::try_from(u32::from(self.base_port).checked_add(index)?).ok()
    }

    pub fn proxy_ports(&self, index: usize) -> Option<(u16, u16)> {
        proxy_ports(self.proxy_port, index)
    }
}

/// Proxy `index`'s SQL and admin HTTP ports, the proxies' taking two each from `first`.
pub fn proxy_ports(first: u16, index: usize) -> Option<(u16, u16)> {
    let port = usize::from(first).checked_add(index.checked_mul(2)?)?;
    let port = u16::try_from(port).ok()?;
    Some((port, port.checked_add(1)?))
}

/// Generated accounts. The admin account drives the servers (and lets the proxies look users
/// up); the application account is what people and apps connect with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalCredentials {
    pub admin_user: String,
    pub admin_password: String,
    pub replication_user: String,
    pub replication_password: String,
    pub app_user: String,
    pub app_password: String,
    pub database: String,
    /// The proxies read accounts with this one: `mysql.global_priv`, nothing else.
    #[serde(default = "lookup_user")]
    pub lookup_user: String,
    /// Empty in a file from before these accounts: see [`LocalCredentials::fill_in`].
    #[serde(default)]
    pub lookup_password: String,
    /// The proxies read positions with this one: replication status, nothing else.
    #[serde(default = "monitor_user")]
    pub monitor_user: String,
    #[serde(default)]
    pub monitor_password: String,
}

fn lookup_user() -> String {
    "lagless_lookup".into()
}

fn monitor_user() -> String {
    "lagless_monitor".into()
}

impl LocalCredentials {
    /// The proxies' accounts, as the orchestration keeps them on the primary.
    pub fn proxy_accounts(&self) -> [ProxyAccount; 2] {
        let account = |role, user: &str, password: &str| ProxyAccount {
            role,
            creds: Credentials {
                user: user.to_string(),
                password: password.to_string(),
            },
        };
        [
            account(ProxyRole::Lookup, &self.lookup_user, &self.lookup_password),
            account(
                ProxyRole::Monitor,
                &self.monitor_user,
                &self.monitor_password,
            ),
        ]
    }

    /// Generates the passwords a file from an older version lacks; returns whether it did (the
    /// file must then be written back, so the next start uses the same ones).
    pub fn fill_in(&mut self) -> Result<bool, LocalError> {
        let mut filled = false;
        for p in [&mut self.lookup_password, &mut self.monitor_password] {
            if p.is_empty() {
                *p = password()?;
                filled = true;
            }
        }
        Ok(filled)
    }

    pub fn generate() -> Result<Self, LocalError> {
        Ok(Self {
            admin_user: "lagless_admin".into(),
            admin_password: password()?,
            replication_user: "lagless_repl".into(),
            replication_password: password()?,
            app_user: "app".into(),
            app_password: password()?,
            database: "app".into(),
            lookup_user: lookup_user(),
            lookup_password: password()?,
            monitor_user: monitor_user(),
            monitor_password: password()?,
        })
    }
}

/// 20 random letters and digits: about 119 bits, and nothing that needs quoting anywhere.
fn password() -> Result<String, LocalError> {
    const ALPHABET: &[u8] = b"abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut bytes = [0u8; 20];
    getrandom::fill(&mut bytes)
        .map_err(|e| LocalError::Other(format!("no randomness for passwords: {e}")))?;
    Ok(bytes
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(*b) % ALPHABET.len()]))
        .collect())
}

/// Reads a JSON file written by [`write_json`].
pub fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, LocalError> {
    let bytes = std::fs::read(path).map_err(LocalError::io(path))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| LocalError::Other(format!("{}: {e}", path.display())))
}

/// Writes JSON atomically (a reader never sees half a file), with `mode` permissions.
pub fn write_json<T: Serialize>(path: &Path, value: &T, mode: u32) -> Result<(), LocalError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let bytes = serde_json::to_vec_pretty(value)
        .map_err(|e| LocalError::Other(format!("{}: {e}", path.display())))?;
    let tmp = path.with_extension("json.tmp");
    let mut file = std::fs::File::options()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(LocalError::io(&tmp))?;
    file.write_all(&bytes).map_err(LocalError::io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(LocalError::io(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_and_names_follow_the_settings() {
        let s = Settings {
            cluster: "shop".into(),
            base_port: 3307,
            proxy_port: 6033,
            replicas: 3,
            server_id_base: 1001,
            gtid_domain_id: 10,
            pool: None,
            paused: false,
            cordoned: Vec::new(),
            read_only: false,
            backup_credentials: None,
        };
        assert_eq!(s.member_name(2), "shop-2");
        assert_eq!(s.member_port(2), Some(3309));
        assert_eq!(s.proxy_ports(1), Some((6035, 6036)));
        let edge = Settings {
            base_port: 65535,
            proxy_port: 65535,
            ..s
        };
        assert_eq!(edge.member_port(1), None);
        assert_eq!(edge.proxy_ports(0), None);
    }

    #[test]
    fn passwords_are_long_random_and_plain() {
        let a = password().unwrap();
        let b = password().unwrap();
        assert_eq!(a.len(), 20);
        assert_ne!(a, b);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()));
    }

    #[test]
    fn the_only_cluster_is_found_and_several_need_a_name() {
        let root = tempfile::tempdir().unwrap();
        let add = |name: &str| {
            std::fs::create_dir_all(root.path().join(name)).unwrap();
            std::fs::write(root.path().join(name).join("cluster.yaml"), "x").unwrap();
        };
        assert!(matches!(
            resolve_in(root.path(), None),
            Err(LocalError::NoCluster(_))
        ));
        add("a");
        // A directory without a manifest is not a cluster.
        std::fs::create_dir_all(root.path().join("junk")).unwrap();
        assert_eq!(
            resolve_in(root.path(), None).unwrap().root(),
            root.path().join("a")
        );
        add("b");
        match resolve_in(root.path(), None) {
            Err(LocalError::Ambiguous(_, names)) => assert_eq!(names, "a, b"),
            other => panic!("expected an ambiguity, got {other:?}"),
        }
        assert_eq!(
            resolve_in(root.path(), Some("b")).unwrap().root(),
            root.path().join("b")
        );
        // A pool counts, and its clusters are found through it.
        std::fs::create_dir_all(root.path().join("p/clusters/p-c0")).unwrap();
        std::fs::write(root.path().join("p/pool.yaml"), "x").unwrap();
        std::fs::write(root.path().join("p/clusters/p-c0/cluster.yaml"), "x").unwrap();
        match resolve_in(root.path(), None) {
            Err(LocalError::Ambiguous(_, names)) => assert_eq!(names, "a, b, p"),
            other => panic!("expected an ambiguity, got {other:?}"),
        }
        assert_eq!(
            resolve_in(root.path(), Some("p-c0")).unwrap().root(),
            root.path().join("p")
        );
        assert_eq!(
            resolve_in(root.path(), Some("nothing")).unwrap().root(),
            root.path().join("nothing")
        );
        let explicit = resolve(Some(&root.path().join("a")), None).unwrap();
        assert_eq!(explicit.manifest(), root.path().join("a/cluster.yaml"));
    }

    #[test]
    fn json_round_trips_atomically_with_the_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.json");
        let creds = LocalCredentials::generate().unwrap();
        write_json(&path, &creds, 0o600).unwrap();
        let back: LocalCredentials = read_json(&path).unwrap();
        assert_eq!(back, creds);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert!(!path.with_extension("json.tmp").exists());
    }
}
