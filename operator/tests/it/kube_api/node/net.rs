//! The node's pod network, as a bridge CNI plugin makes it: a bridge in the test's own
//! network namespace (the node's address, which the controller and the test reach pods
//! from) and one network namespace per pod with a veth on the bridge. Every pod can listen on
//! the same ports, as in a cluster. Removed when dropped, and what a killed run left behind
//! is removed by the next (names carry the owner's pid).

use std::process::{Command, Stdio};

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip does not run ({e}): the node needs iproute2"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {} (the node needs root, for network namespaces)",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn quiet(args: &[&str]) {
    let _ = Command::new("ip")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// The bridge and the pods' namespaces of one node.
pub struct PodNetwork {
    pid: u32,
    /// Which node of this test process (tests run side by side, each with its own).
    instance: u32,
    subnet: String,
    next: u8,
}

/// Counts the nodes this test process made.
static INSTANCES: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

impl PodNetwork {
    pub fn new() -> Result<Self, String> {
        let pid = std::process::id();
        let instance = INSTANCES.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 10;
        remove_stale();
        let net = Self {
            pid,
            instance,
            subnet: format!("10.77.{}", 20 + (pid * 7 + instance) % 200),
            next: 2,
        };
        let bridge = net.bridge();
        quiet(&["link", "del", &bridge]);
        ip(&["link", "add", &bridge, "type", "bridge"])?;
        ip(&[
            "addr",
            "add",
            &format!("{}/24", net.host_ip()),
            "dev",
            &bridge,
        ])?;
        ip(&["link", "set", &bridge, "up"])?;
        Ok(net)
    }

    fn bridge(&self) -> String {
        bridge_name(self.pid, self.instance)
    }

    /// The beginning of the names of this node's pods' namespaces.
    fn prefix(&self) -> String {
        format!("lagless-kube-{}-n{}-", self.pid, self.instance)
    }

    /// The node's own address on the pod network.
    pub fn host_ip(&self) -> String {
        format!("{}.1", self.subnet)
    }

    /// A new namespace with a fresh address, as each new pod gets: `(namespace, address)`.
    pub fn add_pod(&mut self) -> Result<(String, String), String> {
        let k = self.next;
        self.next = self
            .next
            .checked_add(1)
            .filter(|n| *n < 255)
            .ok_or("the node's pod network has no address left")?;
        let ns = format!("{}pod{k}", self.prefix());
        let veth = format!("lk{}n{}p{k}", self.pid % 1000, self.instance);
        let address = format!("{}.{k}", self.subnet);
        quiet(&["netns", "del", &ns]);
        ip(&["netns", "add", &ns])?;
        ip(&[
            "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
        ])?;
        ip(&["link", "set", &veth, "master", &self.bridge(), "up"])?;
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{address}/24"),
            "dev",
            "eth0",
        ])?;
        ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        ip(&["-n", &ns, "route", "add", "default", "via", &self.host_ip()])?;
        Ok((ns, address))
    }

    /// Removes a pod's namespace (its veth goes with it), once its processes are gone.
    pub fn remove_pod(ns: &str) {
        quiet(&["netns", "del", ns]);
    }
}

impl Drop for PodNetwork {
    fn drop(&mut self) {
        for ns in namespaces() {
            if ns.starts_with(&self.prefix()) {
                quiet(&["netns", "del", &ns]);
            }
        }
        quiet(&["link", "del", &self.bridge()]);
    }
}

fn bridge_name(pid: u32, instance: u32) -> String {
    format!("lk{}n{instance}br", pid % 1000)
}

fn namespaces() -> Vec<String> {
    let listed = Command::new("ip").args(["netns", "list"]).output();
    let text = listed.map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    text.unwrap_or_default()
        .lines()
        .filter_map(|l| l.split(' ').next().map(String::from))
        .collect()
}

/// Namespaces and bridges of nodes whose test process is gone.
fn remove_stale() {
    for ns in namespaces() {
        let owner = ns
            .strip_prefix("lagless-kube-")
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<i32>().ok());
        // SAFETY: kill with signal 0 only checks that the process exists.
        if let Some(pid) = owner
            && unsafe { libc::kill(pid, 0) } != 0
        {
            quiet(&["netns", "del", &ns]);
            for instance in 0..10 {
                quiet(&["link", "del", &bridge_name(pid as u32, instance)]);
            }
        }
    }
}
