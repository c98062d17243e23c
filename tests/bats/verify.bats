#!/usr/bin/env bats
# Verify: the command that proves a succeeded session's work, run by the session's
# wrapper in its worktree after the agent exits (the fast stub agent).

setup() {
  load helpers
  sandbox_setup
}

teardown() { sandbox_teardown; }

# gone <pattern>: no process's command line matches it (any more)
gone() { ! pgrep -f "$1" >/dev/null; }

@test "verify passes: the item succeeds, the command ran in the worktree, its output is in verify.log" {
  q add --id v --prompt p --verify 'echo "checked $(basename "$PWD")"; test -d .' >/dev/null
  run loop --drain
  assert_success
  [ "$(item_state v) $(item_field v .last_verdict)" = "succeeded succeeded" ]
  local dir sid
  dir=$(session_of v)
  sid=$(basename "$dir")
  [ "$(cat "$dir/verify.log")" = "checked $sid" ]
  [ "$(cat "$dir/verify_exit")" = 0 ]
  [ "$(jq -c '[.verify.exit_code, .verify.log, (.verify.seconds >= 0)]' "$dir/metrics.json")" = '[0,"verify.log",true]' ]
  jq -r .reason "$dir/metrics.json" | grep -qF 'verified by `echo'
  run audit_events v
  assert_output --partial $'verify.passed\nsession.ended\nitem.succeeded'
  run "$HARNESS_ROOT/scripts/parse-session-events.sh" --state "$STATE" watch v
  assert_success
  assert_output --partial '… verifying: echo "checked'
  assert_output --partial '✓ verified'
}

@test "verify fails: verify_failed with the exit status and the end of the output; the item's own command wins over VERIFY_CMD" {
  q add --id f --prompt p --verify 'echo one; echo "two: the test failed" >&2; exit 3' >/dev/null
  q add --id g --prompt p >/dev/null
  run loop --drain --set MAX_ATTEMPTS=1 --set VERIFY_CMD='exit 0'
  assert_success
  [ "$(item_state f) $(item_field f .last_verdict)" = "quarantined verify_failed" ]
  [ "$(item_state g) $(item_field g .last_verdict)" = "succeeded succeeded" ]
  item_field f .last_reason | grep -qF 'exited 3: one | two: the test failed'
  [ "$(jq -r .verify.exit_code "$(session_of f)/metrics.json")" = 3 ]
  audit_has '.event == "verify.failed" and .item == "f" and .exit_code == 3'
  run "$HARNESS_ROOT/scripts/parse-session-events.sh" --state "$STATE" watch f
  assert_output --partial '✗ verify failed (exit 3)'
}

@test "a session that did not succeed is not verified" {
  q add --id m --prompt "[[mock:max_turns]]" --verify 'touch "$HOME/verified"' >/dev/null
  run loop --drain --set MAX_ATTEMPTS=1
  assert_success
  [ "$(item_field m .last_verdict)" = max_turns ]
  [ ! -e "$(session_of m)/verify.log" ] && [ ! -e "$HOME/verified" ]
}

@test "a verify past VERIFY_TIMEOUT_S is stopped with its whole process group: verify_failed, nothing left running" {
  q add --id t --prompt p --verify 'sleep 3.01e2 & sleep 3.02e2; echo never' >/dev/null
  run loop --drain --set MAX_ATTEMPTS=1 --set VERIFY_TIMEOUT_S=1 --set KILL_GRACE_S=0.3
  assert_success
  [ "$(item_field t .last_verdict)" = verify_failed ]
  item_field t .last_reason | grep -qF 'ran past its 1s limit and was stopped (exit 124)'
  wait_for 5 gone 'sleep 3.0[12]e2'
}

@test "a long verify is no stall: the sidecar shows the phase verifying, status.sh too, and never stops it" {
  q add --id l --prompt p --verify "while [ ! -e '$T/go' ]; do sleep 0.05; done" >/dev/null
  "$LOOP" --state "$STATE" --drain --set STALL_TIMEOUT_S=0.3 --set HEARTBEAT_S=0.1 >"$T/out" 2>"$T/err" 3>&- &
  local pid=$! rc=0 dir
  wait_for 20 first_match "$STATE/sessions/ses_*/verify.pid"
  dir=$(dirname "$(first_match "$STATE/sessions/ses_*/verify.pid")")
  wait_for 10 bash -c "jq -e '.phase == \"verifying\"' '$dir/heartbeat.json' >/dev/null 2>&1"
  run "$HARNESS_ROOT/scripts/status.sh" --state "$STATE" --json
  [ "$(jq -r '.agents[0].phase' <<<"$output")" = verifying ]
  # silent for twice the stall limit, and still not stopped
  wait_for 10 bash -c "jq -e '.silent_s >= 0.6' '$dir/heartbeat.json' >/dev/null 2>&1"
  [ ! -e "$dir/kill.json" ] && [ ! -e "$dir/stall.json" ]
  touch "$T/go"
  wait "$pid" || rc=$?
  [ "$rc" = 0 ]
  [ "$(item_field l .last_verdict)" = succeeded ]
  audit_has '.event == "verify.started" and .item == "l"'
}

@test "cancel while verifying stops the verify command's process group: canceled, nothing left running" {
  q add --id c --prompt p --verify 'sleep 3.03e2' >/dev/null
  "$LOOP" --state "$STATE" --drain >"$T/out" 2>"$T/err" 3>&- &
  local pid=$! rc=0
  wait_for 20 first_match "$STATE/sessions/ses_*/verify.pid"
  q cancel c
  wait "$pid" || rc=$?
  [ "$rc" = 0 ]
  [ "$(item_state c) $(item_field c .last_verdict)" = "canceled interrupted" ]
  audit_has '.event == "session.signal" and .target == "verify" and .signal == "INT"'
  wait_for 5 gone 'sleep 3.03e2'
}

@test "a verify_failed item gets a fix round: the same conversation resumed, in the same worktree and branch, with the failure" {
  git_repo "$T/repo"
  q add --id x --prompt p --verify 'test -e fixed || { echo "no ./fixed in $(basename "$PWD")"; exit 1; }' >/dev/null
  MOCK_CLAUDE_MODE=fixer run loop --drain --set REPO_DIR="$T/repo"
  assert_success
  [ "$(item_state x) $(item_field x .last_verdict)" = "succeeded succeeded" ]
  [ "$(item_field x '[.history[] | "\(.verdict):\(.fix_round)"] | join(" ")')" = "verify_failed:null succeeded:1" ]
  [ "$(item_field x '"\(.fix_rounds) \(.attempts) \(has("fix"))"')" = "1 1 false" ]
  # the item's cost: both rounds'
  [ "$(q show x | jq -r '.cost_usd_total == ([.history[].cost_usd] | add) and .cost_usd_total > 0')" = true ]
  local first second uuid
  first=$(sed -n 1p "$MOCK_CLAUDE_LOG")
  second=$(sed -n 2p "$MOCK_CLAUDE_LOG")
  uuid=$(jq -r '.argv as $a | $a[($a | index("--session-id")) + 1]' <<<"$first")
  [ "$(jq -r '.argv as $a | $a[($a | index("--resume")) + 1]' <<<"$second")" = "$uuid" ]
  [ "$(jq -r '.argv | index("--session-id")' <<<"$second")" = null ]
  [ "$(jq -r .cwd <<<"$first")" = "$(jq -r .cwd <<<"$second")" ]
  # the fix round's prompt holds the command's failure
  local dir
  dir=$(session_of x)
  grep -qF "no ./fixed in ses_${uuid}" "$dir/input.txt"
  grep -qF 'Exit status: 1' "$dir/input.txt"
  grep -qF 'This is fix round 1 of 2.' "$dir/input.txt"
  [ "$(jq -r '"\(.fix_round) \(.claude_session_id)"' "$dir/meta.json")" = "1 $uuid" ]
  # one branch, both rounds on it; the succeeded item's worktree is removed, the branch stays
  [ "$(git -C "$T/repo" branch --list 'harness/*' | wc -l)" = 1 ]
  [ ! -d "$(jq -r .cwd <<<"$first")" ]
  audit_has '.event == "item.pending" and .item == "x" and .action == "fix" and .fix_round == 1'
}

@test "a fix that never works: quarantined after FIX_ROUNDS, every round's verdict and verify.log kept; no attempt charged" {
  q add --id n --prompt p --verify 'echo "still broken"; exit 1' >/dev/null
  run loop --drain --set FIX_ROUNDS=2
  assert_success
  [ "$(item_state n) $(item_field n .last_verdict)" = "quarantined verify_failed" ]
  [ "$(item_field n '[.history[] | "\(.verdict):\(.fix_round)"] | join(" ")')" = "verify_failed:null verify_failed:1 verify_failed:2" ]
  item_field n .last_reason | grep -qF 'still failing after 2 fix rounds: verify `echo "still broken"; exit 1` exited 1: still broken'
  [ "$(item_field n '"\(.attempts) \(has("fix"))"')" = "0 false" ]
  local sid
  for sid in $(item_field n '.history[].session_id'); do
    [ "$(cat "$STATE/sessions/$sid/verify.log")" = "still broken" ]
  done
}

@test "FIX_ROUNDS=0: a verify_failed item is quarantined at once" {
  q add --id z --prompt p --verify 'exit 1' >/dev/null
  run loop --drain --set FIX_ROUNDS=0
  assert_success
  [ "$(item_state z) $(item_field z '.history | length')" = "quarantined 1" ]
  item_field z .last_reason | grep -qF 'still failing after no fix round'
}
