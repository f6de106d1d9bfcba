use std::collections::BTreeSet;

use k8s_openapi::api::apps::v1::{StatefulSet, StatefulSetStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

use http::{Request, Response};
use kube::client::Body;

use super::*;

fn statefulset(update: Option<&str>) -> StatefulSet {
    StatefulSet {
        status: Some(StatefulSetStatus {
            update_revision: update.map(String::from),
            ..StatefulSetStatus::default()
        }),
        ..StatefulSet::default()
    }
}

fn pod(name: &str, uid: &str, revision: Option<&str>, terminating: bool) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            uid: Some(uid.into()),
            labels: revision.map(|r| [(REVISION_LABEL.to_string(), r.to_string())].into()),
            deletion_timestamp: terminating
                .then_some(Time(k8s_openapi::jiff::Timestamp::UNIX_EPOCH)),
            ..ObjectMeta::default()
        },
        ..Pod::default()
    }
}

#[test]
fn a_pod_runs_the_current_template_when_made_from_the_update_revision() {
    let pods = [
        pod("db-0", "u0", Some("db-new"), false),
        pod("db-1", "u1", Some("db-old"), false),
        pod("db-2", "u2", Some("db-new"), true),
        pod("db-3", "u3", None, false),
    ];
    let found = member_pods(&statefulset(Some("db-new")), &pods).expect("an update revision");
    let current: Vec<&str> = found
        .iter()
        .filter(|(_, p)| p.current)
        .map(|(n, _)| n.as_str())
        .collect();
    assert_eq!(current, ["db-0", "db-2"]);
    assert!(found["db-2"].terminating);
    assert_eq!(found["db-1"].uid, "u1");
    // Before the StatefulSet reports its revision, nothing can be said.
    assert_eq!(member_pods(&statefulset(None), &pods), None);
}

#[test]
fn the_report_says_how_far_the_roll_is_and_why_it_waits() {
    let report = RollReport {
        current: 1,
        members: 3,
        member: Some("db-1".into()),
        phase: Some("catching up"),
        waiting: Some("db-1 is catching up".into()),
    };
    assert_eq!(
        report.message(),
        "1 of 3 members run the current template; db-1: catching up; db-1 is catching up"
    );
}

#[tokio::test]
async fn the_member_rolled_is_out_of_reads_until_readmitted_and_a_users_cordon_stays() {
    // No request is made: the client is never answered.
    let (service, _handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let cluster: MySQLCluster = serde_json::from_value(serde_json::json!({
        "apiVersion": "lagless.dev/v1alpha1", "kind": "MySQLCluster",
        "metadata": {"name": "db", "namespace": "default"},
        "spec": {"replicas": 3},
    }))
    .expect("a cluster");
    let mut roller = Roller::new(client, &cluster);
    let mut spec = ClusterSpec::new("db", Vec::new());
    spec.cordoned = BTreeSet::from(["db-0".to_string()]);
    roller.rolling = Some(Rolling {
        member: "db-2".into(),
        phase: Phase::Draining,
        since_ms: 0,
        catch_up_to: None,
    });
    roller.hand_over = Some("db-0".into());
    roller.adjust(&mut spec, &["db-0".to_string()]);
    assert_eq!(
        spec.cordoned,
        BTreeSet::from(["db-0".into(), "db-2".into()])
    );
    assert_eq!(spec.hand_over.as_deref(), Some("db-0"));
    // The next member: the previous one back in reads.
    roller.rolling.as_mut().expect("rolling").member = "db-1".into();
    roller.hand_over = None;
    roller.adjust(&mut spec, &["db-0".to_string()]);
    assert_eq!(
        spec.cordoned,
        BTreeSet::from(["db-0".into(), "db-1".into()])
    );
    assert_eq!(spec.hand_over, None);
    // Done: only the user's cordon stays, also when the roll had the same member.
    roller.rolling = Some(Rolling {
        member: "db-0".into(),
        phase: Phase::Draining,
        since_ms: 0,
        catch_up_to: None,
    });
    roller.adjust(&mut spec, &["db-0".to_string()]);
    roller.rolling = None;
    roller.adjust(&mut spec, &["db-0".to_string()]);
    assert_eq!(spec.cordoned, BTreeSet::from(["db-0".into()]));
}
