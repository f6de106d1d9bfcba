#!/usr/bin/env bash
# What consistency costs: sysbench oltp_read_only (statements outside transactions, so reads
# may go to replicas) through a `strict` proxy, an `eventual` proxy and directly to the primary;
# oltp_read_write through the `strict` proxy and directly. A 3-member cluster, alternating runs.
#
#   bench/consistency.sh [ROUNDS] [SECONDS]        (defaults: 3 rounds of 10 s)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
SECS=${2:-10}
THREADS=${THREADS:-8}
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"' EXIT

cargo build --release --quiet -p lagless-proxy -p lagless-tests
./target/release/lagless-kit --members 3 >"$WORK/cluster.out" 2>&1 &
for _ in $(seq 100); do grep -q "Press Ctrl-C" "$WORK/cluster.out" && break; sleep 0.1; done
mapfile -t PORTS < <(grep -oP '127\.0\.0\.1:\K[0-9]+(?=\s+server_id)' "$WORK/cluster.out")
P0=${PORTS[0]}
cat >"$WORK/topology.json" <<JSON
{"cluster":"bench","flavor":"mariadb","epoch":1,"state":"ready",
 "primary":{"name":"m0","host":"127.0.0.1","port":${PORTS[0]}},
 "replicas":[{"name":"m1","host":"127.0.0.1","port":${PORTS[1]}},{"name":"m2","host":"127.0.0.1","port":${PORTS[2]}}]}
JSON
echo '{"users":[{"user":"app","password":"app-pass"}]}' >"$WORK/users.json"
start_proxy() { # port mode
  ./target/release/lagless-proxy --topology "$WORK/topology.json" --users "$WORK/users.json" \
    --lookup-user lagless_admin --lookup-password admin-pass --consistency "$2" \
    --listen "127.0.0.1:$1" --admin-listen "127.0.0.1:$(($1 + 1))" --log warn &
}
STRICT=$((P0 + 1000)); EVENTUAL=$((P0 + 1010))
start_proxy "$STRICT" strict
start_proxy "$EVENTUAL" eventual
sleep 1

SB=(sysbench --db-driver=mysql --mysql-host=127.0.0.1 --mysql-user=app --mysql-password=app-pass
    --mysql-db=app --tables=4 --table-size=10000 --percentile=95 --threads="$THREADS")
"${SB[@]}" --mysql-port="$P0" oltp_read_write prepare >/dev/null
sleep 2
run() { # port workload extra...
  local port=$1 workload=$2; shift 2
  "${SB[@]}" --mysql-port="$port" --time="$SECS" "$@" "$workload" run |
    awk '/transactions:/ {gsub(/[()]/,"",$3); tps=$3} /95th percentile:/ {p95=$3} END {print tps, p95}'
}
declare -A TPS
for round in $(seq "$ROUNDS"); do
  for case in ro/direct/$P0 ro/strict/$STRICT ro/eventual/$EVENTUAL rw/direct/$P0 rw/strict/$STRICT; do
    IFS=/ read -r kind path port <<<"$case"
    if [ "$kind" = ro ]; then read -r tps p95 < <(run "$port" oltp_read_only --skip_trx=on)
    else read -r tps p95 < <(run "$port" oltp_read_write); fi
    TPS[$kind/$path]="${TPS[$kind/$path]:-} $tps"
    echo "round $round $kind $path: $tps tps, p95 $p95 ms" >&2
  done
done
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
fallbacks=$(curl -s "127.0.0.1:$((STRICT + 1))/metrics" | awk '/^lagless_read_fallbacks_total/ {s+=$2} END {print s+0}')
replica_reads=$(curl -s "127.0.0.1:$((STRICT + 1))/metrics" | awk '/^lagless_reads_total.*mode="strict"/ {s+=$2} END {print s+0}')
echo "## $(date -u +%Y-%m-%d) — consistency cost ($(nproc) cores, 3 members, $THREADS threads, ${ROUNDS} rounds × ${SECS} s, medians)"
echo
echo "| workload | direct to primary tps | strict tps | eventual tps | strict / eventual | strict / direct |"
echo "| --- | --- | --- | --- | --- | --- |"
ro_d=$(echo "${TPS[ro/direct]}" | median); ro_s=$(echo "${TPS[ro/strict]}" | median); ro_e=$(echo "${TPS[ro/eventual]}" | median)
rw_d=$(echo "${TPS[rw/direct]}" | median); rw_s=$(echo "${TPS[rw/strict]}" | median)
awk -v d="$ro_d" -v s="$ro_s" -v e="$ro_e" 'BEGIN {printf "| oltp_read_only --skip_trx=on | %.0f | %.0f | %.0f | %.2f | %.2f |\n", d, s, e, s/e, s/d}'
awk -v d="$rw_d" -v s="$rw_s" 'BEGIN {printf "| oltp_read_write | %.0f | %.0f | — | — | %.2f |\n", d, s, s/d}'
echo
echo "Strict proxy: $replica_reads reads served by replicas, $fallbacks fell back to the primary."
