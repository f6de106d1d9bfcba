//! Observing the members: one bounded round of SQL per member per tick.
//!
//! A member that refuses connections is `Unreachable`; one that accepts but does not answer
//! within the timeout (a hung or SIGSTOPped server) is `Hung`, never waited on. The published
//! primary is read last, after every other member, so a replica can never look ahead of it
//! because of when it was read (the plan's errant check relies on this).

use std::collections::HashMap;
use std::time::Duration;

use lagless_core::gtid::GtidSet;
use lagless_core::topology::{Flavor, Topology};
use mysql_async::prelude::Queryable;
use mysql_async::{Conn, OptsBuilder, Row};

use super::view::{
    CaSource, ClusterSpec, ClusterView, MemberSpec, MemberView, Probe, ReplicationError,
    SemiSyncState, ServerTls,
};

/// An account with the privileges the operator needs (read_only, replication control).
#[derive(Clone)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .finish()
    }
}

/// Connection options for `host:port` as `creds`, over TLS verified against the cluster's CA
/// (and the member's name) when `tls` is given.
pub(crate) fn opts(
    host: &str,
    port: u16,
    creds: &Credentials,
    tls: Option<&ServerTls>,
) -> OptsBuilder {
    let builder = OptsBuilder::default()
        .ip_or_hostname(host.to_string())
        .tcp_port(port)
        .user(Some(creds.user.clone()))
        .pass(Some(creds.password.clone()))
        .prefer_socket(false);
    match tls {
        None => builder,
        Some(tls) => {
            let ca = match &tls.ca {
                CaSource::File(path) => path.clone().into(),
                CaSource::Pem(pem) => pem.clone().into(),
            };
            builder.ssl_opts(Some(
                mysql_async::SslOpts::default()
                    .with_root_certs(vec![ca])
                    .with_disable_built_in_roots(true),
            ))
        }
    }
}

/// Observes members, keeping a connection to each and its consecutive probe failures.
#[derive(Debug)]
pub struct Observer {
    creds: Credentials,
    timeout: Duration,
    conns: HashMap<String, Conn>,
    failures: HashMap<String, u32>,
}

/// What one member said, before it becomes a view.
#[derive(Debug, Default)]
struct Reading {
    read_only: bool,
    executed: String,
    retrieved: String,
    source: Option<(String, u16)>,
    io_running: Option<bool>,
    sql_running: Option<bool>,
    io_error: Option<ReplicationError>,
    sql_error: Option<ReplicationError>,
    semi_sync: Option<SemiSyncState>,
    lag_seconds: Option<u64>,
}

enum Outcome {
    Read(Box<Reading>),
    Refused,
    TimedOut,
}

impl Observer {
    pub fn new(creds: Credentials, timeout: Duration) -> Self {
        Self {
            creds,
            timeout,
            conns: HashMap::new(),
            failures: HashMap::new(),
        }
    }

    /// Observes every member of `spec` (and any extra listed in `published`).
    pub async fn observe(
        &mut self,
        spec: &ClusterSpec,
        flavor: Flavor,
        published: Option<&Topology>,
    ) -> ClusterView {
        let primary = published
            .and_then(|t| t.primary.as_ref())
            .map(|m| m.name.clone());
        // Members still published but no longer in the spec are observed too: the plan has to
        // see them to remove them cleanly.
        let extra: Vec<MemberSpec> = published
            .map(|t| {
                t.members()
                    .filter(|m| spec.member(&m.name).is_none())
                    .map(|m| MemberSpec::new(m.name.clone(), m.host.clone(), m.port))
                    .collect()
            })
            .unwrap_or_default();
        let (last, first): (Vec<&MemberSpec>, Vec<&MemberSpec>) = spec
            .members
            .iter()
            .chain(&extra)
            .partition(|m| Some(&m.name) == primary.as_ref());
        let mut members = Vec::with_capacity(spec.members.len());
        let tls = spec.tls.as_ref();
        // Everyone else at once, then the primary.
        let mut conns: Vec<(String, Option<Conn>)> = first
            .iter()
            .map(|m| (m.name.clone(), self.conns.remove(&m.name)))
            .collect();
        let results = futures::future::join_all(
            conns
                .iter_mut()
                .zip(&first)
                .map(|((_, conn), m)| read_member(conn, m, &self.creds, tls, self.timeout)),
        )
        .await;
        for ((name, conn), (m, outcome)) in conns.into_iter().zip(first.iter().zip(results)) {
            if let Some(c) = conn {
                self.conns.insert(name, c);
            }
            members.push(self.view_of(m, flavor, outcome));
        }
        for m in last {
            let mut conn = self.conns.remove(&m.name);
            let outcome = read_member(&mut conn, m, &self.creds, tls, self.timeout).await;
            if let Some(c) = conn {
                self.conns.insert(m.name.clone(), c);
            }
            members.push(self.view_of(m, flavor, outcome));
        }
        ClusterView {
            flavor,
            members,
            published: published.cloned(),
        }
    }

    fn view_of(&mut self, m: &MemberSpec, flavor: Flavor, outcome: Outcome) -> MemberView {
        let mut v = MemberView::unobserved(m.name.clone(), m.host.clone(), m.port);
        let failures = self.failures.entry(m.name.clone()).or_insert(0);
        match outcome {
            Outcome::Read(r) => {
                *failures = 0;
                v.probe = Probe::Ok;
                v.read_only = Some(r.read_only);
                // Unknown is unsafe: a position that cannot be read makes the whole member
                // unreadable (never "holds nothing"), so every safety check counts it as a
                // member that may hold anything.
                match positions(flavor, &r) {
                    Ok((executed, retrieved)) => {
                        v.executed = Some(executed);
                        v.retrieved = retrieved;
                    }
                    Err(e) => {
                        tracing::warn!(member = %m.name, error = %e, "unreadable GTID position");
                    }
                }
                v.source = r.source;
                v.io_running = r.io_running;
                v.sql_running = r.sql_running;
                v.io_error = r.io_error;
                v.sql_error = r.sql_error;
                v.semi_sync = r.semi_sync;
                v.lag_seconds = r.lag_seconds;
            }
            Outcome::Refused => {
                *failures += 1;
                v.probe = Probe::Unreachable;
            }
            Outcome::TimedOut => {
                *failures += 1;
                v.probe = Probe::Hung;
            }
        }
        v.consecutive_failures = *failures;
        v
    }
}

/// The executed and (for a replica) retrieved positions, both or neither.
fn positions(
    flavor: Flavor,
    r: &Reading,
) -> Result<(GtidSet, Option<GtidSet>), lagless_core::gtid::GtidParseError> {
    let executed = GtidSet::parse(flavor, &r.executed)?;
    let retrieved = match r.source {
        Some(_) => Some(GtidSet::parse(flavor, &r.retrieved)?),
        None => None,
    };
    Ok((executed, retrieved))
}

async fn read_member(
    conn: &mut Option<Conn>,
    m: &MemberSpec,
    creds: &Credentials,
    tls: Option<&ServerTls>,
    timeout: Duration,
) -> Outcome {
    let attempt = async {
        if conn.is_none() {
            *conn = Some(
                Conn::new(opts(&m.host, m.port, creds, tls))
                    .await
                    .map_err(|_| false)?,
            );
        }
        let c = conn.as_mut().ok_or(false)?;
        query(c).await.map_err(|_| false)
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok(r)) => Outcome::Read(Box::new(r)),
        Ok(Err(_)) => {
            *conn = None;
            Outcome::Refused
        }
        Err(_) => {
            // A connection stuck mid-query cannot be reused.
            *conn = None;
            Outcome::TimedOut
        }
    }
}

async fn query(c: &mut Conn) -> Result<Reading, mysql_async::Error> {
    let (read_only, executed): (i64, String) = c
        .query_first("SELECT @@read_only, @@gtid_binlog_pos")
        .await?
        .unwrap_or_default();
    let mut r = Reading {
        read_only: read_only != 0,
        executed,
        ..Reading::default()
    };
    let status: Option<Row> = c.query_first("SHOW SLAVE STATUS").await?;
    if let Some(row) = status {
        let text = |name: &str| -> Option<String> {
            row.get_opt::<Option<String>, _>(name)
                .and_then(Result::ok)
                .flatten()
        };
        let number = |name: &str| text(name).and_then(|v| v.parse::<u32>().ok()).unwrap_or(0);
        let host = text("Master_Host").unwrap_or_default();
        let port = text("Master_Port")
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        if !host.is_empty() {
            r.source = Some((host, port));
        }
        r.retrieved = text("Gtid_IO_Pos").unwrap_or_default();
        // "Connecting" means the source is not answering.
        r.io_running = text("Slave_IO_Running").map(|v| v == "Yes");
        r.sql_running = text("Slave_SQL_Running").map(|v| v == "Yes");
        // NULL while a thread is stopped.
        r.lag_seconds = text("Seconds_Behind_Master").and_then(|v| v.parse().ok());
        let err = |code: &str, msg: &str| {
            let code = number(code);
            (code != 0).then(|| ReplicationError::new(code, text(msg).unwrap_or_default()))
        };
        r.io_error = err("Last_IO_Errno", "Last_IO_Error");
        r.sql_error = err("Last_SQL_Errno", "Last_SQL_Error");
    }
    // Whatever names this server uses (master/slave or source/replica); none when the plugin
    // is not loaded.
    let vars: Vec<(String, String)> = c
        .query("SHOW GLOBAL VARIABLES LIKE 'rpl_semi_sync_%enabled'")
        .await?;
    if !vars.is_empty() {
        let on = |names: [&str; 2]| {
            vars.iter()
                .any(|(n, v)| names.iter().any(|x| n.ends_with(x)) && v.eq_ignore_ascii_case("ON"))
        };
        r.semi_sync = Some(SemiSyncState {
            source_enabled: on(["master_enabled", "source_enabled"]),
            replica_enabled: on(["slave_enabled", "replica_enabled"]),
        });
    }
    Ok(r)
}
