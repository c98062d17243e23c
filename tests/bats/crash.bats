#!/usr/bin/env bats
# The crash trial (tests/crash_trial.sh): loop.sh killed with SIGKILL at random
# moments during a multi-item queue, then restarted. Nothing lost, nothing done
# twice, no two live sessions of one item, nothing left behind.

setup() {
  load helpers
  sandbox_setup
}

teardown() { sandbox_teardown; }

@test "crash trial (SQLite, the default store): 20 runs of kill -9 at random moments; every item succeeds exactly once, never twice at once" {
  run "$HARNESS_ROOT/tests/crash_trial.sh" --runs 20 --items 4 --kills 2 --seed "$RANDOM" --json "$T/trial.json"
  printf '# %s\n' "${lines[-1]}" >&3
  assert_success
  [ "$(jq -c '[.lost, .doubled, .leftovers, .broken]' "$T/trial.json")" = "[0,0,0,0]" ]
  [ "$(jq '.runs' "$T/trial.json")" = 20 ]
  # every run had a kill land while work remained, and some sessions were adopted
  # alive, finalized after the fact or requeued
  [ "$(jq -c '[.unkilled, .kills >= 20, (.adopted + .recovered + .requeued) >= 5]' "$T/trial.json")" = '[0,true,true]' ]
}

@test "crash trial with the merge queue: kills during sessions and integrations; every item lands exactly once" {
  run "$HARNESS_ROOT/tests/crash_trial.sh" --runs 6 --items 4 --kills 2 --integrate --seed "$RANDOM" --json "$T/trial.json"
  printf '# %s\n' "${lines[-1]}" >&3
  assert_success
  [ "$(jq -c '[.lost, .doubled, .leftovers, .broken, .unkilled]' "$T/trial.json")" = "[0,0,0,0,0]" ]
}

@test "crash trial on the files store: every item succeeds exactly once" {
  run "$HARNESS_ROOT/tests/crash_trial.sh" --runs 8 --items 4 --kills 2 --store files --seed "$RANDOM" --json "$T/trial.json"
  printf '# %s\n' "${lines[-1]}" >&3
  assert_success
  [ "$(jq -c '[.lost, .doubled, .leftovers, .broken, .unkilled]' "$T/trial.json")" = "[0,0,0,0,0]" ]
}
