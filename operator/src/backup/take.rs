//! Taking a backup, wherever the copy comes from (a local `mariadb-backup`, or a member pod's
//! agent): the stream compressed into its object, and the manifest written only once the
//! object is complete. Anything that fails removes what it wrote, so a failed backup leaves
//! nothing and touches no other backup.

use bytes::Bytes;

use super::BackupError;
use super::manifest::{self, Manifest};
use super::pipeline::Stored;
#[cfg(doc)]
use super::pipeline::compress_into;
use super::store::{ObjectWriter, Store};

/// Who the backup is of, and when it started.
#[derive(Debug, Clone)]
pub struct Taking {
    pub id: String,
    pub cluster: String,
    pub member: String,
    pub server_version: String,
    pub started_unix_ms: u64,
}

impl Taking {
    pub fn new(cluster: &str, member: &str, server_version: String, started_unix_ms: u64) -> Self {
        Self {
            id: manifest::backup_id(cluster, started_unix_ms),
            cluster: cluster.to_string(),
            member: member.to_string(),
            server_version,
            started_unix_ms,
        }
    }

    pub fn object(&self) -> String {
        manifest::object_name(&self.id)
    }
}

/// Completes a backup whose stream went through [`compress_into`] into `writer` (opened on
/// `store` for [`Taking::object`]): when both the compression (`stored`) and the copy itself
/// (`finished`) ended well, the object is completed and its manifest written. On any failure
/// the object is aborted or removed.
pub async fn complete(
    store: &Store,
    taking: &Taking,
    writer: ObjectWriter,
    stored: Result<Stored, BackupError>,
    finished: Result<(), BackupError>,
) -> Result<Manifest, BackupError> {
    let stored = match (stored, finished) {
        (Ok(stored), Ok(())) => stored,
        (Err(e), _) | (_, Err(e)) => {
            writer.abort().await;
            return Err(e);
        }
    };
    let gtid_position = match stored.position {
        Ok(position) => position,
        Err(why) => {
            writer.abort().await;
            return Err(BackupError::Manifest(format!(
                "the backup's GTID position: {why}"
            )));
        }
    };
    writer.finish().await?;
    let finished_ms = crate::clock::unix_ms();
    let object = taking.object();
    let manifest = Manifest {
        format: manifest::FORMAT,
        id: taking.id.clone(),
        cluster: taking.cluster.clone(),
        member: taking.member.clone(),
        gtid_position,
        server_version: taking.server_version.clone(),
        started_at: manifest::rfc3339(taking.started_unix_ms),
        finished_at: manifest::rfc3339(finished_ms),
        started_unix_ms: taking.started_unix_ms,
        finished_unix_ms: finished_ms,
        object: object.clone(),
        stream_bytes: stored.stream_bytes,
        stored_bytes: stored.stored_bytes,
        sha256: stored.sha256,
    };
    let json = serde_json::to_vec_pretty(&manifest)
        .map_err(|e| BackupError::Manifest(format!("the manifest: {e}")))?;
    if let Err(e) = store
        .put_new(&manifest::manifest_name(&taking.id), Bytes::from(json))
        .await
    {
        // Without its manifest the object is no backup: not left to take space.
        let _ = store.delete(&object).await;
        return Err(e);
    }
    tracing::info!(id = %taking.id, bytes = manifest.stored_bytes, "backup complete");
    Ok(manifest)
}
