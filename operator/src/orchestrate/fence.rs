//! Fencing a primary that is being replaced: read-only, and none of its client connections
//! left, so that nothing it still takes can reach a client as a success.
//!
//! A failover fences whatever the old primary's probe said: the orchestrator may be cut off
//! from a primary that its clients still reach, or the primary may only be stopped
//! (`SIGSTOP`) and wake up later. Attempts run in the background until one succeeds or
//! [`PERSISTENCE`] has passed, so a primary that wakes up is fenced at once rather than on a
//! later tick, and the failover waits only briefly for the first.

use std::time::Duration;

use lagless_core::topology::Flavor;
use mysql_async::Conn;
use mysql_async::prelude::Queryable;

use super::observe::{Credentials, opts};
use super::view::ServerTls;

/// How long one attempt (connect, read-only, kill) may take.
pub const ATTEMPT: Duration = Duration::from_secs(1);
/// How long background attempts go on.
pub const PERSISTENCE: Duration = Duration::from_secs(60);
/// The pause between background attempts.
const RETRY: Duration = Duration::from_millis(250);

/// The server to fence and how to reach it.
#[derive(Debug, Clone)]
pub struct Target {
    pub member: String,
    pub host: String,
    pub port: u16,
    pub admin: Credentials,
    /// The replication account: its connections (replicas' binary log dumps) are left alone.
    pub replication_user: String,
    pub flavor: Flavor,
    pub tls: Option<ServerTls>,
}

/// The statements that make a server read-only for everyone, as far as the flavour allows:
/// MySQL's `super_read_only` stops administrators too; MariaDB has no such switch, so the
/// connections of `READ_ONLY ADMIN` holders are ended instead (see [`CLIENT_CONNECTIONS`]).
pub fn read_only_statements(flavor: Flavor) -> &'static [&'static str] {
    match flavor {
        Flavor::Mariadb => &["SET GLOBAL read_only = ON"],
        Flavor::Mysql => &["SET GLOBAL super_read_only = ON"],
    }
}

/// Every connection but this one, the replication account's and the server's own threads.
pub const CLIENT_CONNECTIONS: &str = "SELECT ID FROM information_schema.PROCESSLIST \
     WHERE ID <> CONNECTION_ID() AND USER NOT IN (?, 'system user', 'event_scheduler') \
     AND COMMAND NOT IN ('Daemon', 'Binlog Dump', 'Binlog Dump GTID')";

/// One attempt: read-only, then every client connection ended. Returns how many were ended.
pub async fn attempt(target: &Target) -> Result<usize, String> {
    let work = async {
        let mut conn = Conn::new(opts(
            &target.host,
            target.port,
            &target.admin,
            target.tls.as_ref(),
        ))
        .await
        .map_err(|e| e.to_string())?;
        // Clients first: a commit waiting for an acknowledgement that cannot come would block
        // `read_only`, and must end as an error to its client. Then again, for any client
        // that connected in between.
        let mut killed = kill_clients(&mut conn, target).await?;
        for sql in read_only_statements(target.flavor) {
            conn.query_drop(*sql).await.map_err(|e| e.to_string())?;
        }
        killed += kill_clients(&mut conn, target).await?;
        let _ = conn.disconnect().await;
        Ok(killed)
    };
    tokio::time::timeout(ATTEMPT, work)
        .await
        .map_err(|_| format!("no answer within {} ms", ATTEMPT.as_millis()))?
}

/// How long the action waits for the first attempt before the failover goes on: a hung or
/// cut-off server must not delay the promotion (with semi-sync, its stopped replicas already
/// keep it from acknowledging anything).
pub const FIRST_WAIT: Duration = Duration::from_millis(300);

/// Ends every client connection; returns how many there were.
async fn kill_clients(conn: &mut Conn, target: &Target) -> Result<usize, String> {
    let ids: Vec<u64> = conn
        .exec(CLIENT_CONNECTIONS, (target.replication_user.clone(),))
        .await
        .map_err(|e| e.to_string())?;
    for id in &ids {
        // Gone already is as good as killed.
        let _ = conn.query_drop(format!("KILL CONNECTION {id}")).await;
    }
    Ok(ids.len())
}

/// The fences still trying, by member.
#[derive(Debug, Default)]
pub struct Fences(std::sync::Mutex<std::collections::HashMap<String, tokio::task::AbortHandle>>);

impl Fences {
    /// Fences `target`: attempts start now and go on in the background until one succeeds or
    /// [`PERSISTENCE`] has passed; this waits up to [`FIRST_WAIT`] for the first. Never fails:
    /// the plan's other fences (replicas' IO threads stopped, semi-sync) do not depend on it.
    pub async fn start(&self, target: Target) {
        let (first_tx, first_rx) = tokio::sync::oneshot::channel();
        let member = target.member.clone();
        let task = tokio::spawn(keep_trying(target, first_tx));
        if let Some(before) = self.lock().insert(member, task.abort_handle()) {
            before.abort();
        }
        let _ = tokio::time::timeout(FIRST_WAIT, first_rx).await;
    }

    /// Stops fencing `member` (it is being given a role again).
    pub fn stop(&self, member: &str) {
        if let Some(task) = self.lock().remove(member) {
            task.abort();
        }
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, tokio::task::AbortHandle>>
    {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

async fn keep_trying(target: Target, first: tokio::sync::oneshot::Sender<()>) {
    let deadline = tokio::time::Instant::now() + PERSISTENCE;
    let mut first = Some(first);
    loop {
        let outcome = attempt(&target).await;
        if let Some(tx) = first.take() {
            let _ = tx.send(());
        }
        match outcome {
            Ok(killed) => {
                tracing::info!(member = %target.member, killed, "old primary fenced");
                return;
            }
            Err(why) if tokio::time::Instant::now() >= deadline => {
                tracing::warn!(member = %target.member, %why, "old primary never answered; not fenced");
                return;
            }
            Err(why) => {
                tracing::debug!(member = %target.member, %why, "old primary not fenced yet");
                tokio::time::sleep(RETRY).await;
            }
        }
    }
}
