#!/usr/bin/env bash
# Starts a local 3-member MariaDB replication cluster with lagless-proxy in front and prints how
# to connect. Options: --members N, --port PROXY_PORT (default 6033), --no-proxy.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup.sh
cargo run --quiet --release --locked -p lagless-tests --bin lagless-demo -- "$@"
