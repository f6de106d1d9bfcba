//! The loop: observe, plan, act, record — one tick at a time.

use std::time::{Duration, Instant};

use lagless_proxy::topology::{Flavor, Topology};

use super::act::{Actor, TopologySink};
use super::observe::{Credentials, Observer};
use super::plan::{Action, Plan, plan};
use super::view::{ClusterSpec, History};

/// Drives one cluster.
pub struct Orchestrator {
    pub spec: ClusterSpec,
    pub flavor: Flavor,
    observer: Observer,
    actor: Actor,
    sink: Box<dyn TopologySink>,
    history: History,
    published: Option<Topology>,
    started: Instant,
}

impl std::fmt::Debug for Orchestrator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Orchestrator")
            .field("cluster", &self.spec.cluster)
            .field("published", &self.published.as_ref().map(|t| t.epoch))
            .finish()
    }
}

impl Orchestrator {
    /// `published` is the topology the proxies follow now, if any (e.g. read back from the file).
    pub fn new(
        spec: ClusterSpec,
        flavor: Flavor,
        observer: Observer,
        actor: Actor,
        sink: Box<dyn TopologySink>,
        published: Option<Topology>,
    ) -> Self {
        Self {
            spec,
            flavor,
            observer,
            actor,
            sink,
            history: History::default(),
            published,
            started: Instant::now(),
        }
    }

    /// An orchestrator with the default timings: a member that does not answer a probe within
    /// 500 ms counts as hung, statements time out after 2 s, and a candidate gets 30 s to catch
    /// up before a promotion gives up.
    pub fn with_defaults(
        spec: ClusterSpec,
        flavor: Flavor,
        admin: Credentials,
        replication: Credentials,
        sink: Box<dyn TopologySink>,
        published: Option<Topology>,
    ) -> Self {
        let actor = Actor {
            admin: admin.clone(),
            replication,
            app_users: Vec::new(),
            statement_timeout: Duration::from_secs(2),
            catch_up_timeout: Duration::from_secs(30),
        };
        let observer = Observer::new(admin, Duration::from_millis(500));
        Self::new(spec, flavor, observer, actor, sink, published)
    }

    pub fn published(&self) -> Option<&Topology> {
        self.published.as_ref()
    }

    pub fn history(&self) -> &History {
        &self.history
    }

    /// One round. Actions run in order and stop at the first failure; the events of the plan
    /// are recorded only when every action succeeded, so a failed promotion is planned again.
    pub async fn tick(&mut self) -> Plan {
        let view = self
            .observer
            .observe(&self.spec, self.flavor, self.published.as_ref())
            .await;
        self.history.now_ms = self.started.elapsed().as_millis() as u64;
        let plan = plan(&view, &self.spec, &self.history);
        let mut ok = true;
        for action in &plan.actions {
            match self
                .actor
                .run(action, &self.spec, &view, self.sink.as_ref())
                .await
            {
                Ok(()) => {
                    if let Action::PublishTopology { topology } = action {
                        self.published = Some(topology.clone());
                    }
                }
                Err(e) => {
                    tracing::warn!(state = ?plan.state, error = %e, "action failed; planning again next tick");
                    ok = false;
                    break;
                }
            }
        }
        if ok {
            for event in &plan.events {
                tracing::info!(?event, "cluster event");
                self.history.record(event);
            }
        }
        plan
    }
}
