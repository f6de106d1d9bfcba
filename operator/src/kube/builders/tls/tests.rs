use k8s_openapi::api::core::v1::Container;

use super::*;
use crate::kube::builders::{proxy_deployment, render_server_config, statefulset};
use crate::tls::authority::Authority;

fn cluster(yaml: &str) -> MySQLCluster {
    let spec: MySQLClusterSpec = serde_saphyr::from_str(yaml).expect("spec");
    let mut cluster = MySQLCluster::new("db", spec);
    cluster.metadata.namespace = Some("shop".into());
    cluster.metadata.uid = Some("uid-1".into());
    cluster
}

fn mounts_tls(container: &Container) -> bool {
    container
        .volume_mounts
        .iter()
        .flatten()
        .any(|m| m.name == "tls" && m.mount_path == TLS_MOUNT && m.read_only == Some(true))
}

fn env_names(container: &Container) -> Vec<String> {
    container
        .env
        .iter()
        .flatten()
        .map(|e| e.name.clone())
        .collect()
}

#[test]
fn without_tls_nothing_changes() {
    let plain = cluster("replicas: 3\n");
    let config = render_server_config(&plain).expect("config");
    assert!(!config.contains("ssl_") && !config.contains("require_secure_transport"));
    let sts = statefulset(&plain, "op:1").expect("sts");
    let pod = sts.spec.template.spec.expect("pod");
    assert!(pod.containers.iter().all(|c| !mounts_tls(c)));
    assert!(pod.volumes.iter().flatten().all(|v| v.name != "tls"));
    let proxy = proxy_deployment(&plain, "proxy:1").expect("proxy");
    let args = proxy.spec.template.spec.expect("pod").containers[0]
        .args
        .clone()
        .unwrap_or_default();
    assert!(args.iter().all(|a| !a.contains("tls")), "{args:?}");
}

#[test]
fn members_agents_and_proxies_mount_the_secret_and_use_it() {
    for (yaml, secret) in [
        ("replicas: 3\ntls: {}\n", "db-tls"),
        ("replicas: 3\ntls: {secretName: shop-certs}\n", "shop-certs"),
        (
            "replicas: 3\ntls: {issuerRef: {name: ca, kind: ClusterIssuer}}\n",
            "db-tls",
        ),
    ] {
        let c = cluster(yaml);
        let config = render_server_config(&c).expect("config");
        for line in [
            "ssl_ca=/etc/lagless/tls/ca.crt",
            "ssl_cert=/etc/lagless/tls/tls.crt",
            "ssl_key=/etc/lagless/tls/tls.key",
            "require_secure_transport=ON",
        ] {
            assert!(
                config.lines().any(|l| l == line),
                "{line} missing for {yaml}"
            );
        }
        let sts = statefulset(&c, "op:1").expect("sts");
        let pod = sts.spec.template.spec.expect("pod");
        let volume = pod
            .volumes
            .iter()
            .flatten()
            .find(|v| v.name == "tls")
            .expect("tls volume");
        let source = volume.secret.as_ref().expect("a Secret volume");
        assert_eq!(source.secret_name.as_deref(), Some(secret), "{yaml}");
        assert_eq!(
            source.default_mode,
            Some(0o440),
            "keys readable by the group only"
        );
        // The server, the seeding init step and the agent sidecar.
        for name in ["mysql", "agent"] {
            let container = pod.containers.iter().find(|c| c.name == name).expect(name);
            assert!(mounts_tls(container), "{name} mounts the certificate");
        }
        let seed = pod
            .init_containers
            .iter()
            .flatten()
            .find(|c| c.name == "seed")
            .expect("seed");
        assert!(mounts_tls(seed));
        assert!(env_names(seed).contains(&"LAGLESS_TLS_CA".to_string()));
        let agent = pod
            .containers
            .iter()
            .find(|c| c.name == "agent")
            .expect("agent");
        for var in [
            "LAGLESS_AGENT_TLS_CERT",
            "LAGLESS_AGENT_TLS_KEY",
            "LAGLESS_TLS_CA",
        ] {
            assert!(env_names(agent).contains(&var.to_string()), "{var}");
        }

        let proxy = proxy_deployment(&c, "proxy:1").expect("proxy");
        let pod = proxy.spec.template.spec.expect("pod");
        let container = &pod.containers[0];
        assert!(mounts_tls(container));
        let args = container.args.clone().unwrap_or_default();
        for arg in [
            "--tls-cert=/etc/lagless/tls/tls.crt",
            "--tls-key=/etc/lagless/tls/tls.key",
            "--require-tls",
            "--backend-tls=verify",
            "--backend-ca=/etc/lagless/tls/ca.crt",
        ] {
            assert!(args.iter().any(|a| a == arg), "{arg} missing: {args:?}");
        }
        assert!(pod.volumes.iter().flatten().any(|v| v.name == "tls"));
    }
}

#[test]
fn cert_manager_certificate_names_every_member_and_the_service() {
    assert!(
        certificate(&cluster("replicas: 3\ntls: {}\n"))
            .expect("none")
            .is_none()
    );
    let c = cluster("replicas: 3\ntls: {issuerRef: {name: corp-ca, kind: ClusterIssuer}}\n");
    let object = certificate(&c).expect("build").expect("a Certificate");
    let types = object.types.as_ref().expect("types");
    assert_eq!(types.api_version, "cert-manager.io/v1");
    assert_eq!(types.kind, "Certificate");
    assert_eq!(object.metadata.name.as_deref(), Some("db-tls"));
    assert!(
        object.metadata.owner_references.is_some(),
        "deleted with the cluster"
    );
    let spec = &object.data["spec"];
    assert_eq!(spec["secretName"], "db-tls");
    assert_eq!(spec["issuerRef"]["name"], "corp-ca");
    assert_eq!(spec["issuerRef"]["kind"], "ClusterIssuer");
    assert_eq!(spec["issuerRef"]["group"], "cert-manager.io");
    let dns: Vec<&str> = spec["dnsNames"]
        .as_array()
        .expect("dnsNames")
        .iter()
        .filter_map(|v| v.as_str())
        .collect();
    for name in ["*.db-headless.shop.svc", "db", "db.shop.svc", "localhost"] {
        assert!(dns.contains(&name), "{name} missing: {dns:?}");
    }
    assert_eq!(spec["ipAddresses"], serde_json::json!(["127.0.0.1"]));
}

#[test]
fn self_issued_secrets_hold_a_certificate_for_the_members() {
    let c = cluster("replicas: 3\ntls: {}\n");
    let now = std::time::SystemTime::now();
    let authority = Authority::create("db", now).expect("ca");
    let ca = ca_secret(&c, &authority).expect("ca secret");
    assert_eq!(ca.metadata.name.as_deref(), Some("db-tls-ca"));
    assert_eq!(authority_from("db", &ca), Some(authority.clone()));
    let issued = authority
        .issue(
            &crate::kube::builders::tls::kubernetes_names("db", "shop"),
            now,
        )
        .expect("issue");
    let secret = issued_secret(&c, &authority, &issued).expect("secret");
    assert_eq!(secret.metadata.name.as_deref(), Some("db-tls"));
    assert_eq!(secret.type_.as_deref(), Some("kubernetes.io/tls"));
    let data = secret.data.as_ref().expect("data");
    for key in [CA_FILE, CERT_FILE, KEY_FILE] {
        assert!(data.get(key).is_some_and(|v| !v.0.is_empty()), "{key}");
    }
    assert_eq!(not_after(&secret), Some(issued.not_after));
    assert!(!crate::tls::authority::due(issued.not_after, now));
}
