#!/usr/bin/env bash
# Starts a throwaway PostgreSQL server on loopback for the storage tests; sourced by .ci/run.
# Installs the server from Debian's packages when it is missing; allows 300 connections (the
# storage load benchmark's 32 workers on PostgreSQL directly need about 100). Sets
# EFFSEARCH_TEST_POSTGRES_URL, and `stop_test_postgres` stops the server and removes its data.
set -euo pipefail

find_pg_bin() {
    local dir
    for dir in /usr/lib/postgresql/*/bin; do
        [[ -x "$dir/initdb" ]] && { echo "$dir"; return 0; }
    done
    return 1
}

SUDO=""
[[ "$(id -u)" != 0 ]] && SUDO="sudo"
if ! PG_BIN="$(find_pg_bin)"; then
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql >/dev/null
    PG_BIN="$(find_pg_bin)"
fi

# A free loopback port unless one is given: a server left over from an earlier run (or any
# other service) must not make this one fail to start.
PG_PORT="${EFFSEARCH_TEST_PG_PORT:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}"
PG_DATA="$(mktemp -d /tmp/effsearch-pg.XXXXXX)"
# initdb refuses to run as root: run the server as the postgres user when we are root.
AS_PG=()
if [[ "$(id -u)" == 0 ]]; then
    id postgres >/dev/null 2>&1 || useradd --system postgres
    chown postgres "$PG_DATA"
    AS_PG=(runuser -u postgres --)
fi
"${AS_PG[@]}" "$PG_BIN/initdb" -D "$PG_DATA" -U effsearch --auth=trust -E UTF8 >/dev/null
"${AS_PG[@]}" "$PG_BIN/pg_ctl" -D "$PG_DATA" -w -l "$PG_DATA/server.log" \
    -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $PG_DATA -c max_connections=300" \
    start >/dev/null
"$PG_BIN/createdb" -h 127.0.0.1 -p "$PG_PORT" -U effsearch effsearch_test
export EFFSEARCH_TEST_POSTGRES_URL="postgresql://effsearch@127.0.0.1:$PG_PORT/effsearch_test"

stop_test_postgres() {
    "${AS_PG[@]}" "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast stop >/dev/null || true
    rm -rf "$PG_DATA"
}
