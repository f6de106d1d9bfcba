#!/usr/bin/env bash
# Moving a tenant while it is written, on a local tenant pool (examples/tenantpool.yaml: three
# clusters of two members, two proxies).
#
#   bench/tenant-move.sh [MB] [BIG_MB]      (defaults 100 and 1000)
#
# 1. A tenant of about MB megabytes (rows of 1 KiB) is moved with `lagless-operator tenant move`
#    while a writer inserts about 200 rows a second through a proxy (each acknowledged row
#    logged) and a neighbour tenant on the target cluster is read at a fixed rate
#    (sysbench oltp_point_select --rate) through the other proxy. Reported: the move's time
#    and phases, how long writes were held, the writer's errors and slowest writes, every
#    acknowledged row found once on the target, and the neighbour's p99 latency before and
#    during the move.
# 2. A tenant of BIG_MB megabytes is moved with no load; its time is reported (0 skips it).
# COPY_RATE_MIB sets the copy's pace (`tenant move --copy-rate-mib`), COPY_LATENCY_ALLOWANCE
# the percent the target may slow down before the copy does (`--copy-latency-allowance`).
# Needs: cargo, sysbench, python3 with PyMySQL, mariadb client. Prints a Markdown section for
# bench/RESULTS.md; logs stay in the printed directory.
set -euo pipefail
cd "$(dirname "$0")/.."
MB=${1:-100}
BIG=${2:-1000}
BIN=${LAGLESS_BIN:-target/release/lagless-operator}
if [ -z "${LAGLESS_BIN:-}" ]; then
  cargo build -q --release -p lagless-operator
fi
OUT=$(mktemp -d /tmp/lagless-move.XXXXXX)
STATE=$OUT/pool
BASE=${MOVE_BASE_PORT:-23307}
PROXY=${MOVE_PROXY_PORT:-26033}
local_() { "$BIN" local --state-dir "$STATE" "$@"; }
tenant() { "$BIN" tenant --state-dir "$STATE" "$@"; }
cleanup() {
  [ -z "${writer_pid:-}" ] || kill "$writer_pid" 2>/dev/null || true
  local_ down --purge >/dev/null 2>&1 || true
}
trap cleanup EXIT
echo "logs: $OUT" >&2
local_ up -f examples/tenantpool.yaml --detach --base-port "$BASE" --proxy-port "$PROXY" >"$OUT/up.log"
cred() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$STATE/credentials.json" "$1"; }
APP_USER=$(cred app_user); APP_PASS=$(cred app_password)
ADMIN_USER=$(cred admin_user); ADMIN_PASS=$(cred admin_password)
primary_of() { # cluster -> port of its primary
  python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["primary"]["port"])' \
    "$STATE/clusters/$1/topology.json"
}
cluster_of() { tenant where "$1" | grep -oP 'cluster \K[^,]+'; }
admin() { mariadb -h127.0.0.1 -P"$1" -u"$ADMIN_USER" -p"$ADMIN_PASS" -N "${@:2}"; }
load() { # tenant megabytes: rows of 1 KiB, written on its cluster's primary
  local port
  tenant create "$1" >/dev/null
  port=$(primary_of "$(cluster_of "$1")")
  admin "$port" -e "CREATE TABLE t_$1.payload (id BIGINT PRIMARY KEY, body VARCHAR(1000) NOT NULL)"
  local rows=$(( $2 * 1024 )) step=50000 i
  for ((i = 0; i < rows; i += step)); do
    admin "$port" -e "INSERT INTO t_$1.payload SELECT seq, REPEAT(CHAR(65 + seq % 26), 1000)
      FROM t_$1.seq_$((i + 1))_to_$(( i + step < rows ? i + step : rows ))"
  done
  admin "$port" -e "CREATE TABLE t_$1.acked (n INT PRIMARY KEY, at DOUBLE NOT NULL)"
}
other_cluster() { # a tenant cluster other than $1
  for c in demo-c0 demo-c1 demo-c2; do [ "$c" != "$1" ] && { echo "$c"; return; }; done
}

load mover "$MB"
FROM=$(cluster_of mover)
TO=$(other_cluster "$FROM")
# A neighbour on the target cluster, read at a fixed rate.
for i in $(seq 1 12); do
  tenant create "nb$i" >/dev/null
  if [ "$(cluster_of "nb$i")" = "$TO" ]; then NB=nb$i; break; fi
done
if [ -z "${NB:-}" ]; then echo "no neighbour landed on $TO" >&2; exit 1; fi
SB=(sysbench oltp_point_select --db-driver=mysql --mysql-host=127.0.0.1 --mysql-port=$((PROXY + 2))
  --mysql-user="$APP_USER" --mysql-password="$APP_PASS" --mysql-db="t_$NB" --tables=1
  --table-size=10000 --threads=4 --rate=400 --percentile=99 --report-interval=0)
"${SB[@]}" prepare >"$OUT/nb-prepare.log"
p99() { grep -oP '99th percentile:\s+\K[0-9.]+' "$1"; }
"${SB[@]}" --time=10 run >"$OUT/nb-before.log"

# The writer: one INSERT every 5 ms through the first proxy, each acknowledged n logged.
cat >"$OUT/writer.py" <<'PY'
import sys, time, pymysql
port, user, password, log, secs = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5])
out = open(log, "w", buffering=1)
conn = pymysql.connect(host="127.0.0.1", port=port, user=user, password=password, database="t_mover", autocommit=True)
deadline, n = time.time() + secs, 0
while time.time() < deadline:
    n += 1
    started = time.time()
    try:
        conn.cursor().execute("INSERT INTO acked VALUES (%s, %s)", (n, started))
        out.write(f"ok {n} {time.time() - started:.4f}\n")
    except Exception as e:
        out.write(f"error {n} {e!r}\n")
        conn = pymysql.connect(host="127.0.0.1", port=port, user=user, password=password, database="t_mover", autocommit=True)
    time.sleep(max(0, 0.005 - (time.time() - started)))
PY
WRITE_SECS=$(( 30 + MB / 4 ))
python3 "$OUT/writer.py" "$PROXY" "$APP_USER" "$APP_PASS" "$OUT/writer.log" "$WRITE_SECS" &
writer_pid=$!
sleep 5
"${SB[@]}" --time=10 run >"$OUT/nb-during.log" &
nb_pid=$!
T0=$(date +%s%N)
tenant move mover --to "$TO" ${COPY_RATE_MIB:+--copy-rate-mib "$COPY_RATE_MIB"} ${COPY_LATENCY_ALLOWANCE:+--copy-latency-allowance "$COPY_LATENCY_ALLOWANCE"} >"$OUT/move.out" 2>"$OUT/move.err"
T1=$(date +%s%N)
wait "$nb_pid"
wait "$writer_pid"
writer_pid=

ACKED=$(grep -c '^ok ' "$OUT/writer.log" || true)
ERRORS=$(grep -c '^error ' "$OUT/writer.log" || true)
SLOWEST=$(awk '$1 == "ok" {print $3 * 1000}' "$OUT/writer.log" | sort -g | tail -1)
WP99=$(awk '$1 == "ok" {print $3 * 1000}' "$OUT/writer.log" | sort -g | awk '{a[NR]=$1} END {print a[int(NR*0.99+0.999)]}')
TO_PORT=$(primary_of "$TO")
FOUND=$(admin "$TO_PORT" -e "SELECT COUNT(*) FROM t_mover.acked")
MISSING=$(grep '^ok ' "$OUT/writer.log" | awk '{print $2}' >"$OUT/acked.txt"; \
  admin "$TO_PORT" -e "SELECT n FROM t_mover.acked" | sort -n >"$OUT/found.txt"; \
  comm -23 <(sort "$OUT/acked.txt") <(sort "$OUT/found.txt") | wc -l)
HELD=$(grep -oP 'writes held \K[0-9]+' "$OUT/move.out" || echo "?")
ROWS=$(admin "$TO_PORT" -e "SELECT COUNT(*) FROM t_mover.payload")

BIG_LINE="not run"
if [ "$BIG" -gt 0 ]; then
  load big "$BIG"
  BIG_FROM=$(cluster_of big)
  B0=$(date +%s%N)
  tenant move big --to "$(other_cluster "$BIG_FROM")" >"$OUT/big.out" 2>"$OUT/big.err"
  B1=$(date +%s%N)
  BIG_LINE="$(( (B1 - B0) / 1000000 )) ms ($(grep -oP 'writes held \K[0-9]+' "$OUT/big.out") ms held)"
fi

echo "## $(date -u +%Y-%m-%d) — moving a tenant (\`bench/tenant-move.sh $MB $BIG\`, $(nproc) cores)"
echo
echo "Local pool from examples/tenantpool.yaml (three clusters of two members, two proxies)."
echo
echo "| | |"
echo "| --- | --- |"
echo "| tenant moved while written | $MB MiB ($ROWS rows of 1 KiB), $FROM → $TO |"
echo "| move, end to end | $(( (T1 - T0) / 1000000 )) ms |"
echo "| phases (ms) | $(python3 -c 'import json,sys; print(", ".join(f"{p} {ms}" for p, ms in json.load(open(sys.argv[1]))["timings"]))' "$STATE/moves/mover.json") |"
echo "| writes held (freeze to flip) | $HELD ms |"
echo "| writer through a proxy | $ACKED rows acknowledged, $ERRORS errors, p99 $WP99 ms, slowest $SLOWEST ms |"
echo "| acknowledged rows on the target's primary | $FOUND rows, $MISSING missing |"
echo "| neighbour on $TO, oltp_point_select at 400/s, p99 | $(p99 "$OUT/nb-before.log") ms before, $(p99 "$OUT/nb-during.log") ms during the move |"
echo "| $BIG MiB tenant moved without load | $BIG_LINE |"
