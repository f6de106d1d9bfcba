//! What the directory's client and its change feed share: connections and statements
//! bounded in time, and the decoding of the directory's rows.

use std::future::Future;
use std::time::Duration;

use mysql_async::prelude::FromValue;
use mysql_async::{Conn, Opts, Row};

use crate::error::DirectoryError;
use crate::naming::TenantId;
use crate::route::{Change, Route, TenantState};

/// How long a connection may take; a directory that does not answer by then is unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one statement may take. Directory statements touch a row or a short range, so
/// one that takes longer is stuck behind a lock or a hung server.
const STATEMENT_TIMEOUT: Duration = Duration::from_secs(10);

pub(crate) const LAST_SEQ: &str = "SELECT COALESCE(MAX(seq), 0) FROM lagless_directory.changes";

/// `host:port` of the server `opts` reach, for messages.
pub(crate) fn addr_of(opts: &Opts) -> String {
    format!("{}:{}", opts.ip_or_hostname(), opts.tcp_port())
}

/// Awaits a connection to `addr` within the connect timeout.
pub(crate) async fn connected(
    addr: &str,
    fut: impl Future<Output = Result<Conn, mysql_async::Error>>,
) -> Result<Conn, DirectoryError> {
    match tokio::time::timeout(CONNECT_TIMEOUT, fut).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(DirectoryError::Unreachable(format!("{addr}: {e}"))),
        Err(_) => Err(DirectoryError::Unreachable(format!(
            "{addr}: no connection within {}s",
            CONNECT_TIMEOUT.as_secs()
        ))),
    }
}

/// Awaits a statement on `addr` within the statement timeout, naming `what` in errors.
pub(crate) async fn bounded<T>(
    addr: &str,
    what: &str,
    fut: impl Future<Output = Result<T, mysql_async::Error>>,
) -> Result<T, DirectoryError> {
    match tokio::time::timeout(STATEMENT_TIMEOUT, fut).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e @ mysql_async::Error::Server(_))) => {
            Err(DirectoryError::Query(format!("{what}: {e}")))
        }
        Ok(Err(e)) => Err(DirectoryError::Unreachable(format!("{addr} ({what}): {e}"))),
        Err(_) => Err(DirectoryError::Unreachable(format!(
            "{addr} ({what}): no answer within {}s",
            STATEMENT_TIMEOUT.as_secs()
        ))),
    }
}

/// Column `name` of a row the directory returned; a value of the wrong type is an error
/// naming it, never a panic.
pub(crate) fn column<T: FromValue>(row: &Row, name: &str, what: &str) -> Result<T, DirectoryError> {
    match row.get_opt::<T, &str>(name) {
        Some(Ok(v)) => Ok(v),
        Some(Err(e)) => Err(DirectoryError::Invalid(format!(
            "{what}: column {name} holds {:?}, which is not what the directory keeps there",
            e.0
        ))),
        None => Err(DirectoryError::Invalid(format!(
            "{what}: the directory's answer has no column {name}"
        ))),
    }
}

pub(crate) fn tenant_of(row: &Row) -> Result<TenantId, DirectoryError> {
    let id: String = column(row, "tenant_id", "a directory row")?;
    TenantId::parse(&id).map_err(|e| DirectoryError::Invalid(format!("a directory row: {e}")))
}

pub(crate) fn state_of(text: &str, id: &TenantId) -> Result<TenantState, DirectoryError> {
    text.parse()
        .map_err(|e| DirectoryError::Invalid(format!("tenant {id}: {e}")))
}

pub(crate) fn route_of(row: &Row, id: &TenantId) -> Result<Route, DirectoryError> {
    let what = format!("tenant {id}");
    let state: String = column(row, "state", &what)?;
    Ok(Route {
        cluster: column(row, "cluster", &what)?,
        version: column(row, "version", &what)?,
        state: state_of(&state, id)?,
    })
}

pub(crate) fn change_of(row: &Row) -> Result<Change, DirectoryError> {
    let seq: u64 = column(row, "seq", "a change")?;
    let what = format!("change {seq}");
    let tenant = tenant_of(row)?;
    let cluster: Option<String> = column(row, "cluster", &what)?;
    let state: Option<String> = column(row, "state", &what)?;
    let route = match (cluster, state) {
        (Some(cluster), Some(state)) => Some(Route {
            cluster,
            version: column(row, "version", &what)?,
            state: state_of(&state, &tenant)?,
        }),
        (None, None) => None,
        _ => {
            return Err(DirectoryError::Invalid(format!(
                "{what}: cluster and state must both be set or both be NULL"
            )));
        }
    };
    Ok(Change { seq, tenant, route })
}
