use serde_json::Value;

use super::*;
use crate::kube::mock::{self, Exchange, bounded, status};

const LEASES: &str = "/apis/coordination.k8s.io/v1/namespaces/ops/leases";
const ME: &str = "operator-a";

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(1_800_000_000 + seconds).unwrap()
}

fn lease(holder: &str, renewed: Timestamp, transitions: i32) -> Lease {
    Lease {
        metadata: ObjectMeta {
            name: Some("lagless".into()),
            namespace: Some("ops".into()),
            resource_version: Some("7".into()),
            ..ObjectMeta::default()
        },
        spec: Some(LeaseSpec {
            holder_identity: Some(holder.into()),
            lease_duration_seconds: Some(LEASE_DURATION_SECONDS),
            acquire_time: Some(MicroTime(renewed)),
            renew_time: Some(MicroTime(renewed)),
            lease_transitions: Some(transitions),
            ..LeaseSpec::default()
        }),
    }
}

#[test]
fn a_missing_lease_is_created() {
    assert_eq!(decide(None, ME, at(0)), Decision::Create);
    let created = desired(None, &Decision::Create, "lagless", "ops", ME, at(0)).unwrap();
    let spec = created.spec.unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some(ME));
    assert_eq!(spec.lease_duration_seconds, Some(15));
    assert_eq!(spec.lease_transitions, Some(0));
    assert_eq!(spec.renew_time, Some(MicroTime(at(0))));
}

#[test]
fn our_own_lease_is_renewed_keeping_its_version() {
    let ours = lease(ME, at(0), 3);
    // Even past its expiry: nobody took it, so it is still ours to renew.
    assert_eq!(decide(Some(&ours), ME, at(100)), Decision::Renew);
    let renewed = desired(Some(&ours), &Decision::Renew, "lagless", "ops", ME, at(5)).unwrap();
    assert_eq!(renewed.metadata.resource_version.as_deref(), Some("7"));
    let spec = renewed.spec.unwrap();
    assert_eq!(spec.renew_time, Some(MicroTime(at(5))));
    assert_eq!(spec.acquire_time, Some(MicroTime(at(0))));
    assert_eq!(spec.lease_transitions, Some(3));
}

#[test]
fn a_live_lease_of_another_replica_is_waited_out() {
    let theirs = lease("operator-b", at(0), 1);
    assert_eq!(
        decide(Some(&theirs), ME, at(14)),
        Decision::Wait {
            holder: "operator-b".into(),
            expires: at(15)
        }
    );
    assert_eq!(
        desired(
            Some(&theirs),
            &decide(Some(&theirs), ME, at(14)),
            "lagless",
            "ops",
            ME,
            at(14)
        ),
        None
    );
}

#[test]
fn an_expired_or_released_lease_is_taken_over() {
    let theirs = lease("operator-b", at(0), 1);
    assert_eq!(decide(Some(&theirs), ME, at(15)), Decision::TakeOver);
    let released = lease("", at(0), 1);
    assert_eq!(decide(Some(&released), ME, at(1)), Decision::TakeOver);
    let taken = desired(
        Some(&theirs),
        &Decision::TakeOver,
        "lagless",
        "ops",
        ME,
        at(16),
    )
    .unwrap();
    assert_eq!(taken.metadata.resource_version.as_deref(), Some("7"));
    let spec = taken.spec.unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some(ME));
    assert_eq!(spec.acquire_time, Some(MicroTime(at(16))));
    assert_eq!(spec.lease_transitions, Some(2));
}

fn new_elector(
    respond: impl Fn(&Exchange) -> (u16, Value) + Send + Sync + 'static,
) -> (LeaderElector, mock::Recorded) {
    let (client, recorded) = mock::client(respond);
    (LeaderElector::new(client, "ops", "lagless", ME), recorded)
}

#[tokio::test]
async fn a_free_lease_is_acquired_by_creating_it() {
    let (elector, recorded) = new_elector(|request| match request.method.as_str() {
        "GET" => status(404, "NotFound"),
        _ => (201, request.body.clone()),
    });
    assert!(bounded(elector.try_acquire()).await.unwrap());
    let requests = recorded.take();
    let lines: Vec<_> = requests.iter().map(Exchange::line).collect();
    assert_eq!(
        lines,
        [format!("GET {LEASES}/lagless"), format!("POST {LEASES}")]
    );
    let body = &requests[1].body;
    assert_eq!(body["metadata"]["name"], "lagless");
    assert_eq!(body["spec"]["holderIdentity"], ME);
    assert_eq!(body["spec"]["leaseDurationSeconds"], 15);
    assert_eq!(body["spec"]["leaseTransitions"], 0);
}

#[tokio::test]
async fn a_lease_held_by_another_replica_is_refused_without_writing() {
    let held = serde_json::to_value(lease("operator-b", Timestamp::now(), 1)).unwrap();
    let (elector, recorded) = new_elector(move |_| (200, held.clone()));
    assert!(!bounded(elector.try_acquire()).await.unwrap());
    let lines: Vec<_> = recorded.take().iter().map(Exchange::line).collect();
    assert_eq!(lines, [format!("GET {LEASES}/lagless")]);
}

#[tokio::test]
async fn an_expired_lease_is_taken_over_conditionally() {
    let expired = lease(
        "operator-b",
        Timestamp::now() - SignedDuration::from_secs(60),
        1,
    );
    let stored = serde_json::to_value(expired).unwrap();
    let (elector, recorded) = new_elector(move |request| match request.method.as_str() {
        "GET" => (200, stored.clone()),
        _ => (200, request.body.clone()),
    });
    assert!(bounded(elector.try_acquire()).await.unwrap());
    let requests = recorded.take();
    assert_eq!(requests[1].line(), format!("PUT {LEASES}/lagless"));
    let body = &requests[1].body;
    assert_eq!(body["metadata"]["resourceVersion"], "7");
    assert_eq!(body["spec"]["holderIdentity"], ME);
    assert_eq!(body["spec"]["leaseTransitions"], 2);
}

#[tokio::test]
async fn losing_the_race_is_not_leading() {
    let expired = lease(
        "operator-b",
        Timestamp::now() - SignedDuration::from_secs(60),
        1,
    );
    let stored = serde_json::to_value(expired).unwrap();
    let (elector, _) = new_elector(move |request| match request.method.as_str() {
        "GET" => (200, stored.clone()),
        // Another replica wrote first: the resourceVersion no longer matches.
        _ => status(409, "Conflict"),
    });
    assert!(!bounded(elector.try_acquire()).await.unwrap());
    // Two replicas found no Lease; the other one created it first.
    let (elector, _) = new_elector(|request| match request.method.as_str() {
        "GET" => status(404, "NotFound"),
        _ => status(409, "AlreadyExists"),
    });
    assert!(!bounded(elector.try_acquire()).await.unwrap());
}

#[tokio::test]
async fn other_api_errors_are_errors() {
    let (elector, _) = new_elector(|_| status(403, "Forbidden"));
    assert!(bounded(elector.try_acquire()).await.is_err());
}
