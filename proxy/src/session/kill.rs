//! `KILL [CONNECTION | QUERY] <id>` and COM_PROCESS_KILL with the proxy's connection ids.
//!
//! Clients see the proxy's connection id in the greeting, so they kill by that id. The proxy
//! maps it to the backend threads that session uses at that moment and kills those, as the
//! client's own user; an id it does not know is an error, never forwarded (a backend thread
//! with that number belongs to somebody else, e.g. a replication thread).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use super::{End, Session};
use crate::protocol::messages::ErrPacket;

/// What other sessions may do to one session: see its backend threads, end it.
#[derive(Debug, Default)]
pub struct SessionControl {
    user: Mutex<String>,
    /// Backend threads in use: key -> (server, thread id).
    threads: Mutex<HashMap<u64, (String, u32)>>,
    next_key: AtomicU64,
    killed: AtomicBool,
    pub kill_signal: Notify,
}

impl SessionControl {
    pub fn new(user: &str) -> Arc<Self> {
        Arc::new(Self {
            user: Mutex::new(user.to_string()),
            ..Self::default()
        })
    }

    pub fn set_user(&self, user: &str) {
        *self.user.lock().unwrap_or_else(|e| e.into_inner()) = user.to_string();
    }

    fn user(&self) -> String {
        self.user.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Registers a backend thread for as long as the returned guard lives.
    pub fn register(self: &Arc<Self>, addr: &str, thread: u32) -> ThreadRegistration {
        let key = self.next_key.fetch_add(1, Ordering::Relaxed);
        self.threads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, (addr.to_string(), thread));
        ThreadRegistration {
            control: self.clone(),
            key,
        }
    }

    fn threads(&self) -> Vec<(String, u32)> {
        self.threads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .cloned()
            .collect()
    }

    pub fn is_killed(&self) -> bool {
        self.killed.load(Ordering::Relaxed)
    }

    fn kill(&self) {
        self.killed.store(true, Ordering::Relaxed);
        self.kill_signal.notify_waiters();
        self.kill_signal.notify_one();
    }
}

/// Removes a backend thread from its session's list when the connection leaves the session.
#[derive(Debug)]
pub struct ThreadRegistration {
    control: Arc<SessionControl>,
    key: u64,
}

impl Drop for ThreadRegistration {
    fn drop(&mut self) {
        self.control
            .threads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.key);
    }
}

/// Every live session by its proxy connection id.
#[derive(Debug, Default)]
pub struct SessionRegistry {
    map: Mutex<HashMap<u32, Arc<SessionControl>>>,
}

impl SessionRegistry {
    pub fn insert(&self, id: u32, control: Arc<SessionControl>) {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, control);
    }

    pub fn remove(&self, id: u32) {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
    }

    fn get(&self, id: u32) -> Option<Arc<SessionControl>> {
        self.map
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&id)
            .cloned()
    }
}

/// A parsed KILL statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kill {
    pub id: u32,
    pub query_only: bool,
}

/// Parses `KILL [HARD|SOFT] [CONNECTION|QUERY] <id>`; `Err` for KILL forms the proxy does not
/// handle (`KILL ... USER`, `KILL QUERY ID`), `Ok(None)` when this is not a KILL at all.
pub fn parse_kill(sql: &[u8]) -> Result<Option<Kill>, ErrPacket> {
    let text = String::from_utf8_lossy(sql);
    let text = text.trim().trim_end_matches(';').trim();
    let mut words = text.split_ascii_whitespace();
    if !words.next().is_some_and(|w| w.eq_ignore_ascii_case("KILL")) {
        return Ok(None);
    }
    let mut query_only = false;
    let mut next = words.next();
    if next.is_some_and(|w| w.eq_ignore_ascii_case("HARD") || w.eq_ignore_ascii_case("SOFT")) {
        next = words.next();
    }
    if let Some(w) = next {
        if w.eq_ignore_ascii_case("QUERY") {
            query_only = true;
            next = words.next();
        } else if w.eq_ignore_ascii_case("CONNECTION") {
            next = words.next();
        }
    }
    let unsupported = || {
        ErrPacket::new(
            1235,
            "42000",
            "This form of KILL is not supported through lagless-proxy; use KILL [CONNECTION|QUERY] <id>",
        )
    };
    let id = next
        .and_then(|w| w.parse::<u32>().ok())
        .ok_or_else(unsupported)?;
    if words.next().is_some() {
        return Err(unsupported());
    }
    Ok(Some(Kill { id, query_only }))
}

impl Session {
    /// Carries out a KILL on the proxy's own connection ids.
    pub(super) async fn kill(&mut self, k: Kill) -> Result<(), End> {
        let Some(target) = self.shared.sessions.get(k.id) else {
            let err = ErrPacket::new(1094, "HY000", format!("Unknown thread id: {}", k.id));
            return self.reply_err(&err).await;
        };
        if target.user() != self.login.user {
            let err = ErrPacket::new(
                1095,
                "HY000",
                format!("You are not owner of thread {}", k.id),
            );
            return self.reply_err(&err).await;
        }
        if k.id == self.id && !k.query_only {
            let err = ErrPacket::new(1927, "70100", "Connection was killed");
            let _ = self.reply_err(&err).await;
            return Err(End::Client);
        }
        let verb = if k.query_only { "QUERY" } else { "CONNECTION" };
        for (addr, thread) in target.threads() {
            match self.shared.backend(&self.login, &addr, None).await {
                Ok(mut conn) => {
                    if !matches!(conn.run(&format!("KILL {verb} {thread}")).await, Ok(None)) {
                        conn.mark_broken();
                    }
                }
                Err(e) => {
                    tracing::warn!(backend = %addr, error = %e, "cannot reach a backend to kill a thread")
                }
            }
        }
        if !k.query_only {
            target.kill();
        }
        self.reply_ok().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_thread_forms() {
        let k = |id, query_only| Ok(Some(Kill { id, query_only }));
        assert_eq!(parse_kill(b"KILL 5"), k(5, false));
        assert_eq!(parse_kill(b"kill connection 7;"), k(7, false));
        assert_eq!(parse_kill(b"  KILL HARD QUERY 9 "), k(9, true));
        assert_eq!(parse_kill(b"KILL SOFT 3"), k(3, false));
        assert_eq!(parse_kill(b"SELECT 1"), Ok(None));
        assert_eq!(parse_kill(b"KILLX 1"), Ok(None));
        for bad in [
            &b"KILL USER bob"[..],
            b"KILL QUERY ID 4",
            b"KILL",
            b"KILL 1 2",
            b"KILL -1",
        ] {
            assert_eq!(
                parse_kill(bad).map_err(|e| e.code),
                Err(1235),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn registrations_end_with_their_guard() {
        let c = SessionControl::new("app");
        let a = c.register("db1:3306", 10);
        let b = c.register("db2:3306", 20);
        assert_eq!(c.threads().len(), 2);
        drop(a);
        assert_eq!(c.threads(), vec![("db2:3306".to_string(), 20)]);
        drop(b);
        assert!(c.threads().is_empty());
    }
}
