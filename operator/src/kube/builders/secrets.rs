//! The accounts the operator's servers use ([`Credential`]) and the Secrets generated for
//! those the spec names none for.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::crd::{MySQLCluster, MySQLClusterSpec};

use super::{
    ACCOUNTS_INVENTORY_KEY, BuildError, Component, Context, PROXY_USERS_KEY, accounts_secret_name,
    agent_secret_name, name,
};

/// An account the operator's servers use, held in a Secret with keys `username` and
/// `password`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Credential {
    /// The operator's administrative account.
    Admin,
    /// The account replicas connect to their source with.
    Replication,
    /// The seeding agents' token (the Secret's `password`); never named by the spec.
    Agent,
    /// The proxies read accounts with it: `SELECT` on `mysql.global_priv`, nothing else.
    /// Named by the spec in a tenant pool's clusters, which share it.
    Lookup,
    /// The proxies read positions with it: replication status, nothing else. Shared like
    /// [`Credential::Lookup`].
    Monitor,
    /// The token the operator pushes new topologies to the proxies with (the Secret's
    /// `password`); never named by the spec.
    ProxyAdmin,
}

impl Credential {
    pub const ALL: [Credential; 6] = [
        Credential::Admin,
        Credential::Replication,
        Credential::Agent,
        Credential::Lookup,
        Credential::Monitor,
        Credential::ProxyAdmin,
    ];

    /// The purpose, as the key of the generated passwords and the suffix of generated names.
    pub fn as_str(self) -> &'static str {
        match self {
            Credential::Admin => "admin",
            Credential::Replication => "replication",
            Credential::Agent => "agent",
            Credential::Lookup => "lookup",
            Credential::Monitor => "monitor",
            Credential::ProxyAdmin => "proxy-admin",
        }
    }

    /// The user name a generated Secret holds.
    pub fn default_username(self) -> &'static str {
        match self {
            Credential::Admin => "lagless_admin",
            Credential::Replication => "lagless_repl",
            Credential::Agent => "lagless-agent",
            Credential::Lookup => "lagless_lookup",
            Credential::Monitor => "lagless_monitor",
            Credential::ProxyAdmin => "lagless-operator",
        }
    }

    /// The Secret that holds this credential for `cluster`: the one the spec names, or the
    /// generated `<cluster>-<purpose>`.
    pub fn secret_name(self, cluster: &MySQLCluster) -> Result<String, BuildError> {
        let name = name(cluster)?;
        let credentials = &cluster.spec.credentials;
        Ok(match self {
            Credential::Admin => credentials.admin_secret(name),
            Credential::Replication => credentials.replication_secret(name),
            Credential::Agent => agent_secret_name(name),
            Credential::Lookup => credentials.lookup_secret(name),
            Credential::Monitor => credentials.monitor_secret(name),
            Credential::ProxyAdmin => format!("{name}-{}", self.as_str()),
        })
    }

    /// Whether the spec names a Secret for this credential (else it is generated).
    pub fn is_user_supplied(self, spec: &MySQLClusterSpec) -> bool {
        match self {
            Credential::Admin => spec.credentials.admin_secret_name.is_some(),
            Credential::Replication => spec.credentials.replication_secret_name.is_some(),
            Credential::Lookup => spec.credentials.lookup_secret_name.is_some(),
            Credential::Monitor => spec.credentials.monitor_secret_name.is_some(),
            Credential::Agent | Credential::ProxyAdmin => false,
        }
    }
}

/// The credential Secrets to create for the credentials the spec names no Secret for:
/// `<cluster>-admin`, `<cluster>-replication`, `<cluster>-lookup` and `<cluster>-monitor`,
/// and always `<cluster>-agent` (the agent token) and `<cluster>-proxy-admin`, each with
/// `username` (see [`Credential::default_username`]) and `password`. `generated` maps each
/// purpose ([`Credential::as_str`]) to a password the caller generated; a
/// purpose the spec covers needs none. The caller must generate each password once and keep
/// the Secret: a new password does not change the accounts already created.
pub fn credentials_secrets(
    cluster: &MySQLCluster,
    generated: &BTreeMap<String, String>,
) -> Result<Vec<Secret>, BuildError> {
    let ctx = Context::new(cluster)?;
    let mut secrets = Vec::new();
    for credential in Credential::ALL {
        if credential.is_user_supplied(ctx.spec) {
            continue;
        }
        secrets.push(credential_secret(
            ctx.meta(credential.secret_name(cluster)?, Component::Mysql),
            credential,
            generated,
        )?);
    }
    Ok(secrets)
}

/// The Secret `meta` names of `credential`'s account: its `username`, and the `password`
/// `generated` holds for it (by [`Credential::as_str`]).
pub(super) fn credential_secret(
    meta: ObjectMeta,
    credential: Credential,
    generated: &BTreeMap<String, String>,
) -> Result<Secret, BuildError> {
    let password = generated
        .get(credential.as_str())
        .filter(|p| !p.is_empty())
        .ok_or(BuildError::MissingPassword(credential.as_str()))?;
    Ok(Secret {
        metadata: meta,
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([
            (
                "username".to_string(),
                ByteString(credential.default_username().as_bytes().to_vec()),
            ),
            (
                "password".to_string(),
                ByteString(password.as_bytes().to_vec()),
            ),
        ])),
        ..Secret::default()
    })
}

/// The Secret `<cluster>-accounts` (see [`accounts_secret_name`]), owned by the cluster.
pub fn accounts_secret(
    cluster: &MySQLCluster,
    users_json: &str,
    inventory_json: &str,
) -> Result<Secret, BuildError> {
    let ctx = Context::new(cluster)?;
    Ok(Secret {
        metadata: ctx.meta(accounts_secret_name(ctx.name), Component::Proxy),
        data: Some(BTreeMap::from([
            (
                PROXY_USERS_KEY.to_string(),
                ByteString(users_json.as_bytes().to_vec()),
            ),
            (
                ACCOUNTS_INVENTORY_KEY.to_string(),
                ByteString(inventory_json.as_bytes().to_vec()),
            ),
        ])),
        ..Secret::default()
    })
}
