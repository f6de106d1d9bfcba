//! `kubectl lagless` against the real API server: the operator's binary run as the kubectl
//! plugin (started as `kubectl-lagless`, the name kubectl runs it by), with a kubeconfig,
//! beside the controller. Each command's effect is read back from the API server.

use std::path::Path;
use std::process::Output;
use std::time::Instant;

use kube::api::{Api, Patch, PatchParams};
use lagless_operator::crd::{Condition, ConditionStatus, MySQLCluster, Phase};

use super::harness::{ControlPlane, eventually};
use super::{
    CLUSTER, NAMESPACE, apply_example, cluster, condition, controller_args, events, init_logs,
    start_controller,
};

/// Runs the plugin with `args` as kubectl would run it, reading `kubeconfig`.
async fn plugin(kubeconfig: &Path, args: &[&str]) -> Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_lagless-operator"))
        .arg0("kubectl-lagless")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .await
        .expect("running kubectl-lagless")
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Runs a command that must succeed; returns its standard output.
async fn ok(kubeconfig: &Path, args: &[&str]) -> String {
    let out = plugin(kubeconfig, args).await;
    let (stdout, stderr) = text(&out);
    assert!(
        out.status.success(),
        "`kubectl lagless {}` failed ({}):\n{stdout}\n{stderr}",
        args.join(" "),
        out.status
    );
    stdout
}

async fn spec_of(admin: &kube::Client) -> serde_json::Value {
    let c = cluster(admin).await.expect("the cluster");
    serde_json::to_value(&c.spec).expect("the spec as JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kubectl_plugin_reports_and_requests_through_a_real_api_server() {
    init_logs();
    let plane = ControlPlane::start().await;
    plane.install_crds(true).await;
    let (client, chart_args) = plane.chart_service_account().await;
    let controller = start_controller(client, controller_args(&chart_args));
    let admin = &plane.admin;
    apply_example(admin).await;
    let kubeconfig = plane.admin_kubeconfig();
    let kubeconfig = kubeconfig.as_path();
    eventually("the cluster's first status", || async {
        cluster(admin).await?.status?.phase
    })
    .await;
    let began = Instant::now();

    // status: the only cluster of the context's namespace, as reported.
    let shown = ok(kubeconfig, &["status"]).await;
    assert!(
        shown.starts_with("cluster shop (default)  phase "),
        "{shown}"
    );
    for part in ["MEMBER", "CONDITION", "Available", "DisruptionBudget"] {
        assert!(shown.contains(part), "no {part}:\n{shown}");
    }
    let json = ok(kubeconfig, &["status", CLUSTER, "-o", "json"]).await;
    let reported: serde_json::Value = serde_json::from_str(&json).expect("the status as JSON");
    assert!(reported["conditions"].is_array(), "{json}");

    // pause: spec.paused set, and the plugin waits for the operator to report it.
    let said = ok(kubeconfig, &["pause", CLUSTER, "--timeout", "60"]).await;
    assert!(said.contains("orchestration paused"), "{said}");
    assert_eq!(spec_of(admin).await["paused"], true);
    let paused = cluster(admin).await.expect("the cluster");
    let c = condition(&paused, Condition::PAUSED).expect("the Paused condition");
    assert_eq!(
        (c.status, c.reason.as_str()),
        (ConditionStatus::True, "Paused")
    );
    assert_eq!(
        paused.status.as_ref().and_then(|s| s.phase),
        Some(Phase::Paused)
    );
    let event = eventually("the Paused Event", || async {
        events(admin).await.remove("Paused")
    })
    .await;
    assert_eq!(event[0].type_.as_deref(), Some("Normal"));
    let shown = ok(kubeconfig, &["status", CLUSTER]).await;
    assert!(
        shown.contains("phase Paused") && shown.contains("PAUSED"),
        "{shown}"
    );

    // A switchover asked while paused is made, and waits: the plugin says why, then gives up.
    let out = plugin(
        kubeconfig,
        &["switchover", CLUSTER, "--to", "shop-1", "--timeout", "2"],
    )
    .await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stdout.contains("the cluster is paused"), "{stdout}");
    assert!(stderr.contains("not done within 2 s"), "{stderr}");
    let first = spec_of(admin).await["switchover"].clone();
    assert_eq!(first["primary"], "shop-1");
    assert!(
        first["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("kubectl-")),
        "{first}"
    );

    // resume: the condition turns false and a Resumed Event says so.
    let said = ok(kubeconfig, &["resume", "--timeout", "60"]).await;
    assert!(said.contains("orchestration resumed"), "{said}");
    assert_eq!(spec_of(admin).await["paused"], serde_json::Value::Null);
    let resumed = cluster(admin).await.expect("the cluster");
    let c = condition(&resumed, Condition::PAUSED).expect("the Paused condition");
    assert_eq!(
        (c.status, c.reason.as_str()),
        (ConditionStatus::False, "Resumed")
    );
    eventually("the Resumed Event", || async {
        events(admin).await.remove("Resumed")
    })
    .await;

    // switchover --to: a new request id, and the plugin follows it until the status carries
    // that id. No member runs here, so the status is written as the operator would.
    let waiting = tokio::spawn({
        let kubeconfig = kubeconfig.to_path_buf();
        async move {
            plugin(
                &kubeconfig,
                &["switchover", "--to", "shop-2", "--timeout", "60"],
            )
            .await
        }
    });
    let id = eventually("the switchover request", || async {
        let asked = spec_of(admin).await["switchover"].clone();
        (asked["primary"] == "shop-2").then(|| asked["id"].as_str().map(String::from))?
    })
    .await;
    assert_ne!(Some(id.as_str()), first["id"].as_str(), "a fresh id");
    let api: Api<MySQLCluster> = Api::namespaced(admin.clone(), NAMESPACE);
    let done = serde_json::json!({ "status": { "lastSwitchover": {
        "id": id, "from": "shop-0", "to": "shop-2", "time": "2026-01-01T00:00:00Z",
    } } });
    api.patch_status(CLUSTER, &PatchParams::default(), &Patch::Merge(&done))
        .await
        .expect("the switchover reported");
    let out = waiting.await.expect("the plugin's task");
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!(
            "shop-2 is the primary (switchover {id} from shop-0"
        )),
        "{stdout}"
    );

    // reseed: the cluster found from the member's name; a member it does not have is refused
    // before anything is patched.
    let said = ok(kubeconfig, &["reseed", "shop-1", "--no-wait"]).await;
    assert!(said.contains("of shop-1 requested"), "{said}");
    let asked = spec_of(admin).await["reseed"].clone();
    assert_eq!(asked["member"], "shop-1");
    assert!(
        asked["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("kubectl-"))
    );
    let out = plugin(kubeconfig, &["reseed", "shop-7"]).await;
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("shop-7 is a member of no MySQLCluster"),
        "{stderr}"
    );
    assert_eq!(spec_of(admin).await["reseed"], asked);

    // cordon / uncordon: the whole spec.cordoned list patched, the cluster found from the
    // member's name; the CRD takes the field, and a member it does not have is refused.
    let said = ok(kubeconfig, &["cordon", "shop-2", "--no-wait"]).await;
    assert!(said.contains("shop-2 added to spec.cordoned"), "{said}");
    ok(kubeconfig, &["cordon", "shop-1", "--no-wait"]).await;
    assert_eq!(
        spec_of(admin).await["cordoned"],
        serde_json::json!(["shop-1", "shop-2"])
    );
    ok(kubeconfig, &["uncordon", "shop-2", "--no-wait"]).await;
    assert_eq!(
        spec_of(admin).await["cordoned"],
        serde_json::json!(["shop-1"])
    );
    let out = plugin(kubeconfig, &["cordon", "shop-7"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", text(&out).1);
    ok(kubeconfig, &["uncordon", "shop-1", "--no-wait"]).await;
    assert_eq!(spec_of(admin).await["cordoned"], serde_json::Value::Null);

    // read-only on|off: spec.readOnly patched; with no member running the primary cannot be
    // made read-only, so the condition says it is being turned on and the plugin gives up.
    let out = plugin(kubeconfig, &["read-only", "on", CLUSTER, "--timeout", "3"]).await;
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert_eq!(spec_of(admin).await["readOnly"], true);
    let turning = eventually("the ReadOnly condition", || async {
        let c = cluster(admin).await?;
        condition(&c, Condition::READ_ONLY).map(|c| (c.status, c.reason.clone()))
    })
    .await;
    assert_eq!(
        turning,
        (ConditionStatus::False, "TurningReadOnly".to_string())
    );
    let said = ok(kubeconfig, &["read-only", "off", "--timeout", "60"]).await;
    assert!(said.contains("cluster writable again"), "{said}");
    assert_eq!(spec_of(admin).await["readOnly"], serde_json::Value::Null);

    // logs: the operator's Events on the cluster, oldest first.
    let logs = ok(kubeconfig, &["logs", CLUSTER]).await;
    let at = |reason: &str| {
        logs.find(&format!(" {reason} "))
            .unwrap_or_else(|| panic!("no {reason} in:\n{logs}"))
    };
    assert!(at("NoDisruptionBudget") < at("Paused") && at("Paused") < at("Resumed"));

    // The same commands from the binary's own name, and the kubeconfig from $KUBECONFIG.
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_lagless-operator"))
        .args(["kubectl", "status", CLUSTER])
        .env("KUBECONFIG", kubeconfig)
        .output()
        .await
        .expect("running lagless-operator kubectl");
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stdout.starts_with("cluster shop (default)  phase "),
        "{stdout}"
    );
    eprintln!(
        "plugin commands against the API server: {:.1} s",
        began.elapsed().as_secs_f64()
    );
    controller.abort();
}
