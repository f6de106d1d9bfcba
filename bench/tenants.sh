#!/usr/bin/env bash
# What routing by tenant costs, what a large directory costs, and how fast a directory change
# reaches the proxies.
#
#   bench/tenants.sh [ROUNDS] [SECONDS] [TENANTS]      (defaults: 5 rounds of 10 s, 100000 tenants)
#
# Two one-member test-kit clusters: a directory (global) cluster D and a tenant cluster T.
#   A: lagless-proxy in front of T alone (one cluster, no tenants).
#   B: lagless-proxy with the pool document, sysbench's database `t_bench` being a tenant on T:
#      every statement is routed by tenant (cache hits).
# A and B take turns (A, B, A, B, ...): sysbench oltp_point_select at 8 threads (throughput,
# CPU per query of each proxy) and at 1 thread (the mean latency, 1 s / tps, whose difference is
# the time routing adds to a query; sysbench's own latency figures have a 10 µs resolution). Then TENANTS rows
# are added to the directory and each is looked up once through B (its resident memory before
# and after), and 50 route changes are timed until both B and a second pool proxy C have
# applied them (their admin /topology shows the change log position).
# Needs: cargo, sysbench, mariadb client, curl. Prints a Markdown section for bench/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${1:-5}
SECONDS_PER_RUN=${2:-10}
TENANTS=${3:-100000}
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"' EXIT

cargo build --release --quiet -p lagless-proxy -p lagless-tests -p lagless-operator
PROXY=target/release/lagless-proxy

# Started here, not in a command substitution, so that the exit trap stops them.
./target/release/lagless-kit --members 1 >"$WORK/directory.out" 2>&1 &
./target/release/lagless-kit --members 1 >"$WORK/tenants.out" 2>&1 &
port_of() { # name -> port of its primary
  for _ in $(seq 200); do grep -q "primary" "$WORK/$1.out" && break; sleep 0.1; done
  grep -oP 'primary\s+127\.0\.0\.1:\K[0-9]+' "$WORK/$1.out"
}
D_PORT=$(port_of directory)
T_PORT=$(port_of tenants)
topology() { # name port
  cat <<JSON
{"cluster":"$1","flavor":"mariadb","epoch":1,"state":"ready",
 "primary":{"name":"$1-0","host":"127.0.0.1","port":$2},"replicas":[]}
JSON
}
topology directory "$D_PORT" >"$WORK/directory.json"
topology tenants "$T_PORT" >"$WORK/tenants.json"
cat >"$WORK/pool.json" <<JSON
{"pool":"bench","directory":"directory","tenantDatabase":"t_{id}",
 "clusters":[{"name":"tenants","topology":"tenants.json"}]}
JSON
echo '{"users":[{"user":"app","password":"app-pass"}]}' >"$WORK/users.json"

ADMIN=(-h127.0.0.1 -ulagless_admin -padmin-pass)
mariadb "${ADMIN[@]}" -P"$D_PORT" < <(target/release/lagless-operator tenant schema)
mariadb "${ADMIN[@]}" -P"$D_PORT" -e "INSERT INTO lagless_directory.clusters
  (name, state, capacity_bytes, write_capacity) VALUES ('tenants', 'open', 1099511627776, 100000)"

declare -A PORT PID ADMIN_PORT
PORT[A]=$((T_PORT + 1000)); PORT[B]=$((T_PORT + 2000)); PORT[C]=$((T_PORT + 3000))
"$PROXY" --topology "$WORK/tenants.json" --users "$WORK/users.json" \
  --listen "127.0.0.1:${PORT[A]}" --log warn &
PID[A]=$!
for side in B C; do
  ADMIN_PORT[$side]=$((PORT[$side] + 1))
  "$PROXY" --topology "$WORK/directory.json" --pool "$WORK/pool.json" --users "$WORK/users.json" \
    --directory-user lagless_admin --directory-password admin-pass \
    --listen "127.0.0.1:${PORT[$side]}" --admin-listen "127.0.0.1:${ADMIN_PORT[$side]}" --log warn &
  PID[$side]=$!
done
sleep 1
mariadb -h127.0.0.1 -uapp -papp-pass -P"${PORT[B]}" -e "CREATE DATABASE t_bench"

SB=(sysbench --db-driver=mysql --mysql-host=127.0.0.1 --mysql-user=app --mysql-password=app-pass
    --mysql-db=t_bench --tables=4 --table-size=10000 --time="$SECONDS_PER_RUN" --report-interval=0)
"${SB[@]}" --threads=4 --mysql-port="$T_PORT" oltp_point_select prepare >/dev/null

cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
run() { # side threads -> "tps cpu_us_per_query mean_latency_us"
  local before after out
  before=$(cpu_ticks "${PID[$1]}")
  out=$("${SB[@]}" --threads="$2" --mysql-port="${PORT[$1]}" oltp_point_select run)
  after=$(cpu_ticks "${PID[$1]}")
  awk -v b="$before" -v a="$after" -v hz="$(getconf CLK_TCK)" '
    /transactions:/ {gsub(/[()]/,"",$3); tps=$3}
    /queries:/ && !q {q=$2}
    END {printf "%s %.1f %.1f\n", tps, (a-b)/hz*1e6/q, 1e6/tps}' <<<"$out"
}

declare -A TPS CPU LAT
for round in $(seq "$ROUNDS"); do
  for side in A B; do
    read -r tps cpu _ < <(run "$side" 8)
    TPS[$side]="${TPS[$side]:-} $tps"; CPU[$side]="${CPU[$side]:-} $cpu"
    read -r _ _ lat < <(run "$side" 1)
    LAT[$side]="${LAT[$side]:-} $lat"
    echo "round $round $side: $tps tps, $cpu µs CPU per query, 1-thread mean $lat µs" >&2
  done
done
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
RSS_BEFORE=$(rss_kib "${PID[B]}")
mariadb "${ADMIN[@]}" -P"$D_PORT" -D lagless_directory -e "INSERT INTO tenants (tenant_id, cluster,
  version, state) SELECT CONCAT('x', seq), 'tenants', 1, 'active' FROM seq_1_to_$TENANTS"
seq 1 "$TENANTS" | awk '{print "/* lagless tenant=x" $1 " */ DO 1;"}' >"$WORK/touch.sql"
T0=$(date +%s%N)
mariadb --comments -h127.0.0.1 -uapp -papp-pass -P"${PORT[B]}" <"$WORK/touch.sql"
T1=$(date +%s%N)
RSS_AFTER=$(rss_kib "${PID[B]}")
CACHED=$(curl -s "127.0.0.1:${ADMIN_PORT[B]}/topology" | grep -oP '"cachedTenants":\K[0-9]+')

# Route changes: a version bump of tenant `probe`, cached by both pool proxies, each timed
# from its commit until both proxies have applied it.
mariadb "${ADMIN[@]}" -P"$D_PORT" -e "INSERT INTO lagless_directory.tenants (tenant_id, cluster,
  version, state) VALUES ('probe', 'tenants', 1, 'active')"
for side in B C; do
  mariadb --comments -h127.0.0.1 -uapp -papp-pass -P"${PORT[$side]}" -e "/* lagless tenant=probe */ DO 1"
done
followed() { curl -s "127.0.0.1:${ADMIN_PORT[$1]}/topology" | grep -oP '"followedSeq":\K[0-9]+'; }
DELAYS=""
for _ in $(seq 50); do
  seq_no=$(mariadb "${ADMIN[@]}" -P"$D_PORT" -N -e "BEGIN;
    SELECT id FROM lagless_directory.change_lock WHERE id = 1 FOR UPDATE;
    UPDATE lagless_directory.tenants SET version = version + 1 WHERE tenant_id = 'probe';
    INSERT INTO lagless_directory.changes (tenant_id, cluster, version, state)
      SELECT tenant_id, cluster, version, state FROM lagless_directory.tenants WHERE tenant_id = 'probe';
    SELECT LAST_INSERT_ID(); COMMIT;" | tail -1)
  start=$(date +%s%N)
  for side in B C; do
    until [ "$(followed "$side")" -ge "$seq_no" ]; do :; done
  done
  DELAYS="$DELAYS $(( ($(date +%s%N) - start) / 1000000 ))"
  sleep 0.$((RANDOM % 90 + 10))
done
percentile() { tr ' ' '\n' | grep -v '^$' | sort -g | awk -v p="$1" '{a[NR]=$1} END {i=int(NR*p+0.999); if (i<1) i=1; print a[i]}'; }

ta=$(echo "${TPS[A]}" | median); tb=$(echo "${TPS[B]}" | median)
ca=$(echo "${CPU[A]}" | median); cb=$(echo "${CPU[B]}" | median)
la=$(echo "${LAT[A]}" | median); lb=$(echo "${LAT[B]}" | median)
echo "## $(date -u +%Y-%m-%d) — tenant routing (\`bench/tenants.sh $ROUNDS $SECONDS_PER_RUN $TENANTS\`, $(nproc) cores, medians)"
echo
echo "A: one cluster, no tenants. B: the same cluster as a tenant cluster of a pool; every statement routed by tenant (cache hits)."
echo
echo "| oltp_point_select | A | B | B / A |"
echo "| --- | --- | --- | --- |"
awk -v a="$ta" -v b="$tb" 'BEGIN {printf "| tps, 8 threads | %.0f | %.0f | %.3f |\n", a, b, b/a}'
awk -v a="$ca" -v b="$cb" 'BEGIN {printf "| proxy CPU µs per query | %.1f | %.1f | %+.1f µs |\n", a, b, b-a}'
awk -v a="$la" -v b="$lb" 'BEGIN {printf "| mean latency, 1 thread (µs) | %.0f | %.0f | %+.1f µs |\n", a, b, b-a}'
echo
awk -v t="$TENANTS" -v c="$CACHED" -v r0="$RSS_BEFORE" -v r1="$RSS_AFTER" -v ms="$(( (T1 - T0) / 1000000 ))" 'BEGIN {
  printf "Directory of %d tenants, each looked up once through B (%d cached): resident memory %.1f MiB before, %.1f MiB after (%.0f bytes per tenant); %.0f µs per statement with a directory read.\n",
    t, c, r0/1024, r1/1024, (r1-r0)*1024/t, ms*1000/t }'
echo
echo "A directory change reaching both pool proxies (50 changes, from the commit until both have applied it): p50 $(echo "$DELAYS" | percentile 0.5) ms, p99 $(echo "$DELAYS" | percentile 0.99) ms, max $(echo "$DELAYS" | percentile 1) ms."
