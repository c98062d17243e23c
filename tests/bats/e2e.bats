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
  # the CLI's own transcript, kept beside the stream (the CLI deletes its copy after 30 days)
  [ "$(stat -c %a "$dir/transcript.jsonl")" = 600 ]
  [ "$(jq -r .transcript_bytes "$dir/meta.json")" = "$(stat -c %s "$dir/transcript.jsonl")" ]
  cmp "$dir/transcript.jsonl" "$(first_match "$HOME/.claude/projects/*/$(jq -r .claude_session_id "$dir/meta.json").jsonl")"
  [ -n "$(jq -c 'select(.type == "assistant") | .message.content[] | select(.type == "tool_use" and .name == "Write")' \
    "$dir/transcript.jsonl")" ]
  # the receipt (from the stream's result) and the transcript (counted as ccusage counts) agree
  run "$HARNESS_ROOT/scripts/parse-session-events.sh" --state "$STATE" reconcile --json
  assert_success
  [ "$(jq -c '[.sessions[] | .status]' <<<"$output")" = '["ok"]' ] || { echo "$output"; false; }
  run audit_events greet
  assert_output $'item.added\nitem.claimed\nsession.started\nsession.ended\nitem.succeeded'
}

@test "max_turns: the item is quarantined at once with the CLI's own verdict" {
  q add --id loop --prompt "Keep going forever. [[fake:endless]]" --max-turns 2 >/dev/null
  run loop --drain
  assert_success
  [ "$(item_state loop) $(item_field loop .attempts) $(item_field loop .last_verdict)" = "quarantined 1 max_turns" ]
  [ "$(jq -r 'select(.type == "result") | .subtype' "$(session_of loop)/events.jsonl")" = error_max_turns ]
  # a turn is one assistant message: the CLI's result says 3 here, the harness 2
  [ "$(item_field loop .last_reason)" = "reached the turn limit after 2 turns" ]
  [ "$(jq .turns "$(session_of loop)/metrics.json")" = 2 ]
  # the CLI exited 1; its wrapper wrote no job-control line about it
  [ "$(cat "$(session_of loop)/exit_code")" = 1 ] && [ ! -s "$(session_of loop)/wrapper.log" ]
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
  # a 2 MiB prompt (every CLI version and the API take it: 0.5 M tokens), with a NUL
  # byte in it; a 10 MiB one is refused (next test)
  hostile_item "$T/item.json" "$hostile" $((2 * 1024 * 1024))
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

# hostile_item <file> <text> <bytes>: a work item whose title is the text and whose
# prompt is the text, a NUL, and filler up to exactly that many bytes.
hostile_item() { # <file> <text> <bytes>
  python3 - "$@" <<'PY'
import json, sys
path, hostile, size = sys.argv[1], sys.argv[2], int(sys.argv[3])
prompt = hostile + "nul:\u0000:"
filler = "0123456789abcdef" * 64 + "\n"
used = len(prompt.encode())
prompt += (filler * ((size - used) // len(filler) + 1))[: size - used]
assert len(prompt.encode()) == size
json.dump({"id": "hostile", "title": hostile, "prompt": prompt}, open(path, "w"))
PY
}

# result_text <session-dir>: the CLI's own words in its result line
result_text() { # <session-dir>
  jq -r 'select(.type == "result") | .result' "$1/events.jsonl"
}

# reason_has_result_words <item>: the item's reason holds the words of its latest
# session's result line
reason_has_result_words() { # <item>
  local words
  words=$(result_text "$(session_of "$1")")
  [ -n "$words" ]
  [[ "$(item_field "$1" .last_reason)" == *"${words:0:60}"* ]]
}

# refused_once <item>: quarantined after one session, verdict failed, never retried
refused_once() { # <item>
  [ "$(item_state "$1") $(item_field "$1" .attempts) $(item_field "$1" .last_verdict)" = "quarantined 1 failed" ]
  [ "$(item_field "$1" '.history | length')" = 1 ]
  [ "$(audit_events "$1" | grep -c '^session.started$')" = 1 ]
}

@test "a 10 MiB prompt is refused as too long: quarantined at once with the CLI's words, never retried" {
  hostile_item "$T/item.json" $'big one [[fake:answer]]\n' $((10 * 1024 * 1024))
  q add --file "$T/item.json" >/dev/null
  run loop --drain
  assert_success
  # CLI 2.1.197 sends it and the API answers 400; 2.1.332 refuses it itself, with no
  # request. Either way the reason holds the CLI's own words.
  refused_once hostile
  reason_has_result_words hostile
}

@test "an unknown model: quarantined at once with the CLI's words, never retried" {
  q add --id m --model no-such-model --prompt "hi [[fake:answer]]" >/dev/null
  run loop --drain
  assert_success
  refused_once m
  reason_has_result_words m
}

@test "a usage error in the CLI's arguments: quarantined at once with the CLI's words; the loop halts before the next" {
  q add --id u --prompt "hi [[fake:answer]]" >/dev/null
  q add --id v --prompt "hi [[fake:answer]]" >/dev/null
  run loop --drain --set PERMISSION_MODE=no-such-mode
  # every session would be refused alike: one item is quarantined, the rest wait
  # for a person (exit 4, the breaker open with what to fix)
  assert_failure 4
  assert_output --regexp "harness: halted: circuit breaker open for [0-9]+s more: the CLI refused its arguments: .*fix the configuration, then run scripts/loopctl.sh circuit close"
  local first words
  first=$(jq -r 'select(.event == "item.quarantined") | .item' "$STATE/events.jsonl")
  [ "$(item_state "$first") $(item_field "$first" .attempts) $(item_field "$first" .last_verdict)" = "quarantined 1 usage_error" ]
  [ "$(item_state u) $(item_state v)" = "$([[ $first == u ]] && echo "quarantined pending" || echo "pending quarantined")" ]
  words=$(head -n 1 "$(session_of "$first")/stderr.log")
  [[ "$words" == *no-such-mode* ]]
  [ "$(item_field "$first" .last_reason)" = "the CLI refused its arguments: $words" ]
}

@test "a session that runs Bash leaves nothing in /tmp: its temporary files stay in its session directory" {
  [[ -d /mnt ]] && unshare -m true 2>/dev/null || skip "a private /tmp needs unshare -m (root) and /mnt"
  q add --id t --prompt "Run a command. [[fake:bash]]" >/dev/null
  # The loop runs in a mount namespace whose /tmp is a new, empty tmpfs, with only
  # this test's directory and the harness itself (a CI clone may live in /tmp) put
  # back in their places; whatever else lands in /tmp is a leak.
  run unshare -m bash -c '
    keep=("$1" "$2"); shift 2
    mount --make-rprivate / && mount -t tmpfs tmpfs /mnt || exit 99
    for i in "${!keep[@]}"; do
      [[ "${keep[i]}" == /tmp/* ]] || continue
      mkdir -p "/mnt/$i" && mount --bind "${keep[i]}" "/mnt/$i" || exit 99
    done
    mount -t tmpfs -o mode=1777 tmpfs /tmp || exit 99
    for i in "${!keep[@]}"; do
      [[ "${keep[i]}" == /tmp/* ]] || continue
      mkdir -p "${keep[i]}" && mount --bind "/mnt/$i" "${keep[i]}" || exit 99
    done
    "$@" || exit
    find /tmp -mindepth 1 | while read -r p; do
      for k in "${keep[@]}"; do
        [[ "$k/" == "$p/"* || "$p" == "$k/"* ]] && continue 2
      done
      echo "left in /tmp: $p"
    done' _ "$T" "$HARNESS_ROOT" "$LOOP" --state "$STATE" --drain
  assert_success
  refute_output --partial "left in /tmp"
  [ "$(item_state t)" = succeeded ]
  local dir
  dir=$(session_of t)
  # the CLI kept its task files in the session's TMPDIR, and the runtime dir is gone
  first_match "$dir/tmp/claude-*/*/*/tasks"
  [ -z "$(ls -A "$STATE/run")" ]
}

@test "the receipt prices the model the CLI runs as the CLI does" {
  q add --id p --prompt "hi [[fake:answer in=1000 out=2000 cr=30000 cw=4000]]" >/dev/null
  run loop --drain
  assert_success
  local dir
  dir=$(session_of p)
  # the harness's own estimate from the stream equals the CLI's reported cost
  PYTHONPATH="$HARNESS_ROOT/lib" "$HARNESS_ROOT/.venv/bin/python" - "$dir" <<'PY'
import sys
from pathlib import Path
from harness.stream import facts
d = Path(sys.argv[1])
f = facts.scan(d / "events.jsonl")
reported = f.result.cost_usd
model = next(iter(f.result.raw["modelUsage"]))
estimate = facts.estimate_cost_usd(f.messages, "")
assert reported > 0 and abs(estimate - reported) < 1e-9, f"{model}: estimated {estimate}, the CLI says {reported}"
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
  # SIGINT was enough: the CLI exited 0 by itself. Its result line, when it wrote
  # one, says error_during_execution; under heavy load CLI 2.1.197 sometimes exits on
  # SIGINT without one (seen 1 run in 5 with three CPU hogs), and the verdict is the
  # same either way, from kill.json.
  [ "$(cat "$dir/exit_code")" = 0 ]
  [[ "$(jq -r 'select(.type == "result") | .subtype' "$dir/events.jsonl")" =~ ^(error_during_execution)?$ ]]
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
  # the receipt: one turn (one request, answered in part) and its cost: CLI 2.1.332
  # bills the aborted request in its result line; 2.1.197 reports 0 there, so the
  # receipt estimates it from the streamed usage and says so
  [ "$(jq -c '[.turns, .cost_usd > 0, .cost_estimated == (.token_source == "stream")]' "$dir/metrics.json")" = \
    '[1,true,true]' ]
}

@test "429 storm: api_error, retried with backoff; two in a row open the breaker and the rest of the queue waits" {
  q add --id r1 --priority high --prompt "hi [[fake:err429]]" >/dev/null
  q add --id r2 --priority high --prompt "hi [[fake:err429]]" >/dev/null
  q add --id fine --priority low --prompt "hi [[fake:answer]]" >/dev/null
  run loop --drain --set CIRCUIT_FAILURES=2 --set RETRY_BASE_S=3600
  assert_success
  assert_output --partial "harness: not claiming: circuit breaker open for"
  [ "$(item_state r1) $(item_field r1 .attempts) $(item_field r1 .last_verdict)" = "pending 1 api_error" ]
  [ "$(item_state r2) $(item_field r2 .attempts) $(item_state fine)" = "pending 1 pending" ]
  [[ "$(item_field r1 .last_reason)" == "API error 429: "* ]]
  # the retry waits out its backoff; the CLI's own retry is in the receipt
  [ "$(date -d "$(item_field r1 .not_before)" +%s)" -gt "$(date +%s)" ]
  [ "$(jq -r '.api_retries["429"]' "$(session_of r1)/metrics.json")" = 1 ]
  [ "$(jq -r '[.state, .consecutive_failures] | join(" ")' <(store_record breaker))" = "open 2" ]
}

@test "529 storm: the sidecar counts the CLI's live retries; the breaker opens before the session ends" {
  q add --id o --prompt "hi [[fake:err529]]" >/dev/null
  CLAUDE_CODE_MAX_RETRIES=3 run loop --drain --set CIRCUIT_FAILURES=1 --set CIRCUIT_STORM_RETRIES=3 --set MAX_ATTEMPTS=1
  assert_success
  [ "$(item_state o) $(item_field o .last_verdict)" = "quarantined api_error" ]
  run jq -r 'select(.event | test("^circuit[.]|^session[.]ended")) | .event' "$STATE/events.jsonl"
  assert_output $'circuit.storm\ncircuit.opened\nsession.ended'
  run jq -r 'select(.event == "circuit.opened") | .reason' "$STATE/events.jsonl"
  assert_output --regexp "^1 API-level failures in a row \(last: 3 API retries in a row in ses_.* \(last status 529\)\)"
  [ "$(jq -r '.api_retries["529"]' "$(session_of o)/metrics.json")" = 3 ]
  [ "$(jq -c '[.window[] | .verdict]' <(store_record breaker))" = '["api_error"]' ]
}

@test "the governor cuts the sessions at once when the real CLI meets 429s (an API that takes one request at a time)" {
  fakeapi_stop
  fakeapi_start answer --max-inflight 1
  for i in 1 2 3 4 5 6; do q add --id "g$i" --prompt "Answer $i. [[fake:answer delay=1]]" >/dev/null; done
  CLAUDE_CODE_MAX_RETRIES=10 run loop --drain -j 3 --set JOBS_MAX=3 --set GOVERNOR_STEP_S=60 \
    --set GOVERNOR_WINDOW_S=60 --set CIRCUIT_STORM_RETRIES=0
  assert_success
  [ "$(count_in succeeded)" = 6 ]
  audit_has '.event == "governor.changed" and .cause == "storm" and .from == 3 and .to < 3'
  # what the governor counted is what the CLI said: its api_retry lines, in the receipts too
  [ "$(cat "$STATE"/sessions/*/metrics.json | jq -s 'map(.api_retries["429"] // 0) | add')" -gt 1 ]
  [ "$(api_requests 'select(.status == 429)' | wc -l)" -gt 1 ]
}

@test "400: failed, not retryable, quarantined at once; the breaker counts the API as up" {
  q add --id b --prompt "hi [[fake:err400]]" >/dev/null
  run loop --drain
  assert_success
  [ "$(item_state b) $(item_field b .attempts) $(item_field b .last_verdict)" = "quarantined 1 failed" ]
  [[ "$(item_field b .last_reason)" == "API rejected the request (400): "* ]]
  [ "$(jq -r '[.state, .consecutive_failures, .window[0].result] | join(" ")' <(store_record breaker))" = "closed 0 success" ]
}

@test "connection refused: api_error, retried, then quarantined with the CLI's own words" {
  q add --id c --prompt "hi [[fake:answer]]" >/dev/null
  ANTHROPIC_BASE_URL=http://127.0.0.1:1 run loop --drain --set MAX_ATTEMPTS=2 --set CIRCUIT_FAILURES=0 --set CIRCUIT_WINDOW=0
  assert_success
  [ "$(item_state c) $(item_field c .attempts)" = "quarantined 2" ]
  [ "$(item_field c '[.history[].verdict] | join(",")')" = "api_error,api_error" ]
  # the reason is the CLI's own words, whatever they are in this version
  local words
  words=$(result_text "$(session_of c)")
  [[ "$words" == "API Error: "* ]]
  [ "$(item_field c .last_reason)" = "$words (gave up after 2 attempts)" ]
}

agent_in_tool() { # <item>: its live session's CLI is inside a tool call
  local dir
  dir=$(session_of "$1")
  [[ -s "$dir/agent.pid" ]] && jq -e '.phase == "in_tool"' "$dir/heartbeat.json" >/dev/null 2>&1
}

@test "kill -9 of the agent mid-tool: crashed, retried, and the retry succeeds" {
  q add --id k --prompt "Run it. [[fake:slowtool seconds=3]]" >/dev/null
  "$LOOP" --state "$STATE" --drain --set HEARTBEAT_S=0.2 3>&- &
  local pid=$! rc=0 first
  wait_for 30 agent_in_tool k
  first=$(session_of k)
  kill -9 "$(cat "$first/agent.pid")"
  wait "$pid" || rc=$?
  [ "$rc" = 0 ]
  [ "$(item_state k) $(item_field k .attempts)" = "succeeded 2" ]
  [ "$(item_field k '[.history[].verdict] | join(",")')" = "crashed,succeeded" ]
  [[ "$(item_field k '.history[0].reason')" == "killed by signal 9 with no result line"* ]]
  [ "$(cat "$first/exit_code")" = 137 ]
  # the wrapper says nothing of its own: no bash job-control lines ("Killed", "[1]+ Exit")
  [ ! -s "$first/wrapper.log" ]
}

@test "the agent binary vanishes mid-run: the next session is spawn_failed, with the reason" {
  mkdir -p "$T/bin"
  ln -s "$REAL_CLAUDE" "$T/bin/claude"
  q add --id first --priority high --prompt "Run it. [[fake:slowtool seconds=2]]" >/dev/null
  q add --id second --priority low --prompt "hi [[fake:answer]]" >/dev/null
  CLAUDE_BIN="$T/bin/claude" "$LOOP" --state "$STATE" --drain --set MAX_ATTEMPTS=1 --set HEARTBEAT_S=0.2 3>&- &
  local pid=$! rc=0
  wait_for 30 agent_in_tool first
  rm "$T/bin/claude"
  wait "$pid" || rc=$?
  [ "$rc" = 0 ]
  [ "$(item_state first) $(item_state second) $(item_field second .last_verdict)" = "succeeded quarantined spawn_failed" ]
  [[ "$(item_field second .last_reason)" == "the agent did not start (exit 127): "*"No such file or directory"* ]]
}

@test "full disk: no claims below MIN_FREE_MB (exit 4); a session that fills the disk loses nothing" {
  small_disk 3m
  q add --id f --prompt "Talk at length. [[fake:flood size=300000]]" >/dev/null
  run loop --drain
  assert_failure 4
  assert_output --regexp "harness: halted: only [0-9.]+ MB free under $STATE \(MIN_FREE_MB is 100\)"
  [ "$(item_state f)" = pending ]
  # now the disk fills up while the session writes its stream (the claim and the
  # session's own files fit in what is left; its 300 KB stream does not)
  fill_disk "$STATE" 192
  run loop --drain --set MIN_FREE_MB=0
  assert_failure 1
  assert_output --partial "No space left on device"
  assert_line --regexp "^harness: stopped: finalizing ses_.* \(f\) failed \(exit 1\); the item stays in running/ for the next start$"
  [ "$(item_state f) $(item_field f .attempts)" = "running 0" ]
  # space comes back: the next start finalizes what it can and the item completes
  rm "$STATE/filler"
  run loop --drain --set MIN_FREE_MB=0
  assert_success
  [ "$(item_state f)" = succeeded ]
  [ "$(item_field f '[.history[].verdict] | join(",")')" = "crashed,succeeded" ]
}

@test "verify catches a change that breaks the repo's own check; a fix round resumes the same conversation and repairs it; it lands" {
  git_repo "$T/repo"
  # the repository's own check: good.txt must exist. Its complaint carries the scripted
  # model's next move, so the fix round's prompt (the complaint) drives the repair.
  printf '%s\n' '#!/bin/sh' 'test -f good.txt && exit 0' \
    'echo "check failed: good.txt is missing [[fake:write_commit file=good.txt]]"' 'exit 1' >"$T/repo/check.sh"
  git -C "$T/repo" add check.sh
  git -C "$T/repo" -c user.name=test -c user.email=test@example.invalid commit -qm "the check"
  git -C "$T/repo" branch trunk
  q add --id fixme --prompt "Add bad.txt and commit it. [[fake:write_commit file=bad.txt]]" --verify 'sh check.sh' >/dev/null
  run loop --drain --set REPO_DIR="$T/repo" --set INTEGRATE=merge --set TARGET_BRANCH=trunk
  assert_success
  [ "$(item_state fixme) $(item_field fixme .last_verdict)" = "succeeded succeeded" ]
  [ "$(item_field fixme '[.history[] | "\(.verdict):\(.fix_round)"] | join(" ")')" = "verify_failed:null succeeded:1 succeeded:null" ]
  # the merge queue landed it on trunk; the main checkout is untouched
  git -C "$T/repo" cat-file -e trunk:good.txt && git -C "$T/repo" cat-file -e trunk:bad.txt
  [ -z "$(git -C "$T/repo" status --porcelain)" ] && [ ! -e "$T/repo/bad.txt" ]
  local first second branch body
  first=$(item_field fixme '.history[0].session_id')
  second=$(item_field fixme '.history[1].session_id')
  # one conversation: the fix round's stream carries the first round's session id
  [ "$(jq -r 'select(.type == "system" and .subtype == "init") | .session_id' "$STATE/sessions/$second/events.jsonl")" = \
    "$(jq -r 'select(.type == "system" and .subtype == "init") | .session_id' "$STATE/sessions/$first/events.jsonl")" ]
  # what the API received in the fix round: the first round's turns, then the failure
  body=$(grep -l 'good.txt is missing' "$FAKEAPI_DIR"/bodies/*.json | head -n 1)
  jq -e '[.messages[] | select(.role == "assistant")] | length >= 3' "$body" >/dev/null
  grep -qF 'Add bad.txt and commit it.' "$body"
  # both commits on the item's one branch; each round's receipt is its own
  branch=$(jq -r .branch "$STATE/sessions/$second/meta.json")
  [ "$(git -C "$T/repo" log --format=%s "$branch" | head -n 2 | tr '\n' '|')" = "Add good.txt|Add bad.txt|" ]
  [ "$(jq -r .branch "$STATE/sessions/$first/meta.json")" = "$branch" ]
  # the fix round's copy of the transcript is the whole conversation: the first round's prompt too
  grep -qF 'Add bad.txt and commit it.' "$STATE/sessions/$first/transcript.jsonl"
  grep -qF 'Add bad.txt and commit it.' "$STATE/sessions/$second/transcript.jsonl"
  grep -qF 'good.txt is missing' "$STATE/sessions/$second/transcript.jsonl"
  ! grep -qF 'good.txt is missing' "$STATE/sessions/$first/transcript.jsonl"
  # (a CLI that reports a resumed conversation's totals from its start counts the first
  # round again: the receipt takes it off, so the two rounds add up to those totals)
  jq -en --slurpfile a "$STATE/sessions/$first/metrics.json" --slurpfile b "$STATE/sessions/$second/metrics.json" \
    '$b[0].cost_usd > 0 and (if $b[0].cli_cumulative
       then ($a[0].cost_usd + $b[0].cost_usd - $b[0].cli_cost_usd | fabs) < 0.000001
       else $b[0].cost_usd == $b[0].cli_cost_usd end)' >/dev/null
}

@test "a tool call the permissions refuse is named: in the reason, the receipt, summary, and queue.sh show's hint" {
  q add --id deny --prompt "Write hi to out.txt. [[fake:bash]]" >/dev/null
  run loop --drain --set ALLOWED_TOOLS=Read
  assert_success
  item_field deny .last_reason | grep -qF 'permission denied: Bash `echo hi > out.txt && cat out.txt`'
  item_field deny .last_reason | grep -qF "allowed_tools: Bash"
  [ "$(jq -c '.denied' "$(session_of deny)/metrics.json")" = '[{"tool":"Bash","input":"echo hi > out.txt && cat out.txt"}]' ]
  run "$HARNESS_ROOT/scripts/parse-session-events.sh" --state "$STATE" summary deny
  assert_output --regexp 'denied +Bash echo hi > out.txt'
  run q show deny
  [ "$(jq -r .hint <<<"$output")" = "its last session was denied Bash: allow with ALLOWED_TOOLS (loop.sh --set ALLOWED_TOOLS=Read,Bash) or the item's allowed_tools (Read,Bash)" ]
}

@test "SANDBOX=bwrap: reading ~/.ssh/id_rsa, writing outside the worktree and deleting the checkout's .git all fail; the agent's commit lands on its branch; the session ends with a verdict" {
  command -v bwrap >/dev/null || fail "bubblewrap is not installed (tests/install-deps.sh installs it)"
  git_repo "$T/repo"
  mkdir -p "$HOME/.ssh" "$T/outside"
  echo "PRIVATE-KEY-MATERIAL" >"$HOME/.ssh/id_rsa"
  chmod 600 "$HOME/.ssh/id_rsa"
  q add --id box --prompt "Try to escape. [[fake:escape outside=$T/outside/escaped.txt repo=$T/repo state=$STATE]]" >/dev/null
  # as root the CLI takes --dangerously-skip-permissions only with IS_SANDBOX=1: here it is one
  IS_SANDBOX=1 run loop --drain --set REPO_DIR="$T/repo" --set SANDBOX=bwrap --set SKIP_PERMISSIONS=true
  assert_success
  [ "$(item_state box)" = succeeded ] || { cat "$(session_of box)"/stderr.log "$(session_of box)"/wrapper.log; jq -c . "$(session_of box)"/meta.json; tail -3 "$(session_of box)"/events.jsonl; false; }
  local dir
  dir=$(session_of box)
  [ "$(jq -r '.argv[0]' "$dir/meta.json")" = "$(command -v bwrap)" ]
  # what each step got back, as the CLI recorded the tool results
  jq -r 'select(.type == "user") | .message.content[]? | select(.type == "tool_result") | .content
         | if type == "array" then map(.text? // "") | join("") else . end' "$dir/events.jsonl" >"$T/results"
  ! grep -q PRIVATE-KEY-MATERIAL "$T/results" "$dir/events.jsonl"
  grep -q "No such file" "$T/results"
  for word in wrote deleted planted redirected listed; do
    ! grep -qx "$word" "$T/results" || fail "the sandbox let this through: $word"
  done
  [ ! -e "$dir/verify.argv" ] && [ ! -e /tmp/pwned ]
  [ "$(cut -c1-8 "$STATE/worktrees/$(basename "$dir")/.git" 2>/dev/null || echo gone)" != "gitdir: /tmp" ]
  [ ! -e "$T/outside/escaped.txt" ]
  # the checkout's history is whole, and the sandboxed commit is on the item's branch
  git -C "$T/repo" fsck --no-progress
  [ "$(git -C "$T/repo" log --format=%s main)" = "initial commit" ]
  [ "$(git -C "$T/repo" show "$(jq -r .branch "$dir/meta.json"):hello.txt")" = hello ]
  [ "$(cat "$HOME/.ssh/id_rsa")" = PRIVATE-KEY-MATERIAL ]
}

@test "the burn detector stops a session that loops on read-only calls (no_progress, evidence in the receipt), and never one that writes" {
  git_repo "$T/repo"
  q add --id loops --prompt "Look around forever. [[fake:endless]]" >/dev/null
  q add --id writes --prompt "Add hello.txt and commit it. [[fake:write_commit]]" >/dev/null
  run loop --drain --set REPO_DIR="$T/repo" --set BURN_TURNS=3 --set BURN_TOKENS=1 --set MAX_TURNS=40
  assert_success
  [ "$(item_state loops) $(item_field loops .last_verdict) $(item_field loops .attempts)" = "quarantined no_progress 1" ]
  [ "$(item_state writes) $(item_field writes .last_verdict)" = "succeeded succeeded" ]
  local dir
  dir=$(session_of loops)
  jq -e '.verdict == "no_progress" and .no_progress.turns_since_change >= 3 and .no_progress.tools_since.Bash >= 3
         and .no_progress.last_change_turn == null and .turns < 40' "$dir/metrics.json" >/dev/null
  [ "$(jq -r .reason "$dir/kill.json")" = no_progress ]
  audit_has '.event == "session.no_progress" and .item == "loops"'
  [ -z "$(jq -c 'select(.event == "session.no_progress" and .item == "writes")' "$STATE/events.jsonl")" ]
}

@test "SANDBOX=bwrap: a fix round resumes the same conversation inside the sandbox; each session's CLI config is its own" {
  command -v bwrap >/dev/null || fail "bubblewrap is not installed (tests/install-deps.sh installs it)"
  git_repo "$T/repo"
  printf '%s\n' '#!/bin/sh' 'test -f good.txt && exit 0' \
    'echo "check failed: good.txt is missing [[fake:write_commit file=good.txt]]"' 'exit 1' >"$T/repo/check.sh"
  git -C "$T/repo" add check.sh
  git -C "$T/repo" -c user.name=test -c user.email=test@example.invalid commit -qm "the check"
  mkdir -p "$HOME/.claude"
  echo '{"env": {"HARNESS_TEST_SETTING": "1"}}' >"$HOME/.claude/settings.json"
  echo '{"claudeAiOauth": {"accessToken": "SECRET-TOKEN"}}' >"$HOME/.claude/.credentials.json"
  echo '{"primaryApiKey": "SECRET-KEY", "numStartups": 3}' >"$HOME/.claude.json"
  q add --id fixme --prompt "Add bad.txt and commit it. [[fake:write_commit file=bad.txt]]" --verify 'sh check.sh' >/dev/null
  run loop --drain --set REPO_DIR="$T/repo" --set SANDBOX=bwrap
  assert_success
  [ "$(item_field fixme '[.history[] | "\(.verdict):\(.fix_round)"] | join(" ")')" = "verify_failed:null succeeded:1" ]
  local first second
  first=$(item_field fixme '.history[0].session_id')
  second=$(item_field fixme '.history[1].session_id')
  [ "$(jq -r 'select(.type == "system" and .subtype == "init") | .session_id' "$STATE/sessions/$second/events.jsonl")" = \
    "$(jq -r 'select(.type == "system" and .subtype == "init") | .session_id' "$STATE/sessions/$first/events.jsonl")" ]
  grep -qF 'Add bad.txt and commit it.' "$STATE/sessions/$second/transcript.jsonl"
  # both commits on the branch; the user's ~/.claude got no transcript and no change
  local branch
  branch=$(jq -r .branch "$STATE/sessions/$second/meta.json")
  [ "$(git -C "$T/repo" log --format=%s "$branch" | head -n 2 | tr '\n' '|')" = "Add good.txt|Add bad.txt|" ]
  [ ! -e "$HOME/.claude/projects" ]
  [ "$(cat "$HOME/.claude/settings.json")" = '{"env": {"HARNESS_TEST_SETTING": "1"}}' ]
  cmp "$HOME/.claude/settings.json" "$STATE/sessions/$first/box/claude/settings.json"
  # the credentials were bound in, never copied; the state file's key left out
  ! grep -rqF SECRET- "$STATE"
}
