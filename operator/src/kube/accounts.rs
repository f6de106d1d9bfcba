//! The declarative accounts of one cluster (`MySQLDatabase`, `MySQLUser`, `MySQLGrant`, see
//! `crd::accounts`), brought about every [`INTERVAL`] by a task the cluster's orchestration
//! task starts (so a slow primary never holds up failure detection): the resources naming the
//! cluster are read, checked, and brought about on the primary by the statements
//! [`plan::plan`] gives (from where they replicate). What was made is kept in the cluster's
//! Secret `<cluster>-accounts` (`inventory.json`), so a resource deleted is undone as its
//! `cleanupPolicy` says, with no finalizer that could hold its deletion when the cluster is
//! gone; the same Secret's `users.json` gives the users to the proxies (as password hashes on
//! MariaDB), so they authenticate them without a lookup. Each resource's `Ready` condition
//! says whether it is in effect, or why not.

pub mod plan;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ::kube::api::{Api, ListParams, Patch, PatchParams};
use ::kube::{Client, Resource, ResourceExt};
use k8s_openapi::api::core::v1::Secret;
use lagless_core::topology::Member;
use mysql_async::prelude::Queryable;
use serde::de::DeserializeOwned;
use serde_json::json;

use super::builders::{
    self, ACCOUNTS_INVENTORY_KEY, Credential, PROXY_USERS_KEY, accounts_secret_name,
};
use super::common::{FIELD_MANAGER, cluster_key, credentials};
use crate::crd::accounts::{AccountStatus, CleanupPolicy, MySQLDatabase, MySQLGrant, MySQLUser};
use crate::crd::{Condition, ConditionStatus, Flavor, MySQLCluster};
use crate::orchestrate::observe::{Credentials, opts};
use crate::orchestrate::run::Orchestrator;
use crate::orchestrate::view::ServerTls;
use plan::{Database, Grant, Inventory, Key, User, Wanted, WantedUser};

/// How often a cluster's account resources are looked at.
pub const INTERVAL: Duration = Duration::from_secs(5);
/// How long one pass may take.
const PASS_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a statement may wait for a lock (a `DROP DATABASE` behind a long transaction).
const LOCK_WAIT_SECONDS: u32 = 5;

/// Accounts no resource may name: the server's own and the operator's (`lagless_*`, and the
/// admin account whatever its name).
const SYSTEM_USERS: &[&str] = &[
    "root",
    "mariadb.sys",
    "mysql.sys",
    "mysql.session",
    "mysql.infoschema",
    "PUBLIC",
];

/// One resource's outcome: `Ready`, or why not.
type Outcome = Result<(), String>;

/// A cluster's accounts, kept in step by its orchestration task: one pass at a time, in a
/// task of its own.
pub struct Accounts {
    pass: Pass,
    due: Instant,
    running: Option<tokio::task::JoinHandle<()>>,
}

impl Accounts {
    pub fn new(client: Client, cluster: &MySQLCluster) -> Self {
        Self {
            pass: Pass {
                client,
                namespace: cluster.namespace().unwrap_or_default(),
                name: cluster.name_any(),
                unserved: Arc::new(AtomicBool::new(false)),
            },
            due: Instant::now(),
            running: None,
        }
    }

    /// Starts a pass when one is due and none runs, against the primary the orchestration
    /// published.
    pub fn tick(&mut self, cluster: &MySQLCluster, orchestrator: &Orchestrator) {
        if self.running.as_ref().is_some_and(|t| !t.is_finished()) || Instant::now() < self.due {
            return;
        }
        self.due = Instant::now() + INTERVAL;
        let target = Target {
            primary: orchestrator.published().and_then(|t| t.primary.clone()),
            tls: orchestrator.spec.tls.clone(),
        };
        let pass = self.pass.clone();
        let cluster = cluster.clone();
        self.running = Some(tokio::spawn(async move {
            if tokio::time::timeout(PASS_TIMEOUT, pass.run(&cluster, &target))
                .await
                .is_err()
            {
                tracing::warn!(cluster = %cluster_key(&cluster), "an accounts pass timed out; tried again later");
            }
        }));
    }
}

impl Drop for Accounts {
    fn drop(&mut self) {
        if let Some(task) = &self.running {
            task.abort();
        }
    }
}

/// Where a pass runs its statements.
struct Target {
    primary: Option<Member>,
    tls: Option<ServerTls>,
}

/// What the resources ask for, and what could not be taken.
struct Taken {
    wanted: Wanted,
    /// Objects whose resources exist but were refused: neither made nor undone.
    refused: BTreeSet<Key>,
    outcomes: BTreeMap<Key, Outcome>,
    /// Resources (kind, name) naming an object another resource already names.
    duplicates: BTreeMap<(&'static str, String), String>,
}

/// What a pass needs, cloned into its task.
#[derive(Clone)]
struct Pass {
    client: Client,
    namespace: String,
    name: String,
    /// The account kinds are not served (their CRDs are not installed): said once.
    unserved: Arc<AtomicBool>,
}

impl Pass {
    async fn run(&self, cluster: &MySQLCluster, target: &Target) {
        let (databases, users, grants) = match self.read().await {
            Ok(found) => found,
            Err(e) => {
                if !self.unserved.swap(true, Ordering::Relaxed) {
                    tracing::info!(cluster = %self.name, error = %e, "account resources not read (are their CRDs installed?)");
                }
                return;
            }
        };
        self.unserved.store(false, Ordering::Relaxed);
        // Only a Secret that is not there is an empty inventory: one that cannot be read or
        // parsed now must not make the pass forget what it has to undo.
        let done = match self.secret().await {
            Ok(None) => Inventory::default(),
            Ok(Some(secret)) => match secret
                .data
                .as_ref()
                .and_then(|d| d.get(ACCOUNTS_INVENTORY_KEY))
            {
                None => Inventory::default(),
                Some(bytes) => match serde_json::from_slice::<Inventory>(&bytes.0) {
                    Ok(inventory) => {
                        let (checked, dropped) = inventory.checked();
                        if dropped > 0 {
                            tracing::warn!(cluster = %self.name, dropped, "records of the accounts inventory left out: not valid names");
                        }
                        checked
                    }
                    Err(e) => {
                        tracing::warn!(cluster = %self.name, error = %e, "the accounts inventory does not parse; nothing done");
                        return;
                    }
                },
            },
            Err(e) => {
                tracing::warn!(cluster = %self.name, error = %e, "reading the accounts Secret; nothing done");
                return;
            }
        };
        if databases.is_empty()
            && users.is_empty()
            && grants.is_empty()
            && done == Inventory::default()
        {
            return;
        }
        let admin = match cluster.namespace() {
            Some(namespace) => {
                let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &namespace);
                credentials(&secrets, cluster, Credential::Admin).await.ok()
            }
            None => None,
        };
        let reserved: Vec<String> = admin.iter().map(|c| c.user.clone()).collect();
        let taken = self.wanted(&databases, &users, &grants, &reserved).await;
        let flavor = cluster.spec.flavor;
        let statements = plan::plan(&taken.wanted, &done, &taken.refused, flavor);
        let mut failed: BTreeMap<Key, String> = BTreeMap::new();
        if !statements.is_empty() {
            match self.execute(target, admin, flavor, &statements).await {
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
        let now = plan::after(&taken.wanted, &done, &failed_keys, &taken.refused);
        let primary = target
            .primary
            .as_ref()
            .map(|p| p.name.clone())
            .unwrap_or_default();
        if let Err(e) = self
            .write_secret(cluster, &now, &taken.wanted, flavor, &failed_keys)
            .await
        {
            tracing::warn!(cluster = %cluster_key(cluster), error = %e, "writing the accounts Secret");
        }
        let mut outcomes = taken.outcomes;
        for (key, why) in &failed {
            outcomes
                .entry(key.clone())
                .or_insert_with(|| Err(why.clone()));
        }
        self.report(
            &databases,
            &users,
            &grants,
            &outcomes,
            &taken.duplicates,
            &primary,
        )
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

    async fn secret(&self) -> Result<Option<Secret>, ::kube::Error> {
        let api: Api<Secret> = Api::namespaced(self.client.clone(), &self.namespace);
        api.get_opt(&accounts_secret_name(&self.name)).await
    }

    /// What the resources ask for, each checked. A resource that cannot be taken (refused,
    /// or its password unreadable) keeps its object as it is: neither made nor undone. A
    /// second resource for an object another one names is refused (the first by name wins).
    async fn wanted(
        &self,
        databases: &[MySQLDatabase],
        users: &[MySQLUser],
        grants: &[MySQLGrant],
        reserved: &[String],
    ) -> Taken {
        let mut t = Taken {
            wanted: Wanted::default(),
            refused: BTreeSet::new(),
            outcomes: BTreeMap::new(),
            duplicates: BTreeMap::new(),
        };
        let mut owners: BTreeMap<Key, String> = BTreeMap::new();
        let refuse = |t: &mut Taken, key: Key, why: String| {
            t.refused.insert(key.clone());
            t.outcomes.insert(key, Err(why));
        };
        for d in databases {
            let name = database_name(d);
            let key = Key::Database(name.clone());
            if let Some(first) = owners.get(&key) {
                t.duplicates
                    .insert(("MySQLDatabase", d.name_any()), first.clone());
                continue;
            }
            owners.insert(key.clone(), d.name_any());
            let checked = plan::check_name("database", &name, 64, true)
                .and_then(|()| check_opt_charset("characterSet", d.spec.character_set.as_deref()))
                .and_then(|()| check_opt_charset("collation", d.spec.collation.as_deref()));
            if let Err(why) = checked {
                refuse(&mut t, key, why);
                continue;
            }
            t.wanted.databases.push(Database {
                name,
                character_set: d.spec.character_set.clone(),
                collation: d.spec.collation.clone(),
                delete: d.spec.cleanup_policy == Some(CleanupPolicy::Delete),
            });
        }
        for u in users {
            let (name, host) = user_account(u);
            let key = Key::User(name.clone(), host.clone());
            if let Some(first) = owners.get(&key) {
                t.duplicates
                    .insert(("MySQLUser", u.name_any()), first.clone());
                continue;
            }
            owners.insert(key.clone(), u.name_any());
            let checked = plan::check_name("user", &name, 80, false)
                .and_then(|()| plan::check_name("host", &host, 255, false))
                .and_then(|()| check_not_reserved(&name, reserved));
            if let Err(why) = checked {
                refuse(&mut t, key, why);
                continue;
            }
            let (password, version) = match self.password(u).await {
                Ok(p) => p,
                Err(why) => {
                    refuse(&mut t, key, why);
                    continue;
                }
            };
            t.wanted.users.push(WantedUser {
                user: User {
                    name,
                    host,
                    max_user_connections: u.spec.max_user_connections.unwrap_or(0),
                    password_version: version,
                    delete: u.spec.cleanup_policy != Some(CleanupPolicy::Retain),
                },
                password,
            });
        }
        for g in grants {
            let key = grant_key(g);
            let (host, table) = grant_host_and_table(g);
            if let Some(first) = owners.get(&key) {
                t.duplicates
                    .insert(("MySQLGrant", g.name_any()), first.clone());
                continue;
            }
            owners.insert(key.clone(), g.name_any());
            let privileges: Result<BTreeSet<String>, String> = g
                .spec
                .privileges
                .iter()
                .map(|p| plan::privilege(p))
                .collect();
            let checked = plan::check_name("user", &g.spec.user, 80, false)
                .and_then(|()| plan::check_name("host", &host, 255, false))
                .and_then(|()| check_not_reserved(&g.spec.user, reserved))
                .and_then(|()| star_or_name("database", &g.spec.database))
                .and_then(|()| star_or_name("table", &table))
                .and_then(|()| {
                    if g.spec.database == "*" && table != "*" {
                        Err("a table needs a database".to_string())
                    } else {
                        Ok(())
                    }
                })
                .and_then(|()| {
                    let privileges = privileges?;
                    if privileges.is_empty() {
                        Err("no privileges listed".to_string())
                    } else if privileges.len() > 1 && privileges.contains("ALL PRIVILEGES") {
                        Err("ALL PRIVILEGES goes alone".to_string())
                    } else {
                        Ok(privileges)
                    }
                });
            let privileges = match checked {
                Ok(p) => p,
                Err(why) => {
                    refuse(&mut t, key, why);
                    continue;
                }
            };
            t.wanted.grants.push(Grant {
                user: g.spec.user.clone(),
                host,
                database: g.spec.database.clone(),
                table,
                privileges,
                grant_option: g.spec.grant_option,
                delete: g.spec.cleanup_policy != Some(CleanupPolicy::Retain),
            });
        }
        t
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

    /// Runs `statements` on the primary, in order, in a session whose `sql_mode` makes the
    /// planner's literals safe whatever `serverConfig` says; the objects whose statements
    /// failed, with the server's error (a grant whose account could not be made this pass is
    /// not tried). `Err` when the primary cannot be reached.
    async fn execute(
        &self,
        target: &Target,
        admin: Option<Credentials>,
        flavor: Flavor,
        statements: &[plan::Statement],
    ) -> Result<BTreeMap<Key, String>, String> {
        let admin = admin.ok_or("the admin credentials are not readable")?;
        let primary = target.primary.as_ref().ok_or("no primary is published")?;
        let options = opts(&primary.host, primary.port, &admin, target.tls.as_ref());
        let mut conn =
            tokio::time::timeout(Duration::from_secs(3), mysql_async::Conn::new(options))
                .await
                .map_err(|_| format!("connecting to {} timed out", primary.name))?
                .map_err(|e| format!("connecting to {}: {e}", primary.name))?;
        for setting in [
            plan::session_sql_mode(flavor).to_string(),
            format!("SET SESSION lock_wait_timeout = {LOCK_WAIT_SECONDS}"),
        ] {
            conn.query_drop(&setting)
                .await
                .map_err(|e| format!("on {}: {e}", primary.name))?;
        }
        let mut failed: BTreeMap<Key, String> = BTreeMap::new();
        for s in statements {
            if failed.contains_key(&s.key) {
                continue;
            }
            if let Key::Grant(user, host, ..) = &s.key
                && failed.contains_key(&Key::User(user.clone(), host.clone()))
            {
                failed.insert(s.key.clone(), "its account was not made".into());
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
        if let Ok(Some(current)) = self.secret().await
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
        duplicates: &BTreeMap<(&'static str, String), String>,
        primary: &str,
    ) {
        let ok: Outcome = Ok(());
        let duplicate = |kind: &'static str, name: String| {
            duplicates.get(&(kind, name)).map(|first| {
                Err(format!(
                    "{first} names the same object; this one is ignored"
                ))
            })
        };
        for d in databases {
            let outcome = duplicate("MySQLDatabase", d.name_any()).unwrap_or_else(|| {
                outcomes
                    .get(&Key::Database(database_name(d)))
                    .unwrap_or(&ok)
                    .clone()
            });
            self.set_ready(d, &outcome, primary).await;
        }
        for u in users {
            let (name, host) = user_account(u);
            let key = Key::User(name, host);
            let outcome = duplicate("MySQLUser", u.name_any())
                .unwrap_or_else(|| outcomes.get(&key).unwrap_or(&ok).clone());
            self.set_ready(u, &outcome, primary).await;
        }
        for g in grants {
            let outcome = duplicate("MySQLGrant", g.name_any())
                .unwrap_or_else(|| outcomes.get(&grant_key(g)).unwrap_or(&ok).clone());
            self.set_ready(g, &outcome, primary).await;
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

/// The database a `MySQLDatabase` makes: its `name`, else the resource's.
fn database_name(d: &MySQLDatabase) -> String {
    d.spec.name.clone().unwrap_or_else(|| d.name_any())
}

/// The account a `MySQLUser` makes: its `name` (else the resource's) at its `host` (else
/// `%`).
fn user_account(u: &MySQLUser) -> (String, String) {
    (
        u.spec.name.clone().unwrap_or_else(|| u.name_any()),
        u.spec.host.clone().unwrap_or_else(|| "%".into()),
    )
}

/// A `MySQLGrant`'s host (else `%`) and table (else `*`).
fn grant_host_and_table(g: &MySQLGrant) -> (String, String) {
    (
        g.spec.host.clone().unwrap_or_else(|| "%".into()),
        g.spec.table.clone().unwrap_or_else(|| "*".into()),
    )
}

/// What a `MySQLGrant` makes: privileges of `user@host` on `database.table`.
fn grant_key(g: &MySQLGrant) -> Key {
    let (host, table) = grant_host_and_table(g);
    Key::Grant(g.spec.user.clone(), host, g.spec.database.clone(), table)
}

/// Refuses the server's own accounts and the operator's.
fn check_not_reserved(name: &str, reserved: &[String]) -> Result<(), String> {
    if SYSTEM_USERS.contains(&name)
        || name.starts_with("lagless_")
        || reserved.iter().any(|r| r == name)
    {
        Err(format!(
            "{name}: an account of the server or of the operator, not to be managed"
        ))
    } else {
        Ok(())
    }
}

fn star_or_name(what: &str, value: &str) -> Result<(), String> {
    if value == "*" {
        Ok(())
    } else {
        plan::check_name(what, value, 64, true)
    }
}
