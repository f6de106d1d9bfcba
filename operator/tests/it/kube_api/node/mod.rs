//! A test-side node: what a kubelet does for the pods the controller-manager makes, done with
//! local processes. Every pod of the namespace (no scheduler runs, so none is bound to a node)
//! gets a network namespace with an address of its own ([`net`]), its volumes as directories,
//! its init containers run one after another and then its containers ([`launch`]), restarted
//! when they exit, probed as their readiness and liveness probes say, and reported through the
//! status subresource (phase, conditions, container states, pod IP) as a kubelet would. A pod
//! being deleted has its processes stopped (SIGTERM, then SIGKILL after its grace period) and
//! is then removed. Pods' names resolve through the node's hosts file, which every container
//! and the controller process see as `/etc/hosts`: a StatefulSet pod's
//! `<hostname>.<subdomain>.<namespace>.svc` as the cluster's DNS gives it.
//!
//! Not done as a kubelet does: images are not pulled (see [`launch`]), containers run as root
//! and share the host's filesystem apart from their volumes, restarts are not backed off
//! exponentially, resources are not limited, and the startup probe is not run (liveness
//! counts only once a container has been ready).

mod launch;
mod net;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::join_all;
use k8s_openapi::api::core::v1::{Container, Pod, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, Preconditions};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::task::JoinHandle;

use launch::{Images, PodFields, VolumeDir};
use net::PodNetwork;

/// How often the node looks at its pods.
const TICK: Duration = Duration::from_millis(250);
/// How long a container that exited waits before it is started again.
const RESTART_DELAY: Duration = Duration::from_secs(1);
/// The longest a deleted pod's processes are given to stop.
const MAX_GRACE: Duration = Duration::from_secs(20);

/// What tests can see of a pod the node runs: its address and its containers' processes.
#[derive(Clone, Default)]
struct Visible {
    uid: String,
    ip: String,
    pids: BTreeMap<String, u32>,
    dir: PathBuf,
}

/// The node, running until dropped.
pub struct Node {
    task: JoinHandle<()>,
    visible: Arc<Mutex<BTreeMap<String, Visible>>>,
    held: Held,
    hosts: PathBuf,
    resolv_conf: PathBuf,
    host_ip: String,
    _dir: tempfile::TempDir,
}

impl Drop for Node {
    fn drop(&mut self) {
        self.task.abort();
        // The loop's pods are dropped with it (each kills its processes), and so are those it
        // was stopping in the background (their tasks end with the runtime); what is still
        // visible is killed here too, in case the loop is dropped later than this.
        let visible = self.visible.lock().unwrap_or_else(|e| e.into_inner());
        for pod in visible.values() {
            for pid in pod.pids.values() {
                kill_group(*pid, libc::SIGKILL);
            }
        }
    }
}

impl Node {
    /// Starts running the pods of `namespace`, as `client` (an admin) sees them.
    pub fn start(client: Client, namespace: &str) -> Node {
        let dir = tempfile::Builder::new()
            // Not under /tmp, which pods mount volumes of their own over; the owner's pid in
            // the name as for the control plane's files.
            .prefix(&format!("lagless-kube-{}-node-", std::process::id()))
            .tempdir_in("/var/tmp")
            .expect("the node's directory");
        let images = Images::install(
            dir.path(),
            Path::new(env!("CARGO_BIN_EXE_lagless-operator")),
        )
        .expect("installing the node's images");
        let hosts = dir.path().join("hosts");
        let resolv_conf = images.resolv_conf.clone();
        std::fs::write(&hosts, hosts_text(&BTreeMap::new())).expect("the node's hosts file");
        let net = PodNetwork::new().unwrap_or_else(|e| panic!("the node's pod network: {e}"));
        let host_ip = net.host_ip();
        let visible = Arc::new(Mutex::new(BTreeMap::new()));
        let held: Held = Arc::default();
        let mut kubelet = Kubelet {
            held: held.clone(),
            client,
            namespace: namespace.to_string(),
            images,
            hosts: hosts.clone(),
            claims: dir.path().join("claims"),
            pods_dir: dir.path().join("pods"),
            net,
            pods: BTreeMap::new(),
            names: BTreeMap::new(),
            visible: visible.clone(),
            stopping: BTreeSet::new(),
            stopped: Arc::new(Mutex::new(BTreeSet::new())),
            waiting: BTreeMap::new(),
        };
        let task = tokio::spawn(async move {
            loop {
                kubelet.tick().await;
                tokio::time::sleep(TICK).await;
            }
        });
        Node {
            task,
            visible,
            held,
            hosts,
            resolv_conf,
            host_ip,
            _dir: dir,
        }
    }

    /// This machine's address on the pod network: what pods reach a server on the host by.
    pub fn host_ip(&self) -> &str {
        &self.host_ip
    }

    /// The hosts file the pods and the controller resolve names with.
    pub fn hosts_file(&self) -> &Path {
        &self.hosts
    }

    /// The resolver configuration of the pods (no name server): a name missing from the hosts
    /// file fails at once, as the cluster DNS answers it.
    pub fn resolv_conf(&self) -> &Path {
        &self.resolv_conf
    }

    fn visible(&self, pod: &str) -> Option<Visible> {
        let visible = self.visible.lock().unwrap_or_else(|e| e.into_inner());
        visible.get(pod).cloned()
    }

    /// The address of pod `name`, while the node runs it.
    pub fn pod_ip(&self, name: &str) -> Option<String> {
        self.visible(name).map(|v| v.ip)
    }

    /// Sends `signal` to the process of `container` in pod `pod` (not its children: a
    /// `kill -9` of the server as the kernel's OOM killer would); false if it does not run.
    pub fn signal(&self, pod: &str, container: &str, signal: i32) -> bool {
        let Some(pid) = self
            .visible(pod)
            .and_then(|v| v.pids.get(container).copied())
        else {
            return false;
        };
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(pid as i32, signal) == 0 }
    }

    /// Keeps `container` of pod `pod` from being started again once it exits (`hold`), or
    /// lets it be started again.
    pub fn hold(&self, pod: &str, container: &str, hold: bool) {
        let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
        let key = (pod.to_string(), container.to_string());
        if hold {
            held.insert(key);
        } else {
            held.remove(&key);
        }
    }

    /// File `file` of pod `pod`'s volume `volume`, as its containers read it.
    /// The names in a PersistentVolumeClaim's directory (what pods wrote there).
    pub fn claim_files(&self, claim: &str) -> Vec<String> {
        let dir = self._dir.path().join("claims").join(claim);
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    pub fn volume_file(&self, pod: &str, volume: &str, file: &str) -> Option<String> {
        let dir = self.visible(pod)?.dir;
        std::fs::read_to_string(dir.join("volumes").join(volume).join(file)).ok()
    }

    /// Every pod's containers with the last lines each wrote (stdout and stderr, every run
    /// of it), for a failing test's message.
    pub fn describe(&self) -> String {
        let visible = self.visible.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::new();
        for (name, pod) in visible.iter() {
            let logs = std::fs::read_dir(&pod.dir).into_iter().flatten().flatten();
            for log in logs.filter(|e| e.path().extension().is_some_and(|x| x == "log")) {
                let text = std::fs::read_to_string(log.path()).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                out.push_str(&format!(
                    "--- pod {name} ({}), {} ---\n{}\n",
                    pod.ip,
                    log.file_name().to_string_lossy(),
                    lines[lines.len().saturating_sub(8)..].join("\n")
                ));
            }
        }
        out
    }
}

/// Containers not to be started again, as `(pod, container)`: a machine that stays down.
type Held = Arc<Mutex<BTreeSet<(String, String)>>>;

/// Kills a container's process group (the node starts each in a group of its own).
fn kill_group(pid: u32, signal: i32) {
    // SAFETY: kill has no memory-safety preconditions.
    unsafe {
        libc::kill(-(pid as i32), signal);
    }
}

/// The hosts file for the running pods, `name -> (uid, ip, names)`.
fn hosts_text(pods: &BTreeMap<String, (String, String, Vec<String>)>) -> String {
    let mut text = String::from("127.0.0.1 localhost\n::1 localhost ip6-localhost\n");
    for (_, ip, names) in pods.values() {
        text.push_str(&format!("{ip} {}\n", names.join(" ")));
    }
    text
}

/// The names a pod's address is known by: a pod with a `subdomain` (a StatefulSet's, under
/// its headless Service) by `<hostname>.<subdomain>.<namespace>.svc[.cluster.local]`.
fn dns_names(pod: &Pod, namespace: &str) -> Vec<String> {
    let spec = pod.spec.as_ref();
    let name = pod.name_any();
    let hostname = spec.and_then(|s| s.hostname.clone()).unwrap_or(name);
    match spec.and_then(|s| s.subdomain.as_deref()) {
        Some(sub) => vec![
            format!("{hostname}.{sub}.{namespace}.svc.cluster.local"),
            format!("{hostname}.{sub}.{namespace}.svc"),
            hostname,
        ],
        None => vec![hostname],
    }
}

/// A running container process.
struct Process {
    child: Child,
    started: String,
}

impl Process {
    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        kill_group(self.child.id(), libc::SIGKILL);
        let _ = self.child.wait();
    }
}

/// One container (init or not) of a pod.
struct Slot {
    container: Container,
    process: Option<Process>,
    restarts: i32,
    start_at: Instant,
    last_exit: Option<i32>,
    init: bool,
    /// Init containers: ran to success.
    done: bool,
    ready: bool,
    ever_ready: bool,
    next_probe: Instant,
    readiness_failures: i32,
    liveness_failures: i32,
    waiting: Option<String>,
}

impl Slot {
    fn new(container: &Container, init: bool) -> Self {
        let now = Instant::now();
        Self {
            container: container.clone(),
            init,
            process: None,
            restarts: 0,
            start_at: now,
            last_exit: None,
            done: false,
            ready: false,
            ever_ready: false,
            next_probe: now,
            readiness_failures: 0,
            liveness_failures: 0,
            waiting: None,
        }
    }

    /// Notes the process's exit, if it exited.
    fn reap(&mut self) -> Option<i32> {
        let process = self.process.as_mut()?;
        let status = process.child.try_wait().ok()??;
        let code = status.code().unwrap_or(128 + 9);
        self.process = None;
        self.last_exit = Some(code);
        self.ready = false;
        // The next run is judged by liveness only once it has been ready itself.
        self.ever_ready = false;
        self.readiness_failures = 0;
        self.liveness_failures = 0;
        Some(code)
    }
}

/// A pod the node runs.
struct PodRun {
    name: String,
    uid: String,
    ip: String,
    netns: String,
    dir: PathBuf,
    pod: Pod,
    volumes: BTreeMap<String, VolumeDir>,
    inits: Vec<Slot>,
    containers: Vec<Slot>,
    started: String,
    reported: Option<Value>,
    ready_since: Option<String>,
}

impl Drop for PodRun {
    fn drop(&mut self) {
        // The processes go first (each Process kills its group), then the namespace.
        self.inits.clear();
        self.containers.clear();
        PodNetwork::remove_pod(&self.netns);
    }
}

/// A probe to run this tick.
struct ProbeJob {
    uid: String,
    index: usize,
    liveness: bool,
    probe: Probe,
    pid: u32,
    ip: String,
    env: Vec<(String, String)>,
    ports: Vec<(String, i32)>,
}

struct Kubelet {
    client: Client,
    namespace: String,
    images: Images,
    hosts: PathBuf,
    claims: PathBuf,
    pods_dir: PathBuf,
    net: PodNetwork,
    /// By uid.
    pods: BTreeMap<String, PodRun>,
    /// The hosts file's entries, by pod name: the pod's uid, address and names.
    names: BTreeMap<String, (String, String, Vec<String>)>,
    visible: Arc<Mutex<BTreeMap<String, Visible>>>,
    /// Uids being stopped in the background, and those done.
    stopping: BTreeSet<String>,
    stopped: Arc<Mutex<BTreeSet<String>>>,
    /// Why a pod not yet admitted waits, by uid.
    waiting: BTreeMap<String, String>,
    held: Held,
}

fn now_rfc3339() -> String {
    k8s_openapi::jiff::Timestamp::now().to_string()
}

impl Kubelet {
    fn api(&self) -> Api<Pod> {
        Api::namespaced(self.client.clone(), &self.namespace)
    }

    async fn tick(&mut self) {
        let pods = match self.api().list(&ListParams::default()).await {
            Ok(list) => list.items,
            Err(e) => {
                eprintln!("node: listing pods: {e}");
                return;
            }
        };
        let mut seen = BTreeSet::new();
        for pod in pods {
            let uid = pod.uid().unwrap_or_default();
            seen.insert(uid.clone());
            if pod.metadata.deletion_timestamp.is_some() {
                self.stop(&pod);
                continue;
            }
            if !self.pods.contains_key(&uid) {
                match self.admit(&pod).await {
                    Ok(run) => {
                        self.waiting.remove(&uid);
                        self.pods.insert(uid.clone(), run);
                    }
                    Err(e) => {
                        // Said once per cause, as a kubelet's event.
                        let said = self.waiting.insert(uid.clone(), e.clone());
                        if said.as_deref() != Some(e.as_str()) {
                            eprintln!("node: pod {} waits: {e}", pod.name_any());
                        }
                        continue;
                    }
                }
            }
            if let Some(run) = self.pods.get_mut(&uid) {
                run.pod = pod;
            }
        }
        // Pods removed without a grace period: their processes go now.
        let gone: Vec<String> = self
            .pods
            .keys()
            .filter(|uid| !seen.contains(*uid))
            .cloned()
            .collect();
        for uid in gone {
            if let Some(run) = self.pods.remove(&uid) {
                self.forget(&run.name, &uid);
            }
        }
        {
            let mut stopped = self.stopped.lock().unwrap_or_else(|e| e.into_inner());
            self.stopping.retain(|uid| !stopped.remove(uid));
        }

        let uids: Vec<String> = self.pods.keys().cloned().collect();
        for uid in &uids {
            self.step(uid).await;
        }
        self.probe().await;
        for uid in &uids {
            self.report(uid).await;
        }
        self.publish();
    }

    /// Takes a new pod on: its address, namespace and volumes.
    async fn admit(&mut self, pod: &Pod) -> Result<PodRun, String> {
        let spec = pod.spec.as_ref().ok_or("no spec")?;
        let uid = pod.uid().unwrap_or_default();
        let dir = self.pods_dir.join(&uid);
        std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        let volumes =
            launch::volumes(&self.client, &self.namespace, pod, &dir, &self.claims).await?;
        let (netns, ip) = self.net.add_pod()?;
        let name = pod.name_any();
        self.names.insert(
            name.clone(),
            (uid.clone(), ip.clone(), dns_names(pod, &self.namespace)),
        );
        Ok(PodRun {
            name,
            uid,
            ip,
            netns,
            dir,
            pod: pod.clone(),
            volumes,
            inits: spec
                .init_containers
                .iter()
                .flatten()
                .map(|c| Slot::new(c, true))
                .collect(),
            containers: spec
                .containers
                .iter()
                .map(|c| Slot::new(c, false))
                .collect(),
            started: now_rfc3339(),
            reported: None,
            ready_since: None,
        })
    }

    /// Drops pod `name`'s entries, unless they are already another pod's of the same name
    /// (a StatefulSet's pod made again while the old one was being removed).
    fn forget(&mut self, name: &str, uid: &str) {
        if self.names.get(name).is_some_and(|(u, _, _)| u == uid) {
            self.names.remove(name);
        }
        let mut visible = self.visible.lock().unwrap_or_else(|e| e.into_inner());
        if visible.get(name).is_some_and(|v| v.uid == uid) {
            visible.remove(name);
        }
    }

    /// A pod being deleted: its processes are stopped in the background, then it is removed.
    fn stop(&mut self, pod: &Pod) {
        let uid = pod.uid().unwrap_or_default();
        if self.stopping.contains(&uid) {
            return;
        }
        self.stopping.insert(uid.clone());
        let run = self.pods.remove(&uid);
        let name = pod.name_any();
        if run.is_some() {
            self.forget(&name, &uid);
        }
        let grace = pod
            .spec
            .as_ref()
            .and_then(|s| s.termination_grace_period_seconds)
            .and_then(|s| u64::try_from(s).ok())
            .map_or(MAX_GRACE, |s| Duration::from_secs(s).min(MAX_GRACE));
        let api = self.api();
        let stopped = self.stopped.clone();
        tokio::spawn(async move {
            if let Some(mut run) = run {
                let pids: Vec<u32> = run
                    .containers
                    .iter()
                    .chain(&run.inits)
                    .filter_map(|s| s.process.as_ref().map(Process::pid))
                    .collect();
                for pid in &pids {
                    kill_group(*pid, libc::SIGTERM);
                }
                let deadline = Instant::now() + grace;
                while Instant::now() < deadline
                    && run
                        .containers
                        .iter_mut()
                        .chain(run.inits.iter_mut())
                        .any(|s| s.process.is_some() && s.reap().is_none())
                {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                drop(run);
            }
            let params = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions {
                    uid: Some(uid.clone()),
                    resource_version: None,
                }),
                ..DeleteParams::default()
            };
            if let Err(e) = api.delete(&name, &params).await {
                eprintln!("node: removing pod {name}: {e}");
            }
            stopped
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(uid);
        });
    }

    /// Starts what is due: the next init container, or the containers once every init
    /// container succeeded; an exited process is started again after [`RESTART_DELAY`].
    async fn step(&mut self, uid: &str) {
        let Some(run) = self.pods.get_mut(uid) else {
            return;
        };
        for slot in run.inits.iter_mut().chain(run.containers.iter_mut()) {
            if let Some(code) = slot.reap() {
                if slot.init && code == 0 {
                    slot.done = true;
                } else {
                    slot.restarts += 1;
                    slot.start_at = Instant::now() + RESTART_DELAY;
                    slot.waiting = Some("CrashLoopBackOff".into());
                }
            }
        }
        // Refresh what the API feeds the volumes (the topology a proxy follows).
        for volume in run.volumes.values() {
            if let Some(source) = &volume.source
                && let Err(e) =
                    launch::refresh(&self.client, &self.namespace, source, &volume.path).await
            {
                eprintln!("node: pod {}: {e}", run.name);
            }
        }
        let due: Vec<(bool, usize)> = match run.inits.iter().position(|s| !s.done) {
            Some(i) => vec![(true, i)],
            None => (0..run.containers.len()).map(|i| (false, i)).collect(),
        };
        for (init, i) in due {
            let slot = if init {
                &run.inits[i]
            } else {
                &run.containers[i]
            };
            let held = {
                let held = self.held.lock().unwrap_or_else(|e| e.into_inner());
                held.contains(&(run.name.clone(), slot.container.name.clone()))
            };
            if slot.process.is_some() || Instant::now() < slot.start_at || held {
                continue;
            }
            let fields = PodFields {
                name: &run.name,
                namespace: &self.namespace,
                uid: &run.uid,
                ip: &run.ip,
                host_ip: &self.net.host_ip(),
            };
            let started = start(
                &slot.container,
                &fields,
                run,
                &self.client,
                &self.images,
                &self.hosts,
            )
            .await;
            let slot = if init {
                &mut run.inits[i]
            } else {
                &mut run.containers[i]
            };
            match started {
                Ok(process) => {
                    slot.process = Some(process);
                    slot.waiting = None;
                    slot.next_probe = Instant::now()
                        + Duration::from_secs(
                            slot.container
                                .readiness_probe
                                .as_ref()
                                .and_then(|p| p.initial_delay_seconds)
                                .and_then(|s| u64::try_from(s).ok())
                                .unwrap_or(0)
                                .min(2),
                        );
                }
                Err(e) => {
                    slot.waiting = Some(format!("CreateContainerConfigError: {e}"));
                    slot.start_at = Instant::now() + RESTART_DELAY;
                }
            }
        }
        let mut visible = self.visible.lock().unwrap_or_else(|e| e.into_inner());
        visible.insert(
            run.name.clone(),
            Visible {
                uid: run.uid.clone(),
                ip: run.ip.clone(),
                pids: run
                    .inits
                    .iter()
                    .chain(&run.containers)
                    .filter_map(|s| Some((s.container.name.clone(), s.process.as_ref()?.pid())))
                    .collect(),
                dir: run.dir.clone(),
            },
        );
    }

    /// Runs the probes that are due, all at once, and applies their results: readiness sets
    /// a container's readiness; liveness, once it has been ready, kills a container that
    /// failed it `failureThreshold` times in a row (it is then started again).
    async fn probe(&mut self) {
        let now = Instant::now();
        let mut jobs = Vec::new();
        for (uid, run) in &mut self.pods {
            for (index, slot) in run.containers.iter_mut().enumerate() {
                let Some(process) = &slot.process else {
                    continue;
                };
                if now < slot.next_probe {
                    continue;
                }
                let period = slot
                    .container
                    .readiness_probe
                    .as_ref()
                    .and_then(|p| p.period_seconds)
                    .unwrap_or(10);
                // Faster than the pods ask, up to 1 s: the tests wait on readiness.
                slot.next_probe =
                    now + Duration::from_secs(u64::try_from(period).unwrap_or(1).min(1));
                let env = launch::environment(
                    &self.client,
                    &slot.container,
                    &PodFields {
                        name: &run.name,
                        namespace: &self.namespace,
                        uid: &run.uid,
                        ip: &run.ip,
                        host_ip: &self.net.host_ip(),
                    },
                    &self.images,
                )
                .await
                .unwrap_or_default();
                let ports: Vec<(String, i32)> = slot
                    .container
                    .ports
                    .iter()
                    .flatten()
                    .map(|p| (p.name.clone().unwrap_or_default(), p.container_port))
                    .collect();
                for (liveness, probe) in [
                    (false, slot.container.readiness_probe.clone()),
                    (true, slot.container.liveness_probe.clone()),
                ] {
                    if let Some(probe) = probe {
                        jobs.push(ProbeJob {
                            uid: uid.clone(),
                            index,
                            liveness,
                            probe,
                            pid: process.pid(),
                            ip: run.ip.clone(),
                            env: env.clone(),
                            ports: ports.clone(),
                        });
                    }
                }
                if slot.container.readiness_probe.is_none() {
                    slot.ready = true;
                    slot.ever_ready = true;
                }
            }
        }
        let results = join_all(jobs.iter().map(run_probe)).await;
        for (job, ok) in jobs.iter().zip(results) {
            let Some(slot) = self
                .pods
                .get_mut(&job.uid)
                .and_then(|r| r.containers.get_mut(job.index))
            else {
                continue;
            };
            // A result about a process since replaced counts for nothing.
            if slot.process.as_ref().map(Process::pid) != Some(job.pid) {
                continue;
            }
            let threshold = job.probe.failure_threshold.unwrap_or(3).max(1);
            if job.liveness {
                if ok || !slot.ever_ready {
                    slot.liveness_failures = 0;
                } else {
                    slot.liveness_failures += 1;
                    if slot.liveness_failures >= threshold {
                        eprintln!(
                            "node: {} failed its liveness probe: killed",
                            slot.container.name
                        );
                        kill_group(job.pid, libc::SIGKILL);
                    }
                }
            } else if ok {
                slot.readiness_failures = 0;
                slot.ready = true;
                slot.ever_ready = true;
            } else {
                slot.readiness_failures += 1;
                if slot.readiness_failures >= threshold || !slot.ever_ready {
                    slot.ready = false;
                }
            }
        }
    }

    /// Patches the pod's status when what a kubelet would report changed.
    async fn report(&mut self, uid: &str) {
        let api = self.api();
        let host_ip = self.net.host_ip();
        let Some(run) = self.pods.get_mut(uid) else {
            return;
        };
        let initialized = run.inits.iter().all(|s| s.done);
        let ready = initialized
            && run
                .containers
                .iter()
                .all(|s| s.ready && s.process.is_some());
        if ready && run.ready_since.is_none() {
            run.ready_since = Some(now_rfc3339());
        } else if !ready && run.ready_since.is_some() {
            run.ready_since = None;
        }
        let dir = run.dir.clone();
        let status_of = |s: &Slot, init: bool| {
            let state = match (&s.process, &s.waiting) {
                (Some(p), _) => json!({"running": {"startedAt": p.started}}),
                (None, _) if init && s.done => {
                    json!({"terminated": {"exitCode": 0, "reason": "Completed"}})
                }
                (None, Some(reason)) => {
                    let (reason, message) = reason.split_once(": ").unwrap_or((reason, ""));
                    json!({"waiting": {"reason": reason, "message": message}})
                }
                (None, None) => json!({"waiting": {"reason": "PodInitializing"}}),
            };
            let mut status = json!({
                "name": s.container.name,
                "image": s.container.image.clone().unwrap_or_default(),
                "imageID": "",
                "ready": if init { s.done } else { s.ready && s.process.is_some() },
                "restartCount": s.restarts,
                "started": s.process.is_some(),
                "state": state,
            });
            if let Some(p) = &s.process {
                status["containerID"] = json!(format!("lagless-node://{}", p.pid()));
            }
            if let Some(code) = s.last_exit {
                status["lastState"] = json!({"terminated": {"exitCode": code}});
                // As a kubelet does with FallbackToLogsOnError: a failed container's message
                // is the end of its log (at most 80 lines or 2048 bytes).
                let fallback = s.container.termination_message_policy.as_deref()
                    == Some("FallbackToLogsOnError");
                if code != 0 && fallback {
                    let log = std::fs::read(dir.join(format!("{}.log", s.container.name)))
                        .unwrap_or_default();
                    let tail = &log[log.len().saturating_sub(2048)..];
                    let text = String::from_utf8_lossy(tail);
                    let lines: Vec<&str> = text.lines().collect();
                    let message = lines[lines.len().saturating_sub(80)..].join("\n");
                    status["lastState"]["terminated"]["message"] = json!(message);
                }
            }
            status
        };
        let condition = |type_: &str, on: bool, since: &str| json!({"type": type_, "status": if on { "True" } else { "False" }, "lastTransitionTime": since});
        let since = run
            .ready_since
            .clone()
            .unwrap_or_else(|| run.started.clone());
        let status = json!({
            "phase": if initialized { "Running" } else { "Pending" },
            "hostIP": host_ip,
            "podIP": run.ip,
            "podIPs": [{"ip": run.ip}],
            "startTime": run.started,
            "conditions": [
                condition("PodScheduled", true, &run.started),
                condition("Initialized", initialized, &run.started),
                condition("ContainersReady", ready, &since),
                condition("Ready", ready, &since),
            ],
            "initContainerStatuses": run.inits.iter().map(|s| status_of(s, true)).collect::<Vec<_>>(),
            "containerStatuses": run.containers.iter().map(|s| status_of(s, false)).collect::<Vec<_>>(),
        });
        if run.reported.as_ref() == Some(&status) {
            return;
        }
        let patch = json!({"status": status});
        match api
            .patch_status(&run.name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => run.reported = Some(status),
            Err(e) => eprintln!("node: reporting pod {}: {e}", run.name),
        }
    }

    /// Rewrites the hosts file when the running pods changed: in place (containers have it
    /// bound as `/etc/hosts`, so it must stay the same file), in one write from its start,
    /// padded with blank lines to its old length rather than truncated, so that a lookup
    /// meanwhile never finds it empty.
    fn publish(&self) {
        use std::os::unix::fs::FileExt;
        let mut text = hosts_text(&self.names);
        let old = std::fs::read_to_string(&self.hosts).unwrap_or_default();
        if old.trim_end() == text.trim_end() {
            return;
        }
        if text.len() < old.len() {
            text.push_str(&"\n".repeat(old.len() - text.len()));
        }
        let written = std::fs::OpenOptions::new()
            .write(true)
            .open(&self.hosts)
            .and_then(|f| f.write_all_at(text.as_bytes(), 0));
        if let Err(e) = written {
            eprintln!("node: writing {}: {e}", self.hosts.display());
        }
    }
}

/// Starts one container of `run`, its output appended to `<pod dir>/<container>.log`.
async fn start(
    container: &Container,
    fields: &PodFields<'_>,
    run: &PodRun,
    client: &Client,
    images: &Images,
    hosts: &Path,
) -> Result<Process, String> {
    use std::os::unix::process::CommandExt;
    let argv = launch::argv(container)?;
    let env = launch::environment(client, container, fields, images).await?;
    let mut cmd = launch::command(
        &run.netns,
        &run.name,
        container,
        &run.volumes,
        hosts,
        images,
        &argv,
    )?;
    let log_path = run.dir.join(format!("{}.log", container.name));
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| format!("{}: {e}", log_path.display()))?;
    let log2 = log.try_clone().map_err(|e| e.to_string())?;
    cmd.env_clear()
        .envs(env)
        .stdout(log)
        .stderr(log2)
        .process_group(0);
    let child = lagless_mariadbd::process::spawn_tied(cmd)
        .map_err(|e| format!("starting {}: {e}", container.name))?;
    Ok(Process {
        child,
        started: now_rfc3339(),
    })
}

/// One probe's outcome, within its timeout (at most 3 s).
async fn run_probe(job: &ProbeJob) -> bool {
    let timeout = Duration::from_secs(
        u64::try_from(job.probe.timeout_seconds.unwrap_or(1))
            .unwrap_or(1)
            .clamp(1, 3),
    );
    let port = |p: &IntOrString| match p {
        IntOrString::Int(n) => Some(*n),
        IntOrString::String(name) => job.ports.iter().find(|(n, _)| n == name).map(|(_, p)| *p),
    };
    let attempt = async {
        if let Some(exec) = &job.probe.exec {
            let mut cmd = tokio::process::Command::new("nsenter");
            cmd.arg(format!("--target={}", job.pid))
                .args(["--net", "--mount", "--uts", "--"])
                .args(exec.command.iter().flatten())
                .env_clear()
                .envs(job.env.iter().cloned())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .kill_on_drop(true);
            cmd.status().await.is_ok_and(|s| s.success())
        } else if let Some(http) = &job.probe.http_get {
            let Some(port) = port(&http.port) else {
                return false;
            };
            let Ok(mut stream) =
                tokio::net::TcpStream::connect((job.ip.as_str(), port as u16)).await
            else {
                return false;
            };
            let path = http.path.as_deref().unwrap_or("/");
            let request = format!("GET {path} HTTP/1.0\r\nHost: {}\r\n\r\n", job.ip);
            if stream.write_all(request.as_bytes()).await.is_err() {
                return false;
            }
            let mut head = [0u8; 12];
            if stream.read_exact(&mut head).await.is_err() {
                return false;
            }
            // "HTTP/1.x 2xx" or 3xx counts as success, as the kubelet counts it.
            matches!(head[9], b'2' | b'3')
        } else if let Some(tcp) = &job.probe.tcp_socket {
            let Some(port) = port(&tcp.port) else {
                return false;
            };
            tokio::net::TcpStream::connect((job.ip.as_str(), port as u16))
                .await
                .is_ok()
        } else {
            true
        }
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .unwrap_or(false)
}
