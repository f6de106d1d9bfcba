//! `GET /digests`: the table as JSON, sorted and cut as the query string asks.

use serde::Serialize;

use super::id_hex;
use super::store::{DigestConfig, LATENCY_BOUNDS_US, Snapshot, Stats};

/// Entries listed when the request names no limit.
pub const DEFAULT_LIMIT: usize = 100;

/// What a digest list is sorted by (largest first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortKey {
    Count,
    #[default]
    TotalTime,
    Errors,
    Rows,
    MaxTime,
}

impl SortKey {
    fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "count" => Self::Count,
            "total_time" => Self::TotalTime,
            "errors" => Self::Errors,
            "rows" => Self::Rows,
            "max_time" => Self::MaxTime,
            _ => return None,
        })
    }

    fn of(self, s: &Stats) -> u64 {
        match self {
            Self::Count => s.count,
            Self::TotalTime => s.total_us,
            Self::Errors => s.errors,
            Self::Rows => s.rows,
            Self::MaxTime => s.max_us,
        }
    }
}

/// A request's `?sort=..&limit=..`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Query {
    pub sort: SortKey,
    pub limit: usize,
}

/// Reads a query string (without the `?`); an unknown sort key or a limit that is not a
/// number is an error, for the client to see. Other parameters are ignored.
pub fn parse_query(query: &str) -> Result<Query, String> {
    let mut q = Query {
        sort: SortKey::default(),
        limit: DEFAULT_LIMIT,
    };
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "sort" => {
                q.sort = SortKey::parse(value).ok_or_else(|| {
                    format!(
                        "sort must be count, total_time, errors, rows or max_time, not `{value}`"
                    )
                })?;
            }
            "limit" => {
                q.limit = value
                    .parse()
                    .map_err(|_| format!("limit must be a number, not `{value}`"))?;
            }
            _ => {}
        }
    }
    Ok(q)
}

#[derive(Serialize)]
struct Counters<'a> {
    count: u64,
    errors: u64,
    rows: u64,
    total_time_us: u64,
    max_time_us: u64,
    mean_time_us: u64,
    primary: u64,
    replica: u64,
    replica_waited: u64,
    latency_histogram: &'a [u64],
}

impl<'a> Counters<'a> {
    fn of(s: &'a Stats) -> Self {
        Self {
            count: s.count,
            errors: s.errors,
            rows: s.rows,
            total_time_us: s.total_us,
            max_time_us: s.max_us,
            mean_time_us: s.total_us.checked_div(s.count).unwrap_or(0),
            primary: s.primary,
            replica: s.replica,
            replica_waited: s.replica_waited,
            latency_histogram: &s.latency,
        }
    }
}

#[derive(Serialize)]
struct Row<'a> {
    id: String,
    text: &'a str,
    /// The moving average of the statement's own round trip, which decides whether a
    /// `strict` read of it runs on the primary (0: not known yet).
    cost_us: u32,
    #[serde(flatten)]
    counters: Counters<'a>,
}

#[derive(Serialize)]
struct Report<'a> {
    enabled: bool,
    capacity: usize,
    text_limit: usize,
    tracked: usize,
    sort: &'static str,
    /// Upper bounds of `latency_histogram`'s buckets; the last bucket has none.
    latency_bounds_us: &'static [u64],
    digests: Vec<Row<'a>>,
    other: Counters<'a>,
    total: Counters<'a>,
}

fn sort_name(k: SortKey) -> &'static str {
    match k {
        SortKey::Count => "count",
        SortKey::TotalTime => "total_time",
        SortKey::Errors => "errors",
        SortKey::Rows => "rows",
        SortKey::MaxTime => "max_time",
    }
}

/// The report as JSON: the `limit` entries largest by the sort key (ties by id, so the order
/// is stable), `other`, and totals over everything counted.
pub fn render(config: DigestConfig, snapshot: &mut Snapshot, q: Query) -> String {
    let key = q.sort;
    snapshot.entries.sort_unstable_by(|a, b| {
        key.of(&b.1.stats)
            .cmp(&key.of(&a.1.stats))
            .then(a.0.cmp(&b.0))
    });
    let total = snapshot.totals();
    let tracked = snapshot.entries.len();
    let digests = snapshot
        .entries
        .iter()
        .take(q.limit)
        .map(|(id, e)| Row {
            id: id_hex(*id),
            text: &e.text,
            cost_us: e.cost_us,
            counters: Counters::of(&e.stats),
        })
        .collect();
    let report = Report {
        enabled: config.enabled,
        capacity: config.capacity,
        text_limit: config.text_limit,
        tracked,
        sort: sort_name(key),
        latency_bounds_us: &LATENCY_BOUNDS_US,
        digests,
        other: Counters::of(&snapshot.other),
        total: Counters::of(&total),
    };
    serde_json::to_string(&report).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
}
