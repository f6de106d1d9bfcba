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

import os
import shutil
import sys
import sysconfig
import tarfile
import tempfile

from suite_common import (
    arguments,
    cached,
    cached_pytest,
    outcomes,
    pip,
    print_report,
)
from suite_common import run_pytest as run_pytest_in

SUITE_VERSION = "1.1.14"
# The driver's one runtime dependency; the suite imports it too.
PACKAGING_VERSION = "24.2"
DATABASE = "testp"
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
    # work first: the suite's package is named `test`, like the standard library's.
    env = dict(env, PYTHONPATH=os.pathsep.join([work, site, pytest_site]))
    selection = [f"--rootdir={work}", *(f"--deselect={test}" for test in NEVER_RUN)]
    return run_pytest_in(work, env, selection + (tests or ["test"]))


def never_run(tests):
    """The tests left out, reported as skipped with why."""
    return {test: why for test, why in NEVER_RUN.items() if not tests or test in tests}


def main():
    args = arguments(__doc__.splitlines()[0])
    sdist = cached(args.cache, suite_name(), fetch_suite)
    site = os.path.join(sdist, "site")
    pytest_site = cached_pytest(args.cache)
    with tempfile.TemporaryDirectory(prefix="mariadb-suite-") as work:
        env = prepare(work, sdist, args)
        create_database(site, args)
        xml, summary = run_pytest(work, env, site, pytest_site, args.tests)
        found, details = outcomes(xml)
    for test, why in never_run(args.tests).items():
        found[test], details[test] = "skipped", f"not run: {why}"
    print_report(summary, found, details)


if __name__ == "__main__":
    main()
