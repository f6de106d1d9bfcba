//! `KILL [CONNECTION | QUERY] <id>` and COM_PROCESS_KILL; the classifier reads the statement.
//!
//! Clients see the proxy's connection id in the greeting, and a backend's thread id in
//! `CONNECTION_ID()` and `SHOW PROCESSLIST`; both name a session. Proxy ids come from a range
//! of their own (from 2^30), so a number is looked up first as a proxy id, then as a backend
//! thread of one of this proxy's sessions (on the primary first). The proxy kills the backend
//! threads that session uses at that moment, as the client's own user; an id it does not know
//! is an error, never forwarded (a backend thread with that number belongs to somebody else,
//! e.g. a replication thread).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use super::{End, Session};
use crate::protocol::messages::ErrPacket;
use crate::route::{Kill, Victim};

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

    fn has_thread(&self, addr: Option<&str>, thread: u32) -> bool {
        self.threads
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .any(|(a, t)| *t == thread && addr.is_none_or(|addr| addr == a))
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

    /// The session a KILL names: by proxy connection id, else by a backend thread it holds,
    /// one on `primary` first (where `CONNECTION_ID()` runs).
    fn find(&self, id: u32, primary: Option<&str>) -> Option<Arc<SessionControl>> {
        let map = self.map.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(c) = map.get(&id) {
            return Some(c.clone());
        }
        let on = |addr: Option<&str>| map.values().find(|c| c.has_thread(addr, id)).cloned();
        primary.and_then(|p| on(Some(p))).or_else(|| on(None))
    }
}

/// The first proxy connection id: backend thread ids count up from 1, so ids from here on
/// name proxy sessions unless a server has had a billion connections since it started.
pub const FIRST_PROXY_ID: u32 = 1 << 30;

/// The proxy connection id for the n-th connection.
pub fn proxy_id(n: u32) -> u32 {
    FIRST_PROXY_ID + n % FIRST_PROXY_ID
}

/// The answer to a KILL the proxy does not carry out (see [`crate::route::KillStatement::Unsupported`]).
pub(super) fn unsupported() -> ErrPacket {
    ErrPacket::new(
        1235,
        "42000",
        "This form of KILL is not supported through lagless-proxy; use KILL [CONNECTION|QUERY] <id>",
    )
}

impl Session {
    /// Carries out a KILL of one of this proxy's sessions.
    pub(super) async fn kill(&mut self, k: Kill) -> Result<(), End> {
        let (target, shown) = match k.victim {
            Victim::Own => (Some(self.control.clone()), self.id),
            // A thread id came from CONNECTION_ID() or SHOW PROCESSLIST: the primary's.
            Victim::Id(id) => {
                let primary = self.backends.primary_addr();
                (self.shared.sessions.find(id, primary.as_deref()), id)
            }
        };
        let Some(target) = target else {
            let err = ErrPacket::new(1094, "HY000", format!("Unknown thread id: {shown}"));
            return self.reply_err(&err).await;
        };
        if target.user() != self.login.user {
            let err = ErrPacket::new(
                1095,
                "HY000",
                format!("You are not owner of thread {shown}"),
            );
            return self.reply_err(&err).await;
        }
        if Arc::ptr_eq(&target, &self.control) {
            // As the server answers a session that kills itself or its own statement.
            if k.query_only {
                let err = ErrPacket::new(1317, "70100", "Query execution was interrupted");
                return self.reply_err(&err).await;
            }
            let err = ErrPacket::new(1927, "70100", "Connection was killed");
            let _ = self.reply_err(&err).await;
            return Err(End::Client);
        }
        let verb = if k.query_only { "QUERY" } else { "CONNECTION" };
        for (addr, thread) in target.threads() {
            match self
                .backends
                .backend(self.login.identity(), &addr, None)
                .await
            {
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
    fn ids_name_proxy_sessions_first_then_backend_threads_primary_first() {
        let reg = SessionRegistry::default();
        let (a, b) = (SessionControl::new("app"), SessionControl::new("app"));
        reg.insert(proxy_id(0), a.clone());
        reg.insert(proxy_id(1), b.clone());
        let _a1 = a.register("replica:3306", 12);
        let _b1 = b.register("primary:3306", 12);
        let _a2 = a.register("primary:3306", 40);
        let found = |id, primary| reg.find(id, primary);
        assert!(found(proxy_id(0), None).is_some_and(|c| Arc::ptr_eq(&c, &a)));
        assert!(found(12, Some("primary:3306")).is_some_and(|c| Arc::ptr_eq(&c, &b)));
        assert!(found(40, Some("primary:3306")).is_some_and(|c| Arc::ptr_eq(&c, &a)));
        assert!(found(12, Some("elsewhere:3306")).is_some());
        assert!(found(99, Some("primary:3306")).is_none());
        assert_eq!(proxy_id(0), FIRST_PROXY_ID);
        assert_eq!(proxy_id(FIRST_PROXY_ID), FIRST_PROXY_ID);
        assert!(proxy_id(u32::MAX) >= FIRST_PROXY_ID);
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
