#!/usr/bin/env bash
# Starts the cluster in examples/mysqlcluster.yaml on this machine with `lagless-operator local
# up`: three mariadbd processes, two lagless-proxy processes, the orchestration driving them. It
# prints how to connect, then a live status view; Ctrl-C stops it (the data is kept).
#
#   scripts/demo.sh                      # foreground, examples/mysqlcluster.yaml
#   scripts/demo.sh --detach             # in the background; `lagless-operator local down` stops it
#   scripts/demo.sh -f my-cluster.yaml   # any MySQLCluster file; other `local up` options pass through
set -euo pipefail
cd "$(dirname "$0")/.."
LAGLESS_SETUP=run source scripts/setup.sh
cargo build --quiet --release --locked -p lagless-operator
mkdir -p target/bin
ln -sf ../release/lagless-operator target/bin/lagless-operator
case " $* " in
  *" -f "* | *" --file "* | *" --file="*) args=("$@") ;;
  *) args=(-f examples/mysqlcluster.yaml "$@") ;;
esac
echo "(lagless-operator is at $(pwd)/target/bin; add it to PATH for the commands below:"
echo "   export PATH=\"$(pwd)/target/bin:\$PATH\")"
exec ./target/release/lagless-operator local up "${args[@]}"
