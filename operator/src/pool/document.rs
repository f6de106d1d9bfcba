//! The pool document (`pool.json`) of a `MySQLTenantPool`: its directory cluster, its tenant
//! clusters with where each one's topology file is, and how the proxies find tenants.

use std::path::PathBuf;

use lagless_directory::{PoolCluster, PoolDocument};

use crate::crd::tenant_pool::{MySQLTenantPool, directory_name};

/// The pool document for `pool` whose tenant clusters are `clusters`, each one's topology
/// file at `topology(name)`.
pub fn document(
    pool: &MySQLTenantPool,
    clusters: &[String],
    topology: impl Fn(&str) -> PathBuf,
) -> PoolDocument {
    let spec = &pool.spec;
    PoolDocument {
        pool: pool.name().to_string(),
        directory: directory_name(pool.name()),
        tenant_database: spec.tenant_database.clone(),
        clusters: clusters
            .iter()
            .map(|name| PoolCluster {
                name: name.clone(),
                topology: topology(name),
            })
            .collect(),
        routing: spec
            .routing
            .sources
            .iter()
            .map(|source| lagless_directory::TenantSource::from(*source))
            .collect(),
        attribute: spec.routing.attribute.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_names_the_directory_the_clusters_and_the_routing() {
        let pool: MySQLTenantPool = serde_saphyr::from_str(
            "\
apiVersion: lagless.dev/v1alpha1
kind: MySQLTenantPool
metadata: {name: demo}
spec:
  tenantDatabase: 'shop_{id}'
  routing: {sources: [hint, database], attribute: tenant}
",
        )
        .unwrap();
        let doc = document(&pool, &["demo-c0".into(), "demo-c1".into()], |name| {
            PathBuf::from("/mnt").join(name).join("topology.json")
        });
        assert_eq!(doc.pool, "demo");
        assert_eq!(doc.directory, "demo-directory");
        assert_eq!(doc.tenant_database, "shop_{id}");
        assert_eq!(
            doc.routing,
            [
                lagless_directory::TenantSource::Hint,
                lagless_directory::TenantSource::Database
            ]
        );
        assert_eq!(doc.attribute, "tenant");
        assert_eq!(
            doc.cluster("demo-c1").unwrap().topology,
            PathBuf::from("/mnt/demo-c1/topology.json")
        );
        assert_eq!(doc.validate(), Ok(()));
    }
}
