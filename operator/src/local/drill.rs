//! Restore drills (`local drill`): the newest backup restored into a scratch server beside
//! the cluster, rolled forward with the binary log archive to the position of a consistent
//! snapshot taken on a caught-up replica, and every table compared (row count and row
//! checksums) with that snapshot. A drill that passes proves the backup, the archive and the
//! replay together give back the cluster's data; without an archive it proves the backup
//! restores, prepares and starts at the position its manifest claims.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use lagless_core::gtid::MariadbPosition;
use mysql_async::prelude::Queryable as _;

use crate::backup::BackupError;
use crate::backup::archive::Target;

use super::LocalError;
use super::backup::{
    S3Args, admin, choose_source, destination, fetch_and_prepare, manifests, replay, start_offline,
    stop_offline, tls_ca,
};
use super::mariadb::{self, ServerLayout};
use super::state::{LocalCredentials, Settings, StateDir, read_json};
use super::status::Status;
use crate::backup::location::Location;
use crate::backup::manifest;
use crate::backup::store::Store;

/// Row count and two row-checksum sums of one table.
type Sums = (u64, u64, u64);

/// The user tables (`schema.table`) and the expression that fingerprints a row of each
/// (every column as bytes, so columns of different collations concatenate).
async fn tables(conn: &mut mysql_async::Conn) -> Result<Vec<(String, String)>, LocalError> {
    let rows: Vec<(String, String, String)> = conn
        .query(
            "SELECT table_schema, table_name, GROUP_CONCAT(CONCAT('ISNULL(`', \
             REPLACE(column_name, '`', '``'), '`),CAST(`', REPLACE(column_name, '`', '``'), \
             '` AS BINARY)') ORDER BY ordinal_position SEPARATOR ',') \
             FROM information_schema.columns WHERE table_schema NOT IN \
             ('mysql', 'sys', 'information_schema', 'performance_schema') \
             AND (table_schema, table_name) IN (SELECT table_schema, table_name FROM \
             information_schema.tables WHERE table_type = 'BASE TABLE') \
             GROUP BY table_schema, table_name ORDER BY 1, 2",
        )
        .await
        .map_err(sql_error)?;
    Ok(rows
        .into_iter()
        .map(|(schema, table, columns)| {
            let name = format!(
                "`{}`.`{}`",
                schema.replace('`', "``"),
                table.replace('`', "``")
            );
            (name, format!("CRC32(CONCAT_WS('#',{columns}))"))
        })
        .collect())
}

async fn checksums(
    conn: &mut mysql_async::Conn,
    tables: &[(String, String)],
) -> Result<BTreeMap<String, Sums>, LocalError> {
    let mut out = BTreeMap::new();
    for (name, row) in tables {
        let sums: Option<(u64, Option<u64>, Option<u64>)> = conn
            .query_first(format!(
                "SELECT COUNT(*), BIT_XOR({row}), SUM({row}) FROM {name}"
            ))
            .await
            .map_err(sql_error)?;
        let (count, xor, sum) = sums.unwrap_or_default();
        out.insert(name.clone(), (count, xor.unwrap_or(0), sum.unwrap_or(0)));
    }
    Ok(out)
}

fn sql_error(e: mysql_async::Error) -> LocalError {
    LocalError::Other(crate::orchestrate::redact::redact(&e.to_string()))
}

/// The tables whose sums differ, or that only one side has.
fn differences(live: &BTreeMap<String, Sums>, restored: &BTreeMap<String, Sums>) -> Vec<String> {
    let mut out = Vec::new();
    for (name, sums) in live {
        match restored.get(name) {
            None => out.push(format!("{name} is missing from the restored data")),
            Some(r) if r != sums => out.push(format!(
                "{name}: {} rows live, {} restored, or their checksums differ",
                sums.0, r.0
            )),
            Some(_) => {}
        }
    }
    for name in restored.keys().filter(|n| !live.contains_key(*n)) {
        out.push(format!("{name} is only in the restored data"));
    }
    out
}

/// The member whose snapshot a drill compares with: a replica replicating without error
/// (how far behind does not matter: the comparison is at its snapshot's position), the
/// least behind; the primary of a one-member cluster.
fn drill_source(
    members: &[super::status::MemberStatus],
) -> Result<&super::status::MemberStatus, String> {
    if members.len() == 1 {
        return choose_source(members);
    }
    members
        .iter()
        .filter(|m| {
            m.process == "running"
                && m.health == "ok"
                && m.role == "replica"
                && m.replicating == Some(true)
                && m.error.is_none()
        })
        .min_by_key(|m| (m.behind.unwrap_or(u64::MAX), m.name.as_str()))
        .ok_or_else(|| "no replica is replicating to take a snapshot from".to_string())
}

/// `local drill [--from DEST] [--backup ID]`.
pub fn drill(
    dir: &StateDir,
    from: Option<&str>,
    backup_id: Option<&str>,
    s3: &S3Args,
) -> Result<(), LocalError> {
    let settings: Settings = read_json(&dir.settings())?;
    let creds: LocalCredentials = read_json(&dir.credentials())?;
    let (location, store, archive) = destination(dir, &settings, from, s3)?;
    let runtime = crate::runtime()
        .map_err(|e| LocalError::Other(format!("cannot start the runtime: {e}")))?;
    let place = Place {
        location: &location,
        store: &store,
        archive: &archive,
    };
    runtime
        .block_on(drill_now(
            dir,
            &settings,
            &creds,
            &place,
            backup_id,
            &|line| println!("{line}"),
        ))
        .map(|_| ())
}

/// Where the backups and the archive a drill uses are.
pub struct Place<'a> {
    pub location: &'a Location,
    pub store: &'a Store,
    pub archive: &'a Store,
}

/// Runs a drill; says its progress through `say`; returns the id of the backup drilled.
pub async fn drill_now(
    dir: &StateDir,
    settings: &Settings,
    creds: &LocalCredentials,
    place: &Place<'_>,
    backup_id: Option<&str>,
    say: &(dyn Fn(&str) + Sync),
) -> Result<String, LocalError> {
    // A directory of its own per drill: a scheduled one and one asked for may overlap.
    let scratch = dir.root().join(format!(
        "drill-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis())
    ));
    let result = drill_in(dir, settings, creds, place, backup_id, say, &scratch).await;
    let _ = tokio::fs::remove_dir_all(&scratch).await;
    result
}

async fn drill_in(
    dir: &StateDir,
    settings: &Settings,
    creds: &LocalCredentials,
    place: &Place<'_>,
    backup_id: Option<&str>,
    say: &(dyn Fn(&str) + Sync),
    scratch: &std::path::Path,
) -> Result<String, LocalError> {
    let status: Status = read_json(&dir.status())?;
    let member = drill_source(&status.members)
        .map_err(BackupError::NoSource)?
        .clone();
    let ca = tls_ca(dir);
    let mut opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(member.port)
        .user(Some(admin(creds).user))
        .pass(Some(admin(creds).password))
        .prefer_socket(false);
    if let Some(ca) = &ca {
        opts = opts.ssl_opts(Some(
            mysql_async::SslOpts::default()
                .with_root_certs(vec![ca.clone().into()])
                .with_disable_built_in_roots(true),
        ));
    }
    let drill = Drill {
        cluster: &settings.cluster,
        live: (member.name.as_str(), opts.into()),
        place,
        backup_id,
        scratch,
        server_id: settings.server_id_base.saturating_add(999),
        gtid_domain_id: settings.gtid_domain_id,
    };
    drill_against(&drill, say).await
}

/// What a drill compares: the live member (its name, and how to reach it with an account
/// that reads every table), the cluster's backups and archive, and where the scratch server
/// goes.
pub struct Drill<'a> {
    pub cluster: &'a str,
    pub live: (&'a str, mysql_async::Opts),
    pub place: &'a Place<'a>,
    pub backup_id: Option<&'a str>,
    /// A directory the drill may fill and remove.
    pub scratch: &'a std::path::Path,
    /// The scratch server's identity (none of the cluster's own).
    pub server_id: u32,
    pub gtid_domain_id: u32,
}

/// The drill itself, wherever it runs (a local cluster's supervisor, or a Kubernetes
/// cluster's archiver pod): one consistent snapshot of the live member, the backup before it
/// restored and rolled forward with the archive to exactly the snapshot's position, and every
/// table compared. Returns the id of the backup drilled.
pub async fn drill_against(
    drill: &Drill<'_>,
    say: &(dyn Fn(&str) + Sync),
) -> Result<String, LocalError> {
    let (location, store, archive) = (drill.place.location, drill.place.store, drill.place.archive);
    let (member, opts) = (drill.live.0, drill.live.1.clone());
    let (backup_id, scratch) = (drill.backup_id, drill.scratch);
    {
        let began = Instant::now();
        let mine: Vec<_> = manifests(store)
            .await?
            .into_iter()
            .filter(|m| m.cluster == drill.cluster)
            .collect();
        let (segments, _, _) = super::pitr::read_archive(archive).await?;
        // The live side: one consistent snapshot, and the position it is at.
        let mut live = mysql_async::Conn::new(opts).await.map_err(sql_error)?;
        let listed = tables(&mut live).await?;
        live.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT")
            .await
            .map_err(sql_error)?;
        let at: Option<String> = live
            .query_first(
                "SELECT BINLOG_GTID_POS( \
                 (SELECT variable_value FROM information_schema.session_status \
                  WHERE variable_name = 'BINLOG_SNAPSHOT_FILE'), \
                 (SELECT variable_value FROM information_schema.session_status \
                  WHERE variable_name = 'BINLOG_SNAPSHOT_POSITION'))",
            )
            .await
            .map_err(sql_error)?;
        let at = at.unwrap_or_default();
        let live_sums = checksums(&mut live, &listed).await?;
        let _ = live.query_drop("COMMIT").await;
        let _ = live.disconnect().await;

        let position = MariadbPosition::parse(&at)
            .map_err(|e| LocalError::Other(format!("{member}'s snapshot position: {e}")))?;
        let (backup, pitr) = if segments.is_empty() {
            let backup = manifest::choose(&mine, backup_id)
                .cloned()
                .map_err(LocalError::Usage)?;
            (backup, None)
        } else {
            // The archive reaches the snapshot within a second or two.
            let deadline = Instant::now() + Duration::from_secs(15);
            let plan = loop {
                let (segments, archived, covered) = super::pitr::read_archive(archive).await?;
                let plan = super::pitr::plan(
                    &mine,
                    backup_id,
                    Target::Gtid(position.clone()),
                    segments,
                    &archived,
                    covered,
                );
                match plan {
                    Ok(plan) => break plan,
                    Err(e) if Instant::now() > deadline => {
                        return Err(LocalError::Other(format!(
                            "cannot roll the backup forward to {position}: {e}"
                        )));
                    }
                    Err(_) => tokio::time::sleep(Duration::from_millis(300)).await,
                }
            };
            (plan.backup.clone(), Some(plan))
        };
        say(&format!(
            "drill: backup {} from {location}{}, compared with {} at {at}",
            backup.id,
            if pitr.is_some() {
                " rolled forward with the binary log archive"
            } else {
                " (no archive: compared at the backup's own position is not possible; \
                 the restore itself is checked)"
            },
            member
        ));

        // The restored side: a scratch server with no networking, beside the cluster.
        mariadb::remove_dir(scratch).await?;
        let layout = ServerLayout {
            name: "drill".into(),
            port: 0,
            server_id: drill.server_id,
            gtid_domain_id: drill.gtid_domain_id,
            dir: scratch.to_path_buf(),
        };
        let data = layout.data_dir();
        tokio::fs::create_dir_all(&data)
            .await
            .map_err(LocalError::io(&data))?;
        fetch_and_prepare(store, &backup, &data).await?;
        if let Some(plan) = &pitr {
            let work = scratch.join("replay");
            let (files, reached) = super::pitr::replay_files(archive, plan, &work).await?;
            replay(&layout, &files).await?;
            if !reached.contains(&position) {
                return Err(LocalError::Other(format!(
                    "the archive took the backup to {reached}, not {position}"
                )));
            }
        }
        let (mut child, mut conn) = start_offline(&layout, &["--skip-log-bin"]).await?;
        let restored = async {
            let listed = tables(&mut conn).await?;
            checksums(&mut conn, &listed).await
        }
        .await;
        let _ = conn.disconnect().await;
        stop_offline(&layout, &mut child).await;
        let restored = restored?;
        if pitr.is_none() {
            say(&format!(
                "drill passed: backup {} restored, prepared and started at {} with {} tables \
                 in {:.1} s",
                backup.id,
                backup.gtid_position,
                restored.len(),
                began.elapsed().as_secs_f64()
            ));
            return Ok(backup.id);
        }
        let differ = differences(&live_sums, &restored);
        if !differ.is_empty() {
            return Err(LocalError::Other(format!(
                "drill failed: the restored data differs from {member} at {at}: {}",
                differ.join("; ")
            )));
        }
        say(&format!(
            "drill passed: {} tables ({} rows) equal in {:.1} s",
            restored.len(),
            restored.values().map(|s| s.0).sum::<u64>(),
            began.elapsed().as_secs_f64()
        ));
        Ok(backup.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn differences_name_each_table() {
        let live = BTreeMap::from([
            ("`a`.`t`".to_string(), (3, 1, 2)),
            ("`a`.`u`".to_string(), (1, 1, 1)),
        ]);
        let same = live.clone();
        assert!(differences(&live, &same).is_empty());
        let mut other = live.clone();
        other.insert("`a`.`t`".into(), (2, 1, 2));
        other.remove("`a`.`u`");
        other.insert("`a`.`v`".into(), (0, 0, 0));
        let d = differences(&live, &other);
        assert_eq!(d.len(), 3, "{d:?}");
        assert!(d[0].contains("3 rows live, 2 restored"));
        assert!(d[1].contains("missing"));
        assert!(d[2].contains("only in the restored"));
    }
}
