//! The directory's tables, in the global cluster.
//!
//! - `tenants`: one row per tenant, its route.
//! - `changes`: the change log; one row per change of `tenants`, written in the same
//!   transaction. A row with NULL `cluster` and `state` records a removal.
//! - `clusters`: the pool's tenant clusters, their capacity and measured load.
//! - `change_lock`: one row that every change of `tenants` locks first. InnoDB hands out
//!   AUTO_INCREMENT values at insert, not at commit, so two concurrent writers could commit
//!   seq 8 after a follower had read seq 9 and moved past 8; serialised writers commit in seq
//!   order, and following by seq misses nothing. Directory writes are rare, so the lock costs
//!   nothing that matters.

use crate::placement::ClusterState;
use crate::route::TenantState;

/// The database that holds the directory.
pub const DATABASE: &str = "lagless_directory";

/// The DDL (and the lock row), idempotent: every statement may run again on a directory that
/// has it already.
pub fn statements() -> Vec<String> {
    let db = DATABASE;
    let tenant_states = enum_of(TenantState::ALL.iter().map(|s| s.as_str()));
    let cluster_states = enum_of(ClusterState::ALL.iter().map(|s| s.as_str()));
    // Ids and cluster names are ASCII; a binary collation compares them exactly, as the code
    // does.
    let name = "CHARACTER SET ascii COLLATE ascii_bin";
    vec![
        format!("CREATE DATABASE IF NOT EXISTS `{db}` CHARACTER SET utf8mb4"),
        format!(
            "CREATE TABLE IF NOT EXISTS `{db}`.`tenants` (\
             `tenant_id` VARCHAR(64) {name} NOT NULL, \
             `cluster` VARCHAR(63) {name} NOT NULL, \
             `version` BIGINT UNSIGNED NOT NULL, \
             `state` ENUM({tenant_states}) NOT NULL, \
             `updated_at` TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) \
             ON UPDATE CURRENT_TIMESTAMP(6), \
             PRIMARY KEY (`tenant_id`), \
             KEY `by_cluster` (`cluster`)\
             ) ENGINE=InnoDB"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS `{db}`.`changes` (\
             `seq` BIGINT UNSIGNED NOT NULL AUTO_INCREMENT, \
             `tenant_id` VARCHAR(64) {name} NOT NULL, \
             `cluster` VARCHAR(63) {name} NULL, \
             `version` BIGINT UNSIGNED NOT NULL, \
             `state` ENUM({tenant_states}) NULL, \
             `at` TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), \
             PRIMARY KEY (`seq`), \
             KEY `by_tenant` (`tenant_id`, `version`)\
             ) ENGINE=InnoDB"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS `{db}`.`clusters` (\
             `name` VARCHAR(63) {name} NOT NULL, \
             `state` ENUM({cluster_states}) NOT NULL, \
             `capacity_bytes` BIGINT UNSIGNED NOT NULL, \
             `write_capacity` DOUBLE NOT NULL, \
             `bytes` BIGINT UNSIGNED NOT NULL DEFAULT 0, \
             `write_rate` DOUBLE NOT NULL DEFAULT 0, \
             `tenants` BIGINT UNSIGNED NOT NULL DEFAULT 0, \
             `updated_at` TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) \
             ON UPDATE CURRENT_TIMESTAMP(6), \
             PRIMARY KEY (`name`)\
             ) ENGINE=InnoDB"
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS `{db}`.`change_lock` (\
             `id` TINYINT UNSIGNED NOT NULL, \
             PRIMARY KEY (`id`)\
             ) ENGINE=InnoDB"
        ),
        format!("INSERT IGNORE INTO `{db}`.`change_lock` (`id`) VALUES (1)"),
    ]
}

/// `'a','b'` for an ENUM column.
fn enum_of<'a>(values: impl Iterator<Item = &'a str>) -> String {
    values
        .map(|v| format!("'{v}'"))
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_statement_is_idempotent_and_names_the_directory() {
        let all = statements();
        assert_eq!(all.len(), 6);
        for s in &all {
            assert!(
                s.contains("IF NOT EXISTS") || s.starts_with("INSERT IGNORE"),
                "{s}"
            );
            assert!(s.contains("`lagless_directory`"), "{s}");
        }
        for s in &all[1..5] {
            assert!(s.ends_with("ENGINE=InnoDB"), "{s}");
        }
    }

    #[test]
    fn enums_match_the_rust_states() {
        let all = statements().join("\n");
        assert!(all.contains("ENUM('creating','active','frozen','moving','dropping') NOT NULL"));
        assert!(all.contains("ENUM('creating','active','frozen','moving','dropping') NULL"));
        assert!(all.contains("ENUM('open','filling','closed') NOT NULL"));
    }
}
