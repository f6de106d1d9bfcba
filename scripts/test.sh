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
# for the API server tests' etcd and kube-apiserver) is gone; a demo cluster running in
# another terminal is not ours to judge.
leftover=""
while read -r pid cmd; do
  owner=$(grep -oP 'lagless-(kit|kube)-\K[0-9]+' <<<"$cmd" | head -1)
  if [ -n "$owner" ] && ! kill -0 "$owner" 2>/dev/null; then leftover+="$pid $cmd"$'\n'; fi
done < <(pgrep -af 'mariadbd.*lagless-kit-|(etcd|kube-apiserver).*lagless-kube-' || true)
if [ -n "$leftover" ]; then
  echo "test: servers were left running by finished tests:" >&2
  echo "$leftover" >&2
  exit 1
fi
echo "test: no mariadbd, etcd or kube-apiserver left behind"
