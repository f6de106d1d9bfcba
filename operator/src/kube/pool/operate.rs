//! The per-pool task: what the local runtime's pool supervisor does for a pool, against
//! Kubernetes objects. Every [`ROUND`] it finds each cluster's primary in its topology
//! ConfigMap, reaches the directory on the directory cluster's primary as the pool's
//! administrator, makes the directory's tables, registers the tenant clusters, measures each
//! one's load on its primary and records it, and decides growth. A new cluster is asked for
//! through the [`PoolSnapshot`] (`wanted`), which the reconciler turns into one more
//! `MySQLCluster` and a longer pool document; the cluster joins the directory as filling
//! once it has a primary, and opens once it has caught up.
//!
//! Failures are logged, reported in the snapshot (`blocked`) or as Warning Events, and
//! retried at the next round; nothing here panics on what the API server or the servers say.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ::kube::api::Api;
use ::kube::runtime::events::Recorder;
use ::kube::{Client, ResourceExt};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use lagless_core::topology::Member;
use lagless_directory::Directory;
use lagless_directory::placement::{self, ClusterLoad, ClusterState};
use tokio::sync::watch;

use super::decide::{self, Candidate};
use super::rebalance;
use super::status::PoolSnapshot;
use crate::crd::MySQLCluster;
use crate::crd::tenant_pool::{self, MySQLTenantPool, directory_name};
use crate::kube::builders::tenant_pool::pool_tls_secret_name;
use crate::kube::common::{self, lock, object_key};
use crate::kube::orchestration::secret_ca;
use crate::kube::status::ClusterEvent;
use crate::kube::tasks::Tasks;
use crate::orchestrate::view::CaSource;
use crate::pool::growth::{self, Growth};
use crate::pool::load::{self, RateMeter};

/// How often a pool is looked at: primaries, registrations, loads, growth.
pub const ROUND: Duration = Duration::from_secs(10);

/// The longest one round may take: every call in it is bounded, and so is the whole.
const ROUND_TIMEOUT: Duration = Duration::from_secs(60);

/// How long one look of rebalancing may take (it measures every tenant cluster).
const LOOK_TIMEOUT: Duration = Duration::from_secs(30);

/// How long one cluster's measurement may take.
const MEASURE_TIMEOUT: Duration = Duration::from_secs(5);

/// Starts, updates and stops the loops of pools.
pub trait PoolLoops: Send + Sync {
    /// Runs the loop of `pool` with its `count` tenant clusters (starting it if needed), and
    /// returns what it last saw.
    fn ensure(&self, pool: &MySQLTenantPool, count: u32) -> PoolSnapshot;
    /// What the loop of pool `namespace/name` last saw, if it runs.
    fn snapshot(&self, key: &str) -> Option<PoolSnapshot>;
    /// Stops the loop of pool `namespace/name`, if it runs.
    fn stop(&self, key: &str);
}

/// Runs one task per pool on the current tokio runtime.
pub struct PoolTasks {
    client: Client,
    recorder: Recorder,
    tasks: Tasks<(MySQLTenantPool, u32), PoolSnapshot>,
}

impl PoolTasks {
    pub fn new(client: Client, recorder: Recorder) -> Self {
        Self {
            client,
            recorder,
            tasks: Tasks::default(),
        }
    }
}

impl PoolLoops for PoolTasks {
    fn ensure(&self, pool: &MySQLTenantPool, count: u32) -> PoolSnapshot {
        self.tasks.ensure(
            object_key(pool),
            |(current, current_count)| {
                let changed = current.spec != pool.spec || *current_count != count;
                if changed {
                    *current = pool.clone();
                    *current_count = count;
                }
                changed
            },
            || (pool.clone(), count),
            |receiver, snapshot| {
                let runner = Runner {
                    client: self.client.clone(),
                    recorder: self.recorder.clone(),
                    input: receiver,
                    snapshot,
                    directory: None,
                    meters: BTreeMap::new(),
                    listed_since: BTreeMap::new(),
                    warnings: BTreeSet::new(),
                    rebalance_looked: None,
                };
                runner.run()
            },
        )
    }

    fn snapshot(&self, key: &str) -> Option<PoolSnapshot> {
        self.tasks.snapshot(key)
    }

    fn stop(&self, key: &str) {
        self.tasks.stop(key);
    }
}

/// Runs no loop: for running the reconciler alone (tests, dry runs).
#[derive(Debug, Default)]
pub struct NoPoolLoops;

impl PoolLoops for NoPoolLoops {
    fn ensure(&self, _pool: &MySQLTenantPool, _count: u32) -> PoolSnapshot {
        PoolSnapshot::default()
    }

    fn snapshot(&self, _key: &str) -> Option<PoolSnapshot> {
        None
    }

    fn stop(&self, _key: &str) {}
}

/// What reaching the directory takes; a change (a failover, a rotated password or CA)
/// means a new connection.
#[derive(PartialEq, Eq)]
struct DirectoryTarget {
    host: String,
    port: u16,
    user: String,
    password: String,
    ca: Option<Vec<u8>>,
}

/// The administrator's account and, with TLS, the CA: what every connection of a round uses.
struct Access {
    user: String,
    password: String,
    ca: Option<CaSource>,
}

struct Runner {
    client: Client,
    recorder: Recorder,
    input: watch::Receiver<(MySQLTenantPool, u32)>,
    snapshot: Arc<Mutex<PoolSnapshot>>,
    /// The directory, and what it was reached with (its schema made).
    directory: Option<(DirectoryTarget, Directory)>,
    meters: BTreeMap<String, RateMeter>,
    /// When this loop first saw each tenant cluster in the pool (and so in its document).
    listed_since: BTreeMap<String, Instant>,
    /// Warnings of the last round: each becomes an Event when it starts, not every round.
    warnings: BTreeSet<String>,
    /// When rebalancing last measured the tenants.
    rebalance_looked: Option<Instant>,
}

impl Runner {
    async fn run(mut self) {
        loop {
            let (pool, count) = self.input.borrow_and_update().clone();
            let key = object_key(&pool);
            let mut warnings = Vec::new();
            let outcome =
                tokio::time::timeout(ROUND_TIMEOUT, self.round(&pool, count, &mut warnings))
                    .await
                    .unwrap_or_else(|_| {
                        Err(format!(
                            "a round took more than {} s",
                            ROUND_TIMEOUT.as_secs()
                        ))
                    });
            match outcome {
                Ok(()) => lock(&self.snapshot).blocked = None,
                Err(why) => {
                    tracing::warn!(pool = %key, %why, "the pool's loop is blocked");
                    lock(&self.snapshot).blocked = Some(why);
                }
            }
            self.warn(&pool, warnings).await;
            if !self.wait().await {
                return;
            }
        }
    }

    /// Waits one round, or less when the pool changes; false when its [`PoolTasks`] is gone.
    async fn wait(&mut self) -> bool {
        tokio::select! {
            () = tokio::time::sleep(ROUND) => true,
            changed = self.input.changed() => changed.is_ok(),
        }
    }

    /// Records each warning that started this round as a Warning Event on the pool.
    async fn warn(&mut self, pool: &MySQLTenantPool, warnings: Vec<String>) {
        let now: BTreeSet<String> = warnings.into_iter().collect();
        for message in now.difference(&self.warnings) {
            tracing::warn!(pool = %object_key(pool), %message, "pool");
            self.event(pool, true, "PoolWarning", "Measure", message.clone())
                .await;
        }
        self.warnings = now;
    }

    async fn event(
        &self,
        pool: &MySQLTenantPool,
        warning: bool,
        reason: &'static str,
        action: &'static str,
        note: String,
    ) {
        let event = ClusterEvent {
            warning,
            reason,
            action,
            note,
        };
        common::publish(&self.recorder, pool, event).await;
    }

    /// One look at the pool. An error is why the loop cannot go on this round; `warnings`
    /// collects what went wrong with one cluster while the others went on.
    async fn round(
        &mut self,
        pool: &MySQLTenantPool,
        count: u32,
        warnings: &mut Vec<String>,
    ) -> Result<(), String> {
        let name = pool.name_any();
        let namespace = pool
            .namespace()
            .ok_or_else(|| format!("MySQLTenantPool {name} has no namespace"))?;
        let access = self.access(pool, &namespace).await?;
        let clusters = tenant_pool::clusters_with(pool, count);
        let primaries = self.primaries(&namespace, &clusters, warnings).await;
        lock(&self.snapshot).primaries = primaries
            .iter()
            .map(|(c, m)| (c.clone(), m.name.clone()))
            .collect();
        let directory_cluster = directory_name(&name);
        let primary = primaries.get(&directory_cluster).ok_or_else(|| {
            format!("the directory's cluster {directory_cluster} has no primary yet")
        })?;
        let directory = self.directory(&name, primary, &access).await?;
        let failed = |what: &str, e: lagless_directory::DirectoryError| format!("{what}: {e}");

        // Registrations: a tenant cluster joins once every proxy can route to it.
        let known = directory
            .clusters()
            .await
            .map_err(|e| failed("reading the directory's clusters", e))?;
        let now = Instant::now();
        let tenant_names: Vec<String> = (0..count)
            .map(|i| tenant_pool::tenant_cluster_name(&name, i))
            .collect();
        self.listed_since.retain(|c, _| tenant_names.contains(c));
        let candidates: Vec<Candidate> = tenant_names
            .iter()
            .enumerate()
            .map(|(i, c)| Candidate {
                name: c.clone(),
                index: u32::try_from(i).unwrap_or(u32::MAX),
                has_primary: primaries.contains_key(c),
                listed_for: now
                    .saturating_duration_since(*self.listed_since.entry(c.clone()).or_insert(now)),
            })
            .collect();
        let spec = &pool.spec;
        let capacity = (spec.capacity_bytes(), spec.placement.write_capacity);
        let min = u32::try_from(spec.clusters.min).unwrap_or(0);
        for (cluster, state) in decide::registrations(&candidates, &known, capacity, min) {
            let joining = !known.iter().any(|l| l.name == cluster);
            directory
                .register_cluster(&cluster, state, capacity.0, capacity.1)
                .await
                .map_err(|e| failed(&format!("registering {cluster}"), e))?;
            tracing::info!(pool = %name, %cluster, %state, joining, "cluster registered");
            if joining {
                let note = format!("{cluster} joined the directory ({state})");
                self.event(pool, false, "ClusterJoined", "Register", note)
                    .await;
            }
        }

        // Loads, measured on each registered cluster's primary.
        let known = directory
            .clusters()
            .await
            .map_err(|e| failed("reading the directory's clusters", e))?;
        let tenants = directory
            .tenant_counts()
            .await
            .map_err(|e| failed("counting tenants", e))?;
        let like = load::like_pattern(&spec.tenant_database);
        for cluster in clusters.iter().skip(1) {
            let cluster_name = cluster.name_any();
            let Some(member) = primaries.get(&cluster_name) else {
                continue;
            };
            if !known.iter().any(|l| l.name == cluster_name) {
                continue;
            }
            let domain = cluster
                .spec
                .gtid_domain_id
                .and_then(|d| u32::try_from(d).ok())
                .unwrap_or_default();
            let opts = load::admin_opts(
                &member.host,
                member.port,
                &access.user,
                &access.password,
                access.ca.as_ref(),
            );
            let reading = match load::read(opts, &like, domain, MEASURE_TIMEOUT).await {
                Ok(reading) => reading,
                Err(e) => {
                    warnings.push(format!(
                        "cannot measure {cluster_name} at {}:{}: {e}",
                        member.host, member.port
                    ));
                    continue;
                }
            };
            let rate = self
                .meters
                .entry(cluster_name.clone())
                .or_default()
                .observe(reading.seq, Instant::now());
            let count = tenants.get(&cluster_name).copied().unwrap_or(0);
            if let Err(e) = directory
                .update_load(&cluster_name, reading.bytes, rate, count)
                .await
            {
                warnings.push(format!("cannot record {cluster_name}'s load: {e}"));
                continue;
            }
            lock(&self.snapshot)
                .rates
                .insert(cluster_name.clone(), rate);
            tracing::debug!(pool = %name, cluster = %cluster_name, bytes = reading.bytes, rate, tenants = count, "load");
        }

        // Growth: a filling cluster that caught up opens; a busy pool asks for one more.
        let loads: Vec<ClusterLoad> = directory
            .clusters()
            .await
            .map_err(|e| failed("reading the directory's clusters", e))?
            .into_iter()
            // All of the pool's, also beyond `count`: a lost status must not hide a cluster
            // that holds tenants (the reconciler counts them in).
            .filter(|l| decide::tenant_index(&name, &l.name).is_some())
            .collect();
        lock(&self.snapshot).loads = Some(loads.clone());
        let max = u32::try_from(spec.clusters.max).unwrap_or(0);
        let adding = decide::adding(&name, count, &loads);
        match growth::next(&loads, spec.placement.grow_threshold, count, max, adding) {
            Growth::Nothing => {}
            Growth::Open(cluster) => {
                directory
                    .set_cluster_state(&cluster, ClusterState::Open)
                    .await
                    .map_err(|e| failed(&format!("opening {cluster}"), e))?;
                let note = format!("{cluster} has caught up with the others: open");
                tracing::info!(pool = %name, %cluster, "cluster opened");
                self.event(pool, false, "ClusterOpened", "Grow", note).await;
            }
            Growth::Add => {
                let next = count.saturating_add(1);
                let asked = lock(&self.snapshot).wanted.replace(next) == Some(next);
                if !asked {
                    let note = format!(
                        "the pool is {:.0}% used (threshold {:.0}%): adding {}",
                        placement::pool_utilisation(&loads) * 100.0,
                        spec.placement.grow_threshold * 100.0,
                        tenant_pool::tenant_cluster_name(&name, count)
                    );
                    tracing::info!(pool = %name, clusters = next, "growing");
                    self.event(pool, false, "Growing", "Grow", note).await;
                }
            }
        }
        // Rebalancing: moves planned as MySQLTenantMoves, which the move controller runs.
        if spec.rebalance.enabled {
            let names: Vec<String> = clusters.iter().map(|c| c.name_any()).collect();
            let admin = |cluster: &str| {
                primaries.get(cluster).map(|m| {
                    load::admin_opts(
                        &m.host,
                        m.port,
                        &access.user,
                        &access.password,
                        access.ca.as_ref(),
                    )
                })
            };
            let since_look = self.rebalance_looked.map(|at| at.elapsed());
            let look = rebalance::look(&self.client, pool, &names, loads, since_look, admin);
            let looked = tokio::time::timeout(LOOK_TIMEOUT, look)
                .await
                .unwrap_or_else(|_| Err(format!("no look within {} s", LOOK_TIMEOUT.as_secs())));
            match looked {
                Ok(look) => {
                    if look.measured {
                        self.rebalance_looked = Some(Instant::now());
                    }
                    if !look.planned.is_empty() {
                        tracing::info!(pool = %name, moves = %look.said.message, "rebalancing");
                        let note = look.said.message.clone();
                        self.event(pool, false, "Rebalancing", "Rebalance", note)
                            .await;
                    }
                    lock(&self.snapshot).rebalance = Some(look.said);
                }
                Err(e) => {
                    lock(&self.snapshot).rebalance = Some(rebalance::Rebalancing {
                        moving: false,
                        reason: "Waiting",
                        message: format!("the last look failed: {e}"),
                    });
                    warnings.push(format!("rebalancing: {e}"));
                }
            }
        } else {
            lock(&self.snapshot).rebalance = None;
        }
        Ok(())
    }

    /// The administrator's account from its Secret and, with TLS, the pool's CA.
    async fn access(&self, pool: &MySQLTenantPool, namespace: &str) -> Result<Access, String> {
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), namespace);
        let admin = pool
            .spec
            .cluster_template
            .credentials
            .admin_secret(pool.name());
        let account = common::account(&secrets, &admin).await?;
        let (user, password) = (account.user, account.password);
        let ca = match &pool.spec.cluster_template.tls {
            None => None,
            Some(_) => {
                let name = pool_tls_secret_name(pool);
                let secret = read_secret(&secrets, &name).await?;
                Some(CaSource::Pem(secret_ca(&secret, &name)?))
            }
        };
        Ok(Access { user, password, ca })
    }

    /// The primary each of `clusters` publishes in its topology ConfigMap. A ConfigMap that
    /// cannot be read is a warning; one not published yet is no primary.
    async fn primaries(
        &self,
        namespace: &str,
        clusters: &[MySQLCluster],
        warnings: &mut Vec<String>,
    ) -> BTreeMap<String, Member> {
        let configmaps: Api<ConfigMap> = Api::namespaced(self.client.clone(), namespace);
        let mut primaries = BTreeMap::new();
        for cluster in clusters {
            let cluster = cluster.name_any();
            match common::published_topology(&configmaps, &cluster).await {
                Ok(topology) => {
                    if let Some(primary) = topology.and_then(|t| t.primary) {
                        primaries.insert(cluster, primary);
                    }
                }
                Err(e) => warnings.push(e),
            }
        }
        primaries
    }

    /// The directory on its cluster's current primary, its tables made: connected anew when
    /// the primary, the account or the CA changed.
    async fn directory(
        &mut self,
        pool: &str,
        primary: &Member,
        access: &Access,
    ) -> Result<Directory, String> {
        let target = DirectoryTarget {
            host: primary.host.clone(),
            port: primary.port,
            user: access.user.clone(),
            password: access.password.clone(),
            ca: match &access.ca {
                Some(CaSource::Pem(pem)) => Some(pem.clone()),
                Some(CaSource::File(_)) | None => None,
            },
        };
        if let Some((current, directory)) = &self.directory
            && *current == target
        {
            return Ok(directory.clone());
        }
        if let Some((_, old)) = self.directory.take() {
            old.close().await;
        }
        let opts = load::admin_opts(
            &target.host,
            target.port,
            &target.user,
            &target.password,
            access.ca.as_ref(),
        );
        let directory = Directory::new(opts);
        directory
            .ensure_schema()
            .await
            .map_err(|e| format!("creating the directory's tables on {}: {e}", primary.name))?;
        tracing::info!(%pool, primary = %primary.name, "directory reached at its primary");
        self.directory = Some((target, directory.clone()));
        Ok(directory)
    }
}

async fn read_secret(secrets: &Api<Secret>, name: &str) -> Result<Secret, String> {
    secrets
        .get_opt(name)
        .await
        .map_err(|e| format!("reading Secret {name}: {e}"))?
        .ok_or_else(|| format!("Secret {name} not found"))
}
