#!/usr/bin/env bash
# End-to-end check of the operator on a local Kubernetes cluster (kind or k3d): install the
# chart, create the example MySQLCluster, wait until it is Available, kill the primary's pod and
# wait for another member to be promoted, then re-seed the old primary through spec.reseed.
#
# NOT RUN BY CI: no Kubernetes cluster runs there. Run it yourself against a disposable cluster.
#
# Prerequisites:
#   - kubectl and helm, with the current context pointing at a throwaway kind or k3d cluster;
#   - the two images built from this tree (see the Dockerfile) and loaded into that cluster:
#       docker build --target operator -t "$OPERATOR_IMAGE" .
#       docker build --target proxy -t "$PROXY_IMAGE" .
#       kind load docker-image "$OPERATOR_IMAGE" "$PROXY_IMAGE"   # or: k3d image import ...
#   - a default StorageClass (kind and k3d have one).
#
# Usage: OPERATOR_IMAGE=repo/lagless-operator:dev PROXY_IMAGE=repo/lagless-proxy:dev scripts/k8s-e2e.sh
set -euo pipefail

: "${OPERATOR_IMAGE:?set OPERATOR_IMAGE to the operator image loaded into the cluster}"
: "${PROXY_IMAGE:?set PROXY_IMAGE to the proxy image loaded into the cluster}"
RELEASE_NAMESPACE="${RELEASE_NAMESPACE:-lagless-system}"
CLUSTER_NAMESPACE=default
CLUSTER=shop
TIMEOUT="${TIMEOUT:-600s}"
cd "$(dirname "$0")/.."

split_image() { # repo:tag -> "repo tag"
  local image=$1
  echo "${image%:*} ${image##*:}"
}
read -r operator_repo operator_tag <<<"$(split_image "$OPERATOR_IMAGE")"
read -r proxy_repo proxy_tag <<<"$(split_image "$PROXY_IMAGE")"

echo "== installing the chart"
helm upgrade --install lagless charts/lagless \
  --namespace "$RELEASE_NAMESPACE" --create-namespace \
  --set image.repository="$operator_repo" --set image.tag="$operator_tag" \
  --set image.pullPolicy=IfNotPresent \
  --set proxy.image.repository="$proxy_repo" --set proxy.image.tag="$proxy_tag" \
  --wait --timeout "$TIMEOUT"

echo "== creating the proxy users Secret and the MySQLCluster"
kubectl -n "$CLUSTER_NAMESPACE" create secret generic "$CLUSTER-proxy-users" \
  --from-literal=users.json='{"users": [{"user": "app", "password": "change-me"}]}' \
  --dry-run=client -o yaml | kubectl apply -f -
kubectl apply -f examples/mysqlcluster.yaml

echo "== waiting for the cluster to be Available"
kubectl -n "$CLUSTER_NAMESPACE" wait "mysqlcluster/$CLUSTER" --for=condition=Available --timeout="$TIMEOUT"
primary=$(kubectl -n "$CLUSTER_NAMESPACE" get "mysqlcluster/$CLUSTER" -o jsonpath='{.status.primary}')
echo "primary: $primary"
test -n "$primary"

echo "== killing the primary's pod ($primary)"
kubectl -n "$CLUSTER_NAMESPACE" delete pod "$primary" --grace-period=0 --force --wait=false

# A field of the MySQLCluster's status, by JSONPath ('' when unreadable).
status_of() {
  kubectl -n "$CLUSTER_NAMESPACE" get "mysqlcluster/$CLUSTER" -o jsonpath="{.status.$1}" || true
}

# Polls `$1` (a command) every 5 s until it succeeds; after $TIMEOUT, prints `$2`, describes
# the cluster and fails.
wait_until() {
  local deadline=$((SECONDS + ${TIMEOUT%s}))
  until "$1"; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      echo "$2 within $TIMEOUT" >&2
      kubectl -n "$CLUSTER_NAMESPACE" describe "mysqlcluster/$CLUSTER" >&2 || true
      exit 1
    fi
    sleep 5
  done
}

echo "== waiting for a new primary"
new_primary() {
  local now
  now=$(status_of primary)
  [ -n "$now" ] && [ "$now" != "$primary" ]
}
wait_until new_primary "no new primary"
echo "new primary: $(status_of primary); $(status_of lastFailover)"

echo "== re-seeding the old primary ($primary) on request"
kubectl -n "$CLUSTER_NAMESPACE" patch "mysqlcluster/$CLUSTER" --type merge \
  -p "{\"spec\":{\"reseed\":{\"id\":\"e2e-$(date +%s)\",\"member\":\"$primary\"}}}"
reseed_ended() {
  case "$(status_of lastReseed.result)" in
    Succeeded | Failed) return 0 ;;
    *) return 1 ;;
  esac
}
wait_until reseed_ended "the re-seed did not finish"
echo "re-seed: $(status_of lastReseed.message)"
test "$(status_of lastReseed.result)" = Succeeded
echo "ok"
