//! The proxies' objects: the Deployment, the client Service applications connect to, the
//! proxies' NetworkPolicy, and the topology ConfigMap they read.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, EnvVar, PodSpec, PodTemplateSpec,
    SecretVolumeSource, Service, ServiceSpec, Volume, VolumeMount,
};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicySpec,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use lagless_core::topology::Topology;

use crate::crd::{MySQLCluster, MySQLClusterSpec, ServiceType};

use super::{
    BuildError, Component, Context, Credential, MYSQL_PORT, NONROOT_UID, PROXY_ADMIN_PORT,
    PROXY_USERS_KEY, PROXY_USERS_MOUNT, TOPOLOGY_KEY, TOPOLOGY_MOUNT, accounts_secret_name,
    client_service_name, container_security, env_from_secret, http_probe, mount,
    mysql_service_port, operator_peer, pod_security, port, proxy_deployment_name,
    proxy_network_policy_name, proxy_users_secret_name, resources, same_namespace, selector_labels,
    spread_over_nodes, tcp, tls, topology_configmap_name,
};

/// The proxy's own `--shutdown-timeout` (30 s) plus a margin.
const PROXY_TERMINATION_GRACE_SECONDS: i64 = 45;

/// Where the proxies mount the Secret of the cluster's declarative accounts.
const ACCOUNTS_MOUNT: &str = "/etc/lagless/accounts";

/// The Service `<cluster>` that applications connect to: the proxies, on port 3306, of the
/// type `spec.proxy.serviceType`.
pub fn client_service(cluster: &MySQLCluster) -> Result<Service, BuildError> {
    let ctx = Context::new(cluster)?;
    Ok(client_service_object(
        ctx.meta(client_service_name(ctx.name), Component::Proxy),
        ctx.name,
        &ctx.spec.proxy.service_type,
    ))
}

/// The client Service `meta` names, of the proxies of `instance` (a cluster or a tenant
/// pool), on port 3306, of the type `service_type`.
pub(super) fn client_service_object(
    meta: ObjectMeta,
    instance: &str,
    service_type: &ServiceType,
) -> Service {
    let type_ = match service_type {
        ServiceType::ClusterIP => "ClusterIP",
        ServiceType::NodePort => "NodePort",
        ServiceType::LoadBalancer => "LoadBalancer",
    };
    Service {
        metadata: meta,
        spec: Some(ServiceSpec {
            type_: Some(type_.into()),
            selector: Some(selector_labels(instance, Component::Proxy)),
            ports: Some(vec![mysql_service_port()]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    }
}

/// The proxy Deployment `<cluster>-proxy`: `spec.proxy.replicas` pods of `lagless-proxy`
/// (image `proxy_image`, e.g. [`DEFAULT_PROXY_IMAGE`]). Each reads the topology from the
/// topology ConfigMap mounted as a directory (never `subPath`, which would freeze it), its
/// users from the Secret `<cluster>-proxy-users`, looks up other users with the lookup
/// account and reads positions with the monitor account: the administrator's account never
/// reaches a proxy.
pub fn proxy_deployment(
    cluster: &MySQLCluster,
    proxy_image: &str,
) -> Result<Deployment, BuildError> {
    let ctx = Context::new(cluster)?;
    let lookup = Credential::Lookup.secret_name(cluster)?;
    let monitor = Credential::Monitor.secret_name(cluster)?;
    let push_token = Credential::ProxyAdmin.secret_name(cluster)?;
    let args = vec![
        "--topology".to_string(),
        format!("{TOPOLOGY_MOUNT}/{TOPOLOGY_KEY}"),
        "--users".to_string(),
        format!("{PROXY_USERS_MOUNT}/{PROXY_USERS_KEY}"),
        "--managed-users".to_string(),
        format!("{ACCOUNTS_MOUNT}/{PROXY_USERS_KEY}"),
    ];
    let env = vec![
        env_from_secret("LAGLESS_PROXY_LOOKUP_USER", &lookup, "username"),
        env_from_secret("LAGLESS_PROXY_LOOKUP_PASSWORD", &lookup, "password"),
        env_from_secret("LAGLESS_PROXY_MONITOR_USER", &monitor, "username"),
        env_from_secret("LAGLESS_PROXY_MONITOR_PASSWORD", &monitor, "password"),
        // The operator pushes each new topology with it, faster than the kubelet
        // refreshes the mounted ConfigMap.
        env_from_secret("LAGLESS_PROXY_ADMIN_TOKEN", &push_token, "password"),
    ];
    let topology = Volume {
        name: "topology".into(),
        config_map: Some(ConfigMapVolumeSource {
            name: topology_configmap_name(ctx.name),
            ..ConfigMapVolumeSource::default()
        }),
        ..Volume::default()
    };
    // The users of the cluster's MySQLUser resources (`kube::accounts`), hashes only on
    // MariaDB; optional, as the operator writes it once the cluster has a primary.
    let accounts = Volume {
        name: "accounts".into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(accounts_secret_name(ctx.name)),
            default_mode: Some(0o440),
            optional: Some(true),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    };
    Ok(proxy_pods(ProxyPods {
        meta: ctx.meta(proxy_deployment_name(ctx.name), Component::Proxy),
        selector: ctx.selector(Component::Proxy),
        pod_labels: selector_labels(ctx.name, Component::Proxy),
        spec: ctx.spec,
        replicas: ctx.spec.proxy.replicas,
        image: proxy_image,
        args,
        env,
        mounts: vec![
            mount("topology", TOPOLOGY_MOUNT, true),
            mount("accounts", ACCOUNTS_MOUNT, true),
        ],
        volumes: vec![topology, accounts],
        users_secret: proxy_users_secret_name(ctx.name),
        tls_name: ctx.name,
    }))
}

/// What differs between the proxies of a cluster and those of a tenant pool; the rest of
/// their pods (ports, probes, the users file, TLS, security, rollout) is the same.
pub(super) struct ProxyPods<'a> {
    pub meta: ObjectMeta,
    pub selector: LabelSelector,
    /// The pods' labels (the selector's, at least).
    pub pod_labels: BTreeMap<String, String>,
    /// Where `proxy.resources`, `proxy.defaultConsistency` and `tls` come from.
    pub spec: &'a MySQLClusterSpec,
    pub replicas: i32,
    pub image: &'a str,
    /// The proxy's own flags, before those every proxy gets.
    pub args: Vec<String>,
    pub env: Vec<EnvVar>,
    /// Topology mounts, before the users file's and TLS's.
    pub mounts: Vec<VolumeMount>,
    pub volumes: Vec<Volume>,
    pub users_secret: String,
    /// The name `spec.tls` finds its Secret by.
    pub tls_name: &'a str,
}

/// The Deployment of `lagless-proxy` pods described by `p`.
pub(super) fn proxy_pods(p: ProxyPods<'_>) -> Deployment {
    let args: Vec<String> = p
        .args
        .into_iter()
        .chain([
            "--listen".to_string(),
            format!("0.0.0.0:{MYSQL_PORT}"),
            "--admin-listen".to_string(),
            format!("0.0.0.0:{PROXY_ADMIN_PORT}"),
            "--consistency".to_string(),
            p.spec.proxy.default_consistency.clone(),
        ])
        .chain(tls::proxy_args(p.spec))
        .collect();
    let container = Container {
        name: "lagless-proxy".into(),
        image: Some(p.image.to_string()),
        args: Some(args),
        env: Some(p.env),
        ports: Some(vec![
            port("mysql", MYSQL_PORT),
            port("admin", PROXY_ADMIN_PORT),
        ]),
        resources: resources(&p.spec.proxy.resources),
        volume_mounts: Some(
            p.mounts
                .into_iter()
                .chain([mount("users", PROXY_USERS_MOUNT, true)])
                .chain(tls::volume_mount(p.spec))
                .collect(),
        ),
        readiness_probe: Some(http_probe("/readyz", 5, 3, 3)),
        liveness_probe: Some(http_probe("/healthz", 10, 5, 6)),
        // The proxy only reads its mounted files.
        security_context: Some(container_security(NONROOT_UID)),
        ..Container::default()
    };
    let users = Volume {
        name: "users".into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(p.users_secret),
            default_mode: Some(0o440),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    };
    let pod = PodSpec {
        containers: vec![container],
        // Proxies learn the topology from a mounted file and the operator's pushes, never
        // from the API server: no token to steal.
        automount_service_account_token: Some(false),
        volumes: Some(
            p.volumes
                .into_iter()
                .chain([users])
                .chain(tls::volume(p.spec, p.tls_name))
                .collect(),
        ),
        affinity: Some(spread_over_nodes(&p.selector)),
        termination_grace_period_seconds: Some(PROXY_TERMINATION_GRACE_SECONDS),
        // fsGroup: the users file (passwords) is readable by the proxy's group only.
        security_context: Some(pod_security(NONROOT_UID, Some(NONROOT_UID))),
        ..PodSpec::default()
    };
    Deployment {
        metadata: p.meta,
        spec: DeploymentSpec {
            replicas: Some(p.replicas),
            selector: p.selector,
            // A new proxy is ready before an old one goes: capacity never drops in a rollout.
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(IntOrString::Int(1)),
                    max_unavailable: Some(IntOrString::Int(0)),
                }),
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(p.pod_labels),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod),
            },
            ..DeploymentSpec::default()
        },
        ..Deployment::default()
    }
}

/// The PodDisruptionBudget `<cluster>-proxy`: a node drain takes at most one of the
/// cluster's proxies at a time (the Deployment's own rollout already keeps them all, one
/// surging); each stops as SIGTERM says, closing idle sessions and letting open transactions
/// finish.
pub fn proxy_pod_disruption_budget(
    cluster: &MySQLCluster,
) -> Result<PodDisruptionBudget, BuildError> {
    let ctx = Context::new(cluster)?;
    Ok(PodDisruptionBudget {
        metadata: ctx.meta(proxy_deployment_name(ctx.name), Component::Proxy),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(ctx.selector(Component::Proxy)),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    })
}

/// The ConfigMap `<cluster>-topology` with `topology` under [`TOPOLOGY_KEY`].
pub fn topology_configmap(
    cluster: &MySQLCluster,
    topology: &Topology,
) -> Result<ConfigMap, BuildError> {
    let ctx = Context::new(cluster)?;
    Ok(ConfigMap {
        metadata: ctx.meta(topology_configmap_name(ctx.name), Component::Proxy),
        data: Some(BTreeMap::from([(
            TOPOLOGY_KEY.to_string(),
            topology.to_json_pretty(),
        )])),
        ..ConfigMap::default()
    })
}

/// The NetworkPolicy `<cluster>-proxy`: the proxies accept clients on the MySQL port from
/// pods of their namespace, or from anywhere when `spec.proxy.serviceType` publishes them
/// outside the cluster (NodePort, LoadBalancer: the clients' addresses are not known); and on
/// the admin port (`/metrics`, `/topology`, probes) only from the operator and pods of their
/// namespace, never from outside. A Prometheus in another namespace is admitted by a
/// NetworkPolicy of the user's own: policies add up.
pub fn proxy_network_policy(
    cluster: &MySQLCluster,
    operator_namespace: &str,
) -> Result<NetworkPolicy, BuildError> {
    let ctx = Context::new(cluster)?;
    Ok(proxy_network_policy_object(
        ctx.meta(proxy_network_policy_name(ctx.name), Component::Proxy),
        ctx.selector(Component::Proxy),
        &ctx.spec.proxy.service_type,
        operator_namespace,
    ))
}

/// The NetworkPolicy `meta` names, of the proxies `selector` finds (a cluster's or a tenant
/// pool's): clients on the MySQL port from pods of the namespace, or from anywhere when the
/// Service is published outside the Kubernetes cluster; the admin port only from the
/// namespace and the operator.
pub(super) fn proxy_network_policy_object(
    meta: ObjectMeta,
    selector: LabelSelector,
    service_type: &ServiceType,
    operator_namespace: &str,
) -> NetworkPolicy {
    let clients = match service_type {
        ServiceType::ClusterIP => Some(vec![same_namespace()]),
        // No `from`: every source.
        ServiceType::NodePort | ServiceType::LoadBalancer => None,
    };
    NetworkPolicy {
        metadata: meta,
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(selector),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(vec![
                NetworkPolicyIngressRule {
                    from: clients,
                    ports: Some(vec![tcp(MYSQL_PORT)]),
                },
                NetworkPolicyIngressRule {
                    from: Some(vec![same_namespace(), operator_peer(operator_namespace)]),
                    ports: Some(vec![tcp(PROXY_ADMIN_PORT)]),
                },
            ]),
            ..NetworkPolicySpec::default()
        }),
    }
}
