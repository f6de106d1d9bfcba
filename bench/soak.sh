#!/usr/bin/env bash
# Switchover and failover soak through the local runtime: sysbench oltp_read_write through
# lagless-proxy while the primary is switched over back and forth, then killed (kill -9).
#
#   bench/soak.sh [SWITCHOVERS] [FAILOVERS] [THREADS]      (default 10 3 32)
#
# For each --db-ps-mode (auto, then disable): one sysbench run with SWITCHOVERS switchovers,
# one every SOAK_INTERVAL seconds (default 10), where any client error fails the run; then one
# run with --mysql-ignore-errors=all and FAILOVERS kill -9 failovers about 40 s apart (the local
# runtime's anti-flap window is 30 s), where the errors counted are the transactions in flight;
# a killed primary that comes back quarantined (it held a transaction nobody acknowledged) is
# re-seeded with `local reseed` before the next kill.
# A probe writer (PyMySQL) measures the longest write pause around each event. Prints a
# Markdown section for bench/RESULTS.md; the sysbench logs stay in the printed directory.
set -euo pipefail
cd "$(dirname "$0")/.."
SWITCHOVERS=${1:-10}
FAILOVERS=${2:-3}
THREADS=${3:-32}
INTERVAL=${SOAK_INTERVAL:-10}
MODES=${SOAK_MODES:-auto disable}
BIN=${LAGLESS_BIN:-target/release/lagless-operator}
if [ ! -x "$BIN" ] || [ -z "${LAGLESS_BIN:-}" ]; then
  cargo build -q --release -p lagless-operator
fi
OUT=$(mktemp -d /tmp/lagless-soak.XXXXXX)
STATE=$OUT/state
BASE=${SOAK_BASE_PORT:-13307}
PROXY=${SOAK_PROXY_PORT:-16033}
cat >"$OUT/soak.yaml" <<'EOF'
apiVersion: lagless.dev/v1alpha1
kind: MySQLCluster
metadata:
  name: soak
spec:
  replicas: 3
  replication:
    semiSync: true
  proxy:
    replicas: 1
    defaultConsistency: strict
EOF
local_() { "$BIN" local --state-dir "$STATE" "$@"; }
cleanup() {
  [ -z "${probe_pid:-}" ] || kill "$probe_pid" 2>/dev/null || true
  local_ down >/dev/null 2>&1 || true
}
trap cleanup EXIT
local_ up -f "$OUT/soak.yaml" --detach --base-port "$BASE" --proxy-port "$PROXY" >"$OUT/up.log"
USER_=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["app_user"])' "$STATE/credentials.json")
PASS=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["app_password"])' "$STATE/credentials.json")
SB=(sysbench oltp_read_write --db-driver=mysql --mysql-host=127.0.0.1 --mysql-port="$PROXY"
  --mysql-user="$USER_" --mysql-password="$PASS" --mysql-db=app --tables=4 --table-size=10000)
"${SB[@]}" prepare >"$OUT/prepare.log"

# The probe: one autocommit INSERT every 5 ms through the proxy, each commit's time logged,
# for as many seconds as it is told; started directly (so $! is the probe itself).
cat >"$OUT/probe.py" <<'PY'
import sys, time, pymysql
port, user, password, log, secs = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5])
out = open(log, "w", buffering=1)
conn = None
deadline = time.time() + secs
while time.time() < deadline:
    try:
        if conn is None:
            conn = pymysql.connect(host="127.0.0.1", port=port, user=user, password=password, database="app", autocommit=True)
            conn.cursor().execute("CREATE TABLE IF NOT EXISTS soak_probe (id BIGINT AUTO_INCREMENT PRIMARY KEY)")
        conn.cursor().execute("INSERT INTO soak_probe VALUES ()")
        out.write(f"ok {time.time():.4f}\n")
    except Exception as e:
        out.write(f"err {time.time():.4f} {type(e).__name__}\n")
        conn = None
        time.sleep(0.02)
    time.sleep(0.005)
PY
probe_pid=""
probe() { python3 "$OUT/probe.py" "$PROXY" "$USER_" "$PASS" "$1" "$2" & probe_pid=$!; }

# Longest gap between two probe commits in [from, from + window) seconds (epoch times).
pause_ms() {
  awk -v from="$2" -v to="$(echo "$2 + $3" | bc)" '
    $1 == "ok" { if ($2 >= from && last && $2 < to) { gap = $2 - last; if (gap > max) max = gap } last = $2 }
    END { printf "%.0f", max * 1000 }' "$1"
}

# Waits for sysbench ($sb) and stops the probe; reads the run's figures from $log and the
# longest write pause within $1 seconds of each event from $probe_log.
finish_run() {
  sb_rc=0; wait "$sb" || sb_rc=$?
  kill "$probe_pid" 2>/dev/null || true; wait "$probe_pid" 2>/dev/null || true
  errors=$(grep -oP 'ignored errors:\s+\K[0-9]+' "$log" || echo "?")
  reconnects=$(grep -oP 'reconnects:\s+\K[0-9]+' "$log" || echo "?")
  zero=$(grep -c ' tps: 0.00 ' "$log" || true)
  tps=$(grep -oP 'transactions:\s+\S+\s+\(\K[0-9.]+' "$log" || echo "?")
  pauses=()
  for e in "${events[@]}"; do pauses+=("$(pause_ms "$probe_log" "${e%%|*}" "$1")"); done
}

rows=()
for mode in $MODES; do
  # Switchovers: no error is tolerated.
  log=$OUT/switchover-$mode.log
  probe_log=$OUT/probe-switchover-$mode.log
  secs=$(( INTERVAL * (SWITCHOVERS + 1) ))
  probe "$probe_log" $(( secs + 5 ))
  timeout $(( secs + 60 )) "${SB[@]}" run --threads="$THREADS" --time="$secs" --report-interval=1 \
    --db-ps-mode="$mode" >"$log" 2>&1 & sb=$!
  events=()
  for i in $(seq "$SWITCHOVERS"); do
    sleep "$INTERVAL"
    at=$(date +%s.%N)
    msg=$(local_ switchover)
    events+=("$at|$msg")
  done
  finish_run 5
  rows+=("| switchover ×$SWITCHOVERS, ps-mode=$mode | $tps | sysbench exit $sb_rc (any error but a deadlock stops it), $errors deadlocks retried, $reconnects reconnects | $zero | ${pauses[*]} |")
  echo "ps-mode=$mode switchovers: exit $sb_rc, errors $errors, reconnects $reconnects, seconds at 0 tps $zero, pauses (ms) ${pauses[*]}" >&2

  # Failovers: the transactions in flight on the killed primary are lost, nothing else.
  [ "$FAILOVERS" -gt 0 ] || continue
  log=$OUT/failover-$mode.log
  probe_log=$OUT/probe-failover-$mode.log
  secs=$(( 50 * FAILOVERS + 10 ))
  probe "$probe_log" $(( secs + 5 ))
  timeout $(( secs + 60 )) "${SB[@]}" run --threads="$THREADS" --time="$secs" --report-interval=1 --db-ps-mode="$mode" \
    --mysql-ignore-errors=all >"$log" 2>&1 & sb=$!
  events=()
  reseeded=()
  for i in $(seq "$FAILOVERS"); do
    sleep $(( i == 1 ? 10 : 25 ))
    victim=$(local_ status --output json | python3 -c 'import json,sys; print(json.load(sys.stdin)["primary"])')
    at=$(date +%s.%N)
    local_ kill "$victim" >/dev/null
    events+=("$at|$victim")
    # A primary killed mid-commit can come back holding a transaction nobody acknowledged,
    # and is then quarantined: re-seed it, as its operator would, so that the next kill still
    # finds a replica to acknowledge writes (lossless semi-sync stops writes without one).
    sleep 15
    if local_ status --output json | python3 -c 'import json,sys; m=[x for x in json.load(sys.stdin)["members"] if x["name"]==sys.argv[1]]; sys.exit(0 if m and m[0]["role"]=="quarantined" else 1)' "$victim"; then
      local_ reseed "$victim" >&2
      reseeded+=("$victim")
    fi
  done
  finish_run 20
  rows+=("| kill -9 ×$FAILOVERS, ps-mode=$mode | $tps | sysbench exit $sb_rc, $errors errors ignored (deadlocks, and up to $THREADS transactions in flight per kill), $reconnects reconnects; re-seeded: ${reseeded[*]:-none} | – | ${pauses[*]} |")
  echo "ps-mode=$mode failovers: exit $sb_rc, errors $errors, reconnects $reconnects, pauses (ms) ${pauses[*]}" >&2
done

echo "## $(date -u +%Y-%m-%d) — switchover and failover soak (\`bench/soak.sh $SWITCHOVERS $FAILOVERS $THREADS\`)"
echo
echo "sysbench oltp_read_write, $THREADS threads, 4 tables × 10,000 rows, through one lagless-proxy in"
echo "front of \`lagless-operator local\` (3 MariaDB members, lossless semi-sync, strict reads);"
echo "one switchover every ${INTERVAL} s, failovers 40 s apart; write pause = longest gap between two"
echo "commits of a probe writer (one INSERT every 5 ms) around each event. Logs: \`$OUT\`."
echo
echo "| run | tps | client errors | seconds at 0 tps | write pause per event (ms) |"
echo "| --- | --- | --- | --- | --- |"
printf '%s\n' "${rows[@]}"
