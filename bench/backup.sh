#!/usr/bin/env bash
# Backup and restore speed through an S3-compatible server: fill a 2-member local cluster with
# about SIZE_MB of data (hex text: it compresses about 2:1, as text columns do), back it up
# to moto in server mode on loopback (`lagless-operator local backup`), restore it into a new
# one-member cluster (`local restore`) and compare CHECKSUM TABLE. Prints MB/s of the
# uncompressed stream for each direction, and the backup's speed to a local directory too.
# moto keeps objects in its own (Python) process, so the S3 figures are a floor for a real
# object store.
#
#   bench/backup.sh [SIZE_MB]        (default 1024; LAGLESS_BIN=path skips the release build)
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE_MB=${1:-1024}
WORK=$(mktemp -d)
BIN=${LAGLESS_BIN:-}
if [ -z "$BIN" ]; then
  cargo build --release --quiet -p lagless-operator
  BIN=./target/release/lagless-operator
fi
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
S3_PORT=$(free_port)
cleanup() {
  for d in "$WORK/src" "$WORK/dst"; do
    [ -d "$d" ] && "$BIN" local --state-dir "$d" down >/dev/null 2>&1 || true
  done
  kill $(jobs -p) 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
python3 -m moto.server -H 127.0.0.1 -p "$S3_PORT" >"$WORK/moto.log" 2>&1 &
ENDPOINT="http://127.0.0.1:$S3_PORT"
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$S3_PORT") 2>/dev/null && break; sleep 0.1; done
printf 'AWS_ACCESS_KEY_ID=bench\nAWS_SECRET_ACCESS_KEY=bench\n' >"$WORK/s3.env"
python3 -c "import boto3; boto3.client('s3', endpoint_url='$ENDPOINT', region_name='us-east-1', aws_access_key_id='bench', aws_secret_access_key='bench').create_bucket(Bucket='bench')"
S3=(--s3-endpoint "$ENDPOINT" --s3-credentials "$WORK/s3.env")

cluster() {
  printf 'apiVersion: lagless.dev/v1alpha1\nkind: MySQLCluster\nmetadata:\n  name: %s\nspec:\n  replicas: %s\n  proxy:\n    replicas: 1\n' "$1" "$2"
}
cluster bsrc 2 >"$WORK/src.yaml"
cluster bdst 1 >"$WORK/dst.yaml"
"$BIN" local --state-dir "$WORK/src" up -f "$WORK/src.yaml" --detach --base-port 23400 --proxy-port 23500 >/dev/null
cred() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$1/credentials.json" "$2"; }
SQL=(mariadb --no-defaults -h127.0.0.1 -u"$(cred "$WORK/src" admin_user)" -p"$(cred "$WORK/src" admin_password)")
PRIMARY=$("$BIN" local --state-dir "$WORK/src" status --output json | python3 -c 'import json,sys; s=json.load(sys.stdin); print(next(m["port"] for m in s["members"] if m["role"]=="primary"))')
"${SQL[@]}" -P"$PRIMARY" -e "CREATE TABLE app.fill (id INT PRIMARY KEY AUTO_INCREMENT, b TEXT) ENGINE=InnoDB"
# 100 MiB a statement: 51,200 rows of 2 KiB.
for _ in $(seq $(((SIZE_MB + 99) / 100))); do
  "${SQL[@]}" -P"$PRIMARY" app -e "INSERT INTO fill (b) SELECT HEX(RANDOM_BYTES(1024)) FROM seq_1_to_51200"
done
echo "filled: $("${SQL[@]}" -P"$PRIMARY" -N -e "SELECT ROUND(SUM(LENGTH(b))/1048576) FROM app.fill") MiB in app.fill" >&2

BACKUP=$("$BIN" local --state-dir "$WORK/src" backup --to s3://bench/bsrc "${S3[@]}")
echo "$BACKUP" >&2
# The same backup to a local directory: the pipeline's own speed, without moto's.
DIR_BACKUP=$("$BIN" local --state-dir "$WORK/src" backup --to "$WORK/dirbackup")
echo "$DIR_BACKUP" >&2
STREAM_BYTES=$("$BIN" local backups --from s3://bench/bsrc "${S3[@]}" --output json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["streamBytes"])')
began=$(date +%s.%N)
"$BIN" local --state-dir "$WORK/dst" restore --from s3://bench/bsrc -f "$WORK/dst.yaml" --detach \
  --base-port 23600 --proxy-port 23700 "${S3[@]}" >"$WORK/restore.out"
ended=$(date +%s.%N)
RESTORED=$(grep -o 'restored backup.*' "$WORK/restore.out")
A=$("${SQL[@]}" -P"$PRIMARY" -N -e "CHECKSUM TABLE app.fill" | awk '{print $2}')
DSQL=(mariadb --no-defaults -h127.0.0.1 -u"$(cred "$WORK/dst" admin_user)" -p"$(cred "$WORK/dst" admin_password)")
B=$("${DSQL[@]}" -P23600 -N -e "CHECKSUM TABLE app.fill" | awk '{print $2}')
RESTORE_S=$(python3 -c "print(round($ended - $began, 1))")
echo "## $(date -u +%Y-%m-%d) — backup and restore through S3 (\`bench/backup.sh $SIZE_MB\`)"
echo
echo "- backup to S3 (moto): ${BACKUP#backup }"
echo "- the same to a directory: ${DIR_BACKUP#backup }"
echo "- restore (fetch, check, extract, prepare, start): $RESTORED; the whole command $RESTORE_S s, $(python3 -c "print(round($STREAM_BYTES / 1e6 / ($ended - $began)))") MB/s of the stream"
if [ "$A" = "$B" ]; then echo "- CHECKSUM TABLE app.fill matches the source ($A)"; else echo "- CHECKSUM MISMATCH: source $A, restored $B"; exit 1; fi
