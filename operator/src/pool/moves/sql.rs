//! The SQL a mover speaks to one server: its endpoints, bounded statements, and the tenant's
//! tables. Shared by the steps, the snapshot and the verification.

use std::time::Duration;

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, Row};

use crate::orchestrate::act::sql_quote;

/// A server the mover reaches, with the account it uses there.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: String,
}

impl Endpoint {
    fn opts(&self) -> Opts {
        mysql_async::OptsBuilder::default()
            .ip_or_hostname(self.host.clone())
            .tcp_port(self.port)
            .user(Some(self.user.clone()))
            .pass(Some(self.password.clone()))
            .prefer_socket(false)
            // A server gone silent (a dead host, a partition) ends a long read instead of
            // holding the move.
            .tcp_keepalive(Some(Duration::from_secs(10)))
            .into()
    }

    pub async fn conn(&self) -> Result<Conn, String> {
        tokio::time::timeout(Duration::from_secs(10), Conn::new(self.opts()))
            .await
            .map_err(|_| format!("{}:{}: no connection within 10 s", self.host, self.port))?
            .map_err(|e| format!("{}:{}: {e}", self.host, self.port))
    }

    /// A connection to a server that must still be its cluster's primary. One that a failover
    /// made a read-only replica would take the move's statements (the administrator passes
    /// `read_only`) as errant transactions, and give an old head.
    pub async fn primary_conn(&self) -> Result<Conn, String> {
        let mut conn = self.conn().await?;
        let state: Option<(i64, i64, Option<i64>)> = conn
            .query_first(
                "SELECT @@read_only, @@rpl_semi_sync_master_enabled, \
                 (SELECT VARIABLE_VALUE FROM information_schema.GLOBAL_STATUS \
                  WHERE VARIABLE_NAME = 'RPL_SEMI_SYNC_MASTER_CLIENTS')",
            )
            .await
            .map_err(|e| format!("{}:{}: {e}", self.host, self.port))?;
        let refusal = match state {
            // With lossless semi-sync and no replica connected, every write would wait for an
            // acknowledgement that cannot come: refused now rather than left waiting.
            Some((0, 1, Some(0))) => {
                Some("acknowledges no write: semi-sync is on and no replica is connected")
            }
            Some((0, _, _)) => None,
            _ => Some(
                "is read-only: not a writable primary (a failover or switchover, or the \
                 cluster set read-only)",
            ),
        };
        if let Some(why) = refusal {
            let _ = conn.disconnect().await;
            return Err(format!("{}:{} {why}", self.host, self.port));
        }
        Ok(conn)
    }
}

/// How long one of the move's own statements (DDL, channel commands) may take. A cluster that
/// can acknowledge no write (its only replica lost, semi-sync waiting) would hold the move
/// forever; bounded, the step fails, the record says why, and the move goes on when run again.
pub(crate) const STATEMENT_LIMIT: Duration = Duration::from_secs(30);

pub(crate) async fn run(conn: &mut Conn, sql: &str) -> Result<(), String> {
    let shown = crate::orchestrate::redact::redact(sql);
    match tokio::time::timeout(STATEMENT_LIMIT, conn.query_drop(sql)).await {
        Ok(done) => done.map_err(|e| format!("{shown}: {e}")),
        Err(_) => {
            // Given up here, the statement would still wait there, holding its locks (a
            // re-seed's backup of that server waits for it): it is ended.
            kill_connection(conn).await;
            Err(format!(
                "{shown}: no answer within {} s (can the cluster acknowledge writes?)",
                STATEMENT_LIMIT.as_secs()
            ))
        }
    }
}

/// Ends `conn`'s session on its server, from a connection of its own; best effort.
pub(crate) async fn kill_connection(conn: &Conn) {
    let id = conn.id();
    let kill = async {
        let mut other = Conn::new(conn.opts().clone()).await?;
        other.query_drop(format!("KILL CONNECTION {id}")).await?;
        other.disconnect().await
    };
    match tokio::time::timeout(Duration::from_secs(5), kill).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::warn!(id, error = %e, "cannot end a stuck statement's session"),
        Err(_) => tracing::warn!(id, "cannot end a stuck statement's session in 5 s"),
    }
}

pub(crate) async fn first<T: mysql_async::prelude::FromValue>(
    conn: &mut Conn,
    sql: &str,
) -> Result<Option<T>, String> {
    let row: Option<Row> = conn
        .query_first(sql)
        .await
        .map_err(|e| format!("{sql}: {e}"))?;
    Ok(row.and_then(|r| r.get::<Option<T>, _>(0)).flatten())
}

/// The tenant's tables on `conn`'s server, refusing what a move cannot carry.
pub async fn tables(conn: &mut Conn, db: &str) -> Result<Vec<String>, String> {
    let q = sql_quote(db);
    let rows: Vec<(String, String, Option<String>)> = conn
        .query(format!(
            "SELECT TABLE_NAME, TABLE_TYPE, ENGINE FROM information_schema.TABLES \
             WHERE TABLE_SCHEMA = '{q}' ORDER BY TABLE_NAME"
        ))
        .await
        .map_err(|e| format!("listing the tables of {db}: {e}"))?;
    for (name, kind, engine) in &rows {
        match (kind.as_str(), engine.as_deref()) {
            ("BASE TABLE", Some(e)) if e.eq_ignore_ascii_case("InnoDB") => {}
            ("VIEW", _) => {
                return Err(format!(
                    "{db}.{name} is a view: a move renames tables across databases, which \
                     views prevent"
                ));
            }
            // A consistent snapshot holds transactional tables only: another engine's rows
            // would be read as they change.
            ("BASE TABLE", engine) => {
                return Err(format!(
                    "{db}.{name} uses ENGINE={}: a move copies InnoDB tables only",
                    engine.unwrap_or("?")
                ));
            }
            (kind, _) => {
                return Err(format!(
                    "{db}.{name} is a {}, which a move does not carry",
                    kind.to_lowercase()
                ));
            }
        }
    }
    let triggers: Option<u64> = first(
        conn,
        &format!("SELECT COUNT(*) FROM information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = '{q}'"),
    )
    .await?;
    if triggers.unwrap_or(0) > 0 {
        return Err(format!(
            "{db} has triggers: a move renames tables across databases, which triggers prevent"
        ));
    }
    // The copy carries tables only, and the source's database is dropped once moved.
    let routines: Option<u64> = first(
        conn,
        &format!(
            "SELECT (SELECT COUNT(*) FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = '{q}') \
             + (SELECT COUNT(*) FROM information_schema.EVENTS WHERE EVENT_SCHEMA = '{q}')"
        ),
    )
    .await?;
    if routines.unwrap_or(0) > 0 {
        return Err(format!(
            "{db} has stored routines or events, which a move does not carry"
        ));
    }
    Ok(rows.into_iter().map(|(name, _, _)| name).collect())
}
