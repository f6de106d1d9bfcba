//! The requests `kubectl lagless` makes (merge patches of the spec) and how it tells, from
//! the status, that one was carried out: pure functions.

use serde_json::{Value, json};

use crate::crd::tenant_move::MySQLTenantMove;
use crate::crd::{
    BEST, Condition, ConditionStatus, MemberRole, MySQLCluster, MySQLClusterStatus, ReseedResult,
};

/// A fresh request id (`spec.switchover.id`, `spec.reseed.id`): a request runs once per id.
pub fn request_id(unix_ms: u64) -> String {
    format!("kubectl-{unix_ms}")
}

pub fn switchover_patch(id: &str, to: &str) -> Value {
    json!({ "spec": { "switchover": { "id": id, "primary": to } } })
}

pub fn reseed_patch(id: &str, member: &str) -> Value {
    json!({ "spec": { "reseed": { "id": id, "member": member } } })
}

pub fn paused_patch(paused: bool) -> Value {
    json!({ "spec": { "paused": paused } })
}

pub fn read_only_patch(on: bool) -> Value {
    json!({ "spec": { "readOnly": on } })
}

/// `member` is `<cluster>-<ordinal>` with an ordinal below `replicas` (or, where `best` is
/// allowed, `best`): checked before anything is patched, as the CRD's rules would.
pub fn check_member(
    cluster: &MySQLCluster,
    member: &str,
    best_allowed: bool,
) -> Result<(), String> {
    if best_allowed && member == BEST {
        return Ok(());
    }
    let name = cluster.metadata.name.as_deref().unwrap_or_default();
    let ordinal = member
        .strip_prefix(name)
        .and_then(|rest| rest.strip_prefix('-'))
        .filter(|n| n == &"0" || !n.starts_with('0'))
        .and_then(|n| n.parse::<i32>().ok());
    match ordinal {
        Some(i) if i < cluster.spec.replicas => Ok(()),
        _ => Err(format!(
            "{member} is not a member of {name}: its members are {name}-0 … {name}-{}",
            cluster.spec.replicas.saturating_sub(1)
        )),
    }
}

/// `cordon` (`on`) or `uncordon` of `member`: the whole `spec.cordoned` list as it is to be
/// (a merge patch replaces a list), bound to the resource version it was computed from so a
/// concurrent change is refused (409) rather than lost.
pub fn cordon_patch(cluster: &MySQLCluster, member: &str, on: bool) -> Value {
    let mut list: Vec<&str> = cluster
        .spec
        .cordoned
        .iter()
        .map(String::as_str)
        .filter(|m| *m != member)
        .collect();
    if on {
        list.push(member);
    }
    list.sort_unstable();
    json!({
        "metadata": { "resourceVersion": cluster.metadata.resource_version },
        "spec": { "cordoned": list },
    })
}

/// Where a request stands, as the status says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Not carried out yet; what the cluster is doing, for a progress line.
    Waiting(String),
    Done(String),
    Failed(String),
}

fn doing(cluster: &MySQLCluster) -> String {
    let status = cluster.status.as_ref();
    format!(
        "phase {}, primary {}",
        status
            .and_then(|s| s.phase)
            .map_or_else(|| "-".to_string(), |p| format!("{p:?}")),
        status.and_then(|s| s.primary.as_deref()).unwrap_or("-")
    )
}

/// Switchover request `id`: done once `status.lastSwitchover` carries its id.
pub fn switchover_outcome(cluster: &MySQLCluster, id: &str) -> Outcome {
    let last = cluster
        .status
        .as_ref()
        .and_then(|s| s.last_switchover.as_ref());
    match last.filter(|l| l.id.as_deref() == Some(id)) {
        Some(l) => match &l.error {
            Some(error) => Outcome::Failed(format!("switchover {id} failed: {error}")),
            None => Outcome::Done(format!(
                "{} is the primary (switchover {id} from {}, at {})",
                l.to,
                l.from.as_deref().unwrap_or("-"),
                l.time
            )),
        },
        None if cluster.spec.paused => waiting_paused(cluster, "the switchover waits for"),
        None => Outcome::Waiting(doing(cluster)),
    }
}

/// Re-seed request `id`: done once `status.lastReseed` carries its id with a final result.
pub fn reseed_outcome(cluster: &MySQLCluster, id: &str) -> Outcome {
    let last = cluster.status.as_ref().and_then(|s| s.last_reseed.as_ref());
    match last.filter(|r| r.id == id) {
        Some(r) if r.result == ReseedResult::Succeeded => Outcome::Done(r.message.clone()),
        Some(r) if r.result == ReseedResult::Failed => Outcome::Failed(format!(
            "re-seed {id} of {} failed: {}",
            r.member, r.message
        )),
        Some(r) => Outcome::Waiting(r.message.clone()),
        None if cluster.spec.paused => Outcome::Waiting(
            "the cluster is paused: the re-seed waits for `kubectl lagless resume`".to_string(),
        ),
        None => Outcome::Waiting(doing(cluster)),
    }
}

/// The cluster's status, and whether it reports the spec's latest generation; waiting while
/// there is none.
fn reported_status(cluster: &MySQLCluster) -> Result<(&MySQLClusterStatus, bool), Outcome> {
    let status = cluster
        .status
        .as_ref()
        .ok_or_else(|| Outcome::Waiting("no status yet".to_string()))?;
    Ok((
        status,
        status.observed_generation >= cluster.metadata.generation,
    ))
}

/// While paused: what is being done, and that the change waits for a resume.
fn waiting_paused(cluster: &MySQLCluster, what: &str) -> Outcome {
    Outcome::Waiting(format!(
        "{}; the cluster is paused: {what} `kubectl lagless resume`",
        doing(cluster)
    ))
}

/// Cordon (`on`) or uncordon of `member`: done once the operator reports it so in the members'
/// status (published to the proxies with weight 0, or its weight again). A primary is not
/// waited for: the cordon applies once it is a replica.
pub fn cordon_outcome(cluster: &MySQLCluster, member: &str, on: bool) -> Outcome {
    let (status, reported) = match reported_status(cluster) {
        Ok(s) => s,
        Err(waiting) => return waiting,
    };
    let found = status.members.iter().find(|m| m.name == member);
    match found {
        Some(m) if m.role == MemberRole::Primary && reported => Outcome::Done(format!(
            "{member} is the primary: {}",
            if on {
                "it takes writes and reads as before, and gets no reads once it is a replica"
            } else {
                "it is not cordoned when it is a replica again"
            }
        )),
        Some(m) if reported && m.cordoned == on => Outcome::Done(if on {
            format!("{member} cordoned: the proxies route no reads to it; it keeps replicating")
        } else {
            format!("{member} uncordoned: reads are routed to it again")
        }),
        _ if cluster.spec.paused => waiting_paused(cluster, "the topology changes once"),
        _ => Outcome::Waiting(doing(cluster)),
    }
}

/// `read-only on|off`: done once the operator reports the generation that asked for it with
/// the `ReadOnly` condition true (the primary refuses writes), or not true.
pub fn read_only_outcome(cluster: &MySQLCluster, on: bool) -> Outcome {
    let (status, reported) = match reported_status(cluster) {
        Ok(s) => s,
        Err(waiting) => return waiting,
    };
    let condition = status
        .conditions
        .iter()
        .find(|c| c.type_ == Condition::READ_ONLY);
    let is_on = condition.is_some_and(|c| c.status == ConditionStatus::True);
    if reported && is_on == on {
        Outcome::Done(if on {
            "cluster read-only: the primary refuses writes (error 1290); reads go on until \
             `kubectl lagless read-only off`"
                .to_string()
        } else {
            "cluster writable again".to_string()
        })
    } else if cluster.spec.paused {
        waiting_paused(cluster, "the change waits for")
    } else {
        Outcome::Waiting(condition.map_or_else(|| doing(cluster), |c| c.message.clone()))
    }
}

/// Pause or resume: done once the operator reports the generation that asked for it with the
/// `Paused` condition to match.
pub fn pause_outcome(cluster: &MySQLCluster, paused: bool) -> Outcome {
    let (status, reported) = match reported_status(cluster) {
        Ok(s) => s,
        Err(waiting) => return waiting,
    };
    let condition = status
        .conditions
        .iter()
        .find(|c| c.type_ == Condition::PAUSED)
        .map(|c| c.status);
    let matches = match condition {
        Some(ConditionStatus::True) => paused,
        Some(ConditionStatus::False) | None => !paused,
        Some(ConditionStatus::Unknown) => false,
    };
    if reported && matches {
        Outcome::Done(if paused {
            "orchestration paused: the members are observed and reported, nothing is changed on \
             them (no failover, switchover, repair or re-seed) until `kubectl lagless resume`"
                .to_string()
        } else {
            "orchestration resumed".to_string()
        })
    } else {
        Outcome::Waiting(format!(
            "the operator has reported generation {} of {}",
            status.observed_generation.unwrap_or(0),
            cluster.metadata.generation.unwrap_or(0)
        ))
    }
}

/// Where a tenant move stands.
pub fn move_outcome(mv: &MySQLTenantMove) -> Outcome {
    let status = mv.status.clone().unwrap_or_default();
    let message = status.message.clone().unwrap_or_default();
    match status.phase.as_deref() {
        Some("done") => Outcome::Done(format!(
            "tenant {} moved from {} to {} (writes held {} ms)",
            mv.spec.tenant,
            status.from.as_deref().unwrap_or("?"),
            mv.spec.to,
            status.frozen_ms.unwrap_or(0)
        )),
        Some("aborted") => Outcome::Failed(format!(
            "the move of tenant {} was not carried out: {message}",
            mv.spec.tenant
        )),
        Some(phase) if message.is_empty() => Outcome::Waiting(phase.to_string()),
        Some(phase) => Outcome::Waiting(format!("{phase}: {message}")),
        None => Outcome::Waiting("waiting for the operator".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(status: &str) -> MySQLCluster {
        serde_saphyr::from_str(&format!(
            "apiVersion: lagless.dev/v1alpha1\nkind: MySQLCluster\nmetadata: {{name: shop, generation: 2}}\nspec: {{replicas: 3}}\n{status}"
        ))
        .unwrap()
    }

    #[test]
    fn members_are_checked_as_the_crd_does() {
        let c = cluster("");
        assert_eq!(check_member(&c, "shop-2", false), Ok(()));
        assert_eq!(check_member(&c, "best", true), Ok(()));
        for bad in [
            "best", "shop-3", "shop-01", "shop-", "shop", "shopx-1", "other-0",
        ] {
            let refused = check_member(&c, bad, false).unwrap_err();
            assert!(refused.contains("shop-0 … shop-2"), "{bad}: {refused}");
        }
    }

    #[test]
    fn patches_name_the_fields_the_operator_reads() {
        assert_eq!(
            switchover_patch("kubectl-5", "best"),
            json!({"spec": {"switchover": {"id": "kubectl-5", "primary": "best"}}})
        );
        assert_eq!(
            reseed_patch("kubectl-5", "shop-1"),
            json!({"spec": {"reseed": {"id": "kubectl-5", "member": "shop-1"}}})
        );
        assert_eq!(paused_patch(false), json!({"spec": {"paused": false}}));
        assert_ne!(request_id(1), request_id(2));
        assert!(request_id(u64::MAX).len() <= 63);
    }

    #[test]
    fn a_switchover_is_done_when_the_status_carries_its_id() {
        let waiting = cluster("status: {phase: Running, primary: shop-0}");
        assert_eq!(
            switchover_outcome(&waiting, "r2"),
            Outcome::Waiting("phase Running, primary shop-0".into())
        );
        let done = cluster("status: {lastSwitchover: {id: r2, from: shop-0, to: shop-1, time: T}}");
        assert_eq!(
            switchover_outcome(&done, "r2"),
            Outcome::Done("shop-1 is the primary (switchover r2 from shop-0, at T)".into())
        );
        assert!(matches!(
            switchover_outcome(&done, "r3"),
            Outcome::Waiting(_)
        ));
        let failed = cluster(
            "status: {lastSwitchover: {id: r2, from: shop-0, to: shop-0, time: T, error: no}}",
        );
        assert_eq!(
            switchover_outcome(&failed, "r2"),
            Outcome::Failed("switchover r2 failed: no".into())
        );
    }

    #[test]
    fn a_reseed_is_done_when_its_result_is_final() {
        let running = cluster(
            "status: {lastReseed: {id: r1, member: shop-2, result: InProgress, message: copying, time: T}}",
        );
        assert_eq!(
            reseed_outcome(&running, "r1"),
            Outcome::Waiting("copying".into())
        );
        let done = cluster(
            "status: {lastReseed: {id: r1, member: shop-2, result: Succeeded, message: ok, time: T}}",
        );
        assert_eq!(reseed_outcome(&done, "r1"), Outcome::Done("ok".into()));
        let failed = cluster(
            "status: {lastReseed: {id: r1, member: shop-2, result: Failed, message: gone, time: T}}",
        );
        assert!(matches!(reseed_outcome(&failed, "r1"), Outcome::Failed(m) if m.contains("gone")));
    }

    #[test]
    fn a_pause_is_done_once_reported_for_the_generation_that_asked() {
        let paused =
            "conditions: [{type: Paused, status: \"True\", reason: Paused, lastTransitionTime: T}]";
        let old = cluster(&format!("status: {{observedGeneration: 1, {paused}}}"));
        assert!(matches!(pause_outcome(&old, true), Outcome::Waiting(_)));
        let now = cluster(&format!("status: {{observedGeneration: 2, {paused}}}"));
        assert!(matches!(pause_outcome(&now, true), Outcome::Done(_)));
        assert!(matches!(pause_outcome(&now, false), Outcome::Waiting(_)));
        let never = cluster("status: {observedGeneration: 2}");
        assert!(matches!(pause_outcome(&never, false), Outcome::Done(_)));
        assert!(matches!(
            pause_outcome(&cluster(""), false),
            Outcome::Waiting(_)
        ));
    }

    #[test]
    fn cordon_patches_replace_the_whole_list_at_the_version_read() {
        let mut c = cluster("");
        c.metadata.resource_version = Some("41".into());
        c.spec.cordoned = vec!["shop-2".into()];
        assert_eq!(
            cordon_patch(&c, "shop-1", true),
            json!({"metadata": {"resourceVersion": "41"}, "spec": {"cordoned": ["shop-1", "shop-2"]}})
        );
        assert_eq!(
            cordon_patch(&c, "shop-2", false),
            json!({"metadata": {"resourceVersion": "41"}, "spec": {"cordoned": []}})
        );
        assert_eq!(
            cordon_patch(&c, "shop-2", true)["spec"]["cordoned"],
            json!(["shop-2"])
        );
    }

    #[test]
    fn a_cordon_is_done_when_the_member_is_reported_so() {
        let member = |cordoned: bool, role: &str| {
            format!(
                "status: {{observedGeneration: 2, members: [{{name: shop-1, role: {role}, healthy: true, cordoned: {cordoned}}}]}}"
            )
        };
        assert!(matches!(
            cordon_outcome(&cluster(&member(false, "Replica")), "shop-1", true),
            Outcome::Waiting(_)
        ));
        assert!(matches!(
            cordon_outcome(&cluster(&member(true, "Replica")), "shop-1", true),
            Outcome::Done(m) if m.starts_with("shop-1 cordoned")
        ));
        assert!(matches!(
            cordon_outcome(&cluster(&member(false, "Replica")), "shop-1", false),
            Outcome::Done(m) if m.starts_with("shop-1 uncordoned")
        ));
        assert!(matches!(
            cordon_outcome(&cluster(&member(false, "Primary")), "shop-1", true),
            Outcome::Done(m) if m.starts_with("shop-1 is the primary")
        ));
        // An older generation reported: not yet.
        let old = member(true, "Replica").replace("observedGeneration: 2", "observedGeneration: 1");
        assert!(matches!(
            cordon_outcome(&cluster(&old), "shop-1", true),
            Outcome::Waiting(_)
        ));
    }

    #[test]
    fn read_only_is_done_when_the_condition_says_so_at_the_generation() {
        assert_eq!(read_only_patch(true), json!({"spec": {"readOnly": true}}));
        let with = |status: &str, generation: u8| {
            cluster(&format!(
                "status: {{observedGeneration: {generation}, conditions: [{{type: ReadOnly, status: \"{status}\", reason: r, lastTransitionTime: \"2026-01-01T00:00:00Z\"}}]}}"
            ))
        };
        assert!(matches!(
            read_only_outcome(&with("True", 2), true),
            Outcome::Done(_)
        ));
        assert!(matches!(
            read_only_outcome(&with("True", 1), true),
            Outcome::Waiting(_)
        ));
        assert!(matches!(
            read_only_outcome(&with("False", 2), true),
            Outcome::Waiting(_)
        ));
        assert!(
            matches!(read_only_outcome(&with("False", 2), false), Outcome::Done(m) if m == "cluster writable again")
        );
        assert!(matches!(
            read_only_outcome(&cluster("status: {observedGeneration: 2}"), false),
            Outcome::Done(_)
        ));
    }

    #[test]
    fn a_tenant_move_is_named_for_its_tenant_and_followed_to_its_end() {
        let mut mv =
            MySQLTenantMove::of_tenant("demo", "big_one", "demo-c1", Some(2), 1_700_000_000);
        assert_eq!(mv.metadata.name.as_deref(), Some("demo-big-one-1700000000"));
        assert_eq!(
            (mv.spec.tenant.as_str(), mv.spec.copy_rate_mib),
            ("big_one", Some(2))
        );
        assert_eq!(
            move_outcome(&mv),
            Outcome::Waiting("waiting for the operator".into())
        );
        let status = |phase: &str, message: Option<&str>| {
            Some(crate::crd::tenant_move::MySQLTenantMoveStatus {
                phase: Some(phase.into()),
                from: Some("demo-c0".into()),
                message: message.map(str::to_string),
                frozen_ms: Some(12),
                ..Default::default()
            })
        };
        mv.status = status("catching up", None);
        assert_eq!(move_outcome(&mv), Outcome::Waiting("catching up".into()));
        mv.status = status("pending", Some("waiting for MySQLTenantMove x"));
        assert_eq!(
            move_outcome(&mv),
            Outcome::Waiting("pending: waiting for MySQLTenantMove x".into())
        );
        mv.status = status("done", None);
        assert_eq!(
            move_outcome(&mv),
            Outcome::Done(
                "tenant big_one moved from demo-c0 to demo-c1 (writes held 12 ms)".into()
            )
        );
        mv.status = status("aborted", Some("no MySQLTenantPool demo"));
        assert_eq!(
            move_outcome(&mv),
            Outcome::Failed(
                "the move of tenant big_one was not carried out: no MySQLTenantPool demo".into()
            )
        );
    }
}
