//! Rolling a changed member template (image, `serverConfig`, TLS, resources) in Kubernetes.
//! The StatefulSet's update strategy is `OnDelete`: a template change restarts nothing by
//! itself. The orchestration task carries out what [`crate::orchestrate::roll::next`]
//! decides, as the local runtime does with processes: one member at a time, replicas from the
//! highest ordinal down, each out of read routing (weight 0) before its pod is deleted (the
//! StatefulSet makes it again from the new template) and back once it has caught up; the
//! primary last, after it handed its role to a rolled replica (a switchover with no request
//! id, [`ClusterSpec::hand_over`]). A member runs the current template when its pod's
//! `controller-revision-hash` is the StatefulSet's `updateRevision`. Nothing is kept: an
//! operator restarted mid-roll decides again from the pods' revisions.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ::kube::api::{Api, DeleteParams, ListParams, Preconditions};
use ::kube::{Client, ResourceExt};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::Pod;

use super::builders::{self, Component};
use super::status::{ClusterEvent, RollReport};
use crate::crd::MySQLCluster;
use crate::orchestrate::roll::{self, Phase, Role, RollMember, RollView, Rolling, Step};
use crate::orchestrate::run::{Orchestrator, TimedEvent};
use crate::orchestrate::view::ClusterSpec;
use crate::orchestrate::{ClusterState, Event};

/// The label the StatefulSet controller gives each pod: the revision it was made from.
const REVISION_LABEL: &str = "controller-revision-hash";
/// How long a pod deleted for the roll may show no deletion before it is deleted again.
const DELETE_AGAIN_AFTER_MS: u64 = 5_000;
/// How long after a failed hand-over the roll asks for another.
const HAND_OVER_RETRY: Duration = Duration::from_secs(10);

/// A member's pod as the roll sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberPod {
    pub uid: String,
    /// Made from the StatefulSet's update revision.
    pub current: bool,
    /// Being deleted.
    pub terminating: bool,
}

/// The member pods of the StatefulSet, by name, and whether each was made from its update
/// revision. `None` while the StatefulSet has not reported an update revision.
pub fn member_pods(statefulset: &StatefulSet, pods: &[Pod]) -> Option<BTreeMap<String, MemberPod>> {
    let update = statefulset.status.as_ref()?.update_revision.as_deref()?;
    Some(
        pods.iter()
            .map(|pod| {
                let revision = pod.labels().get(REVISION_LABEL).map(String::as_str);
                (
                    pod.name_any(),
                    MemberPod {
                        uid: pod.uid().unwrap_or_default(),
                        current: revision == Some(update),
                        terminating: pod.metadata.deletion_timestamp.is_some(),
                    },
                )
            })
            .collect(),
    )
}

/// A cluster's roll, carried out by its orchestration task.
pub struct Roller {
    pods: Api<Pod>,
    statefulsets: Api<StatefulSet>,
    name: String,
    rolling: Option<Rolling>,
    /// The pod deleted to restart the member being rolled, until its successor runs.
    replaced_uid: Option<String>,
    member_began: Option<Instant>,
    /// The primary whose position the member being rolled catches up to.
    catch_up_from: Option<String>,
    hand_over: Option<String>,
    hand_over_failed: Option<Instant>,
    /// The member kept out of read routing by the roll (added to the spec's cordoned ones).
    cordoned: Option<String>,
    started: Option<Instant>,
    report: Option<RollReport>,
}

impl Roller {
    pub fn new(client: Client, cluster: &MySQLCluster) -> Self {
        let namespace = cluster.namespace().unwrap_or_default();
        Self {
            pods: Api::namespaced(client.clone(), &namespace),
            statefulsets: Api::namespaced(client, &namespace),
            name: cluster.name_any(),
            rolling: None,
            replaced_uid: None,
            member_began: None,
            catch_up_from: None,
            hand_over: None,
            hand_over_failed: None,
            cordoned: None,
            started: None,
            report: None,
        }
    }

    /// A member is being rolled (drained, its pod replaced, or catching up).
    pub fn in_flight(&self) -> bool {
        self.rolling.is_some()
    }

    /// Where the roll stands; `None` when every member runs the current template.
    pub fn report(&self) -> Option<&RollReport> {
        self.report.as_ref()
    }

    /// What the roll asks of the orchestration: the member it rolls out of read routing, and
    /// the primary to hand its role over. `user_cordoned` are the spec's own.
    pub fn adjust(&mut self, spec: &mut ClusterSpec, user_cordoned: &[String]) {
        let wanted = self.rolling.as_ref().map(|r| r.member.clone());
        if let Some(old) = self.cordoned.take()
            && Some(&old) != wanted.as_ref()
            && !user_cordoned.contains(&old)
        {
            spec.cordoned.remove(&old);
        }
        if let Some(member) = wanted {
            spec.cordoned.insert(member.clone());
            self.cordoned = Some(member);
        }
        spec.hand_over = self.hand_over.clone();
    }

    /// One step of the roll: reads the StatefulSet and its pods, decides, and deletes at most
    /// one pod. Returns the Events to record.
    pub async fn tick(
        &mut self,
        cluster: &MySQLCluster,
        orchestrator: &Orchestrator,
        new_events: &[TimedEvent],
    ) -> Vec<ClusterEvent> {
        let mut events = Vec::new();
        let Some(pods) = self.read_pods().await else {
            return events;
        };
        self.watch_hand_over(orchestrator, new_events, &mut events);
        self.follow_restart(orchestrator, &pods);
        self.anchor_catch_up(orchestrator);
        let rolling_member = self.rolling.as_ref().map(|r| r.member.clone());
        let members = roll_members(
            orchestrator,
            &pods,
            self.replaced_uid.as_deref(),
            rolling_member.as_deref(),
        );
        let pending = members.iter().filter(|m| !m.current).count();
        if pending == 0 && self.rolling.is_none() {
            // A template reverted before the primary's turn needs no hand-over any more.
            self.hand_over = None;
            if let Some(began) = self.started.take() {
                events.push(event(
                    "RollDone",
                    format!(
                        "every member runs the current template ({} rolled in {:.1} s)",
                        members.len(),
                        began.elapsed().as_secs_f64()
                    ),
                ));
            }
            self.report = None;
            return events;
        }
        if self.started.is_none() {
            self.started = Some(Instant::now());
        }
        let primary = primary(orchestrator);
        let user_switchover = switchover_pending(cluster, orchestrator, primary.as_deref());
        let step = roll::next(&RollView {
            members: &members,
            paused: cluster.spec.paused,
            healthy: orchestrator.last_plan_state() == Some(ClusterState::Healthy)
                && all_serving(&members, rolling_member.as_deref()),
            switching: user_switchover || self.hand_over.is_some(),
            rolling: self.rolling.as_ref(),
            // The proxies are not asked: a drained member is kept out of reads for the whole
            // drain time before its pod is deleted.
            proxies_drained: None,
            now_ms: crate::clock::unix_ms(),
        });
        let paused = cluster.spec.paused;
        let waiting = self
            .take(step, &pods, primary.as_deref(), paused, &mut events)
            .await;
        self.report = Some(RollReport {
            current: members.len() - pending,
            members: members.len(),
            member: self.rolling.as_ref().map(|r| r.member.clone()),
            phase: self.rolling.as_ref().map(|r| r.phase.as_str()),
            waiting,
        });
        events
    }

    async fn read_pods(&self) -> Option<BTreeMap<String, MemberPod>> {
        let by_name = ListParams::default().fields(&format!("metadata.name={}", self.name));
        let statefulset = match self.statefulsets.list(&by_name).await {
            Ok(list) => list.items.into_iter().next()?,
            Err(e) => {
                tracing::warn!(cluster = %self.name, error = %e, "roll: reading the StatefulSet");
                return None;
            }
        };
        let selector = builders::selector_labels(&self.name, Component::Mysql)
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",");
        match self
            .pods
            .list(&ListParams::default().labels(&selector))
            .await
        {
            Ok(list) => member_pods(&statefulset, &list.items),
            Err(e) => {
                tracing::warn!(cluster = %self.name, error = %e, "roll: listing the member pods");
                None
            }
        }
    }

    /// The hand-over is done once another member is primary; failed or refused, it is asked
    /// again after [`HAND_OVER_RETRY`].
    fn watch_hand_over(
        &mut self,
        orchestrator: &Orchestrator,
        new_events: &[TimedEvent],
        events: &mut Vec<ClusterEvent>,
    ) {
        let Some(from) = self.hand_over.clone() else {
            return;
        };
        let primary = primary(orchestrator);
        if primary.as_ref().is_some_and(|p| *p != from) {
            self.hand_over = None;
            return;
        }
        let failed = new_events.iter().find_map(|t| match &t.event {
            e @ (Event::SwitchoverFailed { request: None, .. }
            | Event::SwitchoverRefused { request: None, .. }) => Some(e.to_string()),
            _ => None,
        });
        if let Some(why) = failed {
            self.hand_over = None;
            self.hand_over_failed = Some(Instant::now());
            events.push(warning(
                "RollSwitchoverFailed",
                format!("{from} could not hand the primary role over, asked again shortly: {why}"),
            ));
        }
    }

    /// A member whose pod was deleted is catching up once its new pod's server answers.
    fn follow_restart(&mut self, orchestrator: &Orchestrator, pods: &BTreeMap<String, MemberPod>) {
        let Some(rolling) = self.rolling.as_mut() else {
            return;
        };
        if rolling.phase != Phase::Restarting {
            return;
        }
        let replaced = pods
            .get(&rolling.member)
            .is_some_and(|p| Some(&p.uid) != self.replaced_uid.as_ref() && !p.terminating);
        let answers = orchestrator
            .last_view()
            .and_then(|v| v.member(&rolling.member))
            .is_some_and(|m| m.is_reachable());
        if replaced && answers {
            rolling.phase = Phase::CatchingUp;
            rolling.since_ms = crate::clock::unix_ms();
            rolling.catch_up_to = None;
            self.catch_up_from = None;
        }
    }

    /// What the member being rolled must apply: what the primary holds now; again after a
    /// failover, since a new primary may lack what the old one held and never acknowledged.
    fn anchor_catch_up(&mut self, orchestrator: &Orchestrator) {
        if let Some(rolling) = self.rolling.as_mut() {
            roll::anchor_catch_up(
                rolling,
                &mut self.catch_up_from,
                orchestrator.published(),
                orchestrator.last_view(),
            );
        }
    }

    /// Carries out `step`; returns why the roll waits, if it does.
    async fn take(
        &mut self,
        step: Step,
        pods: &BTreeMap<String, MemberPod>,
        primary: Option<&str>,
        paused: bool,
        events: &mut Vec<ClusterEvent>,
    ) -> Option<String> {
        let now = crate::clock::unix_ms();
        // A deletion that did not get through (the step was cut short before it reached the
        // API server): the old pod is still there, not terminating; asked again.
        if let Some(r) = self
            .rolling
            .as_ref()
            .filter(|r| r.phase == Phase::Restarting)
            && let Some(pod) = pods.get(&r.member)
            && Some(&pod.uid) == self.replaced_uid.as_ref()
            && !pod.terminating
            && now.saturating_sub(r.since_ms) > DELETE_AGAIN_AFTER_MS
        {
            let member = r.member.clone();
            return self.restart(&member, pods, now).await;
        }
        // A member whose new pod came from a template since replaced (the spec was changed
        // again, say to mend a configuration that does not start) is restarted again; never
        // the primary (promoted meanwhile by a failover), nor while paused.
        if let Some(r) = self
            .rolling
            .as_ref()
            .filter(|r| r.phase != Phase::Draining && Some(r.member.as_str()) != primary && !paused)
            && let Some(pod) = pods.get(&r.member)
            && !pod.current
            && !pod.terminating
            && Some(&pod.uid) != self.replaced_uid.as_ref()
        {
            let member = r.member.clone();
            return self.restart(&member, pods, now).await;
        }
        match step {
            Step::Done => None,
            Step::Wait(why) => Some(why),
            Step::Drain(member) => {
                if self.rolling.as_ref().is_none_or(|r| r.member != member) {
                    self.member_began = Some(Instant::now());
                    tracing::info!(cluster = %self.name, %member, "roll: draining");
                    events.push(event(
                        "RollingMember",
                        format!(
                            "rolling {member}: out of read routing, then its pod is replaced \
                             with the current template"
                        ),
                    ));
                }
                self.rolling = Some(Rolling {
                    member: member.clone(),
                    phase: Phase::Draining,
                    since_ms: now,
                    catch_up_to: None,
                });
                Some(format!("taking {member} out of read routing"))
            }
            Step::Restart(member) => self.restart(&member, pods, now).await,
            Step::Readmit(member) => {
                let took = self.member_began.take().map(|at| at.elapsed());
                self.rolling = None;
                self.replaced_uid = None;
                events.push(event(
                    "MemberRolled",
                    format!(
                        "{member} runs the current template and has caught up ({:.1} s in \
                         all); back in read routing",
                        took.unwrap_or_default().as_secs_f64()
                    ),
                ));
                None
            }
            Step::Switchover { from } => {
                if self
                    .hand_over_failed
                    .is_some_and(|at| at.elapsed() < HAND_OVER_RETRY)
                {
                    return Some(format!(
                        "{from} could not hand the primary role over; asking again shortly"
                    ));
                }
                events.push(event(
                    "RollSwitchover",
                    format!("every replica is rolled: {from} hands the primary role over"),
                ));
                self.hand_over = Some(from.clone());
                Some(format!("{from} hands the primary role over"))
            }
        }
    }

    /// Deletes `member`'s pod (that very pod: a successor already made is not deleted by
    /// mistake); the StatefulSet makes it again from the current template.
    async fn restart(
        &mut self,
        member: &str,
        pods: &BTreeMap<String, MemberPod>,
        now: u64,
    ) -> Option<String> {
        let Some(pod) = pods.get(member) else {
            return Some(format!("waiting for {member}'s pod"));
        };
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid: Some(pod.uid.clone()),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        // Recorded before the request: a step cut short by its time limit after the deletion
        // got through must not delete the successor next time.
        let before = (self.rolling.clone(), self.replaced_uid.clone());
        if self.rolling.as_ref().is_none_or(|r| r.member != member) {
            // Restarted in place, never drained (a one-member cluster).
            self.member_began = Some(Instant::now());
        }
        self.replaced_uid = Some(pod.uid.clone());
        self.rolling = Some(Rolling {
            member: member.to_string(),
            phase: Phase::Restarting,
            since_ms: now,
            catch_up_to: None,
        });
        match self.pods.delete(member, &params).await {
            Ok(_) => {}
            // Gone already, or already another pod: replaced either way.
            Err(::kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
            Err(e) => {
                tracing::warn!(cluster = %self.name, %member, error = %e, "roll: deleting the pod");
                (self.rolling, self.replaced_uid) = before;
                return Some(format!("could not delete {member}'s pod: {e}"));
            }
        }
        tracing::info!(cluster = %self.name, %member, "roll: pod deleted");
        Some(format!(
            "{member}'s pod is replaced with the current template"
        ))
    }
}

/// Every member but the one rolled serves: the primary answers, each replica replicates. A
/// plan can be `Healthy` with a published replica that stopped answering, and the roll must
/// never take a second member down.
fn all_serving(members: &[RollMember], rolling: Option<&str>) -> bool {
    members
        .iter()
        .filter(|m| Some(m.name.as_str()) != rolling)
        .all(|m| m.reachable && (m.role == Role::Primary || m.replicating))
}

/// A user's `spec.switchover` the orchestration will still carry out: not done, not failed,
/// and not naming the member that is primary already (which the plan leaves as it is).
fn switchover_pending(
    cluster: &MySQLCluster,
    orchestrator: &Orchestrator,
    primary: Option<&str>,
) -> bool {
    cluster.spec.switchover.as_ref().is_some_and(|s| {
        let history = orchestrator.history();
        let settled = history.completed_switchover.as_deref() == Some(s.id.as_str())
            || history.failed_switchover.as_deref() == Some(s.id.as_str());
        !settled && Some(s.primary.as_str()) != primary
    })
}

fn primary(orchestrator: &Orchestrator) -> Option<String> {
    orchestrator
        .published()?
        .primary
        .as_ref()
        .map(|p| p.name.clone())
}

/// The roll's view of every member the spec has a pod for: its role as published, its
/// position as last observed, and whether its pod runs the current template (a pod deleted
/// for the roll does not, even before it is gone).
fn roll_members(
    orchestrator: &Orchestrator,
    pods: &BTreeMap<String, MemberPod>,
    replaced_uid: Option<&str>,
    rolling: Option<&str>,
) -> Vec<RollMember> {
    let published = orchestrator.published();
    let view = orchestrator.last_view();
    orchestrator
        .spec
        .members
        .iter()
        // A member without a pod yet (scaled up, its pod not made) is not the roll's; the one
        // being rolled is, while its pod is replaced.
        .filter(|spec| pods.contains_key(&spec.name) || rolling == Some(spec.name.as_str()))
        .map(|spec| {
            let current = pods.get(&spec.name).is_some_and(|p| {
                p.current && !p.terminating && Some(p.uid.as_str()) != replaced_uid
            });
            RollMember::observed(
                &spec.name,
                Some(&orchestrator.spec),
                published,
                view,
                current,
            )
        })
        .collect()
}

fn event(reason: &'static str, note: String) -> ClusterEvent {
    ClusterEvent {
        warning: false,
        reason,
        action: "Roll",
        note,
    }
}

fn warning(reason: &'static str, note: String) -> ClusterEvent {
    ClusterEvent {
        warning: true,
        ..event(reason, note)
    }
}

#[cfg(test)]
mod tests;
