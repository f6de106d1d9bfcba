//! Per-fingerprint counters, bounded: at most `capacity` fingerprints, each with its text cut
//! to `text_limit` bytes, and an `other` bucket for statements whose fingerprint arrived once
//! the table was full.
//!
//! Admission is first come: a fingerprint gets an entry while there is room and keeps it
//! until the counters are reset (`DELETE /digests`). Nothing is evicted, so an entry's counts
//! are never partial and the hot path never scans the table; a workload that keeps making new
//! shapes (names built into the text) fills the table once and then counts in `other`, which
//! the reset clears.
//!
//! Recording takes one of [`SHARDS`] mutexes, picked by the fingerprint, for a few additions:
//! sessions on different fingerprints rarely meet, and none ever waits on a global lock.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::normalise::normalise;
use crate::route::SqlMode;

/// Mutexes the table is split over.
pub const SHARDS: usize = 16;

/// Upper bounds of the latency histogram's buckets, in microseconds: 1-2.5-5 steps per
/// decade, as the proxy's other latency histograms; one more bucket holds the rest.
pub const LATENCY_BOUNDS_US: [u64; 17] = [
    50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000,
    1_000_000, 2_500_000, 5_000_000, 10_000_000,
];
const BUCKETS: usize = LATENCY_BOUNDS_US.len() + 1;

/// Where a statement ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    Primary,
    /// On a replica that had applied what the read must see.
    Replica,
    /// On a replica, after waiting for it to apply a position.
    ReplicaAfterWait,
    /// Not known: the client got an error from the proxy in place of a server's response
    /// (no backend could take it, or the backend was lost).
    Unplaced,
}

/// One execution of a statement.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub elapsed: Duration,
    /// Rows sent to the client plus rows affected.
    pub rows: u64,
    pub error: bool,
    pub placement: Placement,
    /// The statement's own round trip (from sending it to the end of its response), when it
    /// is known apart from head reads and waits: what the statement costs ([`Digests::cost`]).
    pub service: Option<Duration>,
}

/// The counters of one fingerprint (or of `other`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub count: u64,
    pub errors: u64,
    pub rows: u64,
    pub total_us: u64,
    pub max_us: u64,
    pub primary: u64,
    pub replica: u64,
    pub replica_waited: u64,
    /// Counts per bucket of [`LATENCY_BOUNDS_US`], the last one above them all.
    pub latency: [u64; BUCKETS],
}

impl Stats {
    pub fn add(&mut self, s: &Sample) {
        let us = u64::try_from(s.elapsed.as_micros()).unwrap_or(u64::MAX);
        self.count += 1;
        self.errors += u64::from(s.error);
        self.rows = self.rows.saturating_add(s.rows);
        self.total_us = self.total_us.saturating_add(us);
        self.max_us = self.max_us.max(us);
        match s.placement {
            Placement::Primary => self.primary += 1,
            Placement::Replica => self.replica += 1,
            Placement::ReplicaAfterWait => self.replica_waited += 1,
            Placement::Unplaced => {}
        }
        self.latency[bucket(us)] += 1;
    }

    /// Adds another's counts to these (totals).
    pub fn merge(&mut self, o: &Stats) {
        self.count += o.count;
        self.errors += o.errors;
        self.rows = self.rows.saturating_add(o.rows);
        self.total_us = self.total_us.saturating_add(o.total_us);
        self.max_us = self.max_us.max(o.max_us);
        self.primary += o.primary;
        self.replica += o.replica;
        self.replica_waited += o.replica_waited;
        for (a, b) in self.latency.iter_mut().zip(o.latency) {
            *a += b;
        }
    }
}

/// The bucket of a latency in microseconds.
pub fn bucket(us: u64) -> usize {
    LATENCY_BOUNDS_US.partition_point(|&bound| bound < us)
}

/// One fingerprint's entry.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The normalised text, at most the configured limit.
    pub text: Box<str>,
    pub stats: Stats,
    /// Moving average of the statement's round trip in microseconds (0: not yet known).
    pub cost_us: u32,
}

impl Entry {
    fn learn_cost(&mut self, service: Option<Duration>) {
        let Some(service) = service else {
            return;
        };
        let us = u32::try_from(service.as_micros())
            .unwrap_or(u32::MAX)
            .max(1);
        self.cost_us = cost_average(self.cost_us, us);
    }
}

/// The moving average of a statement's cost after one more sample: an eighth of the way
/// towards it, so one slow execution (a cold cache, a new connection) moves it little.
pub fn cost_average(previous_us: u32, sample_us: u32) -> u32 {
    if previous_us == 0 {
        return sample_us;
    }
    let next = (u64::from(previous_us) * 7 + u64::from(sample_us)) / 8;
    u32::try_from(next).unwrap_or(u32::MAX).max(1)
}

/// How digests are kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DigestConfig {
    /// Off: no fingerprint is computed and nothing is recorded.
    pub enabled: bool,
    /// Fingerprints kept; the rest count in `other`.
    pub capacity: usize,
    /// Bytes of normalised text kept per fingerprint.
    pub text_limit: usize,
}

impl Default for DigestConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            capacity: 2_000,
            text_limit: 1_024,
        }
    }
}

/// A copy of the table at one moment.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub entries: Vec<(u64, Entry)>,
    pub other: Stats,
}

impl Snapshot {
    /// Every statement counted, in entries and in `other`.
    pub fn totals(&self) -> Stats {
        let mut total = self.other.clone();
        for (_, e) in &self.entries {
            total.merge(&e.stats);
        }
        total
    }
}

/// One shard of the table, on a cache line of its own so that sessions recording into
/// neighbouring shards do not contend for the line.
#[derive(Debug, Default)]
#[repr(align(64))]
struct Shard(Mutex<HashMap<u64, Entry>>);

/// The digest table every session records into.
#[derive(Debug)]
pub struct Digests {
    config: DigestConfig,
    shards: Box<[Shard]>,
    /// Entries over all shards (admission counts it up before inserting).
    entries: AtomicUsize,
    other: Mutex<Stats>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Counters stay usable after a panic elsewhere: at worst one sample is half-counted.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Digests {
    pub fn new(config: DigestConfig) -> Self {
        Self {
            config,
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
            entries: AtomicUsize::new(0),
            other: Mutex::new(Stats::default()),
        }
    }

    pub fn config(&self) -> DigestConfig {
        self.config
    }

    pub fn enabled(&self) -> bool {
        self.config.enabled
    }

    /// Fingerprints kept now.
    pub fn len(&self) -> usize {
        self.entries.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Counts one execution of fingerprint `id`, whose statement is `sql` (read only the first
    /// time the fingerprint is seen, to build its text).
    pub fn record(&self, id: u64, sql: &[u8], mode: SqlMode, sample: &Sample) {
        if !self.config.enabled {
            return;
        }
        let mut shard = lock(&self.shards[shard_of(id)].0);
        if let Some(entry) = shard.get_mut(&id) {
            entry.stats.add(sample);
            entry.learn_cost(sample.service);
            return;
        }
        if self.entries.fetch_add(1, Ordering::Relaxed) >= self.config.capacity {
            self.entries.fetch_sub(1, Ordering::Relaxed);
            drop(shard);
            lock(&self.other).add(sample);
            return;
        }
        let (_, text) = normalise(sql, mode, self.config.text_limit);
        let mut stats = Stats::default();
        stats.add(sample);
        let mut entry = Entry {
            text: text.into_boxed_str(),
            stats,
            cost_us: 0,
        };
        entry.learn_cost(sample.service);
        shard.insert(id, entry);
    }

    /// What fingerprint `id` costs: the moving average of its round trips; `None` until one
    /// is known (or for statements counted in `other`).
    pub fn cost(&self, id: u64) -> Option<Duration> {
        let shard = lock(&self.shards[shard_of(id)].0);
        let us = shard.get(&id)?.cost_us;
        (us > 0).then(|| Duration::from_micros(u64::from(us)))
    }

    /// Forgets every fingerprint and count.
    pub fn reset(&self) {
        for shard in &self.shards {
            let mut shard = lock(&shard.0);
            let n = shard.len();
            *shard = HashMap::new();
            self.entries.fetch_sub(n, Ordering::Relaxed);
        }
        *lock(&self.other) = Stats::default();
    }

    pub fn snapshot(&self) -> Snapshot {
        let mut entries = Vec::with_capacity(self.len());
        for shard in &self.shards {
            let shard = lock(&shard.0);
            entries.extend(shard.iter().map(|(id, e)| (*id, e.clone())));
        }
        Snapshot {
            entries,
            other: lock(&self.other).clone(),
        }
    }
}

fn shard_of(id: u64) -> usize {
    // The high bits: the map inside hashes the whole id again.
    (id >> 60) as usize % SHARDS
}
