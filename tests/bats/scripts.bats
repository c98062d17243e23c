#!/usr/bin/env bats
# Every user-facing script carries # Summary: and # Usage: lines and prints them on --help.

setup() {
  load helpers
  sandbox_setup
}

@test "every script has Summary and Usage lines, and --help prints them" {
  local f n=0
  for f in "$HARNESS_ROOT/loop.sh" "$HARNESS_ROOT"/scripts/*.sh "$HARNESS_ROOT/tests/mocks/claude" "$HARNESS_ROOT/tests/install-deps.sh"; do
    n=$((n + 1))
    grep -q '^# Summary: ' "$f" || fail "$f has no '# Summary:' line"
    grep -q '^# Usage: ' "$f" || fail "$f has no '# Usage:' line"
    run "$f" --help
    assert_success
    assert_line --regexp '^Summary: '
    assert_line --regexp '^Usage: '
  done
  ((n >= 4))
}

@test "lib modules are sourced, not executable, and carry no eval" {
  local f
  for f in "$HARNESS_ROOT"/lib/*.sh; do
    [ ! -x "$f" ] || fail "$f is executable"
  done
  run grep -nE '(^|[;&|[:space:]])eval[[:space:]]' "$HARNESS_ROOT"/loop.sh "$HARNESS_ROOT"/lib/*.sh "$HARNESS_ROOT"/scripts/*.sh
  assert_failure 1
}

@test "the suite can fail: a deliberately failing fixture makes bats exit non-zero" {
  printf '#!/usr/bin/env bats\n@test "must fail" {\n  [ 1 = 2 ]\n}\n' >"$BATS_TEST_TMPDIR/failing.bats"
  run bats "$BATS_TEST_TMPDIR/failing.bats"
  assert_failure
  assert_output --partial "not ok 1 must fail"
}

@test "every command of every script answers --help and -h with its usage, exit 0, and does nothing else" {
  local script verb flag listed n=0
  local -A verbs=(
    [parse-session-events.sh]="list watch summary metrics tools errors timeline cost reconcile export"
    [queue.sh]="add list show runs run cancel retry"
    [loopctl.sh]="show pause resume circuit stop unstop worktrees prune migrate reindex gc"
  )
  for script in "${!verbs[@]}"; do
    # the commands here are the commands the script's help block lists
    listed=$(sed -n 's/^#   \([a-z][a-z]*\).*/\1/p' "$HARNESS_ROOT/scripts/$script" | sort -u | tr '\n' ' ')
    [ "$listed" = "$(tr ' ' '\n' <<<"${verbs[$script]}" | sort -u | tr '\n' ' ')" ] || fail "$script lists: $listed"
    for verb in ${verbs[$script]}; do
      for flag in --help -h; do
        # a state directory that does not exist: help comes before any look at it
        run "$HARNESS_ROOT/scripts/$script" --state "$T/none" "$verb" "$flag"
        assert_success
        assert_line --index 0 --regexp "^Usage: $script .*(^| )$verb( |$)"
        assert_line --regexp "^  $verb( |$)"
        n=$((n + 1))
      done
    done
  done
  ((n == 56))
  # --help after other arguments; nothing added, stopped or created
  run "$Q" --state "$T/none" add --id x --prompt p --help
  assert_success
  assert_line --index 0 --regexp '^Usage: queue.sh .* add '
  run "$HARNESS_ROOT/scripts/loopctl.sh" --state "$T/none" circuit open -h
  assert_success
  assert_line --index 0 --regexp '^Usage: loopctl.sh .* circuit '
  [ ! -e "$T/none" ]
  # status.sh has no commands: its usage, wherever --help is
  for args in "--help" "-h" "show --help" "--json -h" "--watch 5 --help"; do
    # shellcheck disable=SC2086 # the words are the arguments
    run "$HARNESS_ROOT/scripts/status.sh" --state "$T/none" $args
    assert_success
    assert_line --index 0 --regexp '^Summary: '
    assert_line --regexp '^Usage: status.sh '
  done
}
