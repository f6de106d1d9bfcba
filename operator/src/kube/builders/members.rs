//! The members' objects: the StatefulSet of database servers (with the seeding agent's
//! containers), its server configuration ConfigMap, the headless Service, the
//! PodDisruptionBudget and the members' NetworkPolicy.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetSpec, StatefulSetUpdateStrategy};
use k8s_openapi::api::core::v1::{
    ConfigMap, ConfigMapVolumeSource, Container, EnvVar, KeyToPath, PersistentVolumeClaim,
    PersistentVolumeClaimSpec, PodSpec, PodTemplateSpec, SecretVolumeSource, Service, ServiceSpec,
    Volume, VolumeResourceRequirements,
};
use k8s_openapi::api::networking::v1::{
    NetworkPolicy, NetworkPolicyIngressRule, NetworkPolicyPeer, NetworkPolicySpec,
};
use k8s_openapi::api::policy::v1::{PodDisruptionBudget, PodDisruptionBudgetSpec};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use crate::agent::RESEED_MARKER;
use crate::backup::location::{ACCESS_KEY_ID, SECRET_ACCESS_KEY};
use crate::crd::{Flavor, MySQLCluster};

use super::{
    AGENT_PORT, BuildError, CONFIG_HASH_ANNOTATION, Component, Context, Credential,
    INIT_SCRIPT_KEY, MYSQL_PORT, MYSQL_UID, SERVER_CONFIG_KEY, TOPOLOGY_KEY, TOPOLOGY_MOUNT,
    agent_secret_name, configmap_volume, container_security, empty_dir, env, env_from_secret,
    exec_probe, headless_service_name, labels, member_host, mount, mysql_service_port,
    network_policy_name, operator_peer, pod_disruption_budget_name, pod_security, port, resources,
    same_namespace, selector_labels, server_config_name, statefulset_name, tcp, tls,
    topology_configmap_name,
};

/// Where a member pod's containers find the agent program (an `emptyDir` filled by the
/// `agent-install` init container).
pub(super) const AGENT_BIN_MOUNT: &str = "/lagless/bin";

/// Where the agent token Secret is mounted; the token is the file `token` in it.
pub(super) const AGENT_TOKEN_MOUNT: &str = "/etc/lagless/agent";

/// Where the data volume is mounted in a database server container.
const DATA_MOUNT: &str = "/var/lib/mysql";

/// The directory both images include option files from.
const CONFIG_MOUNT: &str = "/etc/mysql/conf.d";

/// The directory both images run initialization scripts from, on an empty data directory.
pub(super) const INIT_MOUNT: &str = "/docker-entrypoint-initdb.d";

/// Time for InnoDB to shut down cleanly before the kubelet kills the server.
const MYSQL_TERMINATION_GRACE_SECONDS: i64 = 120;

/// Where the server puts its socket and pid file (each image's configured directory); the
/// root filesystem is read-only.
fn run_mount(flavor: Flavor) -> &'static str {
    match flavor {
        Flavor::Mariadb => "/run/mysqld",
        Flavor::Mysql => "/var/run/mysqld",
    }
}

/// The system's temporary directory: the server's `tmpdir`, the entrypoint's here-documents,
/// and `mariadb-backup`'s spool of the redo log while it streams.
pub(super) const TMP_MOUNT: &str = "/tmp";

/// The server binary and admin client of a flavor's image.
fn server_binary(flavor: Flavor) -> &'static str {
    match flavor {
        Flavor::Mariadb => "mariadbd",
        Flavor::Mysql => "mysqld",
    }
}

pub(super) fn admin_client(flavor: Flavor) -> &'static str {
    match flavor {
        Flavor::Mariadb => "mariadb-admin",
        Flavor::Mysql => "mysqladmin",
    }
}

/// The health check of a database server: does it answer on its TCP port? `ping` succeeds
/// even when the login is refused, so it needs no credentials. It says nothing about
/// replication: a replica that lags is still a healthy member and a candidate for promotion.
fn ping_command(flavor: Flavor) -> Vec<String> {
    vec![
        admin_client(flavor).into(),
        "--host=127.0.0.1".into(),
        format!("--port={MYSQL_PORT}"),
        "--connect-timeout=3".into(),
        "ping".into(),
    ]
}

/// Renders the option file every member starts with: the replication settings the operator
/// relies on, then the spec's `serverConfig`. The server id is not in it: it differs per
/// member and is given on the command line (see [`statefulset`]).
pub fn render_server_config(cluster: &MySQLCluster) -> Result<String, BuildError> {
    let ctx = Context::new(cluster)?;
    Ok(render_config(&ctx))
}

fn render_config(ctx: &Context<'_>) -> String {
    let spec = ctx.spec;
    let mut s = String::new();
    s.push_str(
        "# Written by lagless-operator from the MySQLCluster spec; edits are overwritten.\n",
    );
    s.push_str("[mysqld]\n");
    s.push_str("log_bin=mysql-bin\nrelay_log=relay-bin\nrelay_log_recovery=ON\n");
    // Every member starts read-only; the operator makes the primary writable.
    s.push_str("read_only=ON\nskip_name_resolve=ON\n");
    // Replicas notice a silent primary within seconds, which failure detection waits for.
    let _ = writeln!(
        s,
        "slave_net_timeout={}",
        crate::orchestrate::act::NET_TIMEOUT_SECS
    );
    match spec.flavor {
        Flavor::Mariadb => {
            let _ = writeln!(
                s,
                "gtid_domain_id={}",
                spec.gtid_domain_id(ctx.namespace, ctx.name)
            );
            s.push_str("log_slave_updates=ON\ngtid_strict_mode=ON\nbinlog_format=ROW\n");
            // Replication starts when the operator says so, never by itself: a tenant move's
            // channel keeps its filter in the server's memory only, and a restarted server
            // would start it unfiltered (the mover sets the filter and starts it again); a
            // former primary must not replicate before it is told what it is now.
            s.push_str("skip_slave_start=ON\n");
            if spec.replication.semi_sync_on(spec.replicas) {
                // The operator enables the primary's side when it publishes a primary.
                s.push_str(
                    "rpl_semi_sync_slave_enabled=ON\nrpl_semi_sync_master_wait_point=AFTER_SYNC\n",
                );
            }
        }
        Flavor::Mysql => {
            // Row-based logging is MySQL's default (and setting binlog_format is deprecated).
            s.push_str("gtid_mode=ON\nenforce_gtid_consistency=ON\nlog_replica_updates=ON\n");
            if spec.replication.semi_sync_on(spec.replicas) {
                s.push_str(
                    "plugin_load_add=semisync_source.so\nplugin_load_add=semisync_replica.so\n\
                     rpl_semi_sync_replica_enabled=ON\nrpl_semi_sync_source_wait_point=AFTER_SYNC\n",
                );
                let _ = writeln!(
                    s,
                    "rpl_semi_sync_source_wait_for_replica_count={}",
                    spec.replication.semi_sync_acks.max(1)
                );
            }
        }
    }
    s.push_str(&tls::server_options(spec));
    if !spec.server_config.is_empty() {
        s.push_str("# spec.serverConfig\n");
        for (key, value) in &spec.server_config {
            let _ = writeln!(s, "{key}={value}");
        }
    }
    s
}

/// Creates the operator's accounts on a new data directory, without writing them to the
/// binary log (each member creates its own; replicated copies would collide under strict GTID
/// mode). Sourced by the image's entrypoint, which provides `docker_process_sql`.
pub(super) const INIT_SCRIPT: &str = r#"# Written by lagless-operator: creates the admin and replication accounts.
lagless_sql_string() {
	local s=${1//\\/\\\\}
	printf "'%s'" "${s//\'/\'\'}"
}
docker_process_sql <<EOSQL
SET SESSION sql_log_bin=0;
CREATE USER IF NOT EXISTS $(lagless_sql_string "$LAGLESS_ADMIN_USER")@'%' IDENTIFIED BY $(lagless_sql_string "$LAGLESS_ADMIN_PASSWORD");
GRANT ALL PRIVILEGES ON *.* TO $(lagless_sql_string "$LAGLESS_ADMIN_USER")@'%' WITH GRANT OPTION;
CREATE USER IF NOT EXISTS $(lagless_sql_string "$LAGLESS_REPLICATION_USER")@'%' IDENTIFIED BY $(lagless_sql_string "$LAGLESS_REPLICATION_PASSWORD");
GRANT REPLICATION SLAVE ON *.* TO $(lagless_sql_string "$LAGLESS_REPLICATION_USER")@'%';
EOSQL
"#;

/// The ConfigMap `<cluster>-mysql-config`: the option file ([`SERVER_CONFIG_KEY`]) and the
/// account script ([`INIT_SCRIPT_KEY`]) the members mount.
pub fn server_configmap(cluster: &MySQLCluster) -> Result<ConfigMap, BuildError> {
    let ctx = Context::new(cluster)?;
    Ok(ConfigMap {
        metadata: ctx.meta(server_config_name(ctx.name), Component::Mysql),
        data: Some(BTreeMap::from([
            (SERVER_CONFIG_KEY.to_string(), render_config(&ctx)),
            (INIT_SCRIPT_KEY.to_string(), INIT_SCRIPT.to_string()),
        ])),
        ..ConfigMap::default()
    })
}

/// FNV-1a, 64 bits: a stable hash of the configuration for [`CONFIG_HASH_ANNOTATION`].
pub(super) fn config_hash(parts: &[&str]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for byte in part.bytes().chain([0]) {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("{hash:016x}")
}

/// The shell preamble the server container runs: member N (pod `<cluster>-N`) gets
/// `server_id = serverIdBase + N` and reports its stable DNS name to the replicas.
/// A member the agent seeded (see [`crate::agent`]) left the copy's GTID position in the data
/// directory: its first start sets `gtid_slave_pos` there through an init file, so the
/// operator's rejoin (`MASTER_USE_GTID=current_pos`) replicates from exactly that point. The
/// position file is renamed once used: a later restart must not move the position back.
const SEEDED_START: &str = r#"datadir="${LAGLESS_DATADIR:-/var/lib/mysql}"
position="$datadir/lagless-seed-position"
seed=""
if [ -e "$position" ]; then
  pos=$(tr -d ' \n' < "$position")
  case "$pos" in
    *[!0-9,-]*) echo "$position: not a GTID position: $pos" >&2; exit 1 ;;
  esac
  if [ -n "$pos" ]; then
    # The copy's binary log state too, so the member can serve replicas if promoted first.
    printf "RESET MASTER;\nSET GLOBAL gtid_binlog_state = '%s';\nSET GLOBAL gtid_slave_pos = '%s';\n" \
      "$pos" "$pos" > "$datadir/lagless-seed.sql"
    seed="--init-file=$datadir/lagless-seed.sql"
  fi
  mv "$position" "$position.used"
fi
"#;

fn server_command(ctx: &Context<'_>) -> Vec<String> {
    let headless = headless_service_name(ctx.name);
    let script = format!(
        r#"set -eu
ordinal="${{HOSTNAME##*-}}"
case "$ordinal" in
  ''|*[!0-9]*) echo "cannot find the member ordinal in HOSTNAME=$HOSTNAME" >&2; exit 1 ;;
esac
server_id=$(( LAGLESS_SERVER_ID_BASE + 10#$ordinal ))
{seeded}exec docker-entrypoint.sh {binary} --server-id="$server_id" --report-host="$HOSTNAME.{headless}.{namespace}.svc" --port={MYSQL_PORT}{seed_arg}
"#,
        binary = server_binary(ctx.spec.flavor),
        namespace = ctx.namespace,
        seeded = match ctx.spec.flavor {
            Flavor::Mariadb => SEEDED_START,
            Flavor::Mysql => "",
        },
        seed_arg = match ctx.spec.flavor {
            Flavor::Mariadb => " $seed",
            Flavor::Mysql => "",
        },
    );
    vec!["bash".into(), "-c".into(), script]
}

fn server_env(ctx: &Context<'_>, cluster: &MySQLCluster) -> Result<Vec<EnvVar>, BuildError> {
    let admin = Credential::Admin.secret_name(cluster)?;
    let replication = Credential::Replication.secret_name(cluster)?;
    let (root_password, root_host) = match ctx.spec.flavor {
        Flavor::Mariadb => ("MARIADB_ROOT_PASSWORD", "MARIADB_ROOT_HOST"),
        Flavor::Mysql => ("MYSQL_ROOT_PASSWORD", "MYSQL_ROOT_HOST"),
    };
    Ok(vec![
        env(
            "LAGLESS_SERVER_ID_BASE",
            ctx.spec.server_id_base(ctx.namespace, ctx.name).to_string(),
        ),
        env_from_secret("LAGLESS_ADMIN_USER", &admin, "username"),
        env_from_secret("LAGLESS_ADMIN_PASSWORD", &admin, "password"),
        env_from_secret("LAGLESS_REPLICATION_USER", &replication, "username"),
        env_from_secret("LAGLESS_REPLICATION_PASSWORD", &replication, "password"),
        // The image's own root account stays local to the pod; the operator uses its admin.
        env_from_secret(root_password, &admin, "password"),
        env(root_host, "localhost"),
    ])
}

/// The init step of a MariaDB member: on an empty data directory, except member 0's (which
/// initializes a new cluster), or on one marked for a re-seed (any member's), copy a member's
/// data with `agent fetch`: from the published topology's members when there is one (never a
/// quarantined member), else from any member. The donors are tried
/// in order, this pod skipped; while none answers the step fails and the kubelet retries it.
fn seed_command(ctx: &Context<'_>) -> Vec<String> {
    let mut from = String::new();
    // Every member a cluster can have, not the current count: the pod template must not change
    // with `replicas`, or scaling would roll every pod, the primary's included. Names that do
    // not resolve (yet) are skipped by `agent fetch`.
    for ordinal in 0..crate::crd::MAX_MEMBERS.unsigned_abs() {
        let host = member_host(ctx.name, ctx.namespace, ordinal);
        let _ = write!(from, " --from http://{host}:{AGENT_PORT}");
    }
    // Member 0 of a new cluster starts empty, or from a backup (`spec.bootstrap`): the
    // restore's settings come from the environment ([`restore_env`]), never the script.
    let first = if ctx.spec.from_backup().is_some() {
        format!(
            "exec {AGENT_BIN_MOUNT}/lagless-operator agent restore --datadir {DATA_MOUNT} --topology {TOPOLOGY_MOUNT}/{TOPOLOGY_KEY} --gtid-domain-id {}",
            ctx.spec.gtid_domain_id(ctx.namespace, ctx.name)
        )
    } else {
        "exit 0".to_string()
    };
    let script = format!(
        r#"set -eu
ordinal="${{HOSTNAME##*-}}"
if [ "$ordinal" = 0 ] && [ ! -e {DATA_MOUNT}/{RESEED_MARKER} ]; then {first}; fi
exec {AGENT_BIN_MOUNT}/lagless-operator agent fetch --if-empty --datadir {DATA_MOUNT} --token-file {AGENT_TOKEN_MOUNT}/token --topology {TOPOLOGY_MOUNT}/{TOPOLOGY_KEY}{from}
"#
    );
    vec!["bash".into(), "-c".into(), script]
}

/// The claim a directory backup is restored from, and where it is mounted (the directory).
fn restore_claim(ctx: &Context<'_>) -> Option<(String, String)> {
    let from = ctx.spec.from_backup()?;
    Some((
        from.persistent_volume_claim.clone()?,
        super::directory(&from.destination)?,
    ))
}

/// What `agent restore` needs in the seed step of a cluster that starts from a backup: where
/// the backup is, the S3 key (from `fromBackup.s3.credentialsSecret`), and this cluster's
/// admin and replication accounts, which the restored data is given.
fn restore_env(ctx: &Context<'_>, cluster: &MySQLCluster) -> Result<Vec<EnvVar>, BuildError> {
    let Some(from) = ctx.spec.from_backup() else {
        return Ok(Vec::new());
    };
    let admin = Credential::Admin.secret_name(cluster)?;
    let replication = Credential::Replication.secret_name(cluster)?;
    let mut vars = vec![
        env("LAGLESS_RESTORE_FROM", from.destination.clone()),
        env(
            "LAGLESS_RESTORE_CLUSTER",
            from.cluster.clone().unwrap_or_else(|| ctx.name.to_string()),
        ),
        env_from_secret("LAGLESS_ADMIN_USER", &admin, "username"),
        env_from_secret("LAGLESS_ADMIN_PASSWORD", &admin, "password"),
        env_from_secret("LAGLESS_REPLICATION_USER", &replication, "username"),
        env_from_secret("LAGLESS_REPLICATION_PASSWORD", &replication, "password"),
    ];
    vars.extend(
        from.backup_id
            .clone()
            .map(|id| env("LAGLESS_RESTORE_BACKUP", id)),
    );
    vars.extend(
        from.point_in_time
            .clone()
            .map(|t| env("LAGLESS_RESTORE_TO", t)),
    );
    if let Some(s3) = &from.s3 {
        vars.extend(s3.endpoint.clone().map(|e| env("LAGLESS_S3_ENDPOINT", e)));
        vars.extend(s3.region.clone().map(|r| env("AWS_REGION", r)));
        if let Some(secret) = &s3.credentials_secret {
            for key in [ACCESS_KEY_ID, SECRET_ACCESS_KEY] {
                // Optional: the members restart long after the restore, maybe with the
                // source's key gone; only a restore needs it, and says so when it is missing.
                let mut var = env_from_secret(key, secret, key);
                if let Some(r) = var
                    .value_from
                    .as_mut()
                    .and_then(|v| v.secret_key_ref.as_mut())
                {
                    r.optional = Some(true);
                }
                vars.push(var);
            }
        }
    }
    Ok(vars)
}

/// The seeding containers of a MariaDB member (see [`crate::agent`]): `agent-install` copies
/// the agent from the operator image, `seed` fills an empty data directory from a donor (both
/// init containers), and the `agent` sidecar serves this member's backups. The agent runs in
/// the server's image, which has the matching `mariadb-backup`.
fn agent_containers(
    ctx: &Context<'_>,
    cluster: &MySQLCluster,
    operator_image: &str,
) -> Result<(Vec<Container>, Container), BuildError> {
    let admin = Credential::Admin.secret_name(cluster)?;
    let image = ctx.spec.image().to_string();
    let install = agent_install(operator_image);
    let seed = Container {
        name: "seed".into(),
        image: Some(image.clone()),
        command: Some(seed_command(ctx)),
        // Why a copy or a restore failed reaches the pod's status (and the operator's report
        // of a failing restore) without a log reader.
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        env: Some(
            tls::agent_env(ctx.spec)
                .into_iter()
                .chain(restore_env(ctx, cluster)?)
                .collect::<Vec<_>>(),
        )
        .filter(|e| !e.is_empty()),
        resources: resources(&ctx.spec.resources),
        volume_mounts: Some(
            vec![
                mount("data", DATA_MOUNT, false),
                mount("agent-bin", AGENT_BIN_MOUNT, true),
                mount("agent-token", AGENT_TOKEN_MOUNT, true),
                mount("topology", TOPOLOGY_MOUNT, true),
                mount("agent-tmp", TMP_MOUNT, false),
            ]
            .into_iter()
            .chain(tls::volume_mount(ctx.spec))
            .chain(restore_claim(ctx).map(|(_, path)| mount("restore-from", &path, true)))
            .collect(),
        ),
        security_context: Some(container_security(MYSQL_UID)),
        ..Container::default()
    };
    let agent = Container {
        name: "agent".into(),
        image: Some(image),
        command: Some(vec![
            format!("{AGENT_BIN_MOUNT}/lagless-operator"),
            "agent".into(),
            "--listen".into(),
            format!("0.0.0.0:{AGENT_PORT}"),
            "--datadir".into(),
            DATA_MOUNT.into(),
            "--mysql-port".into(),
            MYSQL_PORT.to_string(),
            "--token-file".into(),
            format!("{AGENT_TOKEN_MOUNT}/token"),
        ]),
        env: Some(
            vec![
                env_from_secret("LAGLESS_ADMIN_USER", &admin, "username"),
                env_from_secret("LAGLESS_ADMIN_PASSWORD", &admin, "password"),
            ]
            .into_iter()
            .chain(tls::agent_env(ctx.spec))
            .collect(),
        ),
        ports: Some(vec![port("agent", AGENT_PORT)]),
        volume_mounts: Some(
            vec![
                mount("data", DATA_MOUNT, false),
                mount("agent-bin", AGENT_BIN_MOUNT, true),
                mount("agent-token", AGENT_TOKEN_MOUNT, true),
                mount("agent-tmp", TMP_MOUNT, false),
            ]
            .into_iter()
            .chain(tls::volume_mount(ctx.spec))
            .collect(),
        ),
        security_context: Some(container_security(MYSQL_UID)),
        ..Container::default()
    };
    Ok((vec![install, seed], agent))
}

/// The volumes of [`agent_containers`].
fn agent_volumes(ctx: &Context<'_>) -> [Volume; 4] {
    [
        // The published topology, so the init step copies from a member the orchestration
        // trusts; optional, as a new cluster has published none yet.
        Volume {
            name: "topology".into(),
            config_map: Some(ConfigMapVolumeSource {
                name: topology_configmap_name(ctx.name),
                optional: Some(true),
                ..ConfigMapVolumeSource::default()
            }),
            ..Volume::default()
        },
        empty_dir("agent-bin"),
        // Apart from the server's: the backup's private files are not in a directory the
        // server's processes share.
        empty_dir("agent-tmp"),
        agent_token_volume(ctx.name),
    ]
}

/// The init container that copies the operator's program from its image into `agent-bin`,
/// for a pod of another image (the server's) to run.
pub(super) fn agent_install(operator_image: &str) -> Container {
    Container {
        name: "agent-install".into(),
        image: Some(operator_image.to_string()),
        command: Some(vec![
            "lagless-operator".into(),
            "agent".into(),
            "install".into(),
            format!("{AGENT_BIN_MOUNT}/lagless-operator"),
        ]),
        volume_mounts: Some(vec![mount("agent-bin", AGENT_BIN_MOUNT, false)]),
        security_context: Some(container_security(MYSQL_UID)),
        ..Container::default()
    }
}

/// The agents' token Secret as the volume `agent-token` (the file `token`).
pub(super) fn agent_token_volume(cluster: &str) -> Volume {
    Volume {
        name: "agent-token".into(),
        secret: Some(SecretVolumeSource {
            secret_name: Some(agent_secret_name(cluster)),
            items: Some(vec![KeyToPath {
                key: "password".into(),
                path: "token".into(),
                ..KeyToPath::default()
            }]),
            // Group-readable: the group is the pod's fsGroup, the agent's.
            default_mode: Some(0o440),
            ..SecretVolumeSource::default()
        }),
        ..Volume::default()
    }
}

/// The StatefulSet of database servers: `spec.replicas` members started in parallel, each
/// read-only with its own server id, the cluster's GTID domain and binary log, and a data
/// volume from `spec.storage`. A MariaDB member also runs the seeding agent (program from
/// `operator_image`, e.g. [`DEFAULT_OPERATOR_IMAGE`]): a new member copies its data from
/// another before its server starts.
pub fn statefulset(
    cluster: &MySQLCluster,
    operator_image: &str,
) -> Result<StatefulSet, BuildError> {
    let ctx = Context::new(cluster)?;
    let spec = ctx.spec;
    let flavor = spec.flavor;
    let config = render_config(&ctx);
    let mut pod_labels = labels(ctx.name, Component::Mysql);
    pod_labels.remove("app.kubernetes.io/managed-by");
    let container = Container {
        name: "mysql".into(),
        image: Some(spec.image().to_string()),
        command: Some(server_command(&ctx)),
        env: Some(server_env(&ctx, cluster)?),
        ports: Some(vec![port("mysql", MYSQL_PORT)]),
        resources: resources(&spec.resources),
        volume_mounts: Some(
            vec![
                mount("data", DATA_MOUNT, false),
                mount("config", CONFIG_MOUNT, true),
                mount("init", INIT_MOUNT, true),
                mount("run", run_mount(flavor), false),
                mount("tmp", TMP_MOUNT, false),
            ]
            .into_iter()
            .chain(tls::volume_mount(spec))
            .collect(),
        ),
        // The image's entrypoint writes only to the data directory, the socket directory and
        // the temporary directory, each a volume, so the root filesystem can be read-only.
        // Started as the `mysql` user it does not switch users, and needs no capability.
        security_context: Some(container_security(MYSQL_UID)),
        // Crash recovery of a large InnoDB may take long: the startup probe allows an hour
        // before liveness takes over.
        startup_probe: Some(exec_probe(ping_command(flavor), 10, 5, 360)),
        readiness_probe: Some(exec_probe(ping_command(flavor), 5, 5, 3)),
        liveness_probe: Some(exec_probe(ping_command(flavor), 10, 10, 6)),
        ..Container::default()
    };
    let mut containers = vec![container];
    let mut init_containers = None;
    let mut volumes = Vec::new();
    // The MySQL image has no mariadb-backup: its members are not seeded yet.
    if flavor == Flavor::Mariadb {
        let (init, agent) = agent_containers(&ctx, cluster, operator_image)?;
        containers.push(agent);
        init_containers = Some(init);
        volumes.extend(agent_volumes(&ctx));
        volumes.extend(
            restore_claim(&ctx).map(|(claim, _)| super::claim_volume("restore-from", &claim, true)),
        );
    }
    let pod = PodSpec {
        containers,
        init_containers,
        // Nothing in a member pod talks to the API server: no token to steal.
        automount_service_account_token: Some(false),
        volumes: Some(
            vec![
                configmap_volume(
                    "config",
                    server_config_name(ctx.name),
                    &[SERVER_CONFIG_KEY],
                    None,
                ),
                // Not executable: the entrypoint then sources the script, which gives it
                // `docker_process_sql`.
                configmap_volume(
                    "init",
                    server_config_name(ctx.name),
                    &[INIT_SCRIPT_KEY],
                    Some(0o444),
                ),
                empty_dir("run"),
                empty_dir("tmp"),
            ]
            .into_iter()
            .chain(volumes)
            .chain(tls::volume(spec, ctx.name))
            .collect(),
        ),
        affinity: Some(ctx.spread_over_nodes(Component::Mysql)),
        termination_grace_period_seconds: Some(MYSQL_TERMINATION_GRACE_SECONDS),
        // fsGroup makes the data volume, and the agent token (mode 0440), the `mysql` group's.
        security_context: Some(pod_security(MYSQL_UID, Some(MYSQL_UID))),
        ..PodSpec::default()
    };
    let claim = PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some("data".into()),
            labels: Some(labels(ctx.name, Component::Mysql)),
            ..ObjectMeta::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(vec!["ReadWriteOnce".into()]),
            storage_class_name: spec.storage.storage_class_name.clone(),
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([(
                    "storage".to_string(),
                    Quantity(spec.storage.size.clone()),
                )])),
                ..VolumeResourceRequirements::default()
            }),
            ..PersistentVolumeClaimSpec::default()
        }),
        ..PersistentVolumeClaim::default()
    };
    Ok(StatefulSet {
        metadata: ctx.meta(statefulset_name(ctx.name), Component::Mysql),
        spec: StatefulSetSpec {
            replicas: Some(spec.replicas),
            service_name: Some(headless_service_name(ctx.name)),
            pod_management_policy: Some("Parallel".into()),
            // The operator rolls a changed template itself (`kube::roll`): replicas first,
            // each caught up before the next, the primary last after a switchover. The
            // StatefulSet's own roll would restart the primary with no switchover.
            update_strategy: Some(StatefulSetUpdateStrategy {
                type_: Some("OnDelete".into()),
                rolling_update: None,
            }),
            selector: ctx.selector(Component::Mysql),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    annotations: Some(BTreeMap::from([(
                        CONFIG_HASH_ANNOTATION.to_string(),
                        config_hash(&[&config, INIT_SCRIPT]),
                    )])),
                    ..ObjectMeta::default()
                }),
                spec: Some(pod),
            },
            volume_claim_templates: Some(vec![claim]),
            ..StatefulSetSpec::default()
        },
        ..StatefulSet::default()
    })
}

/// The headless Service `<cluster>-headless` that gives member N the DNS name
/// `<cluster>-N.<cluster>-headless.<namespace>.svc`. Not-ready members are published too: the
/// operator must reach a member that is starting or failing its checks.
pub fn headless_service(cluster: &MySQLCluster) -> Result<Service, BuildError> {
    let ctx = Context::new(cluster)?;
    Ok(Service {
        metadata: ctx.meta(headless_service_name(ctx.name), Component::Mysql),
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            publish_not_ready_addresses: Some(true),
            selector: Some(selector_labels(ctx.name, Component::Mysql)),
            ports: Some(vec![mysql_service_port()]),
            ..ServiceSpec::default()
        }),
        ..Service::default()
    })
}

/// The PodDisruptionBudget `<cluster>-mysql`: a voluntary disruption (a node drain) takes at
/// most one member at a time.
pub fn pod_disruption_budget(cluster: &MySQLCluster) -> Result<PodDisruptionBudget, BuildError> {
    let ctx = Context::new(cluster)?;
    Ok(PodDisruptionBudget {
        metadata: ctx.meta(pod_disruption_budget_name(ctx.name), Component::Mysql),
        spec: Some(PodDisruptionBudgetSpec {
            max_unavailable: Some(IntOrString::Int(1)),
            selector: Some(ctx.selector(Component::Mysql)),
            ..PodDisruptionBudgetSpec::default()
        }),
        ..PodDisruptionBudget::default()
    })
}

/// The NetworkPolicy `<cluster>-mysql`: the members accept connections only on the MySQL
/// port, from pods of their namespace (proxies, sidecar proxies, the other members) and from
/// the operator's pods ([`operator_pod_labels`] in `operator_namespace`), and on the agent
/// port only from the operator (which asks for re-seeds) and the cluster's own members (whose
/// init step copies from a donor's agent).
pub fn network_policy(
    cluster: &MySQLCluster,
    operator_namespace: &str,
) -> Result<NetworkPolicy, BuildError> {
    let ctx = Context::new(cluster)?;
    let operator = operator_peer(operator_namespace);
    let members = NetworkPolicyPeer {
        pod_selector: Some(ctx.selector(Component::Mysql)),
        ..NetworkPolicyPeer::default()
    };
    Ok(NetworkPolicy {
        metadata: ctx.meta(network_policy_name(ctx.name), Component::Mysql),
        spec: Some(NetworkPolicySpec {
            pod_selector: Some(ctx.selector(Component::Mysql)),
            policy_types: Some(vec!["Ingress".into()]),
            ingress: Some(vec![
                NetworkPolicyIngressRule {
                    from: Some(vec![same_namespace(), operator.clone()]),
                    ports: Some(vec![tcp(MYSQL_PORT)]),
                },
                // A backup of the whole database is served here (to holders of the token).
                NetworkPolicyIngressRule {
                    from: Some(vec![members, operator]),
                    ports: Some(vec![tcp(AGENT_PORT)]),
                },
            ]),
            ..NetworkPolicySpec::default()
        }),
    })
}
