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
  # a test that stopped the server and failed before starting it again leaves it running for the next
  "$BATS_TEST_DIRNAME/../pg_cluster.sh" start "$PG_DIR/pg" >/dev/null
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
  # the hosts: both registered, by their names; status.sh lists them, each with its heartbeat's age
  [ "$(fleet_sql "SELECT string_agg(name, ',' ORDER BY name) FROM hosts")" = "a,b" ]
  run env HARNESS_HOST_NAME=a "$HARNESS_ROOT/scripts/status.sh" --state "$T/a" --json
  assert_success
  [ "$(jq -c '[.hosts[] | [.host, .this, (.heartbeat_age_s | type)]]' <<<"$output")" = '[["a",true,"number"],["b",false,"number"]]' ]
  run env HARNESS_HOST_NAME=b "$HARNESS_ROOT/scripts/status.sh" --state "$T/b" --no-color
  assert_success
  assert_line --regexp '^hosts +a: 0 running, heartbeat .* ago$'
  assert_line --regexp '^ +b \(this\): 0 running, heartbeat .* ago$'
  # one report for the fleet, from either host
  run env HARNESS_HOST_NAME=b "$HARNESS_ROOT/scripts/report.sh" --state "$T/b" --json
  assert_success
  [ "$(jq -c '[.total.sessions, .total.succeeded]' <<<"$output")" = "[40,40]" ]
}

# host_bg <name> <args...>: a host's loop in a session of its own (setsid), so that
# its whole tree (loop, helper, sidecar, agents) can be signalled at once by its
# session id; sets HOST_SID
host_bg() { # <name> <args...>
  local name=$1
  shift
  HARNESS_HOST_NAME="$name" setsid "$LOOP" --state "$T/$name" "$@" >"$T/$name.out" 2>&1 &
  HOST_SID=$!
  FLEET_PIDS="${FLEET_PIDS:-} $HOST_SID"
}

# tree_signal <session-id> <signal>: every process of that session
tree_signal() { # <sid> <signal>
  pkill "-$2" -s "$1" || true
}

# tree_gone <session-id>: no process of that session is left (SIGKILL again for one
# that was being forked as the first went out)
tree_gone() { # <sid>
  pkill -KILL -s "$1" || true
  ! pgrep -s "$1" >/dev/null
}

succeeded_count() { [[ "$(fleet_sql "SELECT count(*) FROM items WHERE state = 'succeeded'")" == "$1" ]]; }
running_on() { [[ "$(fleet_sql "SELECT count(*) FROM items WHERE state = 'running' AND lease_host = '$1'")" == "$2" ]]; }

# once_each: every item succeeded, with exactly one succeeded record in its history
once_each() {
  [ "$(fleet_sql "SELECT count(*) FROM items WHERE state <> 'succeeded'")" = 0 ]
  [ "$(fleet_sql "SELECT count(*) FROM items i, jsonb_array_elements(i.doc::jsonb -> 'history') h
                  WHERE h ->> 'verdict' = 'succeeded'")" = "$(fleet_sql "SELECT count(*) FROM items")" ]
}

stop_host() { # <name> <pid>
  touch "$T/$1/STOP"
  wait "$2" || { cat "$T/$1.out"; false; }
}

@test "a host killed with its whole tree: its items are taken over once their leases run out; 0 lost, 0 doubled" {
  export HARNESS_LEASE_S=3 HARNESS_HEARTBEAT_S=0.5 MOCK_CLAUDE_DELAY_S=1
  fleet_items 12 "[[mock:slow]] work"
  host_bg a -j 4
  local a=$HOST_SID
  wait_for 30 running_on a 4
  tree_signal "$a" KILL
  wait "$a" 2>/dev/null || true
  wait_for 10 tree_gone "$a" # nothing of host a is left
  local held
  held=$(fleet_sql "SELECT count(*) FROM items WHERE state = 'running' AND lease_host = 'a'")
  [ "$held" = 4 ]
  host_bg b -j 4
  local b=$HOST_SID
  wait_for 60 succeeded_count 12
  stop_host b "$b"
  once_each
  # the four items of host a: taken over by b, each once, after their leases ran out
  [ "$(jq -r 'select(.event == "item.taken_over") | .from_host' "$T/b/events.jsonl" | sort | uniq -c | xargs)" = "4 a" ]
  [ "$(fleet_sql "SELECT count(*) FROM attempts WHERE verdict = 'succeeded'")" = 12 ]
}

@test "a host stopped past its leases: the other takes over; its late results are fenced and audited, the outcome is the other's" {
  export HARNESS_LEASE_S=3 HARNESS_HEARTBEAT_S=0.5 MOCK_CLAUDE_DELAY_S=2
  fleet_items 4 "[[mock:slow]] work"
  host_bg a -j 4
  local a=$HOST_SID
  wait_for 30 running_on a 4
  tree_signal "$a" STOP
  host_bg b -j 4
  local b=$HOST_SID
  wait_for 60 succeeded_count 4 || { # b took all four over (a's leases ran out) and finished them
    cat "$T/b.out"; fleet_sql "SELECT id, state, lease_host, lease_expires, extract(epoch from now()) FROM items"
    psql -Atq "$PG_URL" -c "SELECT pid, state, wait_event_type, left(query, 60) FROM pg_stat_activity"; false; }
  tree_signal "$a" CONT
  # a's sessions finish late; each finalize presents a stale token
  wait_for 60 bash -c "[[ \$(jq -r 'select(.event == \"session.fenced\") | .item' '$T/a/events.jsonl' | sort -u | wc -l) == 4 ]]" ||
    { jq -c 'select(.event | test("session|item"))' "$T/a/events.jsonl"; cat "$T/a.out"; false; }
  stop_host a "$a"
  stop_host b "$b"
  once_each
  # every item's succeeded record is a session of host b's
  [ "$(fleet_sql "SELECT count(*) FROM items i, jsonb_array_elements(i.doc::jsonb -> 'history') h
                  WHERE h ->> 'verdict' = 'succeeded' AND h ->> 'session_id' LIKE 'ses_%'")" = 4 ]
  local sid
  for sid in $(fleet_sql "SELECT h ->> 'session_id' FROM items i, jsonb_array_elements(i.doc::jsonb -> 'history') h"); do
    [ -d "$T/b/sessions/$sid" ] # b's, not a's
  done
  [ "$(jq -c 'select(.event == "session.fenced" and (.reason | test("claimed again")))' "$T/a/events.jsonl" | wc -l)" = 4 ]
}

@test "the database restarted mid-run: claims wait, finalizes wait, and the queue is finished with nothing lost" {
  export HARNESS_HEARTBEAT_S=0.5 MOCK_CLAUDE_DELAY_S=1
  fleet_items 16 "[[mock:slow]] work"
  host_bg a -j 3
  local a=$HOST_SID
  host_bg b -j 3
  local b=$HOST_SID
  wait_for 60 bash -c "(( \$(psql -Atq '$HARNESS_DATABASE_URL' -c \"SELECT count(*) FROM items WHERE state = 'succeeded'\") >= 3 ))"
  "$BATS_TEST_DIRNAME/../pg_cluster.sh" stop "$PG_DIR/pg"
  # the database is down: a session that ends waits to be finalized, and stays its loop's (a
  # claim tried meanwhile is blocked: test_fleet.py shows it)
  wait_for 30 bash -c "grep -q '\"session.finalize_waiting\"' '$T/a/events.jsonl' '$T/b/events.jsonl'"
  "$BATS_TEST_DIRNAME/../pg_cluster.sh" start "$PG_DIR/pg" >/dev/null
  wait_for 90 succeeded_count 16
  stop_host a "$a"
  stop_host b "$b"
  once_each
  [ "$(fleet_sql "SELECT count(DISTINCT item_id) FROM attempts WHERE verdict = 'succeeded'")" = 16 ]
}

@test "the crash trial on the postgres store: loop and helper killed mid-run; 0 lost, 0 doubled, 0 left behind" {
  run env HARNESS_DATABASE_URL="$PG_URL" "$HARNESS_ROOT/tests/crash_trial.sh" --runs 10 --items 4 --kills 2 \
    --store postgres --seed "$RANDOM" --json "$T/trial.json"
  echo "$output"
  assert_success
  [ "$(jq -c "[.lost, .doubled, .leftovers, .broken, .unkilled]" "$T/trial.json")" = "[0,0,0,0,0]" ]
  # the kills landed among sessions: some were adopted, finalized after the fact or requeued
  [ "$(jq -c '[.kills >= 10, (.adopted + .recovered + .requeued) >= 1]' "$T/trial.json")" = "[true,true]" ]
}

@test "two hosts, their own clones, one bare remote: the merge queue lands every item once, each host its own work" {
  git_repo "$T/seed"
  git -C "$T/seed" branch trunk
  git clone -q --bare "$T/seed" "$T/remote.git"
  git clone -q "$T/remote.git" "$T/clone-a"
  git clone -q "$T/remote.git" "$T/clone-b"
  local i
  for ((i = 1; i <= 10; i++)); do
    jq -nc --arg id "item-$i" --arg p "[[mock:commit]] file=f-$i.txt" '{id: $id, prompt: $p}'
  done >"$T/items.jsonl"
  "$Q" --state "$T/a" add --file "$T/items.jsonl" >/dev/null
  local git_set=(--set INTEGRATE=merge --set TARGET_BRANCH=trunk --set PUSH_REMOTE=origin)
  host_bg a -j 2 --set REPO_DIR="$T/clone-a" "${git_set[@]}"
  local a=$HOST_SID
  host_bg b -j 2 --set REPO_DIR="$T/clone-b" "${git_set[@]}"
  local b=$HOST_SID
  wait_for 120 succeeded_count 10 || { cat "$T/a.out" "$T/b.out"; false; }
  stop_host a "$a"
  stop_host b "$b"
  # each item: one session that succeeded, and one landing by the merge queue
  [ "$(fleet_sql "SELECT count(*) FROM items WHERE state <> 'succeeded'")" = 0 ]
  [ "$(fleet_sql "SELECT count(*), count(DISTINCT i.id) FROM items i, jsonb_array_elements(i.doc::jsonb -> 'history') h
                  WHERE h ->> 'by' = 'merge queue' AND h ->> 'verdict' = 'succeeded'")" = "10|10" ]
  [ "$(fleet_sql "SELECT count(*) FROM items i, jsonb_array_elements(i.doc::jsonb -> 'history') h
                  WHERE h ->> 'session_id' IS NOT NULL AND h ->> 'verdict' = 'succeeded'")" = 10 ]
  # every item's file on the remote's trunk, each landed by the host that ran it, once
  [ "$(git -C "$T/remote.git" ls-tree --name-only trunk | grep -c '^f-')" = 10 ]
  local la lb
  la=$(jq -r 'select(.event == "item.succeeded") | .item' "$T/a/events.jsonl" | wc -l)
  lb=$(jq -r 'select(.event == "item.succeeded") | .item' "$T/b/events.jsonl" | wc -l)
  echo "landed: a=$la b=$lb"
  ((la + lb == 10 && la > 0 && lb > 0))
  [ "$(fleet_sql "SELECT count(*) FROM items WHERE doc LIKE '%integrate_failed%'")" = 0 ]
}
