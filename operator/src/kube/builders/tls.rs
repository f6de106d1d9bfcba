//! The objects and pod parts of `spec.tls`: the certificate's Secret mounted into member,
//! agent and proxy containers, the server options and proxy flags that use it, and where the
//! certificate comes from (a cert-manager `Certificate`, or the operator's own CA).

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{
    EnvVar, KeyToPath, Secret, SecretVolumeSource, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};

use super::{BuildError, Component, Context, env, mount};
use crate::crd::{IssuerRef, MySQLCluster, MySQLClusterSpec};
use crate::tls::authority::{Authority, Issued};
use crate::tls::{CA_FILE, CERT_FILE, KEY_FILE};

/// Where members, agents and proxies find `ca.crt`, `tls.crt` and `tls.key`. A directory
/// mount (never `subPath`), so a renewed Secret reaches the running containers.
pub const TLS_MOUNT: &str = "/etc/lagless/tls";

/// The volume name of the certificate Secret.
const VOLUME: &str = "tls";

/// The annotation on a self-issued certificate Secret: when it expires (Unix seconds).
pub const NOT_AFTER_ANNOTATION: &str = "lagless.dev/not-after";

/// The names a cluster's certificate must carry in Kubernetes: every member through the
/// headless Service, and the client Service, short and qualified.
pub fn kubernetes_names(cluster: &str, namespace: &str) -> Vec<String> {
    let headless = super::headless_service_name(cluster);
    let client = super::client_service_name(cluster);
    vec![
        format!("*.{headless}.{namespace}.svc"),
        format!("*.{headless}.{namespace}.svc.cluster.local"),
        client.clone(),
        format!("{client}.{namespace}"),
        format!("{client}.{namespace}.svc"),
        format!("{client}.{namespace}.svc.cluster.local"),
        // The agent's backup reaches its own server over the loopback.
        "localhost".into(),
        "127.0.0.1".into(),
    ]
}

/// The cert-manager `Certificate` the operator asks for, `<cluster>-tls`.
pub fn certificate_name(cluster: &str) -> String {
    format!("{cluster}-tls")
}

/// The Secret holding the operator's own CA (certificate and key) for a cluster.
pub fn ca_secret_name(cluster: &str) -> String {
    format!("{cluster}-tls-ca")
}

fn path(file: &str) -> String {
    format!("{TLS_MOUNT}/{file}")
}

/// The certificate Secret as a volume, readable by the pod's group only.
pub(super) fn volume(spec: &MySQLClusterSpec, name: &str) -> Option<Volume> {
    let tls = spec.tls.as_ref()?;
    Some(Volume {
        name: VOLUME.into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(tls.secret(name)),
            items: Some(
                [CA_FILE, CERT_FILE, KEY_FILE]
                    .into_iter()
                    .map(|key| KeyToPath {
                        key: key.into(),
                        path: key.into(),
                        ..KeyToPath::default()
                    })
                    .collect(),
            ),
            default_mode: Some(0o440),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    })
}

/// The mount of [`volume`], when the cluster runs TLS.
pub(super) fn volume_mount(spec: &MySQLClusterSpec) -> Option<VolumeMount> {
    spec.tls.as_ref().map(|_| mount(VOLUME, TLS_MOUNT, true))
}

/// The server options of TLS: the certificate, and no unencrypted TCP connection (the Unix
/// socket stays, for the image's own health checks and initialisation).
pub(super) fn server_options(spec: &MySQLClusterSpec) -> String {
    match spec.tls {
        None => String::new(),
        Some(_) => format!(
            "ssl_ca={}\nssl_cert={}\nssl_key={}\nrequire_secure_transport=ON\n",
            path(CA_FILE),
            path(CERT_FILE),
            path(KEY_FILE)
        ),
    }
}

/// The proxy's flags: clients must use TLS, and members are verified by certificate and name.
pub(super) fn proxy_args(spec: &MySQLClusterSpec) -> Vec<String> {
    match spec.tls {
        None => Vec::new(),
        Some(_) => vec![
            format!("--tls-cert={}", path(CERT_FILE)),
            format!("--tls-key={}", path(KEY_FILE)),
            "--require-tls".into(),
            "--backend-tls=verify".into(),
            format!("--backend-ca={}", path(CA_FILE)),
        ],
    }
}

/// The agent's environment: serve the backup stream over TLS, verify donors and the local
/// server against the cluster's CA.
pub(super) fn agent_env(spec: &MySQLClusterSpec) -> Vec<EnvVar> {
    match spec.tls {
        None => Vec::new(),
        Some(_) => vec![
            env("LAGLESS_AGENT_TLS_CERT", path(CERT_FILE)),
            env("LAGLESS_AGENT_TLS_KEY", path(KEY_FILE)),
            env("LAGLESS_TLS_CA", path(CA_FILE)),
        ],
    }
}

/// The cert-manager `Certificate` `<cluster>-tls`, when `spec.tls.issuerRef` names an issuer:
/// every name the members, the agents and the client Service answer to, issued into the
/// Secret the pods mount, renewed by cert-manager a third of its lifetime before expiry.
pub fn certificate(cluster: &MySQLCluster) -> Result<Option<DynamicObject>, BuildError> {
    let Some(issuer) = cluster
        .spec
        .tls
        .as_ref()
        .and_then(|t| t.issuer_ref.as_ref())
    else {
        return Ok(None);
    };
    let ctx = Context::new(cluster)?;
    Ok(Some(certificate_object(
        ctx.meta(certificate_name(ctx.name), Component::Mysql),
        &crate::crd::TlsSpec::default().secret(ctx.name),
        issuer,
        kubernetes_names(ctx.name, ctx.namespace),
    )))
}

/// A cert-manager `Certificate` with `meta` for `names`, issued by `issuer` into the Secret
/// `secret`.
pub(super) fn certificate_object(
    meta: ObjectMeta,
    secret: &str,
    issuer: &IssuerRef,
    names: Vec<String>,
) -> DynamicObject {
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "cert-manager.io",
        "v1",
        "Certificate",
    ));
    let (ips, dns): (Vec<String>, Vec<String>) = names
        .into_iter()
        .partition(|n| n.parse::<std::net::IpAddr>().is_ok());
    let mut object = DynamicObject::new(meta.name.as_deref().unwrap_or_default(), &resource);
    object.metadata = meta;
    object.data = serde_json::json!({
        "spec": {
            "secretName": secret,
            "issuerRef": {
                "name": issuer.name,
                "kind": issuer.kind,
                "group": issuer.group,
            },
            "commonName": dns.first(),
            "dnsNames": dns,
            "ipAddresses": ips,
            "duration": "2160h",
            "renewBefore": "720h",
            "privateKey": { "algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always" },
            "usages": ["server auth", "client auth", "digital signature", "key encipherment"],
        }
    });
    object
}

/// The Secret `<cluster>-tls-ca` holding the operator's own CA for the cluster.
pub fn ca_secret(cluster: &MySQLCluster, authority: &Authority) -> Result<Secret, BuildError> {
    let ctx = Context::new(cluster)?;
    Ok(ca_secret_object(
        ctx.meta(ca_secret_name(ctx.name), Component::Mysql),
        authority,
    ))
}

/// A Secret with `meta` holding `authority` (certificate and key).
pub(super) fn ca_secret_object(meta: ObjectMeta, authority: &Authority) -> Secret {
    Secret {
        metadata: meta,
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([
            (
                CA_FILE.to_string(),
                ByteString(authority.cert_pem.clone().into_bytes()),
            ),
            (
                "ca.key".to_string(),
                ByteString(authority.key_pem.clone().into_bytes()),
            ),
        ])),
        ..Secret::default()
    }
}

/// The Secret `<cluster>-tls` of a certificate the operator's CA issued, in the layout of a
/// `kubernetes.io/tls` Secret with the CA beside it.
pub fn issued_secret(
    cluster: &MySQLCluster,
    authority: &Authority,
    issued: &Issued,
) -> Result<Secret, BuildError> {
    let ctx = Context::new(cluster)?;
    Ok(issued_secret_object(
        ctx.meta(
            crate::crd::TlsSpec::default().secret(ctx.name),
            Component::Mysql,
        ),
        authority,
        issued,
    ))
}

/// A `kubernetes.io/tls` Secret with `meta` holding `issued` and its CA, annotated with its
/// expiry.
pub(super) fn issued_secret_object(
    mut meta: ObjectMeta,
    authority: &Authority,
    issued: &Issued,
) -> Secret {
    meta.annotations.get_or_insert_with(BTreeMap::new).insert(
        NOT_AFTER_ANNOTATION.to_string(),
        issued.not_after.to_string(),
    );
    Secret {
        metadata: meta,
        type_: Some("kubernetes.io/tls".into()),
        data: Some(BTreeMap::from([
            (
                CA_FILE.to_string(),
                ByteString(authority.cert_pem.clone().into_bytes()),
            ),
            (
                CERT_FILE.to_string(),
                ByteString(issued.cert_pem.clone().into_bytes()),
            ),
            (
                KEY_FILE.to_string(),
                ByteString(issued.key_pem.clone().into_bytes()),
            ),
        ])),
        ..Secret::default()
    }
}

/// The CA kept in a `<cluster>-tls-ca` Secret, if it holds one.
pub fn authority_from(cluster: &str, secret: &Secret) -> Option<Authority> {
    let data = secret.data.as_ref()?;
    let text = |key: &str| String::from_utf8(data.get(key)?.0.clone()).ok();
    Some(Authority {
        cluster: cluster.to_string(),
        cert_pem: text(CA_FILE)?,
        key_pem: text("ca.key")?,
    })
}

/// When the certificate in a self-issued `<cluster>-tls` Secret expires, if it says.
pub fn not_after(secret: &Secret) -> Option<u64> {
    secret
        .metadata
        .annotations
        .as_ref()?
        .get(NOT_AFTER_ANNOTATION)?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests;
