//! The pool document: a JSON file the operator writes and every proxy of the pool reads. It
//! names the global cluster, the tenant clusters (with the topology file each one publishes),
//! how tenants' databases are named and how a proxy finds a statement's tenant.

use std::collections::BTreeSet;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::naming::TenantNaming;

/// The connection attribute that names the tenant unless the document says otherwise.
pub const DEFAULT_ATTRIBUTE: &str = "lagless_tenant";

/// What a proxy reads to route a pool's tenants.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PoolDocument {
    pub pool: String,
    /// The global cluster: holds the directory and every database that belongs to no tenant.
    pub directory: String,
    /// How a tenant's database is named, e.g. `t_{id}`.
    #[serde(default = "default_pattern")]
    pub tenant_database: String,
    /// The tenant clusters.
    pub clusters: Vec<PoolCluster>,
    /// Where a proxy looks for the tenant, in order of preference.
    #[serde(default = "default_routing")]
    pub routing: Vec<TenantSource>,
    /// The connection attribute that names the tenant ([`TenantSource::Attribute`]).
    #[serde(default = "default_attribute")]
    pub attribute: String,
}

/// One tenant cluster and the topology file it publishes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolCluster {
    pub name: String,
    /// Relative paths are relative to the document's directory; [`PoolDocument::read`] makes
    /// them absolute (or relative to the working directory, for a document found there).
    pub topology: PathBuf,
}

/// Where a proxy finds the tenant of a statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TenantSource {
    /// The database name (`t_42`): at login, `USE`, or qualifying a table.
    Database,
    /// A comment in the statement: `/* lagless tenant=42 */`.
    Hint,
    /// A connection attribute set by the client at login.
    Attribute,
}

impl TenantSource {
    /// The name in the document.
    pub fn as_str(self) -> &'static str {
        match self {
            TenantSource::Database => "database",
            TenantSource::Hint => "hint",
            TenantSource::Attribute => "attribute",
        }
    }
}

/// Why a pool document could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DocumentError {
    #[error("cannot read pool document {}: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("pool document {}: {reason}", path.display())]
    Invalid { path: PathBuf, reason: String },
}

fn default_pattern() -> String {
    "t_{id}".to_string()
}

fn default_routing() -> Vec<TenantSource> {
    vec![
        TenantSource::Database,
        TenantSource::Hint,
        TenantSource::Attribute,
    ]
}

fn default_attribute() -> String {
    DEFAULT_ATTRIBUTE.to_string()
}

impl PoolDocument {
    /// Reads, validates and resolves the document at `path`.
    pub fn read(path: &Path) -> Result<Self, DocumentError> {
        let bytes = std::fs::read(path).map_err(|source| DocumentError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&bytes, path)
    }

    /// Parses and validates a document read from `path` (named in errors; relative topology
    /// paths are resolved against its directory). Unknown fields are ignored, so an older proxy
    /// reads a newer operator's document.
    pub fn parse(bytes: &[u8], path: &Path) -> Result<Self, DocumentError> {
        let invalid = |reason: String| DocumentError::Invalid {
            path: path.to_path_buf(),
            reason,
        };
        let mut doc: Self = serde_json::from_slice(bytes)
            .map_err(|e| invalid(format!("not a pool document: {e}")))?;
        doc.validate().map_err(invalid)?;
        let base = path.parent().unwrap_or(Path::new(""));
        for cluster in &mut doc.clusters {
            cluster.topology = resolve(base, &cluster.topology);
        }
        Ok(doc)
    }

    /// Checks the rules every document satisfies; the error says which one broke.
    pub fn validate(&self) -> Result<(), String> {
        if self.pool.is_empty() {
            return Err("`pool` is empty".into());
        }
        if self.directory.is_empty() {
            return Err("`directory` is empty: name the global cluster".into());
        }
        TenantNaming::parse(&self.tenant_database).map_err(|e| format!("`tenantDatabase`: {e}"))?;
        let mut names = BTreeSet::new();
        for (i, c) in self.clusters.iter().enumerate() {
            if c.name.is_empty() {
                return Err(format!("`clusters[{i}].name` is empty"));
            }
            if c.topology.as_os_str().is_empty() {
                return Err(format!("`clusters[{i}].topology` is empty"));
            }
            if c.name == self.directory {
                return Err(format!(
                    "cluster {} is the directory's cluster; the global cluster holds no tenants",
                    c.name
                ));
            }
            if !names.insert(c.name.as_str()) {
                return Err(format!("cluster {} is listed twice", c.name));
            }
        }
        if self.routing.is_empty() {
            return Err(
                "`routing` is empty: list at least one of database, hint, attribute".into(),
            );
        }
        let mut sources = BTreeSet::new();
        if let Some(twice) = self.routing.iter().find(|s| !sources.insert(**s)) {
            return Err(format!("`routing` lists {} twice", twice.as_str()));
        }
        if self.attribute.is_empty() {
            return Err("`attribute` is empty".into());
        }
        Ok(())
    }

    /// Validates, then replaces `path` atomically (a temporary file in the same directory,
    /// renamed over it), so a proxy never reads half a document.
    pub fn write(&self, path: &Path) -> io::Result<()> {
        self.validate()
            .map_err(|reason| io::Error::new(io::ErrorKind::InvalidInput, reason))?;
        let mut json = serde_json::to_vec_pretty(self).map_err(io::Error::other)?;
        json.push(b'\n');
        let name = path
            .file_name()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
        let tmp = path.with_file_name(format!(
            ".{}.tmp-{}",
            name.to_string_lossy(),
            std::process::id()
        ));
        let written = std::fs::File::create(&tmp)
            .and_then(|mut f| f.write_all(&json).and_then(|()| f.sync_all()))
            .and_then(|()| std::fs::rename(&tmp, path));
        if written.is_err() {
            // Best effort: a leftover temporary file is harmless but untidy.
            let _ = std::fs::remove_file(&tmp);
        }
        written
    }

    /// How tenants' databases are named. A document from [`PoolDocument::read`] always has a
    /// valid pattern; one built in code and never validated falls back to `t_{id}`.
    pub fn naming(&self) -> TenantNaming {
        TenantNaming::parse(&self.tenant_database).unwrap_or_default()
    }

    /// The tenant cluster called `name`.
    pub fn cluster(&self, name: &str) -> Option<&PoolCluster> {
        self.clusters.iter().find(|c| c.name == name)
    }
}

/// `path` relative to `base` unless it is absolute.
fn resolve(base: &Path, path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        base.join(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> PoolDocument {
        PoolDocument {
            pool: "demo".into(),
            directory: "demo-global".into(),
            tenant_database: "t_{id}".into(),
            clusters: vec![
                PoolCluster {
                    name: "demo-c1".into(),
                    topology: "clusters/demo-c1/topology.json".into(),
                },
                PoolCluster {
                    name: "demo-c2".into(),
                    topology: "/abs/demo-c2/topology.json".into(),
                },
            ],
            routing: default_routing(),
            attribute: DEFAULT_ATTRIBUTE.into(),
        }
    }

    #[test]
    fn a_minimal_document_gets_the_defaults_and_resolved_paths() {
        let json = r#"{
            "pool": "demo", "directory": "demo-global", "tenantDatabase": "tenant_{id}",
            "clusters": [
                {"name": "demo-c1", "topology": "clusters/demo-c1/topology.json"},
                {"name": "demo-c2", "topology": "/abs/demo-c2/topology.json"}
            ],
            "someFutureField": true
        }"#;
        let d = PoolDocument::parse(json.as_bytes(), Path::new("/state/pool.json")).unwrap();
        assert_eq!(d.routing, default_routing());
        assert_eq!(d.attribute, "lagless_tenant");
        assert_eq!(d.naming().pattern(), "tenant_{id}");
        assert_eq!(
            d.cluster("demo-c1").unwrap().topology,
            Path::new("/state/clusters/demo-c1/topology.json")
        );
        assert_eq!(
            d.cluster("demo-c2").unwrap().topology,
            Path::new("/abs/demo-c2/topology.json")
        );
        assert!(d.cluster("demo-global").is_none());
        // Found in the working directory: paths stay relative to it.
        let here = PoolDocument::parse(json.as_bytes(), Path::new("pool.json")).unwrap();
        assert_eq!(
            here.clusters[0].topology,
            Path::new("clusters/demo-c1/topology.json")
        );
    }

    /// Breaks one rule of a valid document.
    type Breaks = fn(&mut PoolDocument);

    #[test]
    fn broken_rules_are_named() {
        let cases: Vec<(Breaks, &str)> = vec![
            (|d| d.pool.clear(), "`pool` is empty"),
            (|d| d.directory.clear(), "`directory` is empty"),
            (
                |d| d.tenant_database = "tenants".into(),
                "`tenantDatabase`: invalid tenant database pattern 'tenants'",
            ),
            (
                |d| d.clusters[1].name = "demo-c1".into(),
                "cluster demo-c1 is listed twice",
            ),
            (
                |d| d.clusters[0].name = "demo-global".into(),
                "cluster demo-global is the directory's cluster",
            ),
            (
                |d| d.clusters[0].name.clear(),
                "`clusters[0].name` is empty",
            ),
            (
                |d| d.clusters[1].topology = PathBuf::new(),
                "`clusters[1].topology` is empty",
            ),
            (|d| d.routing.clear(), "`routing` is empty"),
            (
                |d| d.routing.push(TenantSource::Hint),
                "`routing` lists hint twice",
            ),
            (|d| d.attribute.clear(), "`attribute` is empty"),
        ];
        for (breaks, want) in cases {
            let mut d = doc();
            breaks(&mut d);
            let json = serde_json::to_vec(&d).unwrap();
            let err = PoolDocument::parse(&json, Path::new("/p/pool.json"))
                .unwrap_err()
                .to_string();
            assert!(err.starts_with("pool document /p/pool.json: "), "{err}");
            assert!(err.contains(want), "want {want:?} in {err}");
        }
        let err = PoolDocument::parse(b"{\"pool\": 1}", Path::new("p.json"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a pool document"), "{err}");
        let err = PoolDocument::parse(
            br#"{"pool":"p","directory":"g","clusters":[],"routing":["sql"]}"#,
            Path::new("p.json"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("unknown variant `sql`"), "{err}");
    }

    #[test]
    fn writes_are_atomic_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pool.json");
        let mut d = doc();
        d.write(&path).unwrap();
        let back = PoolDocument::read(&path).unwrap();
        // The relative path now resolves against the document's directory.
        d.clusters[0].topology = dir.path().join("clusters/demo-c1/topology.json");
        assert_eq!(back, d);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("\"tenantDatabase\": \"t_{id}\""), "{text}");
        assert!(
            text.contains(
                "\"routing\": [\n    \"database\",\n    \"hint\",\n    \"attribute\"\n  ]"
            ),
            "{text}"
        );
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, vec![std::ffi::OsString::from("pool.json")]);
        // An invalid document is not written.
        d.directory = "demo-c1".into();
        assert_eq!(
            d.write(&path).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
        assert_eq!(PoolDocument::read(&path).unwrap(), back);
        let missing = PoolDocument::read(&dir.path().join("none.json")).unwrap_err();
        assert!(
            missing
                .to_string()
                .starts_with("cannot read pool document "),
            "{missing}"
        );
    }
}
