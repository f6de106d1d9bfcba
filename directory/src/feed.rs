//! [`ChangeFeed`]: the change log read by a follower that polls it many times a second.
//!
//! The follower keeps one connection of its own and sends plain text statements: one round
//! trip a poll, where a pooled connection would add a checkout, a prepare and a reset.

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Opts, Row};

use crate::Change;
use crate::access::{LAST_SEQ, addr_of, bounded, change_of, connected};
use crate::error::DirectoryError;

/// A reader of the directory's change log on a dedicated connection, opened on first use
/// and again after any error.
#[derive(Debug)]
pub struct ChangeFeed {
    opts: Opts,
    addr: String,
    conn: Option<Conn>,
}

impl ChangeFeed {
    /// A feed from the server `opts` reach (the global cluster's primary); connects on
    /// first use.
    pub fn new(opts: Opts) -> Self {
        Self {
            addr: addr_of(&opts),
            opts,
            conn: None,
        }
    }

    /// `host:port` of the server read.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The newest change's seq (0 when there is none): where a follower starts.
    pub async fn last_seq(&mut self) -> Result<u64, DirectoryError> {
        let seq: Option<u64> = self
            .query("reading the change log's head", LAST_SEQ.to_string())
            .await?
            .first()
            .and_then(|row| row.get(0));
        Ok(seq.unwrap_or(0))
    }

    /// At most `limit` changes after `seq`, oldest first.
    pub async fn since(&mut self, seq: u64, limit: u32) -> Result<Vec<Change>, DirectoryError> {
        self.query("reading the change log", since_sql(seq, limit))
            .await?
            .iter()
            .map(change_of)
            .collect()
    }

    async fn query(&mut self, what: &str, sql: String) -> Result<Vec<Row>, DirectoryError> {
        let mut conn = match self.conn.take() {
            Some(conn) => conn,
            None => connected(&self.addr, Conn::new(self.opts.clone())).await?,
        };
        let rows = bounded(&self.addr, what, conn.query(sql)).await?;
        // Kept only after a statement that succeeded: a failed one may have left the
        // connection mid-result.
        self.conn = Some(conn);
        Ok(rows)
    }
}

/// The change-log read as text; both values are numbers, so nothing needs escaping.
pub(crate) fn since_sql(seq: u64, limit: u32) -> String {
    format!(
        "SELECT seq, tenant_id, cluster, version, state FROM lagless_directory.changes \
         WHERE seq > {seq} ORDER BY seq LIMIT {limit}"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_read_names_its_bounds() {
        assert!(since_sql(41, 1000).ends_with("WHERE seq > 41 ORDER BY seq LIMIT 1000"));
    }
}
