//! A real Kubernetes control plane for tests: etcd and kube-apiserver v1.20.2 on loopback
//! ports, with a token file, RBAC, service-account signing keys and a serving certificate
//! from a CA of the test's own, so clients verify the server as they would in a cluster.
//!
//! The binaries come from `scripts/kube-apiserver.sh` (run by `scripts/setup.sh`) in
//! `$KAPI_DIR/bin`, default `~/.cache/lagless/kapi/bin`. Both processes are spawned tied to the
//! test process (`PR_SET_PDEATHSIG`) and killed when the [`ControlPlane`] is dropped, a panic
//! included.

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::GroupVersionKind;
use kube::discovery::ApiResource;
use kube::{Client, Config, CustomResourceExt};
use lagless_operator::crd::MySQLCluster;
use lagless_operator::crd::accounts::{MySQLDatabase, MySQLGrant, MySQLUser};
use lagless_operator::crd::backup::MySQLBackup;
use lagless_operator::crd::tenant_move::MySQLTenantMove;
use lagless_operator::crd::tenant_pool::MySQLTenantPool;
use lagless_operator::tls::authority::Authority;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde_json::Value;

const SETUP: &str = "scripts/setup.sh (or scripts/kube-apiserver.sh)";
const ADMIN_TOKEN: &str = "lagless-test-admin";

/// The namespace the chart is rendered for (release `lagless`), as the docs install it.
pub const RELEASE_NAMESPACE: &str = "lagless-system";

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

/// Where `scripts/kube-apiserver.sh` puts the binaries; fails naming the set-up command when
/// one is missing (the tier never skips itself).
fn binary(name: &str) -> PathBuf {
    let dir = std::env::var_os("KAPI_DIR").map_or_else(
        || {
            let home = std::env::var_os("HOME").unwrap_or_default();
            Path::new(&home).join(".cache/lagless/kapi")
        },
        PathBuf::from,
    );
    let path = dir.join("bin").join(name);
    assert!(
        path.exists(),
        "{} is missing: the Kubernetes API server tests need it; run {SETUP}",
        path.display()
    );
    path
}

/// A loopback port nothing listens on now.
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

/// The last lines of a log file, for failure messages.
fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(30)..].join("\n")
}

/// etcd and kube-apiserver, running until dropped.
pub struct ControlPlane {
    dir: tempfile::TempDir,
    etcd: Child,
    apiserver: Child,
    controller_manager: Option<Child>,
    url: String,
    ca_pem: String,
    /// Authenticated as a member of `system:masters`.
    pub admin: Client,
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        // Nothing of theirs is kept, so there is nothing to shut down gracefully.
        for child in self
            .controller_manager
            .iter_mut()
            .chain([&mut self.apiserver, &mut self.etcd])
        {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl ControlPlane {
    /// Starts etcd and kube-apiserver and waits until the API server is ready (about 5 s).
    pub async fn start() -> ControlPlane {
        let etcd_bin = binary("etcd");
        let apiserver_bin = binary("kube-apiserver");
        let dir = tempfile::Builder::new()
            // The owner's pid in the name: scripts/test.sh finds servers left behind by it.
            .prefix(&format!("lagless-kube-{}-", std::process::id()))
            .tempdir()
            .expect("a temporary directory");
        let path = |name: &str| dir.path().join(name);

        // The serving certificate, from a CA the clients trust.
        let now = SystemTime::now();
        let ca = Authority::create("kube-apiserver-test", now).expect("a CA");
        let serving = ca
            .issue(&["127.0.0.1".to_string(), "localhost".to_string()], now)
            .expect("a serving certificate");
        // The key the API server signs service-account tokens with.
        let signing = rcgen::KeyPair::generate().expect("a service-account key");
        for (name, text) in [
            ("serving.crt", serving.cert_pem.clone()),
            ("serving.key", serving.key_pem.clone()),
            ("sa.key", signing.serialize_pem()),
            ("sa.pub", signing.public_key_pem()),
            (
                "tokens.csv",
                format!("{ADMIN_TOKEN},admin,admin,\"system:masters\"\n"),
            ),
        ] {
            std::fs::write(path(name), text).expect("writing the control plane's files");
        }

        let etcd_port = free_port();
        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let mut etcd = Command::new(&etcd_bin);
        etcd.arg("--data-dir")
            .arg(path("etcd"))
            .arg(format!("--listen-client-urls={etcd_url}"))
            .arg(format!("--advertise-client-urls={etcd_url}"))
            .arg(format!(
                "--listen-peer-urls=http://127.0.0.1:{}",
                free_port()
            ))
            // The data is thrown away with the test: no fsync per write.
            .arg("--unsafe-no-fsync")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(path("etcd.log")).expect("etcd.log"));
        let etcd = lagless_mariadbd::process::spawn_tied(etcd).expect("starting etcd");

        let port = free_port();
        let mut apiserver = Command::new(&apiserver_bin);
        apiserver
            .arg(format!("--etcd-servers={etcd_url}"))
            .arg("--bind-address=127.0.0.1")
            .arg(format!("--secure-port={port}"))
            .arg("--insecure-port=0")
            .arg(format!("--tls-cert-file={}", path("serving.crt").display()))
            .arg(format!(
                "--tls-private-key-file={}",
                path("serving.key").display()
            ))
            .arg(format!("--cert-dir={}", path("certs").display()))
            .arg(format!(
                "--token-auth-file={}",
                path("tokens.csv").display()
            ))
            .arg("--authorization-mode=RBAC")
            .arg("--service-account-issuer=https://kubernetes.default.svc")
            .arg(format!(
                "--service-account-key-file={}",
                path("sa.pub").display()
            ))
            .arg(format!(
                "--service-account-signing-key-file={}",
                path("sa.key").display()
            ))
            .arg("--service-cluster-ip-range=10.96.0.0/16")
            .arg("--enable-priority-and-fairness=false")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(path("apiserver.log")).expect("apiserver.log"));
        let apiserver =
            lagless_mariadbd::process::spawn_tied(apiserver).expect("starting kube-apiserver");

        let url = format!("https://127.0.0.1:{port}");
        let ca_pem = ca.cert_pem.clone();
        let admin = client(&url, &ca_pem, ADMIN_TOKEN, "default");
        let mut plane = ControlPlane {
            dir,
            etcd,
            apiserver,
            controller_manager: None,
            url,
            ca_pem,
            admin,
        };
        plane.wait_ready().await;
        plane
    }

    async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let request = http::Request::get("/readyz")
                .body(Vec::new())
                .expect("a request");
            if let Ok(text) = self.admin.request_text(request).await
                && text == "ok"
            {
                return;
            }
            let exited = [
                ("etcd", &mut self.etcd),
                ("kube-apiserver", &mut self.apiserver),
            ]
            .into_iter()
            .find_map(|(name, child)| Some((name, child.try_wait().ok()??)));
            if let Some((name, status)) = exited {
                panic!(
                    "{name} exited ({status}) before the API server was ready:\n{}",
                    self.logs()
                );
            }
            assert!(
                Instant::now() < deadline,
                "the API server was not ready within 60 s:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The tails of both logs.
    pub fn logs(&self) -> String {
        format!(
            "--- etcd ---\n{}\n--- kube-apiserver ---\n{}\n--- kube-controller-manager ---\n{}",
            tail(&self.dir.path().join("etcd.log")),
            tail(&self.dir.path().join("apiserver.log")),
            tail(&self.dir.path().join("kcm.log"))
        )
    }

    /// Writes a kubeconfig for the admin (default namespace `default`) into the control
    /// plane's directory, as `kubectl` and its plugins read one, and returns its path.
    pub fn admin_kubeconfig(&self) -> PathBuf {
        self.kubeconfig("kubeconfig", ADMIN_TOKEN, "default")
    }

    /// Writes kubeconfig `file` for `token` (default namespace `namespace`) into the control
    /// plane's directory, and returns its path.
    pub fn kubeconfig(&self, file: &str, token: &str, namespace: &str) -> PathBuf {
        let ca = self.dir.path().join("kubeconfig-ca.crt");
        std::fs::write(&ca, &self.ca_pem).expect("writing the CA");
        let config = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "test", "cluster": {
                "server": self.url, "certificate-authority": ca,
            }}],
            "users": [{"name": "user", "user": {"token": token}}],
            "contexts": [{"name": "test", "context": {
                "cluster": "test", "user": "user", "namespace": namespace,
            }}],
            "current-context": "test",
        });
        let path = self.dir.path().join(file);
        // JSON is YAML.
        std::fs::write(&path, config.to_string()).expect("writing the kubeconfig");
        path
    }

    /// Starts kube-controller-manager with the controllers that make and remove pods:
    /// StatefulSets', Deployments' and ReplicaSets', the garbage collector (owned objects go
    /// with their owner) and the service-account token controller (pods' tokens). Runs until
    /// the control plane is dropped.
    pub fn start_controller_manager(&mut self) {
        let bin = binary("kube-controller-manager");
        let kubeconfig = self.admin_kubeconfig();
        let path = |name: &str| self.dir.path().join(name);
        let mut kcm = Command::new(&bin);
        kcm.arg(format!("--kubeconfig={}", kubeconfig.display()))
            .arg("--leader-elect=false")
            .arg("--controllers=statefulset,deployment,replicaset,garbagecollector,serviceaccount,serviceaccount-token")
            .arg(format!(
                "--service-account-private-key-file={}",
                path("sa.key").display()
            ))
            .arg(format!("--root-ca-file={}", path("kubeconfig-ca.crt").display()))
            .arg("--use-service-account-credentials=false")
            .arg("--secure-port=0")
            .arg("--port=0")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(path("kcm.log")).expect("kcm.log"));
        let child =
            lagless_mariadbd::process::spawn_tied(kcm).expect("starting kube-controller-manager");
        self.controller_manager = Some(child);
    }

    /// A client authenticated with `token`, whose default namespace is `namespace` (as a pod's
    /// is its service account's).
    pub fn client_with_token(&self, token: &str, namespace: &str) -> Client {
        client(&self.url, &self.ca_pem, token, namespace)
    }

    /// Installs the `MySQLCluster`, `MySQLTenantPool`, account and backup CRDs as generated from the
    /// Rust types, without their CEL rules when `strip_cel` (see [`without_cel`]), waits until
    /// they are served, and returns them as the API server stored them.
    pub async fn install_crds(&self, strip_cel: bool) -> Vec<CustomResourceDefinition> {
        let crds: Api<CustomResourceDefinition> = Api::all(self.admin.clone());
        let mut stored = Vec::new();
        for mut crd in [
            MySQLCluster::crd(),
            MySQLTenantPool::crd(),
            MySQLDatabase::crd(),
            MySQLUser::crd(),
            MySQLGrant::crd(),
            MySQLBackup::crd(),
            MySQLTenantMove::crd(),
        ] {
            let name = crd.metadata.name.clone().expect("a CRD name");
            if strip_cel {
                let stripped = without_cel(serde_json::to_value(&crd).expect("the CRD serializes"));
                crd = serde_json::from_value(stripped).expect("the stripped CRD is a CRD");
            }
            crds.create(&PostParams::default(), &crd)
                .await
                .unwrap_or_else(|e| panic!("installing CRD {name}: {e}"));
            stored.push(
                eventually(&format!("CRD {name} established"), || async {
                    let crd = crds.get(&name).await.ok()?;
                    crd.status
                        .as_ref()?
                        .conditions
                        .as_ref()?
                        .iter()
                        .any(|c| c.type_ == "Established" && c.status == "True")
                        .then_some(crd)
                })
                .await,
            );
        }
        stored
    }

    /// Applies the chart's ServiceAccount and RBAC objects as rendered with its default values
    /// (release `lagless` in `lagless-system`), and returns a client authenticated as that
    /// ServiceAccount with a token the API server issued (TokenRequest): what the operator pod
    /// runs with. The operator's Deployment arguments are returned too.
    pub async fn chart_service_account(&self) -> (Client, Vec<String>) {
        let (token, args) = self.chart_service_account_token().await;
        (self.client_with_token(&token, RELEASE_NAMESPACE), args)
    }

    /// [`Self::chart_service_account`], giving the token rather than a client (for a
    /// kubeconfig).
    pub async fn chart_service_account_token(&self) -> (String, Vec<String>) {
        let rendered = render_chart();
        let namespaces: Api<Namespace> = Api::all(self.admin.clone());
        let namespace: Namespace = serde_json::from_value(serde_json::json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": { "name": RELEASE_NAMESPACE },
        }))
        .expect("a Namespace");
        // Made once; a second controller of the same test finds it.
        match namespaces.create(&PostParams::default(), &namespace).await {
            Ok(_) => {}
            Err(kube::Error::Api(e)) if e.code == 409 => {}
            Err(e) => panic!("creating the release namespace: {e}"),
        }
        let mut service_account = None;
        let mut args = None;
        let mut rbac = 0;
        for object in &rendered {
            let kind = object["kind"].as_str().unwrap_or_default();
            match kind {
                "ServiceAccount" | "ClusterRole" | "ClusterRoleBinding" | "Role"
                | "RoleBinding" => {
                    self.apply_dynamic(object).await;
                    if kind == "ServiceAccount" {
                        service_account = object["metadata"]["name"].as_str().map(String::from);
                    } else {
                        rbac += 1;
                    }
                }
                "Deployment" => {
                    args = serde_json::from_value(
                        object["spec"]["template"]["spec"]["containers"][0]["args"].clone(),
                    )
                    .ok();
                }
                _ => {}
            }
        }
        assert!(
            rbac >= 2,
            "the chart rendered no RBAC objects: {rendered:?}"
        );
        let service_account = service_account.expect("the chart renders a ServiceAccount");
        let args: Vec<String> = args.expect("the chart renders the operator's arguments");

        let accounts: Api<ServiceAccount> = Api::namespaced(self.admin.clone(), RELEASE_NAMESPACE);
        let request = TokenRequest {
            spec: Some(TokenRequestSpec {
                audiences: Some(vec!["https://kubernetes.default.svc".to_string()]),
                expiration_seconds: Some(3600),
                ..TokenRequestSpec::default()
            }),
            ..TokenRequest::default()
        };
        let token = accounts
            .create_subresource::<TokenRequest, TokenRequest>(
                "token",
                &service_account,
                &PostParams::default(),
                &request,
            )
            .await
            .unwrap_or_else(|e| panic!("a token for ServiceAccount {service_account}: {e}"))
            .status
            .expect("the TokenRequest's status")
            .token
            .expect("an issued token");
        (token, args)
    }

    /// Server-side applies one object given as JSON, as the admin.
    pub async fn apply_dynamic(&self, object: &Value) {
        let api_version = object["apiVersion"].as_str().unwrap_or_default();
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        let kind = object["kind"].as_str().unwrap_or_default();
        let name = object["metadata"]["name"].as_str().unwrap_or_default();
        let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind));
        let api: Api<DynamicObject> = match object["metadata"]["namespace"].as_str() {
            Some(ns) => Api::namespaced_with(self.admin.clone(), ns, &resource),
            None => Api::all_with(self.admin.clone(), &resource),
        };
        api.patch(
            name,
            &PatchParams::apply("lagless-test"),
            &Patch::Apply(object),
        )
        .await
        .unwrap_or_else(|e| panic!("applying {kind} {name}: {e}"));
    }
}

fn client(url: &str, ca_pem: &str, token: &str, namespace: &str) -> Client {
    let mut config = Config::new(url.parse().expect("the API server's URL"));
    let ca = CertificateDer::from_pem_slice(ca_pem.as_bytes()).expect("the CA in PEM");
    config.root_cert = Some(vec![ca.to_vec()]);
    config.auth_info.token = Some(token.to_string().into());
    config.default_namespace = namespace.to_string();
    Client::try_from(config).expect("a Kubernetes client")
}

/// The CRD as v1.20 enforces it: without the CEL rules (`x-kubernetes-validations`,
/// Kubernetes 1.25), which v1.20's API server drops silently and kubectl's client-side
/// validation refuses as an unknown field. The operator validates specs by the same rules, so
/// only their refusal at `kubectl apply` is lost.
pub fn without_cel(mut crd: Value) -> Value {
    fn strip_rules(value: &mut Value) {
        match value {
            Value::Object(map) => {
                map.remove("x-kubernetes-validations");
                map.values_mut().for_each(strip_rules);
            }
            Value::Array(items) => items.iter_mut().for_each(strip_rules),
            _ => {}
        }
    }
    strip_rules(&mut crd);
    crd
}

/// The chart rendered with Helm's own engine (`charts/lagless/tests/check_chart.py`'s
/// `template`, PyPI helm-python-sdk) with its default values: every object, as JSON.
fn render_chart() -> Vec<Value> {
    let script = "import json, sys\n\
                  sys.path.insert(0, 'charts/lagless/tests')\n\
                  import check_chart\n\
                  print(json.dumps(check_chart.template(None).objects))\n";
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .current_dir(repo(""))
        .output()
        .unwrap_or_else(|e| panic!("python3 renders the chart: {e}; run {SETUP}"));
    assert!(
        out.status.success(),
        "rendering the chart failed (run {SETUP}):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the rendered chart as JSON")
}

/// Polls `probe` every 200 ms until it gives a value; fails after 60 s naming `what`.
pub async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
