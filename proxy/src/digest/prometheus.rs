//! Digests at `/metrics`. Label cardinality stays bounded: only the [`TOP`] fingerprints with
//! the most total time get series of their own, labelled `digest` with the fingerprint's id
//! (never its text); totals over every statement have no label. Which fingerprints are in
//! the top may change between scrapes, so a labelled series can come and go.

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;

use super::id_hex;
use super::store::{Digests, Stats};

/// Fingerprints exported with a `digest` label.
pub const TOP: usize = 20;

/// Encodes the digest series on each scrape.
#[derive(Debug)]
pub struct DigestCollector(pub Arc<Digests>);

type Field = fn(&Stats) -> f64;

/// The counters exported per fingerprint and in total: name, help, unit, value.
const COUNTERS: [(&str, &str, Option<Unit>, Field); 4] = [
    (
        "digest_statements",
        "Statements executed, by fingerprint",
        None,
        |s| s.count as f64,
    ),
    (
        "digest_errors",
        "Statements that ended in an error, by fingerprint",
        None,
        |s| s.errors as f64,
    ),
    (
        "digest_rows",
        "Rows sent or affected, by fingerprint",
        None,
        |s| s.rows as f64,
    ),
    (
        "digest_time",
        "Time spent in statements, by fingerprint",
        Some(Unit::Seconds),
        |s| s.total_us as f64 / 1e6,
    ),
];

impl Collector for DigestCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        if !self.0.enabled() {
            return Ok(());
        }
        let mut snapshot = self.0.snapshot();
        let totals = snapshot.totals();
        snapshot.entries.sort_unstable_by(|a, b| {
            b.1.stats
                .total_us
                .cmp(&a.1.stats.total_us)
                .then(a.0.cmp(&b.0))
        });
        snapshot.entries.truncate(TOP);
        let top: Vec<(String, &Stats)> = snapshot
            .entries
            .iter()
            .map(|(id, e)| (id_hex(*id), &e.stats))
            .collect();
        for (name, help, unit, field) in &COUNTERS {
            let mut family =
                encoder.encode_descriptor(name, help, unit.as_ref(), MetricType::Counter)?;
            for (id, stats) in &top {
                let labels = [("digest", id.as_str())];
                ConstCounter::new(field(stats)).encode(family.encode_family(&labels)?)?;
            }
            let all = format!("{name}_all");
            let help = format!("{help}: every statement");
            let total =
                encoder.encode_descriptor(&all, &help, unit.as_ref(), MetricType::Counter)?;
            ConstCounter::new(field(&totals)).encode(total)?;
        }
        let tracked = i64::try_from(self.0.len()).unwrap_or(i64::MAX);
        let gauge = encoder.encode_descriptor(
            "digests_tracked",
            "Fingerprints kept (the rest count in other)",
            None,
            MetricType::Gauge,
        )?;
        ConstGauge::new(tracked).encode(gauge)?;
        let other = encoder.encode_descriptor(
            "digest_other_statements",
            "Statements whose fingerprint found the table full",
            None,
            MetricType::Counter,
        )?;
        ConstCounter::new(snapshot.other.count).encode(other)?;
        Ok(())
    }
}
