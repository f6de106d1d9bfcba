//! `agent restore`: the init step of a new cluster's first member when the cluster starts from
//! a backup (`spec.bootstrap.fromBackup`). On an empty data directory of a cluster that was
//! never published, the backup is fetched and checked against its manifest, extracted,
//! prepared, rolled forward with the archived binary log to `--to` when asked, and made this
//! cluster's (its admin and replication accounts, no replication source); the GTID position
//! reached is left for the server's first start, as a seeded member's is. The other members
//! then copy this one as any new member does. Anything that fails leaves the data directory
//! empty, so the server never starts on half a restore and the kubelet tries again.

use std::path::{Path, PathBuf};

use clap::Args;
use mysql_async::prelude::Queryable as _;

use super::POSITION_FILE;
use crate::backup::archive::{self, Target};
use crate::backup::location::Location;
use crate::backup::manifest;
use crate::backup::s3::S3Options;
use crate::backup::store::Store;
use crate::local::LocalError;
use crate::local::mariadb::ServerLayout;
use crate::orchestrate::act::sql_quote;
use lagless_core::topology::Topology;

/// The directory, inside the data directory, where the restore is made before it is moved
/// into place (same filesystem: a rename).
const STAGING: &str = ".lagless-restore";

/// Present in the data directory while the restored files are moved into it: a restore cut
/// short there left part of them, which must never be started on.
const MOVING_MARKER: &str = "lagless-restore-incomplete";

/// Left in the data directory by a restore that completed (the backup's id): data without it,
/// in a cluster that starts from a backup and was never published, is not the backup's (a
/// volume an earlier cluster of the same name left behind).
pub const RESTORED_MARKER: &str = "lagless-restored";

#[derive(Debug, Clone, Args)]
pub struct RestoreArgs {
    /// Where the backups are: `s3://bucket/prefix` or a directory.
    #[arg(long, value_name = "DEST", env = "LAGLESS_RESTORE_FROM")]
    pub from: String,
    /// The cluster whose backups these are (its archive is `binlog/<cluster>/`).
    #[arg(long, value_name = "NAME", env = "LAGLESS_RESTORE_CLUSTER")]
    pub cluster: String,
    /// A backup id; the newest of `--cluster`'s (that precedes `--to`) when absent.
    #[arg(long, value_name = "ID", env = "LAGLESS_RESTORE_BACKUP")]
    pub backup: Option<String>,
    /// Roll forward to this second (UTC) or GTID position with the archived binary log.
    #[arg(long, value_name = "TIME|GTID", env = "LAGLESS_RESTORE_TO")]
    pub to: Option<String>,
    #[arg(long, env = "LAGLESS_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    #[arg(long, env = "AWS_REGION", default_value = "us-east-1")]
    pub s3_region: String,
    /// The data directory to fill.
    #[arg(long, value_name = "DIR", default_value = "/var/lib/mysql")]
    pub datadir: PathBuf,
    /// The published topology: when it names a primary the cluster exists, and nothing is
    /// restored over it.
    #[arg(long, value_name = "FILE")]
    pub topology: Option<PathBuf>,
    /// This cluster's `gtid_domain_id` (the restored server's while it is made ready).
    #[arg(long, value_name = "ID", default_value_t = 0)]
    pub gtid_domain_id: u32,
    #[arg(long, env = "LAGLESS_ADMIN_USER", hide_env_values = true)]
    pub admin_user: String,
    #[arg(long, env = "LAGLESS_ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: String,
    #[arg(long, env = "LAGLESS_REPLICATION_USER", hide_env_values = true)]
    pub replication_user: String,
    #[arg(long, env = "LAGLESS_REPLICATION_PASSWORD", hide_env_values = true)]
    pub replication_password: String,
}

/// What a restore did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Restored {
    /// The data directory holds data, or the cluster was published: nothing to do.
    NotNeeded(String),
    Restored {
        backup: String,
        position: String,
    },
}

impl std::fmt::Display for Restored {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Restored::NotNeeded(why) => write!(f, "nothing restored: {why}"),
            Restored::Restored { backup, position } => {
                write!(f, "restored backup {backup}; GTID position '{position}'")
            }
        }
    }
}

fn err(e: impl std::fmt::Display) -> String {
    e.to_string()
}

/// Runs the restore (see the module's documentation).
pub async fn restore(args: &RestoreArgs) -> Result<Restored, String> {
    if let Some(why) = not_needed(args).await? {
        return Ok(Restored::NotNeeded(why));
    }
    let staging = args.datadir.join(STAGING);
    let made = restore_into(args, &staging).await;
    let moved = match made {
        Ok(done) => move_into_place(&staging, &args.datadir)
            .await
            .map(|()| done),
        Err(e) => Err(e),
    };
    if moved.is_err() {
        let _ = tokio::fs::remove_dir_all(&staging).await;
        let _ = super::client::empty_data_dir(&args.datadir).await;
    }
    moved
}

/// Why nothing must be restored, if so.
async fn not_needed(args: &RestoreArgs) -> Result<Option<String>, String> {
    // Any published topology (a primary, or replicas while one is switched) means the cluster
    // exists: nothing is restored over it. A file that is there but unreadable says nothing
    // either way, so nothing is done.
    if let Some(path) = &args.topology {
        match tokio::fs::try_exists(path).await {
            Ok(false) => {}
            Ok(true) => match Topology::read(path) {
                Ok(t) if t.primary.is_some() || !t.replicas.is_empty() => {
                    let members: Vec<&str> = t
                        .primary
                        .iter()
                        .chain(&t.replicas)
                        .map(|m| m.name.as_str())
                        .collect();
                    return Ok(Some(format!(
                        "the cluster exists (published: {})",
                        members.join(", ")
                    )));
                }
                Ok(_) => {}
                Err(e) => return Err(format!("the published topology cannot be read: {e}")),
            },
            Err(e) => return Err(format!("{}: {e}", path.display())),
        }
    }
    let datadir = &args.datadir;
    if tokio::fs::try_exists(datadir.join(MOVING_MARKER))
        .await
        .map_err(err)?
    {
        eprintln!(
            "agent restore: a restore was cut short while moving into {}: emptying it",
            datadir.display()
        );
        super::client::empty_data_dir(datadir).await.map_err(err)?;
    }
    let mut entries = match tokio::fs::read_dir(datadir).await {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("{}: {e}", datadir.display())),
    };
    let mut data = false;
    while let Some(entry) = entries.next_entry().await.map_err(err)? {
        let name = entry.file_name();
        // A restore cut short (the pod killed midway) is not data: it is made again.
        if name == STAGING {
            let _ = tokio::fs::remove_dir_all(entry.path()).await;
            continue;
        }
        if name != "lost+found" {
            data = true;
        }
    }
    if !data {
        return Ok(None);
    }
    if tokio::fs::try_exists(datadir.join(RESTORED_MARKER))
        .await
        .map_err(err)?
    {
        return Ok(Some(format!(
            "{} holds the restored data",
            datadir.display()
        )));
    }
    Err(format!(
        "{} holds data that was not restored from a backup (a volume an earlier cluster of \
         this name left?): nothing is restored over it; delete the PersistentVolumeClaim of \
         this member to restore",
        datadir.display()
    ))
}

/// The S3 settings for `location` (none for a directory): the key from the environment
/// (the pod takes it from `fromBackup.s3.credentialsSecret`).
fn s3_options(args: &RestoreArgs, location: &Location) -> Result<Option<S3Options>, String> {
    S3Options::from_env(
        location,
        args.s3_endpoint.clone(),
        args.s3_region.clone(),
        "spec.bootstrap.fromBackup.s3.credentialsSecret",
    )
}

/// Restores into `staging/data`; returns the backup's id and the position reached.
async fn restore_into(args: &RestoreArgs, staging: &Path) -> Result<Restored, String> {
    let location = Location::parse(&args.from).map_err(err)?;
    let options = s3_options(args, &location)?;
    let backups = Store::open(&location, options.as_ref()).map_err(err)?;
    let all: Vec<_> = crate::local::backup::manifests(&backups)
        .await
        .map_err(err)?
        .into_iter()
        .filter(|m| m.cluster == args.cluster)
        .collect();
    let plan = match &args.to {
        None => None,
        Some(to) => {
            let target = Target::parse(to)?;
            let archive_store = Store::open(
                &archive::location(&location, &args.cluster),
                options.as_ref(),
            )
            .map_err(err)?;
            let (segments, archived, covered) = crate::local::pitr::read_archive(&archive_store)
                .await
                .map_err(err)?;
            let plan = crate::local::pitr::plan(
                &all,
                args.backup.as_deref(),
                target,
                segments,
                &archived,
                covered,
            )
            .map_err(|e| format!("cannot restore to {to}: {e}"))?;
            Some((archive_store, plan))
        }
    };
    let backup = match &plan {
        Some((_, plan)) => plan.backup.clone(),
        None => manifest::choose(&all, args.backup.as_deref())?.clone(),
    };
    eprintln!(
        "agent restore: backup {} of {} (GTID position {}) from {location}",
        backup.id, backup.cluster, backup.gtid_position
    );
    let layout = ServerLayout {
        name: "restore".into(),
        port: 0,
        server_id: 1,
        gtid_domain_id: args.gtid_domain_id,
        dir: staging.to_path_buf(),
    };
    let _ = tokio::fs::remove_dir_all(staging).await;
    let data = layout.data_dir();
    tokio::fs::create_dir_all(&data).await.map_err(err)?;
    crate::local::backup::fetch_and_prepare(&backups, &backup, &data)
        .await
        .map_err(err)?;
    let mut position = backup.gtid_position.clone();
    if let Some((archive_store, plan)) = &plan {
        let work = staging.join("replay");
        let (files, reached) = crate::local::pitr::replay_files(archive_store, plan, &work)
            .await
            .map_err(err)?;
        eprintln!(
            "agent restore: replaying {} archived segment(s) up to {}",
            files.len(),
            plan.target
        );
        crate::local::backup::replay(&layout, &files)
            .await
            .map_err(err)?;
        let _ = tokio::fs::remove_dir_all(&work).await;
        position = reached.to_string();
    }
    adopt(&layout, args).await.map_err(err)?;
    // The server's first start sets its binary log and replica positions from this file.
    tokio::fs::write(data.join(POSITION_FILE), format!("{position}\n"))
        .await
        .map_err(err)?;
    tokio::fs::write(data.join(RESTORED_MARKER), format!("{}\n", backup.id))
        .await
        .map_err(err)?;
    Ok(Restored::Restored {
        backup: backup.id,
        position,
    })
}

/// Makes the restored data this cluster's: its admin and replication accounts with this
/// cluster's passwords, no replication source. Without a binary log: the position is set at
/// the server's first start (the log's files live where the server's configuration says).
async fn adopt(layout: &ServerLayout, args: &RestoreArgs) -> Result<(), LocalError> {
    let (mut child, mut conn) =
        crate::local::backup::start_offline(layout, &["--skip-log-bin"]).await?;
    let result = async {
        for sql in adopt_sql(args) {
            conn.query_drop(&sql).await.map_err(|e| {
                LocalError::Other(format!(
                    "making the restored data this cluster's: {}",
                    crate::orchestrate::redact::redact(&e.to_string())
                ))
            })?;
        }
        let _ = conn.disconnect().await;
        Ok::<(), LocalError>(())
    }
    .await;
    crate::local::backup::stop_offline(layout, &mut child).await;
    result
}

/// The statements [`adopt`] runs, in order.
fn adopt_sql(args: &RestoreArgs) -> Vec<String> {
    let account = |user: &str, password: &str, grant: &str, option: &str| {
        [
            format!(
                "CREATE OR REPLACE USER '{}'@'%' IDENTIFIED BY '{}'",
                sql_quote(user),
                sql_quote(password)
            ),
            format!("GRANT {grant} ON *.* TO '{}'@'%'{option}", sql_quote(user)),
        ]
    };
    let mut sql = vec!["FLUSH PRIVILEGES".to_string()];
    sql.extend(account(
        &args.admin_user,
        &args.admin_password,
        "ALL PRIVILEGES",
        " WITH GRANT OPTION",
    ));
    sql.extend(account(
        &args.replication_user,
        &args.replication_password,
        "REPLICATION SLAVE",
        "",
    ));
    sql.push("RESET SLAVE ALL".into());
    sql
}

/// Moves what `staging/data` holds into `datadir` (a mount point, kept) and removes staging.
/// The move is marked in `datadir` until it is complete ([`MOVING_MARKER`]), so a restore cut
/// short here is found and made again, never started on.
async fn move_into_place(staging: &Path, datadir: &Path) -> Result<(), String> {
    let marker = datadir.join(MOVING_MARKER);
    write_synced(&marker).await?;
    let data = staging.join("data");
    let mut entries = tokio::fs::read_dir(&data).await.map_err(err)?;
    while let Some(entry) = entries.next_entry().await.map_err(err)? {
        let to = datadir.join(entry.file_name());
        tokio::fs::rename(entry.path(), &to)
            .await
            .map_err(|e| format!("{}: {e}", to.display()))?;
    }
    tokio::fs::remove_dir_all(staging).await.map_err(err)?;
    sync_dir(datadir).await?;
    tokio::fs::remove_file(&marker).await.map_err(err)?;
    sync_dir(datadir).await
}

async fn write_synced(path: &Path) -> Result<(), String> {
    let file = tokio::fs::File::create(path)
        .await
        .map_err(|e| format!("{}: {e}", path.display()))?;
    file.sync_all()
        .await
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if let Some(dir) = path.parent() {
        sync_dir(dir).await?;
    }
    Ok(())
}

/// Makes a directory's entries (renames, new files) durable.
async fn sync_dir(dir: &Path) -> Result<(), String> {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || std::fs::File::open(&dir).and_then(|d| d.sync_all()))
        .await
        .map_err(err)?
        .map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(datadir: &Path, topology: &Path) -> RestoreArgs {
        RestoreArgs {
            from: "s3://b/p".into(),
            cluster: "shop".into(),
            backup: None,
            to: None,
            s3_endpoint: None,
            s3_region: "us-east-1".into(),
            datadir: datadir.to_path_buf(),
            topology: Some(topology.to_path_buf()),
            gtid_domain_id: 0,
            admin_user: "adm".into(),
            admin_password: "pw".into(),
            replication_user: "repl".into(),
            replication_password: "r".into(),
        }
    }

    #[tokio::test]
    async fn a_restore_runs_only_on_an_empty_volume_of_a_cluster_never_published() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let topology = dir.path().join("topology.json");
        let a = args(&data, &topology);
        // Nothing there: restore.
        assert_eq!(not_needed(&a).await.unwrap(), None);
        std::fs::create_dir_all(data.join("lost+found")).unwrap();
        // A staging directory left by a killed restore is removed, and it is made again.
        std::fs::create_dir_all(data.join(STAGING).join("data")).unwrap();
        assert_eq!(not_needed(&a).await.unwrap(), None);
        assert!(!data.join(STAGING).exists());
        // A move cut short: the files moved so far are removed, and it is made again.
        std::fs::write(data.join(MOVING_MARKER), b"").unwrap();
        std::fs::write(data.join("ibdata1"), b"x").unwrap();
        assert_eq!(not_needed(&a).await.unwrap(), None);
        assert!(!data.join("ibdata1").exists());
        assert!(data.join("lost+found").exists());
        // Data that no restore left: refused, and kept.
        std::fs::write(data.join("ibdata1"), b"x").unwrap();
        let refused = not_needed(&a).await.unwrap_err();
        assert!(refused.contains("not restored from a backup"), "{refused}");
        assert!(data.join("ibdata1").exists());
        // The restored data: nothing to do.
        std::fs::write(data.join(RESTORED_MARKER), b"shop-1\n").unwrap();
        assert!(not_needed(&a).await.unwrap().is_some());
        // A published cluster is never restored over, and an unreadable topology stops it.
        std::fs::remove_dir_all(&data).unwrap();
        std::fs::write(
            &topology,
            r#"{"cluster":"shop","flavor":"mariadb","epoch":2,"state":"switching","primary":null,
                "replicas":[{"name":"shop-1","host":"shop-1.h","port":3306}]}"#,
        )
        .unwrap();
        let exists = not_needed(&a).await.unwrap().unwrap();
        assert!(exists.contains("shop-1"), "{exists}");
        std::fs::write(&topology, b"{not json").unwrap();
        assert!(not_needed(&a).await.is_err());
    }

    #[test]
    fn adoption_gives_the_cluster_its_accounts_and_no_source() {
        let args = RestoreArgs {
            from: "s3://b/p".into(),
            cluster: "shop".into(),
            backup: None,
            to: None,
            s3_endpoint: None,
            s3_region: "us-east-1".into(),
            datadir: "/var/lib/mysql".into(),
            topology: None,
            gtid_domain_id: 0,
            admin_user: "adm".into(),
            admin_password: "it's".into(),
            replication_user: "repl".into(),
            replication_password: "r".into(),
        };
        let sql = adopt_sql(&args);
        assert_eq!(sql[0], "FLUSH PRIVILEGES");
        assert_eq!(
            sql[1],
            "CREATE OR REPLACE USER 'adm'@'%' IDENTIFIED BY 'it''s'"
        );
        assert_eq!(
            sql[2],
            "GRANT ALL PRIVILEGES ON *.* TO 'adm'@'%' WITH GRANT OPTION"
        );
        assert_eq!(sql[4], "GRANT REPLICATION SLAVE ON *.* TO 'repl'@'%'");
        assert_eq!(sql.last().map(String::as_str), Some("RESET SLAVE ALL"));
    }
}
