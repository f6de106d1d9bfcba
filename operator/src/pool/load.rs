//! A tenant cluster's load, read on its primary: the bytes its tenants' databases hold, how
//! fast it writes (the growth of its own GTID domain's sequence number), and each tenant's
//! share of those writes (the rows it changed, from the server's table statistics).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use lagless_core::gtid::MariadbPosition;
use mysql_async::prelude::Queryable;

use crate::orchestrate::view::CaSource;

/// What one reading of a primary found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    /// Data and indexes of every database named like a tenant's.
    pub bytes: u64,
    /// The sequence number of the cluster's domain in `@@gtid_binlog_pos` (0 before its first
    /// write).
    pub seq: u64,
}

/// The escape character of [`like_pattern`]: not `\`, whose meaning depends on the SQL mode.
pub const LIKE_ESCAPE: char = '!';

/// The `LIKE` pattern of tenant databases named by `pattern` (`t_{id}` gives `t!_%`), with
/// [`LIKE_ESCAPE`].
pub fn like_pattern(pattern: &str) -> String {
    let escape = |s: &str| {
        s.chars().fold(String::new(), |mut out, c| {
            if matches!(c, '%' | '_' | LIKE_ESCAPE) {
                out.push(LIKE_ESCAPE);
            }
            out.push(c);
            out
        })
    };
    let (prefix, suffix) = pattern.split_once("{id}").unwrap_or((pattern, ""));
    format!("{}%{}", escape(prefix), escape(suffix))
}

/// The sequence number of `domain` in a MariaDB GTID position; 0 when the domain has none.
pub fn domain_seq(position: &str, domain: u32) -> Option<u64> {
    let position = MariadbPosition::parse(position).ok()?;
    Some(position.get(domain).map_or(0, |gtid| gtid.seq))
}

/// Transactions per second from successive readings of a domain's sequence number.
#[derive(Debug, Default, Clone)]
pub struct RateMeter {
    last: Option<(u64, Instant)>,
    rate: f64,
}

impl RateMeter {
    /// Takes a reading; returns the rate since the one before (the last rate when no time
    /// passed, 0 for the first reading or when the sequence went back, as after a restore).
    pub fn observe(&mut self, seq: u64, at: Instant) -> f64 {
        self.rate = match self.last {
            Some((before, then)) if seq >= before => {
                let secs = at.saturating_duration_since(then).as_secs_f64();
                if secs > 0.0 {
                    (seq - before) as f64 / secs
                } else {
                    self.rate
                }
            }
            _ => 0.0,
        };
        self.last = Some((seq, at));
        self.rate
    }
}

/// Connection options for `user` on `host:port`, verifying TLS against `ca` (a file or PEM
/// bytes) when the pool runs it.
pub fn admin_opts(
    host: &str,
    port: u16,
    user: &str,
    password: &str,
    ca: Option<&CaSource>,
) -> mysql_async::Opts {
    let mut opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname(host.to_string())
        .tcp_port(port)
        .user(Some(user.to_string()))
        .pass(Some(password.to_string()))
        .prefer_socket(false)
        .wait_timeout(Some(60));
    if let Some(ca) = ca {
        let ca = match ca {
            CaSource::File(path) => path.clone().into(),
            CaSource::Pem(pem) => pem.clone().into(),
        };
        opts = opts.ssl_opts(Some(
            mysql_async::SslOpts::default()
                .with_root_certs(vec![ca])
                .with_disable_built_in_roots(true),
        ));
    }
    opts.into()
}

/// Reads the load of the primary at `opts`: the bytes of databases `LIKE like` and the
/// sequence number of `domain`. Bounded by `timeout`, so a hung primary does not hold up the
/// pool's loop.
pub async fn read(
    opts: mysql_async::Opts,
    like: &str,
    domain: u32,
    timeout: Duration,
) -> Result<Reading, String> {
    let work = async {
        let mut conn = mysql_async::Conn::new(opts)
            .await
            .map_err(|e| e.to_string())?;
        let bytes: Option<u64> = conn
            .exec_first(
                "SELECT CAST(COALESCE(SUM(data_length + index_length), 0) AS UNSIGNED) \
                 FROM information_schema.tables WHERE table_schema LIKE ? ESCAPE '!'",
                (like,),
            )
            .await
            .map_err(|e| e.to_string())?;
        let position: Option<String> = conn
            .query_first("SELECT @@gtid_binlog_pos")
            .await
            .map_err(|e| e.to_string())?;
        let _ = conn.disconnect().await;
        let position = position.unwrap_or_default();
        let seq = domain_seq(&position, domain)
            .ok_or_else(|| format!("unreadable @@gtid_binlog_pos `{position}`"))?;
        Ok(Reading {
            bytes: bytes.unwrap_or(0),
            seq,
        })
    };
    tokio::time::timeout(timeout, work)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {} s", timeout.as_secs())))
}

/// Rows changed so far in each database `LIKE like` (with [`LIKE_ESCAPE`]), from the server's
/// table statistics, which this turns on (`userstat`) when they are off: a database written
/// since is then counted from that moment. Bounded by `timeout`.
pub async fn rows_changed(
    conn: &mut mysql_async::Conn,
    like: &str,
    timeout: Duration,
) -> Result<BTreeMap<String, u64>, String> {
    let work = async {
        let on: Option<u64> = conn
            .query_first("SELECT @@global.userstat")
            .await
            .map_err(|e| e.to_string())?;
        if on != Some(1) {
            conn.query_drop("SET GLOBAL userstat = ON")
                .await
                .map_err(|e| format!("turning the table statistics on: {e}"))?;
        }
        let rows: Vec<(String, u64)> = conn
            .exec(
                "SELECT table_schema, CAST(SUM(rows_changed) AS UNSIGNED) \
                 FROM information_schema.table_statistics WHERE table_schema LIKE ? ESCAPE '!' \
                 GROUP BY table_schema",
                (like,),
            )
            .await
            .map_err(|e| e.to_string())?;
        Ok(rows.into_iter().collect())
    };
    tokio::time::timeout(timeout, work)
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {} s", timeout.as_secs())))
}

/// Each database's share of a cluster's write rate: the rows it changed between two readings
/// of [`rows_changed`] over the rows all of them changed, times `cluster_rate` (the cluster's
/// transactions per second), so that it is in the unit of the cluster's `writeCapacity`. A
/// database missing from the first reading counts from 0; one whose count went back (a
/// restart) counts as idle.
pub fn write_shares(
    before: &BTreeMap<String, u64>,
    after: &BTreeMap<String, u64>,
    cluster_rate: f64,
) -> BTreeMap<String, f64> {
    let changed: BTreeMap<&String, u64> = after
        .iter()
        .map(|(db, n)| (db, n.saturating_sub(before.get(db).copied().unwrap_or(0))))
        .collect();
    let total: u64 = changed.values().sum();
    let rate = if cluster_rate.is_finite() && cluster_rate > 0.0 {
        cluster_rate
    } else {
        0.0
    };
    changed
        .into_iter()
        .map(|(db, n)| {
            let share = if total == 0 {
                0.0
            } else {
                rate * n as f64 / total as f64
            };
            (db.clone(), share)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clusters_write_rate_is_shared_by_the_rows_each_database_changed() {
        let map = |pairs: &[(&str, u64)]| -> BTreeMap<String, u64> {
            pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
        };
        let before = map(&[("t_a", 100), ("t_b", 50), ("t_c", 10)]);
        let after = map(&[("t_a", 400), ("t_b", 150), ("t_c", 5), ("t_d", 100)]);
        let shares = write_shares(&before, &after, 50.0);
        // 300 + 100 + 0 (went back) + 100 = 500 rows: a has three fifths of 50/s.
        assert_eq!(shares["t_a"], 30.0);
        assert_eq!(shares["t_b"], 10.0);
        assert_eq!(shares["t_c"], 0.0);
        assert_eq!(shares["t_d"], 10.0);
        // Nothing written, or no rate known: nobody has a share.
        assert!(
            write_shares(&after, &after, 50.0)
                .values()
                .all(|r| *r == 0.0)
        );
        assert!(
            write_shares(&before, &after, f64::NAN)
                .values()
                .all(|r| *r == 0.0)
        );
    }

    #[test]
    fn tenant_databases_become_a_like_pattern() {
        assert_eq!(like_pattern("t_{id}"), "t!_%");
        assert_eq!(like_pattern("{id}_data"), "%!_data");
        assert_eq!(like_pattern("shop$_{id}x"), "shop$!_%x");
    }

    #[test]
    fn the_domain_sequence_is_read_from_the_position() {
        assert_eq!(domain_seq("101-1010-42,100-1000-7", 101), Some(42));
        assert_eq!(domain_seq("100-1000-7", 101), Some(0));
        assert_eq!(domain_seq("", 101), Some(0));
        assert_eq!(domain_seq("garbage", 101), None);
    }

    #[test]
    fn rates_follow_the_sequence() {
        let t0 = Instant::now();
        let mut meter = RateMeter::default();
        assert_eq!(meter.observe(100, t0), 0.0);
        assert_eq!(meter.observe(120, t0 + Duration::from_secs(2)), 10.0);
        // No time passed: the last rate stands.
        assert_eq!(meter.observe(130, t0 + Duration::from_secs(2)), 10.0);
        assert_eq!(meter.observe(130, t0 + Duration::from_secs(4)), 0.0);
        // Backwards (a restored cluster): start again.
        assert_eq!(meter.observe(5, t0 + Duration::from_secs(6)), 0.0);
        assert_eq!(meter.observe(9, t0 + Duration::from_secs(8)), 2.0);
    }
}
