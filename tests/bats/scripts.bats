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
