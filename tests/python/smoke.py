"""PyMySQL against a MySQL endpoint (the proxy, or a server directly).

usage: smoke.py HOST PORT USER PASSWORD DB

Runs every check, prints a JSON summary, and exits 1 if any check failed.
Reads may be served by a replica that has not applied the preceding write yet,
so every read that follows a write first waits, bounded, for the write to show.
"""

import datetime
import decimal
import json
import os
import sys
import tempfile
import time
import traceback

import pymysql
from pymysql.constants import CLIENT



class Env:
    def __init__(self, host, port, user, password, db):
        self.args = dict(host=host, port=int(port), user=user, password=password, database=db)
        self.password, self.db = password, db

    def connect(self, **extra):
        return pymysql.connect(**{**self.args, **extra})


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def reads(cur, sql, args, want):
    """Runs a read once: through the proxy (strict consistency by default) it must already see
    every write acknowledged before it, whichever server answers."""
    cur.execute(sql, args)
    got = cur.fetchall()
    check(got == want, f"{sql!r} gives {got!r}, not {want!r}")
    return got


def count_is(cur, table, n):
    reads(cur, f"SELECT COUNT(*) FROM {table}", None, ((n,),))


def fresh_table(cur, name, columns):
    cur.execute(f"DROP TABLE IF EXISTS {name}")
    cur.execute(f"CREATE TABLE {name} ({columns}) DEFAULT CHARSET=utf8mb4")


TYPES_DDL = """
    id INT PRIMARY KEY, i INT, big BIGINT UNSIGNED, dec_ DECIMAL(20,6), dbl DOUBLE,
    vc VARCHAR(100), txt TEXT, blb BLOB, d DATE, dt DATETIME(6), t TIME, ts TIMESTAMP NULL,
    j JSON, e ENUM('small','medium','large'), bits BIT(8)
"""

TYPED_ROWS = [
    (
        1,
        -2147483648,
        18446744073709551615,
        decimal.Decimal("-12345678901234.123456"),
        1.5e-300,
        "quote ' backslash \\ nul \0 emoji \U0001f600 accents é",
        "line one\nline two\t" + "x" * 5000,
        bytes(range(256)) + b"'\\\"",
        datetime.date(1999, 12, 31),
        datetime.datetime(2024, 2, 29, 23, 59, 58, 123456),
        datetime.timedelta(hours=100, minutes=2, seconds=3),
        datetime.datetime(2030, 1, 2, 3, 4, 5),
        '{"a": [1, 2, {"b": null}], "s": "\\u00e9"}',
        "medium",
        b"\xa5",
    ),
    (2,) + (None,) * 14,
]


def check_types(env):
    conn = env.connect()
    cur = conn.cursor()
    fresh_table(cur, "smoke_types", TYPES_DDL)
    placeholders = ", ".join(["%s"] * 15)
    cur.executemany(f"INSERT INTO smoke_types VALUES ({placeholders})", TYPED_ROWS)
    check(cur.rowcount == 2, f"rowcount {cur.rowcount}")
    count_is(cur, "smoke_types", 2)
    cur.execute("SELECT * FROM smoke_types ORDER BY id")
    rows = cur.fetchall()
    for want, got in zip(TYPED_ROWS, rows):
        for col, (w, g) in enumerate(zip(want, got)):
            if col == 12 and w is not None:
                w, g = json.loads(w), json.loads(g)
            same = w == g and type(w) is type(g)
            check(same, f"row {want[0]} column {col}: sent {w!r}, read {g!r}")
    check(len(rows) == 2, f"{len(rows)} rows")
    conn.close()


def check_transactions(env):
    conn = env.connect()
    cur = conn.cursor()
    fresh_table(cur, "smoke_tx", "id INT PRIMARY KEY")
    conn.begin()
    cur.execute("INSERT INTO smoke_tx VALUES (%s)", (1,))
    cur.execute("SELECT id FROM smoke_tx")
    check(cur.fetchall() == ((1,),), "a transaction reads its own uncommitted write")
    conn.commit()
    conn.begin()
    cur.execute("INSERT INTO smoke_tx VALUES (%s)", (2,))
    conn.rollback()
    # Rows 1 and 3 committed, so once 3 shows, 2 would show too had it been kept.
    cur.execute("INSERT INTO smoke_tx VALUES (%s)", (3,))
    reads(cur, "SELECT id FROM smoke_tx ORDER BY id", None, ((1,), (3,)))
    conn.close()


def check_executemany(env):
    conn = env.connect()
    cur = conn.cursor()
    fresh_table(cur, "smoke_many", "id INT PRIMARY KEY, name VARCHAR(20)")
    rows = [(i, f"name-{i}") for i in range(500)]
    cur.executemany("INSERT INTO smoke_many (id, name) VALUES (%s, %s)", rows)
    check(cur.rowcount == 500, f"rowcount {cur.rowcount}")
    count_is(cur, "smoke_many", 500)
    cur.execute("SELECT id, name FROM smoke_many ORDER BY id")
    check(list(cur.fetchall()) == rows, "executemany rows read back differ")
    conn.close()


def check_multi_statements(env):
    conn = env.connect(client_flag=CLIENT.MULTI_STATEMENTS)
    cur = conn.cursor()
    fresh_table(cur, "smoke_multi", "id INT PRIMARY KEY")
    cur.execute("SELECT 1; SELECT 'two', 2; INSERT INTO smoke_multi VALUES (7), (8); SELECT 3")
    sets = [list(cur.fetchall())]
    while cur.nextset():
        sets.append(list(cur.fetchall()))
    check(sets == [[(1,)], [("two", 2)], [], [(3,)]], f"result sets {sets!r}")
    check(cur.nextset() is None, "nextset after the last result")
    cur.execute("SELECT 'after'")
    check(cur.fetchall() == (("after",),), "the connection is usable after the sets")
    count_is(cur, "smoke_multi", 2)
    conn.close()


def check_load_data_local(env):
    conn = env.connect(local_infile=True)
    cur = conn.cursor()
    fresh_table(cur, "smoke_load", "id INT PRIMARY KEY, name VARCHAR(20)")
    with tempfile.NamedTemporaryFile("w", suffix=".csv", delete=False) as f:
        f.writelines(f"{i},row-{i}\n" for i in range(3000))
    try:
        sql = "LOAD DATA LOCAL INFILE %s INTO TABLE smoke_load FIELDS TERMINATED BY ','"
        cur.execute(sql, (f.name,))
    finally:
        os.unlink(f.name)
    check(cur.rowcount == 3000, f"rowcount {cur.rowcount}")
    count_is(cur, "smoke_load", 3000)
    reads(cur, "SELECT name FROM smoke_load WHERE id = %s", (2999,), (("row-2999",),))
    conn.close()


def check_ping_and_select_db(env):
    conn = env.connect()
    conn.ping(reconnect=False)
    cur = conn.cursor()
    conn.select_db("information_schema")
    cur.execute("SELECT DATABASE()")
    check(cur.fetchall() == (("information_schema",),), "select_db")
    cur.execute("SELECT COUNT(*) > 0 FROM TABLES")
    check(cur.fetchall() == ((1,),), "an unqualified table resolves in the selected database")
    conn.select_db(env.db)
    cur.execute("SELECT DATABASE()")
    check(cur.fetchall() == ((env.db,),), "select_db back")
    conn.ping(reconnect=False)
    conn.close()


def check_wrong_password(env):
    try:
        env.connect(password=env.password + "-wrong")
    except pymysql.OperationalError as e:
        check(e.args[0] == 1045, f"error {e.args!r}")
        return
    raise AssertionError("a wrong password was accepted")


def check_sql_error(env):
    conn = env.connect()
    cur = conn.cursor()
    try:
        cur.execute("SELEC 1")
        raise AssertionError("a syntax error was accepted")
    except pymysql.ProgrammingError as e:
        check(e.args[0] == 1064, f"error {e.args!r}")
    cur.execute("SELECT 41 + 1")
    check(cur.fetchall() == ((42,),), "the connection is usable after an error")
    conn.close()


def check_streaming(env):
    n = 10_000
    conn = env.connect()
    cur = conn.cursor()
    fresh_table(cur, "smoke_big", "id INT PRIMARY KEY, pad VARCHAR(200)")
    cur.executemany("INSERT INTO smoke_big VALUES (%s, %s)", [(i, f"{i:0>200}") for i in range(n)])
    count_is(cur, "smoke_big", n)
    stream = conn.cursor(pymysql.cursors.SSCursor)
    stream.execute("SELECT id, pad FROM smoke_big ORDER BY id")
    seen = 0
    for i, (id_, pad) in enumerate(stream):
        check(id_ == i and pad == f"{i:0>200}", f"row {i}: {id_!r}")
        seen += 1
    check(seen == n, f"streamed {seen} rows")
    stream.execute("SELECT id FROM smoke_big ORDER BY id")
    check(list(stream.fetchmany(3)) == [(0,), (1,), (2,)], "fetchmany")
    stream.close()  # reads and drops the unread rest
    cur.execute("SELECT 'still usable'")
    check(cur.fetchall() == (("still usable",),), "the connection is usable after a stream")
    conn.close()


def cleanup(env):
    conn = env.connect()
    cur = conn.cursor()
    for t in ("smoke_types", "smoke_tx", "smoke_many", "smoke_multi", "smoke_load", "smoke_big"):
        cur.execute(f"DROP TABLE IF EXISTS {t}")
    conn.close()


CHECKS = [
    check_types,
    check_transactions,
    check_executemany,
    check_multi_statements,
    check_load_data_local,
    check_ping_and_select_db,
    check_wrong_password,
    check_sql_error,
    check_streaming,
    cleanup,
]


def run(env):
    results = {}
    for fn in CHECKS:
        name = fn.__name__.removeprefix("check_")
        started = time.monotonic()
        try:
            fn(env)
            results[name] = {"ok": True}
        except Exception as e:
            results[name] = {"ok": False, "error": repr(e), "trace": traceback.format_exc()}
        results[name]["seconds"] = round(time.monotonic() - started, 3)
    return results


def main(argv):
    if len(argv) != 6:
        print(__doc__, file=sys.stderr)
        return 2
    results = run(Env(*argv[1:]))
    failed = sorted(name for name, r in results.items() if not r["ok"])
    summary = {
        "pymysql": pymysql.VERSION_STRING,
        "passed": len(results) - len(failed),
        "failed": failed,
        "checks": results,
    }
    print(json.dumps(summary, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
