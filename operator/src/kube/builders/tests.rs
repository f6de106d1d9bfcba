use std::process::Command;

use k8s_openapi::ByteString;
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Container, EnvVar, PodSpec, PodTemplateSpec};
use k8s_openapi::api::networking::v1::{NetworkPolicy, NetworkPolicyIngressRule};
use lagless_core::topology::{self, Member, Topology, TopologyState};
use serde_json::Value;

use super::*;
use crate::crd::{CredentialsSpec, Flavor, MySQLClusterSpec, ServiceType};

fn cluster(name: &str, yaml: &str) -> MySQLCluster {
    let spec: MySQLClusterSpec = serde_saphyr::from_str(yaml).unwrap();
    let mut cluster = MySQLCluster::new(name, spec);
    cluster.metadata.namespace = Some("shop-ns".into());
    cluster.metadata.uid = Some("0f5e6a1c-uid".into());
    cluster
}

/// Where the operator runs in these tests.
const OPERATOR_NS: &str = "lagless-system";

fn defaults() -> MySQLCluster {
    cluster("db", "replicas: 3\n")
}

fn big() -> MySQLCluster {
    cluster(
        "shop",
        "replicas: 5\n\
         image: registry.example/mariadb:10.11.9\n\
         storage: {size: 50Gi, storageClassName: fast}\n\
         resources: {requests: {cpu: 500m, memory: 1Gi}, limits: {memory: 2Gi}}\n\
         serverConfig: {max_connections: \"500\", innodb_buffer_pool_size: 1G}\n\
         gtidDomainId: 10\n\
         serverIdBase: 1001\n\
         replication: {semiSync: true, semiSyncAcks: 2}\n\
         credentials: {adminSecretName: shop-root}\n\
         proxy: {replicas: 3, defaultConsistency: session, serviceType: LoadBalancer, \
                 resources: {requests: {cpu: 100m}}}\n",
    )
}

fn mysql() -> MySQLCluster {
    cluster(
        "orders",
        "replicas: 2\nflavor: mysql\nreplication: {semiSync: true}\n",
    )
}

fn pod_template(sts: &StatefulSet) -> &PodTemplateSpec {
    &sts.spec.template
}

fn mysql_container(sts: &StatefulSet) -> &Container {
    &pod_template(sts).spec.as_ref().unwrap().containers[0]
}

fn assert_common(meta: &ObjectMeta, name: &str, cluster: &str, component: &str) {
    assert_eq!(meta.name.as_deref(), Some(name));
    assert_eq!(meta.namespace.as_deref(), Some("shop-ns"));
    let labels = meta.labels.as_ref().unwrap();
    assert_eq!(labels["app.kubernetes.io/name"], "lagless");
    assert_eq!(labels["app.kubernetes.io/instance"], cluster);
    assert_eq!(labels["app.kubernetes.io/component"], component);
    assert_eq!(labels["app.kubernetes.io/managed-by"], "lagless-operator");
    let owners = meta.owner_references.as_ref().unwrap();
    assert_eq!(owners.len(), 1);
    let owner = &owners[0];
    assert_eq!(owner.api_version, "lagless.dev/v1alpha1");
    assert_eq!(owner.kind, "MySQLCluster");
    assert_eq!(owner.name, cluster);
    assert_eq!(owner.uid, "0f5e6a1c-uid");
    assert_eq!(owner.controller, Some(true));
    assert_eq!(owner.block_owner_deletion, Some(true));
}

fn json(value: &impl serde::Serialize, api_version: &str, kind: &str) -> Value {
    let json = serde_json::to_value(value).unwrap();
    assert_eq!(json["apiVersion"], api_version);
    assert_eq!(json["kind"], kind);
    json
}

fn topology(name: &str) -> Topology {
    Topology {
        cluster: name.into(),
        flavor: topology::Flavor::Mariadb,
        epoch: 7,
        state: TopologyState::Ready,
        primary: Some(Member::new(
            format!("{name}-0"),
            member_host(name, "shop-ns", 0),
            3306,
        )),
        replicas: vec![Member::new(
            format!("{name}-1"),
            member_host(name, "shop-ns", 1),
            3306,
        )],
        consistency: Some(lagless_core::ConsistencyMode::Strict),
        read_only: false,
    }
}

fn every_object_json(cluster: &MySQLCluster) -> Vec<Value> {
    let name = cluster.metadata.name.clone().unwrap();
    let generated = BTreeMap::from([
        ("admin".to_string(), "pw-a".to_string()),
        ("replication".to_string(), "pw-r".to_string()),
        ("agent".to_string(), "pw-t".to_string()),
        ("lookup".to_string(), "pw-l".to_string()),
        ("monitor".to_string(), "pw-m".to_string()),
        ("proxy-admin".to_string(), "pw-p".to_string()),
    ]);
    let mut objects = vec![
        json(
            &statefulset(cluster, "op-img").unwrap(),
            "apps/v1",
            "StatefulSet",
        ),
        json(&server_configmap(cluster).unwrap(), "v1", "ConfigMap"),
        json(&headless_service(cluster).unwrap(), "v1", "Service"),
        json(&client_service(cluster).unwrap(), "v1", "Service"),
        json(
            &proxy_deployment(cluster, DEFAULT_PROXY_IMAGE).unwrap(),
            "apps/v1",
            "Deployment",
        ),
        json(
            &topology_configmap(cluster, &topology(&name)).unwrap(),
            "v1",
            "ConfigMap",
        ),
        json(
            &pod_disruption_budget(cluster).unwrap(),
            "policy/v1",
            "PodDisruptionBudget",
        ),
        json(
            &network_policy(cluster, OPERATOR_NS).unwrap(),
            "networking.k8s.io/v1",
            "NetworkPolicy",
        ),
        json(
            &proxy_network_policy(cluster, OPERATOR_NS).unwrap(),
            "networking.k8s.io/v1",
            "NetworkPolicy",
        ),
        json(
            &archiver_deployment(cluster, "op-img").unwrap(),
            "apps/v1",
            "Deployment",
        ),
    ];
    for secret in credentials_secrets(cluster, &generated).unwrap() {
        objects.push(json(&secret, "v1", "Secret"));
    }
    objects
}

#[test]
fn every_object_has_labels_owner_and_serializes_with_kind() {
    for cluster in [defaults(), big(), mysql()] {
        let name = cluster.metadata.name.clone().unwrap();
        let sts = statefulset(&cluster, "op-img").unwrap();
        assert_common(&sts.metadata, &name, &name, "mysql");
        let cm = server_configmap(&cluster).unwrap();
        assert_common(
            &cm.metadata,
            &format!("{name}-mysql-config"),
            &name,
            "mysql",
        );
        let headless = headless_service(&cluster).unwrap();
        assert_common(
            &headless.metadata,
            &format!("{name}-headless"),
            &name,
            "mysql",
        );
        let client = client_service(&cluster).unwrap();
        assert_common(&client.metadata, &name, &name, "proxy");
        let proxy = proxy_deployment(&cluster, "img").unwrap();
        assert_common(&proxy.metadata, &format!("{name}-proxy"), &name, "proxy");
        let topo = topology_configmap(&cluster, &topology(&name)).unwrap();
        assert_common(&topo.metadata, &format!("{name}-topology"), &name, "proxy");
        let pdb = pod_disruption_budget(&cluster).unwrap();
        assert_common(&pdb.metadata, &format!("{name}-mysql"), &name, "mysql");
        let policy = network_policy(&cluster, OPERATOR_NS).unwrap();
        assert_common(&policy.metadata, &format!("{name}-mysql"), &name, "mysql");
        let policy = proxy_network_policy(&cluster, OPERATOR_NS).unwrap();
        assert_common(&policy.metadata, &format!("{name}-proxy"), &name, "proxy");
        let objects = every_object_json(&cluster);
        assert!(objects.len() >= 9);
        for object in &objects {
            assert_eq!(object["metadata"]["namespace"], "shop-ns");
        }
    }
}

#[test]
fn missing_metadata_is_an_error() {
    let mut cluster = defaults();
    cluster.metadata.uid = None;
    assert_eq!(
        statefulset(&cluster, "op-img").unwrap_err(),
        BuildError::MissingMetadata("uid")
    );
    let mut cluster = defaults();
    cluster.metadata.namespace = None;
    assert_eq!(
        client_service(&cluster).unwrap_err(),
        BuildError::MissingMetadata("namespace")
    );
    let mut cluster = defaults();
    cluster.metadata.name = None;
    assert_eq!(
        headless_service(&cluster).unwrap_err(),
        BuildError::MissingMetadata("name")
    );
}

#[test]
fn default_statefulset() {
    let cluster = defaults();
    let sts = statefulset(&cluster, "op-img").unwrap();
    let spec = &sts.spec;
    assert_eq!(spec.replicas, Some(3));
    assert_eq!(spec.service_name.as_deref(), Some("db-headless"));
    assert_eq!(spec.pod_management_policy.as_deref(), Some("Parallel"));
    assert_eq!(
        spec.update_strategy
            .as_ref()
            .and_then(|u| u.type_.as_deref()),
        Some("OnDelete")
    );
    assert_eq!(
        spec.selector.match_labels,
        Some(selector_labels("db", Component::Mysql))
    );
    let template_labels = pod_template(&sts)
        .metadata
        .as_ref()
        .unwrap()
        .labels
        .as_ref()
        .unwrap();
    for (k, v) in selector_labels("db", Component::Mysql) {
        assert_eq!(template_labels[&k], v);
    }

    let claims = spec.volume_claim_templates.as_ref().unwrap();
    assert_eq!(claims.len(), 1);
    let claim = claims[0].spec.as_ref().unwrap();
    assert_eq!(claims[0].metadata.name.as_deref(), Some("data"));
    assert_eq!(
        claim.resources.as_ref().unwrap().requests.as_ref().unwrap()["storage"],
        Quantity("10Gi".into())
    );
    assert_eq!(claim.storage_class_name, None);

    let pod = pod_template(&sts).spec.as_ref().unwrap();
    assert_eq!(pod.termination_grace_period_seconds, Some(120));
    assert_eq!(pod.automount_service_account_token, Some(false));
    let anti = pod
        .affinity
        .as_ref()
        .unwrap()
        .pod_anti_affinity
        .as_ref()
        .unwrap();
    assert!(
        anti.required_during_scheduling_ignored_during_execution
            .is_none()
    );
    let preferred = anti
        .preferred_during_scheduling_ignored_during_execution
        .as_ref()
        .unwrap();
    assert_eq!(
        preferred[0].pod_affinity_term.topology_key,
        "kubernetes.io/hostname"
    );

    let c = mysql_container(&sts);
    assert_eq!(c.image.as_deref(), Some(crate::crd::DEFAULT_MARIADB_IMAGE));
    assert_eq!(c.resources, None);
    let ports = c.ports.as_ref().unwrap();
    assert_eq!(
        (ports[0].name.as_deref(), ports[0].container_port),
        (Some("mysql"), 3306)
    );
    let script = &c.command.as_ref().unwrap()[2];
    assert!(script.contains(r#"ordinal="${HOSTNAME##*-}""#), "{script}");
    assert!(
        script.contains("LAGLESS_SERVER_ID_BASE + 10#$ordinal"),
        "{script}"
    );
    assert!(
        script.contains("exec docker-entrypoint.sh mariadbd"),
        "{script}"
    );
    assert!(
        script.contains("$HOSTNAME.db-headless.shop-ns.svc"),
        "{script}"
    );

    let env = c.env.as_ref().unwrap();
    let base = env
        .iter()
        .find(|e| e.name == "LAGLESS_SERVER_ID_BASE")
        .unwrap();
    assert_eq!(
        base.value.as_deref(),
        Some(
            cluster
                .spec
                .server_id_base("shop-ns", "db")
                .to_string()
                .as_str()
        )
    );
    let secret_of = |name: &str| {
        let var = env.iter().find(|e| e.name == name).unwrap();
        let sel = var
            .value_from
            .as_ref()
            .unwrap()
            .secret_key_ref
            .as_ref()
            .unwrap();
        (sel.name.clone(), sel.key.clone())
    };
    assert_eq!(
        secret_of("LAGLESS_ADMIN_USER"),
        ("db-admin".into(), "username".into())
    );
    assert_eq!(
        secret_of("LAGLESS_REPLICATION_PASSWORD"),
        ("db-replication".into(), "password".into())
    );
    assert_eq!(
        secret_of("MARIADB_ROOT_PASSWORD"),
        ("db-admin".into(), "password".into())
    );

    let mounts = c.volume_mounts.as_ref().unwrap();
    assert!(mounts.iter().all(|m| m.sub_path.is_none()));
    assert!(
        mounts
            .iter()
            .any(|m| m.name == "data" && m.mount_path == "/var/lib/mysql")
    );
    assert!(
        mounts
            .iter()
            .any(|m| m.name == "config" && m.mount_path == "/etc/mysql/conf.d")
    );
    let volumes = pod.volumes.as_ref().unwrap();
    // The seeding agent's volumes are checked in their own test, the scratch volumes in the
    // security test.
    for v in volumes.iter().filter(|v| {
        !v.name.starts_with("agent-") && !["topology", "run", "tmp"].contains(&v.name.as_str())
    }) {
        assert_eq!(v.config_map.as_ref().unwrap().name, "db-mysql-config");
    }
    // The account script must not be executable, so the entrypoint sources it.
    let init = volumes.iter().find(|v| v.name == "init").unwrap();
    let items = init.config_map.as_ref().unwrap().items.as_ref().unwrap();
    assert_eq!(items[0].key, INIT_SCRIPT_KEY);
    assert_eq!(items[0].mode.map(|m| m & 0o111), Some(0));
    assert!(
        mounts
            .iter()
            .any(|m| m.name == "init" && m.mount_path == INIT_MOUNT)
    );
}

fn probe_command_text(probe: &Probe) -> String {
    let command = probe.exec.as_ref().unwrap().command.as_ref().unwrap();
    command.join(" ").to_ascii_lowercase()
}

#[test]
fn probes_check_the_server_answers_and_never_replication() {
    for cluster in [defaults(), big(), mysql()] {
        let sts = statefulset(&cluster, "op-img").unwrap();
        let c = mysql_container(&sts);
        let admin = admin_client(cluster.spec.flavor);
        for probe in [&c.readiness_probe, &c.liveness_probe, &c.startup_probe] {
            let probe = probe.as_ref().unwrap();
            let command = probe.exec.as_ref().unwrap().command.as_ref().unwrap();
            assert_eq!(command[0], admin);
            assert_eq!(command.last().map(String::as_str), Some("ping"));
            let text = probe_command_text(probe);
            for banned in [
                "slave", "replica", "lag", "behind", "seconds", "gtid", "status", "select",
            ] {
                assert!(!text.contains(banned), "{banned} in {text}");
            }
        }
        let liveness = c.liveness_probe.as_ref().unwrap();
        let readiness = c.readiness_probe.as_ref().unwrap();
        let patience = |p: &Probe| p.period_seconds.unwrap() * p.failure_threshold.unwrap();
        assert!(patience(liveness) >= 60);
        assert!(patience(liveness) > patience(readiness));
        assert!(patience(c.startup_probe.as_ref().unwrap()) >= 3600);
    }
}

#[test]
fn default_server_config_is_read_only_gtid_strict_row() {
    let cluster = defaults();
    let config = render_server_config(&cluster).unwrap();
    let domain = cluster.spec.gtid_domain_id("shop-ns", "db");
    for line in [
        "[mysqld]".to_string(),
        format!("gtid_domain_id={domain}"),
        "log_bin=mysql-bin".into(),
        "log_slave_updates=ON".into(),
        "gtid_strict_mode=ON".into(),
        "binlog_format=ROW".into(),
        "read_only=ON".into(),
        "skip_slave_start=ON".into(),
    ] {
        assert!(
            config.lines().any(|l| l == line),
            "{line} missing:\n{config}"
        );
    }
    assert!(!config.contains("server_id"), "{config}");
    // Lossless semi-sync by default: replicas acknowledge from their first transaction.
    assert!(
        config
            .lines()
            .any(|l| l == "rpl_semi_sync_slave_enabled=ON"),
        "{config}"
    );
    let cm = server_configmap(&cluster).unwrap();
    let data = cm.data.unwrap();
    assert_eq!(data[SERVER_CONFIG_KEY], config);
    let mut opted_out = cluster.clone();
    opted_out.spec.replication.semi_sync = Some(false);
    let config = render_server_config(&opted_out).unwrap();
    assert!(!config.contains("semi_sync"), "{config}");
    assert!(data[INIT_SCRIPT_KEY].contains("sql_log_bin=0"));
}

#[test]
fn five_members_with_overrides_semi_sync_and_load_balancer() {
    let cluster = big();
    let sts = statefulset(&cluster, "op-img").unwrap();
    assert_eq!(sts.spec.replicas, Some(5));
    let c = mysql_container(&sts);
    assert_eq!(c.image.as_deref(), Some("registry.example/mariadb:10.11.9"));
    let res = c.resources.as_ref().unwrap();
    assert_eq!(
        res.requests.as_ref().unwrap()["cpu"],
        Quantity("500m".into())
    );
    assert_eq!(
        res.limits.as_ref().unwrap()["memory"],
        Quantity("2Gi".into())
    );
    let claim = sts.spec.volume_claim_templates.as_ref().unwrap()[0]
        .spec
        .as_ref()
        .unwrap();
    assert_eq!(claim.storage_class_name.as_deref(), Some("fast"));
    assert_eq!(
        claim.resources.as_ref().unwrap().requests.as_ref().unwrap()["storage"],
        Quantity("50Gi".into())
    );
    let env = c.env.as_ref().unwrap();
    let base = env
        .iter()
        .find(|e| e.name == "LAGLESS_SERVER_ID_BASE")
        .unwrap();
    assert_eq!(base.value.as_deref(), Some("1001"));
    // The admin Secret is the user's; the replication one is generated.
    let admin = env
        .iter()
        .find(|e| e.name == "LAGLESS_ADMIN_PASSWORD")
        .unwrap();
    let admin = admin
        .value_from
        .as_ref()
        .unwrap()
        .secret_key_ref
        .as_ref()
        .unwrap();
    assert_eq!(admin.name, "shop-root");

    let config = render_server_config(&cluster).unwrap();
    let lines: Vec<&str> = config.lines().collect();
    for line in [
        "gtid_domain_id=10",
        "rpl_semi_sync_slave_enabled=ON",
        "rpl_semi_sync_master_wait_point=AFTER_SYNC",
        "max_connections=500",
        "innodb_buffer_pool_size=1G",
    ] {
        assert!(lines.contains(&line), "{line} missing:\n{config}");
    }
    // Overrides come after the managed options.
    let position = |l: &str| lines.iter().position(|x| *x == l).unwrap();
    assert!(position("max_connections=500") > position("read_only=ON"));

    // The config hash changes with the configuration.
    let hash = |c: &MySQLCluster| {
        statefulset(c, "op-img")
            .unwrap()
            .spec
            .template
            .metadata
            .unwrap()
            .annotations
            .unwrap()[CONFIG_HASH_ANNOTATION]
            .clone()
    };
    let mut changed = cluster.clone();
    changed
        .spec
        .server_config
        .insert("max_connections".into(), "600".into());
    assert_ne!(hash(&cluster), hash(&changed));
    assert_eq!(hash(&cluster), hash(&big()));

    let client = client_service(&cluster).unwrap();
    let spec = client.spec.as_ref().unwrap();
    assert_eq!(spec.type_.as_deref(), Some("LoadBalancer"));
    assert_eq!(
        spec.selector.as_ref().unwrap(),
        &selector_labels("shop", Component::Proxy)
    );
    let port = &spec.ports.as_ref().unwrap()[0];
    assert_eq!(port.port, 3306);
    assert_eq!(port.target_port, Some(IntOrString::String("mysql".into())));

    let proxy = proxy_deployment(&cluster, "proxy:1").unwrap();
    assert_eq!(proxy.spec.replicas, Some(3));
    let args = proxy.spec.template.spec.as_ref().unwrap().containers[0]
        .args
        .clone()
        .unwrap();
    let consistency = args.iter().position(|a| a == "--consistency").unwrap();
    assert_eq!(args[consistency + 1], "session");
    // Least privilege: the proxies get the lookup and monitor accounts, never the admin's
    // (which this spec names `shop-root`).
    let env = proxy.spec.template.spec.as_ref().unwrap().containers[0]
        .env
        .clone()
        .unwrap();
    let secrets: Vec<(String, String)> = env
        .iter()
        .map(|e| {
            let key = e
                .value_from
                .as_ref()
                .unwrap()
                .secret_key_ref
                .as_ref()
                .unwrap();
            (e.name.clone(), key.name.clone())
        })
        .collect();
    assert_eq!(
        secrets,
        [
            (
                "LAGLESS_PROXY_LOOKUP_USER".to_string(),
                "shop-lookup".to_string()
            ),
            ("LAGLESS_PROXY_LOOKUP_PASSWORD".into(), "shop-lookup".into()),
            ("LAGLESS_PROXY_MONITOR_USER".into(), "shop-monitor".into()),
            (
                "LAGLESS_PROXY_MONITOR_PASSWORD".into(),
                "shop-monitor".into()
            ),
            (
                "LAGLESS_PROXY_ADMIN_TOKEN".into(),
                "shop-proxy-admin".into()
            ),
        ]
    );

    let generated = BTreeMap::from([
        ("replication".to_string(), "r3pl".to_string()),
        ("agent".to_string(), "t".to_string()),
        ("lookup".to_string(), "l".to_string()),
        ("monitor".to_string(), "m".to_string()),
        ("proxy-admin".to_string(), "p".to_string()),
    ]);
    let secrets = credentials_secrets(&cluster, &generated).unwrap();
    assert_eq!(secrets.len(), 5);
    assert_eq!(
        secrets[0].metadata.name.as_deref(),
        Some("shop-replication")
    );
    let data = secrets[0].data.as_ref().unwrap();
    assert_eq!(data["username"], ByteString(b"lagless_repl".to_vec()));
    assert_eq!(data["password"], ByteString(b"r3pl".to_vec()));
}

#[test]
fn mysql_flavor() {
    let cluster = mysql();
    let sts = statefulset(&cluster, "op-img").unwrap();
    let c = mysql_container(&sts);
    assert_eq!(c.image.as_deref(), Some(crate::crd::DEFAULT_MYSQL_IMAGE));
    let script = &c.command.as_ref().unwrap()[2];
    assert!(
        script.contains("exec docker-entrypoint.sh mysqld"),
        "{script}"
    );
    let env = c.env.as_ref().unwrap();
    assert!(env.iter().any(|e| e.name == "MYSQL_ROOT_PASSWORD"));
    assert!(!env.iter().any(|e| e.name.starts_with("MARIADB_")));
    let readiness = c.readiness_probe.as_ref().unwrap();
    assert_eq!(
        readiness.exec.as_ref().unwrap().command.as_ref().unwrap()[0],
        "mysqladmin"
    );

    let config = render_server_config(&cluster).unwrap();
    for line in [
        "gtid_mode=ON",
        "enforce_gtid_consistency=ON",
        "log_replica_updates=ON",
        "read_only=ON",
        "plugin_load_add=semisync_source.so",
        "rpl_semi_sync_replica_enabled=ON",
        "rpl_semi_sync_source_wait_for_replica_count=1",
    ] {
        assert!(
            config.lines().any(|l| l == line),
            "{line} missing:\n{config}"
        );
    }
    assert!(!config.contains("gtid_domain_id"), "{config}");
    assert!(!config.contains("gtid_strict_mode"), "{config}");
}

#[test]
fn proxy_mounts_the_topology_as_a_directory_and_has_the_flags() {
    let cluster = defaults();
    let proxy = proxy_deployment(&cluster, DEFAULT_PROXY_IMAGE).unwrap();
    assert_eq!(proxy.spec.replicas, Some(2));
    assert_eq!(
        proxy.spec.selector.match_labels,
        Some(selector_labels("db", Component::Proxy))
    );
    let pod = proxy.spec.template.spec.as_ref().unwrap();
    assert_eq!(pod.termination_grace_period_seconds, Some(45));
    assert_eq!(pod.automount_service_account_token, Some(false));
    let c = &pod.containers[0];
    assert_eq!(c.name, "lagless-proxy");
    assert_eq!(c.image.as_deref(), Some(DEFAULT_PROXY_IMAGE));
    assert_eq!(
        c.args.as_deref().unwrap(),
        [
            "--topology",
            "/etc/lagless/topology/topology.json",
            "--users",
            "/etc/lagless/users/users.json",
            "--managed-users",
            "/etc/lagless/accounts/users.json",
            "--listen",
            "0.0.0.0:3306",
            "--admin-listen",
            "0.0.0.0:9104",
            "--consistency",
            "strict",
        ]
    );
    let mounts = c.volume_mounts.as_ref().unwrap();
    let topology = mounts.iter().find(|m| m.name == "topology").unwrap();
    assert_eq!(topology.mount_path, "/etc/lagless/topology");
    assert_eq!(topology.sub_path, None);
    assert_eq!(topology.sub_path_expr, None);
    let users = mounts.iter().find(|m| m.name == "users").unwrap();
    assert_eq!(users.mount_path, "/etc/lagless/users");
    assert_eq!(users.sub_path, None);
    let volumes = pod.volumes.as_ref().unwrap();
    let topology = volumes.iter().find(|v| v.name == "topology").unwrap();
    let source = topology.config_map.as_ref().unwrap();
    assert_eq!(source.name, "db-topology");
    assert_eq!(source.items, None);
    let users = volumes.iter().find(|v| v.name == "users").unwrap();
    assert_eq!(
        users.secret.as_ref().unwrap().secret_name.as_deref(),
        Some("db-proxy-users")
    );
    // The operator's users file: optional, as it is written once the cluster has a primary.
    let accounts = volumes.iter().find(|v| v.name == "accounts").unwrap();
    let source = accounts.secret.as_ref().unwrap();
    assert_eq!(source.secret_name.as_deref(), Some("db-accounts"));
    assert_eq!(source.optional, Some(true));
    assert!(
        mounts
            .iter()
            .any(|m| m.name == "accounts" && m.mount_path == "/etc/lagless/accounts")
    );

    let readiness = c
        .readiness_probe
        .as_ref()
        .unwrap()
        .http_get
        .as_ref()
        .unwrap();
    assert_eq!(readiness.path.as_deref(), Some("/readyz"));
    assert_eq!(readiness.port, IntOrString::String("admin".into()));
    let liveness = c
        .liveness_probe
        .as_ref()
        .unwrap()
        .http_get
        .as_ref()
        .unwrap();
    assert_eq!(liveness.path.as_deref(), Some("/healthz"));
    let ports = c.ports.as_ref().unwrap();
    assert!(
        ports
            .iter()
            .any(|p| p.name.as_deref() == Some("admin") && p.container_port == 9104)
    );

    let client = client_service(&cluster).unwrap();
    assert_eq!(client.spec.unwrap().type_.as_deref(), Some("ClusterIP"));
}

#[test]
fn headless_service_pdb_and_topology() {
    let cluster = big();
    let headless = headless_service(&cluster).unwrap();
    let spec = headless.spec.unwrap();
    assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
    assert_eq!(spec.publish_not_ready_addresses, Some(true));
    assert_eq!(
        spec.selector.unwrap(),
        selector_labels("shop", Component::Mysql)
    );
    assert_eq!(
        member_host("shop", "shop-ns", 2),
        "shop-2.shop-headless.shop-ns.svc"
    );

    let pdb = pod_disruption_budget(&cluster).unwrap();
    let spec = pdb.spec.unwrap();
    assert_eq!(spec.max_unavailable, Some(IntOrString::Int(1)));
    assert_eq!(spec.min_available, None);
    assert_eq!(
        spec.selector.unwrap().match_labels.unwrap(),
        selector_labels("shop", Component::Mysql)
    );

    // The proxies' own: one at a time on a drain.
    let pdb = proxy_pod_disruption_budget(&cluster).unwrap();
    assert_eq!(pdb.metadata.name.as_deref(), Some("shop-proxy"));
    let spec = pdb.spec.unwrap();
    assert_eq!(spec.max_unavailable, Some(IntOrString::Int(1)));
    assert_eq!(
        spec.selector.unwrap().match_labels.unwrap(),
        selector_labels("shop", Component::Proxy)
    );

    let doc = topology("shop");
    let cm = topology_configmap(&cluster, &doc).unwrap();
    let data = cm.data.unwrap();
    assert_eq!(data.len(), 1);
    assert_eq!(data[TOPOLOGY_KEY], doc.to_json_pretty());
    assert_eq!(Topology::parse(data[TOPOLOGY_KEY].as_bytes()).unwrap(), doc);
}

#[test]
fn credential_secrets_only_for_what_the_spec_leaves_out() {
    let generated = BTreeMap::from([
        ("admin".to_string(), "a'dm\\in".to_string()),
        ("replication".to_string(), "repl".to_string()),
        ("agent".to_string(), "t0ken".to_string()),
        ("lookup".to_string(), "l00k".to_string()),
        ("monitor".to_string(), "m0n".to_string()),
        ("proxy-admin".to_string(), "pr0xy".to_string()),
    ]);
    let secrets = credentials_secrets(&defaults(), &generated).unwrap();
    let names: Vec<_> = secrets
        .iter()
        .map(|s| s.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "db-admin",
            "db-replication",
            "db-agent",
            "db-lookup",
            "db-monitor",
            "db-proxy-admin"
        ]
    );
    assert_eq!(
        secrets[3].data.as_ref().unwrap()["username"],
        ByteString(b"lagless_lookup".to_vec())
    );
    assert_eq!(
        secrets[2].data.as_ref().unwrap()["password"],
        ByteString(b"t0ken".to_vec())
    );
    for secret in &secrets {
        assert_common(
            &secret.metadata,
            secret.metadata.name.as_deref().unwrap(),
            "db",
            "mysql",
        );
    }
    assert_eq!(
        secrets[0].data.as_ref().unwrap()["username"],
        ByteString(b"lagless_admin".to_vec())
    );

    let missing = BTreeMap::from([("admin".to_string(), "x".to_string())]);
    assert_eq!(
        credentials_secrets(&defaults(), &missing).unwrap_err(),
        BuildError::MissingPassword("replication")
    );

    let mut all_given = defaults();
    all_given.spec.credentials = CredentialsSpec {
        admin_secret_name: Some("a".into()),
        replication_secret_name: Some("r".into()),
        lookup_secret_name: None,
        monitor_secret_name: None,
    };
    // Without names for them, the proxies' accounts are generated; the agent token and the
    // push token always are: no spec field names them.
    let only_ours = BTreeMap::from([
        ("agent".to_string(), "t".to_string()),
        ("lookup".to_string(), "l".to_string()),
        ("monitor".to_string(), "m".to_string()),
        ("proxy-admin".to_string(), "p".to_string()),
    ]);
    let secrets = credentials_secrets(&all_given, &only_ours).unwrap();
    assert_eq!(secrets.len(), 4);
    assert_eq!(secrets[0].metadata.name.as_deref(), Some("db-agent"));
    // A tenant pool's clusters name the proxies' accounts too (they share them).
    all_given.spec.credentials.lookup_secret_name = Some("pool-lookup".into());
    all_given.spec.credentials.monitor_secret_name = Some("pool-monitor".into());
    let secrets = credentials_secrets(&all_given, &only_ours).unwrap();
    let names: Vec<_> = secrets
        .iter()
        .map(|s| s.metadata.name.as_deref().unwrap())
        .collect();
    assert_eq!(names, ["db-agent", "db-proxy-admin"]);
    assert_eq!(
        Credential::Lookup.secret_name(&all_given).unwrap(),
        "pool-lookup"
    );
    let deployment = proxy_deployment(&all_given, "img").unwrap();
    let env = deployment.spec.template.spec.unwrap().containers[0]
        .env
        .clone()
        .unwrap();
    let lookup = env
        .iter()
        .find(|e| e.name == "LAGLESS_PROXY_LOOKUP_PASSWORD")
        .unwrap();
    assert_eq!(
        lookup
            .value_from
            .as_ref()
            .unwrap()
            .secret_key_ref
            .as_ref()
            .unwrap()
            .name,
        "pool-lookup"
    );
    assert_eq!(
        credentials_secrets(&all_given, &BTreeMap::new()).unwrap_err(),
        BuildError::MissingPassword("agent")
    );
}

/// bash, which the container scripts are written for (every supported image has it).
fn bash() -> Command {
    let ok = Command::new("bash")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(ok, "bash is needed to run the container scripts");
    Command::new("bash")
}

/// Runs the container's command with a stand-in entrypoint that prints its arguments.
#[test]
fn the_preamble_derives_server_id_from_the_ordinal() {
    bash();
    let dir = tempfile::tempdir().unwrap();
    let entrypoint = dir.path().join("docker-entrypoint.sh");
    std::fs::write(&entrypoint, "#!/bin/sh\nprintf '%s\\n' \"$@\"\n").unwrap();
    let chmod = Command::new("chmod")
        .arg("+x")
        .arg(&entrypoint)
        .status()
        .unwrap();
    assert!(chmod.success());
    let path = format!(
        "{}:{}",
        dir.path().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let cluster = big();
    let sts = statefulset(&cluster, "op-img").unwrap();
    let command = mysql_container(&sts).command.clone().unwrap();
    let run = |hostname: &str| {
        Command::new(&command[0])
            .args(&command[1..])
            .env("PATH", &path)
            .env("HOSTNAME", hostname)
            .env("LAGLESS_SERVER_ID_BASE", "1001")
            .output()
            .unwrap()
    };
    let out = run("shop-4");
    assert!(out.status.success(), "{out:?}");
    let args = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        args.lines().collect::<Vec<_>>(),
        [
            "mariadbd",
            "--server-id=1005",
            "--report-host=shop-4.shop-headless.shop-ns.svc",
            "--port=3306",
        ]
    );
    assert!(!run("shop").status.success());

    // A member seeded by the agent starts replication at the copy's position: the first
    // start gets an init file setting it, once.
    let data = tempfile::tempdir().unwrap();
    let position = data.path().join("lagless-seed-position");
    std::fs::write(&position, "10-1001-42\n").unwrap();
    let seeded = |hostname: &str| {
        Command::new(&command[0])
            .args(&command[1..])
            .env("PATH", &path)
            .env("HOSTNAME", hostname)
            .env("LAGLESS_SERVER_ID_BASE", "1001")
            .env("LAGLESS_DATADIR", data.path())
            .output()
            .unwrap()
    };
    let out = seeded("shop-2");
    assert!(out.status.success(), "{out:?}");
    let init = data.path().join("lagless-seed.sql");
    let args = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        args.lines().last(),
        Some(format!("--init-file={}", init.display()).as_str()),
        "{args}"
    );
    assert_eq!(
        std::fs::read_to_string(&init).unwrap(),
        "RESET MASTER;\nSET GLOBAL gtid_binlog_state = '10-1001-42';\n\
         SET GLOBAL gtid_slave_pos = '10-1001-42';\n"
    );
    assert!(!position.exists(), "the position is used once");
    let again = seeded("shop-2");
    assert!(
        !String::from_utf8(again.stdout)
            .unwrap()
            .contains("--init-file")
    );
    // A copy of a donor that had written nothing has an empty position: nothing to set.
    std::fs::remove_file(&init).unwrap();
    std::fs::write(&position, "\n").unwrap();
    let empty = seeded("shop-2");
    assert!(empty.status.success(), "{empty:?}");
    assert!(
        !String::from_utf8(empty.stdout)
            .unwrap()
            .contains("--init-file")
    );
    assert!(!position.exists() && !init.exists());
    // Anything but a GTID position is refused, never pasted into SQL.
    std::fs::write(&position, "1-1-1'; DROP TABLE t; --").unwrap();
    let bad = seeded("shop-2");
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not a GTID position"));
}

/// Sources the account script with a stand-in `docker_process_sql` that prints the SQL.
#[test]
fn the_account_script_quotes_credentials() {
    let mut bash = bash();
    let out = bash
        .arg("-c")
        .arg(format!(
            "set -eu; docker_process_sql() {{ cat; }}; {INIT_SCRIPT}"
        ))
        .env("LAGLESS_ADMIN_USER", "adm")
        .env("LAGLESS_ADMIN_PASSWORD", r"it's\x")
        .env("LAGLESS_REPLICATION_USER", "repl")
        .env("LAGLESS_REPLICATION_PASSWORD", "p")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let sql = String::from_utf8(out.stdout).unwrap();
    assert!(sql.starts_with("SET SESSION sql_log_bin=0;\n"), "{sql}");
    assert!(
        sql.contains(r"CREATE USER IF NOT EXISTS 'adm'@'%' IDENTIFIED BY 'it''s\\x';"),
        "{sql}"
    );
    assert!(
        sql.contains("GRANT REPLICATION SLAVE ON *.* TO 'repl'@'%';"),
        "{sql}"
    );
}

fn container<'a>(containers: &'a [Container], name: &str) -> &'a Container {
    containers
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no container {name}"))
}

#[test]
fn mariadb_members_run_the_seeding_agent_and_init_step() {
    let cluster = defaults();
    let sts = statefulset(&cluster, "registry.example/op:1").unwrap();
    let pod = pod_template(&sts).spec.as_ref().unwrap();
    assert_eq!(pod.containers[0].name, "mysql");
    let agent = container(&pod.containers, "agent");
    // The agent runs in the server's image (its mariadb-backup matches the server).
    assert_eq!(
        agent.image.as_deref(),
        Some(crate::crd::DEFAULT_MARIADB_IMAGE)
    );
    let command = agent.command.as_ref().unwrap().join(" ");
    assert_eq!(
        command,
        "/lagless/bin/lagless-operator agent --listen 0.0.0.0:3307 --datadir /var/lib/mysql \
         --mysql-port 3306 --token-file /etc/lagless/agent/token"
    );
    let ports = agent.ports.as_ref().unwrap();
    assert_eq!(
        (ports[0].name.as_deref(), ports[0].container_port),
        (Some("agent"), 3307)
    );
    let env: Vec<_> = agent
        .env
        .as_ref()
        .unwrap()
        .iter()
        .map(|e| e.name.as_str())
        .collect();
    assert_eq!(env, ["LAGLESS_ADMIN_USER", "LAGLESS_ADMIN_PASSWORD"]);
    let mounts = |c: &Container| -> Vec<(String, String, bool)> {
        c.volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m.name.clone(),
                    m.mount_path.clone(),
                    m.read_only == Some(true),
                )
            })
            .collect()
    };
    let shared = vec![
        ("data".to_string(), "/var/lib/mysql".to_string(), false),
        ("agent-bin".to_string(), "/lagless/bin".to_string(), true),
        (
            "agent-token".to_string(),
            "/etc/lagless/agent".to_string(),
            true,
        ),
    ];
    let with_tmp = |mut m: Vec<(String, String, bool)>| {
        m.push(("agent-tmp".to_string(), "/tmp".to_string(), false));
        m
    };
    assert_eq!(mounts(agent), with_tmp(shared.clone()));

    let init = pod.init_containers.as_ref().unwrap();
    let names: Vec<_> = init.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["agent-install", "seed"]);
    let install = &init[0];
    assert_eq!(install.image.as_deref(), Some("registry.example/op:1"));
    assert_eq!(
        install.command.as_ref().unwrap().join(" "),
        "lagless-operator agent install /lagless/bin/lagless-operator"
    );
    let seed = &init[1];
    assert_eq!(
        seed.image.as_deref(),
        Some(crate::crd::DEFAULT_MARIADB_IMAGE)
    );
    let mut with_topology = shared.clone();
    with_topology.push((
        "topology".to_string(),
        "/etc/lagless/topology".to_string(),
        true,
    ));
    assert_eq!(mounts(seed), with_tmp(with_topology));
    let script = &seed.command.as_ref().unwrap()[2];
    assert!(
        script.contains(
            r#"if [ "$ordinal" = 0 ] && [ ! -e /var/lib/mysql/lagless-seed-incomplete ]; then exit 0; fi"#
        ),
        "{script}"
    );
    assert!(
        script.contains(
            "exec /lagless/bin/lagless-operator agent fetch --if-empty --datadir /var/lib/mysql \
             --token-file /etc/lagless/agent/token \
             --topology /etc/lagless/topology/topology.json \
             --from http://db-0.db-headless.shop-ns.svc:3307 \
             --from http://db-1.db-headless.shop-ns.svc:3307 \
             --from http://db-2.db-headless.shop-ns.svc:3307 "
        ),
        "{script}"
    );
    // Every member a cluster may have: the template stays the same when `replicas` changes,
    // so scaling does not roll the existing pods.
    assert!(
        script.ends_with("--from http://db-8.db-headless.shop-ns.svc:3307\n"),
        "{script}"
    );
    let mut bigger = defaults();
    bigger.spec.replicas = 5;
    assert_eq!(
        pod_template(&statefulset(&bigger, "op").unwrap()),
        pod_template(&statefulset(&defaults(), "op").unwrap()),
        "the pod template depends on the member count"
    );

    let volumes = pod.volumes.as_ref().unwrap();
    let bin = volumes.iter().find(|v| v.name == "agent-bin").unwrap();
    assert!(bin.empty_dir.is_some());
    let token = volumes.iter().find(|v| v.name == "agent-token").unwrap();
    let secret = token.secret.as_ref().unwrap();
    assert_eq!(secret.secret_name.as_deref(), Some("db-agent"));
    let items = secret.items.as_ref().unwrap();
    assert_eq!(
        (items[0].key.as_str(), items[0].path.as_str()),
        ("password", "token")
    );
    // Not world-readable.
    assert_eq!(secret.default_mode.map(|m| m & 0o007), Some(0));
    // The published topology, which a new cluster does not have yet.
    let topology = volumes.iter().find(|v| v.name == "topology").unwrap();
    let config_map = topology.config_map.as_ref().unwrap();
    assert_eq!(config_map.name, "db-topology");
    assert_eq!(config_map.optional, Some(true));
}

#[test]
fn mysql_members_have_no_seeding_agent() {
    let sts = statefulset(&mysql(), "op").unwrap();
    let pod = pod_template(&sts).spec.as_ref().unwrap();
    assert_eq!(pod.containers.len(), 1);
    assert!(pod.init_containers.is_none());
    assert!(
        pod.volumes
            .as_ref()
            .unwrap()
            .iter()
            .all(|v| !v.name.starts_with("agent"))
    );
}

#[test]
fn the_seed_step_skips_member_zero_unless_marked_for_a_reseed() {
    let sts = statefulset(&defaults(), "op").unwrap();
    let pod = pod_template(&sts).spec.as_ref().unwrap();
    // The data directory of this run: a temporary one.
    let data = tempfile::tempdir().unwrap();
    let script = pod.init_containers.as_ref().unwrap()[1]
        .command
        .as_ref()
        .unwrap()[2]
        .replace("/var/lib/mysql", &data.path().display().to_string());
    // Whether the step ran the fetch (absent here, so the step fails, as it must) or skipped.
    let fetches = |hostname: &str| {
        let out = bash()
            .arg("-c")
            .arg(&script)
            .env("HOSTNAME", hostname)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let ran = stderr.contains("/lagless/bin/lagless-operator");
        assert_eq!(out.status.success(), !ran, "{hostname}: {stderr}");
        ran
    };
    assert!(!fetches("db-0"), "member 0 initializes a new cluster");
    assert!(fetches("db-2"));
    // Member 0 marked for a re-seed runs the fetch too.
    std::fs::write(data.path().join("lagless-seed-incomplete"), b"").unwrap();
    assert!(fetches("db-0"));
}

/// Every container of every pod the operator builds, init containers included.
fn all_containers(cluster: &MySQLCluster) -> Vec<(PodSpec, Container)> {
    let sts = statefulset(cluster, "op-img").unwrap();
    let proxy = proxy_deployment(cluster, DEFAULT_PROXY_IMAGE).unwrap();
    let mut out = Vec::new();
    for pod in [
        sts.spec.template.spec.unwrap(),
        proxy.spec.template.spec.unwrap(),
    ] {
        for c in pod
            .containers
            .iter()
            .chain(pod.init_containers.iter().flatten())
        {
            out.push((pod.clone(), c.clone()));
        }
    }
    out
}

#[test]
fn every_container_runs_locked_down() {
    for cluster in [defaults(), big(), mysql()] {
        let containers = all_containers(&cluster);
        let names: Vec<_> = containers.iter().map(|(_, c)| c.name.as_str()).collect();
        let expected: &[&str] = if cluster.spec.flavor == Flavor::Mariadb {
            &["mysql", "agent", "agent-install", "seed", "lagless-proxy"]
        } else {
            &["mysql", "lagless-proxy"]
        };
        assert_eq!(names, expected);
        for (pod, c) in &containers {
            let uid = if c.name == "lagless-proxy" {
                NONROOT_UID
            } else {
                MYSQL_UID
            };
            let security = c.security_context.as_ref().unwrap();
            assert_eq!(security.run_as_non_root, Some(true), "{}", c.name);
            assert_eq!(security.run_as_user, Some(uid), "{}", c.name);
            assert_eq!(security.run_as_group, Some(uid), "{}", c.name);
            assert_eq!(
                security.allow_privilege_escalation,
                Some(false),
                "{}",
                c.name
            );
            assert_eq!(security.read_only_root_filesystem, Some(true), "{}", c.name);
            assert_eq!(security.privileged, None, "{}", c.name);
            let capabilities = security.capabilities.as_ref().unwrap();
            assert_eq!(
                capabilities.drop,
                Some(vec!["ALL".to_string()]),
                "{}",
                c.name
            );
            assert_eq!(capabilities.add, None, "{}", c.name);

            let pod_security = pod.security_context.as_ref().unwrap();
            assert_eq!(pod_security.run_as_non_root, Some(true));
            assert_eq!(pod_security.run_as_user, Some(uid));
            assert_eq!(pod_security.run_as_group, Some(uid));
            // The data volume (and the members' agent token, the proxies' users file) belong
            // to the pod's group.
            assert_eq!(pod_security.fs_group, Some(uid));
            assert_eq!(
                pod_security.fs_group_change_policy.as_deref(),
                Some("OnRootMismatch")
            );
            assert_eq!(
                pod_security.seccomp_profile.as_ref().unwrap().type_,
                "RuntimeDefault"
            );
            assert_eq!(pod.host_network, None);
            assert_eq!(pod.host_pid, None);
        }
    }
}

#[test]
fn with_a_read_only_root_the_writable_places_are_volumes() {
    for cluster in [defaults(), mysql()] {
        let sts = statefulset(&cluster, "op").unwrap();
        let pod = pod_template(&sts).spec.as_ref().unwrap();
        let volumes = pod.volumes.as_ref().unwrap();
        let writable = |c: &Container| -> Vec<(String, String)> {
            c.volume_mounts
                .as_ref()
                .unwrap()
                .iter()
                .filter(|m| m.read_only != Some(true))
                .map(|m| (m.name.clone(), m.mount_path.clone()))
                .collect()
        };
        // The server: its data, its socket directory (the image's) and the temporary
        // directory.
        let socket_dir = match cluster.spec.flavor {
            Flavor::Mariadb => "/run/mysqld",
            Flavor::Mysql => "/var/run/mysqld",
        };
        let server = mysql_container(&sts);
        assert_eq!(
            writable(server),
            [
                ("data".to_string(), "/var/lib/mysql".to_string()),
                ("run".to_string(), socket_dir.to_string()),
                ("tmp".to_string(), "/tmp".to_string()),
            ]
        );
        for name in ["run", "tmp"] {
            let volume = volumes.iter().find(|v| v.name == name).unwrap();
            assert!(volume.empty_dir.is_some(), "{name}");
        }
        if cluster.spec.flavor == Flavor::Mariadb {
            // The agent's temporary directory (where its option file goes) is not the
            // server's.
            let agent = container(&pod.containers, "agent");
            assert_eq!(
                writable(agent),
                [
                    ("data".to_string(), "/var/lib/mysql".to_string()),
                    ("agent-tmp".to_string(), "/tmp".to_string()),
                ]
            );
            let tmp = volumes.iter().find(|v| v.name == "agent-tmp").unwrap();
            assert!(tmp.empty_dir.is_some());
        }
    }
    // The proxy writes nothing; its users file is not world-readable.
    let proxy = proxy_deployment(&defaults(), "p").unwrap();
    let pod = proxy.spec.template.spec.unwrap();
    assert!(
        pod.containers[0]
            .volume_mounts
            .as_ref()
            .unwrap()
            .iter()
            .all(|m| m.read_only == Some(true))
    );
    let users = pod
        .volumes
        .as_ref()
        .unwrap()
        .iter()
        .find(|v| v.name == "users")
        .unwrap();
    let mode = users.secret.as_ref().unwrap().default_mode;
    assert_eq!(mode.map(|m| m & 0o007), Some(0));
}

#[test]
fn no_password_is_on_a_command_line() {
    let secret_env = [
        "LAGLESS_ADMIN_PASSWORD",
        "LAGLESS_REPLICATION_PASSWORD",
        "LAGLESS_PROXY_LOOKUP_PASSWORD",
        "MARIADB_ROOT_PASSWORD",
        "MYSQL_ROOT_PASSWORD",
    ];
    for cluster in [defaults(), big(), mysql()] {
        for (_, c) in all_containers(&cluster) {
            let mut words: Vec<String> = c.command.clone().unwrap_or_default();
            words.extend(c.args.clone().unwrap_or_default());
            for probe in [&c.readiness_probe, &c.liveness_probe, &c.startup_probe]
                .into_iter()
                .flatten()
            {
                if let Some(exec) = &probe.exec {
                    words.extend(exec.command.clone().unwrap_or_default());
                }
            }
            for word in &words {
                let lower = word.to_ascii_lowercase();
                assert!(!lower.contains("--password"), "{}: {word}", c.name);
                for var in secret_env {
                    assert!(!word.contains(var), "{}: {word}", c.name);
                }
            }
            // Passwords come from Secrets, as environment variables.
            for env in c.env.iter().flatten() {
                if env.name.contains("PASSWORD") {
                    assert_eq!(env.value, None, "{}: {}", c.name, env.name);
                    let from = env.value_from.as_ref().unwrap();
                    assert_eq!(from.secret_key_ref.as_ref().unwrap().key, "password");
                }
            }
        }
    }
}

fn ingress_rules(policy: &NetworkPolicy) -> Vec<NetworkPolicyIngressRule> {
    let spec = policy.spec.as_ref().unwrap();
    assert_eq!(spec.policy_types, Some(vec!["Ingress".to_string()]));
    assert_eq!(spec.egress, None);
    spec.ingress.clone().unwrap()
}

/// The one TCP port of a rule.
fn rule_port(rule: &NetworkPolicyIngressRule) -> i32 {
    let ports = rule.ports.as_ref().unwrap();
    assert_eq!(ports.len(), 1);
    assert_eq!(ports[0].protocol.as_deref(), Some("TCP"));
    assert_eq!(ports[0].end_port, None);
    match ports[0].port {
        Some(IntOrString::Int(port)) => port,
        ref other => panic!("port {other:?}"),
    }
}

/// The operator: its labels in its namespace, both in one peer.
fn assert_operator(peer: &NetworkPolicyPeer) {
    assert_eq!(peer.ip_block, None);
    let namespace = peer.namespace_selector.as_ref().unwrap();
    assert_eq!(
        namespace.match_labels,
        Some(BTreeMap::from([(
            "kubernetes.io/metadata.name".to_string(),
            OPERATOR_NS.to_string()
        )]))
    );
    assert_eq!(namespace.match_expressions, None);
    let pods = peer.pod_selector.as_ref().unwrap();
    assert_eq!(pods.match_labels, Some(operator_pod_labels()));
    assert_eq!(pods.match_expressions, None);
    assert_eq!(
        operator_pod_labels()["app.kubernetes.io/component"],
        "operator"
    );
}

fn same_namespace_peer() -> NetworkPolicyPeer {
    NetworkPolicyPeer {
        pod_selector: Some(LabelSelector::default()),
        ..NetworkPolicyPeer::default()
    }
}

#[test]
fn the_members_admit_the_namespace_on_mysql_and_only_operator_and_members_on_the_agent() {
    for cluster in [defaults(), big()] {
        let name = cluster.metadata.name.clone().unwrap();
        let policy = network_policy(&cluster, OPERATOR_NS).unwrap();
        assert_eq!(
            policy
                .spec
                .as_ref()
                .unwrap()
                .pod_selector
                .as_ref()
                .unwrap()
                .match_labels,
            Some(selector_labels(&name, Component::Mysql))
        );
        let rules = ingress_rules(&policy);
        assert_eq!(
            rules.iter().map(rule_port).collect::<Vec<_>>(),
            [3306, 3307]
        );

        // MySQL: any pod of the namespace (proxies, other members), and the operator.
        let from = rules[0].from.as_ref().unwrap();
        assert_eq!(from.len(), 2);
        assert_eq!(from[0], same_namespace_peer());
        assert_operator(&from[1]);

        // The agent serves whole backups: only this cluster's members (their init step) and
        // the operator; not the namespace.
        let from = rules[1].from.as_ref().unwrap();
        assert_eq!(from.len(), 2);
        assert_eq!(
            from[0],
            NetworkPolicyPeer {
                pod_selector: Some(LabelSelector {
                    match_labels: Some(selector_labels(&name, Component::Mysql)),
                    ..LabelSelector::default()
                }),
                ..NetworkPolicyPeer::default()
            }
        );
        assert_operator(&from[1]);
        assert!(!from.contains(&same_namespace_peer()));
    }
}

#[test]
fn the_proxies_admit_clients_by_service_type_and_the_admin_port_never_from_outside() {
    let policy_for = |service_type: ServiceType| {
        let mut cluster = defaults();
        cluster.spec.proxy.service_type = service_type;
        proxy_network_policy(&cluster, OPERATOR_NS).unwrap()
    };
    for service_type in [
        ServiceType::ClusterIP,
        ServiceType::NodePort,
        ServiceType::LoadBalancer,
    ] {
        let policy = policy_for(service_type);
        assert_common(&policy.metadata, "db-proxy", "db", "proxy");
        assert_eq!(
            policy
                .spec
                .as_ref()
                .unwrap()
                .pod_selector
                .as_ref()
                .unwrap()
                .match_labels,
            Some(selector_labels("db", Component::Proxy))
        );
        let rules = ingress_rules(&policy);
        assert_eq!(
            rules.iter().map(rule_port).collect::<Vec<_>>(),
            [3306, 9104]
        );
        match service_type {
            // Inside the cluster: the namespace's pods.
            ServiceType::ClusterIP => {
                assert_eq!(rules[0].from, Some(vec![same_namespace_peer()]));
            }
            // Published outside: no `from`, every source.
            ServiceType::NodePort | ServiceType::LoadBalancer => {
                assert_eq!(rules[0].from, None);
            }
        }
        // Admin and metrics: the namespace (a Prometheus there) and the operator, whatever
        // the Service type.
        let from = rules[1].from.as_ref().unwrap();
        assert_eq!(from.len(), 2);
        assert_eq!(from[0], same_namespace_peer());
        assert_operator(&from[1]);
        assert!(from.iter().all(|p| p.ip_block.is_none()));
    }
}

#[test]
fn the_archiver_runs_only_with_archiving_and_reads_the_published_primary() {
    let off = archiver_deployment(&defaults(), "op-img").unwrap();
    assert_eq!(off.spec.replicas, Some(0), "no backups: scaled to 0");
    // Backups without archiving: the pod runs (it takes the backups), reads no binary log,
    // and mounts the claim of a directory destination there.
    let dir = cluster(
        "db",
        "replicas: 3\n\
         backup: {destination: /backups/db, persistentVolumeClaim: backup-vol}\n",
    );
    let d = archiver_deployment(&dir, "op-img").unwrap();
    assert_eq!(d.spec.replicas, Some(1));
    let pod = d.spec.template.spec.as_ref().unwrap();
    let command = pod.containers[0].command.as_ref().unwrap();
    assert!(
        !command.contains(&"--archive-binlogs".to_string()),
        "{command:?}"
    );
    let claim = pod
        .volumes
        .as_ref()
        .unwrap()
        .iter()
        .find(|v| v.name == "backups")
        .and_then(|v| v.persistent_volume_claim.as_ref())
        .unwrap();
    assert_eq!(claim.claim_name, "backup-vol");
    assert!(
        pod.containers[0]
            .volume_mounts
            .iter()
            .flatten()
            .any(|m| m.name == "backups"
                && m.mount_path == "/backups/db"
                && m.read_only != Some(true))
    );
    let on = cluster(
        "db",
        "replicas: 3\n\
         backup: {destination: s3://b/p, archiveBinlogs: true, \
                  s3: {endpoint: http://minio:9000, credentialsSecret: s3-key}}\n\
         tls: {}\n",
    );
    let d = archiver_deployment(&on, "op-img").unwrap();
    assert_eq!(d.metadata.name.as_deref(), Some("db-archiver"));
    assert_eq!(d.spec.replicas, Some(1));
    assert_eq!(
        d.spec.strategy.as_ref().and_then(|s| s.type_.as_deref()),
        Some("Recreate"),
        "never two archivers"
    );
    let pod = d.spec.template.spec.as_ref().unwrap();
    let init = pod.init_containers.as_ref().unwrap();
    assert_eq!(init[0].image.as_deref(), Some("op-img"));
    let archiver = &pod.containers[0];
    assert_eq!(
        archiver.image.as_deref(),
        Some(crate::crd::DEFAULT_MARIADB_IMAGE),
        "the server's image has mariadb-binlog"
    );
    let command = archiver.command.as_ref().unwrap().join(" ");
    let server_id = on.spec.server_id_base("shop-ns", "db") + 1000;
    assert_eq!(
        command,
        format!(
            "/lagless/bin/lagless-operator agent archive --cluster db \
             --topology /etc/lagless/topology/topology.json --server-id {server_id} \
             --spool /tmp/lagless-archive --listen 0.0.0.0:3307 --gtid-domain-id {} \
             --archive-binlogs",
            on.spec.gtid_domain_id("shop-ns", "db")
        )
    );
    type Value<'a> = (Option<&'a str>, Option<(&'a str, &'a str)>);
    let env: BTreeMap<&str, Value<'_>> = archiver
        .env
        .as_ref()
        .unwrap()
        .iter()
        .map(|e| {
            let secret = e
                .value_from
                .as_ref()
                .and_then(|v| v.secret_key_ref.as_ref())
                .map(|s| (s.name.as_str(), s.key.as_str()));
            (e.name.as_str(), (e.value.as_deref(), secret))
        })
        .collect();
    assert_eq!(env["LAGLESS_ARCHIVE_TO"].0, Some("s3://b/p"));
    assert_eq!(env["LAGLESS_S3_ENDPOINT"].0, Some("http://minio:9000"));
    assert_eq!(
        env["AWS_SECRET_ACCESS_KEY"].1,
        Some(("s3-key", "AWS_SECRET_ACCESS_KEY"))
    );
    assert_eq!(
        env["LAGLESS_ADMIN_PASSWORD"].1,
        Some(("db-admin", "password"))
    );
    assert_eq!(env["LAGLESS_TLS_CA"].0, Some("/etc/lagless/tls/ca.crt"));
    assert!(pod.volumes.as_ref().unwrap().iter().any(|v| {
        v.name == "topology"
            && v.config_map
                .as_ref()
                .is_some_and(|c| c.name == "db-topology")
    }));
}

#[test]
fn a_scheduled_backup_is_named_for_its_minute_and_owned_by_the_cluster() {
    let at = 1_796_601_600 + 3 * 3600 + 5 * 60; // 2026-12-07 03:05 UTC
    let b = scheduled_backup(&defaults(), at, false).unwrap();
    assert_eq!(b.metadata.name.as_deref(), Some("db-20261207-0305"));
    assert!(!b.spec.drill);
    let d = scheduled_backup(&defaults(), at, true).unwrap();
    assert_eq!(d.metadata.name.as_deref(), Some("db.drill-20261207-0305"));
    assert!(d.spec.drill);
    assert_eq!(b.spec.cluster_ref.name, "db");
    assert_eq!(
        b.metadata.labels.as_ref().unwrap()[SCHEDULED_LABEL],
        at.to_string()
    );
    assert_eq!(
        b.metadata.owner_references.as_ref().unwrap()[0].uid,
        "0f5e6a1c-uid"
    );
}

#[test]
fn a_cluster_from_a_backup_restores_its_first_member_in_the_seed_step() {
    let restored = cluster(
        "db",
        "replicas: 3\n\
         bootstrap: {fromBackup: {destination: \"s3://b/p; rm -rf /\", cluster: shop, \
                     pointInTime: \"2026-12-07 06:32:14\", \
                     s3: {endpoint: http://minio:9000, credentialsSecret: s3-key}}}\n",
    );
    let sts = statefulset(&restored, "op").unwrap();
    let pod = pod_template(&sts).spec.as_ref().unwrap();
    let seed = container(pod.init_containers.as_ref().unwrap(), "seed");
    let script = &seed.command.as_ref().unwrap()[2];
    let domain = restored.spec.gtid_domain_id("shop-ns", "db");
    assert!(
        script.contains(&format!(
            r#"if [ "$ordinal" = 0 ] && [ ! -e /var/lib/mysql/lagless-seed-incomplete ]; then exec /lagless/bin/lagless-operator agent restore --datadir /var/lib/mysql --topology /etc/lagless/topology/topology.json --gtid-domain-id {domain}; fi"#
        )),
        "{script}"
    );
    // The settings go by the environment, never through the shell.
    assert!(!script.contains("s3://"), "{script}");
    let env: BTreeMap<&str, &EnvVar> = seed
        .env
        .as_ref()
        .unwrap()
        .iter()
        .map(|e| (e.name.as_str(), e))
        .collect();
    assert_eq!(
        env["LAGLESS_RESTORE_FROM"].value.as_deref(),
        Some("s3://b/p; rm -rf /")
    );
    assert_eq!(
        env["LAGLESS_RESTORE_CLUSTER"].value.as_deref(),
        Some("shop")
    );
    assert_eq!(
        env["LAGLESS_RESTORE_TO"].value.as_deref(),
        Some("2026-12-07 06:32:14")
    );
    assert!(env.contains_key("AWS_ACCESS_KEY_ID"));
    assert!(env.contains_key("LAGLESS_REPLICATION_PASSWORD"));
    // Without a backup, member 0 starts empty, and the seed step has no restore settings.
    let plain = statefulset(&defaults(), "op").unwrap();
    let pod = pod_template(&plain).spec.as_ref().unwrap();
    let seed = container(pod.init_containers.as_ref().unwrap(), "seed");
    assert!(
        seed.env
            .iter()
            .flatten()
            .all(|e| !e.name.starts_with("LAGLESS_RESTORE"))
    );
}
