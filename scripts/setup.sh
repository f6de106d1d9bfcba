#!/usr/bin/env bash
# Installs what Lagless needs to build and test on Debian 12; safe to run again.
set -euo pipefail

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

missing=()
[ -x /usr/sbin/mariadbd ] || command -v mariadbd >/dev/null 2>&1 || missing+=(mariadb-server)
command -v mariadb >/dev/null 2>&1 || missing+=(mariadb-client)
command -v mariadb-backup >/dev/null 2>&1 || missing+=(mariadb-backup)
# LAGLESS_SETUP=run: only what running Lagless needs (the demo), not the test tools.
RUN_ONLY=""
if [ "${LAGLESS_SETUP:-}" = "run" ]; then RUN_ONLY=1; fi
[ -n "$RUN_ONLY" ] || command -v sysbench >/dev/null 2>&1 || missing+=(sysbench)
command -v cc >/dev/null 2>&1 || missing+=(build-essential)
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
# MariaDB Connector/Python's test suite builds the driver against Connector/C; the fault test
# makes network namespaces with `ip` (iproute2).
if [ -z "$RUN_ONLY" ]; then
  command -v ip >/dev/null 2>&1 || [ -x /usr/sbin/ip ] || [ -x /sbin/ip ] || missing+=(iproute2)
  command -v mariadb_config >/dev/null 2>&1 || missing+=(libmariadb-dev)
  python3 -c 'import sysconfig, os, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' 2>/dev/null \
    || missing+=(python3-dev)
fi

if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}" >&2
  # Lagless starts its own servers; keep the packaged service from starting during the install.
  added_policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
    $SUDO chmod +x /usr/sbin/policy-rc.d
    added_policy=1
  fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  if [ -n "$added_policy" ]; then $SUDO rm -f /usr/sbin/policy-rc.d; fi
fi

if ! command -v cargo >/dev/null 2>&1; then
  if [ -x "$HOME/.cargo/bin/cargo" ]; then
    export PATH="$HOME/.cargo/bin:$PATH"
  else
    echo "setup: installing Rust with rustup" >&2
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal
    export PATH="$HOME/.cargo/bin:$PATH"
  fi
fi
if command -v rustup >/dev/null 2>&1; then
  for component in rustfmt clippy; do
    rustup component list --installed 2>/dev/null | grep -q "^$component" \
      || rustup component add "$component" >/dev/null
  done
fi

# PyMySQL (a real client driver the proxy is tested with), pytest (runs PyMySQL's own suite),
# kubernetes-validate (checks the operator's objects and the Helm chart against the Kubernetes
# schemas) and helm-python-sdk (Helm v4's engine as a library: lints and renders the chart in
# charts/lagless/tests/check_chart.py; pinned, as the checker calls its native library) and
# moto with its server (a real S3-compatible server on loopback for the backup tests: a
# package from PyPI that installs in seconds and needs no container runtime, and it checks
# keys and signatures once its IAM checks are on).
python_packages=(pymysql pytest kubernetes-validate helm-python-sdk==0.2.2 'moto[server]')
if [ -z "$RUN_ONLY" ] && { ! python3 -c 'import pymysql, pytest, kubernetes_validate, helm_python, moto.server, boto3' >/dev/null 2>&1 \
  || [ "$(python3 -c 'import helm_python; print(helm_python.__version__)' 2>/dev/null)" != "0.2.2" ]; }; then
  python3 -m pip install --quiet "${python_packages[@]}" 2>/dev/null \
    || python3 -m pip install --quiet --break-system-packages "${python_packages[@]}"
fi

# A real kube-apiserver (v1.20.2) and etcd for the operator's API server tests, kept in
# ~/.cache/lagless/kapi; the first time on a machine without the shared build, this builds it.
if [ -z "$RUN_ONLY" ]; then
  bash "$(dirname "${BASH_SOURCE[0]}")/kube-apiserver.sh"
fi
