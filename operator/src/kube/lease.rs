//! Leader election through a `coordination.k8s.io/v1` Lease: one operator replica holds it
//! and reconciles; the others wait to take it over once it expires.
//!
//! Every write carries the `resourceVersion` it was decided on, so two replicas deciding at
//! once cannot both win: the API server refuses the second write with 409 Conflict.

use std::time::Duration;

use ::kube::Client;
use ::kube::api::{Api, ObjectMeta, PostParams};
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::{SignedDuration, Timestamp};

/// How long a holder's claim lasts after its last renewal.
pub const LEASE_DURATION_SECONDS: i32 = 15;

/// How often the holder renews (and a candidate retries).
pub const RENEW_INTERVAL: Duration = Duration::from_secs(5);

/// What a replica should do with the Lease as it found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// No Lease exists: create it, held by us.
    Create,
    /// We hold it: renew it.
    Renew,
    /// Nobody holds it, or the holder's claim has expired: take it over.
    TakeOver,
    /// Another replica holds it until `expires`.
    Wait { holder: String, expires: Timestamp },
}

/// Decides from the Lease as read (`None`: it does not exist), our identity and the time.
pub fn decide(lease: Option<&Lease>, identity: &str, now: Timestamp) -> Decision {
    let Some(lease) = lease else {
        return Decision::Create;
    };
    let spec = lease.spec.clone().unwrap_or_default();
    let holder = spec.holder_identity.unwrap_or_default();
    if holder == identity {
        return Decision::Renew;
    }
    if holder.is_empty() {
        return Decision::TakeOver;
    }
    let seconds = spec
        .lease_duration_seconds
        .unwrap_or(LEASE_DURATION_SECONDS);
    let last = spec.renew_time.or(spec.acquire_time).map(|t| t.0);
    // A holder that never wrote a time has no claim to wait out.
    let expires = last.and_then(|t| {
        t.checked_add(SignedDuration::from_secs(seconds.into()))
            .ok()
    });
    match expires {
        Some(expires) if expires > now => Decision::Wait { holder, expires },
        _ => Decision::TakeOver,
    }
}

/// The Lease to write for `decision` (nothing for [`Decision::Wait`]). A renewal or takeover
/// keeps the read `resourceVersion`, which makes the write conditional.
pub fn desired(
    lease: Option<&Lease>,
    decision: &Decision,
    name: &str,
    namespace: &str,
    identity: &str,
    now: Timestamp,
) -> Option<Lease> {
    let mut lease = match (decision, lease) {
        (Decision::Wait { .. }, _) => return None,
        (Decision::Create, _) | (_, None) => Lease {
            metadata: ObjectMeta {
                name: Some(name.to_string()),
                namespace: Some(namespace.to_string()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec::default()),
        },
        (_, Some(lease)) => lease.clone(),
    };
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    match decision {
        Decision::Renew => {}
        Decision::Create => {
            spec.acquire_time = Some(MicroTime(now));
            spec.lease_transitions = Some(0);
        }
        Decision::TakeOver => {
            spec.acquire_time = Some(MicroTime(now));
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0).saturating_add(1));
        }
        Decision::Wait { .. } => return None,
    }
    spec.holder_identity = Some(identity.to_string());
    spec.lease_duration_seconds = Some(LEASE_DURATION_SECONDS);
    spec.renew_time = Some(MicroTime(now));
    Some(lease)
}

/// One replica's side of the election.
pub struct LeaderElector {
    api: Api<Lease>,
    name: String,
    namespace: String,
    identity: String,
}

impl LeaderElector {
    pub fn new(client: Client, namespace: &str, name: &str, identity: &str) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.to_string(),
            namespace: namespace.to_string(),
            identity: identity.to_string(),
        }
    }

    /// One round: read the Lease and acquire or renew it if we may. `Ok(true)`: we hold it
    /// now. `Ok(false)`: another replica does, or won the race.
    pub async fn try_acquire(&self) -> Result<bool, ::kube::Error> {
        let existing = self.api.get_opt(&self.name).await?;
        let now = Timestamp::now();
        let decision = decide(existing.as_ref(), &self.identity, now);
        let Some(lease) = desired(
            existing.as_ref(),
            &decision,
            &self.name,
            &self.namespace,
            &self.identity,
            now,
        ) else {
            if let Decision::Wait { holder, .. } = &decision {
                tracing::debug!(lease = %self.name, %holder, "another replica leads");
            }
            return Ok(false);
        };
        let written = match decision {
            Decision::Create => self.api.create(&PostParams::default(), &lease).await,
            _ => {
                self.api
                    .replace(&self.name, &PostParams::default(), &lease)
                    .await
            }
        };
        match written {
            Ok(_) => {
                if decision != Decision::Renew {
                    tracing::info!(lease = %self.name, identity = %self.identity, "acquired the Lease");
                }
                Ok(true)
            }
            // Someone else wrote first: they lead.
            Err(::kube::Error::Api(status))
                if status.is_conflict() || status.is_already_exists() =>
            {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Returns once this replica holds the Lease.
    pub async fn acquire(&self) {
        loop {
            match self.try_acquire().await {
                Ok(true) => return,
                Ok(false) => {}
                Err(e) => tracing::warn!(lease = %self.name, error = %e, "Lease request failed"),
            }
            tokio::time::sleep(RENEW_INTERVAL).await;
        }
    }

    /// Renews the Lease until it is lost, then returns: another replica took it, or no renewal
    /// succeeded for a whole lease duration (another replica may lead by now).
    pub async fn hold(&self) {
        let mut last_renewal = tokio::time::Instant::now();
        let duration = Duration::from_secs(LEASE_DURATION_SECONDS.unsigned_abs().into());
        loop {
            tokio::time::sleep(RENEW_INTERVAL).await;
            // Taken before the request, like the renewTime it writes: the claim runs from here.
            let attempt = tokio::time::Instant::now();
            // A request that hangs (a half-open connection) must not keep a stale leader
            // acting: it counts as a failed renewal.
            let renewed = tokio::time::timeout(RENEW_INTERVAL, self.try_acquire())
                .await
                .map_err(|_| "no answer within the renew interval".to_string())
                .and_then(|r| r.map_err(|e| e.to_string()));
            match renewed {
                Ok(true) => last_renewal = attempt,
                Ok(false) => {
                    tracing::error!(lease = %self.name, "the Lease was taken over");
                    return;
                }
                Err(e) => {
                    tracing::warn!(lease = %self.name, error = %e, "renewing the Lease failed");
                    // Give up before the claim lapses, so two leaders never overlap.
                    if last_renewal.elapsed() + RENEW_INTERVAL >= duration {
                        tracing::error!(lease = %self.name, "could not renew the Lease in time");
                        return;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
