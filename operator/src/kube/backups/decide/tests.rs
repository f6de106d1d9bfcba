use lagless_core::gtid::GtidSet;
use lagless_core::topology::{Flavor, Member, Topology, TopologyState};

use super::*;
use crate::crd::backup::{MySQLBackupSpec, MySQLBackupStatus};
use crate::orchestrate::{ClusterView, MemberView, Probe};

fn member_view(name: &str, executed: &str, replicating: bool, lag: Option<u64>) -> MemberView {
    let mut m = MemberView::unobserved(name, format!("{name}.h"), 3306);
    m.probe = Probe::Ok;
    m.executed = Some(GtidSet::parse(Flavor::Mariadb, executed).unwrap());
    if replicating {
        m.io_running = Some(true);
        m.sql_running = Some(true);
        m.lag_seconds = lag;
    }
    m
}

fn member(name: &str) -> Member {
    Member::new(name, format!("{name}.h"), 3306)
}

fn published(primary: &str, replicas: &[&str]) -> Topology {
    Topology {
        cluster: "db".into(),
        flavor: Flavor::Mariadb,
        epoch: 3,
        state: TopologyState::Ready,
        primary: Some(member(primary)),
        replicas: replicas.iter().map(|r| member(r)).collect(),
        consistency: None,
        read_only: false,
    }
}

fn view(members: Vec<MemberView>) -> ClusterView {
    ClusterView {
        flavor: Flavor::Mariadb,
        members,
        published: None,
    }
}

#[test]
fn a_caught_up_replica_gives_the_backup_the_least_behind_first() {
    let v = view(vec![
        member_view("db-0", "0-1-100", false, None),
        member_view("db-1", "0-1-90", true, Some(2)),
        member_view("db-2", "0-1-100", true, Some(0)),
    ]);
    let t = published("db-0", &["db-1", "db-2"]);
    assert_eq!(choose_source(Some(&v), Some(&t), 3).unwrap().name, "db-2");
    // Behind by GTID but reporting no delay (the primary moved on since): still caught up.
    let v = view(vec![
        member_view("db-0", "0-1-100", false, None),
        member_view("db-1", "0-1-99", true, Some(0)),
        member_view("db-2", "0-1-80", true, Some(3)),
    ]);
    assert_eq!(choose_source(Some(&v), Some(&t), 3).unwrap().name, "db-1");
}

#[test]
fn no_source_says_why_and_the_primary_gives_it_only_alone() {
    let v = view(vec![
        member_view("db-0", "0-1-100", false, None),
        member_view("db-1", "0-1-90", true, Some(4)),
        member_view("db-2", "0-1-100", false, None),
    ]);
    let t = published("db-0", &["db-1", "db-2"]);
    let e = choose_source(Some(&v), Some(&t), 3).unwrap_err();
    assert!(e.contains("db-1 is behind (10 transactions, 4 s)"), "{e}");
    assert!(e.contains("db-2 does not replicate cleanly"), "{e}");
    let alone = published("db-0", &[]);
    assert!(choose_source(Some(&v), Some(&alone), 3).is_err());
    assert_eq!(
        choose_source(Some(&v), Some(&alone), 1).unwrap().name,
        "db-0"
    );
    assert!(choose_source(None, Some(&t), 3).is_err());
    assert!(choose_source(Some(&v), None, 3).is_err());
}

fn backup(name: &str, created_s: i64, phase: Option<BackupPhase>) -> MySQLBackup {
    let mut b = MySQLBackup::new(
        name,
        MySQLBackupSpec {
            cluster_ref: crate::crd::accounts::ClusterRef { name: "db".into() },
            drill: false,
            backup_id: None,
        },
    );
    b.metadata.creation_timestamp = Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        k8s_openapi::jiff::Timestamp::from_second(created_s).unwrap(),
    ));
    b.status = phase.map(|p| MySQLBackupStatus {
        phase: Some(p),
        ..MySQLBackupStatus::default()
    });
    b
}

#[test]
fn a_drill_compares_with_a_replicating_replica_however_far_behind() {
    let v = view(vec![
        member_view("db-0", "0-1-100", false, None),
        member_view("db-1", "0-1-90", true, Some(4)),
        member_view("db-2", "0-1-100", false, None),
    ]);
    let t = published("db-0", &["db-1", "db-2"]);
    assert_eq!(drill_source(Some(&v), Some(&t), 3).unwrap().name, "db-1");
    let stopped = view(vec![
        member_view("db-0", "0-1-100", false, None),
        member_view("db-1", "0-1-90", false, None),
    ]);
    let t = published("db-0", &["db-1"]);
    assert!(drill_source(Some(&stopped), Some(&t), 2).is_err());
    let alone = published("db-0", &[]);
    assert_eq!(
        drill_source(Some(&stopped), Some(&alone), 1).unwrap().name,
        "db-0"
    );
}

#[test]
fn the_oldest_backup_not_started_runs_next() {
    let all = [
        backup("c", 300, None),
        backup("a", 100, Some(BackupPhase::Succeeded)),
        backup("b", 200, Some(BackupPhase::Pending)),
        backup("d", 50, Some(BackupPhase::Failed)),
        backup("e", 60, Some(BackupPhase::Running)),
    ];
    assert_eq!(
        next_to_run(&all).unwrap().metadata.name.as_deref(),
        Some("b")
    );
    let names: Vec<_> = interrupted(&all)
        .iter()
        .map(|b| b.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(names, ["e"]);
    assert!(next_to_run(&all[1..2]).is_none());
}

#[test]
fn the_schedule_runs_the_latest_due_time_once_and_not_before_the_cluster() {
    let hourly = Schedule::parse("0 * * * *").unwrap();
    let day = 20_000 * 86_400;
    // 10:30: the 10:00 run is due, 11:00 is next.
    let (due, next) = scheduled_runs(&hourly, 0, day + 10 * 3600 + 1800);
    assert_eq!(due, Some(day + 10 * 3600));
    assert_eq!(next, Some(day + 11 * 3600));
    // A cluster made at 10:15 has no 10:00 run.
    let (due, _) = scheduled_runs(&hourly, day + 10 * 3600 + 900, day + 10 * 3600 + 1800);
    assert_eq!(due, None);
    // A daily run missed by more than the window is not taken late.
    let daily = Schedule::parse("0 3 * * *").unwrap();
    let (due, next) = scheduled_runs(&daily, 0, day + 5 * 3600);
    assert_eq!(due, None);
    assert_eq!(next, Some(day + 86_400 + 3 * 3600));
    let (due, _) = scheduled_runs(&daily, 0, day + 3 * 3600 + 59 * 60);
    assert_eq!(due, Some(day + 3 * 3600));
}

#[test]
fn a_chosen_member_gives_the_backup_only_once_caught_up() {
    let v = view(vec![
        member_view("db-0", "0-1-100", false, None),
        member_view("db-1", "0-1-100", true, Some(0)),
        member_view("db-2", "0-1-90", true, Some(3)),
    ]);
    let t = published("db-0", &["db-1", "db-2"]);
    let chosen = |p| choose_source_for(Some(&v), Some(&t), 3, Some(p));
    assert_eq!(chosen("db-1").unwrap().name, "db-1");
    assert!(chosen("db-2").unwrap_err().contains("db-2 is behind"));
    assert!(chosen("db-0").unwrap_err().contains("is the primary"));
    assert!(
        chosen("db-7")
            .unwrap_err()
            .contains("not a published replica")
    );
    assert_eq!(
        choose_source_for(Some(&v), Some(&t), 3, None).unwrap().name,
        "db-1"
    );
}
