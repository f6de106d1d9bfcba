//! Which backends are reachable, and how busy each is.
//!
//! A monitor loop opens a TCP connection to every member and reads its greeting on each tick
//! (no credentials needed); failures seen by sessions also mark a backend down at once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::net::TcpStream;

use crate::protocol::handshake::Greeting;

use crate::protocol::packet::PacketStream;

/// Live state of one backend.
#[derive(Debug)]
pub struct BackendState {
    up: AtomicBool,
    /// Statements in flight on this backend through this proxy.
    pub outstanding: AtomicUsize,
}

impl BackendState {
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }
}

/// Counts a statement in flight for as long as it lives.
#[derive(Debug)]
pub struct InFlight(Arc<BackendState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.outstanding.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Health of every backend the proxy knows.
#[derive(Debug, Default)]
pub struct Health {
    map: RwLock<HashMap<String, Arc<BackendState>>>,
}

impl Health {
    pub fn state(&self, addr: &str) -> Arc<BackendState> {
        if let Some(s) = self.map.read().unwrap_or_else(|e| e.into_inner()).get(addr) {
            return s.clone();
        }
        self.map
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .entry(addr.to_string())
            .or_insert_with(|| {
                Arc::new(BackendState {
                    up: AtomicBool::new(true),
                    outstanding: AtomicUsize::new(0),
                })
            })
            .clone()
    }

    pub fn is_up(&self, addr: &str) -> bool {
        self.state(addr).is_up()
    }

    /// Returns whether the state changed.
    pub fn set_up(&self, addr: &str, up: bool) -> bool {
        self.state(addr).up.swap(up, Ordering::Relaxed) != up
    }

    pub fn begin(&self, addr: &str) -> InFlight {
        let s = self.state(addr);
        s.outstanding.fetch_add(1, Ordering::Relaxed);
        InFlight(s)
    }

    pub fn outstanding(&self, addr: &str) -> usize {
        self.state(addr).outstanding.load(Ordering::Relaxed)
    }

    /// Forgets servers that left the topology.
    pub fn retain(&self, addrs: &[String]) {
        self.map
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|k, _| addrs.contains(k));
    }
}

/// What a probe of one server found.
#[derive(Debug)]
pub struct Probed {
    /// It accepted a TCP connection and sent a greeting within the timeout.
    pub up: bool,
    /// The greeting, when it parsed.
    pub greeting: Option<Greeting>,
}

/// Whether a server accepts a TCP connection and sends a greeting within `timeout`, and the
/// greeting.
pub async fn probe(addr: &str, timeout: Duration) -> Probed {
    let attempt = async {
        let tcp = TcpStream::connect(addr).await.ok()?;
        let mut stream = PacketStream::new(tcp);
        let greet = stream.read_raw().await.ok()?;
        // 10 is the protocol version of a greeting; 0xff is "too many connections" or a ban.
        (greet.first() == Some(10)).then(|| Greeting::parse(&greet.payload).ok())
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(Some(greeting)) => Probed { up: true, greeting },
        _ => Probed {
            up: false,
            greeting: None,
        },
    }
}
