#!/usr/bin/env bash
# Start (or stop) a throwaway PostgreSQL cluster on 127.0.0.1 for the test suite and benchmarks.
#   export LLMOPS_TEST_POSTGRES_URL=$(bash scripts/postgres.sh start)   # prints the URL
#   bash scripts/postgres.sh stop
# Installs Debian's postgresql when it is missing (needs root and apt).
set -euo pipefail

PGPORT="${LLMOPS_PGPORT:-55432}"
PGDATA_DIR="${LLMOPS_PGDATA:-/tmp/llmops-pg-$PGPORT}"

pg_bin() {
  local dir
  dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1 || true)
  if [ -z "$dir" ]; then
    echo "installing PostgreSQL from Debian..." >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq postgresql >&2
    dir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
  fi
  echo "$dir"
}

as_pg() {
  if [ "$(id -u)" = "0" ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

start() {
  local bin
  bin=$(pg_bin)
  if ! as_pg "$bin/pg_ctl" -D "$PGDATA_DIR" status >/dev/null 2>&1; then
    rm -rf "$PGDATA_DIR"
    mkdir -p "$PGDATA_DIR"
    [ "$(id -u)" = "0" ] && chown postgres:postgres "$PGDATA_DIR"
    as_pg "$bin/initdb" -D "$PGDATA_DIR" -A trust -U postgres --no-sync >/dev/null
    as_pg "$bin/pg_ctl" -D "$PGDATA_DIR" -l "$PGDATA_DIR/server.log" -w \
      -o "-h 127.0.0.1 -p $PGPORT -k $PGDATA_DIR -c fsync=off -c max_connections=200" start >/dev/null
  fi
  as_pg "$bin/psql" -h 127.0.0.1 -p "$PGPORT" -U postgres -tAc \
    "SELECT 1 FROM pg_database WHERE datname='llmops_test'" | grep -q 1 ||
    as_pg "$bin/createdb" -h 127.0.0.1 -p "$PGPORT" -U postgres llmops_test
  echo "PostgreSQL ready on 127.0.0.1:$PGPORT" >&2
  echo "postgresql+psycopg://postgres@127.0.0.1:$PGPORT/llmops_test"
}

stop() {
  local bin
  bin=$(pg_bin)
  as_pg "$bin/pg_ctl" -D "$PGDATA_DIR" -m fast stop >/dev/null 2>&1 || true
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: scripts/postgres.sh start|stop" >&2; exit 2 ;;
esac
