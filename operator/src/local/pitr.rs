//! Point-in-time restores of a local cluster: which full backup to start from, which
//! archived segments reach the target, and the replay of their transactions into the
//! restored data (`mariadb-binlog | mariadb` against a server running without networking),
//! all decided from the manifests before anything is created.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use lagless_core::gtid::MariadbPosition;
use sha2::{Digest, Sha256};

use crate::backup::BackupError;
use crate::backup::archive::{self, ArchiveState, Segment, SegmentUse, Take, Target};
use crate::backup::binlog::{self, Assembler, Found, MAGIC};
use crate::backup::manifest::Manifest;
use crate::backup::store::Store;

use super::LocalError;
use super::mariadb::ServerLayout;

/// A point-in-time restore, planned: the backup, the segments to read, and how far.
#[derive(Debug, Clone)]
pub struct Plan {
    pub backup: Manifest,
    pub target: Target,
    pub segments: Vec<(Segment, SegmentUse)>,
}

/// The archive's segments (in order) and how far it reaches (position, covered until).
pub async fn read_archive(
    store: &Store,
) -> Result<(Vec<Segment>, MariadbPosition, u64), LocalError> {
    let names = match store.names().await {
        Ok(names) => names,
        Err(BackupError::NotFound { .. }) => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    let mut segments = Vec::new();
    for sequence in archive::sequences(names.iter().map(String::as_str)) {
        let bytes = store.get_small(&archive::manifest_name(sequence)).await?;
        let segment: Segment = serde_json::from_slice(&bytes).map_err(|e| {
            BackupError::Manifest(format!("archive segment {sequence}'s manifest: {e}"))
        })?;
        segments.push(segment);
    }
    let mut position = segments.last().map(Segment::last).unwrap_or_default();
    let mut covered = segments
        .iter()
        .map(|s| s.covered_unix_ms)
        .max()
        .unwrap_or(0);
    if let Ok(bytes) = store.get_small(archive::STATE_NAME).await
        && let Ok(state) = serde_json::from_slice::<ArchiveState>(&bytes)
    {
        // The high-water mark only counts if it is not behind the segments.
        if let Ok(p) = MariadbPosition::parse(&state.position)
            && p.contains(&position)
        {
            position = p;
            covered = covered.max(state.covered_unix_ms);
        }
    }
    Ok((segments, position, covered))
}

/// Chooses the backup (`chosen`, or the newest that precedes the target) and the segments
/// that take it to the target; refuses a target the archive does not reach.
pub fn plan(
    backups: &[Manifest],
    chosen: Option<&str>,
    target: Target,
    segments: Vec<Segment>,
    archived: &MariadbPosition,
    covered_unix_ms: u64,
) -> Result<Plan, String> {
    if segments.is_empty() {
        return Err(
            "no binary log archive beside these backups (spec.backup.archiveBinlogs): a \
             restore can only give a backup's own moment (leave out --to)"
                .into(),
        );
    }
    let precedes = |m: &Manifest| match &target {
        Target::Time(t) => m.finished_unix_ms < (t + 1) * 1000,
        Target::Gtid(p) => MariadbPosition::parse(&m.gtid_position).is_ok_and(|b| p.contains(&b)),
    };
    let backup = match chosen {
        Some(id) => {
            let m = backups
                .iter()
                .find(|m| m.id == id)
                .ok_or_else(|| format!("no backup {id}"))?;
            if !precedes(m) {
                return Err(format!("backup {id} was taken after {target}"));
            }
            m
        }
        // Newest first.
        None => backups.iter().find(|m| precedes(m)).ok_or_else(|| {
            format!(
                "no backup was taken before {target}; the oldest is {}",
                backups
                    .last()
                    .map_or("none".to_string(), |m| m.finished_at.clone())
            )
        })?,
    };
    archive::reaches(&target, archived, covered_unix_ms)?;
    let base = MariadbPosition::parse(&backup.gtid_position)
        .map_err(|e| format!("backup {}'s position: {e}", backup.id))?;
    let uses = archive::segments_to_read(&segments, &base, |s, reached| {
        archive::met_before(&target, s, reached)
    })?;
    let by_sequence: std::collections::HashMap<u64, Segment> =
        segments.into_iter().map(|s| (s.sequence, s)).collect();
    let mut chosen = Vec::new();
    for u in uses {
        let Some(s) = by_sequence.get(&u.sequence).cloned() else {
            continue;
        };
        // The replay stops at the first transaction past the target: segments after the
        // one that holds it are not read.
        let past = match &target {
            Target::Time(t) => s.first_unix > *t,
            Target::Gtid(_) => false,
        };
        let holds = match &target {
            Target::Gtid(p) => u.until.clone().unwrap_or_else(|| s.last()).contains(p),
            Target::Time(_) => false,
        };
        chosen.push((s, u));
        if past || holds {
            break;
        }
    }
    Ok(Plan {
        backup: backup.clone(),
        target,
        segments: chosen,
    })
}

/// One segment's object, checked against its manifest.
async fn fetch(store: &Store, segment: &Segment) -> Result<Vec<u8>, LocalError> {
    let mut reader = store.reader(&segment.object()).await?;
    let mut out = Vec::with_capacity(usize::try_from(segment.bytes).unwrap_or(0));
    while let Some(chunk) = reader.next().await? {
        out.extend_from_slice(&chunk);
    }
    let sha256 = format!("{:x}", Sha256::digest(&out));
    if out.len() as u64 != segment.bytes || sha256 != segment.sha256 {
        return Err(BackupError::Corrupt {
            id: format!("archive segment {}", segment.sequence),
            detail: format!(
                "{} bytes with sha256 {sha256}, its manifest says {} bytes with {}",
                out.len(),
                segment.bytes,
                segment.sha256
            ),
        }
        .into());
    }
    Ok(out)
}

/// The transactions of `bytes` to replay, as a binary log file of their own (the segment's
/// format description first); `reached` advances past them. `true` once the target is
/// passed.
fn select(
    bytes: &[u8],
    segment: &Segment,
    use_: &SegmentUse,
    target: &Target,
    reached: &mut MariadbPosition,
) -> Result<(Vec<u8>, bool), LocalError> {
    let corrupt = |detail: String| BackupError::Corrupt {
        id: format!("archive segment {}", segment.sequence),
        detail,
    };
    if bytes.get(..MAGIC.len()) != Some(&MAGIC[..]) {
        return Err(corrupt("it is not a binary log".into()).into());
    }
    let events = binlog::events(bytes, MAGIC.len()).map_err(|e| corrupt(e.to_string()))?;
    let mut out = MAGIC.to_vec();
    let mut asm = Assembler::default();
    for e in &events {
        match asm.push(bytes, e) {
            Found::Format => out.extend_from_slice(&bytes[e.start..e.end()]),
            Found::Transaction(t) => {
                match archive::take(
                    &t.gtid,
                    u64::from(t.timestamp),
                    reached,
                    use_.until.as_ref(),
                    target,
                ) {
                    Take::Skip => {}
                    Take::Replay => {
                        out.extend_from_slice(&bytes[t.start..t.end]);
                        reached.insert(t.gtid);
                    }
                    Take::Stop => return Ok((out, false)),
                    Take::Done => return Ok((out, true)),
                    Take::Diverged => {
                        return Err(corrupt(format!(
                            "its transaction {} meets another history: the data holds {}",
                            t.gtid, reached
                        ))
                        .into());
                    }
                }
            }
            _ => {}
        }
    }
    Ok((out, false))
}

/// Writes the replay files for `plan` into `dir`; returns them and the position the data
/// will be at.
pub async fn replay_files(
    store: &Store,
    plan: &Plan,
    dir: &Path,
) -> Result<(Vec<PathBuf>, MariadbPosition), LocalError> {
    tokio::fs::create_dir_all(dir)
        .await
        .map_err(LocalError::io(dir))?;
    let mut reached = MariadbPosition::parse(&plan.backup.gtid_position).unwrap_or_default();
    let mut files = Vec::new();
    for (segment, use_) in &plan.segments {
        let bytes = fetch(store, segment).await?;
        let (file, done) = select(&bytes, segment, use_, &plan.target, &mut reached)?;
        let path = dir.join(format!("{:010}.binlog", segment.sequence));
        tokio::fs::write(&path, &file)
            .await
            .map_err(LocalError::io(&path))?;
        files.push(path);
        if done {
            break;
        }
    }
    if let Target::Gtid(p) = &plan.target
        && !reached.contains(p)
    {
        return Err(LocalError::Other(format!(
            "the archive holds transactions up to {reached}, not {p}"
        )));
    }
    Ok((files, reached))
}

/// Replays `files` into the server listening on `socket` (running without networking or
/// grant checks): `mariadb-binlog FILES | mariadb --binary-mode`.
pub async fn apply(
    files: &[PathBuf],
    socket: &Path,
    layout: &ServerLayout,
) -> Result<(), LocalError> {
    if files.is_empty() {
        return Ok(());
    }
    let files = files.to_vec();
    let socket = socket.to_path_buf();
    let name = layout.name.clone();
    tokio::task::spawn_blocking(move || {
        let mut reader = std::process::Command::new("mariadb-binlog")
            .arg("--no-defaults")
            .args(&files)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| LocalError::Command {
                command: "mariadb-binlog".into(),
                detail: e.to_string(),
            })?;
        let (Some(events), Some(mut errors)) = (reader.stdout.take(), reader.stderr.take()) else {
            let _ = reader.kill();
            let _ = reader.wait();
            return Err(LocalError::Other("mariadb-binlog gave no pipes".into()));
        };
        // Drained beside the replay, so the reader never blocks on a full pipe.
        let reader_errors = std::thread::spawn(move || {
            let mut text = Vec::new();
            let _ = std::io::Read::read_to_end(&mut errors, &mut text);
            text
        });
        // The server runs without grant checks; account statements in the archive (CREATE
        // USER, GRANT) need the grant tables loaded, as `adopt` loads them first.
        let applied = std::process::Command::new("mariadb")
            .arg("--no-defaults")
            .arg(format!("--socket={}", socket.display()))
            .args([
                "--user=root",
                "--binary-mode",
                "--batch",
                "--init-command=FLUSH PRIVILEGES",
            ])
            .stdin(Stdio::from(events))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output();
        let applied = match applied {
            Ok(applied) => applied,
            Err(e) => {
                let _ = reader.kill();
                let _ = reader.wait();
                return Err(LocalError::Command {
                    command: "mariadb".into(),
                    detail: e.to_string(),
                });
            }
        };
        let read = reader.wait().map_err(|e| LocalError::Command {
            command: "mariadb-binlog".into(),
            detail: e.to_string(),
        })?;
        let read_errors = reader_errors.join().unwrap_or_default();
        if !read.success() {
            return Err(LocalError::Other(format!(
                "reading the archived transactions failed ({read}): {}",
                String::from_utf8_lossy(&read_errors).trim()
            )));
        }
        if !applied.status.success() {
            return Err(LocalError::Other(format!(
                "replaying the archived transactions into {name} failed ({}): {}",
                applied.status,
                String::from_utf8_lossy(&applied.stderr).trim()
            )));
        }
        Ok(())
    })
    .await
    .map_err(|e| LocalError::Other(format!("the replay task failed: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backup::binlog::tests::{fde, gtid, query, xid};

    fn segment(sequence: u64, after: &str, last: &str, stored: u64) -> Segment {
        Segment {
            stored_unix_ms: stored,
            covered_unix_ms: stored,
            ..archive::fixture(sequence, after, last)
        }
    }

    fn backup(id: &str, position: &str, finished_unix_ms: u64) -> Manifest {
        crate::backup::manifest::fixture(id, position, finished_unix_ms)
    }

    fn pos(text: &str) -> MariadbPosition {
        MariadbPosition::parse(text).unwrap()
    }

    #[test]
    fn the_newest_backup_before_the_target_is_the_base() {
        // Newest first, as listed.
        let backups = [
            backup("b2", "0-1-20", 200_500),
            backup("b1", "0-1-10", 100_000),
        ];
        let segments = vec![
            segment(1, "", "0-1-15", 150_000),
            segment(2, "0-1-15", "0-1-30", 300_000),
        ];
        let p = plan(
            &backups,
            None,
            Target::Time(200),
            segments.clone(),
            &pos("0-1-30"),
            300_000,
        )
        .unwrap();
        assert_eq!(p.backup.id, "b2");
        assert_eq!(p.segments.len(), 1);
        let p = plan(
            &backups,
            None,
            Target::Time(199),
            segments.clone(),
            &pos("0-1-30"),
            300_000,
        )
        .unwrap();
        assert_eq!(p.backup.id, "b1");
        assert_eq!(p.segments.len(), 2);
        let e = plan(
            &backups,
            None,
            Target::Time(50),
            segments.clone(),
            &pos("0-1-30"),
            300_000,
        )
        .unwrap_err();
        assert!(e.contains("no backup was taken before"), "{e}");
        let e = plan(
            &backups,
            None,
            Target::Time(299),
            segments.clone(),
            &pos("0-1-30"),
            300_000,
        )
        .unwrap_err();
        assert!(e.contains("covers only up to"), "{e}");
        let e = plan(
            &backups,
            Some("b2"),
            Target::Time(150),
            segments.clone(),
            &pos("0-1-30"),
            300_000,
        )
        .unwrap_err();
        assert!(e.contains("taken after"), "{e}");
        let p = plan(
            &backups,
            None,
            Target::Gtid(pos("0-1-25")),
            segments,
            &pos("0-1-30"),
            0,
        )
        .unwrap();
        assert_eq!(p.backup.id, "b2");
        assert!(plan(&backups, None, Target::Time(200), vec![], &pos(""), 0).is_err());
    }

    #[test]
    fn a_replay_file_holds_the_transactions_past_the_backup_up_to_the_target() {
        let mut bytes = MAGIC.to_vec();
        bytes.extend(fde(true));
        let mut tx = |seq: u64, ts: u32| {
            let start = bytes.len();
            bytes.extend(gtid(seq, 0, 1, ts, 0));
            bytes.extend(query("BEGIN", "d"));
            bytes.extend(xid());
            (start, bytes.len())
        };
        let _t5 = tx(5, 100);
        let t6 = tx(6, 101);
        let t7 = tx(7, 101);
        let _t8 = tx(8, 102);
        let s = segment(1, "0-1-4", "0-1-8", 0);
        let use_ = SegmentUse {
            sequence: 1,
            until: None,
        };
        let mut reached = pos("0-1-5");
        let (file, done) = select(&bytes, &s, &use_, &Target::Time(101), &mut reached).unwrap();
        assert!(done);
        assert_eq!(reached, pos("0-1-7"));
        let mut expected = MAGIC.to_vec();
        expected.extend(fde(true));
        expected.extend_from_slice(&bytes[t6.0..t6.1]);
        expected.extend_from_slice(&bytes[t7.0..t7.1]);
        assert_eq!(file, expected);
        // An orphaned tail past `until` is left out, and the replay goes on elsewhere.
        let cut = SegmentUse {
            sequence: 1,
            until: Some(pos("0-1-6")),
        };
        let mut reached = pos("0-1-5");
        let (file, done) = select(&bytes, &s, &cut, &Target::Time(999), &mut reached).unwrap();
        assert!(!done);
        assert_eq!(reached, pos("0-1-6"));
        assert_eq!(file.len(), MAGIC.len() + fde(true).len() + (t6.1 - t6.0));
        let mut broken = bytes.clone();
        broken[0] = 0;
        assert!(select(&broken, &s, &use_, &Target::Time(101), &mut pos("0-1-5")).is_err());
    }
}
