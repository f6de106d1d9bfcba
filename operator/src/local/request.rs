//! Requests from other terminals (`switchover`, `scale`, `reseed`, `pause`, `apply`, ...) to the running
//! supervisor: one JSON file each in `requests/`, taken oldest first; results appear in
//! `status.json`.

use serde::{Deserialize, Serialize};

use super::LocalError;
use super::state::{StateDir, write_json};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Request {
    pub id: String,
    #[serde(flatten)]
    pub kind: RequestKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum RequestKind {
    /// To the named member, or the best one.
    Switchover {
        to: Option<String>,
    },
    Scale {
        replicas: u32,
    },
    /// Empty a member and copy the data into it again (the way out of quarantine).
    Reseed {
        member: String,
    },
    /// Stop orchestrating (observe and report only) until `Resume`.
    Pause,
    Resume,
    /// Keep a member out of read routing until `Uncordon`.
    Cordon {
        member: String,
    },
    Uncordon {
        member: String,
    },
    /// The whole cluster read-only (`on`) or writable again.
    ReadOnly {
        on: bool,
    },
    /// A changed `MySQLCluster` file (its text): its `serverConfig` is rolled through the
    /// members.
    Apply {
        manifest: String,
    },
    /// Restart every member, rolled as a configuration change is (after upgrading mariadbd).
    Restart,
}

/// Files a request; returns its id.
pub fn submit(dir: &StateDir, kind: RequestKind) -> Result<String, LocalError> {
    let requests = dir.requests();
    std::fs::create_dir_all(&requests).map_err(LocalError::io(&requests))?;
    // Two requests of one process in the same millisecond keep their order and both files.
    static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let id = format!(
        "{:013}-{}-{seq:06}",
        crate::clock::unix_ms(),
        std::process::id()
    );
    let request = Request {
        id: id.clone(),
        kind,
    };
    write_json(&requests.join(format!("{id}.json")), &request, 0o600)?;
    Ok(id)
}

/// Takes the oldest request (removing its file). Unreadable files are dropped with a warning.
pub fn next(dir: &StateDir) -> Option<Request> {
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(dir.requests())
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    for file in files {
        let parsed = std::fs::read(&file)
            .ok()
            .and_then(|b| serde_json::from_slice::<Request>(&b).ok());
        let _ = std::fs::remove_file(&file);
        match parsed {
            Some(request) => return Some(request),
            None => tracing::warn!(file = %file.display(), "ignoring an unreadable request"),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_taken_oldest_first_and_once() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = StateDir::new(tmp.path());
        // Back to back, most likely within one millisecond.
        let a = submit(&dir, RequestKind::Scale { replicas: 4 }).unwrap();
        let b = submit(
            &dir,
            RequestKind::Switchover {
                to: Some("x-1".into()),
            },
        )
        .unwrap();
        std::fs::write(dir.requests().join("0000000000000-junk.json"), "{").unwrap();
        let first = next(&dir).unwrap();
        assert_eq!(first.id, a);
        assert_eq!(first.kind, RequestKind::Scale { replicas: 4 });
        let second = next(&dir).unwrap();
        assert_eq!(second.id, b);
        assert_eq!(
            second.kind,
            RequestKind::Switchover {
                to: Some("x-1".into())
            }
        );
        assert!(next(&dir).is_none());
    }
}
