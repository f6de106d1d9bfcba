#!/usr/bin/env bash
# Transactions on replicas: sysbench through a `strict` proxy with optimistic transactions on
# (the default: a plain BEGIN starts on a replica, moves to the primary at its first write)
# and off (every transaction on the primary), and directly to the primary. oltp_read_only with
# its BEGIN … COMMIT (the reads of a transaction), and oltp_read_write (transactions that
# write: what the attempt costs them). A 3-member cluster, alternating runs, medians.
#
#   bench/transactions.sh [ROUNDS] [SECONDS]        (defaults: 3 rounds of 10 s; THREADS=8)
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-3}
SECS=${2:-10}
THREADS=${THREADS:-8}
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"' EXIT

cargo build --release --quiet -p lagless-proxy
cargo build --release --quiet -p lagless-tests --bin lagless-kit
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
start_proxy() { # port optimistic
  ./target/release/lagless-proxy --topology "$WORK/topology.json" --users "$WORK/users.json" \
    --lookup-user lagless_admin --lookup-password admin-pass --consistency strict \
    --optimistic-transactions "$2" \
    --listen "127.0.0.1:$1" --admin-listen "127.0.0.1:$(($1 + 1))" --log warn &
}
ON=$((P0 + 1000)); OFF=$((P0 + 1010))
start_proxy "$ON" on
start_proxy "$OFF" off
sleep 1

SB=(sysbench --db-driver=mysql --mysql-host=127.0.0.1 --mysql-user=app --mysql-password=app-pass
    --mysql-db=app --tables=4 --table-size=10000 --percentile=95 --threads="$THREADS")
"${SB[@]}" --mysql-port="$P0" oltp_read_write prepare >/dev/null
sleep 2
run() { # port workload
  "${SB[@]}" --mysql-port="$1" --time="$SECS" "$2" run |
    awk '/transactions:/ {gsub(/[()]/,"",$3); tps=$3} /95th percentile:/ {p95=$3} END {print tps, p95}'
}
# Statements the proxy on `port` ran on replicas and in all, so far.
statements() {
  curl -s "127.0.0.1:$(($1 + 1))/metrics" |
    awk '/^lagless_statements_total/ {all+=$2; if ($0 ~ /route="replica"/) r+=$2} END {print r+0, all+0}'
}
declare -A TPS SHARE
for round in $(seq "$ROUNDS"); do
  for workload in oltp_read_only oltp_read_write; do
    for path in direct on off; do
      case $path in direct) port=$P0 ;; on) port=$ON ;; off) port=$OFF ;; esac
      [ "$path" != direct ] && read -r r0 a0 < <(statements "$port")
      read -r tps p95 < <(run "$port" "$workload")
      if [ "$path" != direct ]; then
        read -r r1 a1 < <(statements "$port")
        SHARE[$workload/$path]=$(awk -v r=$((r1 - r0)) -v a=$((a1 - a0)) 'BEGIN {printf "%.0f %%", a ? 100 * r / a : 0}')
      fi
      TPS[$workload/$path]="${TPS[$workload/$path]:-} $tps"
      echo "round $round $workload $path: $tps tps, p95 $p95 ms" >&2
    done
  done
done
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
moves=$(curl -s "127.0.0.1:$((ON + 1))/metrics" | awk '/^lagless_optimistic_moves_total/ {print}' | tr '\n' ' ')
echo "## $(date -u +%Y-%m-%d) — transactions on replicas (\`bench/transactions.sh $ROUNDS $SECS\`, $(nproc) cores, 3 members, $THREADS threads, strict, medians)"
echo
echo "| workload | direct to primary tps | optimistic on tps | off tps | on / off | on / direct | statements on replicas (on / off, last round) |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
for workload in oltp_read_only oltp_read_write; do
  d=$(echo "${TPS[$workload/direct]}" | median); on=$(echo "${TPS[$workload/on]}" | median); off=$(echo "${TPS[$workload/off]}" | median)
  awk -v w="$workload" -v d="$d" -v on="$on" -v off="$off" -v s1="${SHARE[$workload/on]}" -v s2="${SHARE[$workload/off]}" \
    'BEGIN {printf "| %s | %.0f | %.0f | %.0f | %.2f | %.2f | %s / %s |\n", w, d, on, off, on/off, on/d, s1, s2}'
done
echo
echo "Optimistic moves (proxy with it on, whole run): ${moves:-none}"
