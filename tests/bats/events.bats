#!/usr/bin/env bats
# scripts/parse-session-events.sh: the nine commands, id resolution, colour.

setup() {
  load helpers
  sandbox_setup
  P="$HARNESS_ROOT/scripts/parse-session-events.sh"
}

teardown() { sandbox_teardown; }

ev() { "$P" --state "$STATE" "$@"; }

# one finished session of the stub's "stream" mode: streamed text, an API retry,
# a failing Bash call, then success
stream_session() {
  q add --id streamy --title "Stream it" --prompt 'Stream. [[mock:stream]]' >/dev/null
  loop --once >/dev/null
  SID=$(basename "$(session_of streamy)")
}

@test "summary, metrics, tools, errors, timeline of a finished session" {
  stream_session
  run ev summary streamy
  assert_success
  assert_line --regexp "^session +$SID$"
  # two turns (msg_1 and msg_2) though the result line's num_turns says 1
  assert_line --regexp "^verdict +succeeded: completed in 2 turns$"
  assert_line --regexp "^tokens +in 10, out 5, cache read 200, cache write 100$"
  assert_line --regexp '^tools +Bash 1 \(1 failed'
  assert_line --regexp '^retries +529×1$'
  assert_line "  Fixed it."
  run ev metrics "$SID" --json
  assert_success
  [ "$(jq -c '[.verdict, .turns, .cost_usd, .tool_calls.Bash, .tool_errors.Bash, .api_retries["529"]]' <<<"$output")" = '["succeeded",2,0.0125,1,1,1]' ]
  run ev metrics "$SID"
  assert_line --regexp '^verdict +succeeded$'
  run ev tools latest
  assert_success
  assert_line --regexp '^ +1 Bash +error +.* make check$'
  run ev errors streamy
  assert_success
  assert_line --regexp '^tool_error +Bash #1 \(make check\): make: \*\*\* \[check\] Error 2$'
  assert_line --regexp '^api_retry +attempt 1/10: 529 overloaded'
  run ev timeline streamy
  assert_success
  assert_line --regexp 'turn 1 +Hello from the stream\.$'
  assert_line --regexp '▶ Bash: make check$'
  assert_line --regexp 'turn 2 +Fixed it\.$'
  assert_line --regexp 'result +success, 2 turns, \$0\.0125$'
}

@test "list and cost roll up every session; --since and --json" {
  stream_session
  q add --id second --prompt 'x [[mock:success]]' >/dev/null
  q add --id third --prompt 'x [[mock:crash]]' --max-attempts 1 >/dev/null
  loop --drain >/dev/null
  run ev list
  assert_success
  assert_line --index 0 --regexp '^SESSION +ITEM +TRY'
  assert_line --regexp '^ses_.* third +1 .* crashed$'
  [ "${#lines[@]}" = 4 ]
  run ev list --json --limit 2
  [ "$(jq length <<<"$output")" = 2 ]
  run ev cost --json
  assert_success
  [ "$(jq -c '[.total.sessions, .total.succeeded, .by_item.streamy.cost_usd, (.by_day | length)]' <<<"$output")" = '[3,2,0.0125,1]' ]
  run ev cost
  assert_line --regexp '^total +3 +2 +\$0\.0250 '
  run ev cost --since 1h --json
  [ "$(jq .total.sessions <<<"$output")" = 3 ]
  run ev cost --since 2099-01-01 --json
  [ "$(jq .total.sessions <<<"$output")" = 0 ]
  run ev cost --since yesterdayish
  assert_failure 2
  assert_output --partial "--since takes a date"
}

@test "ids: full, unique prefix, item id, latest; unknown, ambiguous and path ids get exit 2 and one line" {
  stream_session
  q add --id other --prompt 'x [[mock:success]]' >/dev/null
  loop --once >/dev/null
  local other
  other=$(basename "$(session_of other)")
  for ref in "$SID" "${SID:0:12}" "${SID#ses_}" streamy; do
    run ev metrics "$ref" --json
    assert_success
    [ "$(jq -r .session_id <<<"$output")" = "$SID" ]
  done
  run ev metrics latest --json
  [ "$(jq -r .session_id <<<"$output")" = "$other" ]
  run ev summary no-such-thing
  assert_failure 2
  assert_output "harness: no session, item or session prefix 'no-such-thing' in $STATE"
  run ev summary ses_
  assert_failure 2
  assert_output --regexp "^harness: 'ses_' is ambiguous: it matches 2 sessions"
  for ref in ../../etc "$SID/../x" /etc/passwd '..'; do
    run ev summary "$ref"
    assert_failure 2
    assert_output --partial "never a path"
    [ "${#lines[@]}" = 1 ]
  done
  run ev frobnicate x
  assert_failure 2
  run "$P" --state "$T/nowhere" list
  assert_failure 2
  assert_output --partial "no sessions in $T/nowhere"
}

@test "watch of a finished session: the transcript, then the receipt; --raw gives the lines themselves" {
  stream_session
  run ev watch streamy
  assert_success
  assert_line --regexp "^● session .* · model claude-mock-1 · "
  assert_line "! API retry 1/10: 529 overloaded (next in 0.5s)"
  assert_line "Hello from the stream."
  assert_line "▶ Bash  make check"
  assert_line "  ✗ error make: *** [check] Error 2"
  # two turns: msg_1 (streamed) and msg_2, whatever the result line's num_turns (1) says
  assert_line "── turn 1 ──"
  assert_line "── turn 2 ──"
  assert_line "■ success · 2 turns · \$0.0125 · 0.0s"
  assert_line --regexp "^receipt: $SID item=streamy verdict=succeeded "
  # text streamed as deltas is not printed again from the assistant line
  [ "$(grep -c 'Hello from the stream' <<<"$output")" = 1 ]
  run ev watch streamy --raw
  assert_success
  [ "$output" = "$(cat "$STATE/sessions/$SID/events.jsonl")" ]
}

@test "watch follows a live session: text appears while it streams, and it ends with the session" {
  q add --id live --prompt 'Stream. [[mock:stream]]' >/dev/null
  MOCK_CLAUDE_DELAY_S=1 "$LOOP" --state "$STATE" --once >/dev/null 2>&1 3>&- &
  local lpid=$! wpid rc=0
  wait_for 10 first_match "$STATE/sessions/ses_*/meta.json"
  ev watch live >"$T/watch.out" 2>&1 3>&- &
  wpid=$!
  # the first words are on screen while the stub still sleeps between deltas
  wait_for 10 grep -q "Hello from" "$T/watch.out"
  [ ! -e "$(dirname "$(first_match "$STATE/sessions/ses_*/meta.json")")/exit_code" ]
  wait "$wpid" || rc=$?
  [ "$rc" = 0 ]
  wait "$lpid"
  grep -q "^■ success" "$T/watch.out"
  grep -q "^receipt: .* item=live verdict=succeeded" "$T/watch.out"
}

@test "colour only on a terminal, and never with NO_COLOR" {
  stream_session
  run ev summary streamy
  refute_output --partial $'\e['
  run script -qec "$P --state $STATE summary streamy" /dev/null
  assert_success
  assert_output --partial $'\e[32msucceeded'
  NO_COLOR=1 run script -qec "$P --state $STATE summary streamy" /dev/null
  assert_success
  refute_output --partial $'\e['
  run script -qec "$P --state $STATE --no-color summary streamy" /dev/null
  refute_output --partial $'\e['
}

@test "export writes a markdown transcript; fences outgrow backticks in the content" {
  q add --id fence --prompt $'Has ``` fences ```` inside [[mock:stream]]' >/dev/null
  loop --once >/dev/null
  run ev export fence -o "$T/out.md"
  assert_success
  run cat "$T/out.md"
  assert_line --index 0 --regexp '^# Session ses_'
  assert_line '- **Verdict:** succeeded: completed in 2 turns'
  assert_line '`````text'
  assert_line '**Tool call: Bash** (`toolu_9`)'
  assert_line '**Result (error):**'
  assert_line '## Result: success'
}

@test "a session with malformed lines and no result: reports keep going and say so" {
  q add --id bad --prompt 'x [[mock:crash]]' --max-attempts 1 >/dev/null
  loop --once >/dev/null
  run ev summary bad
  assert_success
  assert_line --regexp '^verdict +crashed: '
  assert_line --regexp '^events +2 lines, 1 malformed, unterminated last line$'
  run ev errors bad
  assert_line --regexp '^verdict +crashed: '
  assert_line --regexp '^malformed +1 line\(s\) of events.jsonl are not JSON objects$'
  assert_line --regexp '^stderr +mock: something broke$'
}

@test "watch of an ended session, 40 times: never a word on stderr (no inotify observer to stop)" {
  stream_session
  local i
  for ((i = 1; i <= 40; i++)); do
    ev watch streamy >/dev/null 2>"$T/watch.err" || fail "run $i failed"
    [ ! -s "$T/watch.err" ] || fail "run $i wrote to stderr: $(cat "$T/watch.err")"
  done
}

@test "summary: a succeeded session's removed worktree is said to be removed, with its branch; a kept one by its path" {
  git_repo "$T/repo"
  q add --id ok --prompt p >/dev/null
  q add --id bad --prompt "[[mock:max_turns]]" --max-attempts 1 >/dev/null
  loop --drain --set REPO_DIR="$T/repo" >/dev/null
  local gone kept
  gone=$(jq -r .cwd "$(session_of ok)/meta.json")
  kept=$(jq -r .cwd "$(session_of bad)/meta.json")
  [ ! -d "$gone" ] && [ -d "$kept" ]
  run ev summary ok
  assert_success
  assert_line "worktree  removed (was $gone); the work is on branch harness/ok/1"
  run ev summary bad
  assert_success
  assert_line "worktree  $kept (branch harness/bad/1)"
}

# hostile_session: the stream session, its last answer holding a bidi override
# (U+202E) and terminal escapes (ESC [2J clears the screen, ESC ]0; sets the title)
hostile_session() {
  stream_session
  local f="$STATE/sessions/$SID/events.jsonl"
  jq -c 'if .type == "assistant" and .message.id == "msg_2"
    then .message.content[0].text = "Fixed \u202eti\u001b[2J\u001b]0;pwned\u0007." else . end' "$f" >"$f.new"
  mv "$f.new" "$f"
}

@test "on a terminal, session text shows its control and format characters escaped; a pipe gets the bytes; --raw and --safe" {
  hostile_session
  local cmd
  for cmd in "watch streamy" "summary streamy" "export streamy" "timeline streamy"; do
    run script -qec "$P --state $STATE $cmd" /dev/null
    assert_success
    assert_output --partial 'Fixed \u202eti\x1b[2J\x1b]0;pwned\x07.'
    refute_output --partial $'\u202e'
    refute_output --partial $'\e[2J'
    refute_output --partial $'\e]0;'
    # a pipe: the bytes as they are
    run ev $cmd
    assert_success
    assert_output --partial $'Fixed \u202eti\e[2J\e]0;pwned\a.'
    # --raw keeps them on a terminal too; --safe escapes them in a pipe too
    run script -qec "$P --state $STATE $cmd --raw" /dev/null
    assert_output --partial $'Fixed \u202eti'
    # (watch --raw prints the JSON lines, which hold ESC as \u001b)
    [[ $cmd == watch* ]] || assert_output --partial $'\u202eti\e[2J'
    run ev $cmd --safe
    assert_output --partial 'Fixed \u202eti\x1b[2J\x1b]0;pwned\x07.'
    refute_output --partial $'\u202e'
  done
  # export to a file: the bytes, unless --safe
  ev export streamy -o "$T/raw.md"
  grep -qF $'Fixed \u202eti\e[2J' "$T/raw.md"
  ev export streamy -o "$T/safe.md" --safe
  grep -qF 'Fixed \u202eti\x1b[2J' "$T/safe.md"
  run ev summary streamy --raw --safe
  assert_failure 2
}
