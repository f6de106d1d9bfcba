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

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import xml.etree.ElementTree as ET

SUITE_VERSION = "0.10.1"
PYTEST_VERSION = "8.3.5"
# test_load_local reads this file, which the sdist leaves out; the tests expect this many rows.
LOAD_LOCAL_ROWS = 22749
PYTEST_TIMEOUT = 300


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


def fetch_suite(scratch):
    pip("download", "--no-deps", "--no-binary", ":all:", f"PyMySQL=={SUITE_VERSION}", "-d", scratch)
    (archive,) = [f for f in os.listdir(scratch) if f.endswith(".tar.gz")]
    with tarfile.open(os.path.join(scratch, archive)) as tar:
        tar.extractall(scratch, filter="data")
    top = os.path.join(scratch, archive[: -len(".tar.gz")])
    os.rename(top, os.path.join(scratch, f"pymysql-{SUITE_VERSION}"))


def fetch_pytest(scratch):
    target = os.path.join(scratch, f"pytest-{PYTEST_VERSION}")
    pip("install", "--no-warn-script-location", "--target", target, f"pytest=={PYTEST_VERSION}")


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
    xml = os.path.join(work, "junit.xml")
    path = os.pathsep.join([work, pytest_site])
    env = dict(os.environ, PYTHONPATH=path, PYTHONDONTWRITEBYTECODE="1")
    env.pop("PYTEST_ADDOPTS", None)
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rfE"]
    cmd += [f"--junitxml={xml}", *(tests or ["pymysql/tests"])]
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


def outcomes(xml):
    found, details = {}, {}
    for case in ET.parse(xml).iter("testcase"):
        test = test_id(case)
        found[test], message = outcome_of(case)
        if found[test] in ("failed", "error"):
            details[test] = message[:2000]
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
    sdist = cached(cache, f"pymysql-{SUITE_VERSION}", fetch_suite)
    pytest_site = cached(cache, f"pytest-{PYTEST_VERSION}", fetch_pytest)
    with tempfile.TemporaryDirectory(prefix="pymysql-suite-") as work:
        prepare(work, sdist, args)
        create_databases(work, args)
        xml, summary = run_pytest(work, pytest_site, args.tests)
        found, details = outcomes(xml)
    report = {"summary": summary, "outcomes": found, "details": details}
    print(json.dumps(report, indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
