"""Runs PyMySQL's own test suite against one MySQL endpoint and prints each test's outcome.

usage: pymysql_suite.py --cache DIR --host H --port P --user U --password PW [TEST_ID ...]

The suite comes from the PyMySQL sdist on PyPI. Newer sdists ship only tests/test_auth.py
(MySQL 8 authentication plugins on a hard-coded 127.0.0.1:3306), so the suite is taken from
the last sdist that ships pymysql/tests, and runs against that sdist's own pymysql package.
The sdist and a pinned pytest are fetched once into DIR and reused.

Runs the whole suite, or only the given pytest ids (path::Class::test). Prints JSON:
{"outcomes": {test id: passed|failed|error|skipped}, "details": {test id: message}, "summary"}.
Exits non-zero only when the suite could not be run at all.
"""

import json
import os
import shutil
import sys
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

SUITE_VERSION = "0.10.1"
# test_load_local reads this file, which the sdist leaves out; the tests expect this many rows.
LOAD_LOCAL_ROWS = 22749


def fetch_suite(scratch):
    pip("download", "--no-deps", "--no-binary", ":all:", f"PyMySQL=={SUITE_VERSION}", "-d", scratch)
    (archive,) = [f for f in os.listdir(scratch) if f.endswith(".tar.gz")]
    with tarfile.open(os.path.join(scratch, archive)) as tar:
        tar.extractall(scratch, filter="data")
    top = os.path.join(scratch, archive[: -len(".tar.gz")])
    os.rename(top, os.path.join(scratch, f"pymysql-{SUITE_VERSION}"))


def prepare(work, sdist, args):
    """A private copy of the package and its tests, configured for this endpoint."""
    shutil.copytree(os.path.join(sdist, "pymysql"), os.path.join(work, "pymysql"))
    tests = os.path.join(work, "pymysql", "tests")
    common = {"host": args.host, "port": args.port, "user": args.user, "passwd": args.password}
    if args.autocommit:
        common["autocommit"] = True
    databases = [
        {**common, "db": "test1", "use_unicode": True, "local_infile": True},
        {**common, "db": "test2"},
    ]
    with open(os.path.join(tests, "databases.json"), "w") as f:
        json.dump(databases, f)
    os.makedirs(os.path.join(tests, "data"))
    with open(os.path.join(tests, "data", "load_local_data.txt"), "w") as f:
        f.writelines(f"{i},{i * 2}\n" for i in range(LOAD_LOCAL_ROWS))


def create_databases(work, args):
    """The suite expects test1 and test2 to exist."""
    sys.path.insert(0, work)
    import pymysql

    conn = pymysql.connect(host=args.host, port=args.port, user=args.user, passwd=args.password)
    with conn.cursor() as cur:
        for db in ("test1", "test2"):
            cur.execute(f"CREATE DATABASE IF NOT EXISTS {db}")
    conn.close()


def run_pytest(work, pytest_site, tests):
    path = os.pathsep.join([work, pytest_site])
    env = dict(os.environ, PYTHONPATH=path, PYTHONDONTWRITEBYTECODE="1")
    env.pop("PYTEST_ADDOPTS", None)
    return run_pytest_in(work, env, tests or ["pymysql/tests"])


def main():
    args = arguments(__doc__.splitlines()[0])
    sdist = cached(args.cache, f"pymysql-{SUITE_VERSION}", fetch_suite)
    pytest_site = cached_pytest(args.cache)
    with tempfile.TemporaryDirectory(prefix="pymysql-suite-") as work:
        prepare(work, sdist, args)
        create_databases(work, args)
        xml, summary = run_pytest(work, pytest_site, args.tests)
        found, details = outcomes(xml)
    print_report(summary, found, details)


if __name__ == "__main__":
    main()
