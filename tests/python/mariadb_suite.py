"""Runs MariaDB Connector/Python's own test suite against one endpoint and prints each outcome.

usage: mariadb_suite.py --cache DIR --host H --port P --user U --password PW [--autocommit]
                        [TEST_ID ...]

The suite comes from the `mariadb` sdist on PyPI, which ships it under testing/test (unittest
classes, configured by TEST_DB_* environment variables). It runs against that sdist's own
`mariadb` package, a C extension built on MariaDB Connector/C: building it needs
`mariadb_config` and the headers (Debian: libmariadb-dev), Python's headers (python3-dev) and a
C compiler. The sdist, the built package and a pinned pytest are fetched once into DIR and
reused; later runs need no network.

Runs the whole suite, or only the given pytest ids (path::Class::test), in database `testp`,
dropped and created afresh each run. Prints JSON:
{"outcomes": {test id: passed|failed|error|skipped}, "details": {test id: message}, "summary"}.
Exits non-zero only when the suite could not be run at all.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import xml.etree.ElementTree as ET

SUITE_VERSION = "1.1.14"
PYTEST_VERSION = "8.3.5"
# The driver's one runtime dependency; the suite imports it too.
PACKAGING_VERSION = "24.2"
DATABASE = "testp"
PYTEST_TIMEOUT = 300
# Tests never run: they reach for hosts other than the endpoint under test.
NEVER_RUN = {
    "test/integration/test_exception.py::TestException::test_conn_timeout_exception": (
        "connects to a public address (8.8.8.8) to time out"
    ),
}
# Variables the suite reads besides the endpoint's: each would change what it tests.
SUITE_VARIABLES = ("srv", "LOCAL_DB", "TEST_MODULE", "TEST_REQUIRE_TLS", "TEST_RESET_SESSION")
# With --autocommit, every connection the suite makes starts in autocommit mode.
AUTOCOMMIT_CONF = """

_suite_conf = conf


def conf():
    d = _suite_conf()
    d["autocommit"] = True
    return d
"""


def pip(*args):
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args]
    subprocess.run(cmd, check=True, stdout=sys.stderr)


def cached(cache, name, build):
    """Returns cache/name, building it in a scratch directory first if missing.

    The rename makes concurrent runs safe: whoever loses keeps using the winner's copy.
    """
    final = os.path.join(cache, name)
    if os.path.isdir(final):
        return final
    os.makedirs(cache, exist_ok=True)
    scratch = tempfile.mkdtemp(prefix=f".{name}-", dir=cache)
    try:
        build(scratch)
        os.rename(os.path.join(scratch, name), final)
    except OSError:
        if not os.path.isdir(final):
            raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return final


def suite_name():
    """The built extension is for this interpreter only."""
    return f"mariadb-{SUITE_VERSION}-{sys.implementation.cache_tag}"


def check_build_tools():
    missing = []
    if not (os.environ.get("MARIADB_CONFIG") or shutil.which("mariadb_config")):
        missing.append("mariadb_config (Debian: libmariadb-dev)")
    if not os.path.isfile(os.path.join(sysconfig.get_paths()["include"], "Python.h")):
        missing.append("Python.h (Debian: python3-dev)")
    if not (shutil.which("cc") or shutil.which("gcc")):
        missing.append("a C compiler (Debian: gcc)")
    if missing:
        raise SystemExit(
            f"cannot build the mariadb {SUITE_VERSION} package, missing: {', '.join(missing)}"
        )


def fetch_suite(scratch):
    """The sdist's tree, with the package built from it under site/."""
    check_build_tools()
    # pip prepares the sdist's metadata, which already needs mariadb_config.
    pip("download", "--no-deps", "--no-binary", ":all:", f"mariadb=={SUITE_VERSION}", "-d", scratch)
    (archive,) = [f for f in os.listdir(scratch) if f.endswith(".tar.gz")]
    with tarfile.open(os.path.join(scratch, archive)) as tar:
        tar.extractall(scratch, filter="data")
    top = os.path.join(scratch, archive[: -len(".tar.gz")])
    pip(
        "install",
        "--no-warn-script-location",
        "--target",
        os.path.join(top, "site"),
        os.path.join(scratch, archive),
        f"packaging=={PACKAGING_VERSION}",
    )
    os.rename(top, os.path.join(scratch, suite_name()))


def fetch_pytest(scratch):
    target = os.path.join(scratch, f"pytest-{PYTEST_VERSION}")
    pip("install", "--no-warn-script-location", "--target", target, f"pytest=={PYTEST_VERSION}")


def prepare(work, sdist, args):
    """A private copy of the tests, configured for this endpoint through the environment."""
    shutil.copytree(os.path.join(sdist, "testing", "test"), os.path.join(work, "test"))
    if args.autocommit:
        with open(os.path.join(work, "test", "conf_test.py"), "a") as f:
            f.write(AUTOCOMMIT_CONF)
    env = {k: v for k, v in os.environ.items() if k not in SUITE_VARIABLES}
    env.pop("PYTEST_ADDOPTS", None)
    env.update(
        TEST_DB_HOST=args.host,
        TEST_DB_PORT=str(args.port),
        TEST_DB_USER=args.user,
        TEST_DB_PASSWORD=args.password,
        TEST_DB_DATABASE=DATABASE,
        PYTHONDONTWRITEBYTECODE="1",
    )
    return env


def create_database(site, args):
    """The suite works in one database, which must exist; a fresh one drops earlier leftovers."""
    sys.path.insert(0, site)
    import mariadb

    conn = mariadb.connect(host=args.host, port=args.port, user=args.user, password=args.password)
    cur = conn.cursor()
    cur.execute(f"DROP DATABASE IF EXISTS {DATABASE}")
    cur.execute(f"CREATE DATABASE {DATABASE}")
    conn.close()


def run_pytest(work, env, site, pytest_site, tests):
    xml = os.path.join(work, "junit.xml")
    # work first: the suite's package is named `test`, like the standard library's.
    env = dict(env, PYTHONPATH=os.pathsep.join([work, site, pytest_site]))
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rfE"]
    cmd += [f"--rootdir={work}", f"--junitxml={xml}"]
    cmd += [f"--deselect={test}" for test in NEVER_RUN]
    cmd += tests or ["test"]
    done = subprocess.run(
        cmd, cwd=work, env=env, capture_output=True, text=True, timeout=PYTEST_TIMEOUT
    )
    sys.stderr.write(done.stdout[-20000:] + done.stderr[-5000:])
    if not os.path.exists(xml):
        raise SystemExit(f"pytest wrote no report (exit {done.returncode})")
    totals = [
        line
        for line in done.stdout.splitlines()
        if " in " in line and ("passed" in line or "failed" in line)
    ]
    return xml, totals[-1] if totals else ""


def outcome_of(case):
    for tag in ("failure", "error", "skipped"):
        node = case.find(tag)
        if node is not None:
            return ("failed" if tag == "failure" else tag), node.get("message", "")
    return "passed", ""


def test_id(case):
    """The pytest id of a junit test case: every test of this suite is a method of a class."""
    module, _, cls = case.get("classname").rpartition(".")
    return f"{module.replace('.', '/')}.py::{cls}::{case.get('name')}"


def outcomes(xml, tests):
    found, details = {}, {}
    for case in ET.parse(xml).iter("testcase"):
        test = test_id(case)
        found[test], message = outcome_of(case)
        if found[test] in ("failed", "error"):
            details[test] = message[:2000]
    for test, why in NEVER_RUN.items():
        if not tests or test in tests:
            found[test], details[test] = "skipped", f"not run: {why}"
    return found, details


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--user", required=True)
    parser.add_argument("--password", required=True)
    parser.add_argument(
        "--autocommit", action="store_true", help="autocommit on, not the driver's default off"
    )
    parser.add_argument("tests", nargs="*")
    args = parser.parse_args()
    cache = os.path.abspath(args.cache)
    sdist = cached(cache, suite_name(), fetch_suite)
    site = os.path.join(sdist, "site")
    pytest_site = cached(cache, f"pytest-{PYTEST_VERSION}", fetch_pytest)
    with tempfile.TemporaryDirectory(prefix="mariadb-suite-") as work:
        env = prepare(work, sdist, args)
        create_database(site, args)
        xml, summary = run_pytest(work, env, site, pytest_site, args.tests)
        found, details = outcomes(xml, args.tests)
    report = {"summary": summary, "outcomes": found, "details": details}
    print(json.dumps(report, indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
