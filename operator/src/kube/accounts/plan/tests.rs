use super::*;

fn db(name: &str, delete: bool) -> Database {
    Database {
        name: name.into(),
        character_set: None,
        collation: None,
        delete,
    }
}

fn user(name: &str, version: &str, delete: bool) -> WantedUser {
    WantedUser {
        user: User {
            name: name.into(),
            host: "%".into(),
            max_user_connections: 0,
            password_version: version.into(),
            delete,
        },
        password: "s3cr'et".into(),
    }
}

fn grant(user: &str, database: &str, privileges: &[&str], delete: bool) -> Grant {
    Grant {
        user: user.into(),
        host: "%".into(),
        database: database.into(),
        table: "*".into(),
        privileges: privileges.iter().map(|p| (*p).to_string()).collect(),
        grant_option: false,
        delete,
    }
}

fn none() -> BTreeSet<Key> {
    BTreeSet::new()
}

fn sql(statements: &[Statement]) -> Vec<&str> {
    statements.iter().map(|s| s.sql.as_str()).collect()
}

fn made(wanted: &Wanted) -> Inventory {
    after(wanted, &Inventory::default(), &none(), &none())
}

#[test]
fn new_objects_are_made_in_order_and_the_password_is_never_in_a_statement() {
    let wanted = Wanted {
        databases: vec![Database {
            character_set: Some("utf8mb4".into()),
            ..db("shop", false)
        }],
        users: vec![user("app", "v1", true)],
        grants: vec![grant("app", "shop", &["SELECT", "INSERT"], true)],
    };
    let statements = plan(&wanted, &Inventory::default(), &none(), Flavor::Mariadb);
    let hash = native_hash("s3cr'et");
    assert_eq!(
        sql(&statements),
        [
            "CREATE DATABASE IF NOT EXISTS `shop` CHARACTER SET utf8mb4".to_string(),
            "ALTER DATABASE `shop` CHARACTER SET utf8mb4".to_string(),
            format!("CREATE USER IF NOT EXISTS 'app'@'%' IDENTIFIED BY PASSWORD '{hash}'"),
            format!(
                "ALTER USER 'app'@'%' IDENTIFIED BY PASSWORD '{hash}' WITH MAX_USER_CONNECTIONS 0"
            ),
            "GRANT INSERT, SELECT ON `shop`.* TO 'app'@'%'".to_string(),
        ]
    );
    assert!(statements.iter().all(|s| !s.sql.contains("s3cr")));
    // MySQL hashes it itself: a literal, its quotes doubled (backslashes are plain
    // characters in the session's sql_mode).
    let mysql = plan(&wanted, &Inventory::default(), &none(), Flavor::Mysql);
    assert!(sql(&mysql).contains(&"CREATE USER IF NOT EXISTS 'app'@'%' IDENTIFIED BY 's3cr''et'"));
    assert!(session_sql_mode(Flavor::Mysql).contains("NO_BACKSLASH_ESCAPES"));
    assert!(session_sql_mode(Flavor::Mariadb).contains("NO_AUTO_CREATE_USER"));
}

#[test]
fn the_native_hash_is_the_servers() {
    // SELECT PASSWORD('secret') on MariaDB.
    assert_eq!(
        native_hash("secret"),
        "*14E65567ABDB5135D0CFD9A70B3032C179A49EE7"
    );
}

#[test]
fn a_steady_cluster_gets_no_statement() {
    let wanted = Wanted {
        databases: vec![db("shop", false)],
        users: vec![user("app", "v1", true)],
        grants: vec![grant("app", "shop", &["SELECT"], true)],
    };
    assert_eq!(plan(&wanted, &made(&wanted), &none(), Flavor::Mariadb), []);
}

#[test]
fn a_rotated_password_is_set_again_and_privileges_taken_away_are_revoked() {
    let before = Wanted {
        databases: Vec::new(),
        users: vec![user("app", "v1", true)],
        grants: vec![grant("app", "shop", &["SELECT", "INSERT"], true)],
    };
    let mut now = before.clone();
    now.users[0].user.password_version = "v2".into();
    now.users[0].password = "new".into();
    now.grants[0].privileges = ["SELECT".to_string()].into();
    let statements = plan(&now, &made(&before), &none(), Flavor::Mariadb);
    assert_eq!(
        sql(&statements),
        [
            format!(
                "ALTER USER 'app'@'%' IDENTIFIED BY PASSWORD '{}' WITH MAX_USER_CONNECTIONS 0",
                native_hash("new")
            ),
            "REVOKE INSERT ON `shop`.* FROM 'app'@'%'".to_string(),
            "GRANT SELECT ON `shop`.* TO 'app'@'%'".to_string(),
        ]
    );
}

#[test]
fn removed_objects_are_undone_as_their_policy_says_grants_first() {
    let before = Wanted {
        databases: vec![db("kept", false), db("gone", true)],
        users: vec![user("app", "v1", true), user("keep", "v1", false)],
        grants: vec![grant("app", "gone", &["ALL PRIVILEGES"], true)],
    };
    let statements = plan(&Wanted::default(), &made(&before), &none(), Flavor::Mariadb);
    assert_eq!(
        sql(&statements),
        [
            "REVOKE ALL PRIVILEGES ON `gone`.* FROM 'app'@'%'",
            "DROP USER IF EXISTS 'app'@'%'",
            "DROP DATABASE IF EXISTS `gone`",
        ]
    );
    // A revoke of a grant already gone is done.
    assert!(statements[0].done_on.contains(&1141));
    // Undone, they are forgotten; retained ones are forgotten at once.
    assert_eq!(
        after(&Wanted::default(), &made(&before), &none(), &none()),
        Inventory::default()
    );
}

#[test]
fn a_failed_object_keeps_its_previous_record_and_is_tried_again() {
    let before = Wanted {
        databases: Vec::new(),
        users: vec![user("app", "v1", true)],
        grants: Vec::new(),
    };
    let mut now = before.clone();
    now.users[0].user.password_version = "v2".into();
    let failed = BTreeSet::from([Key::User("app".into(), "%".into())]);
    let kept = after(&now, &made(&before), &failed, &none());
    assert_eq!(kept.users[0].password_version, "v1");
    assert_eq!(plan(&now, &kept, &none(), Flavor::Mariadb).len(), 1);
    // A drop that failed is tried again.
    let kept = after(&Wanted::default(), &made(&before), &failed, &none());
    assert_eq!(kept.users.len(), 1);
    assert_eq!(
        sql(&plan(&Wanted::default(), &kept, &none(), Flavor::Mariadb)),
        ["DROP USER IF EXISTS 'app'@'%'"]
    );
}

#[test]
fn names_and_privileges_are_checked() {
    assert!(check_name("database", "shop_1", 64, true).is_ok());
    assert!(check_name("database", "a.b", 64, true).is_err());
    assert!(check_name("database", "", 64, true).is_err());
    assert!(check_name("user", "a\\b", 80, false).is_err());
    assert!(check_name("user", "o'brien", 80, false).is_ok());
    assert!(check_charset("characterSet", "utf8mb4").is_ok());
    assert!(check_charset("characterSet", "utf8; DROP").is_err());
    assert_eq!(privilege("select").as_deref(), Ok("SELECT"));
    assert_eq!(privilege("all").as_deref(), Ok("ALL PRIVILEGES"));
    assert_eq!(
        privilege("create  temporary tables").as_deref(),
        Ok("CREATE TEMPORARY TABLES")
    );
    assert!(privilege("SELECT; DROP").is_err());
    assert!(privilege("SUPER").is_err());
    // Quotes in names are doubled.
    let wanted = Wanted {
        users: vec![user("o'brien", "v1", true)],
        ..Wanted::default()
    };
    assert!(
        plan(&wanted, &Inventory::default(), &none(), Flavor::Mariadb)[0]
            .sql
            .starts_with("CREATE USER IF NOT EXISTS 'o''brien'@'%'")
    );
}

#[test]
fn a_refused_resource_is_neither_made_nor_undone() {
    let before = Wanted {
        databases: vec![db("shop", true)],
        users: vec![user("app", "v1", true)],
        grants: vec![grant("app", "shop", &["SELECT"], true)],
    };
    // Each resource now refused (a typo, an unreadable Secret): nothing is dropped.
    let refused = BTreeSet::from([
        Key::Database("shop".into()),
        Key::User("app".into(), "%".into()),
        Key::Grant("app".into(), "%".into(), "shop".into(), "*".into()),
    ]);
    assert_eq!(
        plan(
            &Wanted::default(),
            &made(&before),
            &refused,
            Flavor::Mariadb
        ),
        []
    );
    // And their records stay, to be undone only once their resources are really gone.
    assert_eq!(
        after(&Wanted::default(), &made(&before), &none(), &refused),
        made(&before)
    );
}

#[test]
fn the_grant_option_is_revoked_apart_and_a_new_account_gets_its_grants_again() {
    let mut g = grant("app", "shop", &["ALL PRIVILEGES"], true);
    g.grant_option = true;
    let before = Wanted {
        databases: Vec::new(),
        users: vec![user("app", "v1", true)],
        grants: vec![g],
    };
    assert_eq!(
        sql(&plan(
            &Wanted::default(),
            &made(&before),
            &none(),
            Flavor::Mariadb
        )),
        [
            "REVOKE ALL PRIVILEGES ON `shop`.* FROM 'app'@'%'",
            "REVOKE GRANT OPTION ON `shop`.* FROM 'app'@'%'",
            "DROP USER IF EXISTS 'app'@'%'",
        ]
    );
    // The account dropped (outside the inventory's knowledge) and made again: its grant too.
    let mut done = made(&before);
    done.users.clear();
    let statements = plan(&before, &done, &none(), Flavor::Mariadb);
    assert!(
        sql(&statements)
            .iter()
            .any(|s| s.starts_with("GRANT ALL PRIVILEGES ON `shop`.*"))
    );
}

#[test]
fn an_edited_inventory_is_checked_before_use() {
    let mut done = made(&Wanted {
        databases: vec![db("shop", true)],
        users: vec![user("app", "v1", true)],
        grants: vec![grant("app", "shop", &["SELECT"], true)],
    });
    done.databases.push(db("x/y", true));
    done.users.push(user("a\\b", "v1", true).user);
    done.grants
        .push(grant("app", "shop2", &["SELECT; DROP"], true));
    let (kept, dropped) = done.checked();
    assert_eq!(dropped, 3);
    assert_eq!(
        kept.databases.len() + kept.users.len() + kept.grants.len(),
        3
    );
}
