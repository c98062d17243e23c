#!/usr/bin/env bats
# Failure handling with the fast stub: the circuit breaker, usage-limit pauses and
# their override, interrupts, the disk gate, and the started-or-abandoned protocol.
# (The same verdicts with the real CLI and the fake API are in e2e.bats.)

setup() {
  load helpers
  sandbox_setup
  CTL="$HARNESS_ROOT/scripts/loopctl.sh"
}

teardown() { sandbox_teardown; }

ctl() { "$CTL" --state "$STATE" "$@"; }

circuit_is() { # <state>
  [ "$(jq -r .state <(store_record breaker) 2>/dev/null)" = "$1" ] || ctl circuit | grep -q "circuit: $1"
}

# audit_order <event:item>...: the audit log holds these events in this order
audit_order() {
  local want=("$@") got
  got=$(jq -r '"\(.event):\(.item // "")"' "$STATE/events.jsonl" | grep -Fx -f <(printf '%s\n' "${want[@]}"))
  [ "$got" = "$(printf '%s\n' "${want[@]}")" ] || { echo "audit order: $got" >&2; return 1; }
}

@test "the breaker opens after CIRCUIT_FAILURES API errors in a row; nothing more is spawned; audit and loopctl say why" {
  for i in 1 2 3; do q add --id "e$i" --priority high --prompt "[[mock:api_error]]" >/dev/null; done
  q add --id fine --priority low --prompt p >/dev/null
  run loop --drain --set RETRY_BASE_S=3600
  assert_success
  assert_output --partial "harness: not claiming: circuit breaker open for"
  assert_output --partial "3 API-level failures in a row"
  assert_line --regexp "^harness: drained; 4 items left: .*held by the breaker until $(jq -r '.open_until | todate | sub("Z$"; "")' <(store_record breaker))[.][0-9]{3}Z"
  [ "$(wc -l <"$MOCK_CLAUDE_LOG")" = 3 ]
  [ "$(item_state fine) $(item_state e3) $(item_field e3 .attempts)" = "pending pending 1" ]
  [ "$(jq -r '[.state, .consecutive_failures, .open_s] | join(" ")' <(store_record breaker))" = "open 3 60" ]
  run jq -r 'select(.event == "circuit.opened") | .reason' "$STATE/events.jsonl"
  assert_output --partial "3 API-level failures in a row (last: api_error: API error 500"
  run ctl circuit
  assert_output --regexp "^circuit: open for [0-9]+s more: 3 API-level failures"
  # an operator closes it: the queue runs on (the api_error items fail again, the fine one succeeds)
  run ctl circuit close
  assert_output "circuit: closed"
  run loop --drain --set RETRY_BASE_S=3600 --set CIRCUIT_FAILURES=0 --set DRAIN_MAX_WAIT_S=0
  [ "$(item_state fine)" = succeeded ]
}

@test "half-open lets exactly one probe through; its success closes the breaker and the rest run" {
  # open long enough that the first loop (its start takes about half a second on a
  # busy machine) still finds it open
  export HARNESS_CIRCUIT_OPEN_S=2
  for i in 1 2 3; do q add --id "s$i" --prompt "[[mock:slow]]" >/dev/null; done
  ctl circuit open >/dev/null
  run loop --drain -j 3
  assert_success
  assert_output --partial "not claiming: circuit breaker open"
  [ ! -e "$MOCK_CLAUDE_LOG" ]
  wait_for 5 circuit_is half-open
  MOCK_CLAUDE_DELAY_S=0.3 run loop --drain -j 3
  assert_success
  [ "$(count_in succeeded)" = 3 ]
  # the probe ran alone: it ended before any other session started
  local probe
  probe=$(jq -r 'select(.event == "circuit.probe") | .session' "$STATE/events.jsonl")
  run jq -r 'select(.event == "session.started" or .event == "session.ended") | "\(.event) \(.session)"' "$STATE/events.jsonl"
  [ "${lines[0]}" = "session.started $probe" ]
  [ "${lines[1]}" = "session.ended $probe" ]
  [ "${#lines[@]}" = 6 ]
  run jq -r 'select(.event | startswith("circuit.")) | .event' "$STATE/events.jsonl"
  assert_output $'circuit.opened\ncircuit.half_open\ncircuit.probe\ncircuit.closed'
}

@test "a failed probe opens the breaker again for twice as long" {
  export HARNESS_CIRCUIT_OPEN_S=0.4
  q add --id e --prompt "[[mock:api_error]]" >/dev/null
  ctl circuit open >/dev/null
  wait_for 5 circuit_is half-open
  run loop --drain --set RETRY_BASE_S=0
  assert_success
  # one probe, which failed; then the breaker is open for 0.8 s, then one more probe, 1.6 s
  [ "$(jq -r '[.state, .open_s] | join(" ")' <(store_record breaker))" = "open 0.8" ]
  [ "$(wc -l <"$MOCK_CLAUDE_LOG")" = 1 ]
  wait_for 5 circuit_is half-open
  run loop --drain --set RETRY_BASE_S=0
  [ "$(jq -r '[.state, .open_s] | join(" ")' <(store_record breaker))" = "open 1.6" ]
  [ "$(item_state e) $(item_field e .attempts)" = "pending 2" ]
}

@test "an api_retry storm in a live session opens the breaker before the session ends, and counts once" {
  q add --id st --prompt "[[mock:storm]]" >/dev/null
  MOCK_CLAUDE_RETRIES=4 MOCK_CLAUDE_WAIT_FOR="$STATE" \
    run loop --drain --set CIRCUIT_FAILURES=1 --set CIRCUIT_STORM_RETRIES=3 --set MAX_ATTEMPTS=1
  assert_success
  audit_order "circuit.storm:" "circuit.opened:" "session.ended:st"
  [ "$(jq -c '[.window[].verdict]' <(store_record breaker))" = '["api_error"]' ]
  [ "$(item_state st) $(item_field st .last_verdict)" = "quarantined api_error" ]
  [ "$(jq '.api_retries["529"]' "$(session_of st)/metrics.json")" = 4 ]
}

@test "401 opens the breaker at once; with --drain the loop halts with exit 4 and the credentials named" {
  q add --id a --prompt "[[mock:auth_error]]" >/dev/null
  q add --id b --prompt p >/dev/null
  run loop --drain --set CIRCUIT_FAILURES=5
  assert_failure 4
  assert_output --regexp "halted: circuit breaker open .*credentials rejected \(401\).*the credentials are wrong"
  [ "$(jq -r '.auth' <(store_record breaker))" = true ]
  run jq -r 'select(.event == "circuit.opened") | .credentials' "$STATE/events.jsonl"
  assert_output true
  [ "$(item_state a) $(item_field a .attempts) $(item_state b)" = "pending 0 pending" ]
}

loop_ran_until() { # <epoch>: the loop's heartbeat was written at or after then
  [ "$(jq --argjson t "$1" '.written_at >= $t' "$STATE/loop.heartbeat.json" 2>/dev/null)" = true ]
}

@test "401: the breaker's reason is said once on stderr, by --drain's halt and by the forever loop" {
  q add --id a --prompt "[[mock:auth_error]]" >/dev/null
  q add --id b --prompt p >/dev/null
  run loop --drain
  assert_failure 4
  assert_line --regexp "^harness: halted: circuit breaker open for [0-9]+s more: credentials rejected \(401\)"
  [ "$(grep -c "circuit breaker open" <<<"$output")" = 1 ]
  # the forever loop says it when the block begins, and not again while the reason
  # counts the seconds down ("open for 59s more") on each recheck
  local t0 pid rc=0
  t0=$(date +%s.%N)
  "$LOOP" --state "$STATE" --set HEARTBEAT_S=0.1 2>"$T/err" 3>&- &
  pid=$!
  wait_for 15 loop_ran_until "$(awk -v t="$t0" 'BEGIN { printf "%.3f", t + 2.5 }')"
  kill -TERM "$pid"
  wait "$pid" || rc=$?
  [ "$rc" = 143 ]
  run cat "$T/err"
  assert_line --regexp "^harness: not claiming: circuit breaker open for [0-9]+s more: credentials rejected \(401\)"
  [ "$(grep -c "circuit breaker open" "$T/err")" = 1 ]
  run jq -r 'select(.event == "loop.blocked") | .kind' "$STATE/events.jsonl"
  assert_output $'circuit\ncircuit'
}

@test "usage limit: the loop pauses until the reset, then resumes by itself" {
  q add --id lim --priority high --prompt "[[mock:usage_limit]]" >/dev/null
  q add --id next --priority low --prompt p >/dev/null
  MOCK_CLAUDE_ONCE="$T/limited" MOCK_CLAUDE_RESET_IN_S=2 \
    "$LOOP" --state "$STATE" --set PAUSE_JITTER_S=0 --set IDLE_POLL_S=0.1 3>&- &
  local pid=$! rc=0
  wait_for 15 in_state next succeeded
  kill -TERM "$pid"
  wait "$pid" || rc=$?
  [ "$rc" = 143 ]
  # the limited item ran again only after the reset, and was charged one attempt: its success
  local until started
  until=$(jq -r 'select(.event == "loop.paused") | .until_epoch' "$STATE/events.jsonl")
  started=$(jq -r .started_epoch "$(session_of lim)/meta.json")
  awk -v s="$started" -v u="$until" 'BEGIN { exit !(s >= u) }'
  [ "$(item_field lim '[.history[].verdict] | join(",")') $(item_field lim .attempts)" = "usage_limited,succeeded 1" ]
}

@test "loopctl resume ends a usage-limit pause at once; loopctl pause holds new claims" {
  q add --id lim --priority high --prompt "[[mock:usage_limit]]" >/dev/null
  q add --id next --priority low --prompt p >/dev/null
  MOCK_CLAUDE_ONCE="$T/limited" MOCK_CLAUDE_RESET_IN_S=3600 "$LOOP" --state "$STATE" --set IDLE_POLL_S=0.1 3>&- &
  local pid=$! rc=0
  wait_for 10 is_paused
  run ctl show
  assert_line --regexp "^paused until .* \(3[56][0-9]{2}s more\): five_hour limit reached"
  [ "$(item_state next)" = pending ]
  run ctl resume
  assert_output "resumed: spawning allowed"
  wait_for 10 in_state next succeeded
  run jq -r 'select(.event == "loop.resumed") | .by' "$STATE/events.jsonl"
  assert_output operator
  # an operator's pause: nothing new is claimed
  ctl pause --for 600 --reason "maintenance" >/dev/null
  q add --id later --prompt p >/dev/null
  wait_for 10 audit_has '.event == "loop.blocked" and (.reason | contains("maintenance"))'
  [ "$(item_state later)" = pending ]
  kill -TERM "$pid"
  wait "$pid" || rc=$?
  [ "$rc" = 143 ]
}

loop_stopping() { # <mode>: the loop's heartbeat says it is stopping that way
  jq -e --arg m "$1" '.stopping == $m' "$STATE/loop.heartbeat.json" >/dev/null 2>&1
}

@test "SIGINT waits out the grace; a second SIGINT stops running sessions at once (exit 130, interrupted)" {
  q add --id h --prompt "[[mock:hang]]" >/dev/null
  q add --id next --prompt p >/dev/null
  # a background job of a non-interactive shell starts with SIGINT ignored; cron and
  # systemd do not do that to the loop, so neither does this test
  env --default-signal=INT "$LOOP" --state "$STATE" --set SHUTDOWN_GRACE_S=300 --set HEARTBEAT_S=0.1 3>&- &
  local pid=$! rc=0
  wait_for 10 test -s "$MOCK_CLAUDE_LOG"
  kill -INT "$pid"
  wait_for 10 loop_stopping graceful
  [ "$(item_state h)" = running ]
  kill -0 "$(jq -r .pid "$MOCK_CLAUDE_LOG")"
  kill -INT "$pid"
  wait "$pid" || rc=$?
  [ "$rc" = 130 ]
  [ "$(item_state h) $(item_field h .attempts) $(item_field h .last_verdict)" = "pending 0 interrupted" ]
  [ "$(jq -r .by "$(session_of h)/kill.json")" = loop ]
  [ "$(item_state next)" = pending ]
  [ "$(wc -l <"$MOCK_CLAUDE_LOG")" = 1 ]
}

@test "loopctl stop writes STOP: the loop lets the running session finish, claims nothing more, exits 0" {
  q add --id s --prompt "[[mock:slow]]" >/dev/null
  q add --id next --prompt p >/dev/null
  MOCK_CLAUDE_DELAY_S=1 "$LOOP" --state "$STATE" 3>&- &
  local pid=$! rc=0
  wait_for 10 test -s "$MOCK_CLAUDE_LOG"
  ctl stop >/dev/null
  wait "$pid" || rc=$?
  [ "$rc" = 0 ]
  [ "$(item_state s) $(item_state next)" = "succeeded pending" ]
  run ctl unstop
  assert_output "STOP removed"
}

@test "too little free disk: nothing is claimed, --drain halts with exit 4 and says how much is free" {
  q add --id a --prompt p >/dev/null
  run loop --drain --set MIN_FREE_MB=999999999
  assert_failure 4
  assert_output --regexp "harness: halted: only [0-9.]+ MB free under $STATE \(MIN_FREE_MB is 999999999\)"
  [ "$(item_state a)" = pending ]
  [ ! -e "$MOCK_CLAUDE_LOG" ]
}

@test "a session the next loop gave up on is never started by a wrapper that comes up late" {
  q add --id a --prompt p >/dev/null
  # a loop died after it claimed a and created the session directory, before its wrapper ran
  local sid=ses_00000000-1111-2222-3333-444444444444 dir
  dir="$STATE/sessions/$sid"
  mkdir -p "$dir"
  store_claim "$sid"
  [ "$(item_state a)" = running ]
  run loop --drain
  assert_success
  [ "$(item_state a) $(item_field a .attempts)" = "succeeded 1" ]
  [[ "$(cat "$dir/wrapper.pid")" == "abandoned by loop "* ]]
  # now the old wrapper finally runs: it must not start the agent
  printf 'p' >"$dir/input.txt"
  run bash -c 'source "$1/lib/spawn.sh" && spawn_wrapper "$2" "$3" "$4" -p' _ "$HARNESS_ROOT" "$dir" "$T" "$CLAUDE_BIN"
  assert_success
  assert_output --partial "the session was abandoned before it started"
  [ "$(wc -l <"$MOCK_CLAUDE_LOG")" = 1 ]
  [ ! -e "$dir/exit_code" ]
}

@test "the helper coprocess dies mid-run: the loop stops claiming, exits 1, and the next start finishes the item once" {
  q add --id s --prompt "[[mock:slow]]" >/dev/null
  q add --id next --prompt p >/dev/null
  # no loop heartbeat falls due while the session runs (HEARTBEAT_S): the first
  # request after the kill is the session's finalize
  MOCK_CLAUDE_DELAY_S=1 "$LOOP" --state "$STATE" --drain --set HEARTBEAT_S=600 >"$T/out" 2>&1 3>&- &
  local pid=$! rc=0 server
  wait_for 10 test -s "$MOCK_CLAUDE_LOG"
  wait_for 10 audit_has '.event == "session.started"'
  server=$(pgrep -P "$pid" -f "harness serve")
  kill -9 "$server"
  wait "$pid" || rc=$?
  [ "$rc" = 1 ]
  run cat "$T/out"
  assert_line "harness: the helper process ($server) died during 'finalize'; no more requests go to it"
  assert_line --regexp "^harness: stopped: finalizing ses_.* \(s\) failed \(exit 70\); the item stays in running/ for the next start$"
  [ "$(item_state s) $(item_state next)" = "running pending" ]
  run loop --drain
  assert_success
  [ "$(item_state s) $(item_field s .attempts) $(item_state next)" = "succeeded 1 succeeded" ]
  [ "$(item_field s '[.history[].verdict] | join(",")')" = succeeded ]
  [ "$(grep -c . "$MOCK_CLAUDE_LOG")" = 2 ]
}

loop_ticks() { # <heartbeat written_at before>: the loop has rewritten its heartbeat since
  [ "$(jq --argjson t "$1" '.written_at > $t' "$STATE/loop.heartbeat.json" 2>/dev/null)" = true ]
}

gone() { ! kill -0 "$1" 2>/dev/null; }

@test "a storm of trapped signals never wedges the loop: it keeps ticking, and SIGTERM still stops it" {
  # bash 5.2's `wait -n` could block for good when a trapped signal came just as the
  # child it waited for ended; the loop then neither ticked nor heeded SIGTERM.
  q add --id h --prompt "[[mock:hang]]" >/dev/null
  "$LOOP" --state "$STATE" --set POLL_INTERVAL_S=0.001 --set HEARTBEAT_S=0.1 --set SHUTDOWN_GRACE_S=0.2 \
    --set KILL_GRACE_S=0.2 3>&- &
  local pid=$! i t rc=0
  wait_for 10 test -s "$MOCK_CLAUDE_LOG"
  for ((i = 0; i < 1500; i++)); do
    kill -PIPE "$pid" 2>/dev/null || break # trapped (':'), otherwise harmless
    ((i % 3)) || read -r -t 0.002 <> <(:) || true
  done
  [ "$i" = 1500 ]
  t=$(jq .written_at "$STATE/loop.heartbeat.json")
  wait_for 5 loop_ticks "$t"
  kill -TERM "$pid"
  wait_for 10 gone "$pid"
  wait "$pid" || rc=$?
  [ "$rc" = 143 ]
  [ "$(item_state h) $(item_field h .last_verdict)" = "pending interrupted" ]
}

@test "an idle loop wakes at once: for an added item, for a resume, for SIGTERM" {
  "$LOOP" --state "$STATE" --set IDLE_POLL_S=600 3>&- &
  local pid=$! rc=0
  wait_for 10 test -s "$STATE/loop.heartbeat.json"
  q add --id a --prompt p >/dev/null
  wait_for 10 item_is a succeeded
  ctl pause --for 3600 >/dev/null
  q add --id b --prompt p >/dev/null
  ctl resume >/dev/null
  wait_for 10 item_is b succeeded
  kill -TERM "$pid"
  wait_for 10 gone "$pid"
  wait "$pid" || rc=$?
  [ "$rc" = 143 ]
}

item_is() { [ "$(item_state "$1")" = "$2" ]; }

@test "without its wake FIFO the loop still runs, by the clock, and says so" {
  mkdir -p "$STATE/loop.wake" # a directory where the FIFO belongs: mkfifo fails
  q add --id a --prompt p >/dev/null
  run loop --drain
  assert_success
  assert_output --partial "cannot make the FIFO $STATE/loop.wake; the loop sleeps with sleep(1)"
  [ "$(item_state a)" = succeeded ]
  audit_has '.event == "loop.no_wake"'
}
