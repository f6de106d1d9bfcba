//! The API versions the controller depends on, checked once at start-up by discovery: a
//! missing one fails the start with a message naming it and the Kubernetes version required,
//! rather than every reconcile with a 404.
//!
//! `policy/v1` (PodDisruptionBudgets, Kubernetes 1.21) is the one optional API: without it the
//! controller applies no PodDisruptionBudget and says so on each cluster (a Warning Event and
//! the `DisruptionBudget` condition). Everything else the builders make exists since 1.19.

use ::kube::Client;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{APIGroupList, APIResourceList};

/// The oldest Kubernetes release the controller runs against (`events.k8s.io/v1`).
pub const MINIMUM_KUBERNETES: &str = "1.19";

/// The release the CRDs need: their CEL validation rules (`x-kubernetes-validations`), which
/// older API servers refuse.
pub const CRD_KUBERNETES: &str = "1.25";

/// Group versions the controller cannot run without, and the Kubernetes release that added
/// each.
pub const REQUIRED: &[(&str, &str)] = &[
    ("apps/v1", "1.9"),
    ("networking.k8s.io/v1", "1.8"),
    ("coordination.k8s.io/v1", "1.14"),
    ("events.k8s.io/v1", "1.19"),
];

/// The operator's own API, served once the CRDs are installed.
pub const LAGLESS_API: &str = "lagless.dev/v1alpha1";

/// The resources of [`LAGLESS_API`] the controllers watch.
pub const LAGLESS_RESOURCES: &[&str] = &["mysqlclusters", "mysqltenantpools", "mysqltenantmoves"];

/// What the API server offers among the APIs the controller can do without.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Apis {
    /// `policy/v1` PodDisruptionBudgets (Kubernetes 1.21).
    pub policy_v1: bool,
}

impl Default for Apis {
    /// Everything a supported Kubernetes release serves.
    fn default() -> Self {
        Self { policy_v1: true }
    }
}

/// Why the controller cannot start.
#[derive(Debug, thiserror::Error)]
pub enum Missing {
    #[error(
        "the API server does not serve {}: lagless-operator needs Kubernetes {MINIMUM_KUBERNETES} \
         or later ({CRD_KUBERNETES} or later for the CRDs' validation rules)",
        .0.join(", ")
    )]
    Kubernetes(Vec<String>),
    #[error(
        "the API server does not serve {LAGLESS_API} {}: install the CRDs (kubectl apply -f \
         crds/, or the Helm chart)",
        .0.join(", ")
    )]
    Crds(Vec<String>),
    #[error("API discovery failed: {0}")]
    Discovery(#[source] ::kube::Error),
}

/// Whether `groups` serves `group_version` (`group/version`).
fn serves(groups: &APIGroupList, group_version: &str) -> bool {
    groups
        .groups
        .iter()
        .flat_map(|g| &g.versions)
        .any(|v| v.group_version == group_version)
}

/// The optional APIs `groups` (the answer to `GET /apis`) serves, or the required group
/// versions it lacks.
pub fn check_groups(groups: &APIGroupList) -> Result<Apis, Missing> {
    let missing: Vec<String> = REQUIRED
        .iter()
        .filter(|(gv, _)| !serves(groups, gv))
        .map(|(gv, since)| format!("{gv} (Kubernetes {since})"))
        .collect();
    if !missing.is_empty() {
        return Err(Missing::Kubernetes(missing));
    }
    Ok(Apis {
        policy_v1: serves(groups, "policy/v1"),
    })
}

/// The operator's resources that `served` (the answer for [`LAGLESS_API`], `None` when the
/// group version is not served at all) lacks.
pub fn check_crds(served: Option<&APIResourceList>) -> Result<(), Missing> {
    let missing: Vec<String> = LAGLESS_RESOURCES
        .iter()
        .filter(|r| served.is_none_or(|list| !list.resources.iter().any(|s| s.name == **r)))
        .map(|r| (*r).to_string())
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Missing::Crds(missing))
    }
}

/// Asks the API server (`GET /apis`, `GET /apis/lagless.dev/v1alpha1`) what it serves.
pub async fn discover(client: &Client) -> Result<Apis, Missing> {
    let groups = client.list_api_groups().await.map_err(Missing::Discovery)?;
    let apis = check_groups(&groups)?;
    let lagless = match client.list_api_group_resources(LAGLESS_API).await {
        Ok(list) => Some(list),
        Err(::kube::Error::Api(status)) if status.code == 404 => None,
        Err(e) => return Err(Missing::Discovery(e)),
    };
    check_crds(lagless.as_ref())?;
    Ok(apis)
}

/// The `DisruptionBudget` condition's message where `policy/v1` is not served.
pub const NO_POLICY_V1: &str = "the API server does not serve policy/v1 (Kubernetes before 1.21): \
     no PodDisruptionBudget is applied, so a node drain may stop more than one member at a time";

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{
        APIGroup, APIResource, GroupVersionForDiscovery,
    };

    use super::*;

    fn groups(versions: &[&str]) -> APIGroupList {
        APIGroupList {
            groups: versions
                .iter()
                .map(|gv| APIGroup {
                    name: gv.split('/').next().unwrap_or_default().to_string(),
                    versions: vec![GroupVersionForDiscovery {
                        group_version: (*gv).to_string(),
                        version: gv.rsplit('/').next().unwrap_or_default().to_string(),
                    }],
                    ..APIGroup::default()
                })
                .collect(),
        }
    }

    const V1_20: &[&str] = &[
        "apps/v1",
        "networking.k8s.io/v1",
        "coordination.k8s.io/v1",
        "events.k8s.io/v1",
        "policy/v1beta1",
    ];

    #[test]
    fn kubernetes_1_20_runs_without_disruption_budgets() {
        assert_eq!(
            check_groups(&groups(V1_20)).unwrap(),
            Apis { policy_v1: false }
        );
        let mut v1_21 = V1_20.to_vec();
        v1_21.push("policy/v1");
        assert_eq!(check_groups(&groups(&v1_21)).unwrap(), Apis::default());
    }

    #[test]
    fn a_missing_required_api_names_it_and_the_release_needed() {
        let v1_18: Vec<&str> = V1_20
            .iter()
            .copied()
            .filter(|gv| *gv != "events.k8s.io/v1")
            .collect();
        let message = check_groups(&groups(&v1_18)).unwrap_err().to_string();
        assert!(
            message.contains("events.k8s.io/v1 (Kubernetes 1.19)")
                && message.contains("needs Kubernetes 1.19 or later"),
            "{message}"
        );
    }

    #[test]
    fn missing_crds_are_named() {
        let message = check_crds(None).unwrap_err().to_string();
        assert!(
            message.contains("mysqlclusters, mysqltenantpools, mysqltenantmoves")
                && message.contains("crds/"),
            "{message}"
        );
        let only_clusters = APIResourceList {
            group_version: LAGLESS_API.to_string(),
            resources: vec![APIResource {
                name: "mysqlclusters".to_string(),
                ..APIResource::default()
            }],
        };
        let message = check_crds(Some(&only_clusters)).unwrap_err().to_string();
        assert!(
            message.contains("mysqltenantpools, mysqltenantmoves")
                && !message.contains("mysqlclusters"),
            "{message}"
        );
        let all = APIResourceList {
            resources: ["mysqlclusters", "mysqltenantpools", "mysqltenantmoves"]
                .map(|name| APIResource {
                    name: name.to_string(),
                    ..APIResource::default()
                })
                .to_vec(),
            ..only_clusters
        };
        assert!(check_crds(Some(&all)).is_ok());
    }
}
