"""What the driver-suite scripts share: fetching into a cache, running pytest, reading its
junit report, and the command line and JSON report (see README.md)."""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

PYTEST_VERSION = "8.3.5"
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


def fetch_pytest(scratch):
    target = os.path.join(scratch, f"pytest-{PYTEST_VERSION}")
    pip("install", "--no-warn-script-location", "--target", target, f"pytest=={PYTEST_VERSION}")


def cached_pytest(cache):
    return cached(cache, f"pytest-{PYTEST_VERSION}", fetch_pytest)


def arguments(description):
    parser = argparse.ArgumentParser(description=description)
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
    args.cache = os.path.abspath(args.cache)
    return args


def run_pytest(work, env, selection):
    """Runs pytest in `work` with `selection` (options and test ids); returns the junit report's
    path and pytest's summary line."""
    xml = os.path.join(work, "junit.xml")
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rfE"]
    cmd += [f"--junitxml={xml}", *selection]
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
    """The pytest id of a junit test case: every test of these suites is a method of a class."""
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


def print_report(summary, found, details):
    report = {"summary": summary, "outcomes": found, "details": details}
    print(json.dumps(report, indent=1, sort_keys=True))
