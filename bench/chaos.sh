#!/usr/bin/env bash
# Chaos soak: operator/tests/it/chaos.rs for longer. Three members and two proxies, each in a
# network namespace of its own, a write load and strict readers through the proxies, first
# QUIET minutes without faults (a failover then fails the run), then faults one after another
# for MINUTES: the orchestrator cut off from a live primary, SIGSTOP of the primary, the
# primary isolated, the primary cut off from its replicas, kill -9 of the primary in the middle
# of a switchover, the topology document deleted. The run fails on any acknowledged write lost
# or any stale strict read. Needs root (namespaces). LAGLESS_CHAOS_FAULTS=2,2,2 (fault numbers in
# that order: 0 to 5 as listed above) replaces the first round of one of each.
#
#   bench/chaos.sh [MINUTES] [QUIET_MINUTES]        (default 30 and 10)
set -euo pipefail
cd "$(dirname "$0")/.."
MINUTES=${1:-30}
QUIET=${2:-10}
OUT=$(mktemp)
trap 'rm -f "$OUT"' EXIT
started=$(date +%s)
LAGLESS_CHAOS_SECONDS=$((MINUTES * 60)) LAGLESS_CHAOS_QUIET_SECONDS=$((QUIET * 60)) \
  cargo test -q -p lagless-operator --test it -- --nocapture \
  chaos::faults_between_machines_lose_no_acknowledged_write_and_serve_no_stale_read 2>&1 |
  grep -E "^chaos: |test result|panicked" | tee "$OUT" >&2
took=$(( $(date +%s) - started ))
summary=$(grep -E "^chaos: [0-9]+ faults" "$OUT" | tail -1)
faults=$(grep -oP '^chaos: \K[0-9]+(?= faults)' <<<"$summary")
ms() { awk '{ v=$1; sub(/s$/,"",v); if (v ~ /m$/) { sub(/m$/,"",v); v/=1000 } print v*1000 }'; }
stats() { sort -g | awk '{a[NR]=$1} END { if (NR) printf "median %.0f ms, max %.0f ms over %d", a[int((NR+1)/2)], a[NR], NR; else printf "none" }'; }
echo "## $(date -u +%Y-%m-%d) — chaos soak (\`bench/chaos.sh $MINUTES $QUIET\`)"
echo
echo "- $QUIET min of load without faults, then $MINUTES min of faults; $faults faults in ${took} s in all"
echo "- by kind: $(grep -oP '^chaos: \K[a-zA-Z0-9 -]+(?= \(epoch)' "$OUT" | sort | uniq -c | awk '{n=$1; $1=""; printf "%s%s ×%d", sep, substr($0,2), n; sep="; "}')"
echo "- SIGSTOPped primary replaced after: $(grep -oP 'paused primary replaced after \K\S+' "$OUT" | ms | stats)"
echo "- isolated primary replaced after: $(grep -oP 'isolated primary replaced after \K\S+' "$OUT" | ms | stats)"
echo "- totals: ${summary#chaos: }"
grep -q "test result: ok" "$OUT"
