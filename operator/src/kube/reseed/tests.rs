//! Re-seed requests against a scripted API server and a real agent on loopback.

use std::path::Path;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use super::*;
use crate::agent::server::Server;
use crate::agent::{RESEED_MARKER, ServeArgs};
use crate::kube::mock::{self, Exchange, bounded, status};

const TOKEN: &str = "reseed-test-token";
const POD: &str = "/api/v1/namespaces/default/pods/shop-2";

/// The orchestration as the re-seed sees it.
#[derive(Default)]
struct Target {
    primary: Option<String>,
    serving: Vec<String>,
    released: Vec<String>,
}

impl ReseedTarget for Target {
    fn primary(&self) -> Option<String> {
        self.primary.clone()
    }
    fn serving(&self, member: &str) -> bool {
        self.serving.iter().any(|m| m == member)
    }
    fn release(&mut self, member: &str) {
        self.released.push(member.to_string());
    }
}

fn target(primary: &str) -> Target {
    Target {
        primary: Some(primary.into()),
        ..Target::default()
    }
}

fn cluster(reseed: Option<(&str, &str)>) -> MySQLCluster {
    let mut spec = json!({ "replicas": 3 });
    if let Some((id, member)) = reseed {
        spec["reseed"] = json!({ "id": id, "member": member });
    }
    let mut cluster = MySQLCluster::new("shop", serde_json::from_value(spec).unwrap());
    cluster.metadata.namespace = Some("default".into());
    cluster
}

fn pod(uid: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": { "name": "shop-2", "namespace": "default", "uid": uid },
    })
}

/// An API server whose pod `shop-2` has the uid in `uid` (none: 404).
fn api(uid: Arc<Mutex<Option<String>>>) -> impl Fn(&Exchange) -> (u16, Value) + Send + Sync {
    move |request: &Exchange| {
        let current = uid.lock().unwrap().clone();
        match (request.method.as_str(), current) {
            ("GET" | "DELETE", Some(uid)) if request.path == POD => (200, pod(&uid)),
            _ => status(404, "NotFound"),
        }
    }
}

/// A real agent on loopback serving `datadir`.
async fn agent(dir: &Path, datadir: &Path) -> Url {
    let token_file = dir.join("token");
    std::fs::write(&token_file, TOKEN).unwrap();
    let server = Server::bind(ServeArgs {
        listen: "127.0.0.1:0".parse().unwrap(),
        datadir: datadir.to_path_buf(),
        mysql_port: 1,
        token_file,
        scratch_dir: Some(dir.to_path_buf()),
        admin_user: "unused".into(),
        admin_password: "unused".into(),
    })
    .await
    .unwrap();
    let url = Url::parse(&format!("http://{}", server.local_addr().unwrap())).unwrap();
    tokio::spawn(server.run());
    url
}

fn lines(exchanges: &[Exchange]) -> Vec<String> {
    exchanges.iter().map(Exchange::line).collect()
}

#[tokio::test]
async fn a_reseed_marks_the_data_replaces_the_pod_and_releases_the_member() {
    let dir = tempfile::tempdir().unwrap();
    let datadir = dir.path().join("data");
    std::fs::create_dir_all(&datadir).unwrap();
    let url = agent(dir.path(), &datadir).await;
    let uid = Arc::new(Mutex::new(Some("old".to_string())));
    let (client, recorded) = mock::client(api(uid.clone()));
    let cluster = cluster(Some(("r1", "shop-2")));
    let agent_url = url.clone();
    let mut reseeder = Reseeder::new(
        client,
        &cluster,
        Box::new(move |m| (m == "shop-2").then(|| agent_url.clone())),
    );
    let mut target = target("shop-0");

    // Marked through the agent, then the pod deleted; the quarantine stays while the old
    // server may still run.
    let events = bounded(reseeder.tick(&cluster, Some(TOKEN), &mut target, 1_000, "t1")).await;
    assert!(datadir.join(RESEED_MARKER).exists());
    assert_eq!(
        lines(&recorded.take()),
        [format!("GET {POD}"), format!("DELETE {POD}")]
    );
    assert_eq!(events.len(), 1);
    assert_eq!((events[0].reason, events[0].warning), ("Reseeding", false));
    assert!(target.released.is_empty());
    let record = reseeder.record().unwrap().clone();
    assert_eq!(
        (record.id.as_str(), record.member.as_str(), record.result),
        ("r1", "shop-2", ReseedResult::InProgress)
    );

    // The old pod is still there (terminating): nothing is released.
    let events = bounded(reseeder.tick(&cluster, Some(TOKEN), &mut target, 3_000, "t2")).await;
    assert!(events.is_empty());
    assert_eq!(lines(&recorded.take()), [format!("GET {POD}")]);
    assert!(target.released.is_empty());

    // The StatefulSet's new pod: the member leaves quarantine and copies.
    *uid.lock().unwrap() = Some("new".into());
    bounded(reseeder.tick(&cluster, Some(TOKEN), &mut target, 5_000, "t3")).await;
    assert_eq!(target.released, ["shop-2"]);
    assert!(reseeder.record().unwrap().message.contains("copying"));

    // Until it replicates, nothing more; then the request succeeds, once.
    bounded(reseeder.tick(&cluster, Some(TOKEN), &mut target, 7_000, "t4")).await;
    assert_eq!(reseeder.record().unwrap().result, ReseedResult::InProgress);
    target.serving.push("shop-2".into());
    let events = bounded(reseeder.tick(&cluster, Some(TOKEN), &mut target, 31_000, "t5")).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].reason, "Reseeded");
    assert!(events[0].note.contains("30.0 s"), "{}", events[0].note);
    let record = reseeder.record().unwrap();
    assert_eq!(
        (record.result, record.time.as_str()),
        (ReseedResult::Succeeded, "t5")
    );
    recorded.take();
    let events = bounded(reseeder.tick(&cluster, Some(TOKEN), &mut target, 33_000, "t6")).await;
    assert!(events.is_empty());
    assert!(
        recorded.take().is_empty(),
        "a finished request does nothing"
    );
    assert_eq!(target.released, ["shop-2"]);
}

#[tokio::test]
async fn the_primary_is_refused_and_a_wrong_token_retries_without_deleting() {
    let dir = tempfile::tempdir().unwrap();
    let datadir = dir.path().join("data");
    std::fs::create_dir_all(&datadir).unwrap();
    let url = agent(dir.path(), &datadir).await;
    let uid = Arc::new(Mutex::new(Some("old".to_string())));
    let (client, recorded) = mock::client(api(uid));

    let primary = cluster(Some(("r1", "shop-2")));
    let agent_url = url.clone();
    let mut reseeder = Reseeder::new(
        client.clone(),
        &primary,
        Box::new(move |_| Some(agent_url.clone())),
    );
    let mut target = target("shop-2");
    let events = bounded(reseeder.tick(&primary, Some(TOKEN), &mut target, 0, "t1")).await;
    assert_eq!(
        (events[0].reason, events[0].warning),
        ("ReseedFailed", true)
    );
    assert!(
        events[0].note.contains("is the primary"),
        "{}",
        events[0].note
    );
    assert_eq!(reseeder.record().unwrap().result, ReseedResult::Failed);
    assert!(recorded.take().is_empty());
    assert!(!datadir.join(RESEED_MARKER).exists());

    // A replica, but the agent refuses the token: reported, retried, the pod left alone.
    let mut target = Target {
        primary: Some("shop-0".into()),
        ..Target::default()
    };
    let next = cluster(Some(("r2", "shop-2")));
    let events = bounded(reseeder.tick(&next, Some("wrong"), &mut target, 0, "t2")).await;
    assert!(events.is_empty());
    let record = reseeder.record().unwrap();
    assert_eq!(record.result, ReseedResult::InProgress);
    assert!(record.message.contains("401"), "{}", record.message);
    assert!(recorded.take().is_empty(), "nothing deleted");
    assert!(!datadir.join(RESEED_MARKER).exists());
    // Past the deadline it fails.
    let late = RESEED_TIMEOUT.as_millis() as u64 + 1;
    let events = bounded(reseeder.tick(&next, Some("wrong"), &mut target, late, "t3")).await;
    assert_eq!(events[0].reason, "ReseedFailed");
    assert!(recorded.take().is_empty());
}

#[test]
fn a_request_the_status_reports_finished_is_not_run_again() {
    let target = target("shop-0");
    let request = ReseedSpec {
        id: "r1".into(),
        member: "shop-2".into(),
    };
    assert_eq!(
        decide(Some(&request), Some("r1"), None, &target, 0),
        Decision::Nothing
    );
    assert_eq!(
        decide(Some(&request), Some("r0"), None, &target, 0),
        Decision::Mark
    );
    assert_eq!(decide(None, None, None, &target, 0), Decision::Nothing);
    // A request in flight for another member or id starts over.
    let other = InFlight {
        id: "r0".into(),
        member: "shop-1".into(),
        started_ms: 0,
        stage: Stage::Copying,
    };
    assert_eq!(
        decide(Some(&request), None, Some(&other), &target, 0),
        Decision::Mark
    );
}

#[tokio::test]
async fn the_finished_request_is_read_back_from_the_status() {
    let (client, _) = mock::client(|_| status(404, "NotFound"));
    let mut cluster = cluster(Some(("r1", "shop-2")));
    cluster.status = Some(crate::crd::MySQLClusterStatus {
        last_reseed: Some(ReseedRecord {
            id: "r1".into(),
            member: "shop-2".into(),
            result: ReseedResult::Succeeded,
            message: "done".into(),
            time: "t0".into(),
        }),
        ..Default::default()
    });
    let mut reseeder = Reseeder::new(client, &cluster, Box::new(|_| None));
    let mut target = target("shop-0");
    let events = bounded(reseeder.tick(&cluster, Some(TOKEN), &mut target, 0, "t1")).await;
    assert!(events.is_empty());
    assert_eq!(reseeder.record().unwrap().time, "t0");
}
