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

/// Pod `shop-2`: `old` was created long before any request; any other uid at the start of
/// 2026 (a replacement, for the tests that start requests just before).
fn pod(uid: &str) -> Value {
    let created = if uid == "old" {
        "2020-01-01T00:00:00Z"
    } else {
        "2026-01-01T00:00:00Z"
    };
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": "shop-2", "namespace": "default", "uid": uid,
            "creationTimestamp": created,
        },
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

/// An API server where pod `shop-2` (uid `old`) can be read but not deleted (say, RBAC).
fn undeletable(request: &Exchange) -> (u16, Value) {
    match request.method.as_str() {
        "GET" if request.path == POD => (200, pod("old")),
        _ => status(403, "Forbidden"),
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
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
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

/// Milliseconds after the tests' clock starts: mid-2025, after the old pod was created and
/// before any replacement.
fn at(ms: u64) -> u64 {
    unix_ms("2025-06-01T00:00:00Z").unwrap() + ms
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
    let mut reseeder = Reseeder::new(client, &cluster, agent.port, at(0));
    let mut target = target("shop-0");

    // Marked through the agent (naming the donor), then the pod deleted; the quarantine
    // stays while the old server may still run.
    let events = bounded(reseeder.tick(&cluster, &mut target, token, at(1_000), "t1")).await;
    let donor = format!("http://127.0.0.1:{}\n", agent.port);
    assert_eq!(agent.marker().as_deref(), Some(donor.as_str()));
    let sent = recorded.take();
    let sent_lines: Vec<String> = sent.iter().map(Exchange::line).collect();
    assert_eq!(sent_lines, [format!("GET {POD}"), format!("DELETE {POD}")]);
    // Only that pod: never its successor.
    assert_eq!(sent[1].body["preconditions"]["uid"], "old");
    assert_eq!(events.len(), 1);
    assert_eq!((events[0].reason, events[0].warning), ("Reseeding", false));
    assert!(target.released.is_empty());
    let record = reseeder.record().unwrap().clone();
    assert_eq!(
        (record.id.as_str(), record.member.as_str(), record.result),
        ("r1", "shop-2", ReseedResult::InProgress)
    );
    assert_eq!(record.replaced_pod_uid.as_deref(), Some("old"));
    assert!(record.started.is_some());

    // The old pod is still there (terminating): nothing is released, nothing deleted again.
    let events = bounded(reseeder.tick(&cluster, &mut target, token, at(3_000), "t2")).await;
    assert!(events.is_empty());
    assert_eq!(lines(&recorded), [format!("GET {POD}")]);
    assert!(target.released.is_empty());

    // The StatefulSet's new pod: the member leaves quarantine and copies.
    *uid.lock().unwrap() = Some("new".into());
    bounded(reseeder.tick(&cluster, &mut target, token, at(5_000), "t3")).await;
    assert_eq!(target.released, ["shop-2"]);
    let record = reseeder.record().unwrap();
    assert!(record.message.contains("copying"), "{}", record.message);
    // Kept while copying: a restarted operator must not replace the new pod again.
    assert_eq!(record.replaced_pod_uid.as_deref(), Some("old"));

    // Until it replicates, nothing more; then the request succeeds, once.
    bounded(reseeder.tick(&cluster, &mut target, token, at(7_000), "t4")).await;
    assert_eq!(reseeder.record().unwrap().result, ReseedResult::InProgress);
    target.serving.push("shop-2".into());
    let events = bounded(reseeder.tick(&cluster, &mut target, token, at(31_000), "t5")).await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].reason, "Reseeded");
    assert!(events[0].note.contains("30.0 s"), "{}", events[0].note);
    let record = reseeder.record().unwrap();
    assert_eq!(
        (record.result, record.time.as_str()),
        (ReseedResult::Succeeded, "t5")
    );
    recorded.take();
    let events = bounded(reseeder.tick(&cluster, &mut target, token, at(33_000), "t6")).await;
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
    let mut reseeder = Reseeder::new(client, &request, agent.port, at(0));

    let mut is_primary = target("shop-2");
    let events = bounded(reseeder.tick(&request, &mut is_primary, token, at(0), "t1")).await;
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
    let events = bounded(reseeder.tick(&next, &mut replica, wrong_token, at(0), "t2")).await;
    assert!(events.is_empty());
    let record = reseeder.record().unwrap();
    assert_eq!(record.result, ReseedResult::InProgress);
    assert!(record.message.contains("401"), "{}", record.message);
    assert_eq!(lines(&recorded), [format!("GET {POD}")], "nothing deleted");
    assert_eq!(agent.marker(), None);
    // Meanwhile a failover promoted it: refused before any mark.
    let events = bounded(reseeder.tick(&next, &mut is_primary, token, at(2_000), "t3")).await;
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
async fn nothing_is_emptied_while_no_primary_is_published() {
    let agent = Agent::start().await;
    let (client, recorded) = mock::client(api(pod_uid("old")));
    let request = cluster(Some(("r1", "shop-2")));
    let mut reseeder = Reseeder::new(client, &request, agent.port, at(0));
    let mut unknown = Target::default();
    let events = bounded(reseeder.tick(&request, &mut unknown, token, at(0), "t1")).await;
    assert!(events.is_empty());
    assert!(recorded.take().is_empty());
    assert_eq!(agent.marker(), None);
    let record = reseeder.record().unwrap();
    assert_eq!(record.result, ReseedResult::InProgress);
    assert!(
        record.message.contains("published primary"),
        "{}",
        record.message
    );
    // Once one is, the request goes on.
    let mut known = target("shop-0");
    bounded(reseeder.tick(&request, &mut known, token, at(2_000), "t2")).await;
    assert!(agent.marker().is_some());
}

#[tokio::test]
async fn a_request_withdrawn_before_the_pod_is_replaced_takes_its_mark_back() {
    let agent = Agent::start().await;
    // The pod cannot be deleted: the mark is in place, the pod is not replaced.
    let (client, recorded) = mock::client(undeletable);
    let request = cluster(Some(("r1", "shop-2")));
    let mut reseeder = Reseeder::new(client, &request, agent.port, at(0));
    let mut target = target("shop-0");
    bounded(reseeder.tick(&request, &mut target, token, at(0), "t1")).await;
    assert!(agent.marker().is_some());
    assert_eq!(
        lines(&recorded),
        [format!("GET {POD}"), format!("DELETE {POD}")]
    );
    let message = reseeder.record().unwrap().message.clone();
    assert!(message.contains("deleting pod shop-2"), "{message}");
    // Retried while it stands.
    bounded(reseeder.tick(&request, &mut target, token, at(1_000), "t2")).await;
    assert_eq!(
        lines(&recorded),
        [format!("GET {POD}"), format!("DELETE {POD}")]
    );

    let withdrawn = cluster(None);
    let events = bounded(reseeder.tick(&withdrawn, &mut target, token, at(2_000), "t3")).await;
    assert_eq!(events[0].reason, "ReseedFailed");
    assert!(events[0].note.contains("withdrawn"), "{}", events[0].note);
    assert_eq!(reseeder.record().unwrap().result, ReseedResult::Failed);
    // Taken back from the next tick on (the failure is reported first, whatever the agent).
    bounded(reseeder.tick(&withdrawn, &mut target, token, at(4_000), "t4")).await;
    assert_eq!(agent.marker(), None, "the mark is taken back");
}

#[tokio::test]
async fn past_the_deadline_the_request_fails_and_its_mark_is_taken_back() {
    let agent = Agent::start().await;
    let (client, _) = mock::client(undeletable);
    let request = cluster(Some(("r1", "shop-2")));
    let mut reseeder = Reseeder::new(client, &request, agent.port, at(0));
    let mut target = target("shop-0");
    bounded(reseeder.tick(&request, &mut target, token, at(0), "t1")).await;
    assert!(agent.marker().is_some());
    let late = at(u64::try_from(RESEED_TIMEOUT.as_millis()).unwrap() + 1);
    let events = bounded(reseeder.tick(&request, &mut target, token, late, "t2")).await;
    assert_eq!(events[0].reason, "ReseedFailed");
    assert!(events[0].note.contains("30 min"), "{}", events[0].note);
    bounded(reseeder.tick(&request, &mut target, token, late + 1, "t3")).await;
    assert_eq!(agent.marker(), None);
    // Not retried for the same id.
    let events = bounded(reseeder.tick(&request, &mut target, token, late + 2, "t4")).await;
    assert!(events.is_empty());
    assert_eq!(agent.marker(), None);
}

#[tokio::test]
async fn a_request_whose_pod_was_replaced_runs_to_its_end_when_withdrawn() {
    let agent = Agent::start().await;
    let uid = pod_uid("old");
    let (client, _) = mock::client(api(uid.clone()));
    let request = cluster(Some(("r1", "shop-2")));
    let mut reseeder = Reseeder::new(client, &request, agent.port, at(0));
    let mut target = target("shop-0");
    bounded(reseeder.tick(&request, &mut target, token, at(0), "t1")).await;
    // Withdrawn while the pod is replaced: the member is still released once the new pod is
    // there, or it would stay quarantined with fresh data.
    let withdrawn = cluster(None);
    *uid.lock().unwrap() = Some("new".into());
    bounded(reseeder.tick(&withdrawn, &mut target, token, at(2_000), "t2")).await;
    assert_eq!(target.released, ["shop-2"]);
    target.serving.push("shop-2".into());
    let events = bounded(reseeder.tick(&withdrawn, &mut target, token, at(4_000), "t3")).await;
    assert_eq!(events[0].reason, "Reseeded");
    // Its mark was for the new pod's init step: not taken back.
    assert!(agent.marker().is_some(), "left for the init step");
}

fn in_progress(started: Option<&str>, replaced_pod_uid: Option<&str>) -> ReseedRecord {
    ReseedRecord {
        id: "r1".into(),
        member: "shop-2".into(),
        result: ReseedResult::InProgress,
        message: "marked".into(),
        time: "t0".into(),
        started: started.map(str::to_string),
        replaced_pod_uid: replaced_pod_uid.map(str::to_string),
    }
}

fn with_status(record: ReseedRecord) -> MySQLCluster {
    let mut cluster = cluster(Some(("r1", "shop-2")));
    cluster.status = Some(crate::crd::MySQLClusterStatus {
        last_reseed: Some(record),
        ..Default::default()
    });
    cluster
}

#[tokio::test]
async fn a_restarted_operator_resumes_from_the_status() {
    // Finished: not run again.
    let (client, recorded) = mock::client(|_| status(404, "NotFound"));
    let done = with_status(ReseedRecord {
        result: ReseedResult::Succeeded,
        message: "done".into(),
        ..in_progress(None, None)
    });
    let mut reseeder = Reseeder::new(client, &done, 1, at(0));
    let mut target = target("shop-0");
    let events = bounded(reseeder.tick(&done, &mut target, token, at(0), "t1")).await;
    assert!(events.is_empty());
    assert!(recorded.take().is_empty());
    assert_eq!(reseeder.record().unwrap().time, "t0");

    // Copying when the operator stopped (the deleted pod's uid recorded): the new pod is not
    // replaced again; the member is released and the request goes on.
    let (client, recorded) = mock::client(api(pod_uid("new")));
    let copying = with_status(in_progress(None, Some("old")));
    let mut reseeder = Reseeder::new(client, &copying, 1, at(0));
    bounded(reseeder.tick(&copying, &mut target, token, at(0), "t1")).await;
    assert_eq!(lines(&recorded), [format!("GET {POD}")]);
    assert_eq!(target.released, ["shop-2"]);

    // Stopped right after the deletion, before recording it; the pod there was created after
    // the request started: it is the replacement, neither marked nor deleted.
    let agent = Agent::start().await;
    let (client, recorded) = mock::client(api(pod_uid("new")));
    let unrecorded = with_status(in_progress(Some("2025-12-31T23:55:00Z"), None));
    let mut reseeder = Reseeder::new(client, &unrecorded, agent.port, at(0));
    target.released.clear();
    let now = unix_ms("2026-01-01T00:05:00Z").unwrap();
    bounded(reseeder.tick(&unrecorded, &mut target, token, now, "t1")).await;
    assert_eq!(lines(&recorded), [format!("GET {POD}")], "not deleted");
    assert_eq!(agent.marker(), None, "not marked");
    bounded(reseeder.tick(&unrecorded, &mut target, token, now + 2_000, "t2")).await;
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
    // Nobody knows which member is the primary: wait.
    assert!(matches!(
        decide(Some(&request), None, None, &Target::default(), 0),
        Decision::Wait(_)
    ));
    // A request in flight, not yet through, replaced by another: the old one fails first;
    // the new one starts on the next tick.
    let other = InFlight {
        id: "r0".into(),
        member: "shop-1".into(),
        started_ms: 0,
        stage: Stage::Marking,
        marked: true,
        announced: false,
    };
    assert!(matches!(
        decide(Some(&request), None, Some(&other), &target, 0),
        Decision::Fail(_)
    ));
    let copying = InFlight {
        stage: Stage::Copying {
            old_uid: None,
            since_ms: 0,
        },
        ..other.clone()
    };
    assert_eq!(
        decide(Some(&request), None, Some(&copying), &target, 0),
        Decision::Nothing
    );
    // Once the pod is deleted, neither withdrawal nor time ends the request: only the new pod.
    let deleted = InFlight {
        stage: Stage::Replacing {
            old_uid: Some("old".into()),
            deleted: true,
        },
        ..other
    };
    let late = u64::try_from(RESEED_TIMEOUT.as_millis()).unwrap() * 2;
    assert_eq!(
        decide(None, None, Some(&deleted), &target, late),
        Decision::WatchPod
    );
}
