//! The spec's own check: every rule of the schema and its CEL rules, plus those the schema
//! cannot express, each error naming the field it is about.

use std::collections::BTreeSet;
use std::fmt;

use lagless_core::ConsistencyMode;

use super::{BEST, Flavor, MAX_MEMBERS, MySQLClusterSpec, Resources};

/// One problem with a spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    /// The field's path, as `spec.replication.semiSyncAcks`.
    pub field: String,
    pub message: String,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Every problem found with a spec, in field order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct SpecErrors(pub Vec<SpecError>);

impl fmt::Display for SpecErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("invalid spec: ")?;
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl SpecErrors {
    /// Whether some error is about `field` (or a field inside it).
    pub fn mentions(&self, field: &str) -> bool {
        self.0.iter().any(|e| {
            e.field == field
                || e.field
                    .strip_prefix(field)
                    .is_some_and(|rest| rest.starts_with(['.', '[']))
        })
    }
}

/// Server options the operator sets itself, with `-` written `_`.
const MANAGED_OPTIONS: &[&str] = &[
    "server_id",
    "gtid_domain_id",
    "log_bin",
    "log_slave_updates",
    "log_replica_updates",
    "read_only",
    "super_read_only",
    "gtid_strict_mode",
    "gtid_mode",
    "enforce_gtid_consistency",
    "rpl_semi_sync_master_enabled",
    "rpl_semi_sync_slave_enabled",
    "rpl_semi_sync_source_enabled",
    "rpl_semi_sync_replica_enabled",
];

#[derive(Default)]
struct Errors(Vec<SpecError>);

impl Errors {
    fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(SpecError {
            field: field.into(),
            message: message.into(),
        });
    }
}

impl MySQLClusterSpec {
    /// Checks the spec of cluster `cluster` (its `metadata.name`, which member names start
    /// with). Returns every problem found, not only the first.
    pub fn validate(&self, cluster: &str) -> Result<(), SpecErrors> {
        let mut errors = Errors::default();
        if !(1..=MAX_MEMBERS).contains(&self.replicas) {
            errors.add(
                "spec.replicas",
                format!("must be between 1 and {MAX_MEMBERS}, not {}", self.replicas),
            );
        }
        if self.image.as_deref().is_some_and(|i| i.trim().is_empty()) {
            errors.add("spec.image", "must not be empty; omit it for the default");
        }
        if !is_quantity(&self.storage.size) {
            errors.add(
                "spec.storage.size",
                format!(
                    "`{}` is not a Kubernetes quantity such as 10Gi",
                    self.storage.size
                ),
            );
        }
        check_resources(&mut errors, "spec.resources", &self.resources);
        if let Some(backup) = &self.backup {
            if let Err(e) = crate::backup::location::Location::parse(&backup.destination) {
                errors.add("spec.backup.destination", e.to_string());
            }
            if let Some(Err(e)) = backup
                .schedule
                .as_deref()
                .map(crate::backup::schedule::Schedule::parse)
            {
                errors.add("spec.backup.schedule", e);
            }
            if let Some(Err(e)) = backup
                .drill_schedule
                .as_deref()
                .map(crate::backup::schedule::Schedule::parse)
            {
                errors.add("spec.backup.drillSchedule", e);
            }
            if backup.keep == Some(0) {
                errors.add("spec.backup.keep", "must be at least 1");
            }
            if let Some(Err(e)) = backup
                .persistent_volume_claim
                .as_ref()
                .map(|_| claim_destination(&backup.destination))
            {
                errors.add("spec.backup.persistentVolumeClaim", e);
            }
        }
        if let Some(from) = self.from_backup() {
            if let Err(e) = crate::backup::location::Location::parse(&from.destination) {
                errors.add("spec.bootstrap.fromBackup.destination", e.to_string());
            }
            if let Some(Err(e)) = from
                .persistent_volume_claim
                .as_ref()
                .map(|_| claim_destination(&from.destination))
            {
                errors.add("spec.bootstrap.fromBackup.persistentVolumeClaim", e);
            }
            if let Some(Err(e)) = from
                .point_in_time
                .as_deref()
                .map(crate::backup::archive::Target::parse)
            {
                errors.add("spec.bootstrap.fromBackup.pointInTime", e);
            }
        }
        for (key, value) in &self.server_config {
            let field = format!("spec.serverConfig.{key}");
            let normalized = key.to_ascii_lowercase().replace('-', "_");
            if key.is_empty()
                || !key
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
            {
                errors.add(field, "is not a server option name");
            } else if MANAGED_OPTIONS.contains(&normalized.as_str()) {
                errors.add(
                    field,
                    "is managed by the operator (use spec.serverIdBase, spec.gtidDomainId or \
                     spec.replication instead)",
                );
            } else if value.contains(['\n', '\r']) {
                errors.add(field, "must be a single line");
            }
        }
        if let Some(id) = self.gtid_domain_id
            && !(0..=i64::from(u32::MAX)).contains(&id)
        {
            errors.add(
                "spec.gtidDomainId",
                format!("must be between 0 and {}", u32::MAX),
            );
        }
        if let Some(base) = self.server_id_base {
            let highest = i64::from(u32::MAX) - i64::from(MAX_MEMBERS - 1);
            if !(1..=highest).contains(&base) {
                errors.add(
                    "spec.serverIdBase",
                    format!("must be between 1 and {highest}"),
                );
            }
        }
        self.check_replication(&mut errors, cluster);
        let mut seen = BTreeSet::new();
        for (i, member) in self.cordoned.iter().enumerate() {
            if member_ordinal(cluster, member).is_none() {
                errors.add(
                    format!("spec.cordoned[{i}]"),
                    format!("`{member}` is not a member of cluster {cluster} (write {cluster}-<ordinal>)"),
                );
            } else if !seen.insert(member.as_str()) {
                errors.add(
                    format!("spec.cordoned[{i}]"),
                    format!("`{member}` is listed twice"),
                );
            }
        }
        self.check_proxy(&mut errors);
        self.check_switchover(&mut errors, cluster);
        self.check_reseed(&mut errors, cluster);
        self.check_tls(&mut errors);
        if errors.0.is_empty() {
            Ok(())
        } else {
            Err(SpecErrors(errors.0))
        }
    }

    fn check_replication(&self, errors: &mut Errors, cluster: &str) {
        let replication = &self.replication;
        if replication.semi_sync_acks > 1 && self.flavor == Flavor::Mariadb {
            errors.add(
                "spec.replication.semiSyncAcks",
                "must be 1 with flavor mariadb: MariaDB waits for exactly one acknowledgement",
            );
        }
        if replication.semi_sync_on(self.replicas) {
            if replication.semi_sync_acks < 1 {
                errors.add("spec.replication.semiSyncAcks", "must be at least 1");
            } else if replication.semi_sync_acks >= self.replicas {
                errors.add(
                    "spec.replication.semiSyncAcks",
                    format!(
                        "must be less than spec.replicas ({}): the primary cannot acknowledge its \
                         own writes",
                        self.replicas
                    ),
                );
            }
        }
        let mut seen = BTreeSet::new();
        for (i, member) in replication.members.iter().enumerate() {
            let field = format!("spec.replication.members[{i}].name");
            if member_ordinal(cluster, &member.name).is_none() {
                errors.add(
                    field,
                    format!(
                        "`{}` is not a member of cluster {cluster} (write {cluster}-<ordinal>)",
                        member.name
                    ),
                );
            } else if !seen.insert(member.name.as_str()) {
                errors.add(field, format!("`{}` is listed twice", member.name));
            }
            if !(-1000..=1000).contains(&member.promotion_priority) {
                errors.add(
                    format!("spec.replication.members[{i}].promotionPriority"),
                    "must be between -1000 and 1000",
                );
            }
        }
        let promotable = (0..self.replicas.max(0)).any(|ordinal| {
            replication
                .member(&format!("{cluster}-{ordinal}"))
                .is_none_or(|m| !m.never_promote)
        });
        if self.replicas > 1 && !promotable {
            errors.add(
                "spec.replication.members",
                "every member has neverPromote set: no member could take over from the primary",
            );
        }
    }

    fn check_proxy(&self, errors: &mut Errors) {
        let proxy = &self.proxy;
        if !(0..=100).contains(&proxy.replicas) {
            errors.add("spec.proxy.replicas", "must be between 0 and 100");
        }
        if let Err(err) = proxy.default_consistency.parse::<ConsistencyMode>() {
            errors.add("spec.proxy.defaultConsistency", err.to_string());
        }
        check_resources(errors, "spec.proxy.resources", &proxy.resources);
    }

    fn check_switchover(&self, errors: &mut Errors, cluster: &str) {
        let Some(switchover) = &self.switchover else {
            return;
        };
        if switchover.id.trim().is_empty() {
            errors.add("spec.switchover.id", "must not be empty");
        }
        let target = switchover.primary.as_str();
        if target == BEST {
            return;
        }
        match member_ordinal(cluster, target) {
            Some(ordinal) if ordinal < i64::from(self.replicas) => {
                if self
                    .replication
                    .member(target)
                    .is_some_and(|m| m.never_promote)
                {
                    errors.add(
                        "spec.switchover.primary",
                        format!("`{target}` has neverPromote set"),
                    );
                }
            }
            _ => errors.add(
                "spec.switchover.primary",
                format!(
                    "`{target}` is not a member of this cluster: write `best` or \
                     {cluster}-<ordinal> with an ordinal below {}",
                    self.replicas
                ),
            ),
        }
    }

    fn check_tls(&self, errors: &mut Errors) {
        let Some(tls) = &self.tls else {
            return;
        };
        if tls.secret_name.is_some() && tls.issuer_ref.is_some() {
            errors.add("spec.tls", "give secretName or issuerRef, not both");
        }
        if tls
            .secret_name
            .as_deref()
            .is_some_and(|n| n.trim().is_empty())
        {
            errors.add("spec.tls.secretName", "must not be empty; omit it");
        }
        if let Some(issuer) = &tls.issuer_ref {
            if issuer.name.trim().is_empty() {
                errors.add("spec.tls.issuerRef.name", "must not be empty");
            }
            if issuer.kind != "Issuer" && issuer.kind != "ClusterIssuer" {
                errors.add(
                    "spec.tls.issuerRef.kind",
                    format!("must be Issuer or ClusterIssuer, not `{}`", issuer.kind),
                );
            }
        }
    }

    fn check_reseed(&self, errors: &mut Errors, cluster: &str) {
        let Some(reseed) = &self.reseed else {
            return;
        };
        if reseed.id.trim().is_empty() {
            errors.add("spec.reseed.id", "must not be empty");
        }
        if self.flavor == Flavor::Mysql {
            errors.add(
                "spec.reseed",
                "needs flavor mariadb: MySQL members have no seeding agent",
            );
        }
        if member_ordinal(cluster, &reseed.member).is_none_or(|o| o >= i64::from(self.replicas)) {
            errors.add(
                "spec.reseed.member",
                format!(
                    "`{}` is not a member of this cluster: write {cluster}-<ordinal> with an \
                     ordinal below {}",
                    reseed.member, self.replicas
                ),
            );
        }
    }
}

/// The ordinal of member `name` of cluster `cluster` (`<cluster>-<ordinal>`).
fn member_ordinal(cluster: &str, name: &str) -> Option<i64> {
    let digits = name.strip_prefix(cluster)?.strip_prefix('-')?;
    // As the pods are named: no sign, no leading zero.
    if digits.is_empty()
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || (digits.len() > 1 && digits.starts_with('0'))
    {
        return None;
    }
    digits.parse().ok()
}

fn check_resources(errors: &mut Errors, field: &str, resources: &Resources) {
    for (kind, map) in [
        ("requests", &resources.requests),
        ("limits", &resources.limits),
    ] {
        for (name, value) in map {
            if !is_quantity(value) {
                errors.add(
                    format!("{field}.{kind}.{name}"),
                    format!("`{value}` is not a Kubernetes quantity such as 500m or 1Gi"),
                );
            }
        }
    }
}

/// A non-negative Kubernetes quantity: a decimal number and a binary (`Ki` … `Ei`), decimal
/// (`n`, `u`, `m`, `k`, `M` … `E`) or exponent (`e3`) suffix.
pub(super) fn is_quantity(text: &str) -> bool {
    let text = text.strip_prefix('+').unwrap_or(text);
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let digits = number.bytes().filter(u8::is_ascii_digit).count();
    let dots = number.bytes().filter(|&b| b == b'.').count();
    if digits == 0 || dots > 1 {
        return false;
    }
    const SUFFIXES: &[&str] = &[
        "", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei", "n", "u", "m", "k", "M", "G", "T", "P", "E",
    ];
    if SUFFIXES.contains(&suffix) {
        return true;
    }
    let Some(exponent) = suffix.strip_prefix(['e', 'E']) else {
        return false;
    };
    let exponent = exponent.strip_prefix(['+', '-']).unwrap_or(exponent);
    !exponent.is_empty() && exponent.bytes().all(|b| b.is_ascii_digit())
}

/// Paths the operator's pods already mount something at: a claim mounted over one of them (or
/// under it) would hide it, or be refused by the API server.
const RESERVED_PATHS: &[&str] = &["/tmp", "/etc", "/lagless", "/var/lib/mysql", "/run"];

/// A destination a PersistentVolumeClaim is mounted at: an absolute directory outside the
/// pods' own mounts.
fn claim_destination(destination: &str) -> Result<(), String> {
    let path = match destination.strip_prefix("file://") {
        Some(path) => path,
        None if destination.starts_with('/') => destination,
        None => {
            return Err(format!(
                "is for a directory destination; `{destination}` is not an absolute path"
            ));
        }
    };
    let path = path.trim_end_matches('/');
    if path.is_empty() || path.split('/').any(|part| part == "..") {
        return Err(format!(
            "`{destination}` is not a directory a claim can be mounted at"
        ));
    }
    if let Some(reserved) = RESERVED_PATHS.iter().find(|r| {
        path == **r || path.starts_with(&format!("{r}/")) || r.starts_with(&format!("{path}/"))
    }) {
        return Err(format!(
            "`{destination}` meets {reserved}, which the pods use themselves: choose a \
             directory such as /backups/<cluster>"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::{MemberReplicationSpec, SwitchoverSpec};
    use super::*;

    fn spec(yaml: &str) -> MySQLClusterSpec {
        serde_saphyr::from_str(yaml).unwrap()
    }

    fn errors(yaml: &str) -> SpecErrors {
        spec(yaml).validate("db").unwrap_err()
    }

    #[test]
    fn a_full_spec_is_valid() {
        let spec = spec(
            "replicas: 3
image: registry.local/mariadb:10.11.9
storage: {size: 20Gi, storageClassName: fast}
resources: {requests: {cpu: 500m, memory: 1Gi}, limits: {memory: 2Gi}}
serverConfig: {max_connections: '500', innodb-buffer-pool-size: 1G}
gtidDomainId: 12
serverIdBase: 1200
replication:
  semiSync: true
  semiSyncAcks: 1
  members:
    - {name: db-2, neverPromote: true}
    - {name: db-1, promotionPriority: 5}
proxy: {replicas: 2, defaultConsistency: bounded(250ms), serviceType: LoadBalancer}
switchover: {id: move-1, primary: db-1}
",
        );
        assert_eq!(spec.validate("db"), Ok(()));
    }

    #[test]
    fn replicas_out_of_range() {
        for replicas in [0, 10, -1] {
            let err = errors(&format!("replicas: {replicas}"));
            assert!(err.mentions("spec.replicas"), "{err}");
        }
    }

    #[test]
    fn semi_sync_needs_more_members_than_acks() {
        let err = errors("replicas: 2\nreplication: {semiSync: true, semiSyncAcks: 2}");
        assert!(err.mentions("spec.replication.semiSyncAcks"), "{err}");
        assert!(
            err.to_string().contains("less than spec.replicas (2)"),
            "{err}"
        );
        let err = errors("replicas: 1\nreplication: {semiSync: true}");
        assert!(err.mentions("spec.replication.semiSyncAcks"), "{err}");
        // On by default, so the count is checked unless semi-sync is turned off.
        let err = errors("replicas: 2\nflavor: mysql\nreplication: {semiSyncAcks: 2}");
        assert!(err.mentions("spec.replication.semiSyncAcks"), "{err}");
        // Without semi-sync (asked, or a single member) the ack count is not used.
        assert_eq!(
            spec("replicas: 1\nflavor: mysql\nreplication: {semiSyncAcks: 3}").validate("db"),
            Ok(())
        );
        assert_eq!(
            spec("replicas: 2\nflavor: mysql\nreplication: {semiSync: false, semiSyncAcks: 2}")
                .validate("db"),
            Ok(())
        );
    }

    #[test]
    fn mariadb_waits_for_exactly_one_acknowledgement() {
        let err = errors("replicas: 3\nreplication: {semiSync: true, semiSyncAcks: 2}");
        assert!(
            err.to_string().contains("must be 1 with flavor mariadb"),
            "{err}"
        );
        assert_eq!(
            spec("replicas: 3\nflavor: mysql\nreplication: {semiSyncAcks: 2}").validate("db"),
            Ok(())
        );
    }

    #[test]
    fn semi_sync_is_on_by_default_when_there_is_a_replica() {
        assert!(!spec("replicas: 1").replication.semi_sync_on(1));
        assert!(spec("replicas: 2").replication.semi_sync_on(2));
        assert!(
            !spec("replicas: 3\nreplication: {semiSync: false}")
                .replication
                .semi_sync_on(3)
        );
    }

    #[test]
    fn consistency_must_be_a_mode() {
        let err = errors("replicas: 3\nproxy: {defaultConsistency: fresh}");
        assert!(err.mentions("spec.proxy.defaultConsistency"), "{err}");
        assert!(
            err.to_string().contains("unknown consistency mode"),
            "{err}"
        );
        let err = errors("replicas: 3\nproxy: {defaultConsistency: bounded(soon)}");
        assert!(err.mentions("spec.proxy.defaultConsistency"), "{err}");
        for mode in [
            "session",
            "proxy",
            "eventual",
            "bounded",
            "bounded=500",
            "bounded(2s)",
        ] {
            let yaml = format!("replicas: 3\nproxy: {{defaultConsistency: '{mode}'}}");
            assert_eq!(spec(&yaml).validate("db"), Ok(()), "{mode}");
        }
    }

    #[test]
    fn switchover_target_must_exist_and_be_promotable() {
        let mut spec = spec("replicas: 3");
        for target in ["db-3", "db-x", "other-1", "db-", "db-01x", "db-01", "db-+1"] {
            spec.switchover = Some(SwitchoverSpec {
                id: "a".into(),
                primary: target.into(),
                drain_ms: None,
            });
            let err = spec.validate("db").unwrap_err();
            assert!(err.mentions("spec.switchover.primary"), "{target}: {err}");
        }
        for target in ["db-2", BEST] {
            spec.switchover = Some(SwitchoverSpec {
                id: "a".into(),
                primary: target.into(),
                drain_ms: None,
            });
            assert_eq!(spec.validate("db"), Ok(()), "{target}");
        }
        spec.replication.members = vec![MemberReplicationSpec {
            name: "db-2".into(),
            promotion_priority: 0,
            never_promote: true,
        }];
        spec.switchover = Some(SwitchoverSpec {
            id: "a".into(),
            primary: "db-2".into(),
            drain_ms: None,
        });
        let err = spec.validate("db").unwrap_err();
        assert!(err.to_string().contains("neverPromote"), "{err}");
        spec.switchover = Some(SwitchoverSpec {
            id: " ".into(),
            primary: BEST.into(),
            drain_ms: None,
        });
        assert!(
            spec.validate("db")
                .unwrap_err()
                .mentions("spec.switchover.id")
        );
    }

    #[test]
    fn reseed_names_a_member_of_a_mariadb_cluster() {
        for (yaml, field) in [
            (
                "replicas: 3\nreseed: {id: r1, member: db-3}",
                "spec.reseed.member",
            ),
            (
                "replicas: 3\nreseed: {id: r1, member: db-01}",
                "spec.reseed.member",
            ),
            (
                "replicas: 3\nreseed: {id: r1, member: other-1}",
                "spec.reseed.member",
            ),
            (
                "replicas: 3\nreseed: {id: ' ', member: db-1}",
                "spec.reseed.id",
            ),
            (
                "replicas: 3\nflavor: mysql\nreseed: {id: r1, member: db-1}",
                "spec.reseed",
            ),
        ] {
            let err = spec(yaml).validate("db").unwrap_err();
            assert!(err.mentions(field), "{yaml}: {err}");
        }
        assert_eq!(
            spec("replicas: 3\nreseed: {id: r1, member: db-2}").validate("db"),
            Ok(())
        );
    }

    #[test]
    fn cordoned_names_are_members_listed_once() {
        let err = errors("replicas: 2\ncordoned: [db-1, db-1, web-0, db-01]\n");
        assert!(!err.mentions("spec.cordoned[0]"), "{err}");
        for i in 1..=3 {
            assert!(err.mentions(&format!("spec.cordoned[{i}]")), "{i}: {err}");
        }
        // A member beyond `replicas` (scaled down) is ignored, not refused.
        assert!(
            spec("replicas: 2\ncordoned: [db-1, db-5]\n")
                .validate("db")
                .is_ok()
        );
    }

    #[test]
    fn member_options_name_members_once_and_leave_one_promotable() {
        let err = errors(
            "replicas: 2
replication:
  members:
    - {name: db-0, neverPromote: true}
    - {name: db-0}
    - {name: web-1}
",
        );
        assert!(err.mentions("spec.replication.members[1].name"), "{err}");
        assert!(err.mentions("spec.replication.members[2].name"), "{err}");
        let err = errors(
            "replicas: 2
replication:
  members:
    - {name: db-0, neverPromote: true}
    - {name: db-1, neverPromote: true, promotionPriority: 5000}
",
        );
        assert!(err.mentions("spec.replication.members"), "{err}");
        assert!(
            err.mentions("spec.replication.members[1].promotionPriority"),
            "{err}"
        );
        // Options for a member beyond `replicas` are kept for when it comes back.
        assert_eq!(
            spec("replicas: 1\nreplication: {members: [{name: db-4}]}").validate("db"),
            Ok(())
        );
    }

    #[test]
    fn managed_server_options_are_rejected() {
        let err = errors(
            "replicas: 1\nserverConfig: {Server-Id: '5', 'bad key': x, wait_timeout: \"1\\n2\"}",
        );
        assert!(err.mentions("spec.serverConfig.Server-Id"), "{err}");
        assert!(err.to_string().contains("managed by the operator"), "{err}");
        assert!(err.mentions("spec.serverConfig.bad key"), "{err}");
        assert!(err.mentions("spec.serverConfig.wait_timeout"), "{err}");
    }

    #[test]
    fn quantities_and_ids() {
        let err = errors(
            "replicas: 1
storage: {size: ten}
resources: {requests: {cpu: 1.2.3}, limits: {memory: 1Gb}}
proxy: {resources: {limits: {cpu: '-1'}}}
gtidDomainId: -1
serverIdBase: 0
",
        );
        for field in [
            "spec.storage.size",
            "spec.resources.requests.cpu",
            "spec.resources.limits.memory",
            "spec.proxy.resources.limits.cpu",
            "spec.gtidDomainId",
            "spec.serverIdBase",
        ] {
            assert!(err.mentions(field), "{field}: {err}");
        }
        for good in ["1", "0.5", "500m", "1Gi", "1e3", "2E+2", "+3", ".5Mi"] {
            assert!(is_quantity(good), "{good}");
        }
        for bad in ["", "Gi", "1..2", "1GB", "1e", "-1", "1 Gi"] {
            assert!(!is_quantity(bad), "{bad}");
        }
    }

    #[test]
    fn every_error_is_reported() {
        let err = errors("replicas: 0\nproxy: {replicas: -1, defaultConsistency: x}");
        assert_eq!(err.0.len(), 3, "{err}");
        assert!(err.to_string().starts_with("invalid spec: spec.replicas: "));
    }

    #[test]
    fn a_claim_is_mounted_only_at_a_directory_of_its_own() {
        assert!(claim_destination("/backups/shop").is_ok());
        assert!(claim_destination("file:///srv/backups/").is_ok());
        for bad in [
            "s3://b/p",
            "backups",
            "/tmp/x",
            "/etc",
            "/var/lib/mysql/b",
            "/var",
            "/",
            "/a/../tmp",
        ] {
            assert!(claim_destination(bad).is_err(), "{bad}");
        }
    }
}
