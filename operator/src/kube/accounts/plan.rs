//! What to run on a primary to bring its databases, accounts and grants to what the
//! `MySQLDatabase`, `MySQLUser` and `MySQLGrant` resources ask, given what was made before
//! (the [`Inventory`], kept by the operator): a pure function, so every statement is tested
//! without a server. Only what changed is run, so a steady cluster gets no statement (and its
//! binary log no event) from a pass.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use sha1::{Digest, Sha1};

use crate::crd::Flavor;

/// A database as wanted, or as made.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Database {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub character_set: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collation: Option<String>,
    /// Dropped when its resource goes.
    pub delete: bool,
}

/// An account as wanted, or as made (never its password).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub name: String,
    pub host: String,
    #[serde(default)]
    pub max_user_connections: i32,
    /// Which password it was given: the Secret's `resourceVersion` and key.
    pub password_version: String,
    pub delete: bool,
}

/// Privileges as wanted, or as granted.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Grant {
    pub user: String,
    pub host: String,
    pub database: String,
    pub table: String,
    pub privileges: BTreeSet<String>,
    #[serde(default)]
    pub grant_option: bool,
    pub delete: bool,
}

/// What the operator made on a cluster, kept between passes (and across operator restarts),
/// so that a resource deleted is undone and an unchanged one is left alone.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Inventory {
    #[serde(default)]
    pub databases: Vec<Database>,
    #[serde(default)]
    pub users: Vec<User>,
    #[serde(default)]
    pub grants: Vec<Grant>,
}

/// An account with its password, as wanted.
#[derive(Clone, PartialEq, Eq)]
pub struct WantedUser {
    pub user: User,
    pub password: String,
}

impl std::fmt::Debug for WantedUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WantedUser")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl Inventory {
    /// The records whose names and privileges pass the same checks as the resources' (the
    /// Secret it is read from could have been edited), and how many were left out.
    pub fn checked(self) -> (Inventory, usize) {
        let before = self.databases.len() + self.users.len() + self.grants.len();
        let databases: Vec<Database> = self
            .databases
            .into_iter()
            .filter(|d| {
                check_name("database", &d.name, 64, true).is_ok()
                    && d.character_set
                        .as_deref()
                        .is_none_or(|c| check_charset("", c).is_ok())
                    && d.collation
                        .as_deref()
                        .is_none_or(|c| check_charset("", c).is_ok())
            })
            .collect();
        let users: Vec<User> = self
            .users
            .into_iter()
            .filter(|u| {
                check_name("user", &u.name, 80, false).is_ok()
                    && check_name("host", &u.host, 255, false).is_ok()
            })
            .collect();
        let grants: Vec<Grant> = self
            .grants
            .into_iter()
            .filter(|g| {
                check_name("user", &g.user, 80, false).is_ok()
                    && check_name("host", &g.host, 255, false).is_ok()
                    && (g.database == "*" || check_name("database", &g.database, 64, true).is_ok())
                    && (g.table == "*" || check_name("table", &g.table, 64, true).is_ok())
                    && !g.privileges.is_empty()
                    && g.privileges.iter().all(|p| privilege(p).as_ref() == Ok(p))
            })
            .collect();
        let kept = Inventory {
            databases,
            users,
            grants,
        };
        let after = kept.databases.len() + kept.users.len() + kept.grants.len();
        (kept, before - after)
    }
}

/// Everything the resources ask for, valid.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Wanted {
    pub databases: Vec<Database>,
    pub users: Vec<WantedUser>,
    pub grants: Vec<Grant>,
}

/// Which object a statement is for.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Key {
    Database(String),
    User(String, String),
    Grant(String, String, String, String),
}

impl Key {
    fn of_grant(g: &Grant) -> Self {
        Key::Grant(
            g.user.clone(),
            g.host.clone(),
            g.database.clone(),
            g.table.clone(),
        )
    }
}

/// One statement, with what it is for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Statement {
    pub key: Key,
    pub sql: String,
    /// Server errors that mean it is done already (a privilege revoked twice).
    pub done_on: Vec<u16>,
}

impl Statement {
    fn new(key: Key, sql: String) -> Self {
        Self {
            key,
            sql,
            done_on: Vec::new(),
        }
    }
}

/// The privileges `GRANT` may be given here.
const PRIVILEGES: &[&str] = &[
    "ALL PRIVILEGES",
    "ALTER",
    "ALTER ROUTINE",
    "CREATE",
    "CREATE ROUTINE",
    "CREATE TEMPORARY TABLES",
    "CREATE VIEW",
    "DELETE",
    "DELETE HISTORY",
    "DROP",
    "EVENT",
    "EXECUTE",
    "INDEX",
    "INSERT",
    "LOCK TABLES",
    "PROCESS",
    "REFERENCES",
    "RELOAD",
    "REPLICATION CLIENT",
    "REPLICATION SLAVE",
    "SELECT",
    "SHOW DATABASES",
    "SHOW VIEW",
    "TRIGGER",
    "UPDATE",
    "USAGE",
];

/// A privilege name as `GRANT` takes it (`select` → `SELECT`, `ALL` → `ALL PRIVILEGES`), or
/// why it is refused.
pub fn privilege(name: &str) -> Result<String, String> {
    let upper = name
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_uppercase();
    let upper = if upper == "ALL" {
        "ALL PRIVILEGES".to_string()
    } else {
        upper
    };
    if PRIVILEGES.contains(&upper.as_str()) {
        Ok(upper)
    } else {
        Err(format!(
            "unknown privilege {name:?} (one of {})",
            PRIVILEGES.join(", ")
        ))
    }
}

/// A database, table or account name: not empty, at most `max` characters, no NUL or
/// backslash; for database and table names also no `/` or `.` and no trailing space (the
/// server would refuse or change them).
pub fn check_name(what: &str, value: &str, max: usize, identifier: bool) -> Result<(), String> {
    if value.is_empty() || value.chars().count() > max {
        return Err(format!("{what} {value:?}: 1 to {max} characters"));
    }
    if value.contains(['\0', '\\']) {
        return Err(format!("{what} {value:?}: no NUL or backslash"));
    }
    if identifier && (value.contains(['/', '.']) || value.ends_with(' ')) {
        return Err(format!(
            "{what} {value:?}: no '/' or '.', and no trailing space"
        ));
    }
    Ok(())
}

/// A character set or collation name: letters, digits and `_`.
pub fn check_charset(what: &str, value: &str) -> Result<(), String> {
    if !value.is_empty()
        && value.len() <= 64
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        Ok(())
    } else {
        Err(format!("{what} {value:?}: letters, digits and '_' only"))
    }
}

fn ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// The `sql_mode` every statement of a pass runs with: backslashes are plain characters in
/// literals, so [`literal`] (quotes doubled) is the whole escaping, whatever `serverConfig`
/// says; and on MariaDB a `GRANT` never creates an account.
pub fn session_sql_mode(flavor: Flavor) -> &'static str {
    match flavor {
        Flavor::Mariadb => {
            "SET SESSION sql_mode = 'NO_BACKSLASH_ESCAPES,NO_AUTO_CREATE_USER,STRICT_TRANS_TABLES,NO_ENGINE_SUBSTITUTION'"
        }
        Flavor::Mysql => {
            "SET SESSION sql_mode = 'NO_BACKSLASH_ESCAPES,STRICT_TRANS_TABLES,NO_ENGINE_SUBSTITUTION'"
        }
    }
}

/// A string literal with its quotes doubled: all the escaping a literal needs under
/// [`session_sql_mode`].
fn literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn account(name: &str, host: &str) -> String {
    format!("{}@{}", literal(name), literal(host))
}

fn target(database: &str, table: &str) -> String {
    let db = if database == "*" {
        "*".to_string()
    } else {
        ident(database)
    };
    let tb = if table == "*" {
        "*".to_string()
    } else {
        ident(table)
    };
    format!("{db}.{tb}")
}

/// `SHA1(SHA1(password))` as `mysql.user` keeps it: `*` and 40 upper-case hex digits.
pub fn native_hash(password: &str) -> String {
    let inner = Sha1::digest(password.as_bytes());
    let outer = Sha1::digest(inner);
    let hex: String = outer.iter().map(|b| format!("{b:02X}")).collect();
    format!("*{hex}")
}

/// How a password is given: on MariaDB as its hash, so the password itself is in no
/// statement (not in the binary log, the process list or a slow log); on MySQL, whose default
/// plugin hashes it itself, as a literal (see [`session_sql_mode`]).
fn identified(flavor: Flavor, password: &str) -> String {
    match flavor {
        Flavor::Mariadb => format!("IDENTIFIED BY PASSWORD {}", literal(&native_hash(password))),
        Flavor::Mysql => format!("IDENTIFIED BY {}", literal(password)),
    }
}

/// The statements that bring the server from `done` to `wanted`: new and changed objects in
/// order (databases, users, grants), then what no resource asks for any more, when its policy
/// says to undo it (grants, users, databases). `refused` are objects whose resources exist
/// but could not be taken (a typo, an unreadable Secret): they are neither made nor undone.
/// An account made anew (dropped before, or made outside) gets its grants again: a
/// `DROP USER` took them.
pub fn plan(
    wanted: &Wanted,
    done: &Inventory,
    refused: &BTreeSet<Key>,
    flavor: Flavor,
) -> Vec<Statement> {
    let mut out = Vec::new();
    let done_dbs: BTreeMap<&str, &Database> = done
        .databases
        .iter()
        .map(|d| (d.name.as_str(), d))
        .collect();
    for db in &wanted.databases {
        if done_dbs
            .get(db.name.as_str())
            .is_some_and(|d| d.character_set == db.character_set && d.collation == db.collation)
        {
            continue;
        }
        let key = Key::Database(db.name.clone());
        let mut options = String::new();
        if let Some(cs) = &db.character_set {
            options.push_str(&format!(" CHARACTER SET {cs}"));
        }
        if let Some(co) = &db.collation {
            options.push_str(&format!(" COLLATE {co}"));
        }
        out.push(Statement::new(
            key.clone(),
            format!("CREATE DATABASE IF NOT EXISTS {}{options}", ident(&db.name)),
        ));
        if !options.is_empty() {
            out.push(Statement::new(
                key,
                format!("ALTER DATABASE {}{options}", ident(&db.name)),
            ));
        }
    }
    let done_users: BTreeMap<(&str, &str), &User> = done
        .users
        .iter()
        .map(|u| ((u.name.as_str(), u.host.as_str()), u))
        .collect();
    for w in &wanted.users {
        let u = &w.user;
        let before = done_users.get(&(u.name.as_str(), u.host.as_str()));
        if before.is_some_and(|b| **b == *u) {
            continue;
        }
        let key = Key::User(u.name.clone(), u.host.clone());
        let who = account(&u.name, &u.host);
        let identified = identified(flavor, &w.password);
        if before.is_none() {
            out.push(Statement::new(
                key.clone(),
                format!("CREATE USER IF NOT EXISTS {who} {identified}"),
            ));
        }
        // Also for an account that existed before the resource: it gets the Secret's password.
        out.push(Statement::new(
            key,
            format!(
                "ALTER USER {who} {identified} WITH MAX_USER_CONNECTIONS {}",
                u.max_user_connections.max(0)
            ),
        ));
    }
    let fresh: BTreeSet<(&str, &str)> = wanted
        .users
        .iter()
        .map(|w| (w.user.name.as_str(), w.user.host.as_str()))
        .filter(|k| !done_users.contains_key(k))
        .collect();
    let done_grants: BTreeMap<Key, &Grant> =
        done.grants.iter().map(|g| (Key::of_grant(g), g)).collect();
    for g in &wanted.grants {
        let key = Key::of_grant(g);
        let before = done_grants
            .get(&key)
            .copied()
            .filter(|_| !fresh.contains(&(g.user.as_str(), g.host.as_str())));
        if before.is_some_and(|b| b.privileges == g.privileges && b.grant_option == g.grant_option)
        {
            continue;
        }
        let on = target(&g.database, &g.table);
        let who = account(&g.user, &g.host);
        if let Some(b) = before {
            let gone: Vec<&str> = b
                .privileges
                .difference(&g.privileges)
                .map(String::as_str)
                .collect();
            if !gone.is_empty() {
                out.push(revoke(key.clone(), &gone, &on, &who));
            }
            if b.grant_option && !g.grant_option {
                out.push(revoke(key.clone(), &["GRANT OPTION"], &on, &who));
            }
        }
        let privileges: Vec<&str> = g.privileges.iter().map(String::as_str).collect();
        out.push(Statement::new(
            key,
            format!(
                "GRANT {} ON {on} TO {who}{}",
                privileges.join(", "),
                if g.grant_option {
                    " WITH GRANT OPTION"
                } else {
                    ""
                }
            ),
        ));
    }
    // Undone: in the inventory, asked for by no resource, with policy Delete.
    let wanted_grants: BTreeSet<Key> = wanted.grants.iter().map(Key::of_grant).collect();
    for g in done.grants.iter().filter(|g| g.delete) {
        let key = Key::of_grant(g);
        if wanted_grants.contains(&key) || refused.contains(&key) {
            continue;
        }
        let on = target(&g.database, &g.table);
        let who = account(&g.user, &g.host);
        let privileges: Vec<&str> = g.privileges.iter().map(String::as_str).collect();
        out.push(revoke(key.clone(), &privileges, &on, &who));
        // Apart: `REVOKE ALL PRIVILEGES, GRANT OPTION ON db.*` is refused by the servers.
        if g.grant_option {
            out.push(revoke(key, &["GRANT OPTION"], &on, &who));
        }
    }
    let wanted_users: BTreeSet<(&str, &str)> = wanted
        .users
        .iter()
        .map(|w| (w.user.name.as_str(), w.user.host.as_str()))
        .collect();
    for u in done.users.iter().filter(|u| u.delete) {
        let key = Key::User(u.name.clone(), u.host.clone());
        if !wanted_users.contains(&(u.name.as_str(), u.host.as_str())) && !refused.contains(&key) {
            out.push(Statement::new(
                Key::User(u.name.clone(), u.host.clone()),
                format!("DROP USER IF EXISTS {}", account(&u.name, &u.host)),
            ));
        }
    }
    let wanted_dbs: BTreeSet<&str> = wanted.databases.iter().map(|d| d.name.as_str()).collect();
    for d in done.databases.iter().filter(|d| d.delete) {
        let key = Key::Database(d.name.clone());
        if !wanted_dbs.contains(d.name.as_str()) && !refused.contains(&key) {
            out.push(Statement::new(
                Key::Database(d.name.clone()),
                format!("DROP DATABASE IF EXISTS {}", ident(&d.name)),
            ));
        }
    }
    out
}

/// A `REVOKE`; done already when the account or the grant is gone (1141, 1147, 1269).
fn revoke(key: Key, privileges: &[&str], on: &str, who: &str) -> Statement {
    Statement {
        key,
        sql: format!("REVOKE {} ON {on} FROM {who}", privileges.join(", ")),
        done_on: vec![1141, 1147, 1269],
    }
}

/// The inventory after a pass: each wanted object whose statements all ran is recorded as
/// wanted; one that failed, or whose resource was refused, keeps its previous record (so it
/// is tried again, and undone only as far as it was made); an object no resource asks for is
/// forgotten once undone (or at once when its policy retains it).
pub fn after(
    wanted: &Wanted,
    done: &Inventory,
    failed: &BTreeSet<Key>,
    refused: &BTreeSet<Key>,
) -> Inventory {
    let mut out = Inventory::default();
    for d in &wanted.databases {
        let key = Key::Database(d.name.clone());
        if !failed.contains(&key) {
            out.databases.push(d.clone());
        } else if let Some(b) = done.databases.iter().find(|b| b.name == d.name) {
            out.databases.push(b.clone());
        }
    }
    for d in &done.databases {
        let key = Key::Database(d.name.clone());
        let still = wanted.databases.iter().any(|w| w.name == d.name);
        if !still && (d.delete && failed.contains(&key) || refused.contains(&key)) {
            out.databases.push(d.clone());
        }
    }
    for w in &wanted.users {
        let u = &w.user;
        let key = Key::User(u.name.clone(), u.host.clone());
        if !failed.contains(&key) {
            out.users.push(u.clone());
        } else if let Some(b) = done
            .users
            .iter()
            .find(|b| b.name == u.name && b.host == u.host)
        {
            out.users.push(b.clone());
        }
    }
    for u in &done.users {
        let key = Key::User(u.name.clone(), u.host.clone());
        let still = wanted
            .users
            .iter()
            .any(|w| w.user.name == u.name && w.user.host == u.host);
        if !still && (u.delete && failed.contains(&key) || refused.contains(&key)) {
            out.users.push(u.clone());
        }
    }
    for g in &wanted.grants {
        let key = Key::of_grant(g);
        if !failed.contains(&key) {
            out.grants.push(g.clone());
        } else if let Some(b) = done.grants.iter().find(|b| Key::of_grant(b) == key) {
            out.grants.push(b.clone());
        }
    }
    for g in &done.grants {
        let key = Key::of_grant(g);
        let still = wanted.grants.iter().any(|w| Key::of_grant(w) == key);
        if !still && (g.delete && failed.contains(&key) || refused.contains(&key)) {
            out.grants.push(g.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests;
