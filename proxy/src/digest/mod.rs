//! Query digests: statements grouped by fingerprint (their shape with literals removed), with
//! counts, errors, rows, latency and where they ran, kept within a fixed bound.
//!
//! [`normalise`] turns a statement into its fingerprint in one pass without allocating;
//! [`store`] keeps the counters; [`report`] answers `GET /digests`; [`prometheus`] exports the
//! fingerprints that take the most time. The session computes a COM_QUERY's fingerprint per
//! statement and a prepared statement's once, at prepare.

pub mod normalise;
pub mod prometheus;
pub mod report;
pub mod store;

pub use normalise::{fingerprint, normalise};
pub use store::{DigestConfig, Digests, Placement, Sample, Snapshot, Stats};

/// A fingerprint as shown at the admin listener and in labels: 16 hex digits.
pub fn id_hex(id: u64) -> String {
    format!("{id:016x}")
}

#[cfg(test)]
mod tests;
