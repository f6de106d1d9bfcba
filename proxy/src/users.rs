//! Who may log in through the proxy, and with what secret.
//!
//! Users come from a file (in Kubernetes a mounted Secret), re-read when it changes, and from
//! the primary itself (`mysql.global_priv`, MySQL `mysql.user`), looked up on first use and
//! cached for a short TTL, so a user made with CREATE USER works through the proxy at once. A
//! user in the file wins. Lookups are bounded: see [`UserStore::find`].

use std::collections::HashMap;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use lru::LruCache;
use mysql_async::prelude::Queryable;
use serde::Deserialize;
use tokio::sync::{OnceCell, Semaphore};

use crate::protocol::auth;
use crate::topology::{Flavor, Member};

/// What the proxy knows about one user.
#[derive(Clone, PartialEq, Eq)]
pub struct UserRecord {
    pub name: String,
    /// The plugin the server-side account uses (`mysql_native_password`, `ed25519`, ...).
    pub server_plugin: String,
    /// The password, when the users file gives it.
    pub password: Option<String>,
    /// SHA1(SHA1(password)), from the file or `mysql.user`.
    pub native_hash: Option<[u8; 20]>,
    /// Locked (`ACCOUNT LOCK`): the primary answers such a login itself.
    pub locked: bool,
    /// Its password expired: the primary answers such a login itself (refused, or a sandbox
    /// session for a client that can handle it).
    pub expired: bool,
}

impl std::fmt::Debug for UserRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserRecord")
            .field("name", &self.name)
            .field("server_plugin", &self.server_plugin)
            .field("has_password", &self.password.is_some())
            .field("has_native_hash", &self.native_hash.is_some())
            .field("locked", &self.locked)
            .field("expired", &self.expired)
            .finish()
    }
}

/// One entry of the users file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileUser {
    user: String,
    #[serde(default)]
    password: Option<String>,
    /// `*` + 40 hex digits, as `mysql.user` stores it.
    #[serde(default)]
    native_hash: Option<String>,
    /// `mysql_native_password` (default) or `ed25519`.
    #[serde(default)]
    plugin: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UsersFile {
    users: Vec<FileUser>,
}

/// Why the users file was rejected.
#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    #[error("cannot read users file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("users file {path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
}

fn parse_file(path: &Path, bytes: &[u8]) -> Result<HashMap<String, UserRecord>, UsersError> {
    let invalid = |reason: String| UsersError::Invalid {
        path: path.to_path_buf(),
        reason,
    };
    let file: UsersFile = serde_json::from_slice(bytes).map_err(|e| invalid(e.to_string()))?;
    let mut out = HashMap::new();
    for (i, u) in file.users.into_iter().enumerate() {
        if u.user.is_empty() {
            return Err(invalid(format!("users[{i}].user is empty")));
        }
        let native_hash = match (&u.native_hash, &u.password) {
            (Some(h), _) => Some(auth::parse_native_hash(h).ok_or_else(|| {
                invalid(format!(
                    "users[{i}].native_hash must be `*` and 40 hex digits"
                ))
            })?),
            (None, Some(p)) => Some(auth::native_hash(p)),
            (None, None) => {
                return Err(invalid(format!(
                    "users[{i}] ({}) needs `password` or `native_hash`",
                    u.user
                )));
            }
        };
        let plugin = u.plugin.unwrap_or_else(|| auth::NATIVE.to_string());
        if plugin != auth::NATIVE && plugin != "ed25519" {
            return Err(invalid(format!(
                "users[{i}].plugin `{plugin}` is not supported (mysql_native_password, ed25519)"
            )));
        }
        if plugin == "ed25519" && u.password.is_none() {
            return Err(invalid(format!("users[{i}]: ed25519 needs `password`")));
        }
        if out.contains_key(&u.user) {
            return Err(invalid(format!("users[{i}]: `{}` is listed twice", u.user)));
        }
        out.insert(
            u.user.clone(),
            UserRecord {
                name: u.user,
                server_plugin: plugin,
                password: u.password,
                native_hash,
                locked: false,
                expired: false,
            },
        );
    }
    Ok(out)
}

pub use crate::backend::account::LookupCredentials;

/// Reads `file` again if its modification time changed. A missing file is no users when
/// `may_be_missing` (the operator's, not written yet), else an error that keeps the users.
fn reload(file: &Mutex<FileState>, may_be_missing: bool) {
    let mut state = lock(file);
    let modified = std::fs::metadata(&state.path)
        .and_then(|m| m.modified())
        .ok();
    if modified == state.modified {
        return;
    }
    state.modified = modified;
    if modified.is_none() && may_be_missing {
        state.users.clear();
        return;
    }
    match std::fs::read(&state.path)
        .map_err(|source| UsersError::Read {
            path: state.path.clone(),
            source,
        })
        .and_then(|b| parse_file(&state.path, &b))
    {
        Ok(users) => {
            tracing::info!(path = %state.path.display(), users = users.len(), "users file read");
            state.users = users;
        }
        Err(e) => {
            tracing::warn!(error = %e, "users file not read; keeping the previous users")
        }
    }
}

struct FileState {
    path: PathBuf,
    modified: Option<SystemTime>,
    users: HashMap<String, UserRecord>,
}

/// Lookups running at once, over all names: each holds one of the few persistent lookup
/// connections, so a flood of unknown names cannot open connections on the primary.
const LOOKUP_CONCURRENCY: usize = 2;
/// Looked-up names remembered, found or not; the least recently used is forgotten first.
const CACHE_ENTRIES: usize = 10_000;
/// The longest user name a server accepts, in characters: MariaDB's `mysql.global_priv.User`
/// is `char(128)`, MySQL's `mysql.user.User` `char(32)`.
pub fn max_user_chars(flavor: Flavor) -> usize {
    match flavor {
        Flavor::Mariadb => 128,
        Flavor::Mysql => 32,
    }
}

type Found = Option<UserRecord>;

/// The user directory.
pub struct UserStore {
    file: Option<Mutex<FileState>>,
    /// The operator's file: read once it exists, second to `file`.
    managed: Option<Mutex<FileState>>,
    lookup: Option<LookupCredentials>,
    ttl: Duration,
    cache: Mutex<LruCache<String, (Instant, Found)>>,
    /// Lookups under way, by name: a second login for the same name waits for the first.
    inflight: Mutex<HashMap<String, Arc<OnceCell<Found>>>>,
    permits: Semaphore,
    /// Idle lookup connections, by member address: at most [`LOOKUP_CONCURRENCY`] each, and
    /// no more in use at once (a lookup holds a permit while it uses one).
    idle: Mutex<HashMap<String, Vec<mysql_async::Conn>>>,
}

impl std::fmt::Debug for UserStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserStore")
            .field("lookup", &self.lookup.as_ref().map(|l| &l.user))
            .field("ttl", &self.ttl)
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl UserStore {
    /// Loads the users file (an error here stops start-up) and the operator's (missing is
    /// none yet; broken is logged), and sets up the primary lookup.
    pub fn new(
        file: Option<PathBuf>,
        managed: Option<PathBuf>,
        lookup: Option<LookupCredentials>,
        ttl: Duration,
    ) -> Result<Self, UsersError> {
        let file = match file {
            Some(path) => {
                let bytes = std::fs::read(&path).map_err(|source| UsersError::Read {
                    path: path.clone(),
                    source,
                })?;
                let users = parse_file(&path, &bytes)?;
                let modified = std::fs::metadata(&path).and_then(|m| m.modified()).ok();
                Some(Mutex::new(FileState {
                    path,
                    modified,
                    users,
                }))
            }
            None => None,
        };
        let managed = managed.map(|path| {
            let state = Mutex::new(FileState {
                path,
                modified: None,
                users: HashMap::new(),
            });
            reload(&state, true);
            state
        });
        let entries = NonZeroUsize::new(CACHE_ENTRIES).unwrap_or(NonZeroUsize::MIN);
        Ok(Self {
            file,
            managed,
            lookup,
            ttl,
            cache: Mutex::new(LruCache::new(entries)),
            inflight: Mutex::new(HashMap::new()),
            permits: Semaphore::new(LOOKUP_CONCURRENCY),
            idle: Mutex::new(HashMap::new()),
        })
    }

    /// Re-reads the users files when their modification time changed; a broken file is
    /// logged and the previous users stay.
    pub fn reload_if_changed(&self) {
        if let Some(file) = &self.file {
            reload(file, false);
        }
        if let Some(managed) = &self.managed {
            reload(managed, true);
        }
    }

    fn in_file(&self, name: &str) -> Option<UserRecord> {
        [&self.file, &self.managed]
            .into_iter()
            .flatten()
            .find_map(|file| lock(file).users.get(name).cloned())
    }

    /// The record for `name`: the file first, then the accounts on the first of `members`
    /// (the primary, then the replicas, which hold the same accounts) that answers, cached for
    /// the TTL. When none answers — a failover under way — an expired cached record is still
    /// the best answer: refusing a known account then would turn a pause into an outage.
    ///
    /// A name longer than the server allows is no account and is not looked up; lookups of
    /// one name at once are made once; lookups run on a few persistent connections.
    pub async fn find(&self, name: &str, members: &[Member], flavor: Flavor) -> Option<UserRecord> {
        if let Some(u) = self.in_file(name) {
            return Some(u);
        }
        let creds = self.lookup.as_ref()?;
        if name.is_empty() || name.chars().count() > max_user_chars(flavor) {
            return None;
        }
        let cached = lock(&self.cache).get(name).cloned();
        if let Some((at, rec)) = &cached
            && at.elapsed() < self.ttl
        {
            return rec.clone();
        }
        let cell = lock(&self.inflight)
            .entry(name.to_string())
            .or_default()
            .clone();
        let found = cell
            .get_or_init(|| async {
                let found = self.look_up(creds, name, members, flavor).await;
                match found {
                    Some(rec) => {
                        lock(&self.cache).put(name.to_string(), (Instant::now(), rec.clone()));
                        rec
                    }
                    None => cached.and_then(|(_, rec)| rec),
                }
            })
            .await
            .clone();
        {
            let mut inflight = lock(&self.inflight);
            if inflight.get(name).is_some_and(|c| Arc::ptr_eq(c, &cell)) {
                inflight.remove(name);
            }
        }
        found
    }

    /// Asks the members in order; `None` when none gave an answer.
    async fn look_up(
        &self,
        creds: &LookupCredentials,
        name: &str,
        members: &[Member],
        flavor: Flavor,
    ) -> Option<Found> {
        let _permit = self.permits.acquire().await.ok()?;
        for (i, member) in members.iter().enumerate() {
            let lookup = self.lookup_on(creds, member, name, flavor);
            match tokio::time::timeout(LOOKUP_TIMEOUT, lookup).await {
                // A replica may lag behind a CREATE USER: only the primary's "no such user"
                // is an answer (and cached); a replica's lets the next member be asked.
                Ok(Ok(None)) if i > 0 => {}
                Ok(Ok(rec)) => return Some(rec),
                Ok(Err(e)) => {
                    tracing::warn!(user = name, member = %member.addr(), error = %e, "user lookup failed");
                }
                Err(_) => {
                    tracing::warn!(user = name, member = %member.addr(), "user lookup timed out");
                }
            }
        }
        None
    }

    /// Looks `name` up on `member` over a kept connection (or a new one, kept afterwards).
    async fn lookup_on(
        &self,
        creds: &LookupCredentials,
        member: &Member,
        name: &str,
        flavor: Flavor,
    ) -> Result<Option<UserRecord>, mysql_async::Error> {
        let addr = member.addr();
        let sql = match flavor {
            Flavor::Mariadb => MARIADB_LOOKUP,
            Flavor::Mysql => MYSQL_LOOKUP,
        };
        let fresh = || mysql_async::Conn::new(crate::backend::monitor::opts(member, creds));
        let kept = lock(&self.idle).get_mut(&addr).and_then(Vec::pop);
        let (conn, row) = match kept {
            // A kept connection the server closed meanwhile (a restart, its wait_timeout) is
            // dropped and the lookup made once more on a new one.
            Some(mut conn) => match conn.exec_first(sql, (name,)).await {
                Ok(row) => (conn, row),
                Err(_) => {
                    let mut conn = fresh().await?;
                    let row = conn.exec_first(sql, (name,)).await?;
                    (conn, row)
                }
            },
            None => {
                let mut conn = fresh().await?;
                let row = conn.exec_first(sql, (name,)).await?;
                (conn, row)
            }
        };
        let row: Option<(String, String, bool, bool)> = row;
        let mut idle = lock(&self.idle);
        let kept = idle.entry(addr).or_default();
        if kept.len() < LOOKUP_CONCURRENCY {
            kept.push(conn);
        }
        Ok(row.map(|(plugin, auth_string, locked, expired)| {
            record(name, plugin, &auth_string, locked, expired)
        }))
    }

    /// Forgets the kept connections to servers no longer in `addrs`.
    pub fn retain(&self, addrs: &[String]) {
        lock(&self.idle).retain(|addr, _| addrs.contains(addr));
    }
}

/// How long one member may take to answer a user lookup before the next is asked.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

/// MariaDB: the account's entry in `mysql.global_priv` (all the lookup account may read).
/// The `'%'` account is preferred: the server sees the proxy's address, not the client's.
const MARIADB_LOOKUP: &str = "SELECT \
     IFNULL(JSON_VALUE(Priv, '$.plugin'), ''), \
     IFNULL(JSON_VALUE(Priv, '$.authentication_string'), ''), \
     IFNULL(JSON_VALUE(Priv, '$.account_locked'), 'false') = 'true', \
     IFNULL(JSON_VALUE(Priv, '$.password_last_changed'), 1) = 0 \
     FROM mysql.global_priv WHERE User = ? ORDER BY Host = '%' DESC LIMIT 1";

/// MySQL: the same from `mysql.user`.
const MYSQL_LOOKUP: &str = "SELECT plugin, authentication_string, account_locked = 'Y', \
     password_expired = 'Y' FROM mysql.user WHERE User = ? ORDER BY Host = '%' DESC LIMIT 1";

/// An account as the server stores it. A hash that cannot be read leaves the account to the
/// primary to judge (relayed), never to a guess.
fn record(
    name: &str,
    plugin: String,
    auth_string: &str,
    locked: bool,
    expired: bool,
) -> UserRecord {
    let plugin = if plugin.is_empty() {
        auth::NATIVE.to_string()
    } else {
        plugin
    };
    let native = plugin == auth::NATIVE;
    UserRecord {
        name: name.to_string(),
        // An account without a password.
        password: (native && auth_string.is_empty()).then(String::new),
        native_hash: if native && !auth_string.is_empty() {
            auth::parse_native_hash(auth_string)
        } else {
            None
        },
        server_plugin: plugin,
        locked,
        expired,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<HashMap<String, UserRecord>, UsersError> {
        parse_file(&PathBuf::from("users.json"), s.as_bytes())
    }

    #[test]
    fn parses_passwords_and_hashes() {
        let users = parse(
            r#"{"users":[{"user":"app","password":"app-pass"},
                {"user":"ro","native_hash":"*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19"},
                {"user":"ed","password":"x","plugin":"ed25519"}]}"#,
        )
        .unwrap();
        assert_eq!(
            users["app"].native_hash,
            Some(auth::native_hash("app-pass"))
        );
        assert!(users["ro"].password.is_none());
        assert_eq!(users["ed"].server_plugin, "ed25519");
    }

    #[test]
    fn rejects_bad_files_with_the_field() {
        let cases = [
            (r#"{"users":[{"user":""}]}"#, "users[0].user is empty"),
            (
                r#"{"users":[{"user":"a"}]}"#,
                "needs `password` or `native_hash`",
            ),
            (
                r#"{"users":[{"user":"a","native_hash":"*12"}]}"#,
                "native_hash",
            ),
            (
                r#"{"users":[{"user":"a","password":"p"},{"user":"a","password":"q"}]}"#,
                "listed twice",
            ),
            (
                r#"{"users":[{"user":"a","password":"p","plugin":"pam"}]}"#,
                "not supported",
            ),
            (
                r#"{"users":[{"user":"a","native_hash":"*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19","plugin":"ed25519"}]}"#,
                "ed25519 needs",
            ),
            (r#"{"users":[{"user":"a","pasword":"p"}]}"#, "unknown field"),
            ("not json", "expected"),
        ];
        for (doc, want) in cases {
            let err = parse(doc).unwrap_err().to_string();
            assert!(err.contains(want), "{doc}: {err}");
        }
    }

    #[test]
    fn the_operators_file_may_come_later_and_yields_to_the_users_file() {
        let dir = tempfile::tempdir().unwrap();
        let users = dir.path().join("users.json");
        let managed = dir.path().join("managed.json");
        std::fs::write(&users, r#"{"users":[{"user":"app","password":"mine"}]}"#).unwrap();
        let store = UserStore::new(
            Some(users),
            Some(managed.clone()),
            None,
            Duration::from_secs(1),
        )
        .expect("a missing operator's file is no users yet");
        assert!(store.in_file("svc").is_none());
        std::fs::write(
            &managed,
            r#"{"users":[{"user":"svc","native_hash":"*2470C0C06DEE42FD1618BB99005ADCA2EC9D1E19"},
                {"user":"app","password":"theirs"}]}"#,
        )
        .unwrap();
        store.reload_if_changed();
        assert!(store.in_file("svc").is_some_and(|u| u.password.is_none()));
        // A name in both: the users file's.
        assert_eq!(
            store.in_file("app").and_then(|u| u.password).as_deref(),
            Some("mine")
        );
        // Removed again: its users go.
        std::fs::remove_file(&managed).unwrap();
        store.reload_if_changed();
        assert!(store.in_file("svc").is_none());
    }

    #[test]
    fn debug_output_hides_secrets() {
        let users = parse(r#"{"users":[{"user":"app","password":"hunter2"}]}"#).unwrap();
        let shown = format!("{:?}", users["app"]);
        assert!(!shown.contains("hunter2"));
    }
}
