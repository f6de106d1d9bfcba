//! `agent archive`: the binary log archiver of a cluster in Kubernetes (the pod of the
//! `<cluster>-archiver` Deployment, in the server's image for its `mariadb-binlog`). It runs
//! the local runtime's archiver ([`crate::backup::archiver`]) against the primary the mounted
//! topology names, following it through failovers and switchovers, and answers `GET /status`
//! (what it reads, where the archive stands, its lag, its last error, the last drill) for the
//! operator. `POST /drill` runs a restore drill here ([`crate::local::drill`]): the pod has the
//! server's programs, and the archive the drill rolls forward with.

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
use crate::backup::location::{ACCESS_KEY_ID, Location, S3Credentials, SECRET_ACCESS_KEY};
use crate::backup::s3::S3Options;
use crate::backup::store::Store;
use crate::orchestrate::observe::Credentials;
use crate::orchestrate::view::{CaSource, ServerTls};

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
    /// The token `POST /drill` must present (the agents' Secret, read at each request).
    #[arg(long, value_name = "FILE", default_value = "/etc/lagless/agent/token")]
    pub token_file: PathBuf,
}

/// How long a drill may run before it is given up.
const DRILL_TIMEOUT: Duration = Duration::from_secs(1800);

/// Where restore drills stand.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DrillState {
    /// The request running now, if any.
    pub running: Option<String>,
    pub last: Option<DrillResult>,
}

/// How a drill ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DrillResult {
    /// The request's id (the operator's `MySQLBackup`).
    pub request: String,
    pub passed: bool,
    /// The backup drilled, when one was found.
    pub backup: Option<String>,
    /// What the drill said last: the tables compared, or why it failed.
    pub message: String,
    pub finished_at: String,
}

/// What `GET /status` answers.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentStatus {
    #[serde(flatten)]
    pub archive: ArchiveStatus,
    #[serde(default)]
    pub drill: DrillState,
}

/// What the status server and the drills share.
struct Shared {
    args: ArchiveArgs,
    archive: Arc<Mutex<ArchiveStatus>>,
    drill: Mutex<DrillState>,
}

/// The S3 settings of `--to` (the key from the environment).
fn s3_options(args: &ArchiveArgs) -> Result<Option<S3Options>, String> {
    let location = Location::parse(&args.to).map_err(|e| e.to_string())?;
    if matches!(location, Location::Dir(_)) {
        return Ok(None);
    }
    let (Ok(access_key), Ok(secret_key)) = (
        std::env::var(ACCESS_KEY_ID),
        std::env::var(SECRET_ACCESS_KEY),
    ) else {
        return Err(format!(
            "{location} needs credentials: {ACCESS_KEY_ID} and {SECRET_ACCESS_KEY} \
             (spec.backup.s3.credentialsSecret)"
        ));
    };
    Ok(Some(S3Options {
        endpoint: args.s3_endpoint.clone(),
        region: args.s3_region.clone(),
        credentials: S3Credentials {
            access_key,
            secret_key,
        },
    }))
}

/// The archive's store (and where it is, for people).
fn store(args: &ArchiveArgs) -> Result<(String, Store), String> {
    let location = Location::parse(&args.to).map_err(|e| e.to_string())?;
    let options = s3_options(args)?;
    let at = archive::location(&location, &args.cluster);
    let store = Store::open(&at, options.as_ref()).map_err(|e| e.to_string())?;
    Ok((at.to_string(), store))
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
    });
    tokio::spawn(serve_status(listener, shared));
    let (primary, primary_rx) = watch::channel(None);
    let (stop, stop_rx) = watch::channel(false);
    let mut task = tokio::spawn(archiver.run(primary_rx, stop_rx));
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
            _ = &mut task => return Err("the archiver stopped".into()),
            () = tokio::time::sleep(FOLLOW_EVERY) => {}
        }
    }
    let _ = stop.send(true);
    if tokio::time::timeout(Duration::from_secs(30), &mut task)
        .await
        .is_err()
    {
        task.abort();
    }
    Ok(())
}

/// `GET /status`: the archiver's status and the drills' as JSON; `POST /drill?request=ID&
/// member=NAME&host=HOST&port=PORT[&backup=ID]`: starts a drill against that member (409
/// while one runs); `GET /healthz`: 200.
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
                    };
                    let body = serde_json::to_string(&status).unwrap_or_else(|_| "{}".into());
                    http::respond(&mut conn, 200, "OK", &body).await
                }
                Ok(r) if r.method == "POST" && r.path == "/drill" => {
                    let token = tokio::fs::read_to_string(&shared.args.token_file)
                        .await
                        .map(|t| t.trim().to_string())
                        .unwrap_or_default();
                    let presented = r
                        .authorization
                        .as_deref()
                        .and_then(|a| a.strip_prefix("Bearer "));
                    let allowed = !token.is_empty() && presented == Some(token.as_str());
                    let started = if allowed {
                        start_drill(&shared, r.query.as_deref().unwrap_or_default())
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

/// The drill a `POST /drill` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DrillRequest {
    pub request: String,
    pub member: String,
    pub host: String,
    pub port: u16,
    pub backup: Option<String>,
}

/// Parses `request=…&member=…&host=…&port=…[&backup=…]`: names of letters, digits and
/// `.-_:` only (no decoding is needed, and nothing else is taken).
pub fn parse_drill_query(query: &str) -> Result<DrillRequest, String> {
    let mut fields = std::collections::BTreeMap::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let key = pair.split_once('=').map_or(pair, |(k, _)| k);
        if fields.contains_key(key) {
            return Err(format!("{key} given twice"));
        }
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| format!("{pair}: not key=value"))?;
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
    Ok(DrillRequest {
        request,
        member,
        host,
        port: port
            .parse()
            .map_err(|_| format!("port {port}: not a port"))?,
        backup: take("backup"),
    })
}

fn start_drill(shared: &Arc<Shared>, query: &str) -> Result<(), (u16, String)> {
    let request = parse_drill_query(query).map_err(|e| (400, e))?;
    // Only a member of this cluster, at the address the topology publishes for it, is read
    // with the admin account.
    let published = Topology::read(&shared.args.topology)
        .map_err(|e| (503, format!("no published topology: {e}")))?;
    let known = published
        .primary
        .iter()
        .chain(&published.replicas)
        .any(|m| m.name == request.member && m.host == request.host && m.port == request.port);
    if !known {
        return Err((
            400,
            format!(
                "{} at {}:{} is not a published member",
                request.member, request.host, request.port
            ),
        ));
    }
    {
        let mut drill = shared
            .drill
            .lock()
            .map_err(|_| (500, "poisoned".to_string()))?;
        if let Some(running) = &drill.running {
            return Err((409, format!("drill {running} is running")));
        }
        drill.running = Some(request.request.clone());
    }
    let shared = shared.clone();
    tokio::spawn(async move {
        let said = Arc::new(Mutex::new(String::new()));
        let result = tokio::time::timeout(DRILL_TIMEOUT, run_drill(&shared.args, &request, &said))
            .await
            .unwrap_or_else(|_| {
                Err(format!(
                    "the drill did not end within {} s",
                    DRILL_TIMEOUT.as_secs()
                ))
            });
        let last = said.lock().map(|s| s.clone()).unwrap_or_default();
        let (passed, backup, message) = match result {
            Ok(backup) => (true, Some(backup), last),
            Err(e) => (false, None, e),
        };
        tracing::info!(request = %request.request, passed, %message, "drill finished");
        if let Ok(mut drill) = shared.drill.lock() {
            drill.running = None;
            drill.last = Some(DrillResult {
                request: request.request.clone(),
                passed,
                backup,
                message,
                finished_at: crate::clock::rfc3339(),
            });
        }
    });
    Ok(())
}

/// One drill against the member `request` names, in a scratch directory beside the spool.
async fn run_drill(
    args: &ArchiveArgs,
    request: &DrillRequest,
    said: &Arc<Mutex<String>>,
) -> Result<String, String> {
    let location = Location::parse(&args.to).map_err(|e| e.to_string())?;
    let (_, archive_store) = store(args)?;
    let options = match &archive_store {
        Store::S3(_) => s3_options(args)?,
        Store::Dir(_) => None,
    };
    let backups = Store::open(&location, options.as_ref()).map_err(|e| e.to_string())?;
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
    let scratch = args.spool.with_file_name("lagless-drill");
    let place = crate::local::drill::Place {
        location: &location,
        store: &backups,
        archive: &archive_store,
    };
    let drill = crate::local::drill::Drill {
        cluster: &args.cluster,
        live: (request.member.as_str(), opts.into()),
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
    fn a_drill_query_takes_plain_names_only() {
        let r = parse_drill_query("request=d1&member=db-1&host=db-1.db-headless.ns.svc&port=3306")
            .unwrap();
        assert_eq!(r.member, "db-1");
        assert_eq!(r.port, 3306);
        assert_eq!(r.backup, None);
        let r = parse_drill_query(
            "request=d1&member=db-1&host=10.0.0.5&port=3306&backup=db-20261207T030000.000Z",
        )
        .unwrap();
        assert_eq!(r.backup.as_deref(), Some("db-20261207T030000.000Z"));
        for bad in [
            "request=d1&member=db-1&host=h",
            "request=d1&member=db-1&host=h&port=x",
            "request=d%27&member=db-1&host=h&port=1",
            "request=d1&member=db 1&host=h&port=1",
            "request=d1&member=db-1&host=h&port=1&host=evil",
            "request",
        ] {
            assert!(parse_drill_query(bad).is_err(), "{bad}");
        }
    }
}
