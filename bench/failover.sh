#!/usr/bin/env bash
# Failover and switchover times on real mariadbd processes, over several runs of the
# orchestration tests (3 members, lagless-proxy in front, a steady writer through the proxy):
#  - kill -9 of the primary: time until the writer's writes are accepted again;
#  - planned switchover: client errors and the longest pause between two commits.
#
#   bench/failover.sh [RUNS]        (default 5)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-5}
OUT=$(mktemp)
trap 'rm -f "$OUT"' EXIT
for i in $(seq "$RUNS"); do
  cargo test -q -p lagless-operator --test it -- --nocapture \
    orchestrate::fails_over_when_the_primary_is_killed orchestrate::planned_switchover_under_load 2>&1 |
    grep -E "accepted again|switchover:" | sed "s/^[.]*//" | tee -a "$OUT" >&2
done
ms() { awk '{ v=$1; if (v ~ /ms$/) { sub(/ms$/,"",v) } else if (v ~ /µs$/) { sub(/µs$/,"",v); v/=1000 } else { sub(/s$/,"",v); v*=1000 } print v }'; }
stats() { sort -g | awk '{a[NR]=$1} END {printf "median %.0f ms, max %.0f ms over %d runs", a[int((NR+1)/2)], a[NR], NR}'; }
echo "## $(date -u +%Y-%m-%d) — failover and switchover (\`bench/failover.sh $RUNS\`)"
echo
echo "- kill -9 of the primary, writes accepted again through the proxy: $(grep -oP 'accepted again \K\S+' "$OUT" | ms | stats)"
echo "- planned switchover, longest write pause: $(grep -oP 'longest pause \K\S+' "$OUT" | ms | stats); client errors: $(grep -oP ', \K[0-9]+(?= errors)' "$OUT" | paste -sd+ | bc)"
