//! Backups of a local cluster and restores into a new one: which member gives the copy,
//! the copy streamed to storage with its manifest written last, and restored members made
//! the new cluster's own (its accounts, its GTID state) before anything starts.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant, SystemTime};

use clap::Args;
use mysql_async::prelude::Queryable as _;

use crate::backup::BackupError;
use crate::backup::archive;
use crate::backup::location::{Location, S3Credentials};
use crate::backup::manifest::{self, Manifest};
use crate::backup::pipeline::{compress_into, decompress_from};
use crate::backup::s3::S3Options;
use crate::backup::schedule;
use crate::backup::store::Store;
use crate::backup::take::{Taking, complete};
use crate::crd::MySQLCluster;
use crate::orchestrate::observe::Credentials;
use crate::orchestrate::seed::{Donor, backup_stream, extract, prepare};
use crate::tls::files::TlsFiles;
use lagless_core::topology::Flavor;

use super::LocalError;
use super::mariadb::{self, Binaries, ServerLayout, ServerOptions};
use super::process::{is_root, spawn_tied};
use super::state::{LocalCredentials, Settings, StateDir, read_json};
use super::status::{MemberStatus, Status};

/// Where S3 is and who we are there. The secret is never a flag: a command line is readable
/// by every process.
#[derive(Debug, Clone, Args)]
pub struct S3Args {
    /// An S3-compatible server, http(s)://host[:port] [default: AWS S3 of --s3-region].
    #[arg(long, env = "LAGLESS_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    #[arg(long, env = "AWS_REGION", default_value = "us-east-1")]
    pub s3_region: String,
    /// A file of AWS_ACCESS_KEY_ID=… and AWS_SECRET_ACCESS_KEY=… lines [default: those
    /// environment variables].
    #[arg(long, env = "LAGLESS_S3_CREDENTIALS")]
    pub s3_credentials: Option<std::path::PathBuf>,
}

/// The S3 settings of `spec.backup`, as the command-line flags would give them.
pub fn s3_args(cluster: &MySQLCluster, settings: &Settings) -> S3Args {
    let s3 = cluster.spec.backup.as_ref().and_then(|b| b.s3.clone());
    S3Args {
        s3_endpoint: s3.as_ref().and_then(|s| s.endpoint.clone()),
        s3_region: s3
            .as_ref()
            .and_then(|s| s.region.clone())
            .or_else(|| std::env::var("AWS_REGION").ok())
            .unwrap_or_else(|| "us-east-1".into()),
        s3_credentials: settings.backup_credentials.clone(),
    }
}

impl S3Args {
    /// The S3 settings a destination needs (none for a directory).
    pub fn options(&self, location: &Location) -> Result<Option<S3Options>, LocalError> {
        if matches!(location, Location::Dir(_)) {
            return Ok(None);
        }
        let credentials = match &self.s3_credentials {
            Some(file) => {
                let text = std::fs::read_to_string(file).map_err(LocalError::io(file))?;
                S3Credentials::parse(&text).map_err(|e| LocalError::Manifest {
                    path: file.clone(),
                    message: e,
                })?
            }
            None => match (
                std::env::var("AWS_ACCESS_KEY_ID"),
                std::env::var("AWS_SECRET_ACCESS_KEY"),
            ) {
                (Ok(access_key), Ok(secret_key)) => S3Credentials {
                    access_key,
                    secret_key,
                },
                _ => {
                    return Err(LocalError::Usage(format!(
                        "{location} needs credentials: --s3-credentials FILE, or \
                         AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
                    )));
                }
            },
        };
        Ok(Some(S3Options {
            endpoint: self.s3_endpoint.clone(),
            region: self.s3_region.clone(),
            credentials,
        }))
    }

    pub fn store(&self, destination: &str) -> Result<(Location, Store), LocalError> {
        let location = Location::parse(destination)?;
        let options = self.options(&location)?;
        let store = Store::open(&location, options.as_ref())?;
        Ok((location, store))
    }
}

/// The member a backup is taken from: a running replica that has applied everything the
/// primary has (the least loaded such, by name), or the primary when it is the only member.
pub fn choose_source(members: &[MemberStatus]) -> Result<&MemberStatus, String> {
    let up = |m: &&MemberStatus| m.process == "running" && m.health == "ok";
    if let [only] = members {
        return if up(&only) {
            Ok(only)
        } else {
            Err(format!("{} is not running and healthy", only.name))
        };
    }
    members
        .iter()
        .filter(|m| caught_up(m))
        .min_by_key(|m| (m.lag_seconds.unwrap_or(0), m.name.as_str()))
        .ok_or_else(|| {
            let states: Vec<String> = members
                .iter()
                .map(|m| {
                    format!(
                        "{} {} ({}{})",
                        m.name,
                        m.role,
                        m.health,
                        m.behind
                            .filter(|b| *b > 0)
                            .map(|b| format!(", {b} behind"))
                            .unwrap_or_default()
                    )
                })
                .collect();
            format!(
                "no replica is caught up to take a backup from: {}",
                states.join(", ")
            )
        })
}

/// [`choose_source`], limited to `preferred` (`spec.backup.member`) when it is given: that
/// replica once it has caught up, never another member (the primary only when it is the
/// only member).
pub fn choose_source_for<'a>(
    members: &'a [MemberStatus],
    preferred: Option<&str>,
) -> Result<&'a MemberStatus, String> {
    let Some(name) = preferred.filter(|_| members.len() > 1) else {
        return choose_source(members);
    };
    let member = members
        .iter()
        .find(|m| m.name == name)
        .ok_or_else(|| format!("{name} (spec.backup.member) is not a member"))?;
    if member.role != "replica" {
        return Err(format!(
            "{name} (spec.backup.member) is the {}: backups come from a replica",
            member.role
        ));
    }
    if caught_up(member) {
        Ok(member)
    } else {
        Err(format!(
            "{name} (spec.backup.member) is not caught up ({}, {})",
            member.health,
            member
                .behind
                .map_or("not replicating".to_string(), |b| format!("{b} behind"))
        ))
    }
}

/// A running replica that replicates without error and has applied everything.
fn caught_up(m: &MemberStatus) -> bool {
    m.process == "running"
        && m.health == "ok"
        && m.role == "replica"
        && m.replicating == Some(true)
        && m.behind == Some(0)
        && m.error.is_none()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// How long `backup` waits for a replica to catch up (the status is a second old at most).
const SOURCE_WAIT: Duration = Duration::from_secs(10);

/// `local backup [--to DEST]`: to `DEST`, or to the spec's `backup.destination`.
pub fn backup(
    dir: &StateDir,
    to: Option<&str>,
    keep: Option<u32>,
    s3: &S3Args,
) -> Result<(), LocalError> {
    let settings: Settings = read_json(&dir.settings())?;
    let creds: LocalCredentials = read_json(&dir.credentials())?;
    let (location, store, archive) = destination(dir, &settings, to, s3)?;
    let runtime = crate::runtime()
        .map_err(|e| LocalError::Other(format!("cannot start the runtime: {e}")))?;
    let manifest = runtime.block_on(backup_now(dir, &settings, &creds, &store))?;
    let removed = match keep {
        Some(keep) => runtime.block_on(retain(
            &store,
            Some(&archive),
            &settings.cluster,
            Some(keep),
            None,
        ))?,
        None => Vec::new(),
    };
    let secs = (manifest.finished_unix_ms - manifest.started_unix_ms) as f64 / 1000.0;
    println!(
        "backup {} of {} taken from {} at GTID position {}: {:.1} MiB stored ({:.1} MiB \
         streamed) in {secs:.1} s ({:.0} MB/s), in {location}",
        manifest.id,
        manifest.cluster,
        manifest.member,
        if manifest.gtid_position.is_empty() {
            "(none)"
        } else {
            &manifest.gtid_position
        },
        manifest.stored_bytes as f64 / 1_048_576.0,
        manifest.stream_bytes as f64 / 1_048_576.0,
        manifest.stream_bytes as f64 / 1e6 / secs.max(1e-3),
    );
    if !removed.is_empty() {
        println!("deleted older backups: {}", removed.join(", "));
    }
    Ok(())
}

/// The backups' destination (`given`, or the spec's `backup.destination` with its S3
/// settings), its store and the cluster's archive store there.
pub fn destination(
    dir: &StateDir,
    settings: &Settings,
    given: Option<&str>,
    s3: &S3Args,
) -> Result<(Location, Store, Store), LocalError> {
    let (destination, s3) = match given {
        Some(to) => (to.to_string(), s3.clone()),
        None => {
            let path = dir.manifest();
            let text = std::fs::read_to_string(&path).map_err(LocalError::io(&path))?;
            let cluster = super::manifest::parse(&text, &path)?;
            let destination = cluster
                .spec
                .backup
                .as_ref()
                .map(|b| b.destination.clone())
                .ok_or_else(|| {
                    LocalError::Usage(
                        "where? give the destination (--to or --from), or \
                         spec.backup.destination in the cluster file"
                            .into(),
                    )
                })?;
            (destination, s3_args(&cluster, settings))
        }
    };
    let (location, store) = s3.store(&destination)?;
    let archive = Store::open(
        &archive::location(&location, &settings.cluster),
        s3.options(&location)?.as_ref(),
    )?;
    Ok((location, store, archive))
}

/// Takes a backup of the running cluster in `dir` from the member [`choose_source`] picks,
/// waiting up to [`SOURCE_WAIT`] for one (the status is half a second old at most).
pub async fn backup_now(
    dir: &StateDir,
    settings: &Settings,
    creds: &LocalCredentials,
    store: &Store,
) -> Result<Manifest, LocalError> {
    let began = Instant::now();
    let preferred = {
        let path = dir.manifest();
        let text = std::fs::read_to_string(&path).map_err(LocalError::io(&path))?;
        super::manifest::parse(&text, &path)?
            .spec
            .backup
            .and_then(|b| b.member)
    };
    let member = loop {
        if !dir.running() {
            return Err(LocalError::NotRunning(settings.cluster.clone()));
        }
        let status: Status = read_json(&dir.status())?;
        match choose_source_for(&status.members, preferred.as_deref()) {
            Ok(m) => break m.clone(),
            Err(e) if began.elapsed() > SOURCE_WAIT => {
                return Err(BackupError::NoSource(e).into());
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(250)).await,
        }
    };
    take(dir, settings, creds, &member, store).await
}

/// Deletes `cluster`'s complete backups that the policy ([`schedule::expired`]) no longer
/// keeps: each manifest first, so a backup stops being one before its object goes; then the
/// archived binary log that only the deleted backups needed. Runs only after a backup
/// succeeded, and never touches another cluster's backups or objects without a manifest.
pub async fn retain(
    store: &Store,
    archive: Option<&Store>,
    cluster: &str,
    keep: Option<u32>,
    keep_days: Option<u32>,
) -> Result<Vec<String>, LocalError> {
    let mine: Vec<Manifest> = manifests(store)
        .await?
        .into_iter()
        .filter(|m| m.cluster == cluster)
        .collect();
    let expired = schedule::expired(&mine, keep, keep_days, now_ms());
    let mut removed = Vec::new();
    for old in &expired {
        store.delete(&manifest::manifest_name(&old.id)).await?;
        store.delete(&old.object).await?;
        tracing::info!(id = %old.id, "older backup deleted");
        removed.push(old.id.clone());
    }
    let oldest_kept = mine
        .iter()
        .filter(|m| !removed.contains(&m.id))
        .min_by_key(|m| m.finished_unix_ms);
    if let (Some(archive), Some(oldest)) = (archive, oldest_kept) {
        prune_archive(archive, &oldest.gtid_position).await?;
    }
    Ok(removed)
}

/// Deletes the archive segments that no restore from the backup at `oldest` needs: each
/// manifest first, oldest first.
async fn prune_archive(archive: &Store, oldest: &str) -> Result<(), LocalError> {
    let (segments, _, _) = super::pitr::read_archive(archive).await?;
    let oldest = lagless_core::gtid::MariadbPosition::parse(oldest).unwrap_or_default();
    let prunable = archive::prunable(&segments, &oldest);
    for sequence in &prunable {
        archive.delete(&archive::manifest_name(*sequence)).await?;
        archive.delete(&archive::segment_name(*sequence)).await?;
    }
    if !prunable.is_empty() {
        tracing::info!(
            segments = prunable.len(),
            "archived binary log older than the oldest backup deleted"
        );
    }
    Ok(())
}

pub(super) fn admin(creds: &LocalCredentials) -> Credentials {
    Credentials {
        user: creds.admin_user.clone(),
        password: creds.admin_password.clone(),
    }
}

pub(super) fn tls_ca(dir: &StateDir) -> Option<std::path::PathBuf> {
    let ca = TlsFiles::new(dir.tls()).ca();
    ca.is_file().then_some(ca)
}

async fn server_version(
    port: u16,
    creds: &LocalCredentials,
    ca: Option<&Path>,
) -> Result<String, LocalError> {
    let mut opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(port)
        .user(Some(creds.admin_user.clone()))
        .pass(Some(creds.admin_password.clone()))
        .prefer_socket(false);
    if let Some(ca) = ca {
        opts = opts.ssl_opts(Some(
            mysql_async::SslOpts::default()
                .with_root_certs(vec![ca.to_path_buf().into()])
                .with_disable_built_in_roots(true),
        ));
    }
    let sql = |e: mysql_async::Error| LocalError::Other(format!("port {port}: {e}"));
    let mut conn = mysql_async::Conn::new(opts).await.map_err(sql)?;
    let version: Option<String> = conn.query_first("SELECT VERSION()").await.map_err(sql)?;
    let _ = conn.disconnect().await;
    Ok(version.unwrap_or_default())
}

/// Streams a backup of `member` into `store`; the manifest is written once the object is
/// complete, and an object that is not complete is removed.
async fn take(
    dir: &StateDir,
    settings: &Settings,
    creds: &LocalCredentials,
    member: &MemberStatus,
    store: &Store,
) -> Result<Manifest, LocalError> {
    let started = now_ms();
    let ca = tls_ca(dir);
    let version = server_version(member.port, creds, ca.as_deref()).await?;
    let taking = Taking::new(&settings.cluster, &member.name, version, started);
    // Opening the object first: storage that cannot be written fails before the copy starts.
    let mut writer = store.writer(&taking.object()).await?;
    let donor = Donor {
        host: "127.0.0.1".into(),
        port: member.port,
        datadir: dir.member(&member.name).join("data"),
        tls_ca: ca,
    };
    tracing::info!(id = %taking.id, member = %member.name, "backup started");
    let scratch = dir.root().join(format!("backup-{}.tmp", taking.id));
    let mut stream = match backup_stream(&donor, &admin(creds), &scratch).await {
        Ok(stream) => stream,
        Err(e) => {
            writer.abort().await;
            return Err(BackupError::from(e).into());
        }
    };
    let progress = Arc::new(AtomicU64::new(0));
    let reporter = tokio::spawn(report_progress(member.name.clone(), progress.clone()));
    let stored = compress_into(&mut stream.stdout, &mut writer, progress).await;
    reporter.abort();
    let finished = stream.finish().await.map_err(BackupError::from);
    Ok(complete(store, &taking, writer, stored, finished).await?)
}

/// Says every few seconds how much of the stream has passed: a large backup takes minutes.
async fn report_progress(member: String, bytes: Arc<AtomicU64>) {
    let began = Instant::now();
    loop {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let mib = bytes.load(std::sync::atomic::Ordering::Relaxed) as f64 / 1_048_576.0;
        eprintln!(
            "backing up {member}: {mib:.0} MiB streamed in {:.0} s",
            began.elapsed().as_secs_f64()
        );
    }
}

/// Every complete backup in `store`, newest first. Manifests that cannot be read are
/// reported on stderr and left out.
pub async fn manifests(store: &Store) -> Result<Vec<Manifest>, BackupError> {
    let names = store.names().await?;
    let mut out = Vec::new();
    for id in manifest::ids_listed(names.iter().map(String::as_str)) {
        let read = store.get_small(&manifest::manifest_name(&id)).await;
        match read.and_then(|bytes| manifest::parse(&id, &bytes)) {
            Ok(m) => out.push(m),
            Err(e) => eprintln!("warning: {e}"),
        }
    }
    manifest::newest_first(&mut out);
    Ok(out)
}

/// `local backups --from DEST`.
pub fn list(from: &str, s3: &S3Args, json: bool) -> Result<(), LocalError> {
    let (location, store) = s3.store(from)?;
    let runtime = crate::runtime()
        .map_err(|e| LocalError::Other(format!("cannot start the runtime: {e}")))?;
    let all = runtime.block_on(manifests(&store))?;
    if json {
        let text =
            serde_json::to_string_pretty(&all).map_err(|e| LocalError::Other(e.to_string()))?;
        println!("{text}");
        return Ok(());
    }
    if all.is_empty() {
        println!("no backups in {location}");
        return Ok(());
    }
    println!(
        "{:<36} {:<10} {:<10} {:<24} {:>10}  GTID",
        "ID", "CLUSTER", "MEMBER", "FINISHED", "MIB"
    );
    for m in &all {
        println!(
            "{:<36} {:<10} {:<10} {:<24} {:>10.1}  {}",
            m.id,
            m.cluster,
            m.member,
            m.finished_at,
            m.stored_bytes as f64 / 1_048_576.0,
            m.gtid_position
        );
    }
    Ok(())
}

/// The backup a restore uses: `id`, or the newest.
pub async fn find(store: &Store, id: Option<&str>) -> Result<Manifest, LocalError> {
    let all = manifests(store).await?;
    manifest::choose(&all, id)
        .cloned()
        .map_err(LocalError::Usage)
}

/// Gives every member of a new (never started) cluster the data of `backup`: fetched and
/// checked against its manifest while extracted beside the first member's data directory,
/// prepared, copied to the others, and made the cluster's own in each. Every member then
/// starts at the backup's position and the others replicate from the first at once: no
/// copy over the network, and semi-sync has its replicas from the start. Anything that fails
/// leaves no data directory behind.
pub async fn restore_members(
    dir: &StateDir,
    settings: &Settings,
    creds: &LocalCredentials,
    store: &Store,
    backup: &Manifest,
    pitr: Option<(&Store, &super::pitr::Plan)>,
) -> Result<(), LocalError> {
    let layouts = (0..settings.replicas.max(1))
        .map(|i| {
            let name = settings.member_name(i);
            Ok(ServerLayout {
                dir: dir.member(&name),
                port: settings
                    .member_port(i)
                    .ok_or_else(|| LocalError::Other(format!("no port for {name}")))?,
                server_id: settings.server_id_base.saturating_add(i),
                gtid_domain_id: settings.gtid_domain_id,
                name,
            })
        })
        .collect::<Result<Vec<_>, LocalError>>()?;
    let began = Instant::now();
    let restored = restore_into(&layouts, creds, store, backup, pitr).await;
    if restored.is_err() {
        for layout in &layouts {
            mariadb::remove_dir(&layout.data_dir()).await?;
        }
    }
    let position = restored?;
    match pitr {
        None => println!(
            "restored backup {} (GTID position {}) into {} member(s) in {:.1} s",
            backup.id,
            backup.gtid_position,
            layouts.len(),
            began.elapsed().as_secs_f64()
        ),
        Some((_, plan)) => println!(
            "restored backup {} (GTID position {}) and the archived transactions up to {} \
             (GTID position {position}) into {} member(s) in {:.1} s",
            backup.id,
            backup.gtid_position,
            plan.target,
            layouts.len(),
            began.elapsed().as_secs_f64()
        ),
    }
    Ok(())
}

/// Returns the GTID position the members are at.
async fn restore_into(
    layouts: &[ServerLayout],
    creds: &LocalCredentials,
    store: &Store,
    backup: &Manifest,
    pitr: Option<(&Store, &super::pitr::Plan)>,
) -> Result<String, LocalError> {
    let Some(first) = layouts.first() else {
        return Ok(backup.gtid_position.clone());
    };
    let staging = first.dir.join("data.restore");
    mariadb::remove_dir(&staging).await?;
    tokio::fs::create_dir_all(&staging)
        .await
        .map_err(LocalError::io(&staging))?;
    let fetched = fetch_and_prepare(store, backup, &staging).await;
    if let Err(e) = fetched {
        mariadb::remove_dir(&staging).await?;
        return Err(e);
    }
    let data = first.data_dir();
    tokio::fs::rename(&staging, &data)
        .await
        .map_err(LocalError::io(&data))?;
    let mut position = backup.gtid_position.clone();
    if let Some((archive, plan)) = pitr {
        let work = first.dir.join("replay");
        let files = super::pitr::replay_files(archive, plan, &work).await;
        let replayed = match files {
            Ok((files, reached)) => replay(first, &files).await.map(|()| reached),
            Err(e) => Err(e),
        };
        let _ = tokio::fs::remove_dir_all(&work).await;
        position = replayed?.to_string();
    }
    for layout in &layouts[1..] {
        tokio::fs::create_dir_all(&layout.dir)
            .await
            .map_err(LocalError::io(&layout.dir))?;
        mariadb::copy_data(&data, &layout.data_dir()).await?;
    }
    for layout in layouts {
        adopt(layout, creds, &position).await?;
    }
    Ok(position)
}

pub(crate) async fn fetch_and_prepare(
    store: &Store,
    backup: &Manifest,
    staging: &Path,
) -> Result<(), LocalError> {
    let mut reader = store.reader(&backup.object).await?;
    let (to_extract, extract_from) = tokio::io::duplex(1 << 20);
    let (fetched, extracted) = tokio::join!(
        decompress_from(&mut reader, backup, to_extract),
        extract(extract_from, staging, Arc::new(AtomicU64::new(0)))
    );
    // The check against the manifest comes first: a damaged object explains a failed
    // extraction, and a clean extraction of a damaged object is still refused.
    fetched?;
    extracted.map_err(BackupError::from)?;
    let position = prepare(staging).await.map_err(BackupError::from)?;
    if position != backup.gtid_position {
        return Err(BackupError::Corrupt {
            id: backup.id.clone(),
            detail: format!(
                "the copy is at GTID position {position}, its manifest says {}",
                backup.gtid_position
            ),
        }
        .into());
    }
    Ok(())
}

/// Starts `layout`'s server on its data without networking or grant checks (for making
/// restored data the cluster's own) and connects to it; stop it with [`mariadb::stop`].
pub(crate) async fn start_offline(
    layout: &ServerLayout,
    extra: &[&str],
) -> Result<(std::process::Child, mysql_async::Conn), LocalError> {
    let bins = Binaries::locate()?;
    let none = Default::default();
    let config = mariadb::render_config(
        layout,
        &ServerOptions {
            server_config: &none,
            semi_sync: false,
            tls: None,
        },
    );
    let cnf = layout.dir.join("restore.cnf");
    std::fs::write(&cnf, config).map_err(LocalError::io(&cnf))?;
    for d in [layout.dir.join("tmp"), layout.conf_dir()] {
        std::fs::create_dir_all(&d).map_err(LocalError::io(&d))?;
    }
    let out = layout.dir.join("mariadbd.out");
    let stdout = std::fs::File::create(&out).map_err(LocalError::io(&out))?;
    let stderr = stdout.try_clone().map_err(LocalError::io(&out))?;
    let mut cmd = std::process::Command::new(&bins.mariadbd);
    cmd.arg(format!("--defaults-file={}", cnf.display()))
        .args([
            "--skip-grant-tables",
            "--skip-networking",
            "--skip-slave-start",
        ])
        .args(extra)
        .stdin(std::process::Stdio::null())
        .stdout(stdout)
        .stderr(stderr);
    if is_root() {
        cmd.arg("--user=root");
    }
    let mut child = spawn_tied(cmd).map_err(|e| LocalError::Command {
        command: format!(
            "{} --defaults-file={}",
            bins.mariadbd.display(),
            cnf.display()
        ),
        detail: e.to_string(),
    })?;
    let opts = mysql_async::OptsBuilder::default()
        .socket(Some(offline_socket(layout).to_string_lossy().into_owned()))
        .user(Some("root"));
    match mariadb::connect_while_alive(&mut child, opts.into(), &layout.error_log(), &layout.name)
        .await
    {
        Ok(conn) => Ok((child, conn)),
        Err(e) => {
            stop_offline(layout, &mut child).await;
            Err(e.into())
        }
    }
}

fn offline_socket(layout: &ServerLayout) -> std::path::PathBuf {
    layout.dir.join("mariadbd.sock")
}

pub(crate) async fn stop_offline(layout: &ServerLayout, child: &mut std::process::Child) {
    mariadb::stop(child, Duration::from_secs(60)).await;
    let _ = std::fs::remove_file(layout.dir.join("restore.cnf"));
}

/// Replays the archived transactions `files` into `layout`'s (restored) data.
pub(crate) async fn replay(
    layout: &ServerLayout,
    files: &[std::path::PathBuf],
) -> Result<(), LocalError> {
    // No binary log: the replayed transactions' GTIDs become the position `adopt` sets, and
    // a log written here would be copied to the other members with this member's paths.
    let (mut child, conn) = start_offline(layout, &["--skip-log-bin"]).await?;
    let _ = conn.disconnect().await;
    let result = super::pitr::apply(files, &offline_socket(layout), layout).await;
    stop_offline(layout, &mut child).await;
    result
}

/// Makes restored data the new cluster's: its own accounts (the backup holds the old
/// cluster's), no replication source, and a binary log that starts at the backup's GTID
/// position, so the orchestration adopts the member as the one holding the data and seeds
/// the others from it. The server runs for this without networking or grant checks, and
/// is stopped before the cluster starts.
async fn adopt(
    layout: &ServerLayout,
    creds: &LocalCredentials,
    position: &str,
) -> Result<(), LocalError> {
    let (mut child, mut conn) = start_offline(layout, &[]).await?;
    let result = async {
        for sql in adopt_sql(creds, position) {
            conn.query_drop(&sql).await.map_err(|e| {
                LocalError::Other(format!(
                    "making the restored data {}'s: {}",
                    layout.name,
                    crate::orchestrate::redact::redact(&e.to_string())
                ))
            })?;
        }
        let _ = conn.disconnect().await;
        Ok::<(), LocalError>(())
    }
    .await;
    stop_offline(layout, &mut child).await;
    result
}

/// The statements [`adopt`] runs, in order.
fn adopt_sql(creds: &LocalCredentials, position: &str) -> Vec<String> {
    let quote = crate::orchestrate::act::sql_quote;
    // Grant tables are loaded so account statements work; no binary log for any of it.
    let mut sql = vec![
        "FLUSH PRIVILEGES".to_string(),
        "SET sql_log_bin = 0".to_string(),
    ];
    sql.extend(mariadb::replacing_account_sql(creds));
    // The proxies' accounts too, with this cluster's passwords: the backup may hold them
    // with the old cluster's, which the orchestration would not change.
    for account in creds.proxy_accounts() {
        sql.push(format!(
            "CREATE OR REPLACE USER '{}'@'%' IDENTIFIED BY '{}'",
            quote(&account.creds.user),
            quote(&account.creds.password)
        ));
        sql.push(format!(
            "GRANT {} TO '{}'@'%'",
            account.grant(Flavor::Mariadb),
            quote(&account.creds.user)
        ));
    }
    sql.push("RESET SLAVE ALL".into());
    sql.push("RESET MASTER".into());
    if !position.is_empty() {
        sql.push(format!(
            "SET GLOBAL gtid_binlog_state = '{}'",
            quote(position)
        ));
        sql.push(format!("SET GLOBAL gtid_slave_pos = '{}'", quote(position)));
    }
    sql
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(name: &str, role: &str, behind: Option<u64>) -> MemberStatus {
        MemberStatus {
            name: name.into(),
            role: role.into(),
            process: "running".into(),
            health: "ok".into(),
            behind,
            replicating: (role == "replica").then_some(true),
            ..MemberStatus::default()
        }
    }

    #[test]
    fn a_caught_up_replica_gives_the_backup() {
        let members = [
            member("s-0", "primary", None),
            member("s-1", "replica", Some(3)),
            member("s-2", "replica", Some(0)),
        ];
        assert_eq!(choose_source(&members).unwrap().name, "s-2");
        let behind = [
            member("s-0", "primary", None),
            member("s-1", "replica", Some(3)),
        ];
        let e = choose_source(&behind).unwrap_err();
        assert!(e.contains("s-1 replica (ok, 3 behind)"), "{e}");
        assert_eq!(
            choose_source(&[member("s-0", "primary", None)])
                .unwrap()
                .name,
            "s-0"
        );
        let mut stopped = member("s-2", "replica", Some(0));
        stopped.process = "seeding".into();
        assert!(choose_source(&[member("s-0", "primary", None), stopped]).is_err());
    }

    #[test]
    fn a_chosen_member_gives_the_backup_only_once_caught_up() {
        let members = [
            member("s-0", "primary", None),
            member("s-1", "replica", Some(0)),
            member("s-2", "replica", Some(4)),
        ];
        assert_eq!(choose_source_for(&members, None).unwrap().name, "s-1");
        assert_eq!(
            choose_source_for(&members, Some("s-1")).unwrap().name,
            "s-1"
        );
        let behind = choose_source_for(&members, Some("s-2")).unwrap_err();
        assert!(behind.contains("not caught up (ok, 4 behind)"), "{behind}");
        let primary = choose_source_for(&members, Some("s-0")).unwrap_err();
        assert!(primary.contains("is the primary"), "{primary}");
        assert!(choose_source_for(&members, Some("s-9")).is_err());
        let alone = [member("s-0", "primary", None)];
        assert_eq!(choose_source_for(&alone, Some("s-3")).unwrap().name, "s-0");
    }

    #[test]
    fn adoption_resets_accounts_and_positions() {
        let creds = LocalCredentials::generate().unwrap();
        let sql = adopt_sql(&creds, "10-1001-57");
        assert_eq!(sql[0], "FLUSH PRIVILEGES");
        assert!(sql.iter().any(|s| s.starts_with("CREATE OR REPLACE USER")));
        assert!(!sql.iter().any(|s| s.starts_with("CREATE USER")));
        assert_eq!(
            sql[sql.len() - 2..],
            [
                "SET GLOBAL gtid_binlog_state = '10-1001-57'",
                "SET GLOBAL gtid_slave_pos = '10-1001-57'"
            ]
        );
        assert!(
            adopt_sql(&creds, "")
                .last()
                .unwrap()
                .contains("RESET MASTER")
        );
    }
}
