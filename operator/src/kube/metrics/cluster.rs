//! Per-cluster series of the controller: what alerts need to know about each `MySQLCluster`
//! (paused, its primary waiting for semi-sync acknowledgements, members failing probes, primary
//! changes), labelled `namespace` and `cluster`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::crd::{MAX_MEMBERS, MySQLClusterSpec};
use crate::kube::status::Snapshot;
use crate::orchestrate::Cause;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClusterLabels {
    namespace: String,
    cluster: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct MemberLabels {
    namespace: String,
    cluster: String,
    member: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CauseLabels {
    namespace: String,
    cluster: String,
    cause: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    namespace: String,
    cluster: String,
    result: String,
}

/// The `cause` label of promotions.
const CAUSES: [&str; 3] = ["failover", "switchover", "recovery"];

/// The series of every cluster this controller orchestrates; cloning shares them.
#[derive(Clone, Debug, Default)]
pub struct ClusterMetrics {
    paused: Family<ClusterLabels, Gauge>,
    primary_semi_sync: Family<ClusterLabels, Gauge>,
    probe_failures: Family<MemberLabels, Gauge>,
    primary_changes: Family<CauseLabels, Counter>,
    backups: Family<ResultLabels, Counter>,
    backup_last_success: Family<ClusterLabels, Gauge>,
    archive_lag: Family<ClusterLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    archive_healthy: Family<ClusterLabels, Gauge>,
}

/// One cluster's gauges as last observed: a pure function of the snapshot and the spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterGauges {
    pub paused: bool,
    /// Whether the published primary waits for replica acknowledgements; `None` when that is
    /// not known (no primary observed) or not asked of a one-member cluster.
    pub primary_semi_sync: Option<bool>,
    /// Each member's consecutive failed probes.
    pub probe_failures: Vec<(String, u32)>,
}

/// What [`ClusterMetrics::observe`] records for one cluster.
pub fn gauges(snapshot: &Snapshot, spec: &MySQLClusterSpec) -> ClusterGauges {
    let view = snapshot.view.as_ref();
    let primary = snapshot
        .published
        .as_ref()
        .and_then(|t| t.primary.as_ref())
        .and_then(|p| view?.member(&p.name));
    ClusterGauges {
        paused: spec.paused,
        // Asked only of a cluster whose spec wants semi-sync (and that has replicas).
        primary_semi_sync: primary
            .filter(|_| spec.replication.semi_sync_on(spec.replicas))
            .filter(|p| p.is_reachable())
            .and_then(|p| p.semi_sync)
            .map(|s| s.source_enabled),
        probe_failures: view
            .map(|v| {
                v.members
                    .iter()
                    .map(|m| (m.name.clone(), m.consecutive_failures))
                    .collect()
            })
            .unwrap_or_default(),
    }
}

impl ClusterMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "cluster_paused",
            "Whether the cluster's orchestration is paused (spec.paused)",
            self.paused.clone(),
        );
        registry.register(
            "primary_semi_sync",
            "Whether the cluster's primary waits for a replica's acknowledgement before a commit \
             returns (1) or not (0: a failover may lose acknowledged writes)",
            self.primary_semi_sync.clone(),
        );
        registry.register(
            "member_probe_failures",
            "Probes of the member that failed in a row (0: it answers)",
            self.probe_failures.clone(),
        );
        registry.register(
            "primary_changes",
            "Primaries promoted, by cause (failover, switchover, recovery)",
            self.primary_changes.clone(),
        );
        registry.register(
            "backups",
            "Full backups finished, by result (succeeded, failed)",
            self.backups.clone(),
        );
        registry.register(
            "backup_last_success_timestamp_seconds",
            "When the cluster's newest successful backup finished (Unix time); alert on its age",
            self.backup_last_success.clone(),
        );
        registry.register(
            "archive_lag_seconds",
            "How long the oldest transaction the binary log archiver read has waited to be stored",
            self.archive_lag.clone(),
        );
        registry.register(
            "archive_healthy",
            "Whether the binary log archiver answers and reports no error (1) or not (0)",
            self.archive_healthy.clone(),
        );
    }

    /// The archive as its archiver last reported it: whether it is healthy, and its lag when
    /// known; `None` when the cluster does not archive.
    pub fn archive(&self, namespace: &str, cluster: &str, report: Option<(bool, Option<f64>)>) {
        let labels = ClusterLabels {
            namespace: namespace.to_string(),
            cluster: cluster.to_string(),
        };
        match report {
            Some((healthy, lag)) => {
                self.archive_healthy
                    .get_or_create(&labels)
                    .set(i64::from(healthy));
                match lag {
                    Some(s) => {
                        self.archive_lag.get_or_create(&labels).set(s);
                    }
                    None => {
                        self.archive_lag.remove(&labels);
                    }
                }
            }
            None => {
                self.archive_healthy.remove(&labels);
                self.archive_lag.remove(&labels);
            }
        }
    }

    /// The newest successful backup's time as an earlier operator reported it (so the age
    /// alert works across a restart before the next backup).
    pub fn backup_succeeded_at(&self, namespace: &str, cluster: &str, unix_secs: u64) {
        self.backup_last_success
            .get_or_create(&ClusterLabels {
                namespace: namespace.to_string(),
                cluster: cluster.to_string(),
            })
            .set(i64::try_from(unix_secs).unwrap_or(i64::MAX));
    }

    /// Counts a finished backup; a successful one finished at `unix_secs`.
    pub fn backup_finished(&self, namespace: &str, cluster: &str, succeeded: Option<u64>) {
        let result = if succeeded.is_some() {
            "succeeded"
        } else {
            "failed"
        };
        self.backups
            .get_or_create(&ResultLabels {
                namespace: namespace.to_string(),
                cluster: cluster.to_string(),
                result: result.to_string(),
            })
            .inc();
        if let Some(at) = succeeded {
            self.backup_last_success
                .get_or_create(&ClusterLabels {
                    namespace: namespace.to_string(),
                    cluster: cluster.to_string(),
                })
                .set(i64::try_from(at).unwrap_or(i64::MAX));
        }
    }

    /// Records a cluster's gauges after a tick.
    pub fn observe(&self, namespace: &str, cluster: &str, gauges: &ClusterGauges) {
        let labels = ClusterLabels {
            namespace: namespace.to_string(),
            cluster: cluster.to_string(),
        };
        self.paused
            .get_or_create(&labels)
            .set(i64::from(gauges.paused));
        match gauges.primary_semi_sync {
            Some(on) => {
                self.primary_semi_sync
                    .get_or_create(&labels)
                    .set(i64::from(on));
            }
            None => {
                self.primary_semi_sync.remove(&labels);
            }
        }
        for (member, failures) in &gauges.probe_failures {
            self.probe_failures
                .get_or_create(&MemberLabels {
                    namespace: namespace.to_string(),
                    cluster: cluster.to_string(),
                    member: member.clone(),
                })
                .set(i64::from(*failures));
        }
        // Members gone from the view (scaled down) are not left failing.
        for i in 0..MAX_MEMBERS {
            let member = format!("{cluster}-{i}");
            if !gauges.probe_failures.iter().any(|(m, _)| *m == member) {
                self.probe_failures.remove(&MemberLabels {
                    namespace: namespace.to_string(),
                    cluster: cluster.to_string(),
                    member,
                });
            }
        }
        // Promotion counters exist from the start at 0, so that the first one is an increase.
        for cause in CAUSES {
            let _created = self.primary_changes.get_or_create(&CauseLabels {
                namespace: namespace.to_string(),
                cluster: cluster.to_string(),
                cause: cause.to_string(),
            });
        }
    }

    /// Counts a promotion.
    pub fn promoted(&self, namespace: &str, cluster: &str, cause: &Cause) {
        let cause = match cause {
            Cause::Failover => CAUSES[0],
            Cause::Switchover { .. } => CAUSES[1],
            Cause::Recovery => CAUSES[2],
        };
        self.primary_changes
            .get_or_create(&CauseLabels {
                namespace: namespace.to_string(),
                cluster: cluster.to_string(),
                cause: cause.to_string(),
            })
            .inc();
    }

    /// Drops a cluster's gauges once it is no longer orchestrated (deleted), so no alert
    /// stays on a cluster that is gone. Its counters stay: Prometheus handles their end.
    pub fn forget(&self, namespace: &str, cluster: &str) {
        let labels = ClusterLabels {
            namespace: namespace.to_string(),
            cluster: cluster.to_string(),
        };
        self.paused.remove(&labels);
        self.primary_semi_sync.remove(&labels);
        self.backup_last_success.remove(&labels);
        self.archive_lag.remove(&labels);
        self.archive_healthy.remove(&labels);
        for i in 0..MAX_MEMBERS {
            self.probe_failures.remove(&MemberLabels {
                namespace: namespace.to_string(),
                cluster: cluster.to_string(),
                member: format!("{cluster}-{i}"),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use lagless_core::gtid::GtidSet;
    use lagless_core::topology::{Flavor, Member, Topology, TopologyState};

    use super::*;
    use crate::orchestrate::{ClusterView, MemberView, Probe, SemiSyncState};

    fn snapshot(source_enabled: Option<bool>) -> Snapshot {
        let mut primary = MemberView::unobserved("db-0", "db-0.db", 3306);
        primary.probe = Probe::Ok;
        primary.executed = Some(GtidSet::parse(Flavor::Mariadb, "0-1-5").unwrap());
        primary.semi_sync = source_enabled.map(|on| SemiSyncState {
            source_enabled: on,
            replica_enabled: false,
        });
        let mut down = MemberView::unobserved("db-1", "db-1.db", 3306);
        down.consecutive_failures = 4;
        Snapshot {
            view: Some(ClusterView {
                flavor: Flavor::Mariadb,
                members: vec![primary, down],
                published: None,
            }),
            published: Some(Topology {
                cluster: "db".into(),
                flavor: Flavor::Mariadb,
                epoch: 2,
                state: TopologyState::Ready,
                primary: Some(Member::new("db-0", "db-0.db", 3306)),
                replicas: vec![],
                consistency: None,
                read_only: false,
            }),
            ..Snapshot::default()
        }
    }

    fn spec(yaml: &str) -> MySQLClusterSpec {
        serde_saphyr::from_str(yaml).unwrap()
    }

    #[test]
    fn gauges_follow_the_observation() {
        let g = gauges(&snapshot(Some(false)), &spec("replicas: 2\npaused: true"));
        assert_eq!(
            g,
            ClusterGauges {
                paused: true,
                primary_semi_sync: Some(false),
                probe_failures: vec![("db-0".into(), 0), ("db-1".into(), 4)],
            }
        );
        assert_eq!(
            gauges(&snapshot(Some(true)), &spec("replicas: 2")).primary_semi_sync,
            Some(true)
        );
        // Unknown, or nothing to acknowledge with one member: no series, so no alert.
        assert_eq!(
            gauges(&snapshot(None), &spec("replicas: 2")).primary_semi_sync,
            None
        );
        assert_eq!(
            gauges(&snapshot(Some(false)), &spec("replicas: 1")).primary_semi_sync,
            None
        );
        assert_eq!(
            gauges(&Snapshot::default(), &spec("replicas: 2")).probe_failures,
            vec![]
        );
        // A cluster that does not ask for semi-sync is not alerted for running without it.
        assert_eq!(
            gauges(
                &snapshot(Some(false)),
                &spec("replicas: 2\nreplication:\n  semiSync: false")
            )
            .primary_semi_sync,
            None
        );
    }

    #[test]
    fn promotions_start_at_zero_and_members_gone_stop_failing() {
        let metrics = ClusterMetrics::default();
        let mut registry = Registry::with_prefix("lagless_operator");
        metrics.register(&mut registry);
        let encode = || {
            let mut out = String::new();
            prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
            out
        };
        let two = gauges(&snapshot(Some(true)), &spec("replicas: 2"));
        metrics.observe("prod", "db", &two);
        let text = encode();
        for cause in CAUSES {
            let series = format!(
                "lagless_operator_primary_changes_total{{namespace=\"prod\",cluster=\"db\",cause=\"{cause}\"}} 0"
            );
            assert!(text.contains(&series), "{series} missing from\n{text}");
        }
        assert!(text.contains("member=\"db-1\"} 4"), "{text}");
        // Scaled down to one member: db-1's series goes.
        let one = ClusterGauges {
            probe_failures: vec![("db-0".into(), 0)],
            ..two
        };
        metrics.observe("prod", "db", &one);
        let text = encode();
        assert!(!text.contains("member=\"db-1\""), "{text}");
        assert!(text.contains("member=\"db-0\"} 0"), "{text}");
    }

    #[test]
    fn series_are_labelled_by_cluster_and_forgotten_with_it() {
        let metrics = ClusterMetrics::default();
        let mut registry = Registry::with_prefix("lagless_operator");
        metrics.register(&mut registry);
        metrics.observe(
            "prod",
            "db",
            &gauges(&snapshot(Some(false)), &spec("replicas: 2")),
        );
        metrics.promoted("prod", "db", &Cause::Failover);
        let encode = || {
            let mut out = String::new();
            prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
            out
        };
        let text = encode();
        for series in [
            "lagless_operator_cluster_paused{namespace=\"prod\",cluster=\"db\"} 0",
            "lagless_operator_primary_semi_sync{namespace=\"prod\",cluster=\"db\"} 0",
            "lagless_operator_member_probe_failures{namespace=\"prod\",cluster=\"db\",member=\"db-1\"} 4",
            "lagless_operator_primary_changes_total{namespace=\"prod\",cluster=\"db\",cause=\"failover\"} 1",
        ] {
            assert!(text.contains(series), "{series} missing from\n{text}");
        }
        metrics.forget("prod", "db");
        let text = encode();
        assert!(!text.contains("cluster=\"db\"} 0"), "{text}");
        assert!(!text.contains("member=\"db-1\""), "{text}");
    }
}
