//! `local apply -f FILE`: what a changed `MySQLCluster` file changes on a running cluster.
//! A change of `spec.serverConfig` is rolled through the members (see
//! [`crate::orchestrate::roll`]); fields with a command of their own are left to it, and the
//! rest need the cluster started again from the file.

use std::collections::BTreeMap;

use crate::crd::MySQLCluster;

/// The `serverConfig` changes from `running` to `wanted`, one line each for people (empty:
/// nothing to change). Refused, naming each field and how to change it, when the file changes
/// anything else of the spec or names another cluster.
pub fn config_changes(
    running: &MySQLCluster,
    wanted: &MySQLCluster,
) -> Result<Vec<String>, String> {
    let (have, want) = (
        running.metadata.name.as_deref().unwrap_or_default(),
        wanted.metadata.name.as_deref().unwrap_or_default(),
    );
    if have != want {
        return Err(format!(
            "the file describes cluster {want}, not {have}: `apply` changes the running cluster"
        ));
    }
    let other = other_fields(running, wanted)?;
    if !other.is_empty() {
        return Err(format!(
            "`apply` changes spec.serverConfig only; the file also changes:\n  {}",
            other.join("\n  ")
        ));
    }
    Ok(diff(
        &running.spec.server_config,
        &wanted.spec.server_config,
    ))
}

/// The spec's fields other than `serverConfig` that differ, each with how to change it.
fn other_fields(running: &MySQLCluster, wanted: &MySQLCluster) -> Result<Vec<String>, String> {
    let as_map = |c: &MySQLCluster| match serde_json::to_value(&c.spec) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        Ok(_) => Err("the spec is not an object".to_string()),
        Err(e) => Err(format!("the spec cannot be compared: {e}")),
    };
    let (mut have, mut want) = (as_map(running)?, as_map(wanted)?);
    have.remove("serverConfig");
    want.remove("serverConfig");
    let mut fields: Vec<&String> = have.keys().chain(want.keys()).collect();
    fields.sort_unstable();
    fields.dedup();
    Ok(fields
        .into_iter()
        .filter(|f| have.get(*f) != want.get(*f))
        .map(|f| format!("spec.{f}: {}", how_to_change(f)))
        .collect())
}

fn how_to_change(field: &str) -> &'static str {
    match field {
        "replicas" => "use `lagless-operator local scale N`",
        "paused" => "use `lagless-operator local pause` or `resume`",
        "cordoned" => "use `lagless-operator local cordon MEMBER` or `uncordon MEMBER`",
        "readOnly" => "use `lagless-operator local read-only on|off`",
        "switchover" => "use `lagless-operator local switchover [--to MEMBER]`",
        "reseed" => "use `lagless-operator local reseed MEMBER`",
        "image" => {
            "the local runtime runs the mariadbd it finds ($LAGLESS_MARIADBD, else PATH), not \
             images"
        }
        _ => "not changed on a running local cluster: `down`, then `up -f FILE`",
    }
}

/// `key: old -> new`, `+key=new` and `-key` lines, in key order.
fn diff(have: &BTreeMap<String, String>, want: &BTreeMap<String, String>) -> Vec<String> {
    let mut keys: Vec<&String> = have.keys().chain(want.keys()).collect();
    keys.sort_unstable();
    keys.dedup();
    keys.into_iter()
        .filter_map(|k| match (have.get(k), want.get(k)) {
            (Some(a), Some(b)) if a != b => Some(format!("{k}: {a} -> {b}")),
            (None, Some(b)) => Some(format!("+{k}={b}")),
            (Some(a), None) => Some(format!("-{k} (was {a})")),
            _ => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(body: &str) -> MySQLCluster {
        let text = format!(
            "apiVersion: lagless.dev/v1alpha1\nkind: MySQLCluster\nmetadata:\n  name: shop\nspec:\n  replicas: 3\n{body}"
        );
        crate::local::manifest::parse(&text, std::path::Path::new("t.yaml")).unwrap()
    }

    #[test]
    fn server_config_changes_are_listed_in_key_order() {
        let running =
            cluster("  serverConfig:\n    max_connections: '151'\n    wait_timeout: '60'\n");
        let wanted =
            cluster("  serverConfig:\n    max_connections: '300'\n    long_query_time: '2'\n");
        assert_eq!(
            config_changes(&running, &wanted).unwrap(),
            [
                "+long_query_time=2",
                "max_connections: 151 -> 300",
                "-wait_timeout (was 60)"
            ]
        );
        assert!(config_changes(&running, &running).unwrap().is_empty());
    }

    #[test]
    fn other_changes_are_refused_with_how_to_make_them() {
        let running = cluster("");
        let wanted = cluster("  paused: true\n  image: mariadb:11.4\n  serverConfig:\n    a: b\n");
        let refused = config_changes(&running, &wanted).unwrap_err();
        assert!(
            refused.contains("spec.paused: use `lagless-operator local pause`"),
            "{refused}"
        );
        assert!(
            refused.contains("spec.image: the local runtime runs the mariadbd"),
            "{refused}"
        );
        assert!(!refused.contains("serverConfig:"), "{refused}");
        let mut other = cluster("");
        other.metadata.name = Some("cart".into());
        let refused = config_changes(&running, &other).unwrap_err();
        assert!(refused.contains("cluster cart, not shop"), "{refused}");
        let proxies = cluster("  proxy:\n    replicas: 5\n");
        let refused = config_changes(&running, &proxies).unwrap_err();
        assert!(
            refused.contains("spec.proxy: not changed on a running"),
            "{refused}"
        );
    }
}
