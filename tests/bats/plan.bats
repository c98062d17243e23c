#!/usr/bin/env bats
# scripts/plan.sh: the real Claude Code CLI plans against the scripted Messages API
# (tests/fakeapi, scenario `plan`), for the fixture repository
# tests/python/fixtures/plan/shop; the plan is checked, ordered by the code's
# imports, printed and queued as a run, or refused with nothing queued.

setup() {
  load helpers
  sandbox_setup
  [[ -x "$REAL_CLAUDE" ]] || fail "the Claude Code CLI is not installed (run 'make setup')"
  fakeapi_start answer
  REPO="$T/repo"
  cp -r "$HARNESS_ROOT/tests/python/fixtures/plan/shop" "$REPO"
  PLAN="$HARNESS_ROOT/scripts/plan.sh"
}

teardown() { sandbox_teardown; }

plan() { "$PLAN" --state "$STATE" "$@"; }

queued() { # the queue's items as one line each: id run priority deps
  PYTHONPATH="$HARNESS_ROOT/lib" "$HARNESS_ROOT/.venv/bin/python" -m harness queue-list --state-dir "$STATE" --json |
    jq -r '.[] | "\(.id) \(.priority)"' | sort
}

api_calls() { # how many requests the fake API has seen
  if [[ -f "$FAKEAPI_DIR/requests.jsonl" ]]; then wc -l <"$FAKEAPI_DIR/requests.jsonl"; else echo 0; fi
}

@test "a scripted plan is checked, ordered by the imports, printed as a tree and queued as a run" {
  run plan --repo "$REPO" --run login --apply "Log in by email. [[fake:plan]]"
  assert_success
  assert_line "5 items, 13 points in all; critical path (*) 11 points: models -> api -> cli -> docs"
  assert_line "* models [3] Add an email field to User — app/models.py"
  assert_line "└── * api [5] Log in by email — app/api.py, tests/login_check.py"
  assert_line "    ├── * cli [2] Add a login command — app/cli.py"
  assert_line "    └──   web [2] Show the email in the web client — web/src/client.ts"
  assert_line "  api after models: app/api.py imports app/models.py"
  assert_line "  cli after api: app/cli.py imports app/api.py"
  assert_line "  docs: docs/login.md"
  assert_line --regexp '^planned by session [0-9a-f-]{36} \(\$[0-9.]+\); the answer: .*/plans/login/plan.json$'
  assert_line --partial "queued as run login: 5 items (4 high priority"
  # the queue holds the run: ids, dependencies (the plan's and the added), priorities, verify
  run queued
  assert_output $'login.api high\nlogin.cli high\nlogin.docs high\nlogin.models high\nlogin.web normal'
  [ "$(item_field login.api '.depends_on | join(",")')" = login.models ]
  [ "$(item_field login.cli '.depends_on | join(",")')" = login.api ]
  [ "$(item_field login.web '(.depends_on | join(",")) + " " + .verify + " " + .run')" = "login.api test -f web/src/client.ts login" ]
  [ "$(item_field login.docs '.depends_on | join(",")')" = login.cli ]
  [ "$(in_state login.models pending && echo ready)" = ready ]
  # the session was read-only: the API was offered no tool that writes or runs anything
  local body
  body=$(jq -r 'select(.msgs >= 1) | .n' "$FAKEAPI_DIR/requests.jsonl" | head -n 1)
  run jq -r '[.tools[].name] | sort | join(",")' "$FAKEAPI_DIR/bodies/$body.json"
  assert_output --regexp '^(DeferredToolPlaceholder,)?Glob,Grep,Read,StructuredOutput$'
  # its files stay with the plan, 0600 in a 0700 directory
  [ "$(stat -c %a "$STATE/plans/login")" = 700 ] && [ "$(stat -c %a "$STATE/plans/login/plan.json")" = 600 ]
  [ "$(jq -r '.items | length' "$STATE/plans/login/plan.json")" = 5 ]
  [ "$(jq -r 'select(.type == "result") | .structured_output.summary' "$STATE/plans/login/events.jsonl")" = \
    "Log in by email, end to end." ]
}

@test "--json gives the plan to scripts; without --apply nothing is queued, and --plan queues the saved plan later" {
  run plan --repo "$REPO" --run later --json "Log in by email. [[fake:plan]]"
  assert_success
  [ "$(jq -r '.applied' <<<"$output")" = false ]
  [ "$(jq -r '.critical_path | join(",")' <<<"$output")" = models,api,cli,docs ]
  [ "$(jq -r '.critical_size, .total_size' <<<"$output" | paste -sd' ')" = "11 13" ]
  [ "$(jq -r '.items[] | select(.id == "cli") | "\(.queue_id) \(.priority) \(.added_depends_on | join(","))"' <<<"$output")" = \
    "later.cli high api" ]
  [ "$(jq -r '.added | length' <<<"$output")" = 2 ]
  [ "$(jq -r '.session.cost_usd > 0 and (.session.id | length) == 36' <<<"$output")" = true ]
  [ "$(count_in pending)" = 0 ]
  local calls
  calls=$(api_calls)
  run plan --repo "$REPO" --plan "$STATE/plans/later/plan.json" --run later --apply
  assert_success
  assert_line --partial "queued as run later: 5 items"
  [ "$(api_calls)" = "$calls" ] # no session this time
  [ "$(count_in pending)" = 5 ]
  # the same run twice: refused, nothing added
  run plan --repo "$REPO" --plan "$STATE/plans/later/plan.json" --run later --apply
  assert_failure 2
  assert_output "harness: run later exists already: choose another name (--run)"
  [ "$(count_in pending)" = 5 ]
}

@test "a plan with a dependency cycle or an unknown dependency is refused, naming them; nothing is queued" {
  run plan --repo "$REPO" --run cyc --apply "Log in. [[fake:plan variant=cycle]]"
  assert_failure 2
  assert_output --regexp "^harness: the plan has a dependency cycle: cli -> docs -> cli; nothing queued \(the answer: .*/plans/cyc/plan.json: correct it and give it to --plan\)$"
  run plan --repo "$REPO" --run unk --apply "Log in. [[fake:plan variant=unknown]]"
  assert_failure 2
  assert_output --regexp "^harness: the plan names unknown dependencies: web depends on unknown item ghost; nothing queued"
  [ "$(count_in pending)" = 0 ]
  # corrected by hand, the saved answer goes in
  jq '.items[3].depends_on = ["api"]' "$STATE/plans/unk/plan.json" >"$T/fixed.json"
  run plan --repo "$REPO" --plan "$T/fixed.json" --run fixed --apply
  assert_success
  [ "$(count_in pending)" = 5 ]
}

@test "a malformed answer, or none, is one line and queues nothing; a failed session exits 1" {
  run plan --repo "$REPO" --run bad --apply "Log in. [[fake:plan variant=malformed]]"
  assert_failure 2
  assert_output --regexp "^harness: the planning session gave no plan \(its answer did not fit the plan's schema: Output does not match required schema: /items/1: must have required property 'prompt', /items/2/size: must be integer\); nothing queued; its stream: .*/plans/bad/events.jsonl$"
  run plan --repo "$REPO" --run prose --apply "Log in. [[fake:plan variant=prose]]"
  assert_failure 2
  assert_output --regexp "^harness: the planning session gave no plan \(the model did not answer with one; its last words: I would start with the models, then the API\.\); nothing queued"
  run plan --repo "$REPO" --run denied --apply "Log in. [[fake:err401]]"
  assert_failure 1
  assert_output --regexp "^harness: the planning session failed \(success, API status 401\): "
  [ "${#lines[@]}" = 1 ]
  # a session that hangs is stopped at --timeout (SIGINT, then SIGTERM, SIGKILL after KILL_GRACE_S)
  local t0=$SECONDS
  run plan --repo "$REPO" --run slow --timeout 2 --apply "Log in. [[fake:hang]]"
  assert_failure 1
  assert_output --regexp "^harness: the planning session ran past --timeout 2 s and was stopped \(its stream: .*/plans/slow/events.jsonl\)$"
  ((SECONDS - t0 < 10))
  [ "$(count_in pending)" = 0 ]
}

@test "bad input: an unknown repository, a goal of 10 MB, a NUL byte: one line, exit 2, no session, nothing queued" {
  run plan --repo "$T/nowhere" "Log in. [[fake:plan]]"
  assert_failure 2
  assert_output "harness: no repository at $T/nowhere (--repo DIR, or REPO_DIR)"
  head -c $((10 * 1024 * 1024)) /dev/zero | tr '\0' 'x' >"$T/goal.txt"
  run plan --repo "$REPO" --file "$T/goal.txt"
  assert_failure 2
  assert_output --regexp "^harness: the goal in .*goal.txt is over 1048576 bytes \(1 MiB\)"
  run plan --repo "$REPO" --apply <"$T/goal.txt"
  assert_failure 2
  assert_output --regexp "^harness: the goal on stdin is over 1048576 bytes"
  printf 'Log in.\0 [[fake:plan]]' >"$T/nul.txt"
  run plan --repo "$REPO" --file "$T/nul.txt" --apply
  assert_failure 2
  assert_output "harness: the goal in $T/nul.txt holds a NUL byte (at byte 7): a goal is text"
  run plan --repo "$REPO" --file "$T/missing.txt"
  assert_failure 2
  assert_output "harness: cannot read $T/missing.txt: No such file or directory"
  run plan --repo "$REPO" --max-turns many "x"
  assert_failure 2
  assert_output 'harness: --max-turns needs a number, got "many"'
  run plan --repo "$REPO" "one" "two"
  assert_failure 2
  [ "$(api_calls)" = 0 ] && [ "$(count_in pending)" = 0 ]
}

@test "a hostile goal reaches the model byte for byte and runs nothing" {
  local goal
  goal=$'Log in by "email" \'now\' $(touch '"$T"$'/pwned) `touch '"$T"$'/pwned2` ${HOME} \\ é ✓\n\tsecond line [[fake:plan]]'
  printf '%s' "$goal" >"$T/goal.md"
  run plan --repo "$REPO" --run hostile --file "$T/goal.md" --json
  assert_success
  [ ! -e "$T/pwned" ] && [ ! -e "$T/pwned2" ]
  local body
  body=$(jq -r 'select(.msgs >= 1) | .n' "$FAKEAPI_DIR/requests.jsonl" | head -n 1)
  python3 - "$FAKEAPI_DIR/bodies/$body.json" "$T/goal.md" <<'PY'
import json, sys
body, goal = json.load(open(sys.argv[1])), open(sys.argv[2], encoding="utf-8").read()
content = body["messages"][0]["content"]  # 2.1.332 sends a lone prompt as a string
texts = [content] if isinstance(content, str) else [b["text"] for b in content if b.get("type") == "text"]
assert any(t.rstrip("\n") == goal for t in texts), texts
PY
  cmp "$T/goal.md" "$STATE/plans/hostile/prompt.md"
  [ "$(jq -r .goal "$STATE/plans/hostile/plan.json")" = "$goal" ]
  # the goal as an argument, the same bytes
  run plan --repo "$REPO" --run hostile2 "$goal"
  assert_success
  cmp "$T/goal.md" "$STATE/plans/hostile2/prompt.md"
  [ ! -e "$T/pwned" ] && [ ! -e "$T/pwned2" ]
}

@test "analyze: the graph's summary and its layers, as text and as JSON; a missing repository is refused" {
  run plan analyze "$REPO"
  assert_success
  assert_line "repository $REPO: 12 source files (javascript 1, python 6, shell 2, typescript 3); 10 imports between them, 3 of modules from outside"
  assert_line "cycles: none"
  assert_line "layers: 4 (a file imports only files of the layers before its own)"
  assert_line --regexp '^ +0 +5 files  app/__init__.py, app/models.py, scripts/common.sh, web/lib/util/index.js, web/src/types.ts$'
  assert_line --regexp '^ +3 +2 files  app/cli.py, tests/login_check.py$'
  run plan analyze "$REPO" --json
  assert_success
  [ "$(jq -r '.edges_by_file["app/api.py"] | join(",")' <<<"$output")" = app/db.py,app/models.py ]
  [ "$(jq -r '.edges_by_file["scripts/run.sh"] | join(",")' <<<"$output")" = scripts/common.sh ]
  [ "$(jq -r '.edges_by_file["web/src/client.ts"] | join(",")' <<<"$output")" = web/lib/util/index.js,web/src/types.ts ]
  [ "$(jq -r '.layers | length' <<<"$output")" = 4 ]
  # REPO_DIR when no repository is named
  run env HARNESS_REPO_DIR="$REPO" "$PLAN" --state "$STATE" analyze
  assert_success
  assert_line --partial "12 source files"
  run plan analyze "$T/nowhere"
  assert_failure 2
  assert_output "harness: no repository at $T/nowhere"
  run plan analyze "$REPO" --apply
  assert_failure 2
  assert_output "harness: analyze takes only REPO and --json"
}

@test "the queued run drains in the order the code gave it" {
  git -C "$REPO" init -q -b main
  git -C "$REPO" add -A
  git -C "$REPO" -c user.name=t -c user.email=t@example.invalid commit -qm fixture
  run plan --repo "$REPO" --run ordered --apply "Log in by email. [[fake:plan]]"
  assert_success
  run loop --drain --set REPO_DIR="$REPO"
  assert_success
  run jq -r 'select(.event == "item.claimed") | .item' "$STATE/events.jsonl"
  # models, then api (it imports models), then cli (it imports api); then docs (after cli) and web
  # (after api) are both ready, and docs goes first: it is on the critical path (priority high)
  assert_output $'ordered.models\nordered.api\nordered.cli\nordered.docs\nordered.web'
  [ "$(count_in succeeded)" = 5 ]
}
