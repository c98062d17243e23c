#!/usr/bin/env bats
# scripts/queue.sh: adding, listing, showing, canceling and retrying work items.

setup() {
  load helpers
  sandbox_setup
}

teardown() { sandbox_teardown; }

@test "add from flags stores a complete pending item" {
  run q add --id fix-1 --title "Fix it" --prompt "do the thing" --priority high --max-turns 7 \
    --max-budget-usd 0.5 --timeout 60 --stall-timeout 30 --model claude-x --allowed-tools "Bash,Read" --max-attempts 2
  assert_success
  assert_output fix-1
  [ "$(item_state fix-1)" = pending ]
  run jq -c '{id, title, prompt, priority, depends_on, attempts, max_turns, max_budget_usd, timeout_s,
    stall_timeout_s, model, allowed_tools, max_attempts, has_created: (.created_at | test("^20"))}' \
    <(item_json fix-1)
  assert_output '{"id":"fix-1","title":"Fix it","prompt":"do the thing","priority":"high","depends_on":[],"attempts":0,"max_turns":7,"max_budget_usd":0.5,"timeout_s":60,"stall_timeout_s":30,"model":"claude-x","allowed_tools":"Bash,Read","max_attempts":2,"has_created":true}'
}

@test "add generates a valid id and a title from the prompt" {
  run q add --prompt $'first line\nsecond line'
  assert_success
  [[ "$output" =~ ^item-[0-9]{8}-[0-9]{6}-[0-9a-f]{6}$ ]]
  [ "$(item_field "$output" .title)" = "first line" ]
}

@test "add from a JSON file, a JSON array and JSON lines on stdin" {
  echo '{"id":"one","prompt":"p1"}' >"$T/one.json"
  run q add --file "$T/one.json"
  assert_success
  echo '[{"id":"two","prompt":"p2"},{"id":"three","prompt":"p3","depends_on":["two"]}]' >"$T/arr.json"
  run q add --file "$T/arr.json"
  assert_success
  run q add --file - <<<$'{"id":"four","prompt":"p4"}\n\n{"id":"five","prompt":"p5","priority":"low"}'
  assert_success
  assert_output $'four\nfive'
  run q list --json
  assert_success
  [ "$(jq length <<<"$output")" = 5 ]
}

@test "a malformed line in a bulk add adds nothing and names the line" {
  run q add --file - <<<$'{"id":"a","prompt":"p"}\n{"id":"b","prompt":\n{"id":"c","prompt":"p"}'
  assert_failure 2
  assert_output --partial "stdin line 2: malformed JSON"
  [ "${#lines[@]}" = 1 ]
  run q list --json
  assert_output "[]"
}

@test "refused items: one line on stderr, exit 2, queue untouched" {
  q add --id taken --prompt p >/dev/null
  local -a bad=(
    '{"id":"taken","prompt":"p"}|duplicate id taken'
    '{"id":"../etc","prompt":"p"}|invalid item id'
    '{"id":"x","prompt":""}|prompt is required'
    '{"id":"x"}|prompt is required'
    '{"id":"x","prompt":"p","priority":"urgent"}|priority must be one of'
    '{"id":"x","prompt":"p","depends_on":["ghost"]}|depends on unknown id ghost'
    '{"id":"x","prompt":"p","depends_on":["x"]}|cannot depend on itself'
    '{"id":"x","prompt":"p","max_turns":0}|max_turns must be a whole number'
    '{"id":"x","prompt":"p","max_turns":"5"}|max_turns must be a whole number'
    '{"id":"x","prompt":"p","attempts":3}|kept by the harness'
    '{"id":"x","prompt":"p","colour":"red"}|unknown field'
    '[1,2]|must be a JSON object'
  )
  local case json want
  for case in "${bad[@]}"; do
    json=${case%%|*}
    want=${case#*|}
    run q add --file - <<<"$json"
    assert_failure 2
    assert_output --partial "$want"
    [ "${#lines[@]}" = 1 ]
  done
  run q list --json
  [ "$(jq length <<<"$output")" = 1 ]
}

@test "a dependency cycle inside one batch is refused" {
  run q add --file - <<<$'{"id":"a","prompt":"p","depends_on":["c"]}\n{"id":"b","prompt":"p","depends_on":["a"]}\n{"id":"c","prompt":"p","depends_on":["b"]}'
  assert_failure 2
  assert_output --partial "dependency cycle"
  run q list --json
  assert_output "[]"
}

@test "a prompt over the CLI's 10 MiB stdin limit is refused at add" {
  head -c 10485761 /dev/zero | tr '\0' 'x' >"$T/big.txt"
  run q add --id big --prompt-file "$T/big.txt"
  assert_failure 2
  assert_output --partial "at most 10485760 (10 MiB)"
  head -c 10485760 /dev/zero | tr '\0' 'x' >"$T/ok.txt"
  run q add --id fits --prompt-file "$T/ok.txt"
  assert_success
}

@test "list shows a table, filters by state, and --json leaves the prompt out" {
  q add --id a --prompt "secret prompt text" --title "Alpha" >/dev/null
  q add --id b --prompt p --priority critical >/dev/null
  q cancel a >/dev/null
  run q list
  assert_success
  assert_line --index 0 --regexp '^ID +STATE +PRIORITY +TRIES +AGE +LAST +TITLE$'
  assert_line --index 1 --regexp '^b +pending +critical +0 '
  assert_line --index 2 --regexp '^a +canceled +normal +0 .* Alpha$'
  run q list --state canceled --json
  assert_success
  [ "$(jq -r '.[].id' <<<"$output")" = a ]
  refute_output --partial "secret prompt text"
  [ "$(jq '.[0].prompt_bytes' <<<"$output")" = 18 ]
  run q list --state bogus
  assert_failure 2
}

@test "show prints the whole item; an unknown id is exit 2" {
  q add --id a --prompt "the prompt" >/dev/null
  run q show a
  assert_success
  [ "$(jq -r .prompt <<<"$output")" = "the prompt" ]
  [ "$(jq -r .state <<<"$output")" = pending ]
  run q show nope
  assert_failure 2
  assert_output "harness: unknown item id: nope"
}

@test "cancel and retry move items and write audit lines" {
  q add --id a --prompt p >/dev/null
  run q cancel a
  assert_success
  [ "$(item_state a)" = canceled ]
  run q cancel a
  assert_failure 2
  assert_output --partial "already canceled"
  run q retry a
  assert_success
  [ "$(item_state a)" = pending ]
  run q retry a
  assert_failure 2
  assert_output --partial "only quarantined or canceled"
  run audit_events a
  assert_output $'item.added\nitem.canceled\nitem.retry'
}

@test "state is created 0700 and its files 0600, with either store" {
  q add --id a --prompt p >/dev/null
  [ "$(stat -c %a "$STATE")" = 700 ]
  [ "$(cat "$STATE/store")" = sqlite ]
  [ "$(stat -c %a "$STATE/harness.db")" = 600 ]
  [ "$(stat -c %a "$STATE/store")" = 600 ]
  [ "$(stat -c %a "$STATE/events.jsonl")" = 600 ]
  STATE="$T/files" HARNESS_STORE=files q add --id a --prompt p >/dev/null
  [ "$(cat "$T/files/store")" = files ]
  [ "$(stat -c %a "$T/files/queue/pending")" = 700 ]
  [ "$(stat -c %a "$T/files/queue/pending/a.json")" = 600 ]
  [ "$(stat -c %a "$T/files/events.jsonl")" = 600 ]
}

@test "usage errors exit 2 with one line" {
  run q frobnicate
  assert_failure 2
  assert_output --partial "unknown command: frobnicate"
  run q add --priority high
  assert_failure 2
  assert_output --partial "needs --prompt, --prompt-file or --file"
  run q add --prompt p --max-turns many
  assert_failure 2
}
