//! Re-seeding a member on request (`spec.reseed`): the way back for a quarantined member, or
//! for one whose data is suspect. The member's agent marks its data directory
//! ([`crate::agent::RESEED_MARKER`], naming a donor the orchestration trusts), the member's pod
//! is deleted, and the StatefulSet's new pod copies that donor's data in its init step before
//! its server starts. Once the new pod exists (the old server is gone), the member's
//! quarantine is lifted, so the orchestration rejoins it from the copy's position like any new
//! member.
//!
//! [`decide`] is the pure part; [`Reseeder`] carries it out against the API and the agents.
//! What must never happen: deleting the replacement pod (a second copy), marking the primary,
//! or leaving a mark behind for a request that failed (it would empty the member at its next
//! start, whatever it is by then).

use std::future::Future;
use std::time::Duration;

use ::kube::api::{Api, DeleteParams, Preconditions};
use ::kube::{Client, ResourceExt};
use k8s_openapi::api::core::v1::Pod;

use super::status::ClusterEvent;
use crate::agent::client::{Url, cancel_reseed, request_reseed};
use crate::agent::tls::AgentTls;
use crate::crd::{MySQLCluster, ReseedRecord, ReseedResult, ReseedSpec};

/// How long marking may take, and then the copy, before the request is reported failed.
pub const RESEED_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// How long taking a mark back may take within a tick.
const UNMARK_TIMEOUT: Duration = Duration::from_secs(2);

/// A pod created this long after the request started is taken for the replacement (an
/// operator that restarted before it recorded the deletion), allowing for clock skew between
/// the operator and the API server.
const REPLACEMENT_SLACK_MS: u64 = 10_000;

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
    /// The pod `old_uid` is to be replaced by the StatefulSet; `deleted` once the API server
    /// took the deletion. Once deleted, never left for a failure: only a new pod ends it.
    Replacing {
        old_uid: Option<String>,
        deleted: bool,
    },
    /// The new pod copies its data, then its server must replicate.
    Copying {
        old_uid: Option<String>,
        since_ms: u64,
    },
}

/// The request being carried out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InFlight {
    pub id: String,
    pub member: String,
    pub started_ms: u64,
    pub stage: Stage,
    /// The agent may hold a mark for it that is not consumed by a pod replacement yet (to take
    /// back if the request fails).
    pub marked: bool,
    /// The `Reseeding` Event was recorded.
    pub announced: bool,
}

/// What to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Nothing,
    /// Start the spec's request: mark the data and delete the pod.
    Start,
    /// Not now; report why (the request is in progress).
    Wait(String),
    /// Mark and delete (again: an earlier attempt did not get through).
    Mark,
    /// Look at the member's pod: the old one to delete, or the new one.
    WatchPod,
    /// The member replicates again.
    Succeed,
    /// Refused or given up: report the request failed (the one in flight, else the spec's).
    Fail(String),
}

/// The next step, given the spec's request, the id of the last request that ended, the
/// request in flight and the orchestration. A request whose pod is being replaced runs to its
/// end even if the spec withdraws it: only then is the member released.
pub fn decide(
    request: Option<&ReseedSpec>,
    finished: Option<&str>,
    current: Option<&InFlight>,
    target: &dyn ReseedTarget,
    now_ms: u64,
) -> Decision {
    let minutes = RESEED_TIMEOUT.as_secs() / 60;
    let late =
        |since_ms: u64| Duration::from_millis(now_ms.saturating_sub(since_ms)) > RESEED_TIMEOUT;
    if let Some(c) = current {
        let wanted = request.is_some_and(|r| r.id == c.id && r.member == c.member);
        return match &c.stage {
            Stage::Marking if !wanted => {
                Decision::Fail(format!("withdrawn before {}'s pod was replaced", c.member))
            }
            Stage::Marking if late(c.started_ms) => Decision::Fail(format!(
                "{}'s data could not be marked and its pod replaced within {minutes} min",
                c.member
            )),
            // Checked before every attempt: a failover may have promoted it meanwhile.
            Stage::Marking => match target.primary() {
                None => Decision::Wait(no_primary()),
                Some(p) if p == c.member => Decision::Fail(primary_refusal(&c.member)),
                Some(_) => Decision::Mark,
            },
            // The deletion did not get through (yet): the pod and its data are as they were.
            Stage::Replacing { deleted: false, .. } if !wanted => {
                Decision::Fail(format!("withdrawn before {}'s pod was replaced", c.member))
            }
            Stage::Replacing { deleted: false, .. } if late(c.started_ms) => {
                Decision::Fail(format!(
                    "{}'s pod could not be deleted within {minutes} min",
                    c.member
                ))
            }
            Stage::Replacing { .. } => Decision::WatchPod,
            Stage::Copying { .. } if target.serving(&c.member) => Decision::Succeed,
            Stage::Copying { since_ms, .. } if late(*since_ms) => Decision::Fail(format!(
                "{} was not replicating {minutes} min after its new pod started",
                c.member
            )),
            Stage::Copying { .. } => Decision::Nothing,
        };
    }
    match request {
        None => Decision::Nothing,
        Some(r) if finished == Some(r.id.as_str()) => Decision::Nothing,
        Some(r) => match target.primary() {
            // Which member is the primary is not known: it must not be the one emptied.
            None => Decision::Wait(no_primary()),
            Some(p) if p == r.member => Decision::Fail(primary_refusal(&r.member)),
            Some(_) => Decision::Start,
        },
    }
}

fn primary_refusal(member: &str) -> String {
    format!("{member} is the primary: switch over first (spec.switchover)")
}

fn no_primary() -> String {
    "waiting for a published primary: until then no member may be emptied".into()
}

/// Carries out `spec.reseed` requests of one cluster, one tick at a time.
pub struct Reseeder {
    pods: Api<Pod>,
    agent_port: u16,
    finished: Option<String>,
    current: Option<InFlight>,
    record: Option<ReseedRecord>,
    /// Members whose mark a failed request left behind, taken back one per tick.
    unmark: Vec<String>,
    /// TLS to the agents, when the cluster runs TLS.
    tls: Option<AgentTls>,
}

impl Reseeder {
    /// Agents listen on `agent_port`. The last request the status reports is picked up: a
    /// finished one is not run again; one in progress (the operator restarted) resumes where
    /// the status says it was: replacing the recorded pod (a new pod is never replaced again),
    /// else marking, which is idempotent.
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
                started_ms: r.started.as_deref().and_then(unix_ms).unwrap_or(now_ms),
                stage: match &r.replaced_pod_uid {
                    Some(uid) => Stage::Replacing {
                        old_uid: Some(uid.clone()),
                        deleted: false,
                    },
                    None => Stage::Marking,
                },
                // Not known: assume a mark, so a failure takes it back.
                marked: r.replaced_pod_uid.is_none(),
                announced: r.replaced_pod_uid.is_some(),
            });
        Self {
            pods: Api::namespaced(client, &namespace),
            agent_port,
            finished,
            current,
            record,
            unmark: Vec::new(),
            tls: None,
        }
    }

    /// Calls agents over TLS verified against `tls` (the cluster's CA), or plainly.
    pub fn set_tls(&mut self, tls: Option<AgentTls>) {
        self.tls = tls;
    }

    /// Where the last request stands, for the status.
    pub fn record(&self) -> Option<&ReseedRecord> {
        self.record.as_ref()
    }

    /// A request is under way (its pod may be down).
    pub fn in_progress(&self) -> bool {
        self.record
            .as_ref()
            .is_some_and(|r| r.result == ReseedResult::InProgress)
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
        F: Fn() -> Fut,
        Fut: Future<Output = Option<String>>,
    {
        let unmark = self
            .unmark
            .first()
            .map(|m| (m.clone(), self.agent(&*target, m)));
        if let Some((member, url)) = unmark {
            self.take_back_mark(member, url, &token).await;
        }
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
            Decision::Start | Decision::Wait(_) if self.current.is_none() => {
                let Some(r) = request else {
                    return Vec::new();
                };
                // A new request for this member supersedes any mark still to take back.
                self.unmark.retain(|m| *m != r.member);
                self.current = Some(InFlight {
                    id: r.id.clone(),
                    member: r.member.clone(),
                    started_ms: now_ms,
                    stage: Stage::Marking,
                    marked: false,
                    announced: false,
                });
                if let Decision::Wait(why) = decision {
                    return self.progress(why, now, None);
                }
                let agents = self.agents(&*target);
                self.mark(agents, token().await, now).await
            }
            Decision::Start | Decision::Mark => {
                let agents = self.agents(&*target);
                self.mark(agents, token().await, now).await
            }
            Decision::Wait(why) => self.progress(why, now, None),
            Decision::WatchPod => self.watch_pod(target, now_ms, now).await,
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
                // Reported at once; a mark it may have left is taken back from the next tick
                // on, however long the agent takes to answer.
                if let Some(c) = self.current.as_ref().filter(|c| c.marked) {
                    self.unmark.push(c.member.clone());
                }
                self.finish(request, ReseedResult::Failed, why, now)
            }
        }
    }

    /// Takes back the oldest mark a failed request left (`member`'s, at `url`); keeps it for
    /// the next tick when the agent does not answer in time.
    async fn take_back_mark<F, Fut>(&mut self, member: String, url: Option<Url>, token: &F)
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Option<String>>,
    {
        let Some(url) = url else {
            // No longer a member: nothing to take back.
            self.unmark.retain(|m| *m != member);
            return;
        };
        let Some(token) = token().await else {
            return;
        };
        match tokio::time::timeout(
            UNMARK_TIMEOUT,
            cancel_reseed(&url, &token, self.tls.as_ref()),
        )
        .await
        {
            Ok(Ok(())) => {
                tracing::info!(%member, "re-seed mark taken back");
                self.unmark.retain(|m| *m != member);
            }
            Ok(Err(e)) => tracing::warn!(%member, error = %e, "taking back a re-seed mark"),
            Err(_) => tracing::warn!(%member, "taking back a re-seed mark: no answer yet"),
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

    /// Marks the data of the member in flight and has its pod deleted.
    async fn mark(
        &mut self,
        (agent, donor): (Option<Url>, Option<Url>),
        token: Option<String>,
        now: &str,
    ) -> Vec<ClusterEvent> {
        let Some(c) = self.current.clone() else {
            return Vec::new();
        };
        let member = c.member.as_str();
        let pod = match self.pods.get_opt(member).await {
            Ok(Some(pod)) => pod,
            Ok(None) => return self.progress(format!("waiting for pod {member}"), now, None),
            Err(e) => return self.progress(format!("reading pod {member}: {e}"), now, None),
        };
        let created_ms = pod
            .metadata
            .creation_timestamp
            .as_ref()
            .and_then(|t| u64::try_from(t.0.as_millisecond()).ok());
        if created_ms.is_some_and(|at| at > c.started_ms + REPLACEMENT_SLACK_MS) {
            // Already the replacement (the deletion was not recorded before a restart).
            self.set_stage(
                Stage::Replacing {
                    old_uid: None,
                    deleted: true,
                },
                false,
            );
            return self.progress(format!("{member}'s pod was replaced"), now, None);
        }
        let marked = match (token, agent) {
            (None, _) => Err("the agent token is not readable".to_string()),
            (_, None) => Err(format!("{member} has no agent address")),
            (Some(token), Some(url)) => {
                request_reseed(&url, &token, donor.as_ref(), self.tls.as_ref()).await
            }
        };
        if let Err(why) = marked {
            // Retried next tick; the request times out if it never gets through.
            return self.progress(format!("cannot mark {member}'s data yet: {why}"), now, None);
        }
        // Replacing before the deletion is sent: a retry deletes this pod, never its successor.
        let old_uid = pod.metadata.uid.clone();
        self.set_stage(
            Stage::Replacing {
                old_uid,
                deleted: false,
            },
            true,
        );
        let from = donor.map_or_else(|| "a published member".to_string(), |d| d.host);
        self.progress(
            format!("{member}'s data marked, to be copied from {from}"),
            now,
            None,
        );
        self.delete_old_pod(now).await
    }

    /// Deletes the pod being replaced, only that pod (a uid precondition).
    async fn delete_old_pod(&mut self, now: &str) -> Vec<ClusterEvent> {
        let Some(InFlight {
            member,
            stage: Stage::Replacing { old_uid, .. },
            announced,
            ..
        }) = self.current.clone()
        else {
            return Vec::new();
        };
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: old_uid.clone(),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match self.pods.delete(&member, &params).await {
            Ok(_) => {}
            // Gone already, or already another pod: either way this one is being replaced.
            Err(::kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
            Err(e) => {
                return self.progress(format!("deleting pod {member}: {e}"), now, None);
            }
        }
        self.set_stage(
            Stage::Replacing {
                old_uid,
                deleted: true,
            },
            false,
        );
        if let Some(c) = self.current.as_mut() {
            c.announced = true;
        }
        let note = format!("{member}'s pod deleted: the new pod copies the data before starting");
        let event = (!announced).then(|| ClusterEvent {
            warning: false,
            reason: "Reseeding",
            action: "Reseed",
            note: note.clone(),
        });
        self.progress(note, now, event)
    }

    async fn watch_pod(
        &mut self,
        target: &mut dyn ReseedTarget,
        now_ms: u64,
        now: &str,
    ) -> Vec<ClusterEvent> {
        let Some(InFlight {
            member,
            started_ms,
            stage: Stage::Replacing { old_uid, deleted },
            ..
        }) = self.current.clone()
        else {
            return Vec::new();
        };
        let pod = match self.pods.get_opt(&member).await {
            Ok(pod) => pod,
            Err(e) => {
                tracing::warn!(%member, error = %e, "reading the pod being re-seeded");
                return Vec::new();
            }
        };
        match pod {
            Some(p) if p.metadata.uid.is_some() && p.metadata.uid != old_uid => {}
            // The old pod, not deleted yet: the deletion did not get through.
            Some(p) if !deleted && p.metadata.deletion_timestamp.is_none() => {
                return self.delete_old_pod(now).await;
            }
            _ => {
                let waited = now_ms.saturating_sub(started_ms) / 60_000;
                let message = if waited >= RESEED_TIMEOUT.as_secs() / 60 {
                    format!("{member}'s pod is still not replaced, {waited} min after the request")
                } else {
                    format!("waiting for {member}'s new pod")
                };
                return self.progress(message, now, None);
            }
        }
        // The old server is gone with its pod: what the member serves from now on is the copy.
        target.release(&member);
        self.set_stage(
            Stage::Copying {
                old_uid,
                since_ms: now_ms,
            },
            false,
        );
        self.progress(
            format!("{member}'s new pod is copying a donor's data"),
            now,
            None,
        )
    }

    fn set_stage(&mut self, stage: Stage, marked: bool) {
        if let Some(c) = self.current.as_mut() {
            c.stage = stage;
            c.marked = marked;
        }
    }

    fn progress(
        &mut self,
        message: String,
        now: &str,
        event: Option<ClusterEvent>,
    ) -> Vec<ClusterEvent> {
        if let Some(c) = self.current.clone() {
            let replaced_pod_uid = match &c.stage {
                Stage::Replacing { old_uid, .. } | Stage::Copying { old_uid, .. } => {
                    old_uid.clone()
                }
                Stage::Marking => None,
            };
            let started = timestamp(c.started_ms);
            self.set_record(&c.id, &c.member, ReseedResult::InProgress, message, now);
            if let Some(r) = self.record.as_mut() {
                r.replaced_pod_uid = replaced_pod_uid;
                r.started = started;
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
        let (id, member, started) = match (self.current.take(), request) {
            (Some(c), _) => (c.id, c.member, timestamp(c.started_ms)),
            (None, Some(r)) => (r.id.clone(), r.member.clone(), None),
            (None, None) => return Vec::new(),
        };
        self.finished = Some(id.clone());
        self.set_record(&id, &member, result, message.clone(), now);
        if let Some(r) = self.record.as_mut() {
            r.started = started;
            r.replaced_pod_uid = None;
        }
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
            started: None,
            replaced_pod_uid: None,
        });
    }
}

/// RFC 3339 to the second, from Unix milliseconds.
fn timestamp(unix_ms: u64) -> Option<String> {
    let ms = i64::try_from(unix_ms).ok()?;
    k8s_openapi::jiff::Timestamp::from_millisecond(ms)
        .ok()
        .map(|t| format!("{t:.0}"))
}

/// Unix milliseconds of an RFC 3339 time.
fn unix_ms(text: &str) -> Option<u64> {
    let t: k8s_openapi::jiff::Timestamp = text.parse().ok()?;
    u64::try_from(t.as_millisecond()).ok()
}

#[cfg(test)]
mod tests;
