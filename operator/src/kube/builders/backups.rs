//! The objects of a cluster's backups: the `MySQLBackup` a schedule creates, and the
//! Deployment of the binary log archiver.

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec, DeploymentStrategy};
use k8s_openapi::api::core::v1::{Container, PodSpec, PodTemplateSpec, Volume};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::members::{
    AGENT_BIN_MOUNT, AGENT_TOKEN_MOUNT, TMP_MOUNT, agent_install, agent_token_volume,
};
use super::{
    BuildError, Component, Context, Credential, MYSQL_UID, TOPOLOGY_KEY, TOPOLOGY_MOUNT,
    claim_volume, container_security, directory, empty_dir, env, env_from_secret, mount,
    selector_labels, topology_configmap_name,
};
use crate::backup::location::{ACCESS_KEY_ID, SECRET_ACCESS_KEY};
use crate::backup::sigv4::civil;
use crate::crd::MySQLCluster;
use crate::crd::accounts::ClusterRef;
use crate::crd::backup::{MySQLBackup, MySQLBackupSpec};
use k8s_openapi::api::core::v1::ConfigMapVolumeSource;

/// The port the archiver answers `GET /status` on.
pub const ARCHIVER_PORT: u16 = 3307;

/// Where the archiver keeps what it read and has not stored yet.
const SPOOL: &str = "/tmp/lagless-archive";

pub fn archiver_deployment_name(cluster: &str) -> String {
    format!("{cluster}-archiver")
}

/// The Deployment of the cluster's backup pod: one pod (replaced, never doubled: `Recreate`)
/// of the server's image, which has `mariadb-binlog`, running `lagless-operator agent
/// archive` (the program copied in from the operator's image, as in the member pods). It takes
/// the backups and runs the drills the operator asks for, and with `archiveBinlogs` archives
/// the binary log of the primary the mounted topology names. Scaled to 0 without
/// `spec.backup`, so turning backups off needs no delete.
pub fn archiver_deployment(
    cluster: &MySQLCluster,
    operator_image: &str,
) -> Result<Deployment, BuildError> {
    let ctx = Context::new(cluster)?;
    let backup = ctx.spec.backup.as_ref();
    // The pod also takes the backups and runs the drills: it runs whenever backups are set.
    let on = backup.is_some();
    let archiving = backup.is_some_and(|b| b.archive_binlogs);
    let claim = backup.and_then(|b| {
        Some((
            b.persistent_volume_claim.clone()?,
            directory(&b.destination)?,
        ))
    });
    let admin = Credential::Admin.secret_name(cluster)?;
    let mut vars = vec![
        env_from_secret("LAGLESS_ADMIN_USER", &admin, "username"),
        env_from_secret("LAGLESS_ADMIN_PASSWORD", &admin, "password"),
    ];
    if let Some(b) = backup {
        vars.push(env("LAGLESS_ARCHIVE_TO", b.destination.clone()));
        if let Some(s3) = &b.s3 {
            vars.extend(s3.endpoint.clone().map(|e| env("LAGLESS_S3_ENDPOINT", e)));
            vars.extend(s3.region.clone().map(|r| env("AWS_REGION", r)));
            if let Some(secret) = &s3.credentials_secret {
                for key in [ACCESS_KEY_ID, SECRET_ACCESS_KEY] {
                    vars.push(env_from_secret(key, secret, key));
                }
            }
        }
    }
    if ctx.spec.tls.is_some() {
        vars.push(env(
            "LAGLESS_TLS_CA",
            format!("{}/{}", super::tls::TLS_MOUNT, crate::tls::CA_FILE),
        ));
    }
    let install = agent_install(operator_image);
    let archiver = Container {
        name: "archiver".into(),
        image: Some(ctx.spec.image().to_string()),
        command: Some(
            vec![
                format!("{AGENT_BIN_MOUNT}/lagless-operator"),
                "agent".into(),
                "archive".into(),
                "--cluster".into(),
                ctx.name.to_string(),
                "--topology".into(),
                format!("{TOPOLOGY_MOUNT}/{TOPOLOGY_KEY}"),
                // Above any member's (at most 9 of them): a reader registering with a member's
                // id would cut that member's replication.
                "--server-id".into(),
                ctx.spec
                    .server_id_base(ctx.namespace, ctx.name)
                    .saturating_add(1000)
                    .to_string(),
                "--spool".into(),
                SPOOL.into(),
                "--listen".into(),
                format!("0.0.0.0:{ARCHIVER_PORT}"),
                "--gtid-domain-id".into(),
                ctx.spec.gtid_domain_id(ctx.namespace, ctx.name).to_string(),
            ]
            .into_iter()
            .chain(archiving.then(|| "--archive-binlogs".to_string()))
            .collect(),
        ),
        env: Some(vars),
        ports: Some(vec![super::port("status", i32::from(ARCHIVER_PORT))]),
        volume_mounts: Some(
            vec![
                mount("agent-bin", AGENT_BIN_MOUNT, true),
                mount("agent-token", AGENT_TOKEN_MOUNT, true),
                mount("topology", TOPOLOGY_MOUNT, true),
                mount("tmp", TMP_MOUNT, false),
            ]
            .into_iter()
            .chain(super::tls::volume_mount(ctx.spec))
            .chain(
                claim
                    .as_ref()
                    .map(|(_, path)| mount("backups", path, false)),
            )
            .collect(),
        ),
        security_context: Some(container_security(MYSQL_UID)),
        ..Container::default()
    };
    let volumes: Vec<Volume> = [
        empty_dir("agent-bin"),
        empty_dir("tmp"),
        agent_token_volume(ctx.name),
        Volume {
            name: "topology".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: topology_configmap_name(ctx.name),
                optional: Some(true),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        },
    ]
    .into_iter()
    .chain(super::tls::volume(ctx.spec, ctx.name))
    .chain(
        claim
            .as_ref()
            .map(|(name, _)| claim_volume("backups", name, false)),
    )
    .collect();
    Ok(Deployment {
        metadata: ctx.meta(archiver_deployment_name(ctx.name), Component::Archiver),
        spec: DeploymentSpec {
            replicas: Some(i32::from(on)),
            selector: ctx.selector(Component::Archiver),
            // Two archivers would store segments side by side.
            strategy: Some(DeploymentStrategy {
                type_: Some("Recreate".into()),
                ..DeploymentStrategy::default()
            }),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(selector_labels(ctx.name, Component::Archiver)),
                    ..ObjectMeta::default()
                }),
                spec: Some(PodSpec {
                    init_containers: Some(vec![install]),
                    containers: vec![archiver],
                    volumes: Some(volumes),
                    automount_service_account_token: Some(false),
                    // The mounted certificate files are the group's, as in the member pods.
                    security_context: Some(super::pod_security(MYSQL_UID, Some(MYSQL_UID))),
                    ..PodSpec::default()
                }),
            },
            ..DeploymentSpec::default()
        },
        ..Deployment::default()
    })
}

/// The label that marks a `MySQLBackup` the schedule created (with the scheduled time, Unix
/// seconds, as its value).
pub const SCHEDULED_LABEL: &str = "lagless.dev/scheduled";

/// The name of the scheduled backup of `at` (Unix seconds): one per scheduled minute, so a
/// second operator (or a restarted one) asking for the same run finds it made.
pub fn scheduled_backup_name(cluster: &str, at: u64) -> String {
    let (y, mo, d, h, mi, _) = civil(at);
    format!("{cluster}-{y:04}{mo:02}{d:02}-{h:02}{mi:02}")
}

/// The name of the scheduled restore drill of `at`: with a dot, which no cluster's name has,
/// so it never meets another cluster's scheduled backup.
pub fn scheduled_drill_name(cluster: &str, at: u64) -> String {
    scheduled_backup_name(&format!("{cluster}.drill"), at)
}

/// The `MySQLBackup` the schedule creates for its run at `at` (a restore drill with `drill`),
/// owned by the cluster (deleted with it; the stored backup stays).
pub fn scheduled_backup(
    cluster: &MySQLCluster,
    at: u64,
    drill: bool,
) -> Result<MySQLBackup, BuildError> {
    let ctx = Context::new(cluster)?;
    let mut labels = super::labels(ctx.name, Component::Mysql);
    labels.insert(SCHEDULED_LABEL.into(), at.to_string());
    let name = if drill {
        scheduled_drill_name(ctx.name, at)
    } else {
        scheduled_backup_name(ctx.name, at)
    };
    let meta = ctx.meta(name, Component::Mysql);
    Ok(MySQLBackup {
        metadata: ObjectMeta {
            labels: Some(labels.into_iter().collect::<BTreeMap<_, _>>()),
            ..meta
        },
        spec: MySQLBackupSpec {
            cluster_ref: ClusterRef {
                name: ctx.name.to_string(),
            },
            drill,
            backup_id: None,
        },
        status: None,
    })
}
