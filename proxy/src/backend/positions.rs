//! What each backend has applied, as far as this proxy knows, and how far behind it is.
//!
//! Positions come from three places: the monitor's poll of every member, the GTIDs of writes
//! reported in OK packets, and the results of `MASTER_GTID_WAIT`. A position only tells that a
//! server had applied at least that much at that time; a server with no known position has not
//! caught up with anything, never "zero lag".

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use crate::gtid::GtidSet;

/// Primary head samples kept for staleness in milliseconds.
const HEAD_HISTORY: Duration = Duration::from_secs(120);
const MAX_SAMPLES: usize = 4096;

#[derive(Debug, Clone)]
struct Known {
    set: GtidSet,
    at: Instant,
}

#[derive(Debug, Clone)]
struct HeadSample {
    at: Instant,
    set: GtidSet,
}

/// Positions of every backend.
#[derive(Debug, Default)]
pub struct Positions {
    known: RwLock<HashMap<String, Known>>,
    heads: Mutex<VecDeque<HeadSample>>,
    proxy_writes: RwLock<Option<GtidSet>>,
}

impl Positions {
    /// A fresh reading of what `addr` has applied (the monitor's poll): replaces what was known,
    /// since a re-seeded or rejoined server may have a different history.
    pub fn replace(&self, addr: &str, set: GtidSet) {
        let mut known = self.known.write().unwrap_or_else(|e| e.into_inner());
        known.insert(
            addr.to_string(),
            Known {
                set,
                at: Instant::now(),
            },
        );
    }

    /// `addr` has applied at least `set` (a finished wait, a write's own GTID).
    pub fn observe(&self, addr: &str, set: &GtidSet) {
        let mut known = self.known.write().unwrap_or_else(|e| e.into_inner());
        match known.get_mut(addr) {
            Some(k) => {
                k.set.union(set);
                k.at = Instant::now();
            }
            None => {
                known.insert(
                    addr.to_string(),
                    Known {
                        set: set.clone(),
                        at: Instant::now(),
                    },
                );
            }
        }
    }

    /// Whether `addr` is known to have applied `need`.
    pub fn has_applied(&self, addr: &str, need: &GtidSet) -> bool {
        self.known
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(addr)
            .is_some_and(|k| k.set.contains(need))
    }

    /// How many transactions of `need` `addr` is known to lack; `None` when its position is
    /// unknown.
    pub fn behind(&self, addr: &str, need: &GtidSet) -> Option<u64> {
        self.known
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(addr)
            .and_then(|k| k.set.transactions_behind(need))
    }

    /// The known position of `addr`.
    pub fn position(&self, addr: &str) -> Option<GtidSet> {
        self.known
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(addr)
            .map(|k| k.set.clone())
    }

    /// A reading of the primary's head, for staleness in milliseconds.
    pub fn record_head(&self, set: GtidSet) {
        let now = Instant::now();
        let mut heads = self.heads.lock().unwrap_or_else(|e| e.into_inner());
        if heads.back().is_some_and(|h| h.set == set) {
            // Unchanged head: only the time moves on.
            if let Some(h) = heads.back_mut() {
                h.at = now;
            }
            return;
        }
        heads.push_back(HeadSample { at: now, set });
        while heads.len() > MAX_SAMPLES
            || heads
                .front()
                .is_some_and(|h| now.duration_since(h.at) > HEAD_HISTORY)
        {
            heads.pop_front();
        }
    }

    /// The newest head reading.
    pub fn latest_head(&self) -> Option<GtidSet> {
        let heads = self.heads.lock().unwrap_or_else(|e| e.into_inner());
        heads.back().map(|h| h.set.clone())
    }

    /// An upper bound of how stale `addr`'s data is, in milliseconds: the time since the newest
    /// head reading it is known to contain (everything after that may be missing). `None` when
    /// its position is unknown or older than every head reading kept.
    pub fn staleness_ms(&self, addr: &str) -> Option<u64> {
        let known = self.known.read().unwrap_or_else(|e| e.into_inner());
        let k = known.get(addr)?;
        let heads = self.heads.lock().unwrap_or_else(|e| e.into_inner());
        let newest_contained = heads.iter().rev().find(|h| k.set.contains(&h.set))?;
        Some(newest_contained.at.elapsed().as_millis() as u64)
    }

    /// Records the GTID of a write that went through this proxy (`proxy` consistency).
    pub fn note_write(&self, set: &GtidSet) {
        let mut w = self.proxy_writes.write().unwrap_or_else(|e| e.into_inner());
        match w.as_mut() {
            Some(all) => all.union(set),
            None => *w = Some(set.clone()),
        }
    }

    /// Every write that went through this proxy, as one position.
    pub fn proxy_writes(&self) -> Option<GtidSet> {
        self.proxy_writes
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Forgets servers that left the topology.
    pub fn retain(&self, addrs: &[String]) {
        self.known
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|k, _| addrs.contains(k));
    }
}
