#!/bin/bash
# The test node's stand-in for the official MariaDB image's entrypoint, doing what the
# operator relies on: on an empty data directory, initialize it, set the root password from
# MARIADB_ROOT_PASSWORD, run /docker-entrypoint-initdb.d/* (*.sh sourced with
# docker_process_sql defined, *.sql fed to the server) on a server without networking, then
# run the server. The node runs containers as root, so the server is told so.
set -eo pipefail

if [ "${1:0:1}" = '-' ]; then set -- mariadbd "$@"; fi
if [ "$1" != mariadbd ] && [ "$1" != mysqld ]; then exec "$@"; fi
shift

datadir=/var/lib/mysql
socket=/run/mysqld/mysqld.sock

docker_process_sql() {
  mariadb --protocol=socket -uroot --socket="$socket" ${root_password:+--password="$root_password"} "$@"
}

if [ ! -d "$datadir/mysql" ]; then
  echo "docker-entrypoint.sh: initializing $datadir" >&2
  mariadb-install-db --user=root --datadir="$datadir" --auth-root-authentication-method=normal \
    --skip-test-db --skip-log-bin --rpm >/dev/null
  mariadbd --user=root "$@" --skip-networking --socket="$socket" --skip-slave-start \
    --expire-logs-days=0 &
  temp=$!
  for _ in $(seq 300); do
    if mariadb-admin --protocol=socket -uroot --socket="$socket" ping >/dev/null 2>&1; then break; fi
    kill -0 "$temp" 2>/dev/null || { echo "docker-entrypoint.sh: the server did not start" >&2; exit 1; }
    sleep 0.1
  done
  root_password=""
  docker_process_sql <<EOSQL
SET SESSION sql_log_bin=0;
ALTER USER 'root'@'localhost' IDENTIFIED BY '${MARIADB_ROOT_PASSWORD//\'/\'\'}';
EOSQL
  root_password=$MARIADB_ROOT_PASSWORD
  for f in /docker-entrypoint-initdb.d/*; do
    case "$f" in
      *.sh) . "$f" ;;
      *.sql) docker_process_sql <"$f" ;;
    esac
  done
  kill "$temp"
  wait "$temp" || true
  echo "docker-entrypoint.sh: $datadir initialized" >&2
fi
exec mariadbd --user=root "$@"
