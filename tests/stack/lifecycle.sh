#!/usr/bin/env bash
# The stack's lifecycle, on its own ports and data dir so it never touches
# the stack other tests use:
#   up twice is harmless; status tells; topics, schemas and PostgreSQL rows
#   survive down + up (schemas with the same id); after down none of our Java
#   processes and no PostgreSQL of ours remain; reset removes topics, schemas
#   and PostgreSQL's data.
# Its ports are those of scripts/test's cluster stack, which only starts
# after this test has ended.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
WORK=$(mktemp -d)
export ODA_STACK_DIR="$WORK/stack"
export KAFKA_PORT=19092 KAFKA_CONTROLLER_PORT=19093 REGISTRY_PORT=18081 REGISTRY_MANAGEMENT_PORT=19581
export POSTGRES_PORT=15432
REGISTRY="http://127.0.0.1:$REGISTRY_PORT/apis/ccompat/v7"
STACK="$ROOT/scripts/stack"
TOPIC=lifecycle-probe
SUBJECT=$TOPIC-value
SCHEMA='{"schema":"{\"type\":\"record\",\"name\":\"Probe\",\"namespace\":\"dk.ft.oda.test\",\"fields\":[{\"name\":\"id\",\"type\":\"int\"}]}"}'

fail() { printf 'stack lifecycle: FAILED: %s\n' "$*" >&2; exit 1; }
pass() { printf 'stack lifecycle: ok: %s\n' "$*"; }
cleanup() {
    # reset, not just down: run as root, PostgreSQL's data lies outside $WORK.
    "$STACK" reset >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

# Live (not zombie) java processes that carry this data dir on their command line.
our_java() {
    local pid state
    for pid in $(pgrep -f -- "-Doda.cdc.stack.dir=$ODA_STACK_DIR" || true); do
        state=$(awk '/^State:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo gone)
        [ "$state" = Z ] || [ "$state" = gone ] || echo "$pid"
    done
}

# The stack's PostgreSQL, unaligned and tuples only.
sql() {
    "$STACK" psql -X -v ON_ERROR_STOP=1 -Atqc "$1"
}

# The data directory of the stack's PostgreSQL, as recorded by the first up.
pg_data_dir() {
    cat "$ODA_STACK_DIR/postgres-data-dir"
}

# True while a server runs from that data directory.
pg_running() {
    local pid
    [ -r "$1/postmaster.pid" ] || return 1
    pid=$(head -n 1 "$1/postmaster.pid")
    [ "$(readlink "/proc/$pid/cwd" 2>/dev/null)" = "$1" ]
}

subject_id() {
    curl -fsS "$REGISTRY/subjects/$SUBJECT/versions/1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])'
}

first=$("$STACK" up) || fail "up failed"
grep -qx "postgresql: *DATABASE_URL=postgres://postgres@127.0.0.1:$POSTGRES_PORT/postgres" <<<"$first" ||
    fail "up should print the PostgreSQL address: $first"
second=$("$STACK" up 2>&1) || fail "a second up failed: $second"
grep -q "already running" <<<"$second" || fail "a second up should say the stack already runs: $second"
grep -q "postgresql: already running" <<<"$second" || fail "a second up should leave PostgreSQL running: $second"
"$STACK" status >/dev/null || fail "status should exit 0 while all run"
"$STACK" status | grep -q "^postgresql: running .*127.0.0.1:$POSTGRES_PORT" || fail "status should show PostgreSQL running"
pass "up twice, status"

[ "$(sql 'select 1')" = 1 ] || fail "scripts/stack psql -Atc 'select 1' did not print 1"
"$STACK" logs postgres | grep -q "database system is ready to accept connections" ||
    fail "scripts/stack logs postgres does not show the server's log"
PG_DATA=$(pg_data_dir)
pg_running "$PG_DATA" || fail "no PostgreSQL runs from $PG_DATA"
pass "PostgreSQL answers on 127.0.0.1:$POSTGRES_PORT (data in $PG_DATA)"

"$STACK" topics create "$TOPIC" 3 >/dev/null
id_before=$(curl -fsS -X POST -H 'Content-Type: application/vnd.schemaregistry.v1+json' \
    --data "$SCHEMA" "$REGISTRY/subjects/$SUBJECT/versions" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
sql 'create table lifecycle_probe (id int primary key); insert into lifecycle_probe values (42)'

"$STACK" down
[ -z "$(our_java)" ] || fail "java processes remain after down: $(our_java)"
if pg_running "$PG_DATA"; then fail "PostgreSQL still runs from $PG_DATA after down"; fi
if "$STACK" status >/dev/null; then fail "status should be non-zero after down"; fi
{ "$STACK" status || true; } | grep -q "^postgresql: stopped" || fail "status should show PostgreSQL stopped"
if sql 'select 1' >/dev/null 2>&1; then fail "psql still connects after down"; fi
pass "down leaves no java process and no PostgreSQL of ours"

"$STACK" up
"$STACK" topics list | grep -qx "$TOPIC" || fail "topic $TOPIC lost across down + up"
id_after=$(subject_id) || fail "schema $SUBJECT lost across down + up"
[ "$id_before" = "$id_after" ] || fail "schema id changed across restart: $id_before -> $id_after"
[ "$(sql 'select id from lifecycle_probe')" = 42 ] || fail "PostgreSQL row lost across down + up"
pass "topic, schema (id $id_after) and PostgreSQL row survive down + up"

"$STACK" reset
[ ! -e "$PG_DATA" ] || fail "reset kept PostgreSQL's data directory $PG_DATA"
"$STACK" up
if "$STACK" topics list | grep -qx "$TOPIC"; then fail "reset kept topic $TOPIC"; fi
if subject_id >/dev/null 2>&1; then fail "reset kept schema $SUBJECT"; fi
[ "$(sql "select count(*) from pg_tables where tablename = 'lifecycle_probe'")" = 0 ] ||
    fail "reset kept PostgreSQL table lifecycle_probe"
pass "reset removes topics, schemas and PostgreSQL's data"
"$STACK" down
[ -z "$(our_java)" ] || fail "java processes remain after the final down"
if pg_running "$(pg_data_dir)"; then fail "PostgreSQL still runs after the final down"; fi
pass "all"
