//! Reading a `MySQLCluster` or a `MySQLTenantPool` from a file, with errors that name the line
//! or the field.

use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::crd::{Flavor, MySQLCluster, MySQLTenantPool};

use super::LocalError;

/// The kind the pool manifests have.
pub const POOL_KIND: &str = "MySQLTenantPool";

/// The `kind` a manifest declares, when it is a YAML object that declares one.
pub fn kind_of(text: &str) -> Option<String> {
    let raw: Value = serde_saphyr::from_str(text).ok()?;
    raw.get("kind")?.as_str().map(str::to_string)
}

/// Parses and validates the manifest in `text` (`source` names it in errors).
pub fn parse(text: &str, source: &Path) -> Result<MySQLCluster, LocalError> {
    let bad = |message: String| LocalError::Manifest {
        path: source.to_path_buf(),
        message,
    };
    let cluster: MySQLCluster = parse_object(text, source, "MySQLCluster")?;
    check_name(cluster.metadata.name.as_deref(), 40).map_err(bad)?;
    cluster.validate().map_err(|e| bad(e.to_string()))?;
    if cluster.spec.flavor == Flavor::Mysql {
        return Err(bad(
            "spec.flavor: the local runtime runs MariaDB servers only; use `flavor: mariadb`"
                .into(),
        ));
    }
    Ok(cluster)
}

/// Parses and validates the `MySQLTenantPool` manifest in `text`.
pub fn parse_pool(text: &str, source: &Path) -> Result<MySQLTenantPool, LocalError> {
    let bad = |message: String| LocalError::Manifest {
        path: source.to_path_buf(),
        message,
    };
    let pool: MySQLTenantPool = parse_object(text, source, POOL_KIND)?;
    check_name(
        pool.metadata.name.as_deref(),
        crate::crd::tenant_pool::MAX_POOL_NAME,
    )
    .map_err(bad)?;
    pool.validate().map_err(|e| bad(e.to_string()))?;
    Ok(pool)
}

/// The object of kind `kind` in `text`: YAML, the right kind and version, known fields only.
fn parse_object<T: DeserializeOwned + Serialize>(
    text: &str,
    source: &Path,
    kind: &str,
) -> Result<T, LocalError> {
    let bad = |message: String| LocalError::Manifest {
        path: source.to_path_buf(),
        message,
    };
    let raw: Value = serde_saphyr::from_str(text).map_err(|e| bad(e.to_string()))?;
    if !raw.is_object() {
        return Err(bad(format!(
            "expected a {kind} object (apiVersion, kind, metadata, spec)"
        )));
    }
    let found = raw.get("kind").and_then(Value::as_str);
    if found != Some(kind) {
        return Err(bad(format!(
            "kind: expected {kind}, found {}",
            found.map_or("nothing".to_string(), |k| format!("`{k}`"))
        )));
    }
    let api = raw.get("apiVersion").and_then(Value::as_str);
    if api != Some("lagless.dev/v1alpha1") {
        return Err(bad(format!(
            "apiVersion: expected lagless.dev/v1alpha1, found {}",
            api.map_or("nothing".to_string(), |a| format!("`{a}`"))
        )));
    }
    let object: T = serde_path_to_error::deserialize(raw.clone()).map_err(|e| {
        let path = e.path().to_string();
        bad(format!("{path}: {}", e.into_inner()))
    })?;
    // Kubernetes prunes unknown fields silently; here a typo would be lost just as silently.
    let known = serde_json::to_value(&object).map_err(|e| bad(e.to_string()))?;
    if let Some(path) = unknown_field(&raw, &known, String::new()) {
        return Err(bad(format!("{path}: unknown field")));
    }
    Ok(object)
}

/// `metadata.name`: present, and usable in file and member names.
fn check_name(name: Option<&str>, max: usize) -> Result<(), String> {
    let name = name.unwrap_or_default();
    if name.is_empty() {
        return Err("metadata.name: required".into());
    }
    if !valid_name(name, max) {
        return Err(format!(
            "metadata.name: `{name}` must be lower-case letters, digits and '-', start with a \
             letter and be at most {max} characters"
        ));
    }
    Ok(())
}

/// Reads and parses the manifest at `path`.
pub fn load(path: &Path) -> Result<MySQLCluster, LocalError> {
    let text = std::fs::read_to_string(path).map_err(LocalError::io(path))?;
    parse(&text, path)
}

fn valid_name(name: &str, max: usize) -> bool {
    name.len() <= max
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
    fn the_pool_example_parses_and_its_kind_is_seen() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/tenantpool.yaml");
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(kind_of(&text).as_deref(), Some(POOL_KIND));
        assert_eq!(kind_of(GOOD).as_deref(), Some("MySQLCluster"));
        assert_eq!(kind_of("[oops"), None);
        let pool = parse_pool(&text, &path).unwrap();
        assert_eq!(pool.name(), "demo");
        // A pool is not a cluster, and the other way round.
        assert!(error(&text).contains("kind: expected MySQLCluster, found `MySQLTenantPool`"));
        let e = parse_pool(GOOD, Path::new("p.yaml"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("kind: expected MySQLTenantPool"), "{e}");
    }

    #[test]
    fn pool_errors_name_the_field() {
        let pool = |spec: &str| {
            parse_pool(
                &format!(
                    "apiVersion: lagless.dev/v1alpha1\nkind: MySQLTenantPool\n\
                     metadata: {{name: demo}}\nspec: {spec}\n"
                ),
                Path::new("p.yaml"),
            )
        };
        assert!(pool("{}").is_ok());
        let e = pool("{placement: {capacityByte: 1Gi}}")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("spec.placement.capacityByte: unknown field"),
            "{e}"
        );
        let e = pool("{clusters: {min: 0}}").unwrap_err().to_string();
        assert!(e.contains("spec.clusters.min"), "{e}");
        let e = parse_pool(
            "apiVersion: lagless.dev/v1alpha1\nkind: MySQLTenantPool\n\
             metadata: {name: a-name-longer-than-a-pool-may-have}\nspec: {}\n",
            Path::new("p.yaml"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("metadata.name") && e.contains("at most 30"),
            "{e}"
        );
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
