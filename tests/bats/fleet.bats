#!/usr/bin/env bats
# STORE=postgres: several hosts (here, loops with state directories and host names
# of their own) share one queue on a real PostgreSQL server, a private cluster this
# file starts (tests/pg_cluster.sh) and stops. Each test gets a schema of its own.

setup_file() {
  PG_DIR=$(mktemp -d /tmp/harness-pg.XXXXXX)
  chmod 0755 "$PG_DIR" # the cluster runs as the user postgres when the tests run as root
  PG_URL=$("$BATS_TEST_DIRNAME/../pg_cluster.sh" start "$PG_DIR/pg")
  export PG_DIR PG_URL
}

teardown_file() {
  "$BATS_TEST_DIRNAME/../pg_cluster.sh" stop "$PG_DIR/pg"
  rm -rf "$PG_DIR"
}

setup() {
  load helpers
  sandbox_setup
  local schema="t_${RANDOM}${RANDOM}"
  psql -q "$PG_URL" -c "CREATE SCHEMA $schema" >/dev/null
  export HARNESS_STORE=postgres HARNESS_DATABASE_URL="$PG_URL&options=-csearch_path%3D$schema"
  export HARNESS_LEASE_S=30
}

teardown() {
  local pid
  for pid in ${FLEET_PIDS:-}; do kill -9 "$pid" 2>/dev/null || true; done
  sandbox_teardown
}

# host <name> <args...>: a loop of that host, with its own state directory
host() { # <name> <args...>
  local name=$1
  shift
  HARNESS_HOST_NAME="$name" "$LOOP" --state "$T/$name" "$@"
}

# fleet_items <n> <prompt>: n items, added through host a's state directory
fleet_items() { # <n> <prompt>
  local i
  for ((i = 1; i <= $1; i++)); do
    jq -nc --arg id "item-$i" --arg p "$2" '{id: $id, prompt: $p}'
  done >"$T/items.jsonl"
  "$Q" --state "$T/a" add --file "$T/items.jsonl" >/dev/null
}

# fleet_sql <sql>: one value from the shared database
fleet_sql() { # <sql>
  psql -Atq "$HARNESS_DATABASE_URL" -c "$1"
}

@test "two hosts, one database: 40 items, -j 4 each; every item succeeds once, and both hosts claim" {
  fleet_items 40 "[[mock:slow]] work"
  export MOCK_CLAUDE_DELAY_S=0.3
  host a --drain -j 4 >"$T/a.out" 2>&1 &
  local a=$!
  host b --drain -j 4 >"$T/b.out" 2>&1 &
  local b=$!
  FLEET_PIDS="$a $b"
  wait "$a" || { cat "$T/a.out"; false; }
  wait "$b" || { cat "$T/b.out"; false; }
  [ "$(fleet_sql "SELECT count(*) FROM items WHERE state = 'succeeded'")" = 40 ]
  # once each: one session per item, and one history record
  [ "$(fleet_sql "SELECT count(*) FROM attempts")" = 40 ]
  [ "$(fleet_sql "SELECT count(DISTINCT item_id) FROM attempts WHERE verdict = 'succeeded'")" = 40 ]
  local ca cb
  ca=$(jq -r 'select(.event == "item.claimed") | .item' "$T/a/events.jsonl" | wc -l)
  cb=$(jq -r 'select(.event == "item.claimed") | .item' "$T/b/events.jsonl" | wc -l)
  echo "claims: a=$ca b=$cb"
  ((ca + cb == 40 && ca >= 5 && cb >= 5))
  # the hosts: both registered, by their names
  [ "$(fleet_sql "SELECT string_agg(name, ',' ORDER BY name) FROM hosts")" = "a,b" ]
}
