#!/usr/bin/env bash
# Starts a local 3-member MariaDB replication cluster and prints how to connect.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
cargo run --quiet --release --locked -p lagless-testkit --bin lagless-demo-cluster -- "$@"
