#!/usr/bin/env bash
# Many clients on few server connections: sysbench with THREADS client threads through one
# multiplexing lagless-proxy onto a server that allows 600 connections, against 200 threads
# straight to the server, in one run; then the proxy's memory with IDLE idle clients.
#
#   bench/multiplex.sh [THREADS] [SECONDS] [IDLE]      (defaults 2000, 10 and 10000)
#
# One table (sysbench's default) of 400,000 rows: with more tables each client thread prepares
# nine statements per table before it starts, and sysbench gives all threads a fixed 30 s to
# do so (2,000 threads and 8 tables: 148,000 prepares, more than this 2-core box serves in 30 s
# while it also runs the 2,000 client threads).
#
# LOGS=DIR keeps sysbench's logs there.
#
# Reported per workload: transactions a second, errors (sysbench's fatal ones; deadlocks that
# sysbench retries by default are counted apart: 2,000 writers on 400,000 rows meet in
# InnoDB), and the most connections the server had at once (sampled every 200 ms). Prints a Markdown section for bench/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${1:-2000}
SECS=${2:-10}
IDLE=${3:-10000}
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; [ -n "${LOGS:-}" ] && mkdir -p "$LOGS" && cp "$WORK"/*.log "$LOGS"/; rm -rf "$WORK"' EXIT

cargo build --release --quiet -p lagless-proxy
cargo build --release --quiet -p lagless-tests --bin lagless-kit
ulimit -n 65536 2>/dev/null || true

./target/release/lagless-kit --members 1 >"$WORK/cluster.out" 2>&1 &
for _ in $(seq 100); do grep -q "primary" "$WORK/cluster.out" && break; sleep 0.1; done
DB_PORT=$(grep -oP 'primary\s+127\.0\.0\.1:\K[0-9]+' "$WORK/cluster.out")
PROXY_PORT=$((DB_PORT + 1000))
ADMIN=(mariadb -h127.0.0.1 -P"$DB_PORT" -ulagless_admin -padmin-pass -N)
"${ADMIN[@]}" -e "SET GLOBAL max_connections = 600"

cat >"$WORK/topology.json" <<JSON
{"cluster":"bench","flavor":"mariadb","epoch":1,"state":"ready",
 "primary":{"name":"m0","host":"127.0.0.1","port":$DB_PORT},"replicas":[]}
JSON
echo '{"users":[{"user":"app","password":"app-pass"}]}' >"$WORK/users.json"
./target/release/lagless-proxy --topology "$WORK/topology.json" --users "$WORK/users.json" \
  --monitor-user lagless_admin --monitor-password admin-pass --multiplex on \
  --max-backend-connections 540 --max-backend-connections-per-user 540 --pool-wait-timeout-ms 60000 --max-client-connections $((IDLE + THREADS + 100)) \
  --max-unauthenticated-per-host 4096 --listen "127.0.0.1:$PROXY_PORT" --log warn &
PROXY_PID=$!
sleep 3

SB=(sysbench --db-driver=mysql --mysql-host=127.0.0.1 --mysql-user=app --mysql-password=app-pass
    --mysql-db=app --tables=1 --table-size=400000)
"${SB[@]}" --mysql-port="$DB_PORT" oltp_read_write prepare >/dev/null

# Samples the server's connections while a run goes on; prints the largest count.
peak() {
  local most=0 n
  while kill -0 "$1" 2>/dev/null; do
    n=$("${ADMIN[@]}" -e "SHOW GLOBAL STATUS LIKE 'Threads_connected'" 2>/dev/null | awk '{print $2}')
    [ -n "$n" ] && [ "$n" -gt "$most" ] && most=$n
    sleep 0.2
  done
  echo "$most"
}

run() { # label port threads workload ps-mode
  local out="$WORK/$1-$4-$5.log"
  "${SB[@]}" --mysql-port="$2" --threads="$3" --time="$SECS" --report-interval=0 \
    --db-ps-mode="$5" "$4" run >"$out" 2>&1 &
  local pid=$!
  local most
  most=$(peak "$pid")
  wait "$pid" || true
  local tps errors
  tps=$(awk '/transactions:/ {gsub(/[()]/,"",$3); print $3}' "$out")
  local retried fatal
  retried=$(awk '/ignored errors:/ {print $3}' "$out")
  fatal=$(grep -c '^FATAL' "$out" || true)
  echo "| $4 | $5 | $1 | $3 | ${tps:-failed} | ${fatal:-0} | ${retried:-0} | $most |"
}

echo "## $(date -u +%Y-%m-%d) — multiplexing (\`bench/multiplex.sh $THREADS $SECS $IDLE\`, $(nproc) cores)"
echo
echo "One server with max_connections = 600; the proxy with \`--multiplex on\` fits its limit to"
echo "540. Connections: the most the server had at once (Threads_connected, every 200 ms)."
echo
echo "| workload | ps mode | path | client threads | tps | errors | deadlocks retried | server connections |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
# Direct runs first: the proxy keeps up to 540 connections of its own open afterwards.
for path in direct proxy; do
  for workload in oltp_point_select oltp_read_write; do
    for ps in auto disable; do
      if [ "$path" = direct ]; then
        run direct "$DB_PORT" 200 "$workload" "$ps"
      else
        run proxy "$PROXY_PORT" "$THREADS" "$workload" "$ps"
      fi
    done
  done
done

# The errors that ended runs, once each.
if grep -h '^FATAL' "$WORK"/*.log >/dev/null 2>&1; then
  echo
  echo "Errors:"
  grep -h '^FATAL' "$WORK"/*.log | sort | uniq -c | sort -rn | head -5 | sed 's/^/    /'
fi

# Idle clients, logged in and then silent, opened by four processes at once.
IDLE_PIDS=()
for part in 1 2 3 4; do
  python3 - "$PROXY_PORT" $((IDLE / 4)) <<'PY' &
import sys, time, pymysql
conns = []
for _ in range(int(sys.argv[2])):
    conns.append(pymysql.connect(host="127.0.0.1", port=int(sys.argv[1]), user="app", password="app-pass", database="app"))
time.sleep(120)
PY
  IDLE_PIDS+=($!)
done
for _ in $(seq 600); do
  n=$(ls /proc/$PROXY_PID/fd 2>/dev/null | wc -l)
  [ "$n" -ge "$IDLE" ] && break
  sleep 0.5
done
sleep 2
RSS_KB=$(awk '/VmRSS/ {print $2}' /proc/$PROXY_PID/status)
FDS=$(ls /proc/$PROXY_PID/fd | wc -l)
SERVER=$("${ADMIN[@]}" -e "SHOW GLOBAL STATUS LIKE 'Threads_connected'" | awk '{print $2}')
kill "${IDLE_PIDS[@]}" 2>/dev/null || true
echo
echo "Proxy RSS with $IDLE idle client connections: $((RSS_KB / 1024)) MiB ($FDS open descriptors; the server had $SERVER connections)."
