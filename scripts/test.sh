#!/usr/bin/env bash
# The whole test suite: set-up, formatting, lints and every test against real mariadbd processes.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh

cargo fmt --all --check
cargo clippy --workspace --all-targets --locked -- -D warnings
cargo test --workspace --locked

# Every test ends the servers it started; prove it.
leftover=$(pgrep -af 'mariadbd.*lagless-kit-' || true)
if [ -n "$leftover" ]; then
  echo "test: mariadbd processes were left running:" >&2
  echo "$leftover" >&2
  exit 1
fi
