//! MariaDB Connector/Python (a C extension on Connector/C), chosen for MariaDB coverage:
//! extended column metadata, the binary protocol, character sets, prepared statements, change
//! user and reset. Its own test suite runs directly against the primary and through the proxy,
//! which must pass the same tests. ../tests/python/README.md says what the script does.

use crate::suites::{Mode, Suite, suite_matches_direct};

const SUITE: Suite = Suite {
    script: "mariadb_suite.py",
    cache: "mariadb-suite",
    known_differences: &[(
        "test/integration/test_connection.py::TestConnection::test_compress",
        "SHOW STATUS LIKE 'compression' describes the connection the statement ran on: the \
         proxy compresses the client's connection but speaks to backends uncompressed",
    )],
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_connector_suite_passes_through_the_proxy_as_it_does_directly() {
    suite_matches_direct(
        &SUITE,
        Mode {
            members: 2,
            autocommit: false,
            multiplex: false,
        },
    )
    .await;
}

/// Through a multiplexing proxy: one more known difference.
const MULTIPLEXED: Suite = Suite {
    known_differences: &[
        (
            "test/integration/test_connection.py::TestConnection::test_compress",
            "SHOW STATUS LIKE 'compression' describes the connection the statement ran on: the \
             proxy compresses the client's connection but speaks to backends uncompressed",
        ),
        (
            "test/integration/test_cursor.py::TestCursor::test_cursor_reconnect",
            "a SET wait_timeout run as a prepared statement pins the session, and the server \
             closes its connection after 3 s; the proxy ends the client's session when the \
             client next sends a command (not when the server closed it), so the client sees \
             'Lost connection during query' where its reconnect logic expected a closed socket. \
             Without multiplexing the COM_STMT_CLOSE before it finds the closed connection first",
        ),
    ],
    ..SUITE
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_connector_suite_passes_through_a_multiplexing_proxy() {
    // Every session gives its connections back between statements unless its state ties it
    // to them: the suite's prepared statements, cursors, session variables and transactions
    // must not tell.
    suite_matches_direct(
        &MULTIPLEXED,
        Mode {
            members: 2,
            autocommit: false,
            multiplex: true,
        },
    )
    .await;
}
