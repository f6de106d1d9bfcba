//! `agent archive`: the binary log archiver of a cluster in Kubernetes (the pod of the
//! `<cluster>-archiver` Deployment, in the server's image for its `mariadb-binlog`). It runs
//! the local runtime's archiver ([`crate::backup::archiver`]) against the primary the mounted
//! topology names, following it through failovers and switchovers, and answers `GET /status`
//! (what it reads, where the archive stands, its lag, its last error, the last drill) for the
//! operator. It also runs the cluster's backups and restore drills when the operator asks
//! (`POST /backup`, `POST /drill`, [`jobs`]): it is the pod of the cluster's namespace that holds
//! the backups' credentials and volume, and has the server's programs.

pub mod jobs;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Args;
use lagless_core::topology::Topology;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::http;
use crate::backup::archive;
use crate::backup::archiver::{ArchiveStatus, Archiver, Source};
use crate::backup::location::Location;
use crate::backup::s3::S3Options;
use crate::backup::store::Store;
use crate::orchestrate::observe::Credentials;
use crate::orchestrate::view::{CaSource, ServerTls};
use jobs::{JobState, Kind};

/// How often the topology file is read for a new primary.
const FOLLOW_EVERY: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, Args)]
pub struct ArchiveArgs {
    /// Where backups go (`spec.backup.destination`); the archive is `binlog/<cluster>/` there.
    #[arg(long, value_name = "DEST", env = "LAGLESS_ARCHIVE_TO")]
    pub to: String,
    #[arg(long, value_name = "NAME")]
    pub cluster: String,
    /// The published topology (the mounted ConfigMap): its primary is read.
    #[arg(long, value_name = "FILE")]
    pub topology: PathBuf,
    /// The server id the reader registers with (none of the members').
    #[arg(long, value_name = "ID")]
    pub server_id: u32,
    /// A private working directory (emptied at start).
    #[arg(long, value_name = "DIR", default_value = "/tmp/lagless-archive")]
    pub spool: PathBuf,
    /// Where `GET /status` is answered.
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:3307")]
    pub listen: SocketAddr,
    #[arg(long, env = "LAGLESS_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    #[arg(long, env = "AWS_REGION", default_value = "us-east-1")]
    pub s3_region: String,
    #[arg(long, env = "LAGLESS_ADMIN_USER", hide_env_values = true)]
    pub admin_user: String,
    #[arg(long, env = "LAGLESS_ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: String,
    /// The CA the members' certificates chain to: the reader then uses TLS.
    #[arg(long, value_name = "FILE", env = "LAGLESS_TLS_CA")]
    pub tls_ca: Option<PathBuf>,
    /// The cluster's `gtid_domain_id`, for a drill's scratch server.
    #[arg(long, value_name = "ID", default_value_t = 0)]
    pub gtid_domain_id: u32,
    /// Archive the binary log (`spec.backup.archiveBinlogs`); without it the pod only runs
    /// the backups and drills it is asked for.
    #[arg(long)]
    pub archive_binlogs: bool,
    /// The token `POST /backup` and `POST /drill` must present (the agents' Secret, read at
    /// each request).
    #[arg(long, value_name = "FILE", default_value = "/etc/lagless/agent/token")]
    pub token_file: PathBuf,
}

/// What `GET /status` answers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentStatus {
    #[serde(flatten)]
    pub archive: ArchiveStatus,
    #[serde(default)]
    pub drill: JobState,
    #[serde(default)]
    pub backup: JobState,
}

/// What the status server and the jobs share.
pub(super) struct Shared {
    pub(super) args: ArchiveArgs,
    archive: Arc<Mutex<ArchiveStatus>>,
    pub(super) drill: Mutex<JobState>,
    pub(super) backup: Mutex<JobState>,
}

/// The S3 settings of `--to` (the key from the environment).
pub(super) fn s3_options(args: &ArchiveArgs) -> Result<Option<S3Options>, String> {
    let location = Location::parse(&args.to).map_err(|e| e.to_string())?;
    S3Options::from_env(
        &location,
        args.s3_endpoint.clone(),
        args.s3_region.clone(),
        "spec.backup.s3.credentialsSecret",
    )
}

/// The archive's store (and where it is, for people).
pub(super) fn store(args: &ArchiveArgs) -> Result<(String, Store), String> {
    let location = Location::parse(&args.to).map_err(|e| e.to_string())?;
    let options = s3_options(args)?;
    let at = archive::location(&location, &args.cluster);
    let store = Store::open(&at, options.as_ref()).map_err(|e| e.to_string())?;
    Ok((at.to_string(), store))
}

/// Whether two secrets are equal, in time that does not depend on where they differ.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The primary `path` publishes, if it is readable and names one.
fn published_primary(path: &std::path::Path) -> Option<Source> {
    let topology = Topology::read(path).ok()?;
    let p = topology.primary?;
    Some(Source {
        member: p.name,
        host: p.host,
        port: p.port,
    })
}

/// Archives until SIGTERM, then stores what was read and returns.
pub async fn archive(args: &ArchiveArgs) -> Result<(), String> {
    let (destination, store) = store(args)?;
    let status = Arc::new(Mutex::new(ArchiveStatus {
        destination: destination.clone(),
        ..ArchiveStatus::default()
    }));
    let archiver = Archiver {
        cluster: args.cluster.clone(),
        destination,
        store,
        creds: Credentials {
            user: args.admin_user.clone(),
            password: args.admin_password.clone(),
        },
        tls: args.tls_ca.as_ref().map(|ca| ServerTls {
            ca: CaSource::File(ca.clone()),
            member_ca_path: ca.display().to_string(),
            watch: None,
        }),
        reader_server_id: args.server_id,
        spool: args.spool.clone(),
        status: status.clone(),
        caught_up: Mutex::new(Instant::now()),
    };
    let listener = TcpListener::bind(args.listen)
        .await
        .map_err(|e| format!("listening on {}: {e}", args.listen))?;
    let shared = Arc::new(Shared {
        args: args.clone(),
        archive: status,
        drill: Mutex::default(),
        backup: Mutex::default(),
    });
    tokio::spawn(serve_status(listener, shared));
    let (primary, primary_rx) = watch::channel(None);
    let (stop, stop_rx) = watch::channel(false);
    let mut task = args
        .archive_binlogs
        .then(|| tokio::spawn(archiver.run(primary_rx, stop_rx)));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| format!("SIGTERM: {e}"))?;
    loop {
        let source = published_primary(&args.topology);
        primary.send_if_modified(|current| {
            let changed = *current != source;
            if changed {
                tracing::info!(primary = ?source.as_ref().map(|s| &s.member), "archiving from the published primary");
            }
            *current = source;
            changed
        });
        tokio::select! {
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
            _ = async {
                match task.as_mut() {
                    Some(t) => {
                        let _ = t.await;
                    }
                    None => std::future::pending().await,
                }
            } => return Err("the archiver stopped".into()),
            () = tokio::time::sleep(FOLLOW_EVERY) => {}
        }
    }
    let _ = stop.send(true);
    if let Some(mut task) = task
        && tokio::time::timeout(Duration::from_secs(30), &mut task)
            .await
            .is_err()
    {
        task.abort();
    }
    Ok(())
}

/// `GET /status`: the archiver's status and the jobs' as JSON; `POST /backup` and `POST
/// /drill` (with the agents' token): start a job ([`jobs::start`]; 409 while one of its kind
/// runs); `GET /healthz`: 200.
async fn serve_status(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            let mut conn = BufReader::new(stream);
            let head = tokio::time::timeout(Duration::from_secs(5), async {
                if conn.fill_buf().await?.is_empty() {
                    return Err(http::HttpError::Malformed("closed"));
                }
                http::read_head(&mut conn).await
            })
            .await;
            let request = match head {
                Ok(Ok(head)) => http::parse_request(&head),
                _ => return,
            };
            let answer = match request {
                Ok(r) if r.method == "GET" && r.path == "/status" => {
                    let status = AgentStatus {
                        archive: shared.archive.lock().map(|s| s.clone()).unwrap_or_default(),
                        drill: shared.drill.lock().map(|s| s.clone()).unwrap_or_default(),
                        backup: shared.backup.lock().map(|s| s.clone()).unwrap_or_default(),
                    };
                    let body = serde_json::to_string(&status).unwrap_or_else(|_| "{}".into());
                    http::respond(&mut conn, 200, "OK", &body).await
                }
                Ok(r) if r.method == "POST" && (r.path == "/drill" || r.path == "/backup") => {
                    let token = tokio::fs::read_to_string(&shared.args.token_file)
                        .await
                        .map(|t| t.trim().to_string())
                        .unwrap_or_default();
                    let presented = r
                        .authorization
                        .as_deref()
                        .and_then(|a| a.strip_prefix("Bearer "));
                    let allowed = !token.is_empty()
                        && presented.is_some_and(|p| same_secret(p.as_bytes(), token.as_bytes()));
                    let kind = if r.path == "/drill" {
                        Kind::Drill
                    } else {
                        Kind::Backup
                    };
                    let started = if allowed {
                        jobs::start(&shared, kind, r.query.as_deref().unwrap_or_default())
                    } else {
                        Err((401, "the agent token is needed".to_string()))
                    };
                    match started {
                        Ok(()) => http::respond(&mut conn, 200, "OK", "started\n").await,
                        Err((status, why)) => {
                            http::respond(&mut conn, status, "Refused", &format!("{why}\n")).await
                        }
                    }
                }
                Ok(r) if r.method == "GET" && r.path == "/healthz" => {
                    http::respond(&mut conn, 200, "OK", "ok\n").await
                }
                Ok(_) => http::respond(&mut conn, 404, "Not Found", "").await,
                Err(e) => http::respond(&mut conn, 400, "Bad Request", &format!("{e}\n")).await,
            };
            let _ = answer;
        });
    }
}
