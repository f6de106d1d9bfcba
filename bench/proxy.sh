#!/usr/bin/env bash
# Proxy overhead: sysbench through lagless-proxy vs directly to the same server, alternating,
# several rounds; then the proxy's RSS with 1,000 idle client connections.
#
#   bench/proxy.sh [ROUNDS] [SECONDS]        (defaults: 3 rounds of 10 s per run)
#
# The cluster has one member, so both paths reach the same server and the difference is the
# proxy's cost alone. Prints a Markdown section; append it to bench/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
SECONDS_PER_RUN=${2:-10}
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"' EXIT

cargo build --release --quiet -p lagless-proxy -p lagless-tests --example tcp_forwarder
ulimit -n 65536 2>/dev/null || true

./target/release/lagless-kit --members 1 >"$WORK/cluster.out" 2>&1 &
for _ in $(seq 100); do grep -q "primary" "$WORK/cluster.out" && break; sleep 0.1; done
DB_PORT=$(grep -oP 'primary\s+127\.0\.0\.1:\K[0-9]+' "$WORK/cluster.out")
PROXY_PORT=$((DB_PORT + 1000))
FORWARD_PORT=$((DB_PORT + 2000))

cat >"$WORK/topology.json" <<JSON
{"cluster":"bench","flavor":"mariadb","epoch":1,"state":"ready",
 "primary":{"name":"m0","host":"127.0.0.1","port":$DB_PORT},"replicas":[]}
JSON
echo '{"users":[{"user":"app","password":"app-pass"}]}' >"$WORK/users.json"
./target/release/lagless-proxy --topology "$WORK/topology.json" --users "$WORK/users.json" \
  --listen "127.0.0.1:$PROXY_PORT" --log warn &
PROXY_PID=$!
./target/release/examples/tcp_forwarder "127.0.0.1:$FORWARD_PORT" "127.0.0.1:$DB_PORT" &
sleep 1

SB=(sysbench --db-driver=mysql --mysql-host=127.0.0.1 --mysql-user=app --mysql-password=app-pass
    --mysql-db=app --tables=4 --table-size=10000 --percentile=95)
"${SB[@]}" --mysql-port="$DB_PORT" oltp_read_only prepare >/dev/null

run() { # port workload threads -> "tps p95"
  "${SB[@]}" --mysql-port="$1" --threads="$3" --time="$SECONDS_PER_RUN" --report-interval=0 "$2" run |
    awk '/transactions:/ {gsub(/[()]/,"",$3); tps=$3} /95th percentile:/ {p95=$3} END {print tps, p95}'
}

declare -A TPS P95
for round in $(seq "$ROUNDS"); do
  for workload in oltp_point_select oltp_read_only; do
    for threads in 8 64; do
      for path in direct forwarder proxy; do
        port=$DB_PORT; [ "$path" = proxy ] && port=$PROXY_PORT; [ "$path" = forwarder ] && port=$FORWARD_PORT
        read -r tps p95 < <(run "$port" "$workload" "$threads")
        key="$workload/$threads/$path"
        TPS[$key]="${TPS[$key]:-} $tps"; P95[$key]="${P95[$key]:-} $p95"
        echo "round $round $key: $tps tps, p95 $p95 ms" >&2
      done
    done
  done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

echo "## $(date -u +%Y-%m-%d) — proxy vs direct ($(nproc) cores, ${ROUNDS} rounds × ${SECONDS_PER_RUN} s, medians)"
echo
echo "| workload | threads | direct tps | TCP forwarder tps (ratio) | proxy tps | proxy ratio | direct p95 ms | proxy p95 ms | added p95 ms |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"
for workload in oltp_point_select oltp_read_only; do
  for threads in 8 64; do
    dt=$(echo "${TPS[$workload/$threads/direct]}" | median); pt=$(echo "${TPS[$workload/$threads/proxy]}" | median)
    ft=$(echo "${TPS[$workload/$threads/forwarder]}" | median)
    dp=$(echo "${P95[$workload/$threads/direct]}" | median); pp=$(echo "${P95[$workload/$threads/proxy]}" | median)
    awk -v w="$workload" -v t="$threads" -v dt="$dt" -v ft="$ft" -v pt="$pt" -v dp="$dp" -v pp="$pp" \
      'BEGIN {printf "| %s | %s | %.0f | %.0f (%.2f) | %.0f | %.2f | %.2f | %.2f | %.2f |\n", w, t, dt, ft, ft/dt, pt, pt/dt, dp, pp, pp-dp}'
  done
done

# 1,000 idle clients, each logged in and then silent.
python3 - "$PROXY_PORT" <<'PY' &
import sys, time, pymysql
conns = [pymysql.connect(host="127.0.0.1", port=int(sys.argv[1]), user="app", password="app-pass", database="app") for _ in range(1000)]
print("opened", len(conns), file=sys.stderr, flush=True)
time.sleep(30)
PY
IDLE_PID=$!
for _ in $(seq 120); do
  n=$(ls /proc/$PROXY_PID/fd 2>/dev/null | wc -l)
  [ "$n" -ge 1000 ] && break
  sleep 0.5
done
sleep 2
RSS_KB=$(awk '/VmRSS/ {print $2}' /proc/$PROXY_PID/status)
FDS=$(ls /proc/$PROXY_PID/fd | wc -l)
kill $IDLE_PID 2>/dev/null || true
echo
echo "Proxy RSS with 1,000 idle client connections: $((RSS_KB / 1024)) MiB ($FDS open descriptors)."
