#!/usr/bin/env bats
# The merge queue (INTEGRATE): verified work lands on TARGET_BRANCH one item at a
# time, verified again on the merged tree; real git, the stub agent in its "commit"
# mode (it commits file=NAME line=WORD from its prompt; a fix round merges the target
# its prompt names and commits compat.txt).

setup() {
  load helpers
  sandbox_setup
  git_repo "$T/repo"
  git -C "$T/repo" branch trunk
  export MOCK_CLAUDE_MODE=commit
  INTEGRATE=(--set REPO_DIR="$T/repo" --set INTEGRATE=merge --set TARGET_BRANCH=trunk)
}

teardown() { sandbox_teardown; }

on_trunk() { # <file>: the file's content on trunk
  git -C "$T/repo" show "trunk:$1"
}

@test "two items land on the target one at a time; the main checkout is never touched" {
  q add --id a --prompt "file=a.txt" >/dev/null
  q add --id b --prompt "file=b.txt" >/dev/null
  run loop --drain -j 2 "${INTEGRATE[@]}"
  assert_success
  [ "$(item_state a) $(item_state b)" = "succeeded succeeded" ]
  [ "$(on_trunk a.txt) $(on_trunk b.txt)" = "a.txt b.txt" ]
  [ "$(git -C "$T/repo" log --merges --format=%s trunk | wc -l)" = 2 ]
  # the main checkout: still on main, at its first commit, clean
  [ "$(git -C "$T/repo" symbolic-ref --short HEAD) $(git -C "$T/repo" rev-list --count HEAD)" = "main 1" ]
  [ -z "$(git -C "$T/repo" status --porcelain)" ] && [ ! -e "$T/repo/a.txt" ]
  item_field a .last_reason | grep -qE '^landed on trunk as [0-9a-f]{12} \(merge\)$'
  run audit_events a
  assert_output --partial $'item.verified\nitem.integrated\nitem.succeeded'
  # every branch stays; no scratch worktree is left
  [ "$(git -C "$T/repo" branch --list 'harness/*' | wc -l)" = 2 ]
  [ "$(git -C "$T/repo" worktree list | wc -l)" = 1 ]
}

@test "a conflict is a fix round on the item's branch brought up to the target; then it lands with both changes" {
  q add --id c1 --priority high --prompt "file=shared.txt line=one" >/dev/null
  q add --id c2 --prompt "file=shared.txt line=two" >/dev/null
  run loop --drain "${INTEGRATE[@]}"
  assert_success
  [ "$(item_state c1) $(item_state c2)" = "succeeded succeeded" ]
  [ "$(on_trunk shared.txt | sort | tr '\n' ' ')" = "one two " ]
  [ "$(item_field c2 '[.history[].verdict] | join(" ")')" = "succeeded integrate_failed succeeded succeeded" ]
  item_field c2 '.history[1].reason' | grep -qF 'does not merge onto trunk'
  # the fix round was told to merge the target, and resumed the same conversation
  local fix
  fix=$(item_field c2 '.history[2].session_id')
  grep -qF 'git merge trunk' "$STATE/sessions/$fix/input.txt"
  [ "$(jq -r .fix_round "$STATE/sessions/$fix/meta.json")" = 1 ]
  # every commit of both branches is on trunk
  local br
  for br in $(git -C "$T/repo" branch --list 'harness/*' --format='%(refname:short)'); do
    git -C "$T/repo" merge-base --is-ancestor "$br" trunk
  done
}

@test "two items that merge cleanly but break the check together: the second is not landed until fixed" {
  q add --id a --priority high --prompt "file=a.txt" >/dev/null
  q add --id b --prompt "file=b.txt" >/dev/null
  run loop --drain "${INTEGRATE[@]}" --set VERIFY_CMD='[ ! -e a.txt ] || [ ! -e b.txt ] || [ -e compat.txt ]'
  assert_success
  [ "$(item_state a) $(item_state b)" = "succeeded succeeded" ]
  item_field b '.history[] | select(.verdict == "integrate_failed") | .reason' | grep -qF 'fails its verify command merged onto trunk'
  [ "$(on_trunk compat.txt)" = fixed ]
  # the fix round began on the branch with trunk merged in: the very tree that failed
  grep -qF 'Your branch already has trunk merged in' \
    "$STATE/sessions/$(item_field b '.history[] | select(.fix_round) | .session_id')/input.txt"
  # trunk never held a.txt and b.txt without compat.txt
  local c
  for c in $(git -C "$T/repo" rev-list --first-parent trunk); do
    git -C "$T/repo" cat-file -e "$c:compat.txt" 2>/dev/null && continue
    ! { git -C "$T/repo" cat-file -e "$c:a.txt" 2>/dev/null && git -C "$T/repo" cat-file -e "$c:b.txt" 2>/dev/null; }
  done
}

@test "a target checked out in REPO_DIR is refused at start, saying why" {
  run loop --drain --set REPO_DIR="$T/repo" --set INTEGRATE=merge --set TARGET_BRANCH=main
  [ "$status" = 2 ]
  assert_output --partial "TARGET_BRANCH main is checked out in $T/repo"
  run loop --drain --set REPO_DIR="$T/repo" --set INTEGRATE=octopus --set TARGET_BRANCH=trunk
  [ "$status" = 2 ]
  assert_output --partial "INTEGRATE must be off, merge, rebase or squash"
}

@test "rebase and squash land the work without a merge commit, and leave the item's branch as it was" {
  q add --id r --prompt "file=r.txt" >/dev/null
  run loop --drain --set REPO_DIR="$T/repo" --set INTEGRATE=rebase --set TARGET_BRANCH=trunk
  assert_success
  q add --id s --prompt "file=s.txt" >/dev/null
  run loop --drain --set REPO_DIR="$T/repo" --set INTEGRATE=squash --set TARGET_BRANCH=trunk
  assert_success
  [ "$(on_trunk r.txt) $(on_trunk s.txt)" = "r.txt s.txt" ]
  [ "$(git -C "$T/repo" log --merges --format=%s trunk | wc -l)" = 0 ]
  # squash: one commit titled after the item; rebase: the branch's own commits
  [ "$(git -C "$T/repo" log --format=%s trunk | head -n 2 | tr '\n' '|')" = "file=s.txt|add r.txt|" ]
  local br
  br=$(jq -r .branch "$(session_of r)/meta.json")
  [ "$(git -C "$T/repo" log --format=%s "$br" | head -n 1)" = "add r.txt" ]
  [ "$(git -C "$T/repo" rev-list --count "$br")" = 2 ]
}

wait_integrating() { test -e "$STATE/integrate.verify.pid"; }

@test "kill -9 of the loop and of its integration mid-verify: after a restart the item lands exactly once" {
  q add --id k --prompt "file=k.txt" >/dev/null
  local gate="case \$PWD in */integrate/*) while [ ! -e '$T/go' ]; do sleep 0.05; done ;; esac"
  "$LOOP" --state "$STATE" --drain "${INTEGRATE[@]}" --set VERIFY_CMD="$gate" >"$T/out" 2>"$T/err" 3>&- &
  local pid=$!
  wait_for 30 wait_integrating
  local before
  before=$(git -C "$T/repo" rev-parse trunk)
  kill -9 "$pid"
  pkill -9 -f "harness integrate --state-dir $STATE" || true
  wait "$pid" 2>/dev/null || true
  [ "$(git -C "$T/repo" rev-parse trunk)" = "$before" ] # before the landing, not in between
  [ "$(item_state k)" = verified ]
  touch "$T/go"
  run loop --drain "${INTEGRATE[@]}" --set VERIFY_CMD="$gate"
  assert_success
  [ "$(item_state k)" = succeeded ]
  [ "$(git -C "$T/repo" log --merges --format=%s trunk | wc -l)" = 1 ]
  [ "$(on_trunk k.txt)" = k.txt ]
  [ "$(jq -r 'select(.event == "item.integrated") | .item' "$STATE/events.jsonl")" = k ]
  wait_for 5 bash -c "! pgrep -f 'while \[ ! -e' >/dev/null"
}

@test "PUSH_REMOTE: the target is pushed after each landing; a push rejected because someone pushed first integrates again" {
  git clone -q --bare "$T/repo" "$T/remote.git"
  git -C "$T/repo" remote add origin "$T/remote.git"
  git clone -q "$T/remote.git" "$T/other"
  q add --id p --prompt "file=p.txt" >/dev/null
  local gate="case \$PWD in */integrate/*) while [ ! -e '$T/go' ]; do sleep 0.05; done ;; esac"
  "$LOOP" --state "$STATE" --drain "${INTEGRATE[@]}" --set PUSH_REMOTE=origin --set VERIFY_CMD="$gate" \
    >"$T/out" 2>"$T/err" 3>&- &
  local pid=$! rc=0
  wait_for 30 wait_integrating
  # someone else lands a commit on the remote's trunk meanwhile
  git -C "$T/other" checkout -q trunk
  echo theirs >"$T/other/theirs.txt"
  git -C "$T/other" add theirs.txt
  git -C "$T/other" -c user.name=o -c user.email=o@example.invalid commit -qm "their change"
  git -C "$T/other" push -q origin trunk
  touch "$T/go"
  wait "$pid" || rc=$?
  [ "$rc" = 0 ]
  [ "$(item_state p)" = succeeded ]
  [ "$(git -C "$T/remote.git" show trunk:p.txt) $(git -C "$T/remote.git" show trunk:theirs.txt)" = "p.txt theirs" ]
  audit_has '.event == "integrate.retry" and .item == "p"'
  # the local target followed the remote, forward only
  [ "$(git -C "$T/repo" rev-parse trunk)" = "$(git -C "$T/remote.git" rev-parse trunk)" ]
}

@test "a prune after a crash mid-integration loses nothing; prune --merged then deletes only landed branches" {
  q add --id k --prompt "file=k.txt" >/dev/null
  local gate="case \$PWD in */integrate/*) while [ ! -e '$T/go' ]; do sleep 0.05; done ;; esac"
  "$LOOP" --state "$STATE" --drain "${INTEGRATE[@]}" --set VERIFY_CMD="$gate" >"$T/out" 2>"$T/err" 3>&- &
  local pid=$! branch
  wait_for 30 wait_integrating
  kill -9 "$pid"
  pkill -9 -f "harness integrate --state-dir $STATE" || true
  wait "$pid" 2>/dev/null || true
  branch=$(jq -r .branch "$(session_of k)/meta.json")
  HARNESS_REPO_DIR="$T/repo" HARNESS_TARGET_BRANCH=trunk run "$HARNESS_ROOT/scripts/loopctl.sh" --state "$STATE" prune --older-than 0
  assert_success
  HARNESS_REPO_DIR="$T/repo" HARNESS_TARGET_BRANCH=trunk run "$HARNESS_ROOT/scripts/loopctl.sh" --state "$STATE" prune --merged
  assert_success
  assert_output --partial "deleted 0 branch(es) wholly on trunk"
  git -C "$T/repo" cat-file -e "$branch:k.txt" # the work is still on its branch
  touch "$T/go"
  run loop --drain "${INTEGRATE[@]}" --set VERIFY_CMD="$gate"
  assert_success
  [ "$(item_state k) $(on_trunk k.txt)" = "succeeded k.txt" ]
  HARNESS_REPO_DIR="$T/repo" HARNESS_TARGET_BRANCH=trunk run "$HARNESS_ROOT/scripts/loopctl.sh" --state "$STATE" prune --merged
  assert_success
  assert_output --partial "deleted branch $branch"
  ! git -C "$T/repo" rev-parse --verify --quiet "refs/heads/$branch"
}

@test "pruning a kept worktree saves the work no branch holds on harness/salvage/<session> first" {
  export MOCK_CLAUDE_MODE=max_turns
  q add --id f --prompt p >/dev/null
  run loop --drain --set REPO_DIR="$T/repo" --set MAX_ATTEMPTS=1
  assert_success
  local dir sid
  dir=$(jq -r .cwd "$(session_of f)/meta.json")
  sid=$(basename "$(session_of f)")
  echo "half done" >"$dir/wip.txt"  # the agent's work, never committed
  HARNESS_REPO_DIR="$T/repo" run "$HARNESS_ROOT/scripts/loopctl.sh" --state "$STATE" prune --older-than 0
  assert_success
  [ ! -e "$dir" ]
  [ "$(git -C "$T/repo" show "harness/salvage/$sid:wip.txt")" = "half done" ]
  audit_has ".event == \"worktree.pruned\" and .saved_on == \"harness/salvage/$sid\""
}

@test "a remote that cannot be reached puts the landing off; --drain stops waiting after DRAIN_MAX_WAIT_S and says so" {
  git -C "$T/repo" remote add origin "$T/nowhere.git"
  q add --id u --prompt "file=u.txt" >/dev/null
  run loop --drain "${INTEGRATE[@]}" --set PUSH_REMOTE=origin --set DRAIN_MAX_WAIT_S=1
  assert_success
  assert_output --partial "the merge queue was put off for more than 1 s; verified items wait for the next run"
  [ "$(item_state u) $(item_field u '.history | length')" = "verified 1" ]
  audit_has '.event == "integrate.deferred" and .item == "u" and (.reason | test("git fetch origin trunk failed"))'
}

@test "a dependent item's session starts from the target, where its dependency has landed; work left uncommitted lands as verified" {
  q add --id dep --prompt "file=dep.txt" >/dev/null
  q add --id user --prompt "file=user.txt nocommit" --depends-on dep --verify 'test -e dep.txt && test -e user.txt' >/dev/null
  run loop --drain "${INTEGRATE[@]}"
  assert_success
  [ "$(item_state dep) $(item_state user)" = "succeeded succeeded" ]
  [ "$(item_field user '[.history[].verdict] | join(" ")')" = "succeeded succeeded" ]
  [ "$(on_trunk user.txt) $(on_trunk dep.txt)" = "user.txt dep.txt" ]
  git -C "$T/repo" log --format=%s trunk | grep -qF "Uncommitted work of ses_"
  audit_has '.event == "worktree.committed" and .item == "user"'
}

@test "items left verified by a run with the merge queue succeed, unlanded, when it is turned off; a verified item can be canceled" {
  q add --id v1 --prompt "file=v1.txt" >/dev/null
  q add --id v2 --prompt "file=v2.txt" >/dev/null
  # a remote that cannot be reached keeps both verified
  git -C "$T/repo" remote add origin "$T/nowhere.git"
  run loop --drain "${INTEGRATE[@]}" --set PUSH_REMOTE=origin --set DRAIN_MAX_WAIT_S=0.5
  assert_success
  [ "$(item_state v1) $(item_state v2)" = "verified verified" ]
  run q cancel v2
  assert_success
  run loop --drain --set REPO_DIR="$T/repo"
  assert_success
  audit_has '.event == "item.succeeded" and .item == "v1" and .from == "verified"'
  [ "$(item_state v1) $(item_state v2)" = "succeeded canceled" ]
  item_field v1 .last_reason | grep -qF "verified; not landed: the merge queue is off (its branch harness/v1/1 holds the work)"
}
