#!/usr/bin/env bash
# Binary log archive lag under a steady write rate: a 3-member local cluster archives its
# binary log (spec.backup.archiveBinlogs) to a directory or to moto (S3) on loopback, while
# one client commits RATE single-row transactions a second on the primary for SECONDS and
# notes, for each, its GTID (@@last_gtid) and the moment its commit was acknowledged. The
# lag of a transaction is when the segment holding it was stored (its manifest's
# storedUnixMs) minus that moment. Prints p50, p99 and the maximum for each destination.
#
#   bench/archive-lag.sh [RATE] [SECONDS]   (default 500 30; LAGLESS_BIN=path skips the build)
set -euo pipefail
cd "$(dirname "$0")/.."
RATE=${1:-500}
SECONDS_RUN=${2:-30}
WORK=$(mktemp -d)
BIN=${LAGLESS_BIN:-}
if [ -z "$BIN" ]; then
  cargo build --release --quiet -p lagless-operator
  BIN=./target/release/lagless-operator
fi
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
S3_PORT=$(free_port)
cleanup() {
  [ -d "$WORK/st" ] && "$BIN" local --state-dir "$WORK/st" down >/dev/null 2>&1 || true
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

run() { # run DESTINATION EXTRA_SPEC LABEL
  rm -rf "$WORK/st"
  printf 'apiVersion: lagless.dev/v1alpha1\nkind: MySQLCluster\nmetadata:\n  name: lag\nspec:\n  replicas: 3\n  proxy:\n    replicas: 1\n  backup:\n    destination: %s\n    archiveBinlogs: true\n%s' "$1" "$2" >"$WORK/c.yaml"
  "$BIN" local --state-dir "$WORK/st" up -f "$WORK/c.yaml" --detach --base-port 23800 --proxy-port 23900 >/dev/null
  python3 - "$WORK/st" "$RATE" "$SECONDS_RUN" "$WORK/acks.json" <<'EOF'
import json, sys, time, pymysql
state, rate, seconds, out = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
creds = json.load(open(f"{state}/credentials.json"))
status = json.load(open(f"{state}/status.json"))
port = next(m["port"] for m in status["members"] if m["role"] == "primary")
c = pymysql.connect(host="127.0.0.1", port=port, user=creds["admin_user"],
                    password=creds["admin_password"], autocommit=True)
cur = c.cursor()
cur.execute("CREATE TABLE app.lag (id INT PRIMARY KEY AUTO_INCREMENT, v VARCHAR(64))")
acks, began, n = {}, time.time(), 0
while time.time() - began < seconds:
    cur.execute("INSERT INTO app.lag (v) VALUES ('archived row')")
    acked = time.time()
    cur.execute("SELECT @@last_gtid")
    acks[cur.fetchone()[0]] = acked * 1000
    n += 1
    ahead = began + n / rate - time.time()
    if ahead > 0:
        time.sleep(ahead)
json.dump({"acks": acks, "rate": n / (time.time() - began)}, open(out, "w"))
EOF
  sleep 3
  "$BIN" local --state-dir "$WORK/st" down >/dev/null
  python3 - "$WORK/acks.json" "$3" "$WORK" "$ENDPOINT" <<'EOF'
import glob, json, sys
acks_file, label, work, endpoint = sys.argv[1:5]
data = json.load(open(acks_file))
acks = {int(g.split("-")[2]): t for g, t in data["acks"].items()}
if label.startswith("s3"):
    import boto3
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                      aws_access_key_id="bench", aws_secret_access_key="bench")
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket="bench", Prefix="lag/binlog/lag/")
    keys = [o["Key"] for p in pages for o in p.get("Contents", []) if o["Key"].endswith(".binlog.json")]
    manifests = [json.loads(s3.get_object(Bucket="bench", Key=k)["Body"].read()) for k in keys]
else:
    manifests = [json.load(open(p)) for p in glob.glob(f"{work}/dir/binlog/lag/*.binlog.json")]
lags = []
for m in manifests:
    after = int(m["after"].split("-")[2]) if m["after"] else 0
    last = int(m["last"].split("-")[2])
    for seq in range(after + 1, last + 1):
        if seq in acks:
            lags.append(m["storedUnixMs"] - acks[seq])
missing = len(acks) - len(lags)
lags.sort()
pct = lambda p: lags[min(len(lags) - 1, int(p * len(lags)))]
print(f"| {label} | {data['rate']:.0f} | {len(lags)} | {missing} | {len(manifests)} | "
      f"{pct(0.5):.0f} | {pct(0.99):.0f} | {lags[-1]:.0f} |")
EOF
}

echo "| destination | writes/s | transactions archived | not found | segments | lag p50 ms | lag p99 ms | lag max ms |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
run "$WORK/dir" "" "directory"
run "s3://bench/lag" "$(printf '    s3:\n      endpoint: %s\n      credentialsFile: %s\n' "$ENDPOINT" "$WORK/s3.env")" "s3 (moto)"
