//! Where a pool's clusters go on this machine, decided without touching it: each cluster's
//! member ports and local settings, which cluster a member belongs to, and the pool document
//! the proxies read.

use std::path::PathBuf;

use lagless_directory::PoolDocument;

use crate::crd::tenant_pool::{self, MySQLTenantPool, SERVER_IDS_PER_CLUSTER};
use crate::crd::{MAX_MEMBERS, MySQLCluster};
use crate::local::LocalError;
use crate::local::state::Settings;

use super::PoolSettings;

/// Member ports kept for each cluster: as many as a cluster may have members, and round.
pub const PORTS_PER_CLUSTER: u16 = 10;

const _: () = assert!(MAX_MEMBERS as u16 <= PORTS_PER_CLUSTER);
const _: () = assert!(SERVER_IDS_PER_CLUSTER == PORTS_PER_CLUSTER as u32);

/// One cluster of the pool as the local runtime runs it.
#[derive(Debug, Clone, PartialEq)]
pub struct LocalCluster {
    pub cluster: MySQLCluster,
    pub settings: Settings,
}

impl LocalCluster {
    pub fn name(&self) -> &str {
        &self.settings.cluster
    }
}

/// The first member port of the cluster in `slot`: 0 is the directory, tenant cluster `i` is
/// slot `i + 1`.
pub fn cluster_base_port(base: u16, slot: u32) -> Option<u16> {
    let port = u32::from(base).checked_add(slot.checked_mul(u32::from(PORTS_PER_CLUSTER))?)?;
    u16::try_from(port).ok()
}

/// Refuses ports that cannot work, before anything starts: the members of every cluster the
/// pool may grow to must fit below 65536 and stay clear of the proxies.
pub fn check_port_ranges(
    settings: &PoolSettings,
    max_clusters: u32,
    proxies: u32,
) -> Result<(), LocalError> {
    let slots = max_clusters.saturating_add(1);
    let members = u32::from(settings.base_port)
        ..u32::from(settings.base_port) + slots * u32::from(PORTS_PER_CLUSTER);
    if members.end > 65536 {
        return Err(LocalError::Usage(format!(
            "--base-port {} is too high: the directory and up to {max_clusters} clusters \
             (spec.clusters.max) take {} ports from it",
            settings.base_port,
            members.end - members.start
        )));
    }
    let proxy_ports =
        u32::from(settings.proxy_port)..u32::from(settings.proxy_port) + 2 * proxies.max(1);
    if proxy_ports.end > 65536 {
        return Err(LocalError::Usage(format!(
            "--proxy-port {} is too high for {proxies} proxies",
            settings.proxy_port
        )));
    }
    if members.start < proxy_ports.end && proxy_ports.start < members.end {
        return Err(LocalError::Usage(format!(
            "the proxy ports {}-{} overlap the member ports {}-{} (the directory and up to \
             {max_clusters} clusters of 10 ports each): choose --base-port and --proxy-port \
             further apart",
            proxy_ports.start,
            proxy_ports.end - 1,
            members.start,
            members.end - 1
        )));
    }
    Ok(())
}

/// The pool's clusters as they run here: the directory first, then the tenant clusters.
/// `previous` gives a cluster's settings from an earlier `up`, whose ids are kept.
pub fn local_clusters(
    pool: &MySQLTenantPool,
    settings: &PoolSettings,
    previous: impl Fn(&str) -> Option<Settings>,
) -> Result<Vec<LocalCluster>, LocalError> {
    tenant_pool::clusters_with(pool, settings.clusters)
        .into_iter()
        .enumerate()
        .map(|(slot, cluster)| {
            let slot = u32::try_from(slot).unwrap_or(u32::MAX);
            local_cluster(pool.name(), cluster, slot, settings, &previous)
        })
        .collect()
}

fn local_cluster(
    pool: &str,
    cluster: MySQLCluster,
    slot: u32,
    settings: &PoolSettings,
    previous: &impl Fn(&str) -> Option<Settings>,
) -> Result<LocalCluster, LocalError> {
    let name = cluster.metadata.name.clone().unwrap_or_default();
    let base_port = cluster_base_port(settings.base_port, slot)
        .ok_or_else(|| LocalError::Usage(format!("--base-port is too high for {name}")))?;
    let id = |value: Option<i64>| value.and_then(|v| u32::try_from(v).ok()).unwrap_or(0);
    let before = previous(&name);
    let local = Settings {
        cluster: name,
        base_port,
        // Unused: the pool's proxies serve the cluster.
        proxy_port: 0,
        replicas: u32::try_from(cluster.spec.replicas).unwrap_or(1),
        // Ids never change once a cluster has data.
        server_id_base: before
            .as_ref()
            .map_or(id(cluster.spec.server_id_base), |b| b.server_id_base),
        gtid_domain_id: before
            .as_ref()
            .map_or(id(cluster.spec.gtid_domain_id), |b| b.gtid_domain_id),
        pool: Some(pool.to_string()),
        // Paused with `local pause --name <cluster>`, and kept so across the pool's restarts.
        paused: before.as_ref().is_some_and(|b| b.paused),
        // Cordoned with `local cordon <member>`, and kept so across the pool's restarts.
        cordoned: before
            .as_ref()
            .map(|b| b.cordoned.clone())
            .unwrap_or_default(),
        read_only: before.as_ref().is_some_and(|b| b.read_only),
        backup_credentials: None,
    };
    Ok(LocalCluster {
        cluster,
        settings: local,
    })
}

/// The cluster member `member` belongs to, among `clusters`: members are `<cluster>-<ordinal>`.
pub fn cluster_of_member<'a>(member: &str, clusters: &'a [String]) -> Option<&'a str> {
    let (cluster, ordinal) = member.rsplit_once('-')?;
    if ordinal.is_empty() || !ordinal.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    clusters
        .iter()
        .find(|c| c.as_str() == cluster)
        .map(String::as_str)
}

/// The pool document for `pool` whose tenant clusters (in the directory) are `clusters`.
/// Topology paths are relative to the document, so the state directory may move.
pub fn document(pool: &MySQLTenantPool, clusters: &[String]) -> PoolDocument {
    crate::pool::document::document(pool, clusters, |name| {
        PathBuf::from("clusters").join(name).join("topology.json")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool() -> MySQLTenantPool {
        serde_saphyr::from_str(
            "\
apiVersion: lagless.dev/v1alpha1
kind: MySQLTenantPool
metadata: {name: demo}
spec:
  clusters: {min: 3, max: 5}
  directory: {replicas: 1}
  routing: {sources: [hint, database], attribute: tenant}
  gtidDomainIdBase: 50
  serverIdBase: 500
",
        )
        .unwrap()
    }

    fn settings(clusters: u32) -> PoolSettings {
        PoolSettings {
            pool: "demo".into(),
            base_port: 3307,
            proxy_port: 6033,
            clusters,
        }
    }

    #[test]
    fn clusters_take_ten_ports_and_ids_each_after_the_directory() {
        let clusters = local_clusters(&pool(), &settings(3), |_| None).unwrap();
        let got: Vec<_> = clusters
            .iter()
            .map(|c| {
                let s = &c.settings;
                (
                    s.cluster.as_str(),
                    s.base_port,
                    s.replicas,
                    s.gtid_domain_id,
                    s.server_id_base,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("demo-directory", 3307, 1, 50, 500),
                ("demo-c0", 3317, 2, 51, 510),
                ("demo-c1", 3327, 2, 52, 520),
                ("demo-c2", 3337, 2, 53, 530),
            ]
        );
        assert!(
            clusters
                .iter()
                .all(|c| c.settings.pool.as_deref() == Some("demo"))
        );
        // Members' names follow their cluster's.
        assert_eq!(clusters[2].settings.member_name(1), "demo-c1-1");
        assert_eq!(clusters[2].settings.member_port(1), Some(3328));
    }

    #[test]
    fn ids_from_an_earlier_up_are_kept() {
        let earlier = Settings {
            cluster: "demo-c1".into(),
            base_port: 1,
            proxy_port: 0,
            replicas: 2,
            server_id_base: 9000,
            gtid_domain_id: 90,
            pool: Some("demo".into()),
            paused: false,
            cordoned: Vec::new(),
            read_only: false,
            backup_credentials: None,
        };
        let clusters = local_clusters(&pool(), &settings(3), |name| {
            (name == "demo-c1").then(|| earlier.clone())
        })
        .unwrap();
        let c1 = &clusters[2].settings;
        assert_eq!((c1.gtid_domain_id, c1.server_id_base), (90, 9000));
        assert_eq!(c1.base_port, 3327, "ports follow this up's options");
    }

    #[test]
    fn port_ranges_fit_and_stay_apart() {
        check_port_ranges(&settings(3), 5, 2).unwrap();
        let mut s = settings(3);
        s.proxy_port = 3350;
        let err = check_port_ranges(&s, 5, 2).unwrap_err().to_string();
        assert!(
            err.contains("overlap") && err.contains("3307-3366"),
            "{err}"
        );
        // Beyond the last cluster the pool may grow to, proxies may start.
        s.proxy_port = 3367;
        check_port_ranges(&s, 5, 2).unwrap();
        s.base_port = 65500;
        assert!(
            check_port_ranges(&s, 5, 2)
                .unwrap_err()
                .to_string()
                .contains("too high")
        );
        assert_eq!(cluster_base_port(65530, 1), None);
    }

    #[test]
    fn members_map_to_their_cluster() {
        let clusters: Vec<String> = ["demo-directory", "demo-c1", "demo-c10"]
            .map(String::from)
            .into();
        assert_eq!(cluster_of_member("demo-c1-0", &clusters), Some("demo-c1"));
        assert_eq!(cluster_of_member("demo-c10-1", &clusters), Some("demo-c10"));
        assert_eq!(
            cluster_of_member("demo-directory-0", &clusters),
            Some("demo-directory")
        );
        for bad in ["demo-c2-0", "demo-c1", "demo-c1-", "demo-c1-x", "c1-0"] {
            assert_eq!(cluster_of_member(bad, &clusters), None, "{bad}");
        }
    }

    /// The rest of the document is [`crate::pool::document`]'s, tested there.
    #[test]
    fn the_document_finds_topologies_in_the_state_directory() {
        let doc = document(&pool(), &["demo-c0".into(), "demo-c1".into()]);
        assert_eq!(
            doc.cluster("demo-c1").unwrap().topology,
            PathBuf::from("clusters/demo-c1/topology.json")
        );
        assert_eq!(doc.validate(), Ok(()));
    }
}
