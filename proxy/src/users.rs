//! Who may log in through the proxy, and with what secret.
//!
//! Users come from a file (in Kubernetes a mounted Secret), re-read when it changes, and from
//! the primary itself (`mysql.user`), looked up on first use and cached for a short TTL, so a
//! user made with CREATE USER works through the proxy at once. A user in the file wins.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use mysql_async::prelude::Queryable;
use serde::Deserialize;

use crate::protocol::auth;
use crate::topology::Member;

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
}

impl std::fmt::Debug for UserRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserRecord")
            .field("name", &self.name)
            .field("server_plugin", &self.server_plugin)
            .field("has_password", &self.password.is_some())
            .field("has_native_hash", &self.native_hash.is_some())
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
            },
        );
    }
    Ok(out)
}

/// Credentials the proxy uses to read `mysql.user` on the primary.
#[derive(Debug, Clone)]
pub struct LookupCredentials {
    pub user: String,
    pub password: String,
}

struct FileState {
    path: PathBuf,
    modified: Option<SystemTime>,
    users: HashMap<String, UserRecord>,
}

/// The user directory.
pub struct UserStore {
    file: Option<Mutex<FileState>>,
    lookup: Option<LookupCredentials>,
    ttl: Duration,
    cache: Mutex<HashMap<String, (Instant, Option<UserRecord>)>>,
}

impl std::fmt::Debug for UserStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserStore")
            .field("lookup", &self.lookup.as_ref().map(|l| &l.user))
            .field("ttl", &self.ttl)
            .finish()
    }
}

impl UserStore {
    /// Loads the users file (an error here stops start-up) and sets up the primary lookup.
    pub fn new(
        file: Option<PathBuf>,
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
        Ok(Self {
            file,
            lookup,
            ttl,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// Re-reads the users file when its modification time changed; a broken file is logged
    /// and the previous users stay.
    pub fn reload_if_changed(&self) {
        let Some(file) = &self.file else { return };
        let mut state = file.lock().unwrap_or_else(|e| e.into_inner());
        let modified = std::fs::metadata(&state.path)
            .and_then(|m| m.modified())
            .ok();
        if modified == state.modified {
            return;
        }
        state.modified = modified;
        match std::fs::read(&state.path)
            .map_err(|source| UsersError::Read {
                path: state.path.clone(),
                source,
            })
            .and_then(|b| parse_file(&state.path, &b))
        {
            Ok(users) => {
                tracing::info!(users = users.len(), "users file reloaded");
                state.users = users;
            }
            Err(e) => {
                tracing::warn!(error = %e, "users file not reloaded; keeping the previous users")
            }
        }
    }

    fn in_file(&self, name: &str) -> Option<UserRecord> {
        let file = self.file.as_ref()?;
        file.lock()
            .unwrap_or_else(|e| e.into_inner())
            .users
            .get(name)
            .cloned()
    }

    /// The record for `name`: the file first, then `mysql.user` on the first of `members`
    /// (the primary, then the replicas, which hold the same accounts) that answers, cached for
    /// the TTL. When none answers — a failover under way — an expired cached record is still
    /// the best answer: refusing a known account then would turn a pause into an outage.
    pub async fn find(&self, name: &str, members: &[Member]) -> Option<UserRecord> {
        if let Some(u) = self.in_file(name) {
            return Some(u);
        }
        let creds = self.lookup.as_ref()?;
        let cached = self
            .cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
            .cloned();
        if let Some((at, rec)) = &cached
            && at.elapsed() < self.ttl
        {
            return rec.clone();
        }
        for (i, member) in members.iter().enumerate() {
            let lookup = lookup_on(creds, member, name);
            match tokio::time::timeout(LOOKUP_TIMEOUT, lookup).await {
                // A replica may lag behind a CREATE USER: only the primary's "no such user"
                // is an answer (and cached); a replica's lets the next member be asked.
                Ok(Ok(None)) if i > 0 => {}
                Ok(Ok(rec)) => {
                    self.cache
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .insert(name.to_string(), (Instant::now(), rec.clone()));
                    return rec;
                }
                Ok(Err(e)) => {
                    tracing::warn!(user = name, member = %member.addr(), error = %e, "user lookup failed");
                }
                Err(_) => {
                    tracing::warn!(user = name, member = %member.addr(), "user lookup timed out");
                }
            }
        }
        cached.and_then(|(_, rec)| rec)
    }
}

/// How long one member may take to answer a user lookup before the next is asked.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

async fn lookup_on(
    creds: &LookupCredentials,
    member: &Member,
    name: &str,
) -> Result<Option<UserRecord>, mysql_async::Error> {
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname(member.host.clone())
        .tcp_port(member.port)
        .user(Some(&creds.user))
        .pass(Some(&creds.password))
        .prefer_socket(false);
    let mut conn = mysql_async::Conn::new(opts).await?;
    // Prefer the '%' account: the server sees the proxy's address, not the client's.
    let row: Option<(String, String)> = conn
        .exec_first(
            "SELECT plugin, authentication_string FROM mysql.user WHERE User = ? \
             ORDER BY Host = '%' DESC LIMIT 1",
            (name,),
        )
        .await?;
    let _ = conn.disconnect().await;
    Ok(row.and_then(|(plugin, auth_string)| {
        let plugin = if plugin.is_empty() {
            auth::NATIVE.to_string()
        } else {
            plugin
        };
        let native_hash = if plugin == auth::NATIVE {
            if auth_string.is_empty() {
                // An account without a password.
                None
            } else {
                Some(auth::parse_native_hash(&auth_string)?)
            }
        } else {
            None
        };
        Some(UserRecord {
            name: name.to_string(),
            password: (plugin == auth::NATIVE && auth_string.is_empty()).then(String::new),
            server_plugin: plugin,
            native_hash,
        })
    }))
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
    fn debug_output_hides_secrets() {
        let users = parse(r#"{"users":[{"user":"app","password":"hunter2"}]}"#).unwrap();
        let shown = format!("{:?}", users["app"]);
        assert!(!shown.contains("hunter2"));
    }
}
