#!/usr/bin/env bash
# The stack's lifecycle, on its own ports and data dir so it never touches
# the stack other tests use:
#   up twice is harmless; status tells; topics and schemas survive down + up
#   with the same schema id; after down none of our Java processes remain;
#   reset removes topics and schemas.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
WORK=$(mktemp -d)
export ODA_STACK_DIR="$WORK/stack"
export KAFKA_PORT=19092 KAFKA_CONTROLLER_PORT=19093 REGISTRY_PORT=18081 REGISTRY_MANAGEMENT_PORT=19581
REGISTRY="http://127.0.0.1:$REGISTRY_PORT/apis/ccompat/v7"
STACK="$ROOT/scripts/stack"
TOPIC=lifecycle-probe
SUBJECT=$TOPIC-value
SCHEMA='{"schema":"{\"type\":\"record\",\"name\":\"Probe\",\"namespace\":\"dk.ft.oda.test\",\"fields\":[{\"name\":\"id\",\"type\":\"int\"}]}"}'

fail() { printf 'stack lifecycle: FAILED: %s\n' "$*" >&2; exit 1; }
pass() { printf 'stack lifecycle: ok: %s\n' "$*"; }
cleanup() {
    "$STACK" down >/dev/null 2>&1 || true
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

subject_id() {
    curl -fsS "$REGISTRY/subjects/$SUBJECT/versions/1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])'
}

"$STACK" up
second=$("$STACK" up 2>&1) || fail "a second up failed: $second"
grep -q "already running" <<<"$second" || fail "a second up should say the stack already runs: $second"
"$STACK" status >/dev/null || fail "status should exit 0 while both run"
pass "up twice, status"

"$STACK" topics create "$TOPIC" 3 >/dev/null
id_before=$(curl -fsS -X POST -H 'Content-Type: application/vnd.schemaregistry.v1+json' \
    --data "$SCHEMA" "$REGISTRY/subjects/$SUBJECT/versions" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')

"$STACK" down
[ -z "$(our_java)" ] || fail "java processes remain after down: $(our_java)"
if "$STACK" status >/dev/null; then fail "status should be non-zero after down"; fi
pass "down leaves no java process of ours"

"$STACK" up
"$STACK" topics list | grep -qx "$TOPIC" || fail "topic $TOPIC lost across down + up"
id_after=$(subject_id) || fail "schema $SUBJECT lost across down + up"
[ "$id_before" = "$id_after" ] || fail "schema id changed across restart: $id_before -> $id_after"
pass "topic and schema (id $id_after) survive down + up"

"$STACK" reset
"$STACK" up
if "$STACK" topics list | grep -qx "$TOPIC"; then fail "reset kept topic $TOPIC"; fi
if subject_id >/dev/null 2>&1; then fail "reset kept schema $SUBJECT"; fi
pass "reset removes topics and schemas"
"$STACK" down
[ -z "$(our_java)" ] || fail "java processes remain after the final down"
pass "all"
