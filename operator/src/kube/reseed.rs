//! Re-seeding a member on request (`spec.reseed`): the way back for a quarantined member, or
//! for one whose data is suspect. The member's agent marks its data directory
//! ([`crate::agent::RESEED_MARKER`]), the member's pod is deleted, and the StatefulSet's new pod
//! copies a donor's data in its init step before its server starts. Once the new pod exists
//! (the old server is gone), the member's quarantine is lifted, so the orchestration rejoins
//! it from the copy's position like any new member.
//!
//! [`decide`] is the pure part; [`Reseeder`] carries it out against the API and the agent.

use std::time::Duration;

use ::kube::api::{Api, DeleteParams};
use ::kube::{Client, ResourceExt};
use k8s_openapi::api::core::v1::Pod;

use super::status::ClusterEvent;
use crate::agent::client::{Url, request_reseed};
use crate::crd::{MySQLCluster, ReseedRecord, ReseedResult, ReseedSpec};

/// How long a request may take, the copy included, before it is reported failed.
pub const RESEED_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// What the orchestration knows that a re-seed needs.
pub trait ReseedTarget: Send {
    /// The member that takes writes, if one is published.
    fn primary(&self) -> Option<String>;
    /// Whether `member` is published as a replica and replicates without error.
    fn serving(&self, member: &str) -> bool;
    /// Forgets the member's quarantine: its data has just been replaced.
    fn release(&mut self, member: &str);
}

/// A member's agent address, by member name.
pub type AgentAddresses = Box<dyn Fn(&str) -> Option<Url> + Send + Sync>;

/// How far a request has come.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stage {
    /// The data is to be marked and the pod deleted.
    Marking,
    /// The pod was deleted; waiting for the StatefulSet's new one (a pod of another uid).
    Replacing { old_uid: Option<String> },
    /// The new pod copies its data, then its server must replicate.
    Copying,
}

/// The request being carried out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InFlight {
    pub id: String,
    pub member: String,
    pub started_ms: u64,
    pub stage: Stage,
}

/// What to do next for a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Nothing,
    /// Refused or given up: report it failed.
    Fail(String),
    /// Mark the data and delete the pod.
    Mark,
    /// Look for the member's new pod.
    WatchPod {
        old_uid: Option<String>,
    },
    /// The member replicates again.
    Succeed,
}

/// The next step for `request`, given the request in flight (if any) and the orchestration.
/// `finished` is the id of the last request that ended.
pub fn decide(
    request: Option<&ReseedSpec>,
    finished: Option<&str>,
    current: Option<&InFlight>,
    target: &dyn ReseedTarget,
    now_ms: u64,
) -> Decision {
    let Some(request) = request else {
        return Decision::Nothing;
    };
    if finished == Some(request.id.as_str()) {
        return Decision::Nothing;
    }
    let Some(current) = current.filter(|c| c.id == request.id && c.member == request.member) else {
        if target.primary().as_deref() == Some(request.member.as_str()) {
            return Decision::Fail(format!(
                "{} is the primary: switch over first (spec.switchover)",
                request.member
            ));
        }
        return Decision::Mark;
    };
    let elapsed = Duration::from_millis(now_ms.saturating_sub(current.started_ms));
    if elapsed > RESEED_TIMEOUT {
        return Decision::Fail(format!(
            "{} was not replicating {} min after the request",
            current.member,
            RESEED_TIMEOUT.as_secs() / 60
        ));
    }
    match &current.stage {
        Stage::Marking => Decision::Mark,
        Stage::Replacing { old_uid } => Decision::WatchPod {
            old_uid: old_uid.clone(),
        },
        Stage::Copying if target.serving(&current.member) => Decision::Succeed,
        Stage::Copying => Decision::Nothing,
    }
}

/// Carries out `spec.reseed` requests of one cluster, one tick at a time.
pub struct Reseeder {
    pods: Api<Pod>,
    /// The agent of a member, by member name.
    agent: AgentAddresses,
    finished: Option<String>,
    current: Option<InFlight>,
    record: Option<ReseedRecord>,
}

impl Reseeder {
    /// `agent` gives a member's agent address. A request the status reports finished is not
    /// run again; one it reports in progress (the operator restarted) starts over, which is
    /// safe: marking is idempotent and an interrupted copy is redone.
    pub fn new(client: Client, cluster: &MySQLCluster, agent: AgentAddresses) -> Self {
        let namespace = cluster.namespace().unwrap_or_default();
        let record = cluster.status.as_ref().and_then(|s| s.last_reseed.clone());
        let finished = record
            .as_ref()
            .filter(|r| r.result != ReseedResult::InProgress)
            .map(|r| r.id.clone());
        Self {
            pods: Api::namespaced(client, &namespace),
            agent,
            finished,
            current: None,
            record,
        }
    }

    /// Whether the cluster's request still needs steps.
    pub fn has_work(&self, cluster: &MySQLCluster) -> bool {
        cluster
            .spec
            .reseed
            .as_ref()
            .is_some_and(|r| self.finished.as_deref() != Some(r.id.as_str()))
    }

    /// Where the last request stands, for the status.
    pub fn record(&self) -> Option<&ReseedRecord> {
        self.record.as_ref()
    }

    /// One step of the cluster's request, with the agents' `token`. Returns the Events to
    /// record.
    pub async fn tick(
        &mut self,
        cluster: &MySQLCluster,
        token: Option<&str>,
        target: &mut dyn ReseedTarget,
        now_ms: u64,
        now: &str,
    ) -> Vec<ClusterEvent> {
        let request = cluster.spec.reseed.as_ref();
        let decision = decide(
            request,
            self.finished.as_deref(),
            self.current.as_ref(),
            &*target,
            now_ms,
        );
        let Some(request) = request else {
            return Vec::new();
        };
        match decision {
            Decision::Nothing => Vec::new(),
            Decision::Fail(why) => self.finish(request, ReseedResult::Failed, why, now),
            Decision::Mark => self.mark(request, token, now_ms, now).await,
            Decision::WatchPod { old_uid } => self.watch_pod(request, old_uid, target, now).await,
            Decision::Succeed => {
                let took =
                    now_ms.saturating_sub(self.current.as_ref().map_or(now_ms, |c| c.started_ms));
                let message = format!(
                    "{} re-seeded and replicating, {:.1} s after the request",
                    request.member,
                    took as f64 / 1000.0
                );
                self.finish(request, ReseedResult::Succeeded, message, now)
            }
        }
    }

    async fn mark(
        &mut self,
        request: &ReseedSpec,
        token: Option<&str>,
        now_ms: u64,
        now: &str,
    ) -> Vec<ClusterEvent> {
        let same = |c: &InFlight| c.id == request.id && c.member == request.member;
        if !self.current.as_ref().is_some_and(same) {
            self.current = Some(InFlight {
                id: request.id.clone(),
                member: request.member.clone(),
                started_ms: now_ms,
                stage: Stage::Marking,
            });
        }
        let member = request.member.clone();
        let marked = match (token, (self.agent)(&member)) {
            (None, _) => Err("the agent token is not readable yet".to_string()),
            (_, None) => Err(format!("{member} has no agent address")),
            (Some(token), Some(url)) => request_reseed(&url, token).await,
        };
        if let Err(why) = marked {
            // Retried next tick; the request times out if it never gets through.
            return self.progress(
                request,
                format!("cannot mark {member}'s data yet: {why}"),
                now,
                None,
            );
        }
        let old_uid = match self.pods.get_opt(&member).await {
            Ok(pod) => pod.and_then(|p| p.metadata.uid),
            Err(e) => {
                return self.progress(request, format!("reading pod {member}: {e}"), now, None);
            }
        };
        if let Err(e) = self.pods.delete(&member, &DeleteParams::default()).await {
            let gone = matches!(&e, ::kube::Error::Api(s) if s.code == 404);
            if !gone {
                return self.progress(request, format!("deleting pod {member}: {e}"), now, None);
            }
        }
        if let Some(c) = self.current.as_mut() {
            c.stage = Stage::Replacing { old_uid };
        }
        let note = format!(
            "{member}'s data marked and its pod deleted: the new pod copies a donor's data"
        );
        let event = ClusterEvent {
            warning: false,
            reason: "Reseeding",
            action: "Reseed",
            note: note.clone(),
        };
        self.progress(request, note, now, Some(event))
    }

    async fn watch_pod(
        &mut self,
        request: &ReseedSpec,
        old_uid: Option<String>,
        target: &mut dyn ReseedTarget,
        now: &str,
    ) -> Vec<ClusterEvent> {
        let member = &request.member;
        let replaced = match self.pods.get_opt(member).await {
            Ok(Some(pod)) => pod.metadata.uid.is_some() && pod.metadata.uid != old_uid,
            Ok(None) => false,
            Err(e) => {
                tracing::warn!(%member, error = %e, "reading the pod being re-seeded");
                false
            }
        };
        if !replaced {
            return Vec::new();
        }
        // The old server is gone with its pod: what the member serves from now on is the copy.
        target.release(member);
        if let Some(c) = self.current.as_mut() {
            c.stage = Stage::Copying;
        }
        self.progress(
            request,
            format!("{member}'s new pod is copying a donor's data"),
            now,
            None,
        )
    }

    fn progress(
        &mut self,
        request: &ReseedSpec,
        message: String,
        now: &str,
        event: Option<ClusterEvent>,
    ) -> Vec<ClusterEvent> {
        self.set_record(request, ReseedResult::InProgress, message, now);
        event.into_iter().collect()
    }

    fn finish(
        &mut self,
        request: &ReseedSpec,
        result: ReseedResult,
        message: String,
        now: &str,
    ) -> Vec<ClusterEvent> {
        self.current = None;
        self.finished = Some(request.id.clone());
        self.set_record(request, result, message.clone(), now);
        vec![ClusterEvent {
            warning: result != ReseedResult::Succeeded,
            reason: if result == ReseedResult::Succeeded {
                "Reseeded"
            } else {
                "ReseedFailed"
            },
            action: "Reseed",
            note: message,
        }]
    }

    fn set_record(
        &mut self,
        request: &ReseedSpec,
        result: ReseedResult,
        message: String,
        now: &str,
    ) {
        let unchanged = self.record.as_ref().is_some_and(|r| {
            r.id == request.id
                && r.member == request.member
                && r.result == result
                && r.message == message
        });
        if unchanged {
            return;
        }
        tracing::info!(id = %request.id, member = %request.member, ?result, %message, "re-seed");
        self.record = Some(ReseedRecord {
            id: request.id.clone(),
            member: request.member.clone(),
            result,
            message,
            time: now.to_string(),
        });
    }
}

#[cfg(test)]
mod tests;
