#!/usr/bin/env bats
# The SQLite store seen from the scripts: moving over a state directory the previous
# release (c6ede08, files backend) made, reindex, a locked database, a corrupt one.

setup() {
  load helpers
  sandbox_setup
  CTL="$HARNESS_ROOT/scripts/loopctl.sh"
}

teardown() { sandbox_teardown; }

ctl() { "$CTL" --state "$STATE" "$@"; }

# the previous release's state: ok1, ok2 succeeded; bad (an auth error) and later
# (depends on ok1) pending; gone canceled; a pause ("upgrade"); the breaker open
old_state() {
  mkdir -p "$STATE"
  tar -C "$STATE" -xzf "$HARNESS_ROOT/tests/python/fixtures/state-files-c6ede08.tar.gz"
}

items_summary() { # id state attempts verdicts, one line per item, sorted
  q list --json | jq -r 'sort_by(.id)[] | "\(.id) \(.state) \(.attempts) \([.history[]?.verdict] | join(","))"'
}

@test "loopctl migrate moves the previous release's files state to SQLite, losing nothing" {
  old_state
  local before events
  before=$(items_summary)
  events=$(wc -l <"$STATE/events.jsonl")
  [ "$(cat "$STATE/store" 2>/dev/null || echo none)" = none ]
  [ "$(wc -l <<<"$before")" = 5 ]
  run ctl migrate
  assert_success
  assert_output "migrated to harness.db: 2 pending, 2 succeeded, 1 canceled; 3 attempts, $events audit events, the pause, the breaker"
  [ "$(cat "$STATE/store")" = sqlite ]
  [ "$(items_summary)" = "$before" ]
  # the prompt, the history and the pause and breaker's records came along
  [ "$(item_field later '.prompt + " " + (.depends_on | join(","))')" = "still to do ok1" ]
  [ "$(jq -r .reason <(store_record pause))" = upgrade ]
  [ "$(jq -r '[.state, .auth] | join(" ")' <(store_record breaker))" = "open true" ]
  # the old files are kept, out of the way; a second migrate has nothing to do
  [ -f "$STATE/files-backend/queue/succeeded/ok1.json" ]
  [ ! -e "$STATE/queue" ]
  run ctl migrate
  assert_success
  assert_output "nothing to migrate: $STATE uses the sqlite store"
  [ "$(audit_events | grep -c '^store.migrated$')" = 1 ]
}

@test "the loop's first start migrates, then runs what was left" {
  old_state
  q cancel bad >/dev/null
  ctl resume >/dev/null
  ctl circuit close >/dev/null
  run loop --drain
  assert_success
  [ "$(cat "$STATE/store")" = sqlite ]
  [ "$(item_state later) $(item_state ok1) $(item_state bad)" = "succeeded succeeded canceled" ]
  run audit_events
  assert_line store.migrated
}

@test "STORE=files keeps a files state as it is" {
  old_state
  run loop --drain --set STORE=files --set CIRCUIT_OPEN_S=0
  [ ! -e "$STATE/harness.db" ]
  [ -d "$STATE/queue/pending" ]
}

@test "a migration cut short is done again from the start; migrate is refused while a loop runs" {
  old_state
  printf 'half a database' >"$STATE/harness.db.migrating"
  run ctl migrate
  assert_success
  assert_output --partial "migrated to harness.db: 2 pending, 2 succeeded"
  [ ! -e "$STATE/harness.db.migrating" ]
  rm -rf "$STATE"
  old_state
  # this shell holds the loop's lock, as a running loop would
  local fd
  exec {fd}>"$STATE/loop.lock"
  flock "$fd"
  run ctl migrate
  exec {fd}>&-
  assert_failure 3
  assert_output --partial "a loop is running on $STATE: stop it first"
  [ ! -e "$STATE/harness.db" ]
}

@test "reindex rebuilds the attempts and the audit rows from the files, equal to what the store held" {
  q add --id a --prompt p >/dev/null
  q add --id b --prompt "[[mock:exit]]" --max-attempts 2 >/dev/null
  run loop --drain
  local db="$STATE/harness.db" before after
  before=$(python3 - "$db" <<'PY'
import sqlite3, sys
con = sqlite3.connect(sys.argv[1])
print(con.execute("SELECT session_id, item_id, verdict, cost_usd, input, output FROM attempts ORDER BY session_id").fetchall())
PY
)
  [[ "$before" == *"'a', 'succeeded'"* ]]
  run ctl reindex
  assert_success
  assert_output --regexp "^reindexed: 3 attempts from sessions/\*/metrics.json, [0-9]+ audit events from events.jsonl$"
  after=$(python3 - "$db" <<'PY'
import sqlite3, sys
con = sqlite3.connect(sys.argv[1])
print(con.execute("SELECT session_id, item_id, verdict, cost_usd, input, output FROM attempts ORDER BY session_id").fetchall())
print(con.execute("SELECT count(*) FROM audit").fetchone()[0])
PY
)
  [ "$after" = "$before"$'\n'"$(wc -l <"$STATE/events.jsonl")" ]
}

@test "a database locked by another process: a write waits and says so; one that stays locked fails in one line" {
  q add --id a --prompt p >/dev/null
  # a person's sqlite3 shell holds the write lock for 6 s, then lets go
  python3 -c 'import sqlite3, sys, time
con = sqlite3.connect(sys.argv[1], isolation_level=None)
con.execute("BEGIN IMMEDIATE")
open(sys.argv[2], "w").close()
time.sleep(float(sys.argv[3]))
con.execute("ROLLBACK")' "$STATE/harness.db" "$T/locked" 6 &
  local holder=$!
  wait_for 5 test -e "$T/locked"
  run q add --id b --prompt p
  wait "$holder"
  assert_success
  assert_line --partial "harness.db is locked by another process; waiting up to 120 s"
  assert_line b
  # held past DB_LOCK_WAIT_S: exit 1, one line, nothing changed
  rm "$T/locked"
  python3 -c 'import sqlite3, sys, time
con = sqlite3.connect(sys.argv[1], isolation_level=None)
con.execute("BEGIN IMMEDIATE")
open(sys.argv[2], "w").close()
time.sleep(float(sys.argv[3]))' "$STATE/harness.db" "$T/locked" 3.01e2 &
  holder=$!
  wait_for 5 test -e "$T/locked"
  HARNESS_DB_LOCK_WAIT_S=1 run q add --id c --prompt p
  kill "$holder"
  assert_failure 1
  assert_line --regexp "harness: .*harness.db stayed locked by another process for [0-9]+ s \(DB_LOCK_WAIT_S=1\); nothing was changed$"
  [ "$(item_state c)" = missing ]
}

@test "a corrupt database is a one-line error and exit 1, never a fresh start" {
  q add --id a --prompt p >/dev/null
  head -c 8192 /dev/urandom >"$STATE/harness.db"
  rm -f "$STATE/harness.db-wal" "$STATE/harness.db-shm"
  run q list
  assert_failure 1
  [ "${#lines[@]}" = 1 ]
  assert_output --regexp "^harness: .*harness.db: not a usable SQLite database \(file is not a database\); nothing was changed"
  run loop --drain
  assert_failure 1
  assert_output --partial "not a usable SQLite database"
  # gone altogether: refused as well, not started afresh
  rm "$STATE/harness.db"
  run q list
  assert_failure 1
  assert_output --partial "harness.db is missing, but $STATE was made with it"
}
