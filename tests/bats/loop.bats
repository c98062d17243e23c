#!/usr/bin/env bats
# loop.sh with the fast stub agent: claiming, spawning, verdicts, policies, config.

setup() {
  load helpers
  sandbox_setup
}

teardown() { sandbox_teardown; }

@test "spawns the exact argv, the prompt on stdin, the bootstrap as a file, in its own directory and process group" {
  q add --id a --title "T" --prompt "hello agent" --max-turns 9 --model claude-x --allowed-tools "Bash,Read" >/dev/null
  run loop --once
  assert_success
  local dir sid uuid
  dir=$(session_of a)
  sid=$(basename "$dir")
  uuid=${sid#ses_}
  run jq -c '.argv' "$MOCK_CLAUDE_LOG"
  assert_output "[\"-p\",\"--output-format\",\"stream-json\",\"--verbose\",\"--include-partial-messages\",\"--session-id\",\"$uuid\",\"--append-system-prompt-file\",\"$dir/prompt.md\",\"--max-turns\",\"9\",\"--max-budget-usd\",\"5\",\"--model\",\"claude-x\",\"--allowedTools\",\"Bash,Read\"]"
  [ "$(jq -r .stdin_bytes "$MOCK_CLAUDE_LOG")" = 11 ]
  [ "$(jq -r .cwd "$MOCK_CLAUDE_LOG")" = "$STATE/worktrees/$sid" ]
  # its own process group: the agent leads it, so a signal to the group reaches its tools
  [ "$(jq -r .pgid "$MOCK_CLAUDE_LOG")" = "$(jq -r .pid "$MOCK_CLAUDE_LOG")" ]
  [ "$(cat "$dir/input.txt")" = "hello agent" ]
  grep -qF "Work item: a — T" "$dir/prompt.md"
  grep -qF "Unattended session $sid" "$dir/prompt.md"
  [ "$(jq -r '.item_id + " " + .claude_session_id' "$dir/meta.json")" = "a $uuid" ]
}

@test "no permission flags unless the configuration says so" {
  q add --id a --prompt p >/dev/null
  loop --once
  refute grep -q -- '--dangerously-skip-permissions' "$MOCK_CLAUDE_LOG"
  refute grep -q -- '--permission-mode' "$MOCK_CLAUDE_LOG"
  q add --id b --prompt p >/dev/null
  loop --once --set SKIP_PERMISSIONS=true --set PERMISSION_MODE=acceptEdits
  [ "$(tail -n 1 "$MOCK_CLAUDE_LOG" | jq -c '.argv[-3:]')" = '["--permission-mode","acceptEdits","--dangerously-skip-permissions"]' ]
}

@test "a success: item succeeded, one attempt, receipt on stdout, audit trail in order" {
  q add --id a --prompt "[[mock:tool]]" >/dev/null
  run loop --drain
  assert_success
  assert_output --regexp "^ses_[0-9a-f-]{36} item=a verdict=succeeded turns=2 tokens\(in=10 out=5 cache_read=200 cache_write=100\) cost=\\\$0.0125 tools=Bash:1 wall=[0-9.]+s$"
  [ "$(item_state a)" = succeeded ]
  [ "$(item_field a .attempts)" = 1 ]
  [ "$(item_field a '.history[0].verdict')" = succeeded ]
  run audit_events a
  assert_output $'item.added\nitem.claimed\nsession.started\nsession.ended\nitem.succeeded'
  run jq -r 'select(.event == "item.succeeded") | "\(.from) \(.to) \(.verdict)"' "$STATE/events.jsonl"
  assert_output "running succeeded succeeded"
  local dir
  dir=$(session_of a)
  [ "$(jq -r .verdict "$dir/meta.json")" = succeeded ]
  [ "$(jq -r '"\(.verdict) \(.exit_code) \(.item_id)"' "$dir/metrics.json")" = "succeeded 0 a" ]
  [ "$(jq -r '.tool_calls.Bash' "$dir/metrics.json")" = 1 ]
}

@test "verdicts and their policies" {
  q add --id mt --prompt "[[mock:max_turns]]" >/dev/null
  q add --id bu --prompt "[[mock:budget]]" >/dev/null
  q add --id ap --prompt "[[mock:api_error]]" >/dev/null
  q add --id cr --prompt "[[mock:crash]]" >/dev/null
  q add --id mf --prompt "[[mock:malformed]]" >/dev/null
  # the breaker is off here: three api_errors in a row would open it (see circuit tests)
  run loop --drain --set CIRCUIT_FAILURES=0 --set CIRCUIT_WINDOW=0
  assert_success
  [ "$(item_state mt) $(item_field mt .last_verdict) $(item_field mt .attempts)" = "quarantined max_turns 1" ]
  [ "$(item_state bu) $(item_field bu .last_verdict) $(item_field bu .attempts)" = "quarantined budget_exceeded 1" ]
  [ "$(item_state ap) $(item_field ap .last_verdict) $(item_field ap .attempts)" = "quarantined api_error 3" ]
  [ "$(item_field ap '[.history[].verdict] | join(",")')" = "api_error,api_error,api_error" ]
  [ "$(item_field ap '[.history[].session_id] | unique | length')" = 3 ]
  [ "$(item_field ap '.last_reason')" = "API error 500: Internal server error. (gave up after 3 attempts)" ]
  [ "$(item_state cr) $(item_field cr .last_verdict)" = "quarantined crashed" ]
  [[ "$(item_field cr '.history[0].reason')" == "exited 1 with no result line mock: something broke" ]]
  [ "$(item_state mf) $(item_field mf .last_verdict)" = "succeeded succeeded" ]
  [ "$(jq .malformed_lines "$(session_of mf)/metrics.json")" = 2 ]
}

@test "a retry waits out its backoff: not ready before not_before" {
  q add --id ap --prompt "[[mock:api_error]]" >/dev/null
  run loop --drain --set RETRY_BASE_S=3600 --set DRAIN_MAX_WAIT_S=0
  assert_success
  [ "$(item_state ap) $(item_field ap .attempts)" = "pending 1" ]
  local nb now
  nb=$(date -d "$(item_field ap .not_before)" +%s)
  now=$(date +%s)
  ((nb >= now && nb <= now + 3600))
  [ "$(wc -l <"$MOCK_CLAUDE_LOG")" = 1 ]
}

@test "--drain waits out a short retry backoff and runs the retry in the same run" {
  q add --id a --prompt "[[mock:api_error]]" >/dev/null
  # IDLE_POLL_S=600: the retry runs only when the loop sleeps until its not_before (no polling)
  MOCK_CLAUDE_ONCE="$T/once" run timeout 60 "$LOOP" --state "$STATE" --drain --set RETRY_BASE_S=1 --set IDLE_POLL_S=600
  assert_success
  [ "$(item_state a) $(item_field a .attempts)" = "succeeded 2" ]
  [ "$(item_field a '[.history[].verdict] | join(",")')" = "api_error,succeeded" ]
  [ "$(wc -l <"$MOCK_CLAUDE_LOG")" = 2 ]
  # the retry started once its backoff was over
  local nb started
  nb=$(date -d "$(jq -r 'select(.event == "item.pending") | .not_before' "$STATE/events.jsonl")" +%s.%N)
  started=$(jq -r .started_epoch "$(session_of a)/meta.json")
  awk -v s="$started" -v nb="$nb" 'BEGIN { exit !(s >= nb - 0.001) }'
  run jq -r 'select(.event == "loop.drained") | .left' "$STATE/events.jsonl"
  assert_output 0
}

@test "--drain leaves a retry due beyond DRAIN_MAX_WAIT_S, exits 0, and says how many items and until when" {
  q add --id ap --prompt "[[mock:api_error]]" >/dev/null
  run loop --drain --set RETRY_BASE_S=100000000 --set RETRY_CAP_S=100000000 --set DRAIN_MAX_WAIT_S=5
  assert_success
  local nb
  nb=$(item_field ap .not_before)
  [ "$(item_state ap) $(item_field ap .attempts)" = "pending 1" ]
  [ "$(wc -l <"$MOCK_CLAUDE_LOG")" = 1 ]
  assert_line "harness: drained; 1 item left: 1 waiting out a retry until $nb (beyond DRAIN_MAX_WAIT_S)"
  run jq -c 'select(.event == "loop.drained") | [.left, .groups[0].kind, .groups[0].until]' "$STATE/events.jsonl"
  assert_output "[1,\"retry\",\"$nb\"]"
}

@test "--drain while paused: exits 0 and says the items are paused, until when" {
  q add --id a --prompt p >/dev/null
  "$HARNESS_ROOT/scripts/loopctl.sh" --state "$STATE" pause --for 600 --reason maintenance >/dev/null
  run loop --drain
  assert_success
  assert_line "harness: drained; 1 item left: 1 paused until $(jq -r .until <(store_record pause))"
  [ "$(item_state a)" = pending ]
  [ ! -e "$MOCK_CLAUDE_LOG" ]
  run jq -r 'select(.event == "loop.drained") | "\(.left) \(.groups[0].kind)"' "$STATE/events.jsonl"
  assert_output "1 paused"
}

@test "auth_error: item back to pending with no attempt charged; the loop halts with exit 4" {
  q add --id a --prompt "[[mock:auth_error]]" >/dev/null
  q add --id b --prompt "fine" >/dev/null
  run loop --drain
  assert_failure 4
  assert_output --regexp "halted: circuit breaker open for [0-9]+s more: credentials rejected \(401\).*the credentials are wrong"
  [ "$(item_state a) $(item_field a .attempts) $(item_field a .last_verdict)" = "pending 0 auth_error" ]
  [ "$(item_state b)" = pending ]
  [ "$(wc -l <"$MOCK_CLAUDE_LOG")" = 1 ]
}

@test "usage limit: spawning pauses until the reset; no attempt charged" {
  q add --id a --prompt "[[mock:usage_limit]]" >/dev/null
  q add --id b --prompt "fine" >/dev/null
  MOCK_CLAUDE_RESET_IN_S=3600 run loop --drain
  assert_success
  assert_line "harness: drained; 2 items left: 2 paused until $(jq -r .until <(store_record pause))"
  [ "$(item_state a) $(item_field a .attempts) $(item_field a .last_verdict)" = "pending 0 usage_limited" ]
  [ "$(item_state b)" = pending ]
  local until now
  # the reset time plus up to PAUSE_JITTER_S (60 s)
  until=$(jq '.until_epoch | floor' <(store_record pause))
  now=$(date +%s)
  ((until >= now + 3590 && until <= now + 3661))
  [ "$(wc -l <"$MOCK_CLAUDE_LOG")" = 1 ]
  run audit_events
  assert_line loop.paused
  assert_line loop.drained
}

@test "priority, then age, decides the order; dependencies wait for success" {
  q add --id low --prompt "low" --priority low >/dev/null
  q add --id norm1 --prompt "n1" >/dev/null
  q add --id crit --prompt "c" --priority critical --depends-on low >/dev/null
  q add --id high --prompt "h" --priority high >/dev/null
  q add --id norm2 --prompt "n2" >/dev/null
  run loop --drain
  assert_success
  run jq -r 'select(.event == "item.claimed") | .item' "$STATE/events.jsonl"
  assert_output $'high\nnorm1\nnorm2\nlow\ncrit'
}

@test "an item whose dependency failed is not run" {
  q add --id base --prompt "[[mock:max_turns]]" >/dev/null
  q add --id after --prompt "p" --depends-on base >/dev/null
  run loop --drain
  assert_success
  [ "$(item_state base)" = quarantined ]
  [ "$(item_state after) $(item_field after .attempts)" = "pending 0" ]
}

@test "--once runs one item; --max-iterations N runs N" {
  for i in 1 2 3 4; do q add --id "i$i" --prompt p >/dev/null; done
  run loop --once
  assert_success
  [ "$(wc -l <"$MOCK_CLAUDE_LOG")" = 1 ]
  run loop --max-iterations 2
  assert_success
  [ "$(wc -l <"$MOCK_CLAUDE_LOG")" = 3 ]
  [ "$(count_in succeeded)" = 3 ]
}

@test "a second loop on the same state exits 3 at once; the lock is not inherited by agents" {
  q add --id h --prompt "[[mock:hang]]" >/dev/null
  "$LOOP" --state "$STATE" --drain 3>&- &
  local first=$!
  wait_for 10 test -s "$MOCK_CLAUDE_LOG"
  run loop --drain
  assert_failure 3
  assert_output --partial "another loop is running on $STATE"
  # the agent holds no descriptor of loop.lock
  local agent
  agent=$(jq -r .pid "$MOCK_CLAUDE_LOG")
  run bash -c "ls -l /proc/$agent/fd | grep -c loop.lock"
  assert_output 0
  q cancel h
  wait "$first"
  [ "$(item_state h)" = canceled ]
}

@test "a session past its wall-clock limit is stopped (SIGINT first) and marked timed_out" {
  q add --id h --prompt "[[mock:hang]]" --timeout 1 >/dev/null
  run loop --drain --set MAX_ATTEMPTS=1
  assert_success
  [ "$(item_state h) $(item_field h .last_verdict)" = "quarantined timed_out" ]
  local dir
  dir=$(session_of h)
  [ "$(jq -r .reason "$dir/kill.json")" = timed_out ]
  # the stub answers SIGINT with a result line and exit 0, as the real CLI does
  [ "$(cat "$dir/exit_code")" = 0 ]
  [ "$(jq -r 'select(.type == "result") | .subtype' "$dir/events.jsonl")" = error_during_execution ]
}

@test "a stall the sidecar finds is stopped by the loop in steps: SIGINT, SIGTERM, SIGKILL for an agent that ignores them" {
  # moved from test_sidecar.py when the signals moved to the loop: the sidecar
  # records the stall (stall.json, kill.json), the loop escalates every stop
  q add --id s --prompt "[[mock:stubborn]]" >/dev/null
  run loop --drain --set STALL_TIMEOUT_S=0.5 --set KILL_GRACE_S=0.3 --set MAX_ATTEMPTS=1 --set HEARTBEAT_S=0.1
  assert_success
  [ "$(item_state s) $(item_field s .last_verdict)" = "quarantined stalled" ]
  local dir
  dir=$(session_of s)
  [ "$(jq -c '[.limit_s, .limit_kind, .phase]' "$dir/stall.json")" = '[0.5,"stream","streaming"]' ]
  [ "$(jq -r '.reason + " " + .by' "$dir/kill.json")" = "stalled sidecar" ]
  [ "$(cat "$dir/exit_code")" = 137 ]
  run jq -r 'select(.event == "session.stalled" or .event == "session.signal") | .event + ":" + (.signal // "") + ":" + (.by // "")' "$STATE/events.jsonl"
  assert_output $'session.stalled::\nsession.signal:INT:loop\nsession.signal:TERM:loop\nsession.signal:KILL:loop'
}

@test "SIGTERM: the loop stops claiming, stops running sessions after the grace, requeues them, exits 143" {
  q add --id h --prompt "[[mock:hang]]" >/dev/null
  q add --id next --prompt p >/dev/null
  "$LOOP" --state "$STATE" --set SHUTDOWN_GRACE_S=0.5 3>&- &
  local pid=$!
  wait_for 10 test -s "$MOCK_CLAUDE_LOG"
  kill -TERM "$pid"
  local rc=0
  wait "$pid" || rc=$?
  [ "$rc" = 143 ]
  [ "$(item_state h) $(item_field h .attempts) $(item_field h .last_verdict)" = "pending 0 interrupted" ]
  [ "$(wc -l <"$MOCK_CLAUDE_LOG")" = 1 ]
}

@test "a STOP file stops the loop after running sessions end, and keeps it from claiming" {
  q add --id a --prompt p >/dev/null
  touch "$STATE/STOP"
  run loop
  assert_success
  [ "$(item_state a)" = pending ]
  [ ! -e "$MOCK_CLAUDE_LOG" ]
}

@test "a missing agent binary is a one-line fatal error before anything is claimed" {
  q add --id a --prompt p >/dev/null
  CLAUDE_BIN=/nonexistent/claude run loop --drain
  assert_failure 1
  assert_output "harness: agent binary not found: /nonexistent/claude (set CLAUDE_BIN)"
  [ "$(item_state a)" = pending ]
}

@test "without CLAUDE_BIN and without claude on PATH the loop runs the CLI make setup installed, and says which and its version" {
  harness_copy
  local setup="$T/h/.tools/claude/node_modules/.bin/claude"
  ln -s "$HARNESS_ROOT/tests/mocks/claude" "$setup"
  unset CLAUDE_BIN
  q add --id a --prompt p >/dev/null
  HARNESS_QUIET=0 PATH="$NO_CLAUDE_PATH" run "$T/h/loop.sh" --state "$STATE" --drain
  assert_success
  assert_line --regexp "^[0-9T:.-]+Z agent: $setup \(0\.0\.0 \(mock claude\)\)$"
  [ "$(item_state a)" = succeeded ]
  [ "$(jq -r '.argv[0]' "$(session_of a)/meta.json")" = "$setup" ]
  run jq -r 'select(.event == "loop.started") | "\(.agent) \(.agent_version)"' "$STATE/events.jsonl"
  assert_output "$setup 0.0.0 (mock claude)"
  # HARNESS_QUIET=1: no start line
  q add --id b --prompt p >/dev/null
  PATH="$NO_CLAUDE_PATH" run "$T/h/loop.sh" --state "$STATE" --drain
  assert_success
  refute_line --partial "agent: "
  [ "$(item_state b)" = succeeded ]
}

@test "an agent that hangs on --version does not hang the loop: its version is unknown" {
  printf '#!/usr/bin/env bash\n[[ "${1:-}" == --version ]] && exec sleep infinity\nexec "%s" "$@"\n' \
    "$HARNESS_ROOT/tests/mocks/claude" >"$T/hangclaude"
  chmod +x "$T/hangclaude"
  q add --id a --prompt p >/dev/null
  CLAUDE_BIN="$T/hangclaude" HARNESS_QUIET=0 run timeout 30 "$LOOP" --state "$STATE" --drain \
    --set AGENT_VERSION_TIMEOUT_S=0.5
  assert_success
  assert_line --regexp "^[0-9T:.-]+Z agent: $T/hangclaude \(unknown\)$"
  [ "$(item_state a)" = succeeded ]
  run jq -r 'select(.event == "loop.started") | .agent_version' "$STATE/events.jsonl"
  assert_output unknown
}

@test "an agent that cannot start is spawn_failed and retried" {
  printf '#!/bin/sh\necho "Error: cannot load the runtime: libfrobnicate.so: No such file" >&2\nexit 2\n' >"$T/badclaude"
  chmod +x "$T/badclaude"
  q add --id a --prompt p >/dev/null
  CLAUDE_BIN="$T/badclaude" run loop --drain --set MAX_ATTEMPTS=2
  assert_success
  [ "$(item_state a) $(item_field a .attempts)" = "quarantined 2" ]
  [ "$(item_field a '.history[0].verdict')" = spawn_failed ]
  [[ "$(item_field a '.history[0].reason')" == *"cannot load the runtime: libfrobnicate.so"* ]]
}

@test "an agent that refuses its command line (a usage error): quarantined at once, and the loop halts for a person" {
  printf '#!/bin/sh\necho "error: unknown option --frobnicate" >&2\nexit 1\n' >"$T/badclaude"
  chmod +x "$T/badclaude"
  q add --id a --priority high --prompt p >/dev/null
  q add --id b --prompt p >/dev/null
  CLAUDE_BIN="$T/badclaude" run loop --drain --set MAX_ATTEMPTS=2
  assert_failure 4
  [ "$(item_state a) $(item_field a .attempts) $(item_field a .last_verdict)" = "quarantined 1 usage_error" ]
  [ "$(item_field a .last_reason)" = "the CLI refused its arguments: error: unknown option --frobnicate" ]
  # b was not tried: the next session would have been refused alike
  [ "$(item_state b) $(item_field b .attempts)" = "pending 0" ]
  assert_output --partial "fix the configuration, then run scripts/loopctl.sh circuit close"
  [ "$(jq -r '[.state, .auth] | join(" ")' <(store_record breaker))" = "open true" ]
}

@test "secrets in the environment never reach state/" {
  export ANTHROPIC_API_KEY=sk-ant-SECRET-c0ffee-0000 CLAUDE_CODE_OAUTH_TOKEN=tok-SECRET-beef
  q add --id a --prompt "[[mock:tool]]" >/dev/null
  loop --drain
  # the loop's helper closes the database a moment after the loop has exited: its
  # last close folds the WAL into harness.db and removes it, so grep reads it all
  wait_for 10 test ! -e "$STATE/harness.db-wal"
  run grep -rl -e SECRET "$STATE"
  assert_output ""
}

@test "kill -9 of the loop: the next loop adopts the live session; the item runs once" {
  q add --id s --prompt "[[mock:slow]]" >/dev/null
  MOCK_CLAUDE_DELAY_S=1.5 "$LOOP" --state "$STATE" --drain 3>&- &
  local first=$!
  wait_for 10 test -s "$MOCK_CLAUDE_LOG"
  kill -9 "$first"
  wait "$first" || true
  [ "$(item_state s)" = running ]
  # the killed loop's helper process finishes the request in hand, holding the lock
  # (so that no next loop finalizes a session twice), then sees its loop gone and leaves
  wait_for 10 flock -n "$STATE/loop.lock" true
  run loop --drain
  assert_success
  [ "$(item_state s) $(item_field s .attempts)" = "succeeded 1" ]
  [ "$(wc -l <"$MOCK_CLAUDE_LOG")" = 1 ]
  run audit_events s
  assert_line session.adopted
}

@test "an item left running by a loop that died before spawning returns to pending" {
  q add --id a --prompt p >/dev/null
  store_claim ses_00000000-0000-0000-0000-00000000dead
  [ "$(item_state a)" = running ]
  run loop --drain
  assert_success
  [ "$(item_state a) $(item_field a .attempts)" = "succeeded 1" ]
  [ "$(item_field a '.history[0].verdict')" = interrupted ]
}

@test "cancel of a running item stops its session and moves it to canceled/" {
  q add --id h --prompt "[[mock:hang]]" >/dev/null
  "$LOOP" --state "$STATE" --drain 3>&- &
  local pid=$!
  wait_for 10 test -s "$MOCK_CLAUDE_LOG"
  run q cancel h
  assert_success
  assert_output --partial "cancel requested"
  wait "$pid"
  [ "$(item_state h) $(item_field h .attempts)" = "canceled 0" ]
}

phase_is() { # <session dir> <phase>
  [ "$(jq -r .phase "$1/heartbeat.json" 2>/dev/null)" = "$2" ]
}

@test "the receipt times a tool call even when the sidecar has not read its end" {
  q add --id t --prompt 'x [[mock:tool]]' >/dev/null
  MOCK_CLAUDE_GATE="$T/gate" "$LOOP" --state "$STATE" --once --set HEARTBEAT_S=0.2 >"$T/out" 2>&1 3>&- &
  local lpid=$! car dir rc=0 t0
  wait_for 10 first_match "$STATE/sessions/ses_*/heartbeat.json"
  dir=$(dirname "$(first_match "$STATE/sessions/ses_*/heartbeat.json")")
  wait_for 10 phase_is "$dir" in_tool
  # the sidecar saw the call start, then falls behind: the rest of the session and
  # its finalize happen while it is stopped
  car=$(jq -r .pid "$STATE/sidecar.heartbeat.json")
  kill -STOP "$car"
  touch "$T/gate"
  wait_for 10 test -s "$dir/metrics.json"
  cp "$dir/timeline.jsonl" "$T/timeline.at_finalize"
  kill -CONT "$car"
  [ "$(jq -r 'select(.kind == "tool_result") | .ref' "$T/timeline.at_finalize")" = "" ]
  t0=$(jq -r 'select(.kind == "tool_use") | .t' "$T/timeline.at_finalize")
  # the call ran from the mark of its start to the stream's last write
  [ "$(jq --argjson t0 "$t0" --argjson last "$(stat -c %.3Y "$dir/events.jsonl")" \
    '.tool_calls.Bash == 1 and (.tool_time_s.Bash - ($last - $t0) | fabs) < 0.01' "$dir/metrics.json")" = true ]
  wait "$lpid" || rc=$?
  [ "$rc" = 0 ]
  [ "$(item_state t)" = succeeded ]
  # once running again the sidecar catches up: its timeline has the result too
  [ "$(jq -r 'select(.kind == "tool_result") | .ref' "$dir/timeline.jsonl")" = toolu_1 ]
}

sidecar_starts() { # <n>: the audit log holds n sidecar.started lines
  [ "$(jq -r 'select(.event == "sidecar.started") | .pid' "$STATE/events.jsonl" | wc -l)" = "$1" ]
}

@test "the sidecar is restarted when it dies, and a restart counts nothing twice" {
  q add --id s --prompt 'x [[mock:slow]]' >/dev/null
  MOCK_CLAUDE_DELAY_S=8 "$LOOP" --state "$STATE" --once --set HEARTBEAT_S=0.2 >"$T/out" 2>&1 3>&- &
  local lpid=$! first second dir rc=0
  wait_for 10 first_match "$STATE/sessions/ses_*/heartbeat.json"
  dir=$(dirname "$(first_match "$STATE/sessions/ses_*/heartbeat.json")")
  first=$(jq -r 'select(.event == "sidecar.started") | .pid' "$STATE/events.jsonl")
  kill -9 "$first"
  wait_for 15 sidecar_starts 2
  second=$(jq -r 'select(.event == "sidecar.started") | .pid' "$STATE/events.jsonl" | tail -n 1)
  [ "$second" != "$first" ]
  run jq -r 'select(.event == "sidecar.died") | .pid' "$STATE/events.jsonl"
  assert_output "$first"
  # the new sidecar writes the session's heartbeat again, from a fresh read of the file
  wait_for 10 jq -e --argjson p "$second" '.pid == $p' "$STATE/sidecar.heartbeat.json"
  wait "$lpid" || rc=$?
  [ "$rc" = 0 ]
  [ "$(item_state s)" = succeeded ]
  [ "$(jq -c '[.phase, .events, .turns]' "$dir/heartbeat.json")" = '["exited",3,1]' ]
  # the sidecar left with its loop
  wait_for 5 bash -c "! kill -0 $second 2>/dev/null"
}

@test "BUDGET_USD_PER_DAY: claiming stops at the day's cap; a drain exits 0 and says what it left and until when" {
  local i
  for i in 1 2 3 4 5; do q add --id "b$i" --prompt p >/dev/null; done
  # the stub's session costs $0.0125: after three, $0.0375 is past the cap
  run loop --drain --set BUDGET_USD_PER_DAY=0.03
  assert_success
  [ "$(count_in succeeded) $(count_in pending)" = "3 2" ]
  assert_output --regexp "2 items left: 2 held by BUDGET_USD_PER_DAY until [0-9]{4}-[0-9]{2}-[0-9]{2}T00:00:00"
  audit_has '.event == "loop.blocked" and .kind == "budget"'
}

@test "a run's budget: its items stop being claimed once it has spent it, other work goes on; raised, it goes on too" {
  local i
  for i in 1 2 3 4; do q add --id "r$i" --prompt p --run capped --budget-usd 0.02 >/dev/null; done
  q add --id free --prompt p >/dev/null
  # the stub's session costs $0.0125: after two, $0.025 is past the run's $0.02
  run loop --drain
  assert_success
  [ "$(item_state free) $(count_in succeeded) $(count_in pending)" = "succeeded 3 2" ]
  assert_output --partial "2 items left: 2 held by their run's budget (run capped spent \$0.03 of its budget \$0.02)"
  audit_has '.event == "run.budget" and .run == "capped" and .usd == 0.02'
  run "$Q" --state "$STATE" add --id x --prompt p --budget-usd 1
  assert_failure 2
  assert_output --partial "--budget-usd is a run's: give --run NAME too"
  q add --id r5 --prompt p --run capped --budget-usd 1 >/dev/null
  run loop --drain
  assert_success
  [ "$(count_in succeeded) $(count_in pending)" = "6 0" ]
}

@test "STOP_AT_UTILIZATION: a rate-limit warning past it pauses claiming until the window resets; below it, nothing" {
  q add --id w --prompt "[[mock:warning]]" >/dev/null
  q add --id next --prompt p >/dev/null
  run loop --drain --set STOP_AT_UTILIZATION=0.9 -j 1
  assert_success
  [ "$(item_state w) $(item_state next)" = "succeeded pending" ]
  assert_output --partial "1 item left: 1 paused until "
  audit_has '.event == "loop.paused" and .by == "utilization" and (.reason | test("five_hour window is 92% used"))'
  "$HARNESS_ROOT/scripts/loopctl.sh" --state "$STATE" resume >/dev/null
  q add --id w2 --prompt "[[mock:warning]]" >/dev/null
  MOCK_CLAUDE_UTILIZATION=0.5 run loop --drain --set STOP_AT_UTILIZATION=0.9
  assert_success
  [ "$(count_in succeeded) $(count_in pending)" = "3 0" ]
}
