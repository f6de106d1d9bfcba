use std::collections::BTreeSet;
use std::path::Path;

use ::kube::ResourceExt;
use k8s_openapi::api::core::v1::{Container, PodSpec};
use lagless_directory::PoolDocument;

use super::*;
use crate::crd::tenant_pool::{POOL_ROLE_LABEL, SERVER_IDS_PER_CLUSTER};
use crate::kube::builders::same_namespace;

const OPERATOR_NS: &str = "lagless-system";

fn pool(extra: &str) -> MySQLTenantPool {
    let mut pool: MySQLTenantPool = serde_saphyr::from_str(&format!(
        "\
apiVersion: lagless.dev/v1alpha1
kind: MySQLTenantPool
metadata: {{name: demo, namespace: apps}}
spec:
  clusters: {{min: 3, max: 5}}
  directory: {{replicas: 1}}
  gtidDomainIdBase: 100
  serverIdBase: 1000
{extra}"
    ))
    .unwrap();
    pool.metadata.uid = Some("pool-uid".into());
    pool
}

fn assert_pool_owned(meta: &ObjectMeta, name: &str) {
    assert_eq!(meta.name.as_deref(), Some(name));
    assert_eq!(meta.namespace.as_deref(), Some("apps"));
    let labels = meta.labels.as_ref().unwrap();
    assert_eq!(labels["app.kubernetes.io/instance"], "demo");
    assert_eq!(labels["app.kubernetes.io/managed-by"], "lagless-operator");
    assert_eq!(labels[POOL_LABEL], "demo");
    let owners = meta.owner_references.as_ref().unwrap();
    assert_eq!(owners.len(), 1);
    assert_eq!(owners[0].kind, "MySQLTenantPool");
    assert_eq!(owners[0].api_version, "lagless.dev/v1alpha1");
    assert_eq!(
        (owners[0].name.as_str(), owners[0].uid.as_str()),
        ("demo", "pool-uid")
    );
    assert_eq!(owners[0].controller, Some(true));
}

fn pod(deployment: &Deployment) -> &PodSpec {
    deployment.spec.template.spec.as_ref().unwrap()
}

fn proxy(deployment: &Deployment) -> &Container {
    &pod(deployment).containers[0]
}

fn flag<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
}

fn secret_env(container: &Container, name: &str) -> (String, String) {
    let var = container
        .env
        .iter()
        .flatten()
        .find(|e| e.name == name)
        .unwrap_or_else(|| panic!("no {name}"));
    let selector = var
        .value_from
        .as_ref()
        .and_then(|v| v.secret_key_ref.as_ref())
        .unwrap();
    (selector.name.clone(), selector.key.clone())
}

#[test]
fn the_pool_becomes_owned_clusters_without_proxies_and_with_shared_accounts() {
    let clusters = pool_clusters(&pool(""), 3).unwrap();
    let names: Vec<_> = clusters.iter().map(|c| c.name_any()).collect();
    assert_eq!(names, ["demo-directory", "demo-c0", "demo-c1", "demo-c2"]);
    let mut domains = BTreeSet::new();
    let mut server_ids = BTreeSet::new();
    for cluster in &clusters {
        let owners = cluster.metadata.owner_references.as_ref().unwrap();
        assert_eq!(owners[0].kind, "MySQLTenantPool");
        assert_eq!(owners[0].uid, "pool-uid");
        let labels = cluster.metadata.labels.as_ref().unwrap();
        assert_eq!(labels[POOL_LABEL], "demo");
        assert_eq!(labels["app.kubernetes.io/managed-by"], "lagless-operator");
        assert_eq!(cluster.metadata.namespace.as_deref(), Some("apps"));
        assert_eq!(
            cluster.spec.proxy.replicas, 0,
            "the pool's proxies serve it"
        );
        let credentials = &cluster.spec.credentials;
        assert_eq!(credentials.admin_secret("x"), "demo-admin");
        assert_eq!(credentials.replication_secret("x"), "demo-replication");
        assert_eq!(credentials.lookup_secret("x"), "demo-lookup");
        assert_eq!(credentials.monitor_secret("x"), "demo-monitor");
        for credential in [
            Credential::Admin,
            Credential::Replication,
            Credential::Lookup,
            Credential::Monitor,
        ] {
            assert!(credential.is_user_supplied(&cluster.spec), "{credential:?}");
        }
        assert_eq!(cluster.spec.tls, None);
        assert!(domains.insert(cluster.spec.gtid_domain_id.unwrap()));
        let base = cluster.spec.server_id_base.unwrap();
        for id in base..base + i64::from(SERVER_IDS_PER_CLUSTER) {
            assert!(server_ids.insert(id), "server id {id} twice");
        }
        assert_eq!(cluster.validate(), Ok(()), "{}", cluster.name_any());
    }
    assert_eq!(
        clusters[0].metadata.labels.as_ref().unwrap()[POOL_ROLE_LABEL],
        "directory"
    );
    // Never more than clusters.max.
    assert_eq!(pool_clusters(&pool(""), 9).unwrap().len(), 6);
}

#[test]
fn with_tls_every_cluster_uses_the_pool_certificate() {
    for (template, secret) in [
        ("tls: {}", "demo-tls"),
        ("tls: {issuerRef: {name: corp}}", "demo-tls"),
        ("tls: {secretName: mine}", "mine"),
    ] {
        let pool = pool(&format!("  clusterTemplate: {{{template}}}\n"));
        assert_eq!(pool_tls_secret_name(&pool), secret);
        for cluster in pool_clusters(&pool, 2).unwrap() {
            let tls = cluster.spec.tls.as_ref().unwrap();
            assert_eq!(tls.secret_name.as_deref(), Some(secret), "{template}");
            assert!(tls.issuer_ref.is_none());
            assert_eq!(cluster.validate(), Ok(()));
        }
    }
}

#[test]
fn missing_metadata_is_an_error_naming_the_pool() {
    let mut pool = pool("");
    pool.metadata.uid = None;
    let err = pool_clusters(&pool, 1).unwrap_err();
    assert_eq!(err, BuildError::MissingPoolMetadata("uid"));
    assert_eq!(err.to_string(), "the MySQLTenantPool has no metadata.uid");
    assert!(pool_proxy_deployment(&pool, "img").is_err());
}

#[test]
fn the_pool_document_points_at_the_mounted_topologies() {
    let pool = pool("  routing: {sources: [hint], attribute: tenant}\n");
    let configmap = pool_configmap(&pool, 3).unwrap();
    assert_pool_owned(&configmap.metadata, "demo-pool");
    let json = &configmap.data.as_ref().unwrap()[POOL_DOCUMENT_KEY];
    let document =
        PoolDocument::parse(json.as_bytes(), Path::new("/etc/lagless/pool/pool.json")).unwrap();
    assert_eq!(document.pool, "demo");
    assert_eq!(document.directory, "demo-directory");
    assert_eq!(document.attribute, "tenant");
    let clusters: Vec<_> = document
        .clusters
        .iter()
        .map(|c| (c.name.as_str(), c.topology.display().to_string()))
        .collect();
    assert_eq!(
        clusters,
        [
            (
                "demo-c0",
                "/etc/lagless/clusters/demo-c0/topology.json".into()
            ),
            (
                "demo-c1",
                "/etc/lagless/clusters/demo-c1/topology.json".into()
            ),
            (
                "demo-c2",
                "/etc/lagless/clusters/demo-c2/topology.json".into()
            ),
        ]
    );
}

#[test]
fn the_proxies_follow_the_directory_and_mount_every_cluster_as_a_directory() {
    let pool = pool("");
    let deployment = pool_proxy_deployment(&pool, "registry.example/proxy:1").unwrap();
    assert_pool_owned(&deployment.metadata, "demo-proxy");
    assert_eq!(deployment.spec.replicas, Some(2));
    let container = proxy(&deployment);
    assert_eq!(container.image.as_deref(), Some("registry.example/proxy:1"));
    let args = container.args.as_ref().unwrap();
    assert_eq!(
        flag(args, "--topology"),
        Some("/etc/lagless/clusters/demo-directory/topology.json")
    );
    assert_eq!(flag(args, "--pool"), Some("/etc/lagless/pool/pool.json"));
    assert_eq!(flag(args, "--users"), Some("/etc/lagless/users/users.json"));
    assert_eq!(flag(args, "--listen"), Some("0.0.0.0:3306"));
    assert_eq!(flag(args, "--consistency"), Some("strict"));
    assert!(!args.iter().any(|a| a.contains("tls")), "{args:?}");

    // Every path the document names, and --topology, is in a directory mount of its own
    // ConfigMap, never a subPath.
    let mounts = container.volume_mounts.as_ref().unwrap();
    assert!(mounts.iter().all(|m| m.sub_path.is_none()));
    let volumes = pod(&deployment).volumes.as_ref().unwrap();
    let configmap_of = |path: &Path| {
        let dir = path.parent().unwrap().to_str().unwrap();
        let mount = mounts
            .iter()
            .find(|m| m.mount_path == dir)
            .unwrap_or_else(|| panic!("nothing mounted at {dir}"));
        assert_eq!(mount.read_only, Some(true));
        let volume = volumes.iter().find(|v| v.name == mount.name).unwrap();
        volume.config_map.clone().unwrap()
    };
    let document = PoolDocument::parse(
        pool_configmap(&pool, 5).unwrap().data.unwrap()[POOL_DOCUMENT_KEY].as_bytes(),
        Path::new("/etc/lagless/pool/pool.json"),
    )
    .unwrap();
    assert_eq!(document.clusters.len(), 5, "up to clusters.max");
    for cluster in &document.clusters {
        let configmap = configmap_of(&cluster.topology);
        assert_eq!(configmap.name, format!("{}-topology", cluster.name));
        assert_eq!(configmap.optional, Some(true), "{}", cluster.name);
    }
    let directory = configmap_of(Path::new(flag(args, "--topology").unwrap()));
    assert_eq!(directory.name, "demo-directory-topology");
    assert_eq!(
        directory.optional, None,
        "the proxies cannot start without it"
    );
    let document_mount = configmap_of(Path::new(flag(args, "--pool").unwrap()));
    assert_eq!(document_mount.name, "demo-pool");
    // The pool document, the directory, 5 clusters and the users file.
    assert_eq!(volumes.len(), 8);
    let names: BTreeSet<_> = volumes.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(names.len(), volumes.len(), "volume names are unique");
    assert!(names.iter().all(|n| n.len() <= 63));
    let users = volumes.iter().find(|v| v.name == "users").unwrap();
    assert_eq!(
        users.secret.as_ref().unwrap().secret_name.as_deref(),
        Some("demo-proxy-users")
    );

    // The accounts every cluster shares; the directory with the administrator.
    for (var, secret, key) in [
        ("LAGLESS_PROXY_LOOKUP_USER", "demo-lookup", "username"),
        ("LAGLESS_PROXY_LOOKUP_PASSWORD", "demo-lookup", "password"),
        ("LAGLESS_PROXY_MONITOR_USER", "demo-monitor", "username"),
        ("LAGLESS_PROXY_MONITOR_PASSWORD", "demo-monitor", "password"),
        ("LAGLESS_PROXY_DIRECTORY_USER", "demo-admin", "username"),
        ("LAGLESS_PROXY_DIRECTORY_PASSWORD", "demo-admin", "password"),
    ] {
        assert_eq!(
            secret_env(container, var),
            (secret.to_string(), key.to_string()),
            "{var}"
        );
    }
    assert!(
        container
            .env
            .iter()
            .flatten()
            .all(|e| e.value.is_none() && e.name != "LAGLESS_PROXY_ADMIN_TOKEN"),
        "no literal value, and no push token: nothing pushes to the pool's proxies"
    );

    // Locked down as a cluster's proxies are.
    let security = container.security_context.as_ref().unwrap();
    assert_eq!(security.read_only_root_filesystem, Some(true));
    assert_eq!(security.run_as_non_root, Some(true));
    assert_eq!(security.allow_privilege_escalation, Some(false));
    let pod_security = pod(&deployment).security_context.as_ref().unwrap();
    assert_eq!(
        pod_security.fs_group,
        Some(crate::kube::builders::NONROOT_UID)
    );
    let template_labels = deployment
        .spec
        .template
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .as_ref()
        .unwrap();
    for (key, value) in deployment.spec.selector.match_labels.as_ref().unwrap() {
        assert_eq!(template_labels.get(key), Some(value), "{key}");
    }
}

#[test]
fn growing_changes_the_document_but_not_the_proxy_pods() {
    let mut grown = pool("");
    grown.status = Some(crate::crd::tenant_pool::MySQLTenantPoolStatus {
        cluster_count: Some(5),
        ..Default::default()
    });
    let before = pool_proxy_deployment(&pool(""), "img").unwrap();
    let after = pool_proxy_deployment(&grown, "img").unwrap();
    assert_eq!(before.spec.template, after.spec.template);
    assert_ne!(pool_configmap(&pool(""), 3), pool_configmap(&grown, 5));
}

#[test]
fn tls_reaches_the_pool_proxies() {
    let pool = pool("  clusterTemplate: {tls: {}}\n");
    let deployment = pool_proxy_deployment(&pool, "img").unwrap();
    let container = proxy(&deployment);
    let args = container.args.as_ref().unwrap();
    assert!(args.contains(&"--require-tls".to_string()), "{args:?}");
    assert!(args.contains(&"--backend-tls=verify".to_string()));
    let volume = pod(&deployment)
        .volumes
        .as_ref()
        .unwrap()
        .iter()
        .find(|v| v.name == "tls")
        .unwrap();
    assert_eq!(
        volume.secret.as_ref().unwrap().secret_name.as_deref(),
        Some("demo-tls")
    );
    assert!(
        container
            .volume_mounts
            .iter()
            .flatten()
            .any(|m| m.mount_path == "/etc/lagless/tls")
    );
}

#[test]
fn the_service_budget_and_policy_select_the_pool_proxies() {
    let pool = pool("  proxy: {replicas: 3, serviceType: LoadBalancer}\n");
    let selector = selector_labels("demo", Component::Proxy);
    let service = pool_client_service(&pool).unwrap();
    assert_pool_owned(&service.metadata, "demo");
    let spec = service.spec.unwrap();
    assert_eq!(spec.type_.as_deref(), Some("LoadBalancer"));
    assert_eq!(spec.selector.as_ref(), Some(&selector));
    assert_eq!(spec.ports.unwrap()[0].port, 3306);

    let pdb = pool_pod_disruption_budget(&pool).unwrap();
    assert_pool_owned(&pdb.metadata, "demo-proxy");
    let spec = pdb.spec.unwrap();
    assert_eq!(spec.max_unavailable, Some(IntOrString::Int(1)));
    assert_eq!(spec.selector.unwrap().match_labels, Some(selector.clone()));

    let policy = pool_proxy_network_policy(&pool, OPERATOR_NS).unwrap();
    assert_pool_owned(&policy.metadata, "demo-proxy");
    let spec = policy.spec.unwrap();
    assert_eq!(spec.pod_selector.unwrap().match_labels, Some(selector));
    let ingress = spec.ingress.unwrap();
    // LoadBalancer: clients from anywhere; the admin port never from outside.
    assert_eq!(ingress[0].from, None);
    assert_eq!(ingress[1].from.as_ref().unwrap().len(), 2);
    let clusterip = pool_proxy_network_policy(&self::pool(""), OPERATOR_NS).unwrap();
    assert_eq!(
        clusterip.spec.unwrap().ingress.unwrap()[0].from,
        Some(vec![same_namespace()])
    );
}

#[test]
fn shared_accounts_are_generated_unless_the_template_names_them() {
    let generated: BTreeMap<String, String> = ["admin", "replication", "lookup", "monitor"]
        .map(|k| (k.to_string(), format!("pw-{k}")))
        .into();
    let secrets = pool_credentials_secrets(&pool(""), &generated).unwrap();
    let names: Vec<_> = secrets.iter().map(|s| s.name_any()).collect();
    assert_eq!(
        names,
        [
            "demo-admin",
            "demo-replication",
            "demo-lookup",
            "demo-monitor"
        ]
    );
    for secret in &secrets {
        assert_pool_owned(&secret.metadata, &secret.name_any());
    }
    let data = secrets[2].data.as_ref().unwrap();
    assert_eq!(data["username"].0, b"lagless_lookup");
    assert_eq!(data["password"].0, b"pw-lookup");

    let named =
        pool("  clusterTemplate: {credentials: {adminSecretName: root, lookupSecretName: look}}\n");
    let names: Vec<_> = pool_credentials_secrets(&named, &generated)
        .unwrap()
        .iter()
        .map(|s| s.name_any())
        .collect();
    assert_eq!(names, ["demo-replication", "demo-monitor"]);
    assert_eq!(
        pool_credential_secret_name(&named, Credential::Lookup).as_deref(),
        Some("look")
    );
    assert_eq!(pool_credential_secret_name(&named, Credential::Agent), None);
    let err = pool_credentials_secrets(&pool(""), &BTreeMap::new()).unwrap_err();
    assert_eq!(err, BuildError::MissingPassword("admin"));
}

#[test]
fn the_certificate_names_every_member_the_pool_may_have() {
    let pool = pool("  clusterTemplate: {tls: {issuerRef: {name: corp, kind: ClusterIssuer}}}\n");
    let names = pool_tls_names(&pool).unwrap();
    for name in [
        "*.demo-directory-headless.apps.svc",
        "*.demo-c0-headless.apps.svc",
        "*.demo-c4-headless.apps.svc.cluster.local",
        "demo.apps.svc",
        "127.0.0.1",
    ] {
        assert!(names.contains(&name.to_string()), "{name}: {names:?}");
    }
    assert!(
        !names.iter().any(|n| n.contains("demo-c5")),
        "beyond clusters.max"
    );
    let certificate = pool_certificate(&pool).unwrap().unwrap();
    assert_pool_owned(&certificate.metadata, "demo-tls");
    assert_eq!(certificate.data["spec"]["secretName"], "demo-tls");
    assert_eq!(
        certificate.data["spec"]["issuerRef"]["kind"],
        "ClusterIssuer"
    );
    assert_eq!(
        certificate.data["spec"]["ipAddresses"],
        serde_json::json!(["127.0.0.1"])
    );

    let mut wider = pool.clone();
    wider.spec.clusters.max = 6;
    assert_ne!(
        names_hash(&names),
        names_hash(&pool_tls_names(&wider).unwrap()),
        "a pool that may grow further gets a new certificate"
    );
    assert_eq!(pool_certificate(&self::pool("")).unwrap(), None);
}

#[test]
fn a_self_issued_certificate_records_its_names() {
    let pool = pool("  clusterTemplate: {tls: {}}\n");
    let now = std::time::SystemTime::now();
    let authority = Authority::create("demo", now).unwrap();
    let names = pool_tls_names(&pool).unwrap();
    let issued = authority.issue(&names, now).unwrap();
    let secret = pool_issued_secret(&pool, &authority, &issued, &names).unwrap();
    assert_pool_owned(&secret.metadata, "demo-tls");
    let annotations = secret.metadata.annotations.as_ref().unwrap();
    assert_eq!(annotations[NAMES_ANNOTATION], names_hash(&names));
    assert!(annotations.contains_key(tls::NOT_AFTER_ANNOTATION));
    assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
    let ca = pool_ca_secret(&pool, &authority).unwrap();
    assert_pool_owned(&ca.metadata, "demo-tls-ca");
}
