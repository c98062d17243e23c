#!/usr/bin/env bats
# Configuration: defaults < harness.conf < HARNESS_* environment < flags.

setup() {
  load helpers
  sandbox_setup
}

teardown() { sandbox_teardown; }

@test "--print-config shows each value and where it came from" {
  printf '# a comment\n\nMAX_TURNS=11\nMODEL="claude-file"\nJOBS = 2\n' >"$T/h.conf"
  HARNESS_MODEL=claude-env run "$LOOP" --config "$T/h.conf" -j 4 --set MAX_BUDGET_USD=1.5 --print-config
  assert_success
  assert_line --regexp "^MAX_TURNS += 11 +# $T/h.conf:3$"
  assert_line --regexp "^MODEL += claude-env +# env HARNESS_MODEL$"
  assert_line --regexp "^JOBS += 4 +# flag$"
  assert_line --regexp "^MAX_BUDGET_USD += 1.5 +# flag$"
  assert_line --regexp "^MAX_ATTEMPTS += 3 +# default$"
  assert_line --regexp "^CLAUDE_BIN += $HARNESS_ROOT/tests/mocks/claude +# env CLAUDE_BIN$"
}

@test "--print-config keeps its columns: '=' after the longest key, '#' after the longest value" {
  run "$LOOP" --print-config --set MODEL=a-model-name-longer-than-the-forty-characters-of-old-x
  assert_success
  assert_line --regexp "^AGENT_VERSION_TIMEOUT_S = 10 +# default$"
  assert_line --regexp "^CIRCUIT_STORM_RETRIES += 5 +# default$"
  assert_line --regexp "^MODEL += a-model-name-longer-than-the-forty-characters-of-old-x # flag$"
  # one column for every line's " = ", and one for its " # "
  [ "$(awk '{ print index($0, " = ") }' <<<"$output" | sort -u | wc -l)" = 1 ]
  [ "$(awk '{ print index($0, " # ") }' <<<"$output" | sort -u | wc -l)" = 1 ]
}

@test "CLAUDE_BIN: the claude on PATH, else the one make setup installed; --print-config says which" {
  harness_copy
  local setup="$T/h/.tools/claude/node_modules/.bin/claude"
  ln -s "$HARNESS_ROOT/tests/mocks/claude" "$setup"
  unset CLAUDE_BIN
  PATH="$NO_CLAUDE_PATH" run "$T/h/loop.sh" --print-config
  assert_success
  assert_line --regexp "^CLAUDE_BIN += $setup +# make setup \(no claude on PATH\)$"
  # a claude on PATH comes first (the sandbox's PATH has the stub)
  run "$T/h/loop.sh" --print-config
  assert_line --regexp "^CLAUDE_BIN += claude +# default \(on PATH: $HARNESS_ROOT/tests/mocks/claude\)$"
  # one that is configured is used as it is
  CLAUDE_BIN=/nonexistent/claude PATH="$NO_CLAUDE_PATH" run "$T/h/loop.sh" --print-config
  assert_line --regexp "^CLAUDE_BIN += /nonexistent/claude +# env CLAUDE_BIN$"
  # neither on PATH nor installed
  rm "$setup"
  PATH="$NO_CLAUDE_PATH" run "$T/h/loop.sh" --print-config
  assert_line --regexp "^CLAUDE_BIN += claude +# default \(not on PATH; run 'make setup' or set CLAUDE_BIN\)$"
  PATH="$NO_CLAUDE_PATH" run "$T/h/loop.sh" --state "$STATE" --drain
  assert_failure 1
  assert_output "harness: agent binary not found: claude (set CLAUDE_BIN)"
}

@test "harness.conf is parsed, never sourced: nothing in it runs" {
  printf 'MODEL=$(touch %s/pwned)\nALLOWED_TOOLS=`touch %s/pwned2`\n' "$T" "$T" >"$T/h.conf"
  run "$LOOP" --config "$T/h.conf" --print-config
  assert_success
  assert_line --regexp '^MODEL += \$\(touch .*/pwned\) +#'
  [ ! -e "$T/pwned" ] && [ ! -e "$T/pwned2" ]
}

@test "bad configuration is a one-line error with exit 2" {
  printf 'MAX_TURNS=ten\n' >"$T/a.conf"
  run "$LOOP" --config "$T/a.conf" --print-config
  assert_failure 2
  assert_output "harness: MAX_TURNS must be a whole number, got \"ten\" ($T/a.conf:1)"
  printf 'NOPE=1\n' >"$T/b.conf"
  run "$LOOP" --config "$T/b.conf" --print-config
  assert_failure 2
  assert_output "harness: unknown configuration key NOPE ($T/b.conf:1)"
  printf 'just words\n' >"$T/c.conf"
  run "$LOOP" --config "$T/c.conf" --print-config
  assert_failure 2
  assert_output "harness: $T/c.conf:1: expected KEY=VALUE"
  run "$LOOP" --config "$T/missing.conf" --print-config
  assert_failure 2
  assert_output "harness: cannot read config file $T/missing.conf"
  HARNESS_SKIP_PERMISSIONS=maybe run "$LOOP" --print-config
  assert_failure 2
  # a misspelt key is an error wherever it arrives: the environment and --set too
  HARNESS_MAX_TURNZ=3 run "$LOOP" --print-config
  assert_failure 2
  assert_output "harness: unknown configuration key MAX_TURNZ (env HARNESS_MAX_TURNZ)"
  run "$LOOP" --set MAX_TURNZ=3 --print-config
  assert_failure 2
  assert_output "harness: unknown configuration key MAX_TURNZ (flag)"
  # the variables that say how a process runs are not keys, and are no error
  HARNESS_DEBUG=0 HARNESS_QUIET=1 HARNESS_NO_INOTIFY=1 run "$LOOP" --print-config
  assert_success
  run "$LOOP" --bogus
  assert_failure 2
  assert_output "harness: unknown argument: --bogus (see --help)"
}

@test "REPO_DIR that is not a git work tree is refused before anything is claimed" {
  mkdir "$T/notgit"
  q add --id a --prompt p >/dev/null
  run loop --drain --set REPO_DIR="$T/notgit"
  assert_failure 1
  assert_output --partial "is not a git work tree"
  [ "$(item_state a)" = pending ]
}

@test "docs/configuration.md lists every configuration key" {
  local key
  for key in $("$LOOP" --print-config | awk '{print $1}'); do
    grep -q "^| \`$key\` |" "$HARNESS_ROOT/docs/configuration.md" || fail "docs/configuration.md lacks $key"
  done
}
