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
        },
    )
    .await;
}
