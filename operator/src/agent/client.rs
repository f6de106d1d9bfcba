//! `agent fetch`: the init step of a member pod. Picks a donor, streams its backup into the
//! data directory, prepares it and records the GTID position to replicate from. With a CA
//! (`--tls-ca`, or [`AgentTls`] for the operator's calls) the agents are spoken to over TLS,
//! each verified against the CA and the host name it is reached by.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::http::{self, HttpError};
pub use super::tls::AgentTls;
use super::tls::{AgentTlsError, Conn};
use super::{FetchArgs, POSITION_FILE, RESEED_MARKER};
use crate::orchestrate::seed::{self, SeedError};
use lagless_core::topology::Topology;

/// How long a donor has to answer `/healthz` or the backup's response head.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why fetching failed.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("{0} is not empty (--force empties it, --if-empty leaves it)")]
    NotEmpty(PathBuf),
    #[error("no donor answered: {0}")]
    NoDonor(String),
    #[error(
        "{0} marks this member for a re-seed, but the published topology makes it the \
         primary: its data is kept and the copy refused (remove the file to start on it)"
    )]
    MarkedPrimary(PathBuf),
    #[error("{url}: {message}")]
    Donor { url: String, message: String },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Seed(#[from] SeedError),
    #[error(transparent)]
    Tls(#[from] AgentTlsError),
}

/// What fetching did.
#[derive(Debug, Clone, PartialEq)]
pub enum Fetched {
    /// `--if-empty` and the data directory holds data.
    AlreadyHasData,
    Copied {
        donor: String,
        bytes: u64,
        elapsed: Duration,
        gtid_position: String,
    },
}

impl std::fmt::Display for Fetched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fetched::AlreadyHasData => write!(f, "the data directory holds data: nothing to do"),
            Fetched::Copied {
                donor,
                bytes,
                elapsed,
                gtid_position,
            } => write!(
                f,
                "copied {:.1} MiB from {donor} in {:.1} s ({:.1} MB/s); GTID position '{gtid_position}'",
                *bytes as f64 / 1_048_576.0,
                elapsed.as_secs_f64(),
                mb_per_s(*bytes, *elapsed),
            ),
        }
    }
}

fn mb_per_s(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 / 1_048_576.0 / elapsed.as_secs_f64().max(1e-9)
}

/// A donor's address, from `http://host[:port][/]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub host: String,
    pub port: u16,
}

impl Url {
    pub fn parse(url: &str) -> Option<Self> {
        let rest = url.strip_prefix("http://")?;
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.is_empty() || authority.contains(['/', '@', '?', '#', ' ']) {
            return None;
        }
        match authority.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() => Some(Self {
                host: host.to_string(),
                port: port.parse().ok()?,
            }),
            Some(_) => None,
            None => Some(Self {
                host: authority.to_string(),
                port: super::AGENT_PORT,
            }),
        }
    }
}

/// Entries of a data directory that do not count as data: a fresh filesystem's `lost+found`,
/// and the re-seed mark, which stays until a copy is complete (so a failed copy is retried,
/// and member 0 never starts as a new empty cluster in the meantime).
fn is_data(name: &std::ffi::OsStr) -> bool {
    name != "lost+found" && name != RESEED_MARKER
}

async fn holds_data(dir: &Path) -> Result<bool, FetchError> {
    let mut entries = match tokio::fs::read_dir(dir).await {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(source) => return Err(io(dir, source)),
    };
    while let Some(entry) = entries.next_entry().await.map_err(|e| io(dir, e))? {
        if is_data(&entry.file_name()) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Removes what the data directory holds, keeping the directory (often a mount point).
pub(crate) async fn empty_data_dir(dir: &Path) -> Result<(), FetchError> {
    let mut entries = match tokio::fs::read_dir(dir).await {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(source) => return Err(io(dir, source)),
    };
    while let Some(entry) = entries.next_entry().await.map_err(|e| io(dir, e))? {
        if !is_data(&entry.file_name()) {
            continue;
        }
        let path = entry.path();
        let removed = if entry.file_type().await.is_ok_and(|t| t.is_dir()) {
            tokio::fs::remove_dir_all(&path).await
        } else {
            tokio::fs::remove_file(&path).await
        };
        removed.map_err(|e| io(&path, e))?;
    }
    Ok(())
}

fn io(path: &Path, source: std::io::Error) -> FetchError {
    FetchError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn is_self(url: &Url, me: Option<&str>) -> bool {
    me.filter(|m| !m.is_empty()).is_some_and(|me| {
        url.host == me
            || url
                .host
                .strip_prefix(me)
                .is_some_and(|rest| rest.starts_with('.'))
    })
}

/// A connection's reader past the response head (it writes through to the connection).
type Body = BufReader<Box<dyn Conn>>;

/// `GET path` on a donor; returns the reader past the response head, and the head.
async fn get(
    url: &Url,
    path: &str,
    token: Option<&str>,
    tls: Option<&AgentTls>,
) -> Result<(Body, http::Response), HttpError> {
    request(url, "GET", path, token, tls).await
}

/// Asks the agent at `url` to have its member re-seeded: the data directory is marked so the
/// pod's next start copies it afresh (see [`super::RESEED_MARKER`]), from `donor` first when
/// one is given. The server keeps running on its data until the pod is replaced. With `tls`,
/// over TLS (the agent's certificate verified against its CA and `url`'s host).
pub async fn request_reseed(
    url: &Url,
    token: &str,
    donor: Option<&Url>,
    tls: Option<&AgentTls>,
) -> Result<(), String> {
    let path = match donor {
        Some(d) => format!("/reseed?donor={}:{}", d.host, d.port),
        None => "/reseed".to_string(),
    };
    agent_call(url, "POST", &path, token, tls).await
}

/// Takes a re-seed mark back (a request that failed before the pod was replaced).
pub async fn cancel_reseed(url: &Url, token: &str, tls: Option<&AgentTls>) -> Result<(), String> {
    agent_call(url, "DELETE", "/reseed", token, tls).await
}

async fn agent_call(
    url: &Url,
    method: &str,
    path: &str,
    token: &str,
    tls: Option<&AgentTls>,
) -> Result<(), String> {
    let (_, head) = request(url, method, path, Some(token), tls)
        .await
        .map_err(|e| format!("agent {}:{}: {e}", url.host, url.port))?;
    match head.status {
        200 => Ok(()),
        401 => Err(format!(
            "agent {}:{} refused the token (401)",
            url.host, url.port
        )),
        status => Err(format!("agent {}:{} answered {status}", url.host, url.port)),
    }
}

/// A connection to the agent at `url`: TCP, and TLS over it with `tls`.
async fn connect(url: &Url, tls: Option<&AgentTls>) -> Result<Box<dyn Conn>, HttpError> {
    let connect = TcpStream::connect((url.host.as_str(), url.port));
    let tcp = tokio::time::timeout(CONNECT_TIMEOUT, connect)
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    let Some(tls) = tls else {
        return Ok(Box::new(tcp));
    };
    let handshake = tls.connect(&url.host, url.port, tcp);
    match tokio::time::timeout(CONNECT_TIMEOUT, handshake).await {
        Ok(Ok(stream)) => Ok(Box::new(stream)),
        Ok(Err(e)) => Err(HttpError::Tls(e)),
        Err(_) => Err(HttpError::Tls(format!(
            "TLS handshake with {}:{} timed out",
            url.host, url.port
        ))),
    }
}

/// `method path` with an empty body; returns the reader past the response head, and the head.
async fn request(
    url: &Url,
    method: &str,
    path: &str,
    token: Option<&str>,
    tls: Option<&AgentTls>,
) -> Result<(Body, http::Response), HttpError> {
    let mut stream = connect(url, tls).await?;
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}:{}\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n",
        url.host, url.port
    );
    stream.write_all(request.as_bytes()).await?;
    let mut reader = BufReader::new(stream);
    let read = async {
        // A TLS record (an alert refusing the plain request) where an HTTP answer belongs.
        if tls.is_none() && matches!(reader.fill_buf().await?.first(), Some(0x15 | 0x16)) {
            return Err(HttpError::TlsAnswer);
        }
        http::read_head(&mut reader).await
    };
    // The backup's head comes once mariadb-backup has started, which is quick.
    let head = tokio::time::timeout(Duration::from_secs(60), read)
        .await
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
    Ok((reader, http::parse_response(&head)?))
}

/// The published topology, when `--topology` names a readable one.
fn published_topology(args: &FetchArgs) -> Option<Topology> {
    let path = args.topology.as_ref()?;
    match Topology::read(path) {
        Ok(t) => Some(t),
        Err(e) => {
            // A new cluster has published none yet: any member will do.
            eprintln!("agent fetch: no published topology ({e}); trying every --from");
            None
        }
    }
}

/// The donors, in the order to try them: the published topology's members (replicas first,
/// then the primary), with `preferred` (the operator's choice for a re-seed) moved first if
/// it is one of them; without a topology, `preferred` then `--from`. A member that is not
/// published (a quarantined one, say) is never a donor once a topology is.
fn donors(args: &FetchArgs, topology: Option<&Topology>, preferred: Option<String>) -> Vec<String> {
    let Some(t) = topology.filter(|t| t.primary.is_some() || !t.replicas.is_empty()) else {
        return preferred
            .into_iter()
            .chain(args.from.iter().cloned())
            .collect();
    };
    let mut published: Vec<String> = t
        .replicas
        .iter()
        .chain(&t.primary)
        .map(|m| format!("http://{}:{}", m.host, args.agent_port))
        .collect();
    if let Some(at) = preferred.and_then(|p| published.iter().position(|d| *d == p)) {
        let first = published.remove(at);
        published.insert(0, first);
    }
    published
}

/// The first donor that answers `/healthz` and is not this pod.
async fn choose_donor(
    args: &FetchArgs,
    donors: &[String],
    tls: Option<&AgentTls>,
) -> Result<(String, Url), FetchError> {
    let mut tried = Vec::new();
    for raw in donors {
        let Some(url) = Url::parse(raw) else {
            tried.push(format!("{raw}: not http://host[:port]"));
            continue;
        };
        if is_self(&url, args.skip_self.as_deref()) {
            continue;
        }
        match get(&url, "/healthz", None, tls).await {
            Ok((_, head)) if head.status == 200 => return Ok((raw.clone(), url)),
            Ok((_, head)) => tried.push(format!("{raw}: {}", head.status)),
            Err(e) => tried.push(format!("{raw}: {e}")),
        }
    }
    Err(FetchError::NoDonor(tried.join("; ")))
}

/// Fetches a donor's backup into `args.datadir` (see [`FetchArgs`]).
pub async fn fetch(args: &FetchArgs) -> Result<Fetched, FetchError> {
    let datadir = &args.datadir;
    let marker = datadir.join(RESEED_MARKER);
    // A re-seed mark may name the donor the operator chose.
    let preferred = tokio::fs::read_to_string(&marker)
        .await
        .ok()
        .map(|text| text.trim().to_string())
        .filter(|text| Url::parse(text).is_some());
    // Unknown is not "absent": a marked directory must never be started on.
    let requested = tokio::fs::try_exists(&marker)
        .await
        .map_err(|e| io(&marker, e))?;
    let topology = published_topology(args);
    if requested
        && let Some(primary) = topology.as_ref().and_then(|t| t.primary.as_ref())
        && let Some(url) = Url::parse(&format!("http://{}:{}", primary.host, args.agent_port))
        && is_self(&url, args.skip_self.as_deref())
    {
        // A mark that outlived its request, on what is now the primary: emptying it would
        // lose the cluster's writes. Fail loudly; a failover moves the role, or an operator
        // removes the mark.
        return Err(FetchError::MarkedPrimary(datadir.join(RESEED_MARKER)));
    }
    if requested {
        // A copy was cut short (the pod was killed mid-copy), or the operator asked for a
        // re-seed: what is there must never be started on.
        eprintln!(
            "agent fetch: emptying {} (an interrupted copy or a re-seed request)",
            datadir.display()
        );
        empty_data_dir(datadir).await?;
    }
    if holds_data(datadir).await? {
        if args.if_empty {
            return Ok(Fetched::AlreadyHasData);
        }
        if !args.force {
            return Err(FetchError::NotEmpty(datadir.clone()));
        }
        empty_data_dir(datadir).await?;
    }
    let token = tokio::fs::read_to_string(&args.token_file)
        .await
        .map_err(|e| io(&args.token_file, e))?;
    let tls = args
        .tls_ca
        .as_deref()
        .map(AgentTls::from_ca_file)
        .transpose()?;
    let candidates = donors(args, topology.as_ref(), preferred.clone());
    let (raw, url) = choose_donor(args, &candidates, tls.as_ref()).await?;
    tokio::fs::create_dir_all(datadir)
        .await
        .map_err(|e| io(datadir, e))?;
    tokio::fs::write(&marker, preferred.map(|p| p + "\n").unwrap_or_default())
        .await
        .map_err(|e| io(&marker, e))?;
    let copied = copy_from(&raw, &url, token.trim(), args, tls.as_ref()).await;
    if copied.is_ok() {
        tokio::fs::remove_file(&marker)
            .await
            .map_err(|e| io(&marker, e))?;
    }
    if copied.is_err() {
        // A half copy would make the next attempt refuse the directory, and the server
        // must never start on it. A re-seed mark stays, so the next attempt copies again
        // (and member 0 does not start empty); a mark this copy wrote itself goes.
        let _ = empty_data_dir(datadir).await;
        if !requested {
            let _ = tokio::fs::remove_file(&marker).await;
        }
    }
    copied
}

/// `method path` (with an empty body) on the plain HTTP server at `url` (an archiver's
/// `/status` and `/drill`): the status code and the body, at most 64 KiB, read until the
/// server closes.
pub async fn call(
    url: &Url,
    method: &str,
    path: &str,
    token: Option<&str>,
) -> Result<(u16, Vec<u8>), String> {
    use tokio::io::AsyncReadExt as _;
    let at = format!("{}:{}", url.host, url.port);
    let (body, head) = request(url, method, path, token, None)
        .await
        .map_err(|e| format!("{at}: {e}"))?;
    let mut bytes = Vec::new();
    tokio::time::timeout(CONNECT_TIMEOUT, body.take(64 << 10).read_to_end(&mut bytes))
        .await
        .map_err(|_| format!("{at}: no answer in time"))?
        .map_err(|e| format!("{at}: {e}"))?;
    Ok((head.status, bytes))
}

/// How [`open_backup`]'s error ends when the agent serves another copy (a seed) now: worth
/// trying again soon, not a failure.
pub const BUSY: &str = "is busy serving another copy (503)";

/// The backup stream of the agent at `url` (the operator's backups): the decoded body as it
/// arrives, and the task decoding it, whose result says whether the stream ended whole.
pub async fn open_backup(
    url: &Url,
    token: &str,
    tls: Option<&AgentTls>,
) -> Result<
    (
        tokio::io::DuplexStream,
        tokio::task::JoinHandle<Result<u64, String>>,
    ),
    String,
> {
    let at = format!("agent {}:{}", url.host, url.port);
    let (mut body, head) = get(url, "/backup", Some(token), tls)
        .await
        .map_err(|e| format!("{at}: {e}"))?;
    match head.status {
        200 if head.chunked => {}
        200 => return Err(format!("{at}: the backup is not chunked")),
        401 => return Err(format!("{at} refused the token (401)")),
        503 => return Err(format!("{at} {BUSY}")),
        status => return Err(format!("{at} answered {status}")),
    }
    let (mut to_reader, reader) = tokio::io::duplex(1 << 20);
    let decode = tokio::spawn(async move {
        let decoded = http::copy_chunked(&mut body, &mut to_reader).await;
        let _ = to_reader.shutdown().await;
        decoded.map_err(|e| format!("{at}: the backup stream broke: {e}"))
    });
    Ok((reader, decode))
}

async fn copy_from(
    raw: &str,
    url: &Url,
    token: &str,
    args: &FetchArgs,
    tls: Option<&AgentTls>,
) -> Result<Fetched, FetchError> {
    let donor_error = |message: String| FetchError::Donor {
        url: raw.to_string(),
        message,
    };
    let started = Instant::now();
    let (mut body, head) = get(url, "/backup", Some(token), tls)
        .await
        .map_err(|e| donor_error(e.to_string()))?;
    match head.status {
        200 if head.chunked => {}
        200 => return Err(donor_error("the backup is not chunked".into())),
        401 => return Err(donor_error("the token was refused (401)".into())),
        status => return Err(donor_error(format!("answered {status}"))),
    }
    let progress = Arc::new(AtomicU64::new(0));
    let reporter = tokio::spawn(report_progress(
        progress.clone(),
        started,
        args.progress_every(),
    ));
    // Decoding and extraction run side by side; their errors are told apart below.
    let (mut to_extract, from_network) = tokio::io::duplex(1 << 20);
    let decode = async move {
        let decoded = http::copy_chunked(&mut body, &mut to_extract).await;
        let _ = to_extract.shutdown().await;
        decoded
    };
    let (decoded, extracted) = tokio::join!(
        decode,
        seed::extract(from_network, &args.datadir, progress.clone())
    );
    reporter.abort();
    // When extraction fails first, decoding then fails writing into the closed pipe: the
    // extraction error is the one that explains it.
    let bytes = match (decoded, extracted) {
        (Ok(_), extracted) => extracted?,
        (Err(http::HttpError::Io(_)), Err(e)) => return Err(e.into()),
        (Err(e), _) => return Err(donor_error(format!("the backup stream broke: {e}"))),
    };
    eprintln!(
        "agent fetch: {:.1} MiB received in {:.1} s; preparing",
        bytes as f64 / 1_048_576.0,
        started.elapsed().as_secs_f64()
    );
    let gtid_position = seed::prepare(&args.datadir).await?;
    // A donor that never wrote a transaction has no position: nothing to start from.
    if !gtid_position.is_empty() {
        let position = args.datadir.join(POSITION_FILE);
        tokio::fs::write(&position, format!("{gtid_position}\n"))
            .await
            .map_err(|e| io(&position, e))?;
    }
    Ok(Fetched::Copied {
        donor: raw.to_string(),
        bytes,
        elapsed: started.elapsed(),
        gtid_position,
    })
}

async fn report_progress(progress: Arc<AtomicU64>, started: Instant, every: Duration) {
    let mut ticker = tokio::time::interval(every);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let bytes = progress.load(Ordering::Relaxed);
        eprintln!(
            "agent fetch: {:.1} MiB, {:.1} MB/s",
            bytes as f64 / 1_048_576.0,
            mb_per_s(bytes, started.elapsed())
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = |h: &str, p| {
            Some(Url {
                host: h.into(),
                port: p,
            })
        };
        assert_eq!(
            Url::parse("http://db-0.db-headless.ns.svc:3307"),
            u("db-0.db-headless.ns.svc", 3307)
        );
        assert_eq!(Url::parse("http://127.0.0.1:9/"), u("127.0.0.1", 9));
        assert_eq!(Url::parse("http://db-1"), u("db-1", 3307));
        for bad in [
            "https://a:1",
            "http://",
            "http://:1",
            "http://a:x",
            "http://a/b",
            "http://u@a",
        ] {
            assert_eq!(Url::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn this_pod_is_skipped() {
        let url = Url::parse("http://db-1.db-headless.ns.svc:3307").unwrap();
        assert!(is_self(&url, Some("db-1")));
        assert!(!is_self(&url, Some("db-10")));
        assert!(!is_self(&url, Some("db")));
        assert!(!is_self(&url, None));
        assert!(!is_self(&url, Some("")));
    }

    #[tokio::test]
    async fn lost_and_found_is_not_data() {
        let dir = tempfile::tempdir().unwrap();
        assert!(!holds_data(&dir.path().join("absent")).await.unwrap());
        std::fs::create_dir(dir.path().join("lost+found")).unwrap();
        assert!(!holds_data(dir.path()).await.unwrap());
        std::fs::create_dir(dir.path().join("mysql")).unwrap();
        std::fs::write(dir.path().join("ibdata1"), b"x").unwrap();
        assert!(holds_data(dir.path()).await.unwrap());
        empty_data_dir(dir.path()).await.unwrap();
        assert!(!holds_data(dir.path()).await.unwrap());
        assert!(dir.path().join("lost+found").exists());
    }
}
