//! `kubectl lagless`: day-2 commands on `MySQLCluster`s, from the operator's own binary.
//!
//! kubectl runs any program named `kubectl-<name>` on the `PATH` as `kubectl <name>`; this
//! binary acts as the plugin when it is invoked under that name (a symlink or a copy named
//! `kubectl-lagless`), and as `lagless-operator kubectl …` otherwise. It speaks to the API
//! server as the user does (the kubeconfig: `KUBECONFIG`, `--kubeconfig`, `--context`,
//! `-n`), never to the members: every request is a merge patch of the spec that the operator
//! carries out, and every answer is read from the status and the Events it writes.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod render;
pub mod request;

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand, ValueEnum};
use k8s_openapi::api::events::v1::Event;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use crate::crd::MySQLCluster;
use crate::crd::tenant_move::MySQLTenantMove;
use request::Outcome;

/// The name kubectl finds the plugin by.
pub const PLUGIN_NAME: &str = "kubectl-lagless";

/// Day-2 operations on Lagless MySQLClusters (status, switchover, re-seed, pause, resume,
/// Events) and tenant moves.
#[derive(Debug, Parser)]
#[command(name = "kubectl lagless", version)]
pub struct PluginCli {
    #[command(flatten)]
    pub args: PluginArgs,
}

#[derive(Debug, clap::Args)]
pub struct PluginArgs {
    /// The kubeconfig file [default: $KUBECONFIG, else ~/.kube/config, else in-cluster].
    #[arg(long, global = true)]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context [default: the current one].
    #[arg(long, global = true)]
    pub context: Option<String>,
    /// The namespace [default: the context's].
    #[arg(long, short = 'n', global = true)]
    pub namespace: Option<String>,
    #[command(subcommand)]
    pub command: PluginCommand,
}

#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// The cluster's phase, primary, members (role, health, lag, position) and conditions.
    Status {
        /// The MySQLCluster [default: the only one in the namespace].
        cluster: Option<String>,
        #[arg(long, short, value_enum, default_value = "table")]
        output: Output,
    },
    /// Ask for a planned switchover (spec.switchover, with a new request id) and follow it.
    Switchover {
        /// The MySQLCluster [default: the one --to belongs to, else the only one].
        cluster: Option<String>,
        /// The member to promote, or `best` for the operator's choice.
        #[arg(long, default_value = crate::crd::BEST)]
        to: String,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Replace a replica's data with a fresh copy (spec.reseed, with a new request id).
    Reseed {
        /// The member, `<cluster>-<ordinal>`.
        member: String,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Stop the orchestration (spec.paused): no failover, switchover, repair or re-seed.
    Pause {
        cluster: Option<String>,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Orchestrate again after `pause`.
    Resume {
        cluster: Option<String>,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Keep a member out of read routing (spec.cordoned): the proxies send it no reads; it
    /// keeps replicating. A primary is cordoned once it is a replica.
    Cordon {
        /// The member, `<cluster>-<ordinal>`.
        member: String,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Route reads to a cordoned member again.
    Uncordon {
        /// The member, `<cluster>-<ordinal>`.
        member: String,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// Make the whole cluster read-only (spec.readOnly; `on`: writes get error 1290, reads go
    /// on) or writable again (`off`).
    ReadOnly {
        #[arg(value_enum)]
        state: crate::local::cli::Switch,
        cluster: Option<String>,
        #[command(flatten)]
        wait: WaitArgs,
    },
    /// The operator's Events on the cluster, oldest first.
    Logs { cluster: Option<String> },
    /// Move a tenant of a MySQLTenantPool to another of its clusters while it is written (a
    /// MySQLTenantMove), and follow it through its phases.
    Move {
        /// The tenant's id.
        tenant: String,
        /// The MySQLTenantPool.
        #[arg(long)]
        pool: String,
        /// The cluster to move it to, `<pool>-c<n>`.
        #[arg(long)]
        to: String,
        /// The copy's pace in MiB/s, 0 for no limit [default: the pool's
        /// spec.rebalance.copyRateMib].
        #[arg(long, value_parser = clap::value_parser!(u32).range(0..=10240))]
        copy_rate_mib: Option<u32>,
        #[command(flatten)]
        wait: WaitArgs,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Table,
    Json,
}

#[derive(Debug, Clone, clap::Args)]
pub struct WaitArgs {
    /// Return once the request is made, without waiting for the operator.
    #[arg(long)]
    pub no_wait: bool,
    /// How long to wait for the operator, in seconds.
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
}

/// Why a command failed: `Usage` for what the user must change (exit 2), else exit 1.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    #[error("{0}")]
    Usage(String),
    #[error("{0}")]
    Failed(String),
}

impl PluginError {
    fn api(what: &str) -> impl FnOnce(kube::Error) -> Self + '_ {
        move |e| Self::Failed(format!("{what}: {e}"))
    }
}

/// Whether the program was started as the kubectl plugin (`argv[0]` named `kubectl-lagless`).
pub fn invoked_as_plugin(argv0: Option<&OsString>) -> bool {
    argv0
        .map(std::path::Path::new)
        .and_then(|p| p.file_name())
        .is_some_and(|name| name == PLUGIN_NAME)
}

/// Runs the plugin on the process's arguments; returns the exit code.
pub fn main_from_args(args: impl IntoIterator<Item = OsString>) -> i32 {
    match PluginCli::try_parse_from(args) {
        Ok(cli) => run(cli.args),
        Err(e) => {
            let _ = e.print();
            if e.use_stderr() { 2 } else { 0 }
        }
    }
}

/// Runs a plugin command; returns the exit code.
pub fn run(args: PluginArgs) -> i32 {
    let result = crate::runtime()
        .map_err(|e| PluginError::Failed(format!("cannot start the runtime: {e}")))
        .and_then(|rt| rt.block_on(execute(args)));
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e}");
            match e {
                PluginError::Usage(_) => 2,
                PluginError::Failed(_) => 1,
            }
        }
    }
}

async fn client(args: &PluginArgs) -> Result<(Client, String), PluginError> {
    let options = KubeConfigOptions {
        context: args.context.clone(),
        ..KubeConfigOptions::default()
    };
    let unusable =
        |e: &dyn std::fmt::Display| PluginError::Usage(format!("no usable kubeconfig: {e}"));
    let config = match &args.kubeconfig {
        Some(path) => {
            let kubeconfig = Kubeconfig::read_from(path)
                .map_err(|e| PluginError::Usage(format!("{}: {e}", path.display())))?;
            Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .map_err(|e| unusable(&e))?
        }
        None if args.context.is_some() => Config::from_kubeconfig(&options)
            .await
            .map_err(|e| unusable(&e))?,
        // As kubectl: $KUBECONFIG, ~/.kube/config, else the pod's service account.
        None => Config::infer().await.map_err(|e| unusable(&e))?,
    };
    let namespace = args
        .namespace
        .clone()
        .unwrap_or_else(|| config.default_namespace.clone());
    let client = Client::try_from(config)
        .map_err(|e| PluginError::Failed(format!("cannot build the client: {e}")))?;
    Ok((client, namespace))
}

async fn execute(args: PluginArgs) -> Result<(), PluginError> {
    let (client, namespace) = client(&args).await?;
    let api: Api<MySQLCluster> = Api::namespaced(client.clone(), &namespace);
    match args.command {
        PluginCommand::Status { cluster, output } => {
            let cluster = find(&api, &namespace, cluster.as_deref(), None).await?;
            match output {
                Output::Table => print!("{}", render::status(&cluster)),
                Output::Json => println!(
                    "{}",
                    serde_json::to_string_pretty(&cluster.status)
                        .map_err(|e| PluginError::Failed(e.to_string()))?
                ),
            }
            Ok(())
        }
        PluginCommand::Switchover { cluster, to, wait } => {
            let member = (to != crate::crd::BEST).then_some(to.as_str());
            let cluster = find(&api, &namespace, cluster.as_deref(), member).await?;
            request::check_member(&cluster, &to, true).map_err(PluginError::Usage)?;
            let id = request::request_id(crate::clock::unix_ms());
            let name = patch(&api, &cluster, &request::switchover_patch(&id, &to)).await?;
            println!("switchover {id} of {name} to {to} requested");
            follow(&api, &name, &wait, &status_hint(&name), |c| {
                request::switchover_outcome(c, &id)
            })
            .await
        }
        PluginCommand::Reseed { member, wait } => {
            let cluster = find(&api, &namespace, None, Some(&member)).await?;
            request::check_member(&cluster, &member, false).map_err(PluginError::Usage)?;
            let id = request::request_id(crate::clock::unix_ms());
            let name = patch(&api, &cluster, &request::reseed_patch(&id, &member)).await?;
            println!("re-seed {id} of {member} requested");
            follow(&api, &name, &wait, &status_hint(&name), |c| {
                request::reseed_outcome(c, &id)
            })
            .await
        }
        PluginCommand::Pause { cluster, wait } => {
            pause(&api, &namespace, cluster, &wait, true).await
        }
        PluginCommand::Resume { cluster, wait } => {
            pause(&api, &namespace, cluster, &wait, false).await
        }
        PluginCommand::Cordon { member, wait } => {
            cordon(&api, &namespace, &member, &wait, true).await
        }
        PluginCommand::Uncordon { member, wait } => {
            cordon(&api, &namespace, &member, &wait, false).await
        }
        PluginCommand::ReadOnly {
            state,
            cluster,
            wait,
        } => {
            let on = state == crate::local::cli::Switch::On;
            let cluster = find(&api, &namespace, cluster.as_deref(), None).await?;
            let name = patch(&api, &cluster, &request::read_only_patch(on)).await?;
            println!(
                "{name}: spec.readOnly set to {on}{}",
                if wait.no_wait {
                    ""
                } else {
                    "; waiting for the operator"
                }
            );
            follow(&api, &name, &wait, &status_hint(&name), |c| {
                request::read_only_outcome(c, on)
            })
            .await
        }
        PluginCommand::Move {
            tenant,
            pool,
            to,
            copy_rate_mib,
            wait,
        } => {
            lagless_directory::TenantId::parse(&tenant)
                .map_err(|e| PluginError::Usage(e.to_string()))?;
            let moves: Api<MySQLTenantMove> = Api::namespaced(client, &namespace);
            let unix_secs = i64::try_from(crate::clock::unix_ms() / 1000).unwrap_or(i64::MAX);
            let mv = MySQLTenantMove::of_tenant(&pool, &tenant, &to, copy_rate_mib, unix_secs);
            let made = moves
                .create(&PostParams::default(), &mv)
                .await
                .map_err(PluginError::api("creating the MySQLTenantMove"))?;
            let name = made.metadata.name.clone().unwrap_or_default();
            println!("MySQLTenantMove {name}: tenant {tenant} of pool {pool} to {to}");
            let hint = format!("`kubectl get tenantmove {name}` follows it");
            follow(&moves, &name, &wait, &hint, request::move_outcome).await
        }
        PluginCommand::Logs { cluster } => {
            let cluster = find(&api, &namespace, cluster.as_deref(), None).await?;
            let name = cluster.metadata.name.clone().unwrap_or_default();
            let events: Api<Event> = Api::namespaced(client, &namespace);
            let found = events
                .list(&ListParams::default())
                .await
                .map_err(PluginError::api("listing the Events"))?;
            let regarding = |e: &Event| {
                e.regarding.as_ref().is_some_and(|r| {
                    r.kind.as_deref() == Some("MySQLCluster") && r.name.as_deref() == Some(&name)
                })
            };
            print!(
                "{}",
                render::events(found.items.into_iter().filter(regarding).collect())
            );
            Ok(())
        }
    }
}

/// `pause` (`paused`) or `resume`.
async fn pause(
    api: &Api<MySQLCluster>,
    namespace: &str,
    cluster: Option<String>,
    wait: &WaitArgs,
    paused: bool,
) -> Result<(), PluginError> {
    let cluster = find(api, namespace, cluster.as_deref(), None).await?;
    let name = patch(api, &cluster, &request::paused_patch(paused)).await?;
    println!(
        "{name}: spec.paused set to {paused}{}",
        if wait.no_wait {
            ""
        } else {
            "; waiting for the operator"
        }
    );
    follow(api, &name, wait, &status_hint(&name), |c| {
        request::pause_outcome(c, paused)
    })
    .await
}

/// How a user follows a request on cluster `name` after the plugin stopped waiting.
fn status_hint(name: &str) -> String {
    format!("`kubectl lagless status {name}` follows it")
}

/// Times a patch made at the version read is made again after a conflict.
const CONFLICT_RETRIES: u32 = 5;

/// `cordon` (`on`) or `uncordon` of `member`.
async fn cordon(
    api: &Api<MySQLCluster>,
    namespace: &str,
    member: &str,
    wait: &WaitArgs,
    on: bool,
) -> Result<(), PluginError> {
    let mut cluster = find(api, namespace, None, Some(member)).await?;
    request::check_member(&cluster, member, false).map_err(PluginError::Usage)?;
    let name = cluster.metadata.name.clone().unwrap_or_default();
    // The list is patched at the version read; the operator's status writes change that
    // version too, so a conflict is answered by reading again.
    let mut attempts = 0;
    loop {
        let body = request::cordon_patch(&cluster, member, on);
        match api
            .patch(&name, &PatchParams::default(), &Patch::Merge(&body))
            .await
        {
            Ok(_) => break,
            Err(kube::Error::Api(e)) if e.code == 409 && attempts < CONFLICT_RETRIES => {
                attempts += 1;
                cluster = api
                    .get(&name)
                    .await
                    .map_err(PluginError::api("reading the MySQLCluster"))?;
            }
            Err(e) => return Err(PluginError::api("patching the MySQLCluster")(e)),
        }
    }
    println!(
        "{name}: {member} {} spec.cordoned{}",
        if on { "added to" } else { "removed from" },
        if wait.no_wait {
            ""
        } else {
            "; waiting for the operator"
        }
    );
    follow(api, &name, wait, &status_hint(&name), |c| {
        request::cordon_outcome(c, member, on)
    })
    .await
}

/// The cluster named, else the one `member` belongs to, else the only one in the namespace.
async fn find(
    api: &Api<MySQLCluster>,
    namespace: &str,
    name: Option<&str>,
    member: Option<&str>,
) -> Result<MySQLCluster, PluginError> {
    if let Some(name) = name {
        return api
            .get_opt(name)
            .await
            .map_err(PluginError::api("reading the MySQLCluster"))?
            .ok_or_else(|| {
                PluginError::Usage(format!("no MySQLCluster {name} in namespace {namespace}"))
            });
    }
    let all = api
        .list(&ListParams::default())
        .await
        .map_err(PluginError::api("listing the MySQLClusters"))?
        .items;
    let names = || {
        all.iter()
            .filter_map(|c| c.metadata.name.clone())
            .collect::<Vec<_>>()
            .join(", ")
    };
    if let Some(member) = member {
        return all
            .iter()
            .find(|c| request::check_member(c, member, false).is_ok())
            .cloned()
            .ok_or_else(|| {
                PluginError::Usage(format!(
                    "{member} is a member of no MySQLCluster in namespace {namespace} (there: {})",
                    names()
                ))
            });
    }
    match &all[..] {
        [one] => Ok(one.clone()),
        [] => Err(PluginError::Usage(format!(
            "no MySQLCluster in namespace {namespace}"
        ))),
        _ => Err(PluginError::Usage(format!(
            "several MySQLClusters in namespace {namespace} ({}): name one",
            names()
        ))),
    }
}

/// Merge-patches the cluster's spec; returns its name.
async fn patch(
    api: &Api<MySQLCluster>,
    cluster: &MySQLCluster,
    body: &serde_json::Value,
) -> Result<String, PluginError> {
    let name = cluster.metadata.name.clone().unwrap_or_default();
    api.patch(&name, &PatchParams::default(), &Patch::Merge(body))
        .await
        .map_err(PluginError::api("patching the MySQLCluster"))?;
    Ok(name)
}

/// Reads the cluster every second until `outcome` says done or failed, printing each new
/// progress line, or until the timeout.
async fn follow<K>(
    api: &Api<K>,
    name: &str,
    wait: &WaitArgs,
    hint: &str,
    outcome: impl Fn(&K) -> Outcome,
) -> Result<(), PluginError>
where
    K: kube::Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    if wait.no_wait {
        return Ok(());
    }
    let began = Instant::now();
    let deadline = began + Duration::from_secs(wait.timeout);
    let mut last = String::new();
    loop {
        let object = api
            .get(name)
            .await
            .map_err(|e| PluginError::Failed(format!("reading {} {name}: {e}", K::kind(&()))))?;
        match outcome(&object) {
            Outcome::Done(message) => {
                println!("{message}");
                return Ok(());
            }
            Outcome::Failed(message) => return Err(PluginError::Failed(message)),
            Outcome::Waiting(now) => {
                if now != last {
                    println!("  {:>5.1} s  {now}", began.elapsed().as_secs_f64());
                    last = now;
                }
            }
        }
        if Instant::now() >= deadline {
            return Err(PluginError::Failed(format!(
                "not done within {} s (last: {last}); the request stands: {hint}",
                wait.timeout
            )));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plugin_is_recognised_by_its_program_name() {
        let name = |s: &str| Some(OsString::from(s));
        assert!(invoked_as_plugin(name("kubectl-lagless").as_ref()));
        assert!(invoked_as_plugin(
            name("/usr/local/bin/kubectl-lagless").as_ref()
        ));
        assert!(!invoked_as_plugin(
            name("/usr/bin/lagless-operator").as_ref()
        ));
        assert!(!invoked_as_plugin(name("kubectl-lagless-old").as_ref()));
        assert!(!invoked_as_plugin(None));
    }

    #[test]
    fn arguments_parse_as_kubectl_passes_them() {
        let cli = PluginCli::try_parse_from([
            "kubectl-lagless",
            "-n",
            "prod",
            "switchover",
            "shop",
            "--to",
            "shop-2",
            "--no-wait",
        ])
        .unwrap();
        assert_eq!(cli.args.namespace.as_deref(), Some("prod"));
        match cli.args.command {
            PluginCommand::Switchover { cluster, to, wait } => {
                assert_eq!(cluster.as_deref(), Some("shop"));
                assert_eq!(to, "shop-2");
                assert!(wait.no_wait);
            }
            other => panic!("{other:?}"),
        }
        let cli = PluginCli::try_parse_from(["kubectl-lagless", "switchover"]).unwrap();
        assert!(
            matches!(cli.args.command, PluginCommand::Switchover { ref to, .. } if to == "best")
        );
    }
}
