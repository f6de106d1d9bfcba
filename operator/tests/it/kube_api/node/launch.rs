//! How the node runs one container of a pod: its volumes as directories of the node, its
//! environment resolved from the API (Secrets, ConfigMaps, the downward API), and its process
//! in the pod's network namespace and a mount namespace of its own, where each volume is bound
//! at its mount path, so the program sees the paths its image would give it. Images are not
//! pulled: each image the operator uses maps to the local program it ships (see [`entrypoint`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use k8s_openapi::api::core::v1::{ConfigMap, Container, Pod, Secret, Volume};
use kube::Client;
use kube::api::Api;

/// The stand-in for the official MariaDB image's entrypoint (initializes an empty data
/// directory, then runs the server).
const MARIADB_ENTRYPOINT: &str = include_str!("docker-entrypoint.sh");

/// The MariaDB image's option file: its socket, and the directory the operator's file is
/// mounted in (the host's own `/etc/mysql` is not the image's).
const MARIADB_MY_CNF: &str = "[client-server]\nsocket=/run/mysqld/mysqld.sock\n\n\
                              [mysqld]\nbind-address=0.0.0.0\n\n!includedir /etc/mysql/conf.d/\n";

/// The files of the node: the programs images map to, and the pods' volumes.
pub struct Images {
    /// Put first in every container's `PATH`.
    pub bin: PathBuf,
    pub my_cnf: PathBuf,
    /// Every container's `/etc/resolv.conf`: no name server, so a name the hosts file lacks
    /// fails at once, as the cluster DNS answers for a pod that does not exist.
    pub resolv_conf: PathBuf,
}

impl Images {
    /// Writes the images' programs into `dir`: this build's `lagless-operator` (which also
    /// runs the proxy) and the MariaDB entrypoint.
    pub fn install(dir: &Path, operator: &Path) -> std::io::Result<Self> {
        use std::os::unix::fs::PermissionsExt;
        let bin = dir.join("image-bin");
        std::fs::create_dir_all(&bin)?;
        std::os::unix::fs::symlink(operator, bin.join("lagless-operator"))?;
        for (name, text) in [
            ("docker-entrypoint.sh", MARIADB_ENTRYPOINT.to_string()),
            (
                "lagless-proxy",
                "#!/bin/sh\nexec lagless-operator proxy \"$@\"\n".to_string(),
            ),
        ] {
            let path = bin.join(name);
            std::fs::write(&path, text)?;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
        }
        let my_cnf = dir.join("mariadb-my.cnf");
        std::fs::write(&my_cnf, MARIADB_MY_CNF)?;
        let resolv_conf = dir.join("resolv.conf");
        std::fs::write(
            &resolv_conf,
            "nameserver 127.0.0.1\noptions timeout:1 attempts:1\n",
        )?;
        Ok(Self {
            bin,
            my_cnf,
            resolv_conf,
        })
    }
}

/// What an image runs when the container names no command: its ENTRYPOINT and CMD.
fn entrypoint(image: &str) -> Result<(Vec<String>, Vec<String>), String> {
    let name = image.rsplit('/').next().unwrap_or(image);
    let name = name.split([':', '@']).next().unwrap_or(name);
    let strings = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    match name {
        "mariadb" => Ok((strings(&["docker-entrypoint.sh"]), strings(&["mariadbd"]))),
        "lagless-proxy" => Ok((strings(&["lagless-proxy"]), Vec::new())),
        "lagless-operator" => Ok((strings(&["lagless-operator"]), Vec::new())),
        _ => Err(format!("the test node runs no image {image}")),
    }
}

/// The argv of a container, by Kubernetes' rules for `command` and `args` over the image's.
pub fn argv(container: &Container) -> Result<Vec<String>, String> {
    let image = container.image.as_deref().unwrap_or_default();
    let (entry, cmd) = entrypoint(image)?;
    Ok(match (&container.command, &container.args) {
        (Some(command), args) => command
            .iter()
            .chain(args.iter().flatten())
            .cloned()
            .collect(),
        (None, Some(args)) => entry.into_iter().chain(args.iter().cloned()).collect(),
        (None, None) => entry.into_iter().chain(cmd).collect(),
    })
}

/// The directory a volume is, and whether its contents come from the API (and are refreshed
/// as a kubelet refreshes them).
pub struct VolumeDir {
    pub path: PathBuf,
    pub source: Option<Volume>,
}

/// Makes the directory of each of the pod's volumes under `pod_dir`; a claim's directory is
/// the node's for that claim, so a pod made again (a StatefulSet's) finds its data.
pub async fn volumes(
    client: &Client,
    namespace: &str,
    pod: &Pod,
    pod_dir: &Path,
    claims_dir: &Path,
) -> Result<BTreeMap<String, VolumeDir>, String> {
    let mut dirs = BTreeMap::new();
    let spec = pod.spec.as_ref().ok_or("a pod without a spec")?;
    for volume in spec.volumes.iter().flatten() {
        let (path, source) = if let Some(claim) = &volume.persistent_volume_claim {
            (claims_dir.join(&claim.claim_name), None)
        } else if volume.empty_dir.is_some() {
            (pod_dir.join("volumes").join(&volume.name), None)
        } else if volume.config_map.is_some() || volume.secret.is_some() {
            (
                pod_dir.join("volumes").join(&volume.name),
                Some(volume.clone()),
            )
        } else {
            return Err(format!(
                "volume {}: the test node has no such volume type",
                volume.name
            ));
        };
        std::fs::create_dir_all(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        if let Some(source) = &source {
            refresh(client, namespace, source, &path).await?;
        }
        dirs.insert(volume.name.clone(), VolumeDir { path, source });
    }
    Ok(dirs)
}

/// Writes a ConfigMap's or Secret's keys into `dir` (each changed file replaced whole, as the
/// kubelet's atomic writer does); a missing optional source leaves it empty.
pub async fn refresh(
    client: &Client,
    namespace: &str,
    volume: &Volume,
    dir: &Path,
) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let (data, items, mode, optional, what) = if let Some(source) = &volume.config_map {
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), namespace);
        let found = api
            .get_opt(&source.name)
            .await
            .map_err(|e| format!("ConfigMap {}: {e}", source.name))?;
        let data: BTreeMap<String, Vec<u8>> = found
            .map(|c| {
                c.data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.into_bytes()))
                    .collect()
            })
            .unwrap_or_default();
        let exists = !data.is_empty();
        (
            exists.then_some(data),
            source.items.clone(),
            source.default_mode,
            source.optional.unwrap_or(false),
            format!("ConfigMap {}", source.name),
        )
    } else if let Some(source) = &volume.secret {
        let name = source.secret_name.clone().unwrap_or_default();
        let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
        let found = api
            .get_opt(&name)
            .await
            .map_err(|e| format!("Secret {name}: {e}"))?;
        let data = found.map(|s| {
            s.data
                .unwrap_or_default()
                .into_iter()
                .map(|(k, v)| (k, v.0))
                .collect::<BTreeMap<_, _>>()
        });
        (
            data,
            source.items.clone(),
            source.default_mode,
            source.optional.unwrap_or(false),
            format!("Secret {name}"),
        )
    } else {
        return Ok(());
    };
    let Some(data) = data else {
        return if optional {
            Ok(())
        } else {
            Err(format!("{what} does not exist (yet)"))
        };
    };
    let files: Vec<(String, &Vec<u8>)> = match &items {
        Some(items) => items
            .iter()
            .filter_map(|i| Some((i.path.clone(), data.get(&i.key)?)))
            .collect(),
        None => data.iter().map(|(k, v)| (k.clone(), v)).collect(),
    };
    for (name, bytes) in files {
        let path = dir.join(&name);
        if std::fs::read(&path).ok().as_ref() == Some(bytes) {
            continue;
        }
        let staged = dir.join(format!("..{name}.new"));
        std::fs::write(&staged, bytes).map_err(|e| format!("{}: {e}", staged.display()))?;
        let mode = u32::try_from(mode.unwrap_or(0o644)).unwrap_or(0o644);
        std::fs::set_permissions(&staged, std::fs::Permissions::from_mode(mode))
            .map_err(|e| format!("{}: {e}", staged.display()))?;
        std::fs::rename(&staged, &path).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

/// What the downward API gives a container.
pub struct PodFields<'a> {
    pub name: &'a str,
    pub namespace: &'a str,
    pub uid: &'a str,
    pub ip: &'a str,
    pub host_ip: &'a str,
}

/// The container's environment, `valueFrom` resolved now (as the kubelet does at each start).
pub async fn environment(
    client: &Client,
    container: &Container,
    fields: &PodFields<'_>,
    images: &Images,
) -> Result<Vec<(String, String)>, String> {
    let mut env = vec![
        (
            "PATH".to_string(),
            format!(
                "{}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                images.bin.display()
            ),
        ),
        ("HOSTNAME".to_string(), fields.name.to_string()),
        ("HOME".to_string(), "/root".to_string()),
    ];
    for var in container.env.iter().flatten() {
        let value = match (&var.value, &var.value_from) {
            (Some(value), _) => Some(value.clone()),
            (None, None) => Some(String::new()),
            (None, Some(from)) => {
                if let Some(key) = &from.secret_key_ref {
                    let api: Api<Secret> = Api::namespaced(client.clone(), fields.namespace);
                    let secret = api
                        .get_opt(&key.name)
                        .await
                        .map_err(|e| format!("Secret {}: {e}", key.name))?;
                    let value = secret
                        .and_then(|s| s.data?.remove(&key.key))
                        .map(|b| String::from_utf8_lossy(&b.0).into_owned());
                    match (value, key.optional.unwrap_or(false)) {
                        (Some(v), _) => Some(v),
                        (None, true) => None,
                        (None, false) => {
                            return Err(format!(
                                "{}: Secret {} has no key {}",
                                var.name, key.name, key.key
                            ));
                        }
                    }
                } else if let Some(key) = &from.config_map_key_ref {
                    let api: Api<ConfigMap> = Api::namespaced(client.clone(), fields.namespace);
                    let map = api
                        .get_opt(&key.name)
                        .await
                        .map_err(|e| format!("ConfigMap {}: {e}", key.name))?;
                    let value = map.and_then(|m| m.data?.remove(&key.key));
                    match (value, key.optional.unwrap_or(false)) {
                        (Some(v), _) => Some(v),
                        (None, true) => None,
                        (None, false) => {
                            return Err(format!(
                                "{}: ConfigMap {} has no key {}",
                                var.name, key.name, key.key
                            ));
                        }
                    }
                } else if let Some(field) = &from.field_ref {
                    Some(match field.field_path.as_str() {
                        "metadata.name" => fields.name.to_string(),
                        "metadata.namespace" => fields.namespace.to_string(),
                        "metadata.uid" => fields.uid.to_string(),
                        "status.podIP" => fields.ip.to_string(),
                        "status.hostIP" => fields.host_ip.to_string(),
                        other => {
                            return Err(format!(
                                "{}: the test node has no field {other}",
                                var.name
                            ));
                        }
                    })
                } else {
                    return Err(format!(
                        "{}: the test node cannot resolve this value",
                        var.name
                    ));
                }
            }
        };
        if let Some(value) = value {
            env.push((var.name.clone(), value));
        }
    }
    Ok(env)
}

/// A shell word.
fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The command that runs `argv` as the container: in the pod's network namespace (`ip netns
/// exec`), in a mount and UTS namespace of its own where the node's hosts file is
/// `/etc/hosts`, each volume is bound at its mount path (read-only ones remounted so) and the
/// hostname is the pod's. Mount points missing on this machine are made (empty directories).
pub fn command(
    netns: &str,
    pod_name: &str,
    container: &Container,
    volumes: &BTreeMap<String, VolumeDir>,
    hosts: &Path,
    images: &Images,
    argv: &[String],
) -> Result<Command, String> {
    let mut script = String::from("set -e\n");
    script.push_str(&format!("hostname {}\n", quote(pod_name)));
    script.push_str(&format!(
        "mount --bind {} /etc/hosts\n",
        quote(&hosts.display().to_string())
    ));
    script.push_str(&format!(
        "mount --bind {} /etc/resolv.conf\n",
        quote(&images.resolv_conf.display().to_string())
    ));
    if argv.first().map(String::as_str) == Some("docker-entrypoint.sh")
        || container
            .image
            .as_deref()
            .is_some_and(|i| i.contains("mariadb"))
    {
        script.push_str(&format!(
            "mount --bind {} /etc/mysql/my.cnf\n",
            quote(&images.my_cnf.display().to_string())
        ));
    }
    let mut mounts: Vec<_> = container.volume_mounts.iter().flatten().collect();
    // Parents before children: a child mounted first would be hidden by its parent's.
    mounts.sort_by(|a, b| a.mount_path.cmp(&b.mount_path));
    for mount in mounts {
        let dir = volumes
            .get(&mount.name)
            .ok_or_else(|| format!("volume mount {}: no such volume", mount.name))?;
        let source = match mount.sub_path.as_deref().filter(|s| !s.is_empty()) {
            Some(sub) => dir.path.join(sub),
            None => dir.path.clone(),
        };
        let target = quote(&mount.mount_path);
        if source.is_file() {
            script.push_str(&format!(
                "mkdir -p \"$(dirname {target})\"; [ -e {target} ] || : > {target}\n"
            ));
        } else {
            script.push_str(&format!("mkdir -p {target}\n"));
        }
        script.push_str(&format!(
            "mount --bind {} {target}\n",
            quote(&source.display().to_string())
        ));
        if mount.read_only == Some(true) {
            script.push_str(&format!("mount -o remount,bind,ro {target}\n"));
        }
    }
    if let Some(dir) = &container.working_dir {
        script.push_str(&format!("cd {}\n", quote(dir)));
    }
    script.push_str("exec \"$@\"\n");
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", netns])
        .args([
            "unshare",
            "--mount",
            "--uts",
            "--propagation",
            "private",
            "--",
        ])
        .args(["/bin/sh", "-c", &script, "sh"])
        .args(argv)
        .stdin(Stdio::null());
    Ok(cmd)
}
