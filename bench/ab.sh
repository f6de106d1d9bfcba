#!/usr/bin/env bash
# Two builds of lagless-proxy side by side: is a change slower? Both proxies front the same
# one-member cluster and take turns (A, B, A, B, ...), so drift on the machine hits both alike;
# sysbench throughput and each proxy's CPU per query (utime+stime of its process over the run,
# divided by the queries) are reported as medians.
#
#   bench/ab.sh PROXY_A PROXY_B [ROUNDS] [SECONDS]      (defaults: 5 rounds of 10 s per run)
#
# Build the older side in a worktree, e.g.
#   git worktree add /tmp/lagless-old <rev>
#   (cd /tmp/lagless-old && CARGO_TARGET_DIR=/tmp/old-target cargo build --release -p lagless-proxy)
#   cargo build --release -p lagless-proxy -p lagless-tests
#   bench/ab.sh /tmp/old-target/release/lagless-proxy target/release/lagless-proxy
# Prints a Markdown section; append it to bench/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
A=${1:?usage: bench/ab.sh PROXY_A PROXY_B [ROUNDS] [SECONDS]}
B=${2:?usage: bench/ab.sh PROXY_A PROXY_B [ROUNDS] [SECONDS]}
ROUNDS=${3:-5}
SECONDS_PER_RUN=${4:-10}
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"' EXIT

[ -x target/release/lagless-kit ] || cargo build --release --quiet -p lagless-tests
./target/release/lagless-kit --members 1 >"$WORK/cluster.out" 2>&1 &
for _ in $(seq 100); do grep -q "primary" "$WORK/cluster.out" && break; sleep 0.1; done
DB_PORT=$(grep -oP 'primary\s+127\.0\.0\.1:\K[0-9]+' "$WORK/cluster.out")

cat >"$WORK/topology.json" <<JSON
{"cluster":"bench","flavor":"mariadb","epoch":1,"state":"ready",
 "primary":{"name":"m0","host":"127.0.0.1","port":$DB_PORT},"replicas":[]}
JSON
echo '{"users":[{"user":"app","password":"app-pass"}]}' >"$WORK/users.json"
declare -A PORT PID
PORT[A]=$((DB_PORT + 1000)); PORT[B]=$((DB_PORT + 2000))
for side in A B; do
  bin=$A; [ "$side" = B ] && bin=$B
  "$bin" --topology "$WORK/topology.json" --users "$WORK/users.json" \
    --listen "127.0.0.1:${PORT[$side]}" --log warn &
  PID[$side]=$!
done
sleep 1

SB=(sysbench --db-driver=mysql --mysql-host=127.0.0.1 --mysql-user=app --mysql-password=app-pass
    --mysql-db=app --tables=4 --table-size=10000 --threads=8 --time="$SECONDS_PER_RUN"
    --report-interval=0)
"${SB[@]}" --mysql-port="$DB_PORT" oltp_read_only prepare >/dev/null

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
run() { # side workload -> "tps queries cpu_us_per_query"
  local before after out
  before=$(cpu_ticks "${PID[$1]}")
  out=$("${SB[@]}" --mysql-port="${PORT[$1]}" "$2" run)
  after=$(cpu_ticks "${PID[$1]}")
  awk -v b="$before" -v a="$after" -v hz="$(getconf CLK_TCK)" '
    /transactions:/ {gsub(/[()]/,"",$3); tps=$3}
    /queries:/ && !q {q=$2}
    END {printf "%s %s %.1f\n", tps, q, (a-b)/hz*1e6/q}' <<<"$out"
}

declare -A TPS CPU
for round in $(seq "$ROUNDS"); do
  for workload in oltp_point_select oltp_read_only; do
    for side in A B; do
      read -r tps queries cpu < <(run "$side" "$workload")
      TPS[$workload/$side]="${TPS[$workload/$side]:-} $tps"
      CPU[$workload/$side]="${CPU[$workload/$side]:-} $cpu"
      echo "round $round $workload $side: $tps tps, $cpu µs CPU per query ($queries queries)" >&2
    done
  done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
echo "## $(date -u +%Y-%m-%d) — A/B of two proxy builds (\`bench/ab.sh\`, $(nproc) cores, ${ROUNDS} rounds × ${SECONDS_PER_RUN} s, 8 threads, medians)"
echo
echo "A: \`$A\`; B: \`$B\`."
echo
echo "| workload | A tps | B tps | B / A | A CPU µs/query | B CPU µs/query |"
echo "| --- | --- | --- | --- | --- | --- |"
for workload in oltp_point_select oltp_read_only; do
  ta=$(echo "${TPS[$workload/A]}" | median); tb=$(echo "${TPS[$workload/B]}" | median)
  ca=$(echo "${CPU[$workload/A]}" | median); cb=$(echo "${CPU[$workload/B]}" | median)
  awk -v w="$workload" -v ta="$ta" -v tb="$tb" -v ca="$ca" -v cb="$cb" \
    'BEGIN {printf "| %s | %.0f | %.0f | %.3f | %.1f | %.1f |\n", w, ta, tb, tb/ta, ca, cb}'
done
