//! Re-seeding a member on request (`spec.reseed`): the way back for a quarantined member, or
//! for one whose data is suspect. The member's agent marks its data directory
//! ([`crate::agent::RESEED_MARKER`], naming a donor the orchestration trusts), the member's pod
//! is deleted, and the StatefulSet's new pod copies that donor's data in its init step before
//! its server starts. Once the new pod exists (the old server is gone), the member's
//! quarantine is lifted, so the orchestration rejoins it from the copy's position like any new
//! member.
//!
//! [`decide`] is the pure part; [`Reseeder`] carries it out against the API and the agents.

use std::future::Future;
use std::time::Duration;

use ::kube::api::{Api, DeleteParams};
use ::kube::{Client, ResourceExt};
use k8s_openapi::api::core::v1::Pod;

use super::status::ClusterEvent;
use crate::agent::client::{Url, cancel_reseed, request_reseed};
use crate::crd::{MySQLCluster, ReseedRecord, ReseedResult, ReseedSpec};

/// How long a request may take, the copy included, before it is reported failed.
pub const RESEED_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// What the orchestration knows that a re-seed needs.
pub trait ReseedTarget: Send {
    /// The member that takes writes, if one is published.
    fn primary(&self) -> Option<String>;
    /// Whether `member` is published as a replica and replicates without error.
    fn serving(&self, member: &str) -> bool;
    /// The host a member's server and agent listen on.
    fn host(&self, member: &str) -> Option<String>;
    /// The member to copy `member`'s data from: never a quarantined one.
    fn donor_for(&self, member: &str) -> Option<String>;
    /// Forgets the member's quarantine: its data has just been replaced.
    fn release(&mut self, member: &str);
}

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
    /// The agent may hold a mark for it (to take back if the request fails before the pod is
    /// replaced).
    pub marked: bool,
}

/// What to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Nothing,
    /// Start the spec's request: mark the data and delete the pod.
    Start,
    /// Mark and delete again (an earlier attempt did not get through).
    Mark,
    /// Look for the member's new pod.
    WatchPod,
    /// The member replicates again.
    Succeed,
    /// Refused or given up: report the request failed (the one in flight, else the spec's).
    Fail(String),
}

/// The next step, given the spec's request, the id of the last request that ended, the
/// request in flight and the orchestration. A request whose pod is being or has been replaced
/// runs to its end even if the spec withdraws it: only then is the member released.
pub fn decide(
    request: Option<&ReseedSpec>,
    finished: Option<&str>,
    current: Option<&InFlight>,
    target: &dyn ReseedTarget,
    now_ms: u64,
) -> Decision {
    if let Some(c) = current {
        let wanted = request.is_some_and(|r| r.id == c.id && r.member == c.member);
        let elapsed = Duration::from_millis(now_ms.saturating_sub(c.started_ms));
        let timed_out = elapsed > RESEED_TIMEOUT;
        let minutes = RESEED_TIMEOUT.as_secs() / 60;
        return match c.stage {
            Stage::Marking if !wanted => {
                Decision::Fail(format!("withdrawn before {}'s pod was replaced", c.member))
            }
            // Checked on every attempt: a failover may have promoted it meanwhile.
            Stage::Marking if target.primary().as_deref() == Some(c.member.as_str()) => {
                Decision::Fail(primary_refusal(&c.member))
            }
            Stage::Marking | Stage::Replacing { .. } if timed_out => Decision::Fail(format!(
                "{}'s pod was not replaced within {minutes} min",
                c.member
            )),
            Stage::Marking => Decision::Mark,
            Stage::Replacing { .. } => Decision::WatchPod,
            Stage::Copying if target.serving(&c.member) => Decision::Succeed,
            Stage::Copying if timed_out => Decision::Fail(format!(
                "{} was not replicating {minutes} min after the request",
                c.member
            )),
            Stage::Copying => Decision::Nothing,
        };
    }
    match request {
        None => Decision::Nothing,
        Some(r) if finished == Some(r.id.as_str()) => Decision::Nothing,
        Some(r) if target.primary().as_deref() == Some(r.member.as_str()) => {
            Decision::Fail(primary_refusal(&r.member))
        }
        Some(_) => Decision::Start,
    }
}

fn primary_refusal(member: &str) -> String {
    format!("{member} is the primary: switch over first (spec.switchover)")
}

/// Carries out `spec.reseed` requests of one cluster, one tick at a time.
pub struct Reseeder {
    pods: Api<Pod>,
    agent_port: u16,
    finished: Option<String>,
    current: Option<InFlight>,
    record: Option<ReseedRecord>,
}

impl Reseeder {
    /// Agents listen on `agent_port`. The last request the status reports is picked up: a
    /// finished one is not run again; one in progress (the operator restarted) resumes where
    /// the status says it was: waiting for the new pod if the old one was deleted (a new pod
    /// that already copied is not replaced again), else marking again, which is idempotent.
    pub fn new(client: Client, cluster: &MySQLCluster, agent_port: u16, now_ms: u64) -> Self {
        let namespace = cluster.namespace().unwrap_or_default();
        let record = cluster.status.as_ref().and_then(|s| s.last_reseed.clone());
        let finished = record
            .as_ref()
            .filter(|r| r.result != ReseedResult::InProgress)
            .map(|r| r.id.clone());
        let current = record
            .as_ref()
            .filter(|r| r.result == ReseedResult::InProgress)
            .map(|r| InFlight {
                id: r.id.clone(),
                member: r.member.clone(),
                started_ms: now_ms,
                stage: match &r.replaced_pod_uid {
                    Some(uid) => Stage::Replacing {
                        old_uid: Some(uid.clone()),
                    },
                    None => Stage::Marking,
                },
                marked: r.replaced_pod_uid.is_none(),
            });
        Self {
            pods: Api::namespaced(client, &namespace),
            agent_port,
            finished,
            current,
            record,
        }
    }

    /// Where the last request stands, for the status.
    pub fn record(&self) -> Option<&ReseedRecord> {
        self.record.as_ref()
    }

    /// One step for the cluster's request. `token` gives the agents' token; it is asked for
    /// only when an agent is called. Returns the Events to record.
    pub async fn tick<F, Fut>(
        &mut self,
        cluster: &MySQLCluster,
        target: &mut dyn ReseedTarget,
        token: F,
        now_ms: u64,
        now: &str,
    ) -> Vec<ClusterEvent>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Option<String>>,
    {
        let request = cluster.spec.reseed.as_ref();
        let decision = decide(
            request,
            self.finished.as_deref(),
            self.current.as_ref(),
            &*target,
            now_ms,
        );
        match decision {
            Decision::Nothing => Vec::new(),
            Decision::Start => {
                let Some(r) = request else {
                    return Vec::new();
                };
                self.current = Some(InFlight {
                    id: r.id.clone(),
                    member: r.member.clone(),
                    started_ms: now_ms,
                    stage: Stage::Marking,
                    marked: false,
                });
                let agents = self.agents(&*target);
                self.mark(agents, token().await, now).await
            }
            Decision::Mark => {
                let agents = self.agents(&*target);
                self.mark(agents, token().await, now).await
            }
            Decision::WatchPod => self.watch_pod(target, now).await,
            Decision::Succeed => {
                let took = self
                    .current
                    .as_ref()
                    .map_or(0, |c| now_ms.saturating_sub(c.started_ms));
                let member = self.current.as_ref().map(|c| c.member.clone());
                let message = format!(
                    "{} re-seeded and replicating, {:.1} s after the request",
                    member.unwrap_or_default(),
                    took as f64 / 1000.0
                );
                self.finish(request, ReseedResult::Succeeded, message, now)
            }
            Decision::Fail(why) => {
                if let Some(c) = self.current.as_ref().filter(|c| c.marked) {
                    // Best effort: a mark left behind would re-copy the member at its next
                    // restart, whatever it is by then.
                    let member = c.member.clone();
                    let url = self.agent(&*target, &member);
                    let unmarked = match (url, token().await) {
                        (Some(url), Some(token)) => cancel_reseed(&url, &token).await,
                        _ => Err("no agent address or token".into()),
                    };
                    if let Err(e) = unmarked {
                        tracing::warn!(%member, error = %e, "taking back a re-seed mark");
                    }
                }
                self.finish(request, ReseedResult::Failed, why, now)
            }
        }
    }

    fn agent(&self, target: &dyn ReseedTarget, member: &str) -> Option<Url> {
        target.host(member).map(|host| Url {
            host,
            port: self.agent_port,
        })
    }

    /// The agents of the member in flight and of its donor.
    fn agents(&self, target: &dyn ReseedTarget) -> (Option<Url>, Option<Url>) {
        let Some(member) = self.current.as_ref().map(|c| c.member.as_str()) else {
            return (None, None);
        };
        let donor = target
            .donor_for(member)
            .and_then(|d| self.agent(target, &d));
        (self.agent(target, member), donor)
    }

    async fn mark(
        &mut self,
        (agent, donor): (Option<Url>, Option<Url>),
        token: Option<String>,
        now: &str,
    ) -> Vec<ClusterEvent> {
        let Some(member) = self.current.as_ref().map(|c| c.member.clone()) else {
            return Vec::new();
        };
        let marked = match (token, agent) {
            (None, _) => Err("the agent token is not readable".to_string()),
            (_, None) => Err(format!("{member} has no agent address")),
            (Some(token), Some(url)) => request_reseed(&url, &token, donor.as_ref()).await,
        };
        if let Err(why) = marked {
            // Retried next tick; the request times out if it never gets through.
            return self.progress(format!("cannot mark {member}'s data yet: {why}"), now, None);
        }
        if let Some(c) = self.current.as_mut() {
            c.marked = true;
        }
        let old_uid = match self.pods.get_opt(&member).await {
            Ok(pod) => pod.and_then(|p| p.metadata.uid),
            Err(e) => return self.progress(format!("reading pod {member}: {e}"), now, None),
        };
        if let Err(e) = self.pods.delete(&member, &DeleteParams::default()).await {
            let gone = matches!(&e, ::kube::Error::Api(s) if s.code == 404);
            if !gone {
                return self.progress(format!("deleting pod {member}: {e}"), now, None);
            }
        }
        if let Some(c) = self.current.as_mut() {
            c.stage = Stage::Replacing { old_uid };
        }
        let from = donor.map_or_else(|| "a donor".to_string(), |d| d.host);
        let note = format!(
            "{member}'s data marked and its pod deleted: the new pod copies the data from {from}"
        );
        let event = ClusterEvent {
            warning: false,
            reason: "Reseeding",
            action: "Reseed",
            note: note.clone(),
        };
        self.progress(note, now, Some(event))
    }

    async fn watch_pod(&mut self, target: &mut dyn ReseedTarget, now: &str) -> Vec<ClusterEvent> {
        let Some(InFlight {
            member,
            stage: Stage::Replacing { old_uid },
            ..
        }) = self.current.clone()
        else {
            return Vec::new();
        };
        let replaced = match self.pods.get_opt(&member).await {
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
        target.release(&member);
        if let Some(c) = self.current.as_mut() {
            c.stage = Stage::Copying;
            c.marked = false;
        }
        self.progress(
            format!("{member}'s new pod is copying a donor's data"),
            now,
            None,
        )
    }

    fn progress(
        &mut self,
        message: String,
        now: &str,
        event: Option<ClusterEvent>,
    ) -> Vec<ClusterEvent> {
        if let Some(c) = self.current.clone() {
            let replaced_pod_uid = match &c.stage {
                Stage::Replacing { old_uid } => old_uid.clone(),
                Stage::Marking | Stage::Copying => None,
            };
            self.set_record(&c.id, &c.member, ReseedResult::InProgress, message, now);
            if let Some(r) = self.record.as_mut() {
                r.replaced_pod_uid = replaced_pod_uid;
            }
        }
        event.into_iter().collect()
    }

    /// Ends the request in flight, or else the spec's `request`.
    fn finish(
        &mut self,
        request: Option<&ReseedSpec>,
        result: ReseedResult,
        message: String,
        now: &str,
    ) -> Vec<ClusterEvent> {
        let (id, member) = match (self.current.take(), request) {
            (Some(c), _) => (c.id, c.member),
            (None, Some(r)) => (r.id.clone(), r.member.clone()),
            (None, None) => return Vec::new(),
        };
        self.finished = Some(id.clone());
        self.set_record(&id, &member, result, message.clone(), now);
        let succeeded = result == ReseedResult::Succeeded;
        vec![ClusterEvent {
            warning: !succeeded,
            reason: if succeeded {
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
        id: &str,
        member: &str,
        result: ReseedResult,
        message: String,
        now: &str,
    ) {
        let unchanged = self.record.as_ref().is_some_and(|r| {
            r.id == id && r.member == member && r.result == result && r.message == message
        });
        if unchanged {
            return;
        }
        tracing::info!(%id, %member, ?result, %message, "re-seed");
        self.record = Some(ReseedRecord {
            id: id.to_string(),
            member: member.to_string(),
            result,
            message,
            time: now.to_string(),
            replaced_pod_uid: None,
        });
    }
}

#[cfg(test)]
mod tests;
