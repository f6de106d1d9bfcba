//! Decoding and validation of the topology document.
//!
//! The document is first read as a `serde_json::Value` and then decoded field by field, so
//! every error names the field it is about (`replicas[1].port`), which serde's derived
//! decoders do not do. Keys this version does not know are left unread: that is what keeps
//! an older proxy working with a newer operator.

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::{DEFAULT_WEIGHT, Member, Topology, TopologyError, TopologyState};

type Object = Map<String, Value>;

pub(super) fn topology_from_value(value: Value) -> Result<Topology, TopologyError> {
    let mut doc = into_object(value, "")?;
    let topology = Topology {
        cluster: required(&mut doc, "", "cluster")?,
        flavor: required(&mut doc, "", "flavor")?,
        epoch: required(&mut doc, "", "epoch")?,
        state: required(&mut doc, "", "state")?,
        primary: optional::<Value>(&mut doc, "", "primary")?
            .map(|v| member_from_value(v, "primary"))
            .transpose()?,
        replicas: replicas_from(&mut doc)?,
        consistency: optional(&mut doc, "", "consistency")?,
        read_only: optional(&mut doc, "", "read_only")?.unwrap_or(false),
    };
    validate(&topology)?;
    Ok(topology)
}

pub(super) fn validate(t: &Topology) -> Result<(), TopologyError> {
    require_text("cluster", &t.cluster)?;
    validate_state(t)?;
    validate_members(t)
}

fn replicas_from(doc: &mut Object) -> Result<Vec<Member>, TopologyError> {
    let Some(items) = optional::<Vec<Value>>(doc, "", "replicas")? else {
        return Ok(Vec::new());
    };
    items
        .into_iter()
        .enumerate()
        .map(|(i, v)| member_from_value(v, &format!("replicas[{i}]")))
        .collect()
}

fn member_from_value(value: Value, path: &str) -> Result<Member, TopologyError> {
    let mut obj = into_object(value, path)?;
    Ok(Member {
        name: required(&mut obj, path, "name")?,
        host: required(&mut obj, path, "host")?,
        port: required(&mut obj, path, "port")?,
        weight: optional(&mut obj, path, "weight")?.unwrap_or(DEFAULT_WEIGHT),
    })
}

fn into_object(value: Value, path: &str) -> Result<Object, TopologyError> {
    match value {
        Value::Object(obj) => Ok(obj),
        other => Err(TopologyError::field(
            display_path(path),
            format!("expected an object, found {}", kind(&other)),
        )),
    }
}

/// A missing key and an explicit `null` both mean "not given".
fn optional<T: DeserializeOwned>(
    obj: &mut Object,
    path: &str,
    key: &str,
) -> Result<Option<T>, TopologyError> {
    match obj.remove(key) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => serde_json::from_value(value)
            .map(Some)
            .map_err(|e| TopologyError::field(join(path, key), e.to_string())),
    }
}

fn required<T: DeserializeOwned>(
    obj: &mut Object,
    path: &str,
    key: &str,
) -> Result<T, TopologyError> {
    optional(obj, path, key)?.ok_or_else(|| TopologyError::field(join(path, key), "is required"))
}

fn validate_state(t: &Topology) -> Result<(), TopologyError> {
    match (t.state, &t.primary) {
        (TopologyState::Ready, None) => Err(TopologyError::field(
            "primary",
            "is required when state is \"ready\"",
        )),
        (TopologyState::Switching, Some(p)) => Err(TopologyError::field(
            "primary",
            format!(
                "must be absent when state is \"switching\" (found \"{}\")",
                p.name
            ),
        )),
        _ => Ok(()),
    }
}

/// Every member must be well formed and differ from all others in both name and address.
fn validate_members(t: &Topology) -> Result<(), TopologyError> {
    let labelled = t.primary.iter().map(|m| ("primary".to_owned(), m)).chain(
        t.replicas
            .iter()
            .enumerate()
            .map(|(i, m)| (format!("replicas[{i}]"), m)),
    );
    let mut seen: Vec<(String, &Member)> = Vec::new();
    for (path, member) in labelled {
        validate_member(member, &path)?;
        check_unique(member, &path, &seen)?;
        seen.push((path, member));
    }
    Ok(())
}

fn validate_member(m: &Member, path: &str) -> Result<(), TopologyError> {
    require_text(&join(path, "name"), &m.name)?;
    require_text(&join(path, "host"), &m.host)?;
    if m.port == 0 {
        return Err(TopologyError::field(join(path, "port"), "must not be 0"));
    }
    Ok(())
}

fn check_unique(m: &Member, path: &str, seen: &[(String, &Member)]) -> Result<(), TopologyError> {
    if let Some((other, _)) = seen.iter().find(|(_, o)| o.name == m.name) {
        return Err(TopologyError::field(
            join(path, "name"),
            format!("\"{}\" is already used by {other}", m.name),
        ));
    }
    if let Some((other, o)) = seen.iter().find(|(_, o)| o.has_addr(&m.host, m.port)) {
        return Err(TopologyError::field(
            path,
            format!(
                "address {} is already used by {other} (\"{}\")",
                m.addr(),
                o.name
            ),
        ));
    }
    Ok(())
}

fn require_text(field: &str, value: &str) -> Result<(), TopologyError> {
    if value.trim().is_empty() {
        return Err(TopologyError::field(field, "must not be empty"));
    }
    Ok(())
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn display_path(path: &str) -> &str {
    if path.is_empty() { "(document)" } else { path }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::Flavor;
    use super::*;

    fn valid() -> Value {
        json!({
            "cluster": "demo",
            "flavor": "mariadb",
            "epoch": 7,
            "state": "ready",
            "primary": { "name": "demo-0", "host": "127.0.0.1", "port": 3306 },
            "replicas": [
                { "name": "demo-1", "host": "127.0.0.1", "port": 3307, "weight": 50 },
                { "name": "demo-2", "host": "127.0.0.1", "port": 3308 }
            ],
            "consistency": "strict"
        })
    }

    fn parse(value: &Value) -> Result<Topology, TopologyError> {
        Topology::parse(value.to_string().as_bytes())
    }

    /// Applies `edit` to the valid document and returns the parse error's message.
    fn error_after(edit: impl FnOnce(&mut Value)) -> String {
        let mut doc = valid();
        edit(&mut doc);
        match parse(&doc) {
            Ok(t) => panic!("expected an error, parsed {t:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn parses_the_example() {
        let t = parse(&valid()).unwrap();
        assert_eq!(t.cluster, "demo");
        assert_eq!(t.flavor, Flavor::Mariadb);
        assert_eq!(t.epoch, 7);
        assert_eq!(t.state, TopologyState::Ready);
        assert_eq!(t.primary, Some(Member::new("demo-0", "127.0.0.1", 3306)));
        assert_eq!(t.replicas[0].weight, 50);
        assert_eq!(t.replicas[1].weight, DEFAULT_WEIGHT);
        assert_eq!(t.consistency, Some(crate::ConsistencyMode::Strict));
    }

    #[test]
    fn ignores_unknown_fields() {
        let mut doc = valid();
        doc["future"] = json!({ "anything": [1, 2] });
        doc["primary"]["zone"] = json!("a");
        doc["replicas"][0]["labels"] = json!({ "k": "v" });
        assert_eq!(parse(&doc).unwrap(), parse(&valid()).unwrap());
    }

    #[test]
    fn optional_fields_may_be_missing_or_null() {
        let mut doc = valid();
        doc.as_object_mut().unwrap().remove("replicas");
        doc["consistency"] = Value::Null;
        let t = parse(&doc).unwrap();
        assert!(t.replicas.is_empty());
        assert_eq!(t.consistency, None);
    }

    #[test]
    fn switching_without_primary_is_valid() {
        let mut doc = valid();
        doc["state"] = json!("switching");
        doc.as_object_mut().unwrap().remove("primary");
        let t = parse(&doc).unwrap();
        assert!(t.is_switching());
        assert_eq!(t.primary, None);
    }

    #[test]
    fn mysql_flavor() {
        let mut doc = valid();
        doc["flavor"] = json!("mysql");
        assert_eq!(parse(&doc).unwrap().flavor, Flavor::Mysql);
    }

    #[test]
    fn rejects_invalid_json() {
        let err = Topology::parse(b"{\"cluster\": ").unwrap_err();
        assert!(matches!(err, TopologyError::Json(_)));
        assert!(
            err.to_string()
                .starts_with("topology is not valid JSON: EOF"),
            "{err}"
        );
        let err = Topology::parse(b"").unwrap_err();
        assert!(matches!(err, TopologyError::Json(_)), "{err}");
    }

    #[test]
    fn rejects_a_document_that_is_not_an_object() {
        let err = Topology::parse(b"[1]").unwrap_err();
        assert_eq!(
            err.to_string(),
            "topology field `(document)`: expected an object, found an array"
        );
    }

    #[test]
    fn rejects_missing_required_fields() {
        for key in ["cluster", "flavor", "epoch", "state"] {
            let msg = error_after(|d| {
                d.as_object_mut().unwrap().remove(key);
            });
            assert_eq!(msg, format!("topology field `{key}`: is required"));
        }
        for key in ["name", "host", "port"] {
            let msg = error_after(|d| {
                d["replicas"][1].as_object_mut().unwrap().remove(key);
            });
            assert_eq!(
                msg,
                format!("topology field `replicas[1].{key}`: is required")
            );
        }
    }

    #[test]
    fn rejects_unknown_flavor_and_state() {
        let msg = error_after(|d| d["flavor"] = json!("postgres"));
        assert_eq!(
            msg,
            "topology field `flavor`: unknown variant `postgres`, expected `mariadb` or `mysql`"
        );
        let msg = error_after(|d| d["state"] = json!("broken"));
        assert_eq!(
            msg,
            "topology field `state`: unknown variant `broken`, expected `ready` or `switching`"
        );
    }

    #[test]
    fn rejects_wrong_types() {
        let msg = error_after(|d| d["epoch"] = json!("7"));
        assert_eq!(
            msg,
            "topology field `epoch`: invalid type: string \"7\", expected u64"
        );
        let msg = error_after(|d| d["epoch"] = json!(-1));
        assert_eq!(
            msg,
            "topology field `epoch`: invalid value: integer `-1`, expected u64"
        );
        let msg = error_after(|d| d["replicas"][0]["port"] = json!(70000));
        assert_eq!(
            msg,
            "topology field `replicas[0].port`: invalid value: integer `70000`, expected u16"
        );
        let msg = error_after(|d| d["replicas"] = json!({}));
        assert!(
            msg.starts_with("topology field `replicas`: invalid type: map"),
            "{msg}"
        );
        let msg = error_after(|d| d["primary"] = json!("demo-0"));
        assert_eq!(
            msg,
            "topology field `primary`: expected an object, found a string"
        );
        let msg = error_after(|d| d["consistency"] = json!(1));
        assert!(
            msg.starts_with("topology field `consistency`: invalid type"),
            "{msg}"
        );
        // The mode is typed: one the proxy does not know is refused, not guessed.
        let msg = error_after(|d| d["consistency"] = json!("sometimes"));
        assert!(
            msg.starts_with("topology field `consistency`:") && msg.contains("sometimes"),
            "{msg}"
        );
    }

    #[test]
    fn rejects_empty_cluster_name() {
        let msg = error_after(|d| d["cluster"] = json!(""));
        assert_eq!(msg, "topology field `cluster`: must not be empty");
        let msg = error_after(|d| d["cluster"] = json!("  "));
        assert_eq!(msg, "topology field `cluster`: must not be empty");
    }

    #[test]
    fn rejects_ready_without_primary() {
        let msg = error_after(|d| {
            d.as_object_mut().unwrap().remove("primary");
        });
        assert_eq!(
            msg,
            "topology field `primary`: is required when state is \"ready\""
        );
    }

    #[test]
    fn rejects_switching_with_primary() {
        let msg = error_after(|d| d["state"] = json!("switching"));
        assert_eq!(
            msg,
            "topology field `primary`: must be absent when state is \"switching\" (found \"demo-0\")"
        );
    }

    #[test]
    fn rejects_empty_host_and_name() {
        let msg = error_after(|d| d["primary"]["host"] = json!(""));
        assert_eq!(msg, "topology field `primary.host`: must not be empty");
        let msg = error_after(|d| d["replicas"][1]["name"] = json!(""));
        assert_eq!(msg, "topology field `replicas[1].name`: must not be empty");
    }

    #[test]
    fn rejects_port_zero() {
        let msg = error_after(|d| d["replicas"][0]["port"] = json!(0));
        assert_eq!(msg, "topology field `replicas[0].port`: must not be 0");
    }

    #[test]
    fn rejects_duplicate_names() {
        let msg = error_after(|d| d["replicas"][1]["name"] = json!("demo-0"));
        assert_eq!(
            msg,
            "topology field `replicas[1].name`: \"demo-0\" is already used by primary"
        );
        let msg = error_after(|d| d["replicas"][1]["name"] = json!("demo-1"));
        assert_eq!(
            msg,
            "topology field `replicas[1].name`: \"demo-1\" is already used by replicas[0]"
        );
    }

    #[test]
    fn rejects_duplicate_addresses() {
        let msg = error_after(|d| d["replicas"][0]["port"] = json!(3306));
        assert_eq!(
            msg,
            "topology field `replicas[0]`: address 127.0.0.1:3306 is already used by primary (\"demo-0\")"
        );
        let msg = error_after(|d| {
            d["replicas"][0]["host"] = json!("DB.example");
            d["replicas"][1]["host"] = json!("db.example");
            d["replicas"][1]["port"] = json!(3307);
        });
        assert_eq!(
            msg,
            "topology field `replicas[1]`: address db.example:3307 is already used by replicas[0] (\"demo-1\")"
        );
    }

    #[test]
    fn validate_checks_constructed_values() {
        let mut t = parse(&valid()).unwrap();
        assert!(t.validate().is_ok());
        t.replicas[0].port = 0;
        assert_eq!(
            t.validate().unwrap_err().to_string(),
            "topology field `replicas[0].port`: must not be 0"
        );
    }
}
