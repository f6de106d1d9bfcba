//! Reading a `MySQLCluster` from a file, with errors that name the line or the field.

use std::path::Path;

use serde_json::Value;

use crate::crd::{Flavor, MySQLCluster};

use super::LocalError;

/// Parses and validates the manifest in `text` (`source` names it in errors).
pub fn parse(text: &str, source: &Path) -> Result<MySQLCluster, LocalError> {
    let bad = |message: String| LocalError::Manifest {
        path: source.to_path_buf(),
        message,
    };
    let raw: Value = serde_saphyr::from_str(text).map_err(|e| bad(e.to_string()))?;
    if !raw.is_object() {
        return Err(bad(
            "expected a MySQLCluster object (apiVersion, kind, metadata, spec)".into(),
        ));
    }
    let kind = raw.get("kind").and_then(Value::as_str);
    if kind != Some("MySQLCluster") {
        return Err(bad(format!(
            "kind: expected MySQLCluster, found {}",
            kind.map_or("nothing".to_string(), |k| format!("`{k}`"))
        )));
    }
    let api = raw.get("apiVersion").and_then(Value::as_str);
    if api != Some("lagless.dev/v1alpha1") {
        return Err(bad(format!(
            "apiVersion: expected lagless.dev/v1alpha1, found {}",
            api.map_or("nothing".to_string(), |a| format!("`{a}`"))
        )));
    }
    let cluster: MySQLCluster = serde_path_to_error::deserialize(raw.clone()).map_err(|e| {
        let path = e.path().to_string();
        bad(format!("{path}: {}", e.into_inner()))
    })?;
    // Kubernetes prunes unknown fields silently; here a typo would be lost just as silently.
    let known = serde_json::to_value(&cluster).map_err(|e| bad(e.to_string()))?;
    if let Some(path) = unknown_field(&raw, &known, String::new()) {
        return Err(bad(format!("{path}: unknown field")));
    }
    let name = cluster.metadata.name.as_deref().unwrap_or_default();
    if name.is_empty() {
        return Err(bad("metadata.name: required".into()));
    }
    if !valid_name(name) {
        return Err(bad(format!(
            "metadata.name: `{name}` must be lower-case letters, digits and '-', start with a \
             letter and be at most 40 characters"
        )));
    }
    cluster.validate().map_err(|e| bad(e.to_string()))?;
    if cluster.spec.flavor == Flavor::Mysql {
        return Err(bad(
            "spec.flavor: the local runtime runs MariaDB servers only; use `flavor: mariadb`"
                .into(),
        ));
    }
    Ok(cluster)
}

/// Reads and parses the manifest at `path`.
pub fn load(path: &Path) -> Result<MySQLCluster, LocalError> {
    let text = std::fs::read_to_string(path).map_err(LocalError::io(path))?;
    parse(&text, path)
}

fn valid_name(name: &str) -> bool {
    name.len() <= 40
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// The first field of `raw` that did not survive deserialising (so the types do not know it).
fn unknown_field(raw: &Value, known: &Value, path: String) -> Option<String> {
    let (Value::Object(raw), Value::Object(known)) = (raw, known) else {
        return None;
    };
    for (key, value) in raw {
        let here = if path.is_empty() {
            key.clone()
        } else {
            format!("{path}.{key}")
        };
        // Server-managed metadata and status are not part of what the runtime reads.
        if here == "status" || (here.starts_with("metadata.") && path == "metadata") {
            continue;
        }
        // Empty maps and lists are left out when the known value is written back.
        let empty = value.is_null()
            || value.as_object().is_some_and(serde_json::Map::is_empty)
            || value.as_array().is_some_and(Vec::is_empty);
        match known.get(key) {
            None if empty => {}
            None => return Some(here),
            Some(inner) => {
                if let Some(found) = unknown_field(value, inner, here) {
                    return Some(found);
                }
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "\
apiVersion: lagless.dev/v1alpha1
kind: MySQLCluster
metadata:
  name: shop
spec:
  replicas: 3
  proxy:
    defaultConsistency: strict
";

    fn error(text: &str) -> String {
        parse(text, Path::new("c.yaml")).unwrap_err().to_string()
    }

    #[test]
    fn a_good_manifest_parses() {
        let c = parse(GOOD, Path::new("c.yaml")).unwrap();
        assert_eq!(c.metadata.name.as_deref(), Some("shop"));
        assert_eq!(c.spec.replicas, 3);
    }

    #[test]
    fn the_example_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/mysqlcluster.yaml");
        let c = load(&path).unwrap();
        assert_eq!(c.metadata.name.as_deref(), Some("shop"));
    }

    #[test]
    fn broken_yaml_names_the_file_and_line() {
        let e = error("apiVersion: lagless.dev/v1alpha1\nkind: [unclosed\n");
        assert!(e.starts_with("c.yaml: "), "{e}");
        assert!(e.contains("line"), "{e}");
    }

    #[test]
    fn wrong_kinds_and_versions_are_named() {
        assert!(
            error(&GOOD.replace("MySQLCluster", "Deployment"))
                .contains("kind: expected MySQLCluster")
        );
        assert!(error(&GOOD.replace("v1alpha1", "v9")).contains("apiVersion"));
        assert!(error("just text").contains("expected a MySQLCluster object"));
    }

    #[test]
    fn a_wrong_type_is_reported() {
        let e = error(&GOOD.replace("replicas: 3", "replicas: three"));
        assert!(e.contains("spec.replicas: invalid type"), "{e}");
    }

    #[test]
    fn an_unknown_field_is_named_with_its_path() {
        let e = error(&GOOD.replace("defaultConsistency", "defaultConsistancy"));
        assert!(
            e.contains("spec.proxy.defaultConsistancy: unknown field"),
            "{e}"
        );
        // Empty maps and lists are fine even where the types leave them out.
        let empties = GOOD.replace(
            "  replicas: 3",
            "  replicas: 3\n  serverConfig: {}\n  resources: {}\n  replication:\n    members: []",
        );
        assert!(parse(&empties, Path::new("c.yaml")).is_ok());
        // Server-managed metadata is fine.
        let ok = GOOD.replace(
            "  name: shop",
            "  name: shop\n  uid: abc\n  labels:\n    a: b",
        );
        assert!(parse(&ok, Path::new("c.yaml")).is_ok());
    }

    #[test]
    fn invalid_specs_name_the_field() {
        let e = error(&GOOD.replace("replicas: 3", "replicas: 0"));
        assert!(e.contains("spec.replicas") || e.contains("replicas"), "{e}");
        let e = error(&GOOD.replace("strict", "sometimes"));
        assert!(e.contains("defaultConsistency"), "{e}");
        let e = error(&GOOD.replace("name: shop", "name: Shop_1"));
        assert!(e.contains("metadata.name"), "{e}");
        let e = error(&GOOD.replace("replicas: 3", "replicas: 3\n  flavor: mysql"));
        assert!(e.contains("spec.flavor"), "{e}");
    }
}
