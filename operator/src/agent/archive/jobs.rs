//! The jobs the archiver pod runs when the operator asks, one of each kind at a time: a full
//! backup (the copy pulled from a member's agent and stored with its manifest last, then the
//! retention applied: [`crate::backup::take`]) and a restore drill
//! ([`crate::local::drill::drill_against`]). Each names a member the pod checks against the
//! published topology, and reports its end in `GET /status`.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use lagless_core::topology::Topology;
use mysql_async::prelude::Queryable as _;
use serde::{Deserialize, Serialize};

use super::{ArchiveArgs, Shared, s3_options, store};
use crate::agent::client::{AgentTls, Url, open_backup};
use crate::backup::BackupError;
use crate::backup::location::Location;
use crate::backup::manifest::Manifest;
use crate::backup::pipeline::compress_into;
use crate::backup::store::Store;
use crate::backup::take::{Taking, complete};

/// How long a job may run before it is given up.
const JOB_TIMEOUT: Duration = Duration::from_secs(6 * 3600);
/// How long a drill may run.
const DRILL_TIMEOUT: Duration = Duration::from_secs(1800);

/// Which job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Backup,
    Drill,
}

/// Where the jobs of one kind stand.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobState {
    /// The request running now, if any.
    pub running: Option<String>,
    pub last: Option<JobResult>,
}

/// How a job ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct JobResult {
    /// The request's id (the operator's `MySQLBackup`).
    pub request: String,
    pub passed: bool,
    /// The backup taken or drilled, when there is one.
    pub backup: Option<String>,
    /// What the job said last, or why it failed.
    pub message: String,
    pub finished_at: String,
    /// A backup's manifest.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<Manifest>,
    /// Backups the retention deleted after it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removed: Vec<String>,
    /// Why the retention could not finish, if it could not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_error: Option<String>,
}

/// What a `POST /backup` or `/drill` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobRequest {
    pub request: String,
    pub member: String,
    pub host: String,
    pub port: u16,
    /// A drill's backup to drill.
    pub backup: Option<String>,
    /// A backup's retention.
    pub keep: Option<u32>,
    pub keep_days: Option<u32>,
}

/// Parses `request=…&member=…&host=…&port=…[&backup=…][&keep=N][&keepDays=D]`: names of
/// letters, digits and `.-_:` only (no decoding is needed, and nothing else is taken), each
/// key once.
pub fn parse_query(query: &str) -> Result<JobRequest, String> {
    let mut fields = std::collections::BTreeMap::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| format!("{pair}: not key=value"))?;
        if fields.contains_key(key) {
            return Err(format!("{key} given twice"));
        }
        let plain = !value.is_empty()
            && value.len() <= 253
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-_:".contains(c));
        if !plain {
            return Err(format!("{key}: not a plain name"));
        }
        fields.insert(key, value.to_string());
    }
    let mut take = |key: &str| fields.remove(key);
    let (Some(request), Some(member), Some(host), Some(port)) =
        (take("request"), take("member"), take("host"), take("port"))
    else {
        return Err("request, member, host and port are needed".into());
    };
    let number = |key: &str, v: Option<String>| {
        v.map(|v| {
            v.parse::<u32>()
                .map_err(|_| format!("{key} {v}: not a number"))
        })
        .transpose()
    };
    Ok(JobRequest {
        request,
        member,
        host,
        port: port
            .parse()
            .map_err(|_| format!("port {port}: not a port"))?,
        backup: take("backup"),
        keep: number("keep", take("keep"))?,
        keep_days: number("keepDays", take("keepDays"))?,
    })
}

/// Starts a job of `kind` (refused while one runs).
pub(super) fn start(shared: &Arc<Shared>, kind: Kind, query: &str) -> Result<(), (u16, String)> {
    let request = parse_query(query).map_err(|e| (400, e))?;
    // Only a member of this cluster, at the address the topology publishes for it, is read
    // with the admin account.
    let published = Topology::read(&shared.args.topology)
        .map_err(|e| (503, format!("no published topology: {e}")))?;
    let known = published
        .primary
        .iter()
        .chain(&published.replicas)
        .any(|m| m.name == request.member && m.host == request.host && m.port == request.port);
    // Maybe not yet: the mounted topology follows the published one by up to a minute.
    if !known {
        return Err((
            503,
            format!(
                "{} at {}:{} is not a published member",
                request.member, request.host, request.port
            ),
        ));
    }
    {
        let mut state = slot(shared, kind)
            .lock()
            .map_err(|_| (500, "poisoned".to_string()))?;
        if let Some(running) = &state.running {
            return Err((409, format!("{running} is running")));
        }
        state.running = Some(request.request.clone());
    }
    let shared = shared.clone();
    tokio::spawn(async move {
        // The job in a task of its own: one that panics is reported as failed, and the slot is
        // free again.
        let id = request.request.clone();
        let inner = tokio::spawn(run(shared.clone(), kind, request));
        if let Err(e) = inner.await
            && let Ok(mut state) = slot(&shared, kind).lock()
        {
            state.running = None;
            state.last = Some(JobResult {
                request: id,
                passed: false,
                backup: None,
                message: format!("the job stopped: {e}"),
                finished_at: crate::clock::rfc3339(),
                manifest: None,
                removed: Vec::new(),
                retention_error: None,
            });
        }
    });
    Ok(())
}

/// Runs one job and records its end.
async fn run(shared: Arc<Shared>, kind: Kind, request: JobRequest) {
    {
        let said = Arc::new(Mutex::new(String::new()));
        let limit = match kind {
            Kind::Backup => JOB_TIMEOUT,
            Kind::Drill => DRILL_TIMEOUT,
        };
        let job = async {
            match kind {
                Kind::Backup => run_backup(&shared.args, &request).await,
                Kind::Drill => run_drill(&shared.args, &request, &said)
                    .await
                    .map(|backup| Done {
                        backup,
                        ..Done::default()
                    }),
            }
        };
        let result = tokio::time::timeout(limit, job)
            .await
            .unwrap_or_else(|_| Err(format!("no end within {} s", limit.as_secs())));
        let last = said.lock().map(|s| s.clone()).unwrap_or_default();
        let result = match result {
            Ok(done) => JobResult {
                request: request.request.clone(),
                passed: true,
                backup: Some(done.backup),
                message: if last.is_empty() { done.message } else { last },
                finished_at: crate::clock::rfc3339(),
                manifest: done.manifest,
                removed: done.removed,
                retention_error: done.retention_error,
            },
            Err(e) => JobResult {
                request: request.request.clone(),
                passed: false,
                backup: None,
                message: e,
                finished_at: crate::clock::rfc3339(),
                manifest: None,
                removed: Vec::new(),
                retention_error: None,
            },
        };
        tracing::info!(request = %result.request, passed = result.passed, message = %result.message, "job finished");
        if let Ok(mut state) = slot(&shared, kind).lock() {
            state.running = None;
            state.last = Some(result);
        }
    }
}

fn slot(shared: &Shared, kind: Kind) -> &Mutex<JobState> {
    match kind {
        Kind::Backup => &shared.backup,
        Kind::Drill => &shared.drill,
    }
}

/// What a job that succeeded gives.
#[derive(Debug, Default)]
struct Done {
    backup: String,
    message: String,
    manifest: Option<Manifest>,
    removed: Vec<String>,
    retention_error: Option<String>,
}

/// The admin account's connection to the member `request` names.
fn member_opts(args: &ArchiveArgs, request: &JobRequest) -> mysql_async::Opts {
    let mut opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname(request.host.clone())
        .tcp_port(request.port)
        .user(Some(args.admin_user.clone()))
        .pass(Some(args.admin_password.clone()))
        .prefer_socket(false);
    if let Some(ca) = &args.tls_ca {
        opts = opts.ssl_opts(Some(
            mysql_async::SslOpts::default()
                .with_root_certs(vec![ca.clone().into()])
                .with_disable_built_in_roots(true),
        ));
    }
    opts.into()
}

/// The backups' store and the archive's.
fn stores(args: &ArchiveArgs) -> Result<(Location, Store, Store), String> {
    let location = Location::parse(&args.to).map_err(|e| e.to_string())?;
    let options = s3_options(args)?;
    let backups = Store::open(&location, options.as_ref()).map_err(|e| e.to_string())?;
    let (_, archive) = store(args)?;
    Ok((location, backups, archive))
}

/// A full backup of the member `request` names: its agent's stream, compressed and stored,
/// the manifest last; then the retention.
async fn run_backup(args: &ArchiveArgs, request: &JobRequest) -> Result<Done, String> {
    let (_, backups, archive) = stores(args)?;
    let version = {
        let mut conn = tokio::time::timeout(
            Duration::from_secs(10),
            mysql_async::Conn::new(member_opts(args, request)),
        )
        .await
        .map_err(|_| format!("connecting to {} timed out", request.member))?
        .map_err(|e| format!("connecting to {}: {e}", request.member))?;
        let version: Option<String> = conn
            .query_first("SELECT VERSION()")
            .await
            .map_err(|e| format!("{}: {e}", request.member))?;
        let _ = conn.disconnect().await;
        version.unwrap_or_default()
    };
    let taking = Taking::new(
        &args.cluster,
        &request.member,
        version,
        crate::clock::unix_ms(),
    );
    // Opening the object first: storage that cannot be written fails before the copy.
    let mut writer = backups
        .writer(&taking.object())
        .await
        .map_err(|e| e.to_string())?;
    let token = tokio::fs::read_to_string(&args.token_file)
        .await
        .map(|t| t.trim().to_string())
        .map_err(|e| format!("{}: {e}", args.token_file.display()));
    let tls = args
        .tls_ca
        .as_deref()
        .map(AgentTls::from_ca_file)
        .transpose()
        .map_err(|e| e.to_string());
    let url = Url {
        host: request.host.clone(),
        port: crate::agent::AGENT_PORT,
    };
    let opened = match (token, tls) {
        (Ok(token), Ok(tls)) => open_backup(&url, &token, tls.as_ref()).await,
        (Err(e), _) | (_, Err(e)) => Err(e),
    };
    let (body, decode) = match opened {
        Ok(opened) => opened,
        Err(e) => {
            writer.abort().await;
            return Err(e);
        }
    };
    tracing::info!(id = %taking.id, member = %request.member, "backup started");
    let stored = compress_into(body, &mut writer, Arc::new(AtomicU64::new(0))).await;
    let decoded = match decode.await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(BackupError::Storage {
            location: request.member.clone(),
            detail: e,
        }),
        Err(e) => Err(BackupError::Storage {
            location: request.member.clone(),
            detail: e.to_string(),
        }),
    };
    let manifest = complete(&backups, &taking, writer, stored, decoded)
        .await
        .map_err(|e| e.to_string())?;
    let secs = manifest
        .finished_unix_ms
        .saturating_sub(manifest.started_unix_ms) as f64
        / 1000.0;
    let message = format!(
        "{:.1} MiB stored ({:.0} MB/s of the copy)",
        manifest.stored_bytes as f64 / 1_048_576.0,
        manifest.stream_bytes as f64 / 1e6 / secs.max(1e-3)
    );
    // Only after a backup succeeded, and never one it would not keep.
    let (removed, retention_error) = if request.keep.is_some() || request.keep_days.is_some() {
        match crate::local::backup::retain(
            &backups,
            Some(&archive),
            &args.cluster,
            request.keep,
            request.keep_days,
        )
        .await
        {
            Ok(removed) => (removed, None),
            Err(e) => (Vec::new(), Some(e.to_string())),
        }
    } else {
        (Vec::new(), None)
    };
    Ok(Done {
        backup: manifest.id.clone(),
        message,
        manifest: Some(manifest),
        removed,
        retention_error,
    })
}

/// One drill against the member `request` names, in a scratch directory beside the spool.
async fn run_drill(
    args: &ArchiveArgs,
    request: &JobRequest,
    said: &Arc<Mutex<String>>,
) -> Result<String, String> {
    let (location, backups, archive_store) = stores(args)?;
    let scratch = args.spool.with_file_name("lagless-drill");
    let place = crate::local::drill::Place {
        location: &location,
        store: &backups,
        archive: &archive_store,
    };
    let drill = crate::local::drill::Drill {
        cluster: &args.cluster,
        live: (request.member.as_str(), member_opts(args, request)),
        place: &place,
        backup_id: request.backup.as_deref(),
        scratch: &scratch,
        server_id: args.server_id.saturating_sub(1),
        gtid_domain_id: args.gtid_domain_id,
    };
    let say = |line: &str| {
        tracing::info!("{line}");
        if let Ok(mut s) = said.lock() {
            *s = line.to_string();
        }
    };
    let _ = tokio::fs::remove_dir_all(&scratch).await;
    let result = crate::local::drill::drill_against(&drill, &say).await;
    let _ = tokio::fs::remove_dir_all(&scratch).await;
    result.map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_query_takes_plain_names_only_each_once() {
        let r =
            parse_query("request=d1&member=db-1&host=db-1.db-headless.ns.svc&port=3306").unwrap();
        assert_eq!(r.member, "db-1");
        assert_eq!(r.port, 3306);
        assert_eq!((r.backup, r.keep, r.keep_days), (None, None, None));
        let r = parse_query(
            "request=d1&member=db-1&host=10.0.0.5&port=3306&backup=db-20261207T030000.000Z&keep=7&keepDays=14",
        )
        .unwrap();
        assert_eq!(r.backup.as_deref(), Some("db-20261207T030000.000Z"));
        assert_eq!((r.keep, r.keep_days), (Some(7), Some(14)));
        for bad in [
            "request=d1&member=db-1&host=h",
            "request=d1&member=db-1&host=h&port=x",
            "request=d%27&member=db-1&host=h&port=1",
            "request=d1&member=db 1&host=h&port=1",
            "request=d1&member=db-1&host=h&port=1&host=evil",
            "request=d1&member=db-1&host=h&port=1&keep=-1",
            "request",
        ] {
            assert!(parse_query(bad).is_err(), "{bad}");
        }
    }
}
