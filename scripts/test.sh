#!/usr/bin/env bash
# The whole test suite: set-up, formatting, lints and every test against real mariadbd processes.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

cargo fmt --all --check
# No module of any crate imports one that imports it back (directly or through others).
python3 scripts/module_cycles.py
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked

# Every test ends the servers it started; prove it. A server counts as left behind when the
# process that started it (its directory is lagless-kit-<pid>-..., or lagless-kube-<pid>-...
# for the API server tests' etcd, kube-apiserver and kube-controller-manager) is gone; a demo
# cluster running in another terminal is not ours to judge. The API server tests' node runs
# pods in network namespaces named lagless-kube-<pid>-n<node>-pod<n>: one left with a process in it
# counts too.
leftover=""
while read -r pid cmd; do
  owner=$(grep -oP 'lagless-(kit|kube)-\K[0-9]+' <<<"$cmd" | head -1)
  if [ -n "$owner" ] && ! kill -0 "$owner" 2>/dev/null; then leftover+="$pid $cmd"$'\n'; fi
done < <(pgrep -af 'mariadbd.*lagless-kit-|(etcd|kube-apiserver|kube-controller-manager).*lagless-kube-' || true)
while read -r ns _; do
  owner=$(grep -oP '^lagless-kube-\K[0-9]+' <<<"$ns" || true)
  if [ -n "$owner" ] && ! kill -0 "$owner" 2>/dev/null; then
    pids=$(ip netns pids "$ns" 2>/dev/null | tr '\n' ' ')
    if [ -n "$pids" ]; then leftover+="network namespace $ns: processes $pids"$'\n'; fi
  fi
done < <(ip netns list 2>/dev/null || true)
if [ -n "$leftover" ]; then
  echo "test: servers were left running by finished tests:" >&2
  echo "$leftover" >&2
  exit 1
fi
echo "test: no mariadbd, etcd, kube-apiserver, kube-controller-manager or pod left behind"
