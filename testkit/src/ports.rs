//! Free loopback ports for test servers.
//!
//! Ports come from a range below Linux's ephemeral range (32768+), so outgoing client sockets
//! never take a port between the check and the server's bind. Within a process a port is handed
//! out once; across processes a collision is still possible, and the caller retries with another
//! port when a server reports "address in use".

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, TcpListener};
use std::sync::Mutex;

use crate::error::{KitError, Result};

const FIRST: u16 = 20000;
const LAST: u16 = 32000;

static HANDED_OUT: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());

/// A port that nothing listens on now and that this process has not handed out before.
pub fn free_port() -> Result<u16> {
    let mut handed = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..1000 {
        let port = FIRST + (random_u16() % (LAST - FIRST));
        if handed.contains(&port) {
            continue;
        }
        if TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok() {
            handed.insert(port);
            return Ok(port);
        }
    }
    Err(KitError::Invalid(format!(
        "no free loopback port in {FIRST}..{LAST}"
    )))
}

fn random_u16() -> u16 {
    let mut buf = [0u8; 2];
    // A failing OS RNG is not worth failing a test over: fall back to the clock.
    if getrandom::fill(&mut buf).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        return (nanos ^ std::process::id()) as u16;
    }
    u16::from_le_bytes(buf)
}
