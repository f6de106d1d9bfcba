#!/usr/bin/env bash
# Seeding speed: fill a 2-member cluster with about SIZE_MB of data, seed a new data directory
# from the replica with the operator's seeding code (mariadb-backup stream), start a server on
# the copy and compare CHECKSUM TABLE with the primary.
#
#   bench/seed.sh [SIZE_MB]        (default 1100)
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MB=${1:-1100}
WORK=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; rm -rf "$WORK"' EXIT
cargo build --release --quiet -p lagless-tests -p lagless-operator --example seed
./target/release/lagless-kit --members 2 >"$WORK/cluster.out" 2>&1 &
for _ in $(seq 100); do grep -q "Press Ctrl-C" "$WORK/cluster.out" && break; sleep 0.1; done
mapfile -t PORTS < <(grep -oP '127\.0\.0\.1:\K[0-9]+(?=\s+server_id)' "$WORK/cluster.out")
DIR=$(grep -oP 'up in \S+ \(\K[^)]+' "$WORK/cluster.out")
SQL=(mariadb --no-defaults -h127.0.0.1 -ulagless_admin -padmin-pass)
"${SQL[@]}" -P"${PORTS[0]}" app -e "CREATE TABLE fill (id INT PRIMARY KEY AUTO_INCREMENT, b LONGBLOB) ENGINE=InnoDB"
# 1 MiB rows, inserted in batches.
rows=0
while [ "$rows" -lt "$SIZE_MB" ]; do
  "${SQL[@]}" -P"${PORTS[0]}" app -e "INSERT INTO fill (b) SELECT REPEAT(MD5(RAND()), 32768) FROM seq_1_to_50"
  rows=$((rows + 50))
done
HEAD=$("${SQL[@]}" -P"${PORTS[0]}" -N -e "SELECT @@gtid_binlog_pos")
"${SQL[@]}" -P"${PORTS[1]}" -N -e "SELECT MASTER_GTID_WAIT('$HEAD', 600)" >/dev/null
echo "filled: $("${SQL[@]}" -P"${PORTS[0]}" -N -e "SELECT COUNT(*) FROM app.fill") rows of 1 MiB" >&2

RESULT=$(./target/release/examples/seed 127.0.0.1 "${PORTS[1]}" "$DIR/m1/data" "$WORK/seeded" lagless_admin admin-pass)
echo "$RESULT" >&2
# A server on the copy; its table must match the primary's.
PORT=$((PORTS[0] + 3000))
USER_ARG=""; [ "$(id -u)" -eq 0 ] && USER_ARG="--user=root"
/usr/sbin/mariadbd --no-defaults --datadir="$WORK/seeded" --port="$PORT" --bind-address=127.0.0.1 \
  --socket="$WORK/seeded.sock" --skip-log-bin --innodb-log-file-size=16M $USER_ARG \
  --log-error="$WORK/seeded.err" --pid-file="$WORK/seeded.pid" &
for _ in $(seq 100); do "${SQL[@]}" -P"$PORT" -e "SELECT 1" >/dev/null 2>&1 && break; sleep 0.2; done
A=$("${SQL[@]}" -P"${PORTS[0]}" -N -e "CHECKSUM TABLE app.fill" | awk '{print $2}')
B=$("${SQL[@]}" -P"$PORT" -N -e "CHECKSUM TABLE app.fill" | awk '{print $2}')
echo "## $(date -u +%Y-%m-%d) — seeding (\`bench/seed.sh $SIZE_MB\`)"
echo
echo "- $RESULT"
if [ "$A" = "$B" ]; then echo "- CHECKSUM TABLE app.fill matches the primary ($A)"; else echo "- CHECKSUM MISMATCH: primary $A, copy $B"; exit 1; fi
