//! PyMySQL, a pure-Python driver, run as a subprocess: a smoke script through the proxy, and
//! PyMySQL's own test suite run directly against the primary and through the proxy, which must
//! pass the same tests. ../tests/python/README.md says what the scripts do.

use std::process::Output;
use std::time::Duration;

use lagless_testkit::{APP_DATABASE, APP_PASSWORD, APP_USER};

use crate::suites::{Mode, Suite, assert_ok, python, suite_matches_direct};
use crate::support::Harness;

const SMOKE_TIMEOUT: Duration = Duration::from_secs(120);

const SUITE: Suite = Suite {
    script: "pymysql_suite.py",
    cache: "pymysql-suite",
    known_differences: &[(
        "pymysql/tests/test_issues.py::TestNewIssues::test_issue_36",
        "thread_id() is the proxy's connection id (KILL of it works through the proxy), which \
         a backend's SHOW PROCESSLIST does not list: the greeting is sent before the proxy knows \
         the user, so it cannot carry a backend thread id",
    )],
};

/// A missing driver fails the test, never skips it.
async fn require_pymysql() {
    let out = python(&["-c", "import pymysql"], Duration::from_secs(30)).await;
    assert!(
        out.status.success(),
        "PyMySQL is not installed for python3; install it with `python3 -m pip install pymysql` \
         (scripts/setup.sh does):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn smoke(port: u16) -> Output {
    let port = port.to_string();
    let args = [
        "smoke.py",
        "127.0.0.1",
        &port,
        APP_USER,
        APP_PASSWORD,
        APP_DATABASE,
    ];
    python(&args, SMOKE_TIMEOUT).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pymysql_smoke_passes_directly_and_through_the_proxy() {
    require_pymysql().await;
    let h = Harness::start(2).await;
    // Directly first: a failure there is the script's or the server's, not the proxy's.
    assert_ok(
        "smoke.py against the primary",
        &smoke(h.cluster.primary().port()).await,
    );
    assert_ok("smoke.py through the proxy", &smoke(h.port()).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pymysql_smoke_passes_through_the_proxy_with_two_replicas() {
    require_pymysql().await;
    let h = Harness::start(3).await;
    assert_ok("smoke.py through the proxy", &smoke(h.port()).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pymysql_suite_passes_through_the_proxy_as_it_does_directly() {
    suite_matches_direct(
        &SUITE,
        Mode {
            members: 1,
            autocommit: false,
            multiplex: false,
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pymysql_suite_in_autocommit_passes_through_the_proxy_with_a_replica() {
    // In autocommit mode reads go to the replica, right after the writes they depend on.
    suite_matches_direct(
        &SUITE,
        Mode {
            members: 2,
            autocommit: true,
            multiplex: false,
        },
    )
    .await;
}
