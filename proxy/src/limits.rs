//! Admission limits on client connections, as a server applies them: connections that have
//! not authenticated yet per client address, sessions per user (`max_user_connections`), and
//! a growing delay for repeated wrong passwords per user and address (what MySQL's
//! `connection_control` does), so that guessing passwords through the proxy is slow.
//!
//! Counters are released by guards, so a connection that ends in any way gives its place back.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use lru::LruCache;

use crate::protocol::messages::ErrPacket;

/// Wrong passwords in a row from one user and address answered without delay.
pub const FREE_FAILURES: u32 = 3;
/// The longest delay before a wrong password is answered: well inside the handshake timeout,
/// so the client still gets the server's error.
pub const MAX_FAILURE_DELAY: Duration = Duration::from_secs(5);
/// (user, address) pairs whose failures are remembered; the least recent is forgotten first.
const FAILURE_ENTRIES: usize = 10_000;
/// No account name is longer: 128 characters of up to 4 bytes.
const MAX_NAME_BYTES: usize = 512;

/// How long to wait before answering the `failures`-th wrong password in a row: nothing for
/// the first [`FREE_FAILURES`], then one more second for each, up to [`MAX_FAILURE_DELAY`].
pub fn failure_delay(failures: u32) -> Duration {
    let over = failures.saturating_sub(FREE_FAILURES);
    Duration::from_secs(u64::from(over)).min(MAX_FAILURE_DELAY)
}

/// ER_TOO_MANY_USER_CONNECTIONS, as the server words it.
pub fn too_many_user_connections(user: &str) -> ErrPacket {
    ErrPacket::new(
        1203,
        "42000",
        format!("User {user} already has more than 'max_user_connections' active connections"),
    )
}

/// ER_CON_COUNT_ERROR.
pub fn too_many_connections() -> ErrPacket {
    ErrPacket::new(1040, "08004", "Too many connections")
}

/// The limits of one proxy.
#[derive(Debug)]
pub struct Admission {
    max_unauthenticated_per_host: usize,
    /// 0: no limit, the server's default.
    max_user_connections: usize,
    unauthenticated: Mutex<HashMap<IpAddr, usize>>,
    users: Mutex<HashMap<String, usize>>,
    failures: Mutex<LruCache<(String, IpAddr), u32>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Admission {
    pub fn new(max_unauthenticated_per_host: usize, max_user_connections: usize) -> Arc<Self> {
        let entries = NonZeroUsize::new(FAILURE_ENTRIES).unwrap_or(NonZeroUsize::MIN);
        Arc::new(Self {
            max_unauthenticated_per_host: max_unauthenticated_per_host.max(1),
            max_user_connections,
            unauthenticated: Mutex::new(HashMap::new()),
            users: Mutex::new(HashMap::new()),
            failures: Mutex::new(LruCache::new(entries)),
        })
    }

    /// A place for a connection from `ip` that has not authenticated yet, or `None` when that
    /// address already holds as many as allowed.
    pub fn unauthenticated(self: &Arc<Self>, ip: IpAddr) -> Option<HostSlot> {
        let mut counts = lock(&self.unauthenticated);
        let n = counts.entry(ip).or_insert(0);
        if *n >= self.max_unauthenticated_per_host {
            return None;
        }
        *n += 1;
        Some(HostSlot {
            admission: self.clone(),
            ip,
        })
    }

    /// A session for `user`, or the server's 1203 when the user has as many as allowed.
    pub fn user(self: &Arc<Self>, user: &str) -> Result<UserSlot, ErrPacket> {
        let mut counts = lock(&self.users);
        let n = counts.entry(user.to_string()).or_insert(0);
        if self.max_user_connections > 0 && *n >= self.max_user_connections {
            if *n == 0 {
                counts.remove(user);
            }
            return Err(too_many_user_connections(user));
        }
        *n += 1;
        Ok(UserSlot {
            admission: self.clone(),
            user: user.to_string(),
        })
    }

    /// Records a wrong password and returns how long to wait before saying so. A name longer
    /// than any account's is not remembered (it can never log in, and remembering it would let
    /// a flood of huge names fill memory).
    pub fn failed(&self, user: &str, ip: IpAddr) -> Duration {
        if user.len() > MAX_NAME_BYTES {
            return Duration::ZERO;
        }
        let mut failures = lock(&self.failures);
        let key = (user.to_string(), ip);
        let n = failures.get(&key).copied().unwrap_or(0).saturating_add(1);
        failures.put(key, n);
        failure_delay(n)
    }

    /// Forgets the failures of `user` from `ip` after a successful login.
    pub fn succeeded(&self, user: &str, ip: IpAddr) {
        lock(&self.failures).pop(&(user.to_string(), ip));
    }

    /// Sessions `user` holds now.
    pub fn sessions_of(&self, user: &str) -> usize {
        lock(&self.users).get(user).copied().unwrap_or(0)
    }
}

/// A place taken by a connection that has not authenticated yet.
#[derive(Debug)]
pub struct HostSlot {
    admission: Arc<Admission>,
    ip: IpAddr,
}

impl Drop for HostSlot {
    fn drop(&mut self) {
        let mut counts = lock(&self.admission.unauthenticated);
        if let Some(n) = counts.get_mut(&self.ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(&self.ip);
            }
        }
    }
}

/// A session counted against its user's limit.
#[derive(Debug)]
pub struct UserSlot {
    admission: Arc<Admission>,
    user: String,
}

impl Drop for UserSlot {
    fn drop(&mut self) {
        let mut counts = lock(&self.admission.users);
        if let Some(n) = counts.get_mut(&self.user) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                counts.remove(&self.user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

    #[test]
    fn unauthenticated_connections_are_capped_per_address() {
        let limits = Admission::new(2, 0);
        let first = limits.unauthenticated(A).unwrap();
        let _second = limits.unauthenticated(A).unwrap();
        assert!(limits.unauthenticated(A).is_none());
        // Another address has its own allowance.
        assert!(limits.unauthenticated(B).is_some());
        drop(first);
        assert!(limits.unauthenticated(A).is_some());
    }

    #[test]
    fn sessions_per_user_get_the_servers_error() {
        let limits = Admission::new(8, 2);
        let one = limits.user("app").unwrap();
        let _two = limits.user("app").unwrap();
        let err = limits.user("app").unwrap_err();
        assert_eq!(err.code, 1203);
        assert!(
            err.message
                .contains("User app already has more than 'max_user_connections'")
        );
        assert!(limits.user("other").is_ok());
        drop(one);
        assert_eq!(limits.sessions_of("app"), 1);
        assert!(limits.user("app").is_ok());
        // Without a limit, as the server's default.
        let open = Admission::new(8, 0);
        let slots: Vec<_> = (0..100).map(|_| open.user("app").unwrap()).collect();
        assert_eq!(open.sessions_of("app"), slots.len());
    }

    #[test]
    fn wrong_passwords_are_answered_ever_more_slowly_until_one_is_right() {
        let limits = Admission::new(8, 0);
        let delays: Vec<u64> = (0..16).map(|_| limits.failed("app", A).as_secs()).collect();
        assert_eq!(delays, [0, 0, 0, 1, 2, 3, 4, 5, 5, 5, 5, 5, 5, 5, 5, 5]);
        // Per user and address.
        assert_eq!(limits.failed("app", B), Duration::ZERO);
        assert_eq!(limits.failed("root", A), Duration::ZERO);
        limits.succeeded("app", A);
        assert_eq!(limits.failed("app", A), Duration::ZERO);
        // A name no account can have is not remembered, however often it fails.
        let huge = "x".repeat(10_000);
        for _ in 0..10 {
            assert_eq!(limits.failed(&huge, A), Duration::ZERO);
        }
        assert!(
            lock(&limits.failures)
                .iter()
                .all(|((u, _), _)| u.len() <= MAX_NAME_BYTES)
        );
    }
}
