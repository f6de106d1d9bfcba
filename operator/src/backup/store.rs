//! Objects in a directory or an S3 bucket: written as a stream and made visible only once
//! complete (a directory's file is renamed into place; an S3 multipart upload exists only
//! once completed), read back as a stream.

use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;

use super::BackupError;
use super::location::Location;
use super::s3::{S3, S3Options};

/// S3 parts: at least 5 MiB apart from the last, at most 10,000 of them; they grow as an
/// object does, so a large one stays within that count.
const PART: usize = 16 << 20;

fn part_size(parts_so_far: u32) -> usize {
    PART << (parts_so_far / 1000).min(6)
}

pub enum Store {
    Dir(PathBuf),
    S3(S3),
}

impl Store {
    pub fn open(location: &Location, s3: Option<&S3Options>) -> Result<Self, BackupError> {
        match location {
            Location::Dir(path) => Ok(Self::Dir(path.clone())),
            Location::S3 { bucket, prefix } => {
                let options = s3.ok_or_else(|| {
                    BackupError::Location(format!(
                        "{location} needs S3 credentials: --s3-credentials FILE, or \
                         AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
                    ))
                })?;
                Ok(Self::S3(S3::new(bucket, prefix, options)?))
            }
        }
    }

    fn dir_missing(path: &Path) -> BackupError {
        BackupError::NotFound {
            what: "the directory".into(),
            location: path.display().to_string(),
        }
    }

    /// Writes a small object that must not exist yet (a manifest): in a directory an existing
    /// one is never replaced; S3 has no such check here, and ids are unique to the millisecond
    /// and cluster.
    pub async fn put_new(&self, name: &str, bytes: Bytes) -> Result<(), BackupError> {
        self.put(name, bytes, false).await
    }

    /// Writes a small object, replacing one of that name (a high-water mark): in a directory
    /// by a rename, so a reader sees the old or the new one whole.
    pub async fn put_over(&self, name: &str, bytes: Bytes) -> Result<(), BackupError> {
        self.put(name, bytes, true).await
    }

    async fn put(&self, name: &str, bytes: Bytes, replace: bool) -> Result<(), BackupError> {
        match self {
            Self::Dir(dir) => {
                tokio::fs::create_dir_all(dir)
                    .await
                    .map_err(BackupError::io(dir))?;
                let path = dir.join(name);
                let partial = dir.join(format!(".{name}.partial"));
                write_synced(&partial, &bytes).await?;
                let placed = if replace {
                    tokio::fs::rename(&partial, &path).await
                } else {
                    // A hard link fails if the name is taken: an existing file is never
                    // replaced.
                    let linked = tokio::fs::hard_link(&partial, &path).await;
                    let _ = tokio::fs::remove_file(&partial).await;
                    linked
                };
                placed.map_err(BackupError::io(&path))?;
                sync_dir(dir).await
            }
            Self::S3(s3) => s3.put(&s3.key(name), bytes).await,
        }
    }

    pub async fn get_small(&self, name: &str) -> Result<Bytes, BackupError> {
        match self {
            Self::Dir(dir) => {
                let path = dir.join(name);
                match tokio::fs::read(&path).await {
                    Ok(bytes) => Ok(Bytes::from(bytes)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        Err(BackupError::NotFound {
                            what: name.to_string(),
                            location: dir.display().to_string(),
                        })
                    }
                    Err(e) => Err(BackupError::io(&path)(e)),
                }
            }
            Self::S3(s3) => s3.get_small(&s3.key(name)).await,
        }
    }

    /// The names of the objects stored (not those being written).
    pub async fn names(&self) -> Result<Vec<String>, BackupError> {
        match self {
            Self::Dir(dir) => {
                let mut entries = match tokio::fs::read_dir(dir).await {
                    Ok(entries) => entries,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        return Err(Self::dir_missing(dir));
                    }
                    Err(e) => return Err(BackupError::io(dir)(e)),
                };
                let mut names = Vec::new();
                while let Some(entry) = entries.next_entry().await.map_err(BackupError::io(dir))? {
                    let name = entry.file_name().to_string_lossy().into_owned();
                    if !name.starts_with('.') {
                        names.push(name);
                    }
                }
                Ok(names)
            }
            Self::S3(s3) => {
                let prefix = s3.key("");
                Ok(s3
                    .list()
                    .await?
                    .into_iter()
                    .filter_map(|(key, _)| key.strip_prefix(&prefix).map(str::to_string))
                    .collect())
            }
        }
    }

    pub async fn delete(&self, name: &str) -> Result<(), BackupError> {
        match self {
            Self::Dir(dir) => {
                let path = dir.join(name);
                match tokio::fs::remove_file(&path).await {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        Err(BackupError::io(&path)(e))
                    }
                    _ => Ok(()),
                }
            }
            Self::S3(s3) => s3.delete(&s3.key(name)).await,
        }
    }

    /// Starts writing object `name`, which must not exist.
    pub async fn writer(&self, name: &str) -> Result<ObjectWriter, BackupError> {
        match self {
            Self::Dir(dir) => {
                tokio::fs::create_dir_all(dir)
                    .await
                    .map_err(BackupError::io(dir))?;
                let path = dir.join(name);
                if tokio::fs::try_exists(&path).await.unwrap_or(false) {
                    return Err(BackupError::Location(format!(
                        "{} exists already",
                        path.display()
                    )));
                }
                let partial = dir.join(format!(".{name}.partial"));
                let file = tokio::fs::File::create(&partial)
                    .await
                    .map_err(BackupError::io(&partial))?;
                Ok(ObjectWriter::File {
                    file,
                    partial,
                    path,
                })
            }
            Self::S3(s3) => {
                let key = s3.key(name);
                let upload = s3.create_upload(&key).await?;
                Ok(ObjectWriter::S3(Box::new(Upload {
                    s3: s3.clone(),
                    key,
                    upload,
                    buf: BytesMut::new(),
                    etags: Vec::new(),
                    in_flight: None,
                })))
            }
        }
    }

    pub async fn reader(&self, name: &str) -> Result<ObjectReader, BackupError> {
        match self {
            Self::Dir(dir) => {
                let path = dir.join(name);
                match tokio::fs::File::open(&path).await {
                    Ok(file) => Ok(ObjectReader::File(file, path)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        Err(BackupError::NotFound {
                            what: name.to_string(),
                            location: dir.display().to_string(),
                        })
                    }
                    Err(e) => Err(BackupError::io(&path)(e)),
                }
            }
            Self::S3(s3) => {
                let key = s3.key(name);
                let body = s3.get(&key).await?;
                Ok(ObjectReader::S3(body, s3.clone(), key))
            }
        }
    }
}

async fn write_synced(path: &Path, bytes: &[u8]) -> Result<(), BackupError> {
    let mut file = tokio::fs::File::create(path)
        .await
        .map_err(BackupError::io(path))?;
    file.write_all(bytes).await.map_err(BackupError::io(path))?;
    file.sync_all().await.map_err(BackupError::io(path))
}

/// Makes a rename or link in `dir` durable.
async fn sync_dir(dir: &Path) -> Result<(), BackupError> {
    let handle = tokio::fs::File::open(dir)
        .await
        .map_err(BackupError::io(dir))?;
    handle.sync_all().await.map_err(BackupError::io(dir))
}

/// An S3 multipart upload under way: one part uploads while the next fills.
pub struct Upload {
    s3: S3,
    key: String,
    upload: String,
    buf: BytesMut,
    etags: Vec<String>,
    in_flight: Option<JoinHandle<Result<String, BackupError>>>,
}

impl Upload {
    fn parts(&self) -> u32 {
        u32::try_from(self.etags.len()).unwrap_or(u32::MAX) + u32::from(self.in_flight.is_some())
    }

    async fn wait_in_flight(&mut self) -> Result<(), BackupError> {
        if let Some(task) = self.in_flight.take() {
            let etag = task.await.map_err(|e| BackupError::Storage {
                location: self.key.clone(),
                detail: format!("the upload task failed: {e}"),
            })??;
            self.etags.push(etag);
        }
        Ok(())
    }

    async fn send_part(&mut self) -> Result<(), BackupError> {
        self.wait_in_flight().await?;
        let body = self.buf.split().freeze();
        let number = self.parts() + 1;
        let (s3, key, upload) = (self.s3.clone(), self.key.clone(), self.upload.clone());
        self.in_flight = Some(tokio::spawn(async move {
            s3.upload_part(&key, &upload, number, body).await
        }));
        Ok(())
    }
}

/// An object being written: [`ObjectWriter::finish`] makes it visible,
/// [`ObjectWriter::abort`] removes what was written.
pub enum ObjectWriter {
    File {
        file: tokio::fs::File,
        partial: PathBuf,
        path: PathBuf,
    },
    S3(Box<Upload>),
}

impl ObjectWriter {
    pub async fn write(&mut self, data: &[u8]) -> Result<(), BackupError> {
        match self {
            Self::File { file, partial, .. } => {
                file.write_all(data).await.map_err(BackupError::io(partial))
            }
            Self::S3(up) => {
                up.buf.extend_from_slice(data);
                if up.buf.len() >= part_size(up.parts()) {
                    up.send_part().await?;
                }
                Ok(())
            }
        }
    }

    pub async fn finish(self) -> Result<(), BackupError> {
        match self {
            Self::File {
                file,
                partial,
                path,
            } => {
                file.sync_all().await.map_err(BackupError::io(&partial))?;
                drop(file);
                let linked = tokio::fs::hard_link(&partial, &path).await;
                let _ = tokio::fs::remove_file(&partial).await;
                linked.map_err(BackupError::io(&path))?;
                match path.parent() {
                    Some(dir) => sync_dir(dir).await,
                    None => Ok(()),
                }
            }
            Self::S3(mut up) => {
                // The last part may be small, and an empty object is one empty part.
                if !up.buf.is_empty() || up.parts() == 0 {
                    up.send_part().await?;
                }
                up.wait_in_flight().await?;
                up.s3.complete_upload(&up.key, &up.upload, &up.etags).await
            }
        }
    }

    /// Removes what was written; nothing of it stays visible (or billed).
    pub async fn abort(self) {
        match self {
            Self::File { file, partial, .. } => {
                drop(file);
                let _ = tokio::fs::remove_file(&partial).await;
            }
            Self::S3(mut up) => {
                let _ = up.wait_in_flight().await;
                if let Err(e) = up.s3.abort_upload(&up.key, &up.upload).await {
                    tracing::warn!(key = %up.key, "could not abort the upload: {e}");
                }
            }
        }
    }
}

pub enum ObjectReader {
    File(tokio::fs::File, PathBuf),
    S3(Incoming, S3, String),
}

impl ObjectReader {
    /// The next piece of the object; `None` at its end.
    pub async fn next(&mut self) -> Result<Option<Bytes>, BackupError> {
        match self {
            Self::File(file, path) => {
                let mut buf = vec![0u8; 1 << 20];
                let n = file.read(&mut buf).await.map_err(BackupError::io(path))?;
                buf.truncate(n);
                Ok((n > 0).then(|| Bytes::from(buf)))
            }
            Self::S3(body, s3, key) => loop {
                match body.frame().await {
                    None => return Ok(None),
                    Some(Err(e)) => return Err(s3.broken(key, format!("reading: {e}"))),
                    Some(Ok(frame)) => {
                        if let Ok(data) = frame.into_data()
                            && !data.is_empty()
                        {
                            return Ok(Some(data));
                        }
                    }
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_grow_to_stay_within_the_limit() {
        assert_eq!(part_size(0), 16 << 20);
        assert_eq!(part_size(999), 16 << 20);
        assert_eq!(part_size(1000), 32 << 20);
        let most: u64 = (0..10_000u32).map(|n| part_size(n) as u64).sum();
        assert!(most > 1 << 40, "10,000 parts hold over a TiB");
    }

    #[tokio::test]
    async fn a_directory_object_is_visible_only_once_finished() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::Dir(dir.path().join("b"));
        let mut w = store.writer("x.zst").await.unwrap();
        w.write(b"hello").await.unwrap();
        assert!(store.names().await.unwrap().is_empty());
        w.finish().await.unwrap();
        assert_eq!(store.names().await.unwrap(), ["x.zst"]);
        assert!(store.writer("x.zst").await.is_err(), "never overwritten");
        let mut w = store.writer("y.zst").await.unwrap();
        w.write(b"half").await.unwrap();
        w.abort().await;
        assert_eq!(store.names().await.unwrap(), ["x.zst"]);
        store
            .put_new("m.json", Bytes::from_static(b"{}"))
            .await
            .unwrap();
        assert!(
            store
                .put_new("m.json", Bytes::from_static(b"[]"))
                .await
                .is_err()
        );
        assert_eq!(&store.get_small("m.json").await.unwrap()[..], b"{}");
        let mut r = store.reader("x.zst").await.unwrap();
        assert_eq!(&r.next().await.unwrap().unwrap()[..], b"hello");
        assert!(r.next().await.unwrap().is_none());
    }
}
