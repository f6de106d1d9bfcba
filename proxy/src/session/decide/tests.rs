use super::*;
use crate::route::{Victim, classify};

fn q(sql: &str) -> Vec<u8> {
    [&[com::QUERY][..], sql.as_bytes()].concat()
}

fn state() -> SessionState {
    SessionState::default()
}

#[test]
fn routes() {
    let fresh = state();
    let in_txn = SessionState {
        in_transaction: true,
        ..state()
    };
    let fresh_txn = SessionState {
        in_transaction: true,
        fresh_begin: Some(q("BEGIN").into()),
        ..state()
    };
    let pinned = SessionState {
        pinned: Some("user lock"),
        ..state()
    };
    let no_autocommit = SessionState {
        autocommit: false,
        ..state()
    };
    let on_replica = SessionState {
        last: BackendRole::Replica,
        ..state()
    };
    let auto_is_null = SessionState {
        auto_is_null: true,
        ..state()
    };
    let session_mode = SessionState {
        consistency: Some(ConsistencyMode::Session),
        ..state()
    };
    let read = |mode| Route::Read { mode };
    let write = Route::Primary {
        retry_read_only: true,
    };
    let primary = Route::Primary {
        retry_read_only: false,
    };
    // (session, statement, route)
    let cases: Vec<(&SessionState, &str, Route)> = vec![
        (&fresh, "SELECT * FROM t", read(None)),
        (
            &session_mode,
            "SELECT * FROM t",
            read(Some(ConsistencyMode::Session)),
        ),
        (
            &session_mode,
            "/* lagless:consistency=eventual */ SELECT 1",
            read(Some(ConsistencyMode::Eventual)),
        ),
        (&fresh, "INSERT INTO t VALUES (1)", write.clone()),
        (&fresh, "SELECT * FROM t FOR UPDATE", write.clone()),
        (&fresh, "BEGIN", write.clone()),
        (&fresh, "SET autocommit=0", write.clone()),
        (&in_txn, "SELECT * FROM t", primary.clone()),
        (&in_txn, "INSERT INTO t VALUES (1)", primary.clone()),
        (&fresh_txn, "INSERT INTO t VALUES (1)", write.clone()),
        (&pinned, "SELECT * FROM t", primary.clone()),
        (&no_autocommit, "SELECT * FROM t", primary.clone()),
        (&fresh, "SHOW WARNINGS", primary.clone()),
        (&on_replica, "SHOW WARNINGS", Route::LastReplica),
        (
            &auto_is_null,
            "SELECT * FROM t WHERE id IS NULL",
            write.clone(),
        ),
        (&auto_is_null, "SELECT * FROM t WHERE id = 1", read(None)),
        (
            &fresh,
            "KILL 5",
            Route::Kill(Kill {
                victim: Victim::Id(5),
                query_only: false,
            }),
        ),
        (&fresh, "SELECT 1; KILL 5", Route::RefuseKill),
        (
            &pinned,
            "SET lagless_consistency = 'strict'",
            Route::Lagless(LaglessCommand::SetConsistency(ConsistencyMode::Strict)),
        ),
    ];
    for (s, sql, want) in cases {
        let c = classify(sql.as_bytes());
        let got = route(s, &c, sql.as_bytes());
        assert_eq!(got, want, "{sql} in {s:?}");
    }
}

#[test]
fn a_prepared_execution_is_never_answered_by_the_proxy() {
    let c = classify(b"KILL 5");
    assert!(matches!(
        backend_route(&state(), &c, b"KILL 5"),
        Route::Primary { .. }
    ));
}

fn ok(ran_on: BackendRole, status: u16) -> Outcome {
    Outcome {
        ran_on,
        status: Some(status),
        error: None,
    }
}

fn failed(ran_on: BackendRole) -> Outcome {
    Outcome {
        ran_on,
        status: None,
        error: Some(1064),
    }
}

#[test]
fn effects_of_outcomes() {
    let fresh = state();
    let ac = status::AUTOCOMMIT;
    let txn = status::AUTOCOMMIT | status::IN_TRANS;
    let primary = BackendRole::Primary;
    let replica = BackendRole::Replica;
    let pinned = SessionState {
        pinned: Some("user lock"),
        ..state()
    };
    let full = SessionState {
        replay: vec!["SET NAMES utf8mb4".into(); MAX_REPLAY],
        ..state()
    };
    let set = |sql: &str, sets_autocommit| ReplaySet {
        sql: sql.into(),
        sets_autocommit,
    };
    // (session, statement, outcome, effects)
    let cases: Vec<(&SessionState, &str, Outcome, Effects)> = vec![
        (&fresh, "SELECT 1", ok(replica, ac), Effects::default()),
        (
            &fresh,
            "SELECT 1",
            ok(primary, ac),
            Effects {
                transaction: Some((false, true)),
                ..Effects::default()
            },
        ),
        (
            &fresh,
            "BEGIN",
            ok(primary, txn),
            Effects {
                transaction: Some((true, true)),
                fresh_begin: true,
                ..Effects::default()
            },
        ),
        (
            &fresh,
            "BEGIN; INSERT INTO t VALUES (1)",
            ok(primary, txn),
            Effects {
                transaction: Some((true, true)),
                ..Effects::default()
            },
        ),
        (
            &fresh,
            "USE app",
            ok(primary, ac),
            Effects {
                transaction: Some((false, true)),
                database: Some("app".into()),
                ..Effects::default()
            },
        ),
        (
            &fresh,
            "CREATE TEMPORARY TABLE t (a INT)",
            ok(primary, ac),
            Effects {
                transaction: Some((false, true)),
                pin: Some("temporary table"),
                ..Effects::default()
            },
        ),
        (
            &fresh,
            "SET @a = 1",
            ok(primary, ac),
            Effects {
                transaction: Some((false, true)),
                pin: Some("user variable"),
                ..Effects::default()
            },
        ),
        (
            &fresh,
            "SET @a = 1; SELECT 1",
            failed(primary),
            Effects {
                pin: Some("a multi-statement payload failed part-way"),
                ..Effects::default()
            },
        ),
        (&fresh, "SELECT 1", failed(replica), Effects::default()),
        (
            &fresh,
            "SET NAMES utf8mb4",
            ok(replica, ac),
            Effects {
                replay: Some(set("SET NAMES utf8mb4", false)),
                ..Effects::default()
            },
        ),
        (
            &fresh,
            "SET autocommit=0",
            ok(primary, 0),
            Effects {
                transaction: Some((false, false)),
                replay: Some(set("SET autocommit=0", true)),
                ..Effects::default()
            },
        ),
        (
            &fresh,
            "SET wait_timeout = 0",
            ok(primary, ac),
            Effects {
                transaction: Some((false, true)),
                wait_timeout: Some(Duration::from_secs(1)),
                replay: Some(set("SET wait_timeout = 0", false)),
                ..Effects::default()
            },
        ),
        (
            &fresh,
            "SET sql_auto_is_null = 1",
            ok(primary, ac),
            Effects {
                transaction: Some((false, true)),
                auto_is_null: Some(true),
                replay: Some(set("SET sql_auto_is_null = 1", false)),
                ..Effects::default()
            },
        ),
        (
            &fresh,
            "SET session_track_system_variables = '*'",
            ok(primary, ac),
            Effects {
                transaction: Some((false, true)),
                tracking: Some(true),
                replay: Some(set("SET session_track_system_variables = '*'", false)),
                ..Effects::default()
            },
        ),
        // A pinned session replays nothing: it has one connection.
        (
            &pinned,
            "SET NAMES utf8mb4",
            ok(primary, ac),
            Effects {
                transaction: Some((false, true)),
                ..Effects::default()
            },
        ),
        (
            &full,
            "SET NAMES utf8mb4",
            ok(primary, ac),
            Effects {
                transaction: Some((false, true)),
                pin: Some("too much session state to replay"),
                ..Effects::default()
            },
        ),
    ];
    for (s, sql, outcome, want) in cases {
        let c = classify(sql.as_bytes());
        let got = after(s, &c, &outcome, Command::Query(&q(sql).into()));
        assert_eq!(got, want, "{sql} after {outcome:?}");
    }
}

#[test]
fn prepared_sets_pin() {
    let c = classify(b"SET NAMES utf8mb4");
    let outcome = ok(BackendRole::Primary, status::AUTOCOMMIT);
    let prepared = Bytes::from_static(b"\x16SET @x = ?");
    let fx = after(&state(), &c, &outcome, Command::Execute(&prepared));
    assert_eq!(fx.pin, Some("a SET run as a prepared statement"));
    assert_eq!(fx.replay, None);
    let fx = after(&state(), &c, &outcome, Command::BulkExecute);
    assert_eq!(fx.pin, None);
}

#[test]
fn applying_effects() {
    let mut s = SessionState {
        pinned: Some("user lock"),
        ..state()
    };
    let fx = Effects {
        transaction: Some((true, false)),
        database: Some("app".into()),
        pin: Some("temporary table"),
        replay: Some(ReplaySet {
            sql: "SET autocommit=0".into(),
            sets_autocommit: true,
        }),
        ..Effects::default()
    };
    // The first reason stays.
    assert_eq!(s.apply(&fx), None);
    assert_eq!(s.pinned, Some("user lock"));
    assert!(s.in_transaction && !s.autocommit);
    assert_eq!(s.database.as_deref(), Some("app"));
    assert_eq!(s.replay, vec!["SET autocommit=0".to_string()]);
    assert!(s.replay_sets_autocommit);
    let mut s = state();
    assert_eq!(s.apply(&fx), Some("temporary table"));
}

#[test]
fn lone_begins() {
    for yes in [
        "BEGIN",
        "begin work;",
        "START TRANSACTION",
        "start transaction read only",
        "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ WRITE",
    ] {
        assert!(is_lone_begin(&q(yes)), "{yes}");
    }
    for no in [
        "BEGIN; INSERT INTO t VALUES (1)",
        "BEGIN NOT ATOMIC SELECT 1; END",
        "/* x */ BEGIN",
        "COMMIT AND CHAIN",
        "XA START 'x'",
        "SELECT 1",
    ] {
        assert!(!is_lone_begin(&q(no)), "{no}");
    }
    assert!(!is_lone_begin(&[com::STMT_EXECUTE, 1, 0, 0, 0]));
}

#[test]
fn auto_is_null_settings_and_reads() {
    assert_eq!(auto_is_null_of("SET sql_auto_is_null = 1"), Some(true));
    assert_eq!(auto_is_null_of("set SQL_AUTO_IS_NULL=ON"), Some(true));
    assert_eq!(
        auto_is_null_of("SET @@session.sql_auto_is_null := 0"),
        Some(false)
    );
    assert_eq!(auto_is_null_of("SET NAMES utf8"), None);
    assert!(has_is_null(b"SELECT * FROM t WHERE id IS NULL"));
    assert!(has_is_null(b"select * from t where id is\n  null"));
    assert!(!has_is_null(b"SELECT * FROM t WHERE id IS NOT NULL"));
    assert!(!has_is_null(b"SELECT this_null FROM t"));
    assert!(!has_is_null(b"SELECT 1 FROM t WHERE axis NULL"));
}

#[test]
fn the_sql_mode_follows_the_status_flags() {
    let off = SqlMode::default();
    let on = SqlMode {
        no_backslash_escapes: true,
        ..off
    };
    let ansi = SqlMode {
        ansi_quotes: true,
        ..off
    };
    let flags = status::AUTOCOMMIT | status::NO_BACKSLASH_ESCAPES;
    // (mode before, status flags of the response, mode after)
    let cases = [
        (off, Some(flags), on),
        (off, Some(status::NO_BACKSLASH_ESCAPES), on),
        (on, Some(flags), on),
        (on, Some(status::AUTOCOMMIT), off),
        (on, Some(0), off),
        (off, Some(status::AUTOCOMMIT | status::IN_TRANS), off),
        // An ERR carries no flags: the mode stays.
        (on, None, on),
        (off, None, off),
        // Servers do not report ANSI_QUOTES; it is left as it was.
        (
            ansi,
            Some(flags),
            SqlMode {
                ansi_quotes: true,
                ..on
            },
        ),
    ];
    for (before, flags, after) in cases {
        assert_eq!(
            sql_mode_after(before, flags),
            after,
            "{before:?} + {flags:?}"
        );
    }
}

#[test]
fn read_only_transactions_start_on_replicas_and_keep_their_statements_there() {
    let on = SessionState {
        read_only_on_replicas: true,
        ..state()
    };
    let off = state();
    let in_txn = SessionState {
        in_transaction: true,
        read_only_on_replicas: true,
        ..state()
    };
    let pinned = SessionState {
        pinned: Some("user lock"),
        read_only_on_replicas: true,
        ..state()
    };
    let no_autocommit = SessionState {
        autocommit: false,
        read_only_on_replicas: true,
        ..state()
    };
    let eventual = SessionState {
        consistency: Some(ConsistencyMode::Eventual),
        read_only_on_replicas: true,
        ..state()
    };
    let read = |mode| Route::Read { mode };
    let write = Route::Primary {
        retry_read_only: true,
    };
    let starts: Vec<(&SessionState, &str, Route)> = vec![
        (&on, "START TRANSACTION READ ONLY", read(None)),
        (&on, "start transaction read only;", read(None)),
        (
            &on,
            "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY",
            read(None),
        ),
        (
            &eventual,
            "START TRANSACTION READ ONLY",
            read(Some(ConsistencyMode::Eventual)),
        ),
        (
            &on,
            "/* lagless:route=primary */ START TRANSACTION READ ONLY",
            write.clone(),
        ),
        (&on, "START TRANSACTION", write.clone()),
        (&on, "START TRANSACTION READ ONLY; SELECT 1", write.clone()),
        (&off, "START TRANSACTION READ ONLY", write.clone()),
        (&pinned, "START TRANSACTION READ ONLY", write.clone()),
        (&no_autocommit, "START TRANSACTION READ ONLY", write.clone()),
        (
            &in_txn,
            "START TRANSACTION READ ONLY",
            Route::Primary {
                retry_read_only: false,
            },
        ),
    ];
    for (s, sql, want) in starts {
        let c = classify(sql.as_bytes());
        assert_eq!(route(s, &c, sql.as_bytes()), want, "{sql}");
    }

    let begin = Bytes::from(q("START TRANSACTION READ ONLY"));
    let in_replica = |fresh| SessionState {
        replica_transaction: Some(super::super::state::ReplicaTransaction {
            begin: begin.clone(),
            fresh,
            replay: None,
        }),
        read_only_on_replicas: true,
        ..state()
    };
    let (fresh, used) = (in_replica(true), in_replica(false));
    for sql in [
        "SELECT * FROM t",
        "SHOW WARNINGS",
        "SELECT 1 FROM DUAL",
        "COMMIT",
        "ROLLBACK",
    ] {
        let c = classify(sql.as_bytes());
        assert_eq!(
            route(&used, &c, sql.as_bytes()),
            Route::InReplicaTransaction,
            "{sql}"
        );
    }
    for sql in [
        "INSERT INTO t VALUES (1)",
        "SELECT * FROM t FOR UPDATE",
        "SELECT * FROM t LOCK IN SHARE MODE",
        "SELECT GET_LOCK('x', 1)",
        "SET @x = 1",
        "SELECT @x := 1",
        "SET NAMES latin1",
        "CREATE TEMPORARY TABLE x (a INT)",
        "BEGIN",
        "COMMIT AND CHAIN",
        "SELECT LAST_INSERT_ID()",
        "SELECT SQL_CALC_FOUND_ROWS * FROM t",
        "/* lagless:route=primary */ SELECT 1",
        "COMMIT; INSERT INTO t VALUES (1)",
        "ROLLBACK; DROP TABLE t",
        "COMMIT RELEASE",
    ] {
        let c = classify(sql.as_bytes());
        assert_eq!(
            route(&fresh, &c, sql.as_bytes()),
            Route::LeaveReplicaTransaction,
            "{sql}"
        );
        assert_eq!(
            route(&used, &c, sql.as_bytes()),
            Route::RefuseInReplicaTransaction,
            "{sql}"
        );
    }
    // Prepared executions follow the transaction too.
    let c = classify(b"SELECT * FROM t WHERE id = ?");
    assert_eq!(
        backend_route(&used, &c, b"SELECT * FROM t WHERE id = ?"),
        Route::InReplicaTransaction
    );
}

#[test]
fn a_replica_transaction_is_followed_by_its_status_flags() {
    let replica = BackendRole::Replica;
    let txn = status::AUTOCOMMIT | status::IN_TRANS;
    let begin = Bytes::from(q("START TRANSACTION READ ONLY"));
    let c = classify(b"START TRANSACTION READ ONLY");
    let mut s = SessionState {
        read_only_on_replicas: true,
        ..state()
    };
    let fx = after(&s, &c, &ok(replica, txn), Command::Query(&begin));
    assert_eq!(
        fx.replica_transaction,
        Some(ReplicaTxn::Began {
            begin: begin.clone(),
            optimistic: false
        })
    );
    assert_eq!(
        fx.transaction, None,
        "the primary's transaction state is its own"
    );
    s.apply(&fx);
    assert_eq!(s.replica_transaction.as_ref().map(|t| t.fresh), Some(true));
    assert!(!s.in_transaction);

    let read = Bytes::from(q("SELECT 1"));
    let c = classify(b"SELECT 1");
    let fx = after(&s, &c, &ok(replica, txn), Command::Query(&read));
    assert_eq!(fx.replica_transaction, Some(ReplicaTxn::Used));
    s.apply(&fx);
    assert_eq!(s.replica_transaction.as_ref().map(|t| t.fresh), Some(false));

    // An error leaves it open, and used.
    let mut fresh_again = SessionState {
        replica_transaction: Some(super::super::state::ReplicaTransaction {
            begin: begin.clone(),
            fresh: true,
            replay: None,
        }),
        ..state()
    };
    let fx = after(&fresh_again, &c, &failed(replica), Command::Query(&read));
    assert_eq!(fx.replica_transaction, Some(ReplicaTxn::Used));
    fresh_again.apply(&fx);
    assert_eq!(
        fresh_again.replica_transaction.map(|t| t.fresh),
        Some(false)
    );

    let commit = Bytes::from(q("COMMIT"));
    let c = classify(b"COMMIT");
    let fx = after(
        &s,
        &c,
        &ok(replica, status::AUTOCOMMIT),
        Command::Query(&commit),
    );
    assert_eq!(fx.replica_transaction, Some(ReplicaTxn::Ended));
    s.apply(&fx);
    assert_eq!(s.replica_transaction, None);

    // A replica connection in a transaction the session never began there is dropped.
    let stray = SessionState::default();
    let fx = after(&stray, &c, &ok(replica, txn), Command::Query(&read));
    assert_eq!(fx.replica_transaction, Some(ReplicaTxn::Stray));

    // A plain read on a replica outside one changes nothing.
    let fx = after(
        &s,
        &c,
        &ok(replica, status::AUTOCOMMIT),
        Command::Query(&read),
    );
    assert_eq!(fx.replica_transaction, None);
}

#[test]
fn optimistic_transactions_start_on_replicas_and_move_at_their_first_write() {
    let on = SessionState {
        optimistic: true,
        ..state()
    };
    let wrote_lately = SessionState {
        optimistic: true,
        primary_begins: 3,
        ..state()
    };
    let serializable = SessionState {
        optimistic: true,
        replay: vec!["SET SESSION TRANSACTION ISOLATION LEVEL SERIALIZABLE".into()],
        ..state()
    };
    let read = Route::Read { mode: None };
    let write = Route::Primary {
        retry_read_only: true,
    };
    for (s, sql, want) in [
        (&on, "BEGIN", read.clone()),
        (&on, "START TRANSACTION", read.clone()),
        (&on, "START TRANSACTION READ ONLY", write.clone()),
        (&state(), "BEGIN", write.clone()),
        (&wrote_lately, "BEGIN", write.clone()),
        (&serializable, "BEGIN", write.clone()),
        (&on, "BEGIN; SELECT 1", write.clone()),
    ] {
        let c = classify(sql.as_bytes());
        assert_eq!(route(s, &c, sql.as_bytes()), want, "{sql}");
    }
    let begin = Bytes::from(q("BEGIN"));
    let optimistic = |fresh| SessionState {
        replica_transaction: Some(super::super::state::ReplicaTransaction {
            begin: begin.clone(),
            fresh,
            replay: Some(super::super::state::ReplayLog {
                complete: true,
                ..Default::default()
            }),
        }),
        optimistic: true,
        ..state()
    };
    let c = classify(b"UPDATE t SET v = 1");
    assert_eq!(
        route(&optimistic(true), &c, b"UPDATE t SET v = 1"),
        Route::LeaveReplicaTransaction
    );
    assert_eq!(
        route(&optimistic(false), &c, b"UPDATE t SET v = 1"),
        Route::MoveReplicaTransaction
    );
    let c = classify(b"SELECT v FROM t");
    assert_eq!(
        route(&optimistic(false), &c, b"SELECT v FROM t"),
        Route::InReplicaTransaction
    );

    // A plain BEGIN that opened on a replica is optimistic; one run on the primary counts
    // down the session's primary BEGINs.
    let c = classify(b"BEGIN");
    let txn = status::AUTOCOMMIT | status::IN_TRANS;
    let fx = after(
        &on,
        &c,
        &ok(BackendRole::Replica, txn),
        Command::Query(&begin),
    );
    assert_eq!(
        fx.replica_transaction,
        Some(ReplicaTxn::Began {
            begin: begin.clone(),
            optimistic: true
        })
    );
    let mut s = SessionState {
        optimistic: true,
        ..state()
    };
    s.apply(&fx);
    assert!(
        s.replica_transaction
            .as_ref()
            .is_some_and(|t| t.replay.is_some())
    );
    let mut w = SessionState {
        optimistic: true,
        primary_begins: 3,
        ..state()
    };
    let fx = after(
        &w,
        &c,
        &ok(BackendRole::Primary, txn),
        Command::Query(&begin),
    );
    w.apply(&fx);
    assert_eq!(w.primary_begins, 2);
    // A prepared BEGIN counts too.
    let prepared = Bytes::from(vec![crate::protocol::constants::com::STMT_PREPARE, b'B']);
    let fx = after(
        &w,
        &c,
        &ok(BackendRole::Primary, txn),
        Command::Execute(&prepared),
    );
    w.apply(&fx);
    assert_eq!(w.primary_begins, 1);
}
