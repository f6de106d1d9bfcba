#!/usr/bin/env bash
# The local runtime end to end, several runs of operator/tests/it/local.rs's main test: the
# `lagless-operator` binary starts a 3-member semi-sync cluster with a proxy, a writer and a
# strict reader run through the proxy, the primary is SIGKILLed, re-seeded, a member is added
# (seeded), a switchover is made, and everything is stopped.
#
#   bench/local.sh [RUNS]        (default 3)
#
# Reports `up` time (template included on each run: every run uses a new state directory),
# failover time (from `local kill` of the primary until writes through the proxy are
# acknowledged again), writes that failed, strict reads and stale reads.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-3}
OUT=$(mktemp)
trap 'rm -f "$OUT"' EXIT
for _ in $(seq "$RUNS"); do
  cargo test -q -p lagless-operator --test it -- --nocapture \
    local::up_failover_scale_switchover_down_without_a_stale_read 2>&1 |
    grep -E "^up [0-9]" | tee -a "$OUT" >&2
done
stats() { sort -g | awk '{a[NR]=$1} END {printf "median %.2f s, max %.2f s over %d runs", a[int((NR+1)/2)], a[NR], NR}'; }
echo "## $(date -u +%Y-%m-%d) — local runtime end to end (\`bench/local.sh $RUNS\`)"
echo
echo "- \`local up --detach\` until the banner: $(grep -oP '^up \K[0-9.]+' "$OUT" | stats)"
echo "- \`local kill\` of the primary until writes are acknowledged again: $(grep -oP 'failover .*?\) \K[0-9.]+' "$OUT" | stats)"
echo "- writes that failed (and were retried): $(grep -oP '\(\K[0-9]+(?= failed)' "$OUT" | paste -sd, -); stale strict reads: $(grep -oP '[0-9]+(?= stale)' "$OUT" | paste -sd+ | bc)"
