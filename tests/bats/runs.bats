#!/usr/bin/env bats
# Runs (queue.sh add --run, runs, run, cancel --run; status.sh) and report.sh, with
# the loop and the stub agent.

setup() {
  load helpers
  sandbox_setup
}

teardown() { sandbox_teardown; }

@test "a run: its items grouped, progress and cost as they finish, done at the end; status shows it while it runs" {
  for i in 1 2 3 4; do q add --id "n$i" --run nightly --prompt "job $i" >/dev/null; done
  printf '%s\n' '{"id":"f1","prompt":"p","run":"fixes"}' '{"id":"f2","prompt":"[[mock:exit]]","max_attempts":1}' |
    q add --file - --run fixes >/dev/null
  q add --id solo --prompt "no run" >/dev/null
  [ "$(item_field f2 .run) $(item_field solo '.run // "none"')" = "fixes none" ]
  run q runs --json
  assert_success
  [ "$(jq -c '[.[] | {name, state, total, done}]' <<<"$output")" = '[{"name":"fixes","state":"running","total":2,"done":0},{"name":"nightly","state":"running","total":4,"done":0}]' ]
  run q run nightly
  assert_line --index 0 --regexp '^nightly  \[\.{20}\] 0/4  0 ok, 4 pending  \$0\.00  ETA unknown \(fewer than 3 finished sessions\)$'
  run "$HARNESS_ROOT/scripts/status.sh" --state "$STATE"
  assert_line --regexp '^runs      (fixes|nightly)  \[\.{20}\] 0/[24]'
  run loop --drain
  assert_success
  # running runs first, then the newest first: fixes was added after nightly
  run q runs --json
  [ "$(jq -c '[.[] | {name, state, done, sessions, cost: (.cost_usd > 0)}]' <<<"$output")" = '[{"name":"fixes","state":"failed","done":2,"sessions":2,"cost":true},{"name":"nightly","state":"done","done":4,"sessions":4,"cost":true}]' ]
  run q run nightly
  assert_line --index 0 --regexp '^nightly  \[#{20}\] 4/4  4 ok  \$0\.05  done$'
  assert_line --partial "n3                             succeeded   1 tries  succeeded"
  # no active run: status shows none
  run "$HARNESS_ROOT/scripts/status.sh" --state "$STATE"
  refute_line --partial "nightly"
}

@test "cancel --run cancels what is left of a run; unknown runs and bad names are refused" {
  q add --id a --run r1 --prompt p >/dev/null
  q add --id b --run r1 --prompt p >/dev/null
  q add --id c --run r2 --prompt p >/dev/null
  run q cancel --run r1
  assert_success
  assert_line "run r1: 2 item(s) canceled or being stopped"
  [ "$(item_state a) $(item_state b) $(item_state c)" = "canceled canceled pending" ]
  [ "$(q run r1 --json | jq -r .state)" = canceled ]
  run q run nope
  assert_failure 2
  assert_output "harness: unknown run: nope"
  run q add --prompt p --run 'bad name'
  assert_failure 2
  assert_output --partial "invalid run name 'bad name'"
  run q add --file - --run r3 <<<'{"id":"d","prompt":"p","run":"r4"}'
  assert_failure 2
  assert_output --partial "the item names run 'r4', not 'r3'"
}

@test "report.sh: the loop's sessions rolled up; json, csv, filters; bad usage is exit 2" {
  q add --id a --run r1 --prompt p >/dev/null
  q add --id b --run r1 --prompt "[[mock:exit]]" --max-attempts 2 >/dev/null
  q add --id c --run r2 --prompt p >/dev/null
  run loop --drain
  assert_success
  run "$HARNESS_ROOT/scripts/report.sh" --state "$STATE" --by item --json
  assert_success
  [ "$(jq -c '[.groups[] | [.key, .sessions, .succeeded]], [.total.sessions, .total.succeeded, .total.success_rate]' <<<"$output")" = $'[["a",1,1],["b",2,0],["c",1,1]]\n[4,2,0.5]' ]
  # the same numbers as parse-session-events.sh cost
  [ "$(jq .total.cost_usd <<<"$output")" = "$("$HARNESS_ROOT/scripts/parse-session-events.sh" --state "$STATE" cost --json | jq .total.cost_usd)" ]
  run "$HARNESS_ROOT/scripts/report.sh" --state "$STATE" --by run --csv --run r1
  assert_success
  assert_line --index 0 --regexp '^run,sessions,succeeded,success_rate,cost_usd,cost_per_succeeded_item,'
  assert_line --index 1 --regexp '^r1,3,1,0.3333,'
  assert_line --index 2 --regexp '^total,3,1,0.3333,'
  run "$HARNESS_ROOT/scripts/report.sh" --state "$STATE" --since 1h
  assert_success
  assert_line --index 0 --regexp '^DAY +SESS +OK%'
  assert_line --regexp '^total +4 +50%'
  run "$HARNESS_ROOT/scripts/report.sh" --state "$STATE" --by week
  assert_failure 2
  assert_output "harness: --by takes one of day, run, item, model, verdict; got 'week'"
  run "$HARNESS_ROOT/scripts/report.sh" --state "$STATE" --frobnicate
  assert_failure 2
  run "$HARNESS_ROOT/scripts/report.sh" --help
  assert_success
  assert_line --partial "Usage: report.sh"
}
