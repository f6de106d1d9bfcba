//! The certificate files of a directory (the local runtime's `<dir>/tls`): kept issued by the
//! operator's own CA, renewed when due, replaced atomically so a reader never sees half a
//! file.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::authority::{self, Authority, IssueError, Issued};
use super::{CA_FILE, CERT_FILE, KEY_FILE};

/// The CA's private key; never leaves the directory.
pub const CA_KEY_FILE: &str = "ca.key";
/// When `tls.crt` expires, in Unix seconds.
pub const NOT_AFTER_FILE: &str = "tls.not-after";

/// Why the files could not be kept.
#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Issue(#[from] IssueError),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> FilesError + '_ {
    move |source| FilesError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The certificate files in one directory.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub dir: PathBuf,
}

impl TlsFiles {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn ca(&self) -> PathBuf {
        self.dir.join(CA_FILE)
    }

    pub fn cert(&self) -> PathBuf {
        self.dir.join(CERT_FILE)
    }

    pub fn key(&self) -> PathBuf {
        self.dir.join(KEY_FILE)
    }

    /// Creates the CA if there is none and issues a certificate for `names` if there is none
    /// or it is due for renewal. Returns whether a certificate was issued.
    pub fn ensure(
        &self,
        cluster: &str,
        names: &[String],
        now: SystemTime,
    ) -> Result<bool, FilesError> {
        let authority = self.authority(cluster, now)?;
        let not_after = std::fs::read_to_string(self.dir.join(NOT_AFTER_FILE))
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok());
        let current = self.cert().exists() && self.key().exists();
        match not_after {
            Some(t) if current && !authority::due(t, now) => Ok(false),
            _ => {
                self.write_issued(&authority.issue(names, now)?)?;
                Ok(true)
            }
        }
    }

    /// Issues a new certificate for `names` now, whatever the current one's age.
    pub fn renew(
        &self,
        cluster: &str,
        names: &[String],
        now: SystemTime,
    ) -> Result<Issued, FilesError> {
        let authority = self.authority(cluster, now)?;
        let issued = authority.issue(names, now)?;
        self.write_issued(&issued)?;
        Ok(issued)
    }

    fn authority(&self, cluster: &str, now: SystemTime) -> Result<Authority, FilesError> {
        std::fs::create_dir_all(&self.dir).map_err(io(&self.dir))?;
        let (ca, ca_key) = (self.ca(), self.dir.join(CA_KEY_FILE));
        if let (Ok(cert_pem), Ok(key_pem)) = (
            std::fs::read_to_string(&ca),
            std::fs::read_to_string(&ca_key),
        ) {
            return Ok(Authority {
                cluster: cluster.to_string(),
                cert_pem,
                key_pem,
            });
        }
        let authority = Authority::create(cluster, now)?;
        write_atomic(&ca_key, authority.key_pem.as_bytes(), 0o600)?;
        write_atomic(&ca, authority.cert_pem.as_bytes(), 0o644)?;
        // A new CA voids any certificate of an old one.
        let _ = std::fs::remove_file(self.dir.join(NOT_AFTER_FILE));
        Ok(authority)
    }

    fn write_issued(&self, issued: &Issued) -> Result<(), FilesError> {
        // The key first: a reader that sees the new certificate must find its key.
        write_atomic(&self.key(), issued.key_pem.as_bytes(), 0o600)?;
        write_atomic(&self.cert(), issued.cert_pem.as_bytes(), 0o644)?;
        write_atomic(
            &self.dir.join(NOT_AFTER_FILE),
            issued.not_after.to_string().as_bytes(),
            0o644,
        )
    }

    /// A fingerprint of the three files as they are now (inode, size, modification time: a
    /// few `stat`s, cheap enough for every tick): it changes whenever one is replaced, so a
    /// watcher knows to reload.
    pub fn fingerprint(&self) -> Option<u64> {
        use std::hash::{Hash, Hasher};
        use std::os::unix::fs::MetadataExt;
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        for path in [self.cert(), self.key(), self.ca()] {
            let m = std::fs::metadata(path).ok()?;
            (m.ino(), m.len(), m.mtime(), m.mtime_nsec()).hash(&mut hasher);
        }
        Some(hasher.finish())
    }
}

/// Writes `bytes` to a temporary file beside `path` with `mode`, then renames it over `path`.
fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), FilesError> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io(&tmp))?;
    file.write_all(bytes).map_err(io(&tmp))?;
    file.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::time::Duration;

    #[test]
    fn ensure_issues_once_and_renews_when_due() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = TlsFiles::new(dir.path().join("tls"));
        let names = crate::tls::local_names();
        let now = SystemTime::now();
        assert!(files.ensure("db", &names, now).expect("first"));
        let first = files.fingerprint().expect("files");
        let ca = std::fs::read(files.ca()).expect("ca");
        assert!(!files.ensure("db", &names, now).expect("second"));
        assert_eq!(files.fingerprint().expect("files"), first);
        // Two months on, the certificate is renewed by the same CA.
        let later = now + Duration::from_secs(61 * 24 * 3600);
        assert!(files.ensure("db", &names, later).expect("due"));
        assert_ne!(files.fingerprint().expect("files"), first);
        assert_eq!(std::fs::read(files.ca()).expect("ca"), ca);
        for private in [files.key(), files.dir.join(CA_KEY_FILE)] {
            let mode = std::fs::metadata(&private)
                .expect("key")
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "{} is private", private.display());
        }
    }
}
