#!/usr/bin/env bash
# What a hop costs: sysbench directly to the primary, through HAProxy in TCP mode (Debian's
# `haproxy`), through a plain tokio forwarder, and through lagless-proxy in each layout (the
# primary alone; three members with `eventual`; three members with `strict`, and `strict` with
# every read kept on replicas), alternating in
# one run, at 8 and 64 threads. For every hop, CPU per query is the hop process's
# utime+stime over the run divided by the queries sysbench completed. Then the proxy's RSS with
# 1,000 idle client connections.
#
#   bench/proxy.sh [ROUNDS] [SECONDS]        (defaults: 3 rounds of 10 s per run)
#
# Environment:
#   WORKLOADS   default "point_select read_only read_only_notrx read_write"
#   THREADS     default "8 64"
#   PATHS       default "direct haproxy forwarder primary eventual strict strict-replicas
#               primary-loops eventual-loops strict-loops primary-1t eventual-1t strict-1t"
#               (*-loops with --scheduler loops, *-1t with --worker-threads 1)
#   BEFORE      another lagless-proxy binary: adds paths before-primary, before-eventual and
#               before-strict, run the same way, for a before/after table in one run
#
# Prints a Markdown section on stdout (progress on stderr); append it to bench/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
SECS=${2:-10}
WORKLOADS=${WORKLOADS:-point_select read_only read_only_notrx read_write}
THREAD_COUNTS=${THREADS:-8 64}
PATHS=${PATHS:-direct haproxy forwarder primary eventual strict strict-replicas primary-loops eventual-loops strict-loops primary-1t eventual-1t strict-1t}
if [ -n "${BEFORE:-}" ]; then PATHS="$PATHS before-primary before-eventual before-strict"; fi
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"' EXIT

command -v haproxy >/dev/null || apt-get install -y -qq haproxy >/dev/null
command -v sysbench >/dev/null || apt-get install -y -qq sysbench >/dev/null
cargo build --release --quiet -p lagless-proxy -p lagless-tests --bins
cargo build --release --quiet -p lagless-proxy --example tcp_forwarder
ulimit -n 65536 2>/dev/null || true
PROXY=./target/release/lagless-proxy

./target/release/lagless-kit --members 3 >"$WORK/cluster.out" 2>&1 &
for _ in $(seq 300); do grep -q "Press Ctrl-C" "$WORK/cluster.out" && break; sleep 0.1; done
mapfile -t P < <(grep -oP '127\.0\.0\.1:\K[0-9]+(?=\s+server_id)' "$WORK/cluster.out")
P0=${P[0]}
member() { echo "{\"name\":\"m$1\",\"host\":\"127.0.0.1\",\"port\":${P[$1]}}"; }
cat >"$WORK/alone.json" <<JSON
{"cluster":"bench","flavor":"mariadb","epoch":1,"state":"ready","primary":$(member 0),"replicas":[]}
JSON
cat >"$WORK/three.json" <<JSON
{"cluster":"bench","flavor":"mariadb","epoch":1,"state":"ready","primary":$(member 0),
 "replicas":[$(member 1),$(member 2)]}
JSON
echo '{"users":[{"user":"app","password":"app-pass"}]}' >"$WORK/users.json"

declare -A PORT PID
start_proxy() { # name binary topology mode port [flags...]
  local name=$1 binary=$2 topology=$3 mode=$4 port=$5; shift 5
  "$binary" --topology "$WORK/$topology.json" --users "$WORK/users.json" \
    --lookup-user lagless_admin --lookup-password admin-pass --consistency "$mode" \
    --listen "127.0.0.1:$port" --admin-listen "127.0.0.1:$((port + 1))" --log warn "$@" &
  PID[$name]=$!; PORT[$name]=$port
}
PORT[direct]=$P0
start_proxy primary "$PROXY" alone strict $((P0 + 1000))
start_proxy eventual "$PROXY" three eventual $((P0 + 1010))
start_proxy strict "$PROXY" three strict $((P0 + 1020))
start_proxy strict-replicas "$PROXY" three strict $((P0 + 1060)) --cheap-reads-on-primary 0
start_proxy primary-loops "$PROXY" alone strict $((P0 + 1130)) --scheduler loops
start_proxy eventual-loops "$PROXY" three eventual $((P0 + 1140)) --scheduler loops
start_proxy strict-loops "$PROXY" three strict $((P0 + 1150)) --scheduler loops
start_proxy primary-1t "$PROXY" alone strict $((P0 + 1070)) --worker-threads 1
start_proxy eventual-1t "$PROXY" three eventual $((P0 + 1080)) --worker-threads 1
start_proxy strict-1t "$PROXY" three strict $((P0 + 1090)) --worker-threads 1
if [ -n "${BEFORE:-}" ]; then
  start_proxy before-primary "$BEFORE" alone strict $((P0 + 1030))
  start_proxy before-eventual "$BEFORE" three eventual $((P0 + 1040))
  start_proxy before-strict "$BEFORE" three strict $((P0 + 1050))
fi
./target/release/examples/tcp_forwarder "127.0.0.1:$((P0 + 2000))" "127.0.0.1:$P0" &
PID[forwarder]=$!; PORT[forwarder]=$((P0 + 2000))
cat >"$WORK/haproxy.cfg" <<CFG
global
  maxconn 8000
defaults
  mode tcp
  timeout connect 5s
  timeout client 1h
  timeout server 1h
listen mysql
  bind 127.0.0.1:$((P0 + 2010))
  server primary 127.0.0.1:$P0
CFG
haproxy -f "$WORK/haproxy.cfg" -db &
PID[haproxy]=$!; PORT[haproxy]=$((P0 + 2010))
sleep 2

SB=(sysbench --db-driver=mysql --mysql-host=127.0.0.1 --mysql-user=app --mysql-password=app-pass
    --mysql-db=app --tables=4 --table-size=10000 --percentile=95)
"${SB[@]}" --mysql-port="$P0" oltp_read_write prepare >/dev/null
sleep 2

cpu_ticks() { # pid -> utime+stime in clock ticks (0 without a process)
  [ -n "${1:-}" ] && awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0
}
statements() { # name -> "replica total" statements the proxy counted so far
  local port=${PORT[$1]}
  curl -s "127.0.0.1:$((port + 1))/metrics" |
    awk '/^lagless_statements_total/ {t += $NF; if ($0 ~ /route="replica"/) r += $NF} END {print r+0, t+0}'
}
run() { # name workload threads -> "tps qps p95 cpu_us_per_query replica_share"
  local name=$1 workload=$2 threads=$3 args=() test=oltp_$2
  case $workload in
    read_only_notrx) test=oltp_read_only; args=(--skip_trx=on) ;;
  esac
  local pid=${PID[$name]:-} before after r0 t0 r1 t1 out
  before=$(cpu_ticks "$pid")
  read -r r0 t0 < <([ -n "$pid" ] && [ "$name" != haproxy ] && [ "$name" != forwarder ] && statements "$name" || echo "0 0")
  out=$("${SB[@]}" --mysql-port="${PORT[$name]}" --threads="$threads" --time="$SECS" \
    --report-interval=0 "${args[@]}" "$test" run) || echo "sysbench failed: $name $workload $threads" >&2
  after=$(cpu_ticks "$pid")
  read -r r1 t1 < <([ -n "$pid" ] && [ "$name" != haproxy ] && [ "$name" != forwarder ] && statements "$name" || echo "0 0")
  echo "$out" | awk -v c=$((after - before)) -v hz="$(getconf CLK_TCK)" -v r=$((r1 - r0)) -v t=$((t1 - t0)) -v hop="$pid" '
    /transactions:/ {gsub(/[()]/,"",$3); tps=$3}
    /queries:/ {q=$2; gsub(/[()]/,"",$3); qps=$3}
    /95th percentile:/ {p95=$3}
    END {cpu = (hop == "" || q == 0) ? -1 : c * 1e6 / hz / q; share = (t > 0) ? r / t : -1
         print tps, qps, p95, cpu, share}'
}

declare -A TPS QPS P95 CPU SHARE
for round in $(seq "$ROUNDS"); do
  for workload in $WORKLOADS; do
    for threads in $THREAD_COUNTS; do
      for path in $PATHS; do
        read -r tps qps p95 cpu share < <(run "$path" "$workload" "$threads")
        k="$workload/$threads/$path"
        TPS[$k]="${TPS[$k]:-} $tps"; QPS[$k]="${QPS[$k]:-} $qps"; P95[$k]="${P95[$k]:-} $p95"
        CPU[$k]="${CPU[$k]:-} $cpu"; SHARE[$k]="${SHARE[$k]:-} $share"
        echo "round $round $k: $tps tps, $qps qps, p95 $p95 ms, hop CPU $cpu µs/query, replica share $share" >&2
      done
    done
  done
done

median() { tr ' ' '\n' | awk 'NF' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
label() {
  case $1 in
    direct) echo "direct to the primary" ;;
    haproxy) echo "HAProxy $(haproxy -v | awk 'NR==1 {print $3}' | cut -d- -f1), TCP mode, to the primary" ;;
    forwarder) echo "tokio forwarder (copy_bidirectional), to the primary" ;;
    primary) echo "lagless-proxy, topology with the primary alone" ;;
    eventual) echo "lagless-proxy, \`eventual\`, 3 members" ;;
    strict) echo "lagless-proxy, \`strict\` (the default), 3 members" ;;
    strict-replicas) echo "lagless-proxy, \`strict\`, 3 members, \`--cheap-reads-on-primary 0\`" ;;
    *-1t) echo "$(label "${1%-1t}"), \`--worker-threads 1\`" ;;
    *-loops) echo "$(label "${1%-loops}"), \`--scheduler loops\`" ;;
    before-*) echo "before: $(label "${1#before-}" | sed 's/^lagless-proxy, //')" ;;
  esac
}
echo "## $(date -u +%Y-%m-%d) — the cost of a hop (\`bench/proxy.sh $ROUNDS $SECS\`, $(nproc) cores, 3 members, medians of $ROUNDS rounds)"
echo
for workload in $WORKLOADS; do
  for threads in $THREAD_COUNTS; do
    d=$(echo "${TPS[$workload/$threads/direct]:-}" | median)
    h=$(echo "${TPS[$workload/$threads/haproxy]:-}" | median)
    echo "### $workload, $threads threads"
    echo
    echo "| path | tps | queries/s | × direct | × HAProxy | p95 ms | hop CPU µs per query | statements on replicas |"
    echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
    for path in $PATHS; do
      k="$workload/$threads/$path"
      awk -v l="$(label "$path")" -v t="$(echo "${TPS[$k]}" | median)" -v q="$(echo "${QPS[$k]}" | median)" \
        -v p="$(echo "${P95[$k]}" | median)" -v c="$(echo "${CPU[$k]}" | median)" \
        -v s="$(echo "${SHARE[$k]}" | median)" -v d="${d:-0}" -v h="${h:-0}" 'BEGIN {
          printf "| %s | %.0f | %.0f | %s | %s | %.2f | %s | %s |\n", l, t, q,
            (d > 0 ? sprintf("%.2f", t / d) : "–"), (h > 0 ? sprintf("%.2f", t / h) : "–"), p,
            (c < 0 ? "–" : sprintf("%.1f", c)), (s < 0 ? "–" : sprintf("%.0f %%", s * 100))}'
    done
    echo
  done
done

# 1,000 idle clients, each logged in and then silent, on a fresh proxy that gives its backend
# connections back between statements (without multiplexing each session holds one, and the
# server allows far fewer than 1,000).
start_proxy idle "$PROXY" three strict $((P0 + 1100)) --multiplex on
sleep 1
python3 - "${PORT[idle]}" <<'PY' &
import sys, time, pymysql
conns = [pymysql.connect(host="127.0.0.1", port=int(sys.argv[1]), user="app", password="app-pass", database="app") for _ in range(1000)]
print("opened", len(conns), file=sys.stderr, flush=True)
time.sleep(30)
PY
IDLE_PID=$!
for _ in $(seq 120); do
  n=$(ls "/proc/${PID[idle]}/fd" 2>/dev/null | wc -l)
  [ "$n" -ge 1000 ] && break
  sleep 0.5
done
sleep 2
RSS_KB=$(awk '/VmRSS/ {print $2}' "/proc/${PID[idle]}/status")
FDS=$(ls "/proc/${PID[idle]}/fd" | wc -l)
kill $IDLE_PID 2>/dev/null || true
echo "Proxy RSS with 1,000 idle client connections (\`--multiplex on\`): $((RSS_KB / 1024)) MiB ($FDS open descriptors)."
