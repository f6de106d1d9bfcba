//! Third-party driver test suites, run as subprocesses directly against the primary and
//! through the proxy, which must pass the same tests. ../tests/python/README.md says what the
//! scripts do.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Output;
use std::time::Duration;

use lagless_testkit::{ADMIN_PASSWORD, ADMIN_USER, Cluster};
use serde::Deserialize;
use tokio::process::Command;

use crate::support::Harness;

/// Long enough for a first run that fetches (and builds) a suite and pytest from PyPI.
const SUITE_TIMEOUT: Duration = Duration::from_secs(600);
/// How many times tests that pass only one way are run again, both ways.
const RERUNS: usize = 2;

/// One driver's suite: the script that runs it and the tests known to differ.
pub struct Suite {
    /// A script in tests/python with the CLI and output of pymysql_suite.py.
    pub script: &'static str,
    /// Its cache directory under the target's tmp directory.
    pub cache: &'static str,
    /// Tests that pass directly but not through the proxy, each for a documented difference.
    /// The comparison fails when one of them passes, so an entry goes away when it no longer
    /// applies.
    pub known_differences: &'static [(&'static str, &'static str)],
}

pub fn python_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/python")
}

pub async fn python(args: &[&str], timeout: Duration) -> Output {
    let mut cmd = Command::new("python3");
    cmd.args(args).current_dir(python_dir()).kill_on_drop(true);
    match tokio::time::timeout(timeout, cmd.output()).await {
        Ok(Ok(out)) => out,
        Ok(Err(e)) => panic!("cannot run python3 ({e}): install Python 3"),
        Err(_) => panic!("python3 {args:?} did not finish within {timeout:?}"),
    }
}

pub fn assert_ok(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What a suite script prints.
#[derive(Debug, Deserialize)]
struct SuiteRun {
    summary: String,
    /// pytest id -> passed, failed, error or skipped.
    outcomes: BTreeMap<String, String>,
    /// pytest id -> failure message.
    details: BTreeMap<String, String>,
}

impl SuiteRun {
    fn passed(&self) -> BTreeSet<&str> {
        self.outcomes
            .iter()
            .filter(|(_, outcome)| *outcome == "passed")
            .map(|(test, _)| test.as_str())
            .collect()
    }

    /// Takes the passes of a rerun: a test passes if any of its runs did.
    fn absorb(&mut self, rerun: SuiteRun) {
        for (test, outcome) in rerun.outcomes {
            if outcome == "passed" {
                self.details.remove(&test);
                self.outcomes.insert(test, outcome);
            }
        }
    }
}

/// How the suite connects: `autocommit` overrides PyMySQL's default of autocommit off, under
/// which every statement is in a transaction and so on the primary.
#[derive(Debug, Clone, Copy)]
pub struct Mode {
    pub members: usize,
    pub autocommit: bool,
    /// The proxy multiplexes (`--multiplex on`).
    pub multiplex: bool,
}

async fn run_suite(suite: &Suite, port: u16, mode: Mode, tests: &[String]) -> SuiteRun {
    let cache = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(suite.cache);
    let (cache, port) = (cache.to_string_lossy(), port.to_string());
    let mut args = vec![
        suite.script,
        "--cache",
        &cache,
        "--port",
        &port,
        "--user",
        ADMIN_USER,
        "--password",
        ADMIN_PASSWORD,
    ];
    if mode.autocommit {
        args.push("--autocommit");
    }
    args.extend(tests.iter().map(String::as_str));
    let out = python(&args, SUITE_TIMEOUT).await;
    assert_ok(suite.script, &out);
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{} printed no report ({e}):\n{}",
            suite.script,
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

/// The suite's test_largedata sends and receives 16 MiB; the server must allow more, from the
/// start, since pooled backend connections keep the limit they were opened with.
async fn suite_cluster(members: usize, multiplex: bool) -> Harness {
    let cluster = Cluster::builder()
        .members(members)
        .config_line("max_allowed_packet=64M")
        .start()
        .await
        .unwrap();
    Harness::in_front_of(cluster, |c| c.pool.multiplex = multiplex).await
}

/// Tests whose passing differs from what the direct run leads to expect through the proxy.
fn differences(suite: &Suite, direct: &SuiteRun, proxied: &SuiteRun) -> (Vec<String>, Vec<String>) {
    let known: BTreeSet<&str> = suite
        .known_differences
        .iter()
        .map(|(test, _)| *test)
        .collect();
    let expected: BTreeSet<&str> = direct.passed().difference(&known).copied().collect();
    let got = proxied.passed();
    let lost = expected.difference(&got).map(|t| t.to_string()).collect();
    let gained = got.difference(&expected).map(|t| t.to_string()).collect();
    (lost, gained)
}

/// Runs the suite directly, then through the proxy, and asserts the same tests pass. Some of
/// its tests depend on timing (a 1 s wait_timeout, for one), so a difference is run again, both
/// ways, before it counts.
pub async fn suite_matches_direct(suite: &Suite, mode: Mode) {
    let h = suite_cluster(mode.members, mode.multiplex).await;
    let (primary, proxy) = (h.cluster.primary().port(), h.port());
    let mut direct = run_suite(suite, primary, mode, &[]).await;
    let mut proxied = run_suite(suite, proxy, mode, &[]).await;
    eprintln!(
        "direct: {}\nthrough the proxy: {}",
        direct.summary, proxied.summary
    );
    assert!(
        !direct.passed().is_empty(),
        "no test passed directly: {}",
        direct.summary
    );
    for _ in 0..RERUNS {
        let (lost, gained) = differences(suite, &direct, &proxied);
        let again: Vec<String> = lost.into_iter().chain(gained).collect();
        if again.is_empty() {
            break;
        }
        eprintln!("running again: {again:#?}");
        direct.absorb(run_suite(suite, primary, mode, &again).await);
        proxied.absorb(run_suite(suite, proxy, mode, &again).await);
    }
    let (lost, gained) = differences(suite, &direct, &proxied);
    let lost: Vec<_> = lost.iter().map(|t| (t, proxied.details.get(t))).collect();
    assert!(
        lost.is_empty() && gained.is_empty(),
        "through the proxy, failing but passing directly: {lost:#?}\n\
         passing through the proxy but not expected to (fixed? drop it from KNOWN_DIFFERENCES): \
         {gained:#?}"
    );
}
