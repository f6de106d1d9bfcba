//! A move's checksums. The whole tenant is compared before the freeze, on the snapshot server
//! and on the target at one binary-log position of the snapshot server; inside the freeze only
//! the tables written since that position are compared again, so the pause does not grow with
//! the tenant's size.

use std::cmp::Ordering;
use std::time::{Duration, Instant};

use mysql_async::prelude::Queryable;
use mysql_async::{Conn, Row};

use super::plan::{self, Touch};
use super::sql::{run, tables};
use super::steps::{MoveContext, ensure_filter, use_channel};
use crate::orchestrate::act::sql_quote;

/// How long the target's channel may take to reach the snapshot's position.
const REACH_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the channel is looked at while it runs to the position.
const REACH_POLL: Duration = Duration::from_millis(20);
/// Binary-log events read at a time.
const EVENTS_PAGE: usize = 5000;

/// Compares every table of the tenant on the snapshot server with the target's copy, both
/// at the snapshot server's binary-log position of a consistent snapshot: the channel's
/// applier runs exactly to it and waits there while both sides are summed. Returns the
/// position, or `None` when the applier could not stop exactly there (then the freeze
/// compares everything). Checksums that differ are an error.
pub async fn precheck(cx: &MoveContext) -> Result<Option<(String, u64)>, String> {
    let channel = plan::channel_name(&cx.tenant);
    let mut target = cx.target_primary.primary_conn().await?;
    use_channel(&mut target, &channel).await?;
    run(&mut target, "STOP SLAVE SQL_THREAD").await?;
    // The applier starts again below: never without its filter.
    ensure_filter(cx, &mut target, &channel).await?;
    let compared = compare_at_snapshot(cx, &mut target).await;
    // The applier runs on whatever happened; a plain start forgets the UNTIL.
    let restarted = run(&mut target, "START SLAVE SQL_THREAD").await;
    let at = compared?;
    restarted?;
    Ok(at)
}

async fn compare_at_snapshot(
    cx: &MoveContext,
    target: &mut Conn,
) -> Result<Option<(String, u64)>, String> {
    let mut source = cx.snapshot_from.conn().await?;
    run(&mut source, "START TRANSACTION WITH CONSISTENT SNAPSHOT").await?;
    let (file, pos) = super::snapshot::snapshot_coordinates(&mut source).await?;
    run(
        target,
        &format!(
            "START SLAVE SQL_THREAD UNTIL MASTER_LOG_FILE='{}', MASTER_LOG_POS={pos}",
            sql_quote(&file)
        ),
    )
    .await?;
    if !applier_stopped_at(cx, target, (&file, pos)).await? {
        tracing::info!(tenant = %cx.tenant, %file, pos, "the channel passed the snapshot's position; checksums left to the freeze");
        return Ok(None);
    }
    let started = Instant::now();
    let names = tables(&mut source, &cx.database).await?;
    let theirs = tables(target, &cx.database).await?;
    if names != theirs {
        return Err(format!(
            "the target's tables {theirs:?} differ from the source's {names:?}"
        ));
    }
    for table in &names {
        let columns = columns(&mut source, &cx.database, table).await?;
        let sql = plan::row_sum_sql(&cx.database, table, &columns);
        let (a, b) = futures::join!(
            source.query_first::<(u64, String), _>(sql.as_str()),
            target.query_first::<(u64, String), _>(sql.as_str()),
        );
        let a = a.map_err(|e| format!("summing {table} on the source: {e}"))?;
        let b = b.map_err(|e| format!("summing {table} on the target: {e}"))?;
        if a != b || a.is_none() {
            return Err(format!(
                "table {table} at {file}:{pos}: rows and sum {a:?} on the source, {b:?} on the target"
            ));
        }
    }
    run(&mut source, "COMMIT").await?;
    tracing::info!(tenant = %cx.tenant, tables = names.len(), ms = started.elapsed().as_millis() as u64, "tenant compared before the freeze");
    Ok(Some((file, pos)))
}

/// Waits for the channel's applier to stop at its UNTIL position; whether it stopped exactly
/// there (an applier that had passed it already stops where it is; one that takes longer than
/// [`REACH_TIMEOUT`] counts as not there).
async fn applier_stopped_at(
    cx: &MoveContext,
    target: &mut Conn,
    until: (&str, u64),
) -> Result<bool, String> {
    let channel = plan::channel_name(&cx.tenant);
    let deadline = Instant::now() + REACH_TIMEOUT;
    loop {
        let row: Option<Row> = target
            .query_first(format!("SHOW SLAVE '{}' STATUS", sql_quote(&channel)))
            .await
            .map_err(|e| format!("SHOW SLAVE STATUS: {e}"))?;
        let row = row.ok_or_else(|| format!("the move's channel {channel} is gone"))?;
        let text = |name: &str| {
            row.get::<Option<String>, _>(name)
                .flatten()
                .unwrap_or_default()
        };
        let error = text("Last_SQL_Error");
        if !error.is_empty() {
            return Err(format!("the move's channel stopped: {error}"));
        }
        let file = text("Relay_Master_Log_File");
        let pos = text("Exec_Master_Log_Pos").parse::<u64>().unwrap_or(0);
        if text("Slave_SQL_Running") != "Yes" {
            return Ok(plan::reached((&file, pos), until) == Ordering::Equal);
        }
        if Instant::now() > deadline {
            // Too slow to compare before the freeze: the freeze compares everything.
            tracing::info!(tenant = %cx.tenant, file = until.0, pos = until.1, "the move's channel did not reach the snapshot's position in time");
            return Ok(false);
        }
        tokio::time::sleep(REACH_POLL).await;
    }
}

async fn columns(conn: &mut Conn, db: &str, table: &str) -> Result<Vec<String>, String> {
    conn.query(format!(
        "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = '{}' \
         AND TABLE_NAME = '{}' ORDER BY ORDINAL_POSITION",
        sql_quote(db),
        sql_quote(table)
    ))
    .await
    .map_err(|e| format!("the columns of {db}.{table}: {e}"))
}

/// The tenant's tables written in the snapshot server's binary log since `since`, read to its
/// end; `None` when a statement there named the database (everything is compared then).
pub async fn changed_since(
    cx: &MoveContext,
    since: &(String, u64),
) -> Result<Option<Vec<String>>, String> {
    let fenced = plan::fenced_database(&cx.tenant);
    let mut source = cx.snapshot_from.conn().await?;
    let logs: Vec<Row> = source
        .query("SHOW BINARY LOGS")
        .await
        .map_err(|e| format!("SHOW BINARY LOGS: {e}"))?;
    let mut files: Vec<String> = logs
        .iter()
        .filter_map(|r| r.get::<String, _>("Log_name"))
        .filter(|name| name.as_str() >= since.0.as_str())
        .collect();
    files.sort();
    if files.first() != Some(&since.0) {
        // Purged meanwhile: what changed is not known, so every table is compared.
        tracing::info!(tenant = %cx.tenant, file = %since.0, "the compared position's binary log is gone; comparing every table");
        return Ok(None);
    }
    let mut changed: Vec<String> = Vec::new();
    for file in &files {
        let mut from = if *file == since.0 { since.1 } else { 4 };
        loop {
            let rows: Vec<(String, u64, String, u64, u64, String)> = source
                .query(format!(
                    "SHOW BINLOG EVENTS IN '{}' FROM {from} LIMIT {EVENTS_PAGE}",
                    sql_quote(file)
                ))
                .await
                .map_err(|e| format!("reading the binary log {file}: {e}"))?;
            for (_, _, kind, _, _, info) in &rows {
                match plan::binlog_touch(kind, info, &cx.database, &fenced) {
                    Touch::Nothing => {}
                    Touch::Table(t) if changed.contains(&t) => {}
                    Touch::Table(t) => changed.push(t),
                    Touch::Unknown => return Ok(None),
                }
            }
            match rows.last() {
                Some(last) if rows.len() == EVENTS_PAGE => from = last.4,
                _ => break,
            }
        }
    }
    Ok(Some(changed))
}

/// Table checksums of the fenced source copy against the target's: every table's, or only
/// those `only` names (the rest compared equal before the freeze and unwritten since).
pub async fn verify(cx: &MoveContext, only: Option<&[String]>) -> Result<(), String> {
    let fenced = plan::fenced_database(&cx.tenant);
    let mut source = cx.source_primary.primary_conn().await?;
    let mut target = cx.target_primary.primary_conn().await?;
    let source_tables = tables(&mut source, &fenced).await?;
    let target_tables = tables(&mut target, &cx.database).await?;
    if source_tables != target_tables {
        return Err(format!(
            "the target's tables {target_tables:?} differ from the source's {source_tables:?}"
        ));
    }
    for table in &source_tables {
        if only.is_some_and(|only| !only.contains(table)) {
            continue;
        }
        let sum = |db: &str| format!("CHECKSUM TABLE {}.{}", plan::ident(db), plan::ident(table));
        // Both sides at once: the tenant's writes are held meanwhile.
        let (a, b) = futures::join!(
            source.query_first::<(String, Option<u64>), _>(sum(&fenced)),
            target.query_first::<(String, Option<u64>), _>(sum(&cx.database)),
        );
        let a = a.map_err(|e| format!("checksum of {table} on the source: {e}"))?;
        let b = b.map_err(|e| format!("checksum of {table} on the target: {e}"))?;
        let (a, b) = (a.and_then(|r| r.1), b.and_then(|r| r.1));
        if a != b || a.is_none() {
            return Err(format!(
                "table {table}: checksum {a:?} on the source, {b:?} on the target"
            ));
        }
    }
    Ok(())
}
