//! What a backup records about itself, kept beside the object as `<id>.json` and written only
//! once the object is complete: a backup without a manifest is not a backup, and listings and
//! restores never see it.

use serde::{Deserialize, Serialize};

use super::BackupError;
use super::sigv4::civil;

pub const MANIFEST_SUFFIX: &str = ".json";
pub const OBJECT_SUFFIX: &str = ".xbstream.zst";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    /// 1: a zstd-compressed `mariadb-backup --stream=xbstream`.
    pub format: u32,
    pub id: String,
    pub cluster: String,
    /// The member the copy was taken from.
    pub member: String,
    /// The GTID position the copy is consistent with (`@@gtid_binlog_pos` at that point);
    /// empty if the member had written no GTID.
    pub gtid_position: String,
    pub server_version: String,
    pub started_at: String,
    pub finished_at: String,
    pub started_unix_ms: u64,
    pub finished_unix_ms: u64,
    /// The object's name beside the manifest.
    pub object: String,
    /// Bytes of the uncompressed stream.
    pub stream_bytes: u64,
    /// Bytes of the stored (compressed) object.
    pub stored_bytes: u64,
    /// Of the stored object, lowercase hex.
    pub sha256: String,
}

pub const FORMAT: u32 = 1;

/// `<cluster>-<UTC time to the millisecond>`: sorts by time within a cluster, and two backups
/// of one cluster never share it.
pub fn backup_id(cluster: &str, unix_ms: u64) -> String {
    let (y, mo, d, h, mi, s) = civil(unix_ms / 1000);
    format!(
        "{cluster}-{y:04}{mo:02}{d:02}T{h:02}{mi:02}{s:02}.{:03}Z",
        unix_ms % 1000
    )
}

pub fn rfc3339(unix_ms: u64) -> String {
    let (y, mo, d, h, mi, s) = civil(unix_ms / 1000);
    format!(
        "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{:03}Z",
        unix_ms % 1000
    )
}

pub fn manifest_name(id: &str) -> String {
    format!("{id}{MANIFEST_SUFFIX}")
}

pub fn object_name(id: &str) -> String {
    format!("{id}{OBJECT_SUFFIX}")
}

/// The backup ids that names in a listing stand for (their manifests).
pub fn ids_listed<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    names
        .into_iter()
        .filter_map(|n| n.strip_suffix(MANIFEST_SUFFIX))
        .filter(|id| !id.is_empty() && !id.contains('/'))
        .map(str::to_string)
        .collect()
}

pub fn parse(id: &str, bytes: &[u8]) -> Result<Manifest, BackupError> {
    let manifest: Manifest = serde_json::from_slice(bytes)
        .map_err(|e| BackupError::Manifest(format!("the manifest of backup {id}: {e}")))?;
    if manifest.format != FORMAT {
        return Err(BackupError::Manifest(format!(
            "backup {id} has format {}; this version reads format {FORMAT}",
            manifest.format
        )));
    }
    if manifest.id != id {
        return Err(BackupError::Manifest(format!(
            "the manifest {} names backup {}",
            manifest_name(id),
            manifest.id
        )));
    }
    // The object is read and deleted by this name: never anything but the backup's own.
    if manifest.object != object_name(id) {
        return Err(BackupError::Manifest(format!(
            "the manifest {} names object {}, not {}",
            manifest_name(id),
            manifest.object,
            object_name(id)
        )));
    }
    Ok(manifest)
}

/// Newest first: by end time, then id.
pub fn newest_first(manifests: &mut [Manifest]) {
    manifests.sort_by(|a, b| (b.finished_unix_ms, &b.id).cmp(&(a.finished_unix_ms, &a.id)));
}

/// The backup asked for, or the newest. `manifests` is newest first.
pub fn choose<'a>(manifests: &'a [Manifest], id: Option<&str>) -> Result<&'a Manifest, String> {
    match id {
        Some(id) => manifests.iter().find(|m| m.id == id).ok_or_else(|| {
            let known: Vec<&str> = manifests.iter().take(5).map(|m| m.id.as_str()).collect();
            if known.is_empty() {
                format!("no backup {id}: there are no backups there")
            } else {
                format!("no backup {id}; the newest are {}", known.join(", "))
            }
        }),
        None => manifests
            .first()
            .ok_or_else(|| "there are no backups there".to_string()),
    }
}

/// The backups to delete so that the newest `keep` remain: only complete ones (with a
/// manifest) are counted and deleted. `manifests` is newest first.
pub fn beyond(manifests: &[Manifest], keep: usize) -> &[Manifest] {
    &manifests[keep.min(manifests.len())..]
}

/// A backup of cluster `shop` for tests: `id`, at GTID `position`, finished at
/// `finished_unix_ms`.
#[cfg(test)]
pub(crate) fn fixture(id: &str, position: &str, finished_unix_ms: u64) -> Manifest {
    let started = finished_unix_ms.saturating_sub(10);
    Manifest {
        format: FORMAT,
        id: id.into(),
        cluster: "shop".into(),
        member: "shop-1".into(),
        gtid_position: position.into(),
        server_version: "10.11".into(),
        started_at: rfc3339(started),
        finished_at: rfc3339(finished_unix_ms),
        started_unix_ms: started,
        finished_unix_ms,
        object: object_name(id),
        stream_bytes: 10,
        stored_bytes: 5,
        sha256: "00".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(id: &str, finished: u64) -> Manifest {
        fixture(id, "10-1001-5", finished)
    }

    #[test]
    fn ids_and_times() {
        assert_eq!(
            backup_id("shop", 1_765_070_100_123),
            "shop-20251207T011500.123Z"
        );
        assert_eq!(rfc3339(1_765_070_100_004), "2025-12-07T01:15:00.004Z");
        assert_eq!(
            ids_listed(["a.json", "a.xbstream.zst", "b.json", ".json", "x/c.json"]),
            ["a", "b"]
        );
    }

    #[test]
    fn newest_first_and_chosen() {
        let mut all = vec![manifest("a", 100), manifest("c", 300), manifest("b", 200)];
        newest_first(&mut all);
        let ids: Vec<&str> = all.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, ["c", "b", "a"]);
        assert_eq!(choose(&all, None).unwrap().id, "c");
        assert_eq!(choose(&all, Some("a")).unwrap().id, "a");
        assert!(choose(&all, Some("z")).unwrap_err().contains("c, b, a"));
        assert!(choose(&[], None).is_err());
        let gone: Vec<&str> = beyond(&all, 2).iter().map(|m| m.id.as_str()).collect();
        assert_eq!(gone, ["a"]);
        assert!(beyond(&all, 5).is_empty());
    }

    #[test]
    fn manifests_are_checked() {
        let m = manifest("a", 100);
        let bytes = serde_json::to_vec(&m).unwrap();
        assert_eq!(parse("a", &bytes).unwrap(), m);
        assert!(parse("b", &bytes).is_err());
        assert!(parse("a", b"{").is_err());
        // An object outside the backup's own name (a path elsewhere) is refused.
        let elsewhere = Manifest {
            object: "../../etc/passwd".into(),
            ..m.clone()
        };
        assert!(parse("a", &serde_json::to_vec(&elsewhere).unwrap()).is_err());
        let newer = Manifest { format: 2, ..m };
        assert!(parse("a", &serde_json::to_vec(&newer).unwrap()).is_err());
    }
}
