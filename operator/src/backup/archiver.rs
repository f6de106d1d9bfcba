//! Continuous binary log archiving: `mariadb-binlog --read-from-remote-server --raw
//! --stop-never` follows the primary into a private spool directory, complete transactions
//! are cut from what it writes, and stored as segments ([`super::archive`]) at most half a
//! second after they were read. When the primary changes, the reader moves to the new one at
//! the last position it holds of the archive: no gap, and no transaction archived twice.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use lagless_core::gtid::{MariadbGtid, MariadbPosition};
use mysql_async::prelude::Queryable as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tracing::{info, warn};

use super::BackupError;
use super::archive::{self, ArchiveState, Segment};
use super::binlog::{self, Assembler, EventAt, Found, MAGIC};
use super::store::Store;
use crate::orchestrate::observe::{Credentials, opts};
use crate::orchestrate::seed::{PrivateDir, option_file, write_private};
use crate::orchestrate::view::ServerTls;

/// A segment is stored once its oldest transaction has waited this long (or it is large).
const SHIP_AFTER: Duration = Duration::from_millis(500);
const SHIP_BYTES: usize = 16 << 20;
/// The most read from the spool at once (a backlog is read and stored piece by piece).
const READ_CHUNK: usize = 8 << 20;
/// How often the spool is read.
const POLL: Duration = Duration::from_millis(100);
/// How often the high-water mark is written while nothing is being archived.
const STATE_EVERY: Duration = Duration::from_secs(5);
const RETRY: Duration = Duration::from_secs(1);

/// The member the archive reads from: the primary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub member: String,
    pub host: String,
    pub port: u16,
}

/// What the archiver reports.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ArchiveStatus {
    pub destination: String,
    /// The member being read, if any.
    pub reading: Option<String>,
    /// The archive's position (after the last stored transaction).
    pub position: String,
    /// Milliseconds since the oldest transaction not yet stored was read (0 when every
    /// transaction read is stored).
    pub lag_ms: u64,
    pub segments_stored: u64,
    pub last_stored_at: Option<String>,
    pub error: Option<String>,
}

pub struct Archiver {
    pub cluster: String,
    pub destination: String,
    pub store: Store,
    pub creds: Credentials,
    pub tls: Option<ServerTls>,
    /// The server id the reader registers with: none of the cluster's members'.
    pub reader_server_id: u32,
    /// A private working directory (removed and made afresh).
    pub spool: PathBuf,
    pub status: Arc<std::sync::Mutex<ArchiveStatus>>,
    /// The last moment every transaction read was stored and the reader was running.
    pub caught_up: std::sync::Mutex<Instant>,
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Transactions read and not yet stored.
struct Pending {
    fde: Vec<u8>,
    bytes: Vec<u8>,
    after: MariadbPosition,
    last: MariadbPosition,
    count: u64,
    first_unix: u64,
    last_unix: u64,
    since: Option<Instant>,
}

impl Pending {
    fn new(after: MariadbPosition) -> Self {
        Self {
            fde: Vec::new(),
            bytes: Vec::new(),
            last: after.clone(),
            after,
            count: 0,
            first_unix: 0,
            last_unix: 0,
            since: None,
        }
    }

    fn add(&mut self, bytes: &[u8], gtid: MariadbGtid, timestamp: u32) {
        if self.count == 0 {
            self.first_unix = u64::from(timestamp);
            self.since = Some(Instant::now());
        }
        self.bytes.extend_from_slice(bytes);
        self.last.insert(gtid);
        self.count += 1;
        self.last_unix = u64::from(timestamp);
    }

    fn due(&self) -> bool {
        self.bytes.len() >= SHIP_BYTES || self.since.is_some_and(|s| s.elapsed() >= SHIP_AFTER)
    }
}

/// One run of the reader against one primary: its spool file being read.
struct Tail {
    file: Option<PathBuf>,
    buf: Vec<u8>,
    /// The file offset of `buf[0]`.
    base: u64,
    /// Where in `buf` the next event starts.
    parsed: usize,
    asm: Assembler,
    /// Set when the run started from a file rather than a GTID position: the file's GTID
    /// list says where the archive starts.
    from_file: bool,
    /// The last read stopped at its bound with more to read.
    more: bool,
}

impl Archiver {
    /// Archives until `stop`, following `primary`.
    pub async fn run(
        self,
        mut primary: watch::Receiver<Option<Source>>,
        mut stop: watch::Receiver<bool>,
    ) {
        // Where the archive stands decides where reading starts: nothing is read until it is
        // known (starting over would store everything again).
        let mut next = loop {
            match self.load().await {
                Ok(next) => break next,
                Err(e) => {
                    self.set_error(format!("cannot read the archive: {e}"));
                    self.report_outage();
                    tokio::select! {
                        _ = stop.changed() => return,
                        _ = tokio::time::sleep(RETRY) => {}
                    }
                }
            }
        };
        let mut from_oldest = false;
        while !*stop.borrow() {
            let source = primary.borrow_and_update().clone();
            let Some(source) = source else {
                self.lagging("no primary to read from");
                self.report_outage();
                tokio::select! {
                    _ = primary.changed() => {}
                    _ = stop.changed() => {}
                    _ = tokio::time::sleep(RETRY) => {}
                }
                continue;
            };
            match self
                .follow(&source, &mut next, from_oldest, &mut primary, &mut stop)
                .await
            {
                Ok(()) => from_oldest = false,
                Err(e) => {
                    // 1236: the primary's binary logs no longer reach the archive's position
                    // (purged, or a member seeded after it). Archiving starts again at its
                    // oldest log; the archive has a gap there, which restores refuse to cross.
                    from_oldest = e.contains("1236");
                    warn!(cluster = %self.cluster, member = %source.member, error = %e, "binary log archiving interrupted");
                    self.set_error(e);
                    self.report_outage();
                    tokio::select! {
                        _ = stop.changed() => {}
                        _ = tokio::time::sleep(RETRY) => {}
                    }
                }
            }
        }
    }

    /// The next segment's number and the archive's position, from the stored manifests.
    async fn load(&self) -> Result<(u64, Option<MariadbPosition>), BackupError> {
        let names = match self.store.names().await {
            Ok(names) => names,
            Err(BackupError::NotFound { .. }) => Vec::new(),
            Err(e) => return Err(e),
        };
        let Some(&last) = archive::sequences(names.iter().map(String::as_str)).last() else {
            return Ok((1, None));
        };
        let bytes = self.store.get_small(&archive::manifest_name(last)).await?;
        let segment: Segment = serde_json::from_slice(&bytes)
            .map_err(|e| BackupError::Manifest(format!("archive segment {last}: {e}")))?;
        let position = segment.last();
        self.status
            .lock()
            .map(|mut s| s.position = position.to_string())
            .ok();
        Ok((last + 1, Some(position)))
    }

    fn set_error(&self, error: String) {
        if let Ok(mut s) = self.status.lock() {
            s.error = Some(error);
            s.reading = None;
        }
    }

    fn lagging(&self, why: &str) {
        if let Ok(mut s) = self.status.lock() {
            s.reading = None;
            s.error.get_or_insert_with(|| why.to_string());
        }
    }

    /// A connection for reading the primary's head and clock.
    async fn probe_conn(&self, source: &Source) -> Option<mysql_async::Conn> {
        let options = opts(&source.host, source.port, &self.creds, self.tls.as_ref())
            .wait_timeout(Some(600))
            .stmt_cache_size(0);
        tokio::time::timeout(Duration::from_secs(10), mysql_async::Conn::new(options))
            .await
            .ok()?
            .ok()
    }

    /// Where to start on `source`: a GTID position, or its first binary log file when the
    /// archive is empty (or the primary holds none of it).
    async fn start_point(
        &self,
        source: &Source,
        archived: Option<&MariadbPosition>,
    ) -> Result<Start, String> {
        let options = opts(&source.host, source.port, &self.creds, self.tls.as_ref())
            .wait_timeout(Some(10))
            .stmt_cache_size(0);
        let mut conn =
            tokio::time::timeout(Duration::from_secs(10), mysql_async::Conn::new(options))
                .await
                .map_err(|_| format!("{} did not answer within 10 s", source.member))?
                .map_err(|e| format!("cannot connect to {}: {e}", source.member))?;
        let result = async {
            if let Some(archived) = archived.filter(|a| !a.is_empty()) {
                let state: Option<String> = conn
                    .query_first("SELECT @@gtid_binlog_state")
                    .await
                    .map_err(|e| e.to_string())?;
                // One GTID per domain and server: read entry by entry.
                let gtids = state
                    .unwrap_or_default()
                    .split(',')
                    .map(MariadbPosition::parse)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| format!("{}'s gtid_binlog_state: {e}", source.member))?
                    .iter()
                    .flat_map(|p| p.gtids().to_vec())
                    .collect::<Vec<MariadbGtid>>();
                if let Some(at) = archive::resume_at(archived, &gtids) {
                    return Ok(Start::Gtid(at));
                }
                warn!(cluster = %self.cluster, member = %source.member, archived = %archived, "the primary holds none of the archive's last transactions: archiving starts again at its oldest binary log, leaving a gap a restore will refuse to cross");
            }
            let first: Option<mysql_async::Row> = conn
                .query_first("SHOW BINARY LOGS")
                .await
                .map_err(|e| e.to_string())?;
            first
                .and_then(|row| row.get_opt::<String, _>(0)?.ok())
                .map(Start::File)
                .ok_or_else(|| format!("{} has no binary log", source.member))
        }
        .await;
        let _ = conn.disconnect().await;
        result
    }

    /// Reads `source` until it stops being the primary, the reader fails, or `stop`.
    async fn follow(
        &self,
        source: &Source,
        next: &mut (u64, Option<MariadbPosition>),
        from_oldest: bool,
        primary: &mut watch::Receiver<Option<Source>>,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<(), String> {
        let archived = next.1.as_ref().filter(|_| !from_oldest);
        let start = self.start_point(source, archived).await?;
        let private = PrivateDir::create(&self.spool)
            .await
            .map_err(|e| format!("{}: {e}", self.spool.display()))?;
        let spool = self.spool.join("binlog");
        tokio::fs::create_dir(&spool)
            .await
            .map_err(|e| format!("{}: {e}", spool.display()))?;
        let options = self.spool.join("client.cnf");
        let ca = self.tls.as_ref().map(|t| match &t.ca {
            crate::orchestrate::view::CaSource::File(p) => p.clone(),
            crate::orchestrate::view::CaSource::Pem(_) => PathBuf::new(),
        });
        write_private(
            &options,
            option_file(
                &self.creds,
                ca.as_deref().filter(|p| !p.as_os_str().is_empty()),
            )
            .as_bytes(),
        )
        .await
        .map_err(|e| format!("{}: {e}", options.display()))?;
        let mut child = self.spawn_reader(source, &start, &options, &spool)?;
        // Drained as it comes, so a talkative reader never blocks on a full pipe.
        let child_stderr = tokio::spawn(read_stderr(child.stderr.take()));
        let from_file = matches!(start, Start::File(_));
        let after = match &start {
            Start::Gtid(p) => p.clone(),
            Start::File(_) => MariadbPosition::default(),
        };
        info!(cluster = %self.cluster, member = %source.member, start = %start, "archiving the binary log");
        if let Ok(mut s) = self.status.lock() {
            s.reading = Some(source.member.clone());
            s.error = None;
        }
        let mut pending = Pending::new(after);
        let mut tail = Tail {
            file: None,
            buf: Vec::new(),
            base: 0,
            parsed: 0,
            asm: Assembler::default(),
            from_file,
            more: false,
        };
        let mut state_written = Instant::now();
        // How far the archive is complete comes from the primary itself: its head and its
        // clock read together; once everything up to that head is stored, every transaction
        // committed before that moment is.
        let mut clock = Clock::default();
        let mut probe = self.probe_conn(source).await;
        let outcome = loop {
            if clock.due()
                && let Some(conn) = probe.as_mut()
            {
                match head_and_time(conn).await {
                    Ok(reading) => clock.read(reading),
                    Err(_) => probe = None,
                }
            }
            let exited = child.try_wait().map_err(|e| e.to_string())?;
            let read = tail.read(&spool, &mut pending).await;
            if let Err(e) = read {
                // What was read whole before the error is kept; the next run goes on after it.
                if pending.count > 0 {
                    let covered = clock.covered(&pending.last);
                    self.ship(next, &mut pending, covered).await?;
                }
                break Err(e);
            }
            if pending.due() || (exited.is_some() && pending.count > 0) {
                let covered = clock.covered(&pending.last);
                self.ship(next, &mut pending, covered).await?;
            }
            if pending.count == 0 && exited.is_none() {
                if let Ok(mut at) = self.caught_up.lock() {
                    *at = Instant::now();
                }
                if state_written.elapsed() >= STATE_EVERY {
                    self.write_state(&pending.last, clock.covered(&pending.last))
                        .await;
                    state_written = Instant::now();
                }
            }
            self.report_lag(&pending);
            if let Some(status) = exited {
                let stderr = child_stderr.await.unwrap_or_default();
                break Err(format!(
                    "mariadb-binlog reading {} exited ({status}): {}",
                    source.member,
                    stderr.trim()
                ));
            }
            let moved = primary.borrow().as_ref() != Some(source);
            if moved || *stop.borrow() {
                let _ = child.kill().await;
                // What it wrote before it stopped is archived, then the next primary is read.
                tail.read(&spool, &mut pending).await?;
                let covered = clock.covered(&pending.last);
                if pending.count > 0 {
                    self.ship(next, &mut pending, covered).await?;
                }
                self.write_state(&pending.last, covered).await;
                break Ok(());
            }
            if tail.more {
                continue;
            }
            tokio::select! {
                _ = tokio::time::sleep(POLL) => {}
                _ = primary.changed() => {}
                _ = stop.changed() => {}
            }
        };
        let _ = child.kill().await;
        drop(private);
        outcome
    }

    fn spawn_reader(
        &self,
        source: &Source,
        start: &Start,
        options: &Path,
        spool: &Path,
    ) -> Result<Child, String> {
        let mut command = Command::new("mariadb-binlog");
        command
            .arg(format!("--defaults-extra-file={}", options.display()))
            .args([
                "--read-from-remote-server",
                "--raw",
                "--stop-never",
                "--protocol=TCP",
            ])
            .arg(format!("--host={}", source.host))
            .arg(format!("--port={}", source.port))
            .arg(format!(
                "--stop-never-slave-server-id={}",
                self.reader_server_id
            ))
            .arg(format!("--result-file={}/", spool.display()));
        match start {
            // The file named is not read: the server starts at the GTID position.
            Start::Gtid(p) => command
                .arg(format!("--start-position={p}"))
                .arg("binlog.000001"),
            Start::File(name) => command.arg(name),
        };
        command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot run mariadb-binlog: {e}"))
    }

    /// Stores `pending` as the next segment, manifest last; `covered`: every transaction
    /// whose time is before it is in this segment or an earlier one.
    async fn ship(
        &self,
        next: &mut (u64, Option<MariadbPosition>),
        pending: &mut Pending,
        covered: u64,
    ) -> Result<(), String> {
        let sequence = next.0;
        let mut object = Vec::with_capacity(4 + pending.fde.len() + pending.bytes.len());
        object.extend_from_slice(&MAGIC);
        object.extend_from_slice(&pending.fde);
        object.extend_from_slice(&pending.bytes);
        let sha256 = format!("{:x}", Sha256::digest(&object));
        let segment = Segment {
            format: archive::SEGMENT_FORMAT,
            cluster: self.cluster.clone(),
            sequence,
            member: self
                .status
                .lock()
                .ok()
                .and_then(|s| s.reading.clone())
                .unwrap_or_default(),
            after: pending.after.to_string(),
            last: pending.last.to_string(),
            transactions: pending.count,
            first_unix: pending.first_unix,
            last_unix: pending.last_unix,
            stored_unix_ms: unix_ms(),
            covered_unix_ms: covered,
            bytes: object.len() as u64,
            sha256,
        };
        let manifest = serde_json::to_vec_pretty(&segment).map_err(|e| e.to_string())?;
        // Over an object of this number left without its manifest by a failed store.
        self.store
            .put_over(&segment.object(), Bytes::from(object))
            .await
            .map_err(|e| format!("storing archive segment {sequence}: {e}"))?;
        self.store
            .put_new(&archive::manifest_name(sequence), Bytes::from(manifest))
            .await
            .map_err(|e| format!("storing archive segment {sequence}'s manifest: {e}"))?;
        *next = (sequence + 1, Some(pending.last.clone()));
        let fde = std::mem::take(&mut pending.fde);
        *pending = Pending::new(pending.last.clone());
        pending.fde = fde;
        if let Ok(mut s) = self.status.lock() {
            s.position = segment.last.clone();
            s.segments_stored += 1;
            s.last_stored_at = Some(super::manifest::rfc3339(unix_ms()));
            s.error = None;
        }
        Ok(())
    }

    async fn write_state(&self, position: &MariadbPosition, covered: u64) {
        let state = ArchiveState::new(position, covered);
        let Ok(bytes) = serde_json::to_vec_pretty(&state) else {
            return;
        };
        if let Err(e) = self
            .store
            .put_over(archive::STATE_NAME, Bytes::from(bytes))
            .await
        {
            warn!(cluster = %self.cluster, error = %e, "cannot record how far the archive reaches");
        }
    }

    /// While nothing is being read: the lag is the time since the archive was last complete.
    fn report_outage(&self) {
        let since = self
            .caught_up
            .lock()
            .map(|at| at.elapsed())
            .unwrap_or_default();
        if let Ok(mut s) = self.status.lock() {
            s.lag_ms = u64::try_from(since.as_millis()).unwrap_or(u64::MAX);
        }
    }

    fn report_lag(&self, pending: &Pending) {
        let lag = pending.since.map_or(0, |s| {
            u64::try_from(s.elapsed().as_millis()).unwrap_or(u64::MAX)
        });
        if let Ok(mut s) = self.status.lock() {
            s.lag_ms = lag;
        }
    }
}

#[derive(Debug, Clone)]
enum Start {
    Gtid(MariadbPosition),
    File(String),
}

impl std::fmt::Display for Start {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Gtid(p) if p.is_empty() => f.write_str("the first GTID"),
            Self::Gtid(p) => write!(f, "after GTID {p}"),
            Self::File(name) => write!(f, "binary log {name}"),
        }
    }
}

/// The last 2,000 characters `stderr` gave before it closed.
async fn read_stderr(stderr: Option<tokio::process::ChildStderr>) -> String {
    let Some(mut stderr) = stderr else {
        return String::new();
    };
    let mut kept: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 4096];
    while let Ok(n) = stderr.read(&mut chunk).await {
        if n == 0 {
            break;
        }
        kept.extend_from_slice(&chunk[..n]);
        if kept.len() > 8000 {
            kept.drain(..kept.len() - 4000);
        }
    }
    let text = String::from_utf8_lossy(&kept).into_owned();
    let skip = text.chars().count().saturating_sub(2000);
    text.chars().skip(skip).collect()
}

/// The primary's head and clock, read at one moment.
async fn head_and_time(conn: &mut mysql_async::Conn) -> Result<(MariadbPosition, u64), String> {
    let row: Option<(String, u64)> = conn
        .query_first("SELECT @@gtid_binlog_pos, CAST(UNIX_TIMESTAMP(NOW(6)) * 1000 AS UNSIGNED)")
        .await
        .map_err(|e| e.to_string())?;
    let (head, ms) = row.ok_or("no answer")?;
    Ok((
        MariadbPosition::parse(&head).map_err(|e| e.to_string())?,
        ms,
    ))
}

/// How far the archive is complete, in the primary's own time.
#[derive(Debug, Default)]
struct Clock {
    /// Readings not yet reached by the archive, oldest first.
    waiting: std::collections::VecDeque<(MariadbPosition, u64)>,
    covered: u64,
    last_read: Option<Instant>,
}

impl Clock {
    const EVERY: Duration = Duration::from_millis(250);

    fn due(&self) -> bool {
        self.last_read.is_none_or(|at| at.elapsed() >= Self::EVERY)
    }

    fn read(&mut self, reading: (MariadbPosition, u64)) {
        self.last_read = Some(Instant::now());
        if self.waiting.len() < 64 {
            self.waiting.push_back(reading);
        }
    }

    /// The latest moment whose head `stored` has reached.
    fn covered(&mut self, stored: &MariadbPosition) -> u64 {
        while let Some((head, at)) = self.waiting.front() {
            if !stored.contains(head) {
                break;
            }
            self.covered = self.covered.max(*at);
            self.waiting.pop_front();
        }
        self.covered
    }
}

impl Tail {
    /// Reads what the reader wrote since last time, moving complete transactions to
    /// `pending`. A file is complete once a later one exists.
    async fn read(&mut self, spool: &Path, pending: &mut Pending) -> Result<(), String> {
        loop {
            let files = spool_files(spool).await?;
            let Some(current) = self.file.clone().or_else(|| files.first().cloned()) else {
                return Ok(());
            };
            if self.file.is_none() {
                self.open(current.clone());
            }
            self.read_more(&current).await?;
            self.consume(pending)?;
            if self.more {
                // Bounded reads: the caller stores what is due and comes back at once.
                return Ok(());
            }
            // A later file existed before this one was read to its end: this one is whole.
            let position = files.iter().position(|f| *f == current);
            let later = position.and_then(|i| files.get(i + 1)).cloned();
            match later {
                Some(next) => {
                    if let Some(gtid) = self.asm.new_file() {
                        return Err(format!(
                            "transaction {gtid} was cut off at the end of a binary log file"
                        ));
                    }
                    let _ = tokio::fs::remove_file(&current).await;
                    self.open(next);
                }
                None => return Ok(()),
            }
        }
    }

    fn open(&mut self, file: PathBuf) {
        self.file = Some(file);
        self.buf.clear();
        self.base = 0;
        self.parsed = MAGIC.len();
    }

    async fn read_more(&mut self, path: &Path) -> Result<(), String> {
        let mut file = tokio::fs::File::open(path)
            .await
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let at = self.base + self.buf.len() as u64;
        file.seek(std::io::SeekFrom::Start(at))
            .await
            .map_err(|e| format!("{}: {e}", path.display()))?;
        let got = (&mut file)
            .take(READ_CHUNK as u64)
            .read_to_end(&mut self.buf)
            .await
            .map_err(|e| format!("{}: {e}", path.display()))?;
        self.more = got == READ_CHUNK;
        Ok(())
    }

    fn consume(&mut self, pending: &mut Pending) -> Result<(), String> {
        if self.base == 0 && self.buf.len() >= MAGIC.len() && self.buf[..MAGIC.len()] != MAGIC {
            return Err(binlog::BinlogError::Magic.to_string());
        }
        if self.base == 0 && self.buf.len() < MAGIC.len() {
            return Ok(());
        }
        let found = binlog::events(&self.buf, self.parsed).map_err(|e| e.to_string())?;
        for e in &found {
            self.take(e, pending)?;
            self.parsed = e.end();
        }
        // Keep only what an open transaction or the next event still needs.
        let keep_from = self
            .asm
            .open_start()
            .unwrap_or(self.parsed)
            .min(self.parsed);
        if keep_from > 0 {
            self.buf.drain(..keep_from);
            self.base += keep_from as u64;
            self.parsed -= keep_from;
            self.asm.rebase(keep_from);
        }
        Ok(())
    }

    fn take(&mut self, e: &EventAt, pending: &mut Pending) -> Result<(), String> {
        match self.asm.push(&self.buf, e) {
            Found::Format => {
                let fde = self.buf[e.start..e.end()].to_vec();
                // A segment is read with one format description. A new file's differs only
                // in its time and flags, unless the checksum setting changed: then the run
                // ends here and the next starts a segment with the new one.
                if pending.count > 0
                    && binlog::checksummed(&fde) != binlog::checksummed(&pending.fde)
                {
                    return Err("the primary's binlog_checksum changed; reading again".into());
                }
                if pending.count == 0 || pending.fde.is_empty() {
                    pending.fde = fde;
                }
            }
            Found::Before(position) => {
                if self.from_file && pending.count == 0 && pending.after.is_empty() {
                    pending.after = position.clone();
                    pending.last = position;
                }
            }
            Found::Transaction(t) => {
                pending.add(&self.buf[t.start..t.end], t.gtid, t.timestamp);
            }
            Found::Broken(gtid) => {
                // Never skipped over: the run ends at the last whole transaction, and the
                // next one reads again from there.
                return Err(format!(
                    "transaction {gtid} was cut off by the next one in the binary log read"
                ));
            }
            Found::Nothing => {}
        }
        Ok(())
    }
}

async fn spool_files(spool: &Path) -> Result<Vec<PathBuf>, String> {
    let mut entries = tokio::fs::read_dir(spool)
        .await
        .map_err(|e| format!("{}: {e}", spool.display()))?;
    let mut out = Vec::new();
    while let Ok(Some(entry)) = entries.next_entry().await {
        out.push(entry.path());
    }
    // `binlog.999999` comes before `binlog.1000000`.
    out.sort_by_key(|p| (p.as_os_str().len(), p.clone()));
    Ok(out)
}
