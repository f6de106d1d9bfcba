//! The declarative accounts of one cluster (`MySQLDatabase`, `MySQLUser`, `MySQLGrant`, see
//! `crd::accounts`), carried out by its orchestration task every [`INTERVAL`]: the resources
//! naming the cluster are read, checked, and brought about on the primary by the statements
//! [`plan::plan`] gives (from where they replicate). What was made is kept in the cluster's
//! Secret `<cluster>-accounts` (`inventory.json`), so a resource deleted is undone as its
//! `cleanupPolicy` says, with no finalizer that could hold its deletion when the cluster is
//! gone; the same Secret's `users.json` gives the users to the proxies (as password hashes on
//! MariaDB), so they authenticate them without a lookup. Each resource's `Ready` condition
//! says whether it is in effect, or why not.

pub mod plan;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use ::kube::api::{Api, ListParams, Patch, PatchParams};
use ::kube::{Client, Resource, ResourceExt};
use k8s_openapi::api::core::v1::Secret;
use mysql_async::prelude::Queryable;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::builders::{self, ACCOUNTS_INVENTORY_KEY, PROXY_USERS_KEY, accounts_secret_name};
use super::common::{FIELD_MANAGER, cluster_key};
use crate::crd::accounts::{AccountStatus, CleanupPolicy, MySQLDatabase, MySQLGrant, MySQLUser};
use crate::crd::{Condition, ConditionStatus, Flavor, MySQLCluster};
use crate::orchestrate::observe::{Credentials, opts};
use crate::orchestrate::run::Orchestrator;
use plan::{Database, Grant, Inventory, Key, User, Wanted, WantedUser};

/// How often a cluster's account resources are looked at.
pub const INTERVAL: Duration = Duration::from_secs(5);

/// One resource's outcome: its key and `Ready` (or why not).
type Outcome = Result<(), String>;

/// A cluster's accounts, kept in step by its orchestration task.
pub struct Accounts {
    client: Client,
    namespace: String,
    name: String,
    due: Instant,
    /// The account kinds are not served (their CRDs are not installed): said once.
    unserved: bool,
}

impl Accounts {
    pub fn new(client: Client, cluster: &MySQLCluster) -> Self {
        Self {
            client,
            namespace: cluster.namespace().unwrap_or_default(),
            name: cluster.name_any(),
            due: Instant::now(),
            unserved: false,
        }
    }

    /// A pass is due.
    pub fn due(&self) -> bool {
        Instant::now() >= self.due
    }

    /// One pass, when due: bounded by the caller.
    pub async fn tick(
        &mut self,
        cluster: &MySQLCluster,
        orchestrator: &Orchestrator,
        admin: Option<Credentials>,
    ) {
        if Instant::now() < self.due {
            return;
        }
        self.due = Instant::now() + INTERVAL;
        let (databases, users, grants) = match self.read().await {
            Ok(found) => found,
            Err(e) => {
                if !self.unserved {
                    tracing::info!(cluster = %self.name, error = %e, "account resources not read (are their CRDs installed?)");
                    self.unserved = true;
                }
                return;
            }
        };
        self.unserved = false;
        let secret = self.secret().await;
        let done: Inventory = secret
            .as_ref()
            .and_then(|s| s.data.as_ref()?.get(ACCOUNTS_INVENTORY_KEY))
            .and_then(|b| serde_json::from_slice(&b.0).ok())
            .unwrap_or_default();
        if databases.is_empty()
            && users.is_empty()
            && grants.is_empty()
            && done == Inventory::default()
        {
            return;
        }
        let (wanted, mut outcomes) = self.wanted(&databases, &users, &grants).await;
        let flavor = cluster.spec.flavor;
        let statements = plan::plan(&wanted, &done, flavor);
        let mut failed: BTreeMap<Key, String> = BTreeMap::new();
        if !statements.is_empty() {
            match self.run(orchestrator, admin, &statements).await {
                Ok(errors) => failed = errors,
                Err(why) => {
                    // Nothing ran: every object still to do waits for the next pass.
                    for s in &statements {
                        failed.insert(s.key.clone(), why.clone());
                    }
                }
            }
        }
        let failed_keys: BTreeSet<Key> = failed.keys().cloned().collect();
        let now = plan::after(&wanted, &done, &failed_keys);
        let primary = orchestrator
            .published()
            .and_then(|t| t.primary.as_ref())
            .map(|p| p.name.clone())
            .unwrap_or_default();
        if let Err(e) = self
            .write_secret(cluster, &now, &wanted, flavor, &failed_keys)
            .await
        {
            tracing::warn!(cluster = %cluster_key(cluster), error = %e, "writing the accounts Secret");
        }
        for (key, why) in &failed {
            outcomes
                .entry(key.clone())
                .or_insert_with(|| Err(why.clone()));
        }
        self.report(&databases, &users, &grants, &outcomes, &primary)
            .await;
    }

    async fn read(
        &self,
    ) -> Result<(Vec<MySQLDatabase>, Vec<MySQLUser>, Vec<MySQLGrant>), ::kube::Error> {
        let mine = |r: &str| r == self.name;
        let databases: Vec<MySQLDatabase> = list(&self.client, &self.namespace).await?;
        let users: Vec<MySQLUser> = list(&self.client, &self.namespace).await?;
        let grants: Vec<MySQLGrant> = list(&self.client, &self.namespace).await?;
        Ok((
            databases
                .into_iter()
                .filter(|d| mine(&d.spec.cluster_ref.name))
                .collect(),
            users
                .into_iter()
                .filter(|u| mine(&u.spec.cluster_ref.name))
                .collect(),
            grants
                .into_iter()
                .filter(|g| mine(&g.spec.cluster_ref.name))
                .collect(),
        ))
    }

    async fn secret(&self) -> Option<Secret> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
        api.get_opt(&accounts_secret_name(&self.name))
            .await
            .ok()
            .flatten()
    }

    /// What the resources ask for, each checked; those refused get their reason. Two
    /// resources for one object: the first by name wins, the other is refused.
    async fn wanted(
        &self,
        databases: &[MySQLDatabase],
        users: &[MySQLUser],
        grants: &[MySQLGrant],
    ) -> (Wanted, BTreeMap<Key, Outcome>) {
        let mut wanted = Wanted::default();
        let mut outcomes: BTreeMap<Key, Outcome> = BTreeMap::new();
        // Resources keyed by what they make, for the refusals of the ones that cannot be made.
        for d in databases {
            let name = d.spec.name.clone().unwrap_or_else(|| d.name_any());
            let key = Key::Database(name.clone());
            let checked = plan::check_name("database", &name, 64, true)
                .and_then(|()| check_opt_charset("characterSet", d.spec.character_set.as_deref()))
                .and_then(|()| check_opt_charset("collation", d.spec.collation.as_deref()));
            if let Err(why) = checked {
                outcomes.insert(key, Err(why));
                continue;
            }
            if wanted.databases.iter().any(|w| w.name == name) {
                continue;
            }
            wanted.databases.push(Database {
                name,
                character_set: d.spec.character_set.clone(),
                collation: d.spec.collation.clone(),
                delete: d.spec.cleanup_policy == Some(CleanupPolicy::Delete),
            });
        }
        for u in users {
            let name = u.spec.name.clone().unwrap_or_else(|| u.name_any());
            let host = u.spec.host.clone().unwrap_or_else(|| "%".into());
            let key = Key::User(name.clone(), host.clone());
            let checked = plan::check_name("user", &name, 80, false)
                .and_then(|()| plan::check_name("host", &host, 255, false));
            if let Err(why) = checked {
                outcomes.insert(key, Err(why));
                continue;
            }
            let password = match self.password(u).await {
                Ok(p) => p,
                Err(why) => {
                    outcomes.insert(key, Err(why));
                    continue;
                }
            };
            if wanted
                .users
                .iter()
                .any(|w| w.user.name == name && w.user.host == host)
            {
                continue;
            }
            wanted.users.push(WantedUser {
                user: User {
                    name,
                    host,
                    max_user_connections: u.spec.max_user_connections.unwrap_or(0),
                    password_version: password.1,
                    delete: u.spec.cleanup_policy != Some(CleanupPolicy::Retain),
                },
                password: password.0,
            });
        }
        for g in grants {
            let host = g.spec.host.clone().unwrap_or_else(|| "%".into());
            let table = g.spec.table.clone().unwrap_or_else(|| "*".into());
            let key = Key::Grant(
                g.spec.user.clone(),
                host.clone(),
                g.spec.database.clone(),
                table.clone(),
            );
            let privileges: Result<BTreeSet<String>, String> = g
                .spec
                .privileges
                .iter()
                .map(|p| plan::privilege(p))
                .collect();
            let checked = plan::check_name("user", &g.spec.user, 80, false)
                .and_then(|()| plan::check_name("host", &host, 255, false))
                .and_then(|()| star_or_name("database", &g.spec.database))
                .and_then(|()| star_or_name("table", &table))
                .and_then(|()| {
                    if g.spec.database == "*" && table != "*" {
                        Err("a table needs a database".to_string())
                    } else {
                        Ok(())
                    }
                });
            let privileges = match (checked, privileges) {
                (Ok(()), Ok(p)) if !p.is_empty() => p,
                (Ok(()), Ok(_)) => {
                    outcomes.insert(key, Err("no privileges listed".into()));
                    continue;
                }
                (Err(why), _) | (_, Err(why)) => {
                    outcomes.insert(key, Err(why));
                    continue;
                }
            };
            if wanted.grants.iter().any(|w| {
                w.user == g.spec.user
                    && w.host == host
                    && w.database == g.spec.database
                    && w.table == table
            }) {
                continue;
            }
            wanted.grants.push(Grant {
                user: g.spec.user.clone(),
                host,
                database: g.spec.database.clone(),
                table,
                privileges,
                grant_option: g.spec.grant_option,
                delete: g.spec.cleanup_policy != Some(CleanupPolicy::Retain),
            });
        }
        (wanted, outcomes)
    }

    /// The password of `user` and which version of it: its Secret's `resourceVersion` and key.
    async fn password(&self, user: &MySQLUser) -> Result<(String, String), String> {
        let r = &user.spec.password_secret_key_ref;
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
        let secret = api
            .get_opt(&r.name)
            .await
            .map_err(|e| format!("reading Secret {}: {e}", r.name))?
            .ok_or_else(|| format!("Secret {} not found", r.name))?;
        let value = secret
            .data
            .as_ref()
            .and_then(|d| d.get(&r.key))
            .ok_or_else(|| format!("Secret {} has no key {}", r.name, r.key))?;
        let password = String::from_utf8(value.0.clone())
            .map_err(|_| format!("Secret {} key {}: not UTF-8", r.name, r.key))?;
        if password.is_empty() {
            return Err(format!("Secret {} key {}: empty", r.name, r.key));
        }
        let version = format!(
            "{}/{}",
            secret.resource_version().unwrap_or_default(),
            r.key
        );
        Ok((password, version))
    }

    /// Runs `statements` on the primary, in order; the objects whose statements failed, with
    /// the server's error. `Err` when the primary cannot be reached.
    async fn run(
        &self,
        orchestrator: &Orchestrator,
        admin: Option<Credentials>,
        statements: &[plan::Statement],
    ) -> Result<BTreeMap<Key, String>, String> {
        let admin = admin.ok_or("the admin credentials are not readable")?;
        let primary = orchestrator
            .published()
            .and_then(|t| t.primary.clone())
            .ok_or("no primary is published")?;
        let options = opts(
            &primary.host,
            primary.port,
            &admin,
            orchestrator.spec.tls.as_ref(),
        );
        let mut conn =
            tokio::time::timeout(Duration::from_secs(5), mysql_async::Conn::new(options))
                .await
                .map_err(|_| format!("connecting to {} timed out", primary.name))?
                .map_err(|e| format!("connecting to {}: {e}", primary.name))?;
        let mut failed = BTreeMap::new();
        for s in statements {
            if failed.contains_key(&s.key) {
                continue;
            }
            match conn.query_drop(&s.sql).await {
                Ok(()) => {
                    tracing::info!(cluster = %self.name, object = ?s.key, "account statement run");
                }
                Err(mysql_async::Error::Server(e)) if s.done_on.contains(&e.code) => {}
                Err(e) => {
                    tracing::warn!(cluster = %self.name, object = ?s.key, error = %e, "account statement failed");
                    failed.insert(s.key.clone(), format!("on {}: {e}", primary.name));
                }
            }
        }
        let _ = conn.disconnect().await;
        Ok(failed)
    }

    /// Writes `<cluster>-accounts` when what it holds changed.
    async fn write_secret(
        &self,
        cluster: &MySQLCluster,
        inventory: &Inventory,
        wanted: &Wanted,
        flavor: Flavor,
        failed: &BTreeSet<Key>,
    ) -> Result<(), String> {
        let mut users = Vec::new();
        let mut named = BTreeSet::new();
        for w in &wanted.users {
            let key = Key::User(w.user.name.clone(), w.user.host.clone());
            // The proxies know an account by name only: the first of a name.
            if failed.contains(&key) || !named.insert(w.user.name.clone()) {
                continue;
            }
            users.push(match flavor {
                Flavor::Mariadb => {
                    json!({"user": w.user.name, "native_hash": plan::native_hash(&w.password)})
                }
                Flavor::Mysql => json!({"user": w.user.name, "password": w.password}),
            });
        }
        let users_json = json!({ "users": users }).to_string();
        let inventory_json =
            serde_json::to_string(inventory).map_err(|e| format!("inventory: {e}"))?;
        if let Some(current) = self.secret().await
            && let Some(data) = current.data.as_ref()
            && data.get(PROXY_USERS_KEY).map(|b| b.0.as_slice()) == Some(users_json.as_bytes())
            && data.get(ACCOUNTS_INVENTORY_KEY).map(|b| b.0.as_slice())
                == Some(inventory_json.as_bytes())
        {
            return Ok(());
        }
        let secret = builders::accounts_secret(cluster, &users_json, &inventory_json)
            .map_err(|e| e.to_string())?;
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
        api.patch(
            &accounts_secret_name(&self.name),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(&secret),
        )
        .await
        .map(|_| ())
        .map_err(|e| e.to_string())
    }

    /// Sets each resource's `Ready` condition where it changed.
    async fn report(
        &self,
        databases: &[MySQLDatabase],
        users: &[MySQLUser],
        grants: &[MySQLGrant],
        outcomes: &BTreeMap<Key, Outcome>,
        primary: &str,
    ) {
        let ok: Outcome = Ok(());
        for d in databases {
            let name = d.spec.name.clone().unwrap_or_else(|| d.name_any());
            let outcome = outcomes.get(&Key::Database(name)).unwrap_or(&ok);
            self.set_ready(d, outcome, primary).await;
        }
        for u in users {
            let name = u.spec.name.clone().unwrap_or_else(|| u.name_any());
            let host = u.spec.host.clone().unwrap_or_else(|| "%".into());
            let outcome = outcomes.get(&Key::User(name, host)).unwrap_or(&ok);
            self.set_ready(u, outcome, primary).await;
        }
        for g in grants {
            let key = Key::Grant(
                g.spec.user.clone(),
                g.spec.host.clone().unwrap_or_else(|| "%".into()),
                g.spec.database.clone(),
                g.spec.table.clone().unwrap_or_else(|| "*".into()),
            );
            let outcome = outcomes.get(&key).unwrap_or(&ok);
            self.set_ready(g, outcome, primary).await;
        }
    }

    async fn set_ready<K>(&self, object: &K, outcome: &Outcome, primary: &str)
    where
        K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
            + HasAccountStatus
            + Clone
            + DeserializeOwned
            + std::fmt::Debug,
    {
        let (status, reason, message) = match outcome {
            Ok(()) => (
                ConditionStatus::True,
                "Applied",
                format!("in effect on {primary}"),
            ),
            Err(why) => (ConditionStatus::False, "NotApplied", why.clone()),
        };
        let generation = object.meta().generation;
        let previous = object.account_status().and_then(|s| {
            s.conditions
                .iter()
                .find(|c| c.type_ == READY)
                .cloned()
                .map(|c| (c, s.observed_generation))
        });
        if previous
            .as_ref()
            .is_some_and(|(c, g)| c.status == status && c.message == message && *g == generation)
        {
            return;
        }
        let since = match &previous {
            Some((c, _)) if c.status == status => c.last_transition_time.clone(),
            _ => crate::clock::rfc3339(),
        };
        let condition = Condition {
            type_: READY.into(),
            status,
            reason: reason.into(),
            message,
            last_transition_time: since,
            observed_generation: generation,
        };
        let patch = json!({"status": AccountStatus {
            conditions: vec![condition],
            observed_generation: generation,
        }});
        let api: Api<K> = Api::namespaced(self.client.clone(), &self.namespace);
        if let Err(e) = api
            .patch_status(
                &object.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
        {
            tracing::warn!(cluster = %self.name, object = %object.name_any(), error = %e, "account status");
        }
    }
}

/// The condition every account resource reports.
pub const READY: &str = "Ready";

/// The status the three kinds share.
pub trait HasAccountStatus {
    fn account_status(&self) -> Option<&AccountStatus>;
}

impl HasAccountStatus for MySQLDatabase {
    fn account_status(&self) -> Option<&AccountStatus> {
        self.status.as_ref()
    }
}

impl HasAccountStatus for MySQLUser {
    fn account_status(&self) -> Option<&AccountStatus> {
        self.status.as_ref()
    }
}

impl HasAccountStatus for MySQLGrant {
    fn account_status(&self) -> Option<&AccountStatus> {
        self.status.as_ref()
    }
}

async fn list<K>(client: &Client, namespace: &str) -> Result<Vec<K>, ::kube::Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    Ok(api.list(&ListParams::default()).await?.items)
}

fn check_opt_charset(what: &str, value: Option<&str>) -> Result<(), String> {
    value.map_or(Ok(()), |v| plan::check_charset(what, v))
}

fn star_or_name(what: &str, value: &str) -> Result<(), String> {
    if value == "*" {
        Ok(())
    } else {
        plan::check_name(what, value, 64, true)
    }
}
