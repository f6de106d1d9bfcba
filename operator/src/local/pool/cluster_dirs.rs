//! Each cluster of a pool is an ordinary local cluster with a state directory of its own under
//! `<pool>/clusters/`: written here from the pool's expansion before its supervisor starts.

use std::path::Path;

use crate::local::LocalError;
use crate::local::state::{LocalCredentials, Settings, read_json, write_json};

use super::PoolDir;
use super::layout::LocalCluster;

/// The settings cluster `name` of the pool had at an earlier `up`, if any.
pub fn previous_settings(dir: &PoolDir, name: &str) -> Option<Settings> {
    read_json(&dir.cluster(name).settings()).ok()
}

/// Writes `cluster`'s state directory: its manifest and settings, the pool's accounts (every
/// cluster has the same, so the proxies log in to any of them as the client), and links to
/// the pool's template data directory and, with TLS, its certificate files (one CA for all).
/// A status left by an earlier run is removed, so it is not mistaken for this one's.
pub fn write(
    dir: &PoolDir,
    cluster: &LocalCluster,
    creds: &LocalCredentials,
    tls: bool,
) -> Result<(), LocalError> {
    let state = dir.cluster(cluster.name());
    std::fs::create_dir_all(state.root()).map_err(LocalError::io(state.root()))?;
    let yaml = serde_saphyr::to_string(&cluster.cluster)
        .map_err(|e| LocalError::Other(format!("{}: {e}", cluster.name())))?;
    let manifest = state.manifest();
    let text = format!(
        "# Cluster {} of tenant pool {}, made by lagless-operator local from the pool's \
         pool.yaml: edits are overwritten at the next `up`.\n{yaml}",
        cluster.name(),
        cluster.settings.pool.as_deref().unwrap_or_default(),
    );
    std::fs::write(&manifest, text).map_err(LocalError::io(&manifest))?;
    write_json(&state.settings(), &cluster.settings, 0o644)?;
    write_json(&state.credentials(), creds, 0o600)?;
    link(&dir.template(), &state.template())?;
    if tls {
        link(&dir.tls(), &state.tls())?;
    }
    match std::fs::remove_file(state.status()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(LocalError::io(&state.status())(e)),
    }
}

/// Makes `link` point at `target`, unless something is there already (a cluster that built
/// its own keeps it).
fn link(target: &Path, link: &Path) -> Result<(), LocalError> {
    if link.symlink_metadata().is_ok() {
        return Ok(());
    }
    std::os::unix::fs::symlink(target, link).map_err(LocalError::io(link))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::local::pool::PoolSettings;
    use crate::local::pool::layout::local_clusters;

    #[test]
    fn a_written_cluster_reads_back_as_a_local_cluster() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = PoolDir::new(tmp.path());
        let pool = crate::local::manifest::parse_pool(
            "apiVersion: lagless.dev/v1alpha1\nkind: MySQLTenantPool\nmetadata: {name: demo}\n\
             spec: {clusters: {min: 1}, clusterTemplate: {tls: {}}}\n",
            Path::new("pool.yaml"),
        )
        .unwrap();
        let settings = PoolSettings {
            pool: "demo".into(),
            base_port: 4000,
            proxy_port: 5000,
            clusters: 1,
        };
        let clusters = local_clusters(&pool, &settings, |_| None).unwrap();
        let creds = LocalCredentials::generate().unwrap();
        std::fs::create_dir_all(dir.template()).unwrap();
        for cluster in &clusters {
            write(&dir, cluster, &creds, true).unwrap();
        }
        let state = dir.cluster("demo-c0");
        std::fs::write(state.status(), "{}").unwrap();
        // Written again (a second `up`): the status goes, the links stay.
        write(&dir, &clusters[1], &creds, true).unwrap();
        assert!(!state.status().exists());
        let back = crate::local::manifest::load(&state.manifest()).unwrap();
        assert_eq!(back.spec, clusters[1].cluster.spec);
        assert_eq!(back.metadata.name.as_deref(), Some("demo-c0"));
        assert_eq!(
            previous_settings(&dir, "demo-c0"),
            Some(clusters[1].settings.clone())
        );
        let copied: LocalCredentials = read_json(&state.credentials()).unwrap();
        assert_eq!(copied, creds);
        assert_eq!(
            std::fs::read_link(state.template()).unwrap(),
            dir.template()
        );
        assert_eq!(std::fs::read_link(state.tls()).unwrap(), dir.tls());
        assert_eq!(dir.cluster_names(), ["demo-c0", "demo-directory"]);
    }
}
