#!/usr/bin/env bash
# Puts a real kube-apiserver and kube-controller-manager v1.20.2 and etcd in $KAPI_DIR/bin
# (default ~/.cache/lagless/kapi), for the operator's API server tests
# (operator/tests/it/kube_api/); safe to run again.
#
# No registry ships kube-apiserver, but Debian bookworm's `kubernetes` source package is the
# whole v1.20.2 tree with its dependencies, and builds offline with Debian's Go 1.19. Builds
# of it kept beside the clone (../shared/kube/kube-{apiserver,controller-manager}-v1.20.2.gz,
# or $LAGLESS_KUBE_CACHE) are unpacked and checked against their sha256; otherwise both are
# built here (10-15 minutes on 2 cores, about 3 GB under $KAPI_DIR; nothing is installed
# system-wide).
#
# etcd is Debian's `etcd-server` 3.4 (Kubernetes 1.20 was released against etcd 3.4), unpacked
# from its package into $KAPI_DIR rather than installed: the package would also install and
# enable an etcd service on port 2379, which the tests do not want.
set -euo pipefail

KAPI_DIR=${KAPI_DIR:-$HOME/.cache/lagless/kapi}
KAPI_SHA256=343be5d30bb8124f89fafeba82c7032eb96ea21ea316c64a5ceba9e5ffc7394e
KCM_SHA256=7cc773dde5ce230c2c8bdbee0d5feabecd9949df60d621164b485bead7ca36f0
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# The main checkout (a worktree's is elsewhere), beside which the shared cache sits.
main=$(dirname "$(git -C "$repo" rev-parse --path-format=absolute --git-common-dir 2>/dev/null || echo "$repo/.git")")
cache=${LAGLESS_KUBE_CACHE:-$main/../shared/kube}
mkdir -p "$KAPI_DIR/bin"

# $1 (kube-apiserver or kube-controller-manager) is in place and is v1.20.2.
binary_ok() {
  [ -x "$KAPI_DIR/bin/$1" ] && "$KAPI_DIR/bin/$1" --version 2>/dev/null | grep -q 'v1\.20\.2'
}

etcd_ok() { [ -x "$KAPI_DIR/bin/etcd" ] && "$KAPI_DIR/bin/etcd" --version >/dev/null 2>&1; }

# etcd-server's .deb, unpacked into $KAPI_DIR/etcd-root.
fetch_etcd() {
  local debs="$KAPI_DIR/debs"
  mkdir -p "$debs"
  if ! ls "$debs"/etcd-server_*.deb >/dev/null 2>&1; then
    echo "kube-apiserver.sh: downloading Debian's etcd-server package" >&2
    (cd "$debs" && apt-get download etcd-server >/dev/null 2>&1) || {
      local sudo=""
      if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
      $sudo apt-get update -qq
      (cd "$debs" && apt-get download etcd-server >/dev/null)
    }
  fi
  rm -rf "$KAPI_DIR/etcd-root"
  dpkg -x "$(ls "$debs"/etcd-server_*.deb | head -1)" "$KAPI_DIR/etcd-root"
  ln -sf "$KAPI_DIR/etcd-root/usr/bin/etcd" "$KAPI_DIR/bin/etcd"
}

# The recipe: the source package and Go downloaded with apt into a private state directory.
build_apiserver() {
  echo "kube-apiserver.sh: building kube-apiserver v1.20.2 from Debian's kubernetes source package (10-15 minutes)" >&2
  local K=$KAPI_DIR
  mkdir -p "$K"/apt/lists/partial "$K"/apt/cache/archives/partial "$K"/src "$K"/debs "$K"/root "$K"/apt/sources.list.d
  # Source entries from the machine's own apt configuration (the same archives, deb-src).
  sed 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources >"$K/apt/sources.list.d/debian.sources"
  : >"$K/apt/sources.list"
  local apto=(-o "Dir::Etc::SourceList=$K/apt/sources.list" -o "Dir::Etc::SourceParts=$K/apt/sources.list.d"
    -o "Dir::State::Lists=$K/apt/lists" -o "Dir::Cache=$K/apt/cache")
  apt-get "${apto[@]}" update -qq
  (cd "$K/src" && apt-get "${apto[@]}" source --download-only kubernetes >/dev/null)
  (cd "$K/debs" && apt-get download golang-1.19-go golang-1.19-src golang-github-modern-go-reflect2-dev >/dev/null)
  for d in "$K"/debs/golang-*.deb; do dpkg -x "$d" "$K/root"; done
  (
    cd "$K/src"
    rm -rf kubernetes-1.20.2
    tar xzf kubernetes_1.20.5+really1.20.2.orig.tar.gz
    cd kubernetes-1.20.2
    # The vendored reflect2 1.0.1 breaks on Go 1.18 and later; Debian's 1.0.2 does not.
    rm -rf vendor/github.com/modern-go/reflect2 && mkdir vendor/github.com/modern-go/reflect2
    cp "$K"/root/usr/share/gocode/src/github.com/modern-go/reflect2/*.{go,s} vendor/github.com/modern-go/reflect2/
    export GOROOT=$K/root/usr/lib/go-1.19 PATH=$K/root/usr/lib/go-1.19/bin:$PATH GOCACHE=$K/gocache \
      GOPROXY=off CGO_ENABLED=0 HOME=$K/home
    export KUBE_GIT_VERSION=v1.20.2 KUBE_GIT_MAJOR=1 KUBE_GIT_MINOR=20 KUBE_GIT_TREE_STATE=clean
    # The controller-manager (StatefulSets and Deployments making Pods) takes a minute more.
    make WHAT="cmd/kube-apiserver cmd/kube-controller-manager" >/dev/null
    cp _output/bin/kube-apiserver "$K/bin/kube-apiserver.new"
    cp _output/bin/kube-controller-manager "$K/bin/kube-controller-manager.new"
  )
  mv "$K/bin/kube-apiserver.new" "$K/bin/kube-apiserver"
  mv "$K/bin/kube-controller-manager.new" "$K/bin/kube-controller-manager"
}

# Unpacks $1 from the shared cache and checks it against sha256 $2; fails if the cache lacks it.
unpack_cached() {
  local name=$1 want=$2
  [ -f "$cache/$name-v1.20.2.gz" ] || return 1
  gunzip -c "$cache/$name-v1.20.2.gz" >"$KAPI_DIR/bin/$name.new"
  local got
  got=$(sha256sum "$KAPI_DIR/bin/$name.new" | cut -d' ' -f1)
  if [ "$got" != "$want" ]; then
    rm -f "$KAPI_DIR/bin/$name.new"
    echo "kube-apiserver.sh: $cache/$name-v1.20.2.gz unpacks to sha256 $got, not $want" >&2
    exit 1
  fi
  chmod +x "$KAPI_DIR/bin/$name.new"
  mv "$KAPI_DIR/bin/$name.new" "$KAPI_DIR/bin/$name"
}

for pair in "kube-apiserver $KAPI_SHA256" "kube-controller-manager $KCM_SHA256"; do
  set -- $pair
  if ! binary_ok "$1"; then
    unpack_cached "$1" "$2" || build_apiserver
    binary_ok "$1" || { echo "kube-apiserver.sh: $KAPI_DIR/bin/$1 does not run" >&2; exit 1; }
  fi
done
etcd_ok || fetch_etcd
etcd_ok || { echo "kube-apiserver.sh: $KAPI_DIR/bin/etcd does not run" >&2; exit 1; }
