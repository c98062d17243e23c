#!/usr/bin/env bats
# End to end: loop.sh runs the real Claude Code CLI against the scripted Messages
# API (tests/fakeapi). Real client, real tools, real worktree; scripted model.

setup() {
  load helpers
  sandbox_setup
  [[ -x "$REAL_CLAUDE" ]] || fail "the Claude Code CLI is not installed (run 'make setup')"
  fakeapi_start answer
}

teardown() { sandbox_teardown; }

api_requests() { # jq filter over the fake API's request log
  jq -c "$1" "$FAKEAPI_DIR/requests.jsonl"
}

@test "success: the scripted model writes and commits a file in its worktree" {
  git_repo "$T/repo"
  q add --id greet --title "Add a greeting" --prompt "Add hello.txt and commit it. [[fake:write_commit]]" >/dev/null
  run loop --drain --set REPO_DIR="$T/repo"
  assert_success
  assert_output --regexp "item=greet verdict=succeeded turns=4 .* tools=Bash:2,Write:1 "
  [ "$(item_state greet) $(item_field greet .attempts)" = "succeeded 1" ]
  # the commit is on the session's branch; the main checkout never changed
  run git -C "$T/repo" log --format=%s harness/greet/1
  assert_output $'Add hello.txt\ninitial commit'
  [ "$(git -C "$T/repo" show harness/greet/1:hello.txt)" = "hello from the scripted model" ]
  [ "$(git -C "$T/repo" rev-parse --abbrev-ref HEAD)" = main ]
  [ ! -e "$T/repo/hello.txt" ]
  [ -z "$(git -C "$T/repo" status --porcelain)" ]
  # after success the worktree is removed and the branch kept
  local dir
  dir=$(session_of greet)
  [ ! -d "$STATE/worktrees/$(basename "$dir")" ]
  [ "$(jq -r .branch "$dir/meta.json")" = harness/greet/1 ]
  [ "$(jq -r 'select(.type == "system" and .subtype == "init") | .session_id' "$dir/events.jsonl")" = "$(jq -r .claude_session_id "$dir/meta.json")" ]
  [ "$(jq '.tokens.output > 0 and .cost_usd > 0' "$dir/metrics.json")" = true ]
  run audit_events greet
  assert_output $'item.added\nitem.claimed\nsession.started\nsession.ended\nitem.succeeded'
}

@test "max_turns: the item is quarantined at once with the CLI's own verdict" {
  q add --id loop --prompt "Keep going forever. [[fake:endless]]" --max-turns 2 >/dev/null
  run loop --drain
  assert_success
  [ "$(item_state loop) $(item_field loop .attempts) $(item_field loop .last_verdict)" = "quarantined 1 max_turns" ]
  [ "$(jq -r 'select(.type == "result") | .subtype' "$(session_of loop)/events.jsonl")" = error_max_turns ]
  run jq -r 'select(.event == "item.quarantined") | .verdict' "$STATE/events.jsonl"
  assert_output max_turns
}

@test "budget exceeded: quarantined, and the receipt keeps the real cost" {
  q add --id spend --prompt "Spend it all. [[fake:big]]" --max-budget-usd 0.05 >/dev/null
  run loop --drain
  assert_success
  [ "$(item_state spend) $(item_field spend .last_verdict)" = "quarantined budget_exceeded" ]
  local dir
  dir=$(session_of spend)
  [ "$(jq '.cost_usd > 0.05 and .cost_estimated == false and .tokens.input >= 10000' "$dir/metrics.json")" = true ]
}

@test "401: auth_error, no attempt charged, the loop halts with exit 4 and says why" {
  q add --id a --prompt "hi [[fake:err401]]" >/dev/null
  run loop --drain
  assert_failure 4
  assert_output --regexp "harness: halted: circuit breaker open for [0-9]+s more: credentials rejected \(401\).*the credentials are wrong"
  [ "$(item_state a) $(item_field a .attempts) $(item_field a .last_verdict)" = "pending 0 auth_error" ]
  run jq -r 'select(.event == "loop.stopped") | .reason' "$STATE/events.jsonl"
  assert_output --partial "credentials rejected (401)"
}

@test "500: api_error, retried with its attempts counted, then quarantined" {
  q add --id a --prompt "hi [[fake:err500]]" >/dev/null
  run loop --drain --set MAX_ATTEMPTS=2
  assert_success
  [ "$(item_state a) $(item_field a .attempts)" = "quarantined 2" ]
  [ "$(item_field a '[.history[].verdict] | join(",")')" = "api_error,api_error" ]
  # the CLI retried internally first (CLAUDE_CODE_MAX_RETRIES=1): the receipt counts it
  [ "$(jq -r '.api_retries["500"]' "$(session_of a)/metrics.json")" = 1 ]
  [ "$(api_requests 'select(.status == 500)' | wc -l)" -ge 4 ]
}

@test "hostile input reaches the model byte for byte and runs nothing" {
  local hostile
  hostile=$'He said "hi" \'there\' $(touch '"$T"$'/pwned) `touch '"$T"$'/pwned2` {{SESSION_ID}} {{PROMPT}}\nline2\ttab \\ back é ✓ [[fake:answer]]\n'
  # a 10 MiB prompt (the CLI's stdin limit), with a NUL byte in it
  python3 - "$T/item.json" "$hostile" <<'PY'
import json, sys
path, hostile = sys.argv[1], sys.argv[2]
prompt = hostile + "nul:\u0000:" 
filler = "0123456789abcdef" * 64 + "\n"
size = len(prompt.encode())
prompt += (filler * (10 * 1024 * 1024 // len(filler) + 1))[: 10 * 1024 * 1024 - size]
assert len(prompt.encode()) == 10 * 1024 * 1024
json.dump({"id": "hostile", "title": hostile, "prompt": prompt}, open(path, "w"))
PY
  run q add --file "$T/item.json"
  assert_success
  run loop --drain
  assert_success
  [ "$(item_state hostile)" = succeeded ]
  [ ! -e "$T/pwned" ] && [ ! -e "$T/pwned2" ]
  local dir sid body
  dir=$(session_of hostile)
  sid=$(basename "$dir")
  # the main request: the one that carries tools
  body=$(jq -r 'select(.msgs >= 1 and (.side | not)) | .n' "$FAKEAPI_DIR/requests.jsonl" | head -n 1)
  python3 - "$FAKEAPI_DIR/bodies/$body.json" "$T/item.json" "$sid" <<'PY'
import json, sys
body, item, sid = json.load(open(sys.argv[1])), json.load(open(sys.argv[2])), sys.argv[3]
texts = [b["text"] for b in body["messages"][0]["content"] if b.get("type") == "text"]
assert item["prompt"] in texts, "prompt did not arrive as one exact text block"
system = "".join(b["text"] for b in body["system"])
# the title sits in the system prompt literally: {{SESSION_ID}} and {{PROMPT}} were not expanded
assert item["title"].rstrip("\n") in system, "title not in the system prompt verbatim"
assert f"Unattended session {sid}" in system
assert item["prompt"][:200] not in system
PY
}

@test "stall: a silent Bash call longer than the stall limit is not killed; the heartbeat shows it" {
  q add --id slow --prompt "Run the slow command. [[fake:slowtool seconds=6]]" >/dev/null
  "$LOOP" --state "$STATE" --once --set STALL_TIMEOUT_S=3 --set HEARTBEAT_S=0.5 >"$T/out" 2>"$T/err" 3>&- &
  local pid=$! rc=0 dir
  wait_for 30 first_match "$STATE/sessions/ses_*/heartbeat.json"
  dir=$(dirname "$(first_match "$STATE/sessions/ses_*/heartbeat.json")")
  # while the command runs, the heartbeat names it and its phase
  wait_for 30 jq -e '.phase == "in_tool" and .outstanding_tool.name == "Bash" and
    (.outstanding_tool.input | startswith("sleep 6"))' "$dir/heartbeat.json"
  wait "$pid" || rc=$?
  [ "$rc" = 0 ]
  [ "$(item_state slow) $(item_field slow .last_verdict)" = "succeeded succeeded" ]
  [ ! -e "$dir/stall.json" ] && [ ! -e "$dir/kill.json" ]
  # the receipt times the tool call from the sidecar's timeline: about 6 s
  [ "$(jq '.tool_time_s.Bash >= 5.5 and .tool_time_s.Bash < 30' "$dir/metrics.json")" = true ]
}

@test "stall: a hung stream is stopped within the stall limit plus 2 s, verdict stalled, evidence kept" {
  q add --id hung --prompt "Say something. [[fake:hang]]" >/dev/null
  run loop --once --set STALL_TIMEOUT_S=3 --set KILL_GRACE_S=5 --set MAX_ATTEMPTS=1
  assert_success
  assert_output --regexp "item=hung verdict=stalled "
  [ "$(item_state hung) $(item_field hung .last_verdict)" = "quarantined stalled" ]
  local dir
  dir=$(session_of hung)
  # evidence: silent while streaming, the last line was a text delta
  [ "$(jq -r '.limit_kind + " " + .phase + " " + .last_event_type' "$dir/stall.json")" = \
    "stream streaming stream_event/content_block_delta" ]
  # SIGINT was enough: the CLI wrote its own result line and exited 0
  [ "$(jq -r 'select(.type == "result") | .subtype' "$dir/events.jsonl")" = error_during_execution ]
  [ "$(cat "$dir/exit_code")" = 0 ]
  # stopped within the limit plus 2 s of its last line
  python3 - "$dir" <<'PY'
import json, os, sys
d = sys.argv[1]
last = json.load(open(f"{d}/stall.json"))["last_event_at"]
ended = os.stat(f"{d}/exit_code").st_mtime
assert 3 <= ended - last <= 5, f"stopped {ended - last:.2f}s after the last line"
PY
  run jq -r 'select(.event == "session.stalled" or .event == "session.signal") | .event + ":" + (.signal // "")' "$STATE/events.jsonl"
  assert_output $'session.stalled:\nsession.signal:INT'
}
