//! Re-seed requests against a scripted API server and a real agent on loopback.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

use super::*;
use crate::agent::server::Server;
use crate::agent::{RESEED_MARKER, ServeArgs};
use crate::kube::mock::{self, Exchange, Recorded, bounded, status};

const TOKEN: &str = "reseed-test-token";
const POD: &str = "/api/v1/namespaces/default/pods/shop-2";

/// The orchestration as the re-seed sees it; every member's host is loopback.
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
    fn host(&self, member: &str) -> Option<String> {
        member.starts_with("shop-").then(|| "127.0.0.1".to_string())
    }
    fn donor_for(&self, member: &str) -> Option<String> {
        self.primary.clone().filter(|p| p != member)
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

/// A real agent on loopback serving a data directory of its own.
struct Agent {
    _dir: tempfile::TempDir,
    datadir: PathBuf,
    port: u16,
}

impl Agent {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let datadir = dir.path().join("data");
        std::fs::create_dir_all(&datadir).unwrap();
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, TOKEN).unwrap();
        let server = Server::bind(ServeArgs {
            listen: "127.0.0.1:0".parse().unwrap(),
            datadir: datadir.clone(),
            mysql_port: 1,
            token_file,
            scratch_dir: Some(dir.path().to_path_buf()),
            admin_user: "unused".into(),
            admin_password: "unused".into(),
        })
        .await
        .unwrap();
        let port = server.local_addr().unwrap().port();
        tokio::spawn(server.run());
        Self {
            _dir: dir,
            datadir,
            port,
        }
    }

    fn marker(&self) -> Option<String> {
        std::fs::read_to_string(self.datadir.join(RESEED_MARKER)).ok()
    }
}

async fn token() -> Option<String> {
    Some(TOKEN.to_string())
}

async fn wrong_token() -> Option<String> {
    Some("wrong".to_string())
}

fn lines(recorded: &Recorded) -> Vec<String> {
    recorded.take().iter().map(Exchange::line).collect()
}

fn pod_uid(uid: &str) -> Arc<Mutex<Option<String>>> {
    Arc::new(Mutex::new(Some(uid.to_string())))
}

#[tokio::test]
async fn a_reseed_marks_the_data_replaces_the_pod_and_releases_the_member() {
    let agent = Agent::start().await;
    let uid = pod_uid("old");
    let (client, recorded) = mock::client(api(uid.clone()));
    let cluster = cluster(Some(("r1", "shop-2")));
    let mut reseeder = Reseeder::new(client, &cluster, agent.port, 0);
    let mut target = target("shop-0");

    // Marked through the agent (naming the donor), then the pod deleted; the quarantine
    // stays while the old server may still run.
    let events = bounded(reseeder.tick(&cluster, &mut target, token, 1_000, "t1")).await;
    let donor = format!("http://127.0.0.1:{}\n", agent.port);
    assert_eq!(agent.marker().as_deref(), Some(donor.as_str()));
    assert_eq!(
        lines(&recorded),
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
    assert_eq!(record.replaced_pod_uid.as_deref(), Some("old"));

    // The old pod is still there (terminating): nothing is released.
    let events = bounded(reseeder.tick(&cluster, &mut target, token, 3_000, "t2")).await;
    assert!(events.is_empty());
    assert_eq!(lines(&recorded), [format!("GET {POD}")]);
    assert!(target.released.is_empty());

    // The StatefulSet's new pod: the member leaves quarantine and copies.
    *uid.lock().unwrap() = Some("new".into());
    bounded(reseeder.tick(&cluster, &mut target, token, 5_000, "t3")).await;
    assert_eq!(target.released, ["shop-2"]);
    let record = reseeder.record().unwrap();
    assert!(record.message.contains("copying"), "{}", record.message);
    assert_eq!(record.replaced_pod_uid, None);

    // Until it replicates, nothing more; then the request succeeds, once.
    bounded(reseeder.tick(&cluster, &mut target, token, 7_000, "t4")).await;
    assert_eq!(reseeder.record().unwrap().result, ReseedResult::InProgress);
    target.serving.push("shop-2".into());
    let events = bounded(reseeder.tick(&cluster, &mut target, token, 31_000, "t5")).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].reason, "Reseeded");
    assert!(events[0].note.contains("30.0 s"), "{}", events[0].note);
    let record = reseeder.record().unwrap();
    assert_eq!(
        (record.result, record.time.as_str()),
        (ReseedResult::Succeeded, "t5")
    );
    recorded.take();
    let events = bounded(reseeder.tick(&cluster, &mut target, token, 33_000, "t6")).await;
    assert!(events.is_empty());
    assert!(
        recorded.take().is_empty(),
        "a finished request does nothing"
    );
    assert_eq!(target.released, ["shop-2"]);
}

#[tokio::test]
async fn the_primary_is_refused_even_when_promoted_while_the_mark_is_retried() {
    let agent = Agent::start().await;
    let (client, recorded) = mock::client(api(pod_uid("old")));
    let request = cluster(Some(("r1", "shop-2")));
    let mut reseeder = Reseeder::new(client, &request, agent.port, 0);

    let mut is_primary = target("shop-2");
    let events = bounded(reseeder.tick(&request, &mut is_primary, token, 0, "t1")).await;
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
    assert_eq!(agent.marker(), None);

    // A replica, but the agent refuses the token: reported, retried, the pod left alone.
    let next = cluster(Some(("r2", "shop-2")));
    let mut replica = target("shop-0");
    let events = bounded(reseeder.tick(&next, &mut replica, wrong_token, 0, "t2")).await;
    assert!(events.is_empty());
    let record = reseeder.record().unwrap();
    assert_eq!(record.result, ReseedResult::InProgress);
    assert!(record.message.contains("401"), "{}", record.message);
    assert!(recorded.take().is_empty(), "nothing deleted");
    assert_eq!(agent.marker(), None);
    // Meanwhile a failover promoted it: refused before any mark.
    let events = bounded(reseeder.tick(&next, &mut is_primary, token, 2_000, "t3")).await;
    assert_eq!(events[0].reason, "ReseedFailed");
    assert!(
        events[0].note.contains("is the primary"),
        "{}",
        events[0].note
    );
    assert!(recorded.take().is_empty());
    assert_eq!(agent.marker(), None);
}

#[tokio::test]
async fn a_request_withdrawn_before_the_pod_is_replaced_takes_its_mark_back() {
    let agent = Agent::start().await;
    // The pod cannot be read or deleted (say, RBAC): the mark is in place, the pod is not.
    let (client, recorded) = mock::client(|_| status(403, "Forbidden"));
    let request = cluster(Some(("r1", "shop-2")));
    let mut reseeder = Reseeder::new(client, &request, agent.port, 0);
    let mut target = target("shop-0");
    bounded(reseeder.tick(&request, &mut target, token, 0, "t1")).await;
    assert!(agent.marker().is_some());
    assert_eq!(lines(&recorded), [format!("GET {POD}")]);
    assert!(
        reseeder
            .record()
            .unwrap()
            .message
            .contains("reading pod shop-2")
    );

    let withdrawn = cluster(None);
    let events = bounded(reseeder.tick(&withdrawn, &mut target, token, 2_000, "t2")).await;
    assert_eq!(events[0].reason, "ReseedFailed");
    assert!(events[0].note.contains("withdrawn"), "{}", events[0].note);
    assert_eq!(agent.marker(), None, "the mark is taken back");
    assert_eq!(reseeder.record().unwrap().result, ReseedResult::Failed);
}

#[tokio::test]
async fn past_the_deadline_the_request_fails_and_its_mark_is_taken_back() {
    let agent = Agent::start().await;
    let (client, _) = mock::client(|_| status(403, "Forbidden"));
    let request = cluster(Some(("r1", "shop-2")));
    let mut reseeder = Reseeder::new(client, &request, agent.port, 0);
    let mut target = target("shop-0");
    bounded(reseeder.tick(&request, &mut target, token, 0, "t1")).await;
    assert!(agent.marker().is_some());
    let late = u64::try_from(RESEED_TIMEOUT.as_millis()).unwrap() + 1;
    let events = bounded(reseeder.tick(&request, &mut target, token, late, "t2")).await;
    assert_eq!(events[0].reason, "ReseedFailed");
    assert!(events[0].note.contains("30 min"), "{}", events[0].note);
    assert_eq!(agent.marker(), None);
    // Not retried for the same id.
    let events = bounded(reseeder.tick(&request, &mut target, token, late + 1, "t3")).await;
    assert!(events.is_empty());
    assert_eq!(agent.marker(), None);
}

#[tokio::test]
async fn a_request_whose_pod_was_replaced_runs_to_its_end_when_withdrawn() {
    let agent = Agent::start().await;
    let uid = pod_uid("old");
    let (client, _) = mock::client(api(uid.clone()));
    let request = cluster(Some(("r1", "shop-2")));
    let mut reseeder = Reseeder::new(client, &request, agent.port, 0);
    let mut target = target("shop-0");
    bounded(reseeder.tick(&request, &mut target, token, 0, "t1")).await;
    // Withdrawn while the pod is replaced: the member is still released once the new pod is
    // there, or it would stay quarantined with fresh data.
    let withdrawn = cluster(None);
    *uid.lock().unwrap() = Some("new".into());
    bounded(reseeder.tick(&withdrawn, &mut target, token, 2_000, "t2")).await;
    assert_eq!(target.released, ["shop-2"]);
    target.serving.push("shop-2".into());
    let events = bounded(reseeder.tick(&withdrawn, &mut target, token, 4_000, "t3")).await;
    assert_eq!(events[0].reason, "Reseeded");
    // Its mark was consumed by the new pod's init step, not taken back.
    assert!(agent.marker().is_some(), "left for the init step");
}

#[tokio::test]
async fn a_restarted_operator_resumes_from_the_status() {
    // Finished: not run again.
    let (client, recorded) = mock::client(|_| status(404, "NotFound"));
    let mut done = cluster(Some(("r1", "shop-2")));
    let record = ReseedRecord {
        id: "r1".into(),
        member: "shop-2".into(),
        result: ReseedResult::Succeeded,
        message: "done".into(),
        time: "t0".into(),
        replaced_pod_uid: None,
    };
    done.status = Some(crate::crd::MySQLClusterStatus {
        last_reseed: Some(record.clone()),
        ..Default::default()
    });
    let mut reseeder = Reseeder::new(client, &done, 1, 0);
    let mut target = target("shop-0");
    let events = bounded(reseeder.tick(&done, &mut target, token, 0, "t1")).await;
    assert!(events.is_empty());
    assert!(recorded.take().is_empty());
    assert_eq!(reseeder.record().unwrap().time, "t0");

    // In progress with the old pod deleted: the new pod (already copied) is not replaced
    // again; the member is released and the request goes on.
    let (client, recorded) = mock::client(api(pod_uid("new")));
    let mut resumed = cluster(Some(("r1", "shop-2")));
    resumed.status = Some(crate::crd::MySQLClusterStatus {
        last_reseed: Some(ReseedRecord {
            result: ReseedResult::InProgress,
            replaced_pod_uid: Some("old".into()),
            ..record
        }),
        ..Default::default()
    });
    let mut reseeder = Reseeder::new(client, &resumed, 1, 0);
    bounded(reseeder.tick(&resumed, &mut target, token, 0, "t1")).await;
    assert_eq!(lines(&recorded), [format!("GET {POD}")]);
    assert_eq!(target.released, ["shop-2"]);
}

#[test]
fn decisions() {
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
        Decision::Start
    );
    assert_eq!(decide(None, None, None, &target, 0), Decision::Nothing);
    // A request in flight, not yet marked through, replaced by another: the old one fails
    // first; the new one starts on the next tick.
    let other = InFlight {
        id: "r0".into(),
        member: "shop-1".into(),
        started_ms: 0,
        stage: Stage::Marking,
        marked: true,
    };
    assert!(matches!(
        decide(Some(&request), None, Some(&other), &target, 0),
        Decision::Fail(_)
    ));
    let copying = InFlight {
        stage: Stage::Copying,
        ..other
    };
    assert_eq!(
        decide(Some(&request), None, Some(&copying), &target, 0),
        Decision::Nothing
    );
}
