#!/usr/bin/env bats
# Several agents at once (-j N), scheduling (priority, aging, dependencies,
# blocked items), worktrees (branches, removal, keeping, pruning) and status.sh.

setup() {
  load helpers
  sandbox_setup
  CTL="$HARNESS_ROOT/scripts/loopctl.sh"
  STATUS="$HARNESS_ROOT/scripts/status.sh"
}

teardown() { sandbox_teardown; }

@test "8 parallel agents over 200 items: each claimed once, all succeed, 8 at a time, order by priority and dependencies" {
  python3 - "$T/items.jsonl" <<'PY'
import json, random, sys
rng = random.Random(5)
prios = ["critical", "high", "normal", "low"]
items = [{"id": f"it{n:03d}", "priority": rng.choice(prios), "prompt": f"item {n} [[mock:slow]]"} for n in range(200)]
for n in range(20, 200, 9):  # some depend on one or two earlier items, of any priority
    items[n]["depends_on"] = sorted({f"it{rng.randrange(n):03d}" for _ in range(rng.choice([1, 2]))})
with open(sys.argv[1], "w") as fh:
    fh.writelines(json.dumps(i) + "\n" for i in items)
PY
  q add --file "$T/items.jsonl" >/dev/null
  mkdir "$T/witness"
  MOCK_CLAUDE_WITNESS="$T/witness" MOCK_CLAUDE_DELAY_S=2 run loop --drain -j 8 --set AGING_S=0
  assert_success
  [ "$(count_in succeeded)" = 200 ]
  [ ! -s "$T/witness/doubles" ]
  [ "$(wc -l <"$T/witness/runs")" = 200 ]
  python3 - "$STATE" "$T/items.jsonl" <<'PY'
import json, sys
state, items_file = sys.argv[1], sys.argv[2]
items = {i["id"]: i for i in map(json.loads, open(items_file))}
rank = {"critical": 0, "high": 1, "normal": 2, "low": 3}
events = [json.loads(line) for line in open(f"{state}/events.jsonl")]
claims = [e["item"] for e in events if e["event"] == "item.claimed"]
assert len(claims) == 200 and len(set(claims)) == 200, "an item was claimed twice"
pending, done, live, most = set(items), set(), 0, 0
for e in events:
    if e["event"] == "item.claimed":
        it = items[e["item"]]
        assert set(it.get("depends_on", [])) <= done, f"{e['item']} started before its dependencies succeeded"
        ready = [p for p in pending if set(items[p].get("depends_on", [])) <= done]
        best = min(ready, key=lambda p: (rank[items[p]["priority"]], p))
        assert (rank[it["priority"]], e["item"]) == (rank[items[best]["priority"]], best), \
            f"claimed {e['item']} ({it['priority']}) while {best} ({items[best]['priority']}) was ready"
        pending.discard(e["item"])
    elif e["event"] == "session.started":
        live += 1
        most = max(most, live)
    elif e["event"] == "session.ended":
        live -= 1
    elif e["event"] == "item.succeeded":
        done.add(e["item"])
assert most == 8, f"at most {most} sessions ran at once, not 8"
PY
}

@test "aging: an old low-priority item is not starved by newer high-priority ones" {
  local old
  old=$(date -u -d '-2 hours' +%Y-%m-%dT%H:%M:%S.000Z)
  jq -nc --arg c "$old" '{id: "old-low", priority: "low", prompt: "p", created_at: $c}' | q add --file - >/dev/null
  for i in 1 2 3; do q add --id "new-high-$i" --priority high --prompt p >/dev/null; done
  q add --id new-critical --priority critical --prompt p >/dev/null
  run loop --drain --set AGING_S=3600
  assert_success
  # low (3) waited 2 h: two levels up, to high, and older than the new high ones
  run jq -r 'select(.event == "item.claimed") | .item' "$STATE/events.jsonl"
  assert_output $'new-critical\nold-low\nnew-high-1\nnew-high-2\nnew-high-3'
}

@test "a dependency quarantined or canceled: the item is blocked with the reason, never run; list and status say so" {
  q add --id bad --prompt "[[mock:max_turns]]" >/dev/null
  q add --id gone --prompt p >/dev/null
  q cancel gone >/dev/null
  q add --id after-bad --prompt p --depends-on bad >/dev/null
  q add --id after-both --prompt p --depends-on bad --depends-on gone >/dev/null
  run loop --drain
  assert_success
  [ "$(item_state after-bad) $(item_state after-both)" = "pending pending" ]
  [ "$(grep -c . "$MOCK_CLAUDE_LOG")" = 1 ]
  run q list --state pending
  assert_line --regexp "^after-bad +blocked .* depends on bad, which is quarantined \| p$"
  assert_line --regexp "^after-both +blocked .* depends on bad, which is quarantined, gone, which is canceled \| p$"
  run q list --json --state pending
  [ "$(jq -r '.[] | select(.id == "after-bad") | .blocked' <<<"$output")" = "depends on bad, which is quarantined" ]
  run "$STATUS" --state "$STATE" --json
  [ "$(jq -c '.queue | [.pending, .blocked, .waiting]' <<<"$output")" = "[2,2,0]" ]
  # a cycle, or an unknown id, is refused at add
  run q add --id x --prompt p --depends-on nope
  assert_failure 2
  assert_output "harness: item x: depends on unknown id nope"
}

@test "SPAWN_DELAY_S spaces the spawns; a memory gate holds claims and says why" {
  for i in 1 2 3; do q add --id "s$i" --prompt "[[mock:slow]]" >/dev/null; done
  MOCK_CLAUDE_DELAY_S=2 run loop --drain -j 3 --set SPAWN_DELAY_S=0.5
  assert_success
  python3 - "$STATE/events.jsonl" <<'PY'
import json, sys
from datetime import datetime
ts = [datetime.fromisoformat(e["ts"].replace("Z", "+00:00")).timestamp()
      for e in map(json.loads, open(sys.argv[1])) if e["event"] == "session.started"]
gaps = [b - a for a, b in zip(ts, ts[1:])]
assert len(ts) == 3 and min(gaps) >= 0.5, gaps
assert max(gaps) < 1.5, f"the three should still overlap: {gaps}"
PY
  q add --id m --prompt p >/dev/null
  run loop --drain --set MIN_FREE_MEM_MB=999999999
  assert_success
  assert_output --regexp "not claiming: only [0-9]+ MB of memory available \(MIN_FREE_MEM_MB is 999999999\)"
  [ "$(item_state m)" = pending ]
}

@test "worktrees: a branch per attempt; removed after success, kept after failure; listed, pruned by hand and by age" {
  git_repo "$T/repo"
  q add --id ok --prompt p >/dev/null
  q add --id bad --prompt "[[mock:max_turns]]" >/dev/null
  q add --id flaky --prompt "[[mock:crash]]" >/dev/null
  MOCK_CLAUDE_ONCE="$T/once" run loop --drain --set REPO_DIR="$T/repo" --set RETRY_BASE_S=0
  assert_success
  # flaky crashed once (attempt 1) and succeeded on attempt 2: two branches
  run git -C "$T/repo" branch --list 'harness/*' --format '%(refname:short)'
  assert_output $'harness/bad/1\nharness/flaky/1\nharness/flaky/2\nharness/ok/1'
  [ "$(item_state ok) $(item_state flaky) $(item_state bad)" = "succeeded succeeded quarantined" ]
  [ ! -d "$(jq -r .cwd "$(session_of ok)/meta.json")" ]
  local kept
  kept=$(jq -r .cwd "$(session_of bad)/meta.json")
  [ -d "$kept" ] && [ -f "$kept/README" ]
  [ "$(git -C "$T/repo" rev-parse --abbrev-ref HEAD)" = main ] && [ -z "$(git -C "$T/repo" status --porcelain)" ]
  export HARNESS_REPO_DIR="$T/repo"
  run "$CTL" --state "$STATE" worktrees
  assert_success
  assert_line --regexp "^ses_.* bad +max_turns +[0-9.]+h  harness/bad/1$"
  assert_line --regexp "^ses_.* flaky +crashed +[0-9.]+h  harness/flaky/1$"
  run "$CTL" --state "$STATE" prune --older-than 1 --dry-run
  assert_output "would remove 0 worktree(s)"
  # by hand: everything kept goes; the branches stay
  run "$CTL" --state "$STATE" prune --older-than 0
  assert_line "removed 2 worktree(s)"
  [ ! -d "$kept" ]
  [ "$(git -C "$T/repo" branch --list 'harness/*' | wc -l)" = 4 ]
  [ -z "$(git -C "$T/repo" worktree list --porcelain | grep -F "$STATE/worktrees" || true)" ]
  # by age: the loop prunes kept worktrees older than WORKTREE_MAX_AGE_DAYS when it starts
  q add --id bad2 --prompt "[[mock:max_turns]]" >/dev/null
  loop --drain >/dev/null
  kept=$(jq -r .cwd "$(session_of bad2)/meta.json")
  [ -d "$kept" ]
  touch -d '-20 days' "$kept"
  loop --drain --set WORKTREE_MAX_AGE_DAYS=14 >/dev/null
  [ ! -d "$kept" ]
  run jq -r 'select(.event == "worktree.pruned") | .item' "$STATE/events.jsonl"
  assert_line --index 2 bad2
  [ "$(printf '%s\n' "${lines[@]:0:2}" | sort | tr '\n' ' ')" = "bad flaky " ]
}

@test "status.sh: the loop, each live agent, queue counts and today's totals; --json; stale heartbeats flagged" {
  q add --id done1 --prompt p >/dev/null
  loop --drain >/dev/null
  q add --id h --prompt "[[mock:hang]]" >/dev/null
  "$LOOP" --state "$STATE" --set HEARTBEAT_S=0.2 3>&- &
  local pid=$!
  wait_for 10 heartbeat_of h requesting
  run "$STATUS" --state "$STATE"
  assert_success
  assert_line --regexp "^loop +running \(pid $pid, forever, 1/1 sessions\)$"
  assert_line "circuit   closed"
  assert_line --regexp "^queue +pending 0 \(blocked 0, waiting 0\)  running 1  succeeded 1  quarantined 0  canceled 0$"
  assert_line --regexp "^today +1 sessions, 1 succeeded \(100%\), \\\$0.0125, 315 tokens"
  assert_line --regexp "^h +ses_[0-9a-f-]{12} +requesting +[0-9]+s +[0-9]+s +0 +0 \\\$ 0.0000  $STATE/worktrees/ses_"
  run "$STATUS" --state "$STATE" --json
  assert_success
  [ "$(jq -c 'keys' <<<"$output")" = '["agents","at","circuit","disk","governor","hosts","loop","pause","queue","runs","sidecar","state_dir","today"]' ]
  [ "$(jq -c '.agents[0] | keys' <<<"$output")" = '["attempt","branch","cost_usd","heartbeat_age_s","item","outstanding_tool","phase","running_s","session","since_last_event_s","stale","tokens","turns","worktree"]' ]
  [ "$(jq -r '[.loop.running, .agents[0].item, .agents[0].stale, .today.sessions] | join(" ")' <<<"$output")" = "true h false 1" ]
  # a heartbeat nobody rewrites any more is flagged
  kill -STOP "$(jq -r .pid "$STATE/sidecar.heartbeat.json")"
  wait_for 10 agent_stale
  run "$STATUS" --state "$STATE" --no-color
  assert_output --partial "STALE heartbeat"
  kill -CONT "$(jq -r .pid "$STATE/sidecar.heartbeat.json")"
  kill -TERM "$pid"
  wait "$pid" || true
  run "$STATUS" --state "$STATE"
  assert_line "loop      not running"
}

heartbeat_of() { # <item> <phase>: its latest session's heartbeat shows that phase
  [ "$(jq -r .phase "$(session_of "$1")/heartbeat.json" 2>/dev/null)" = "$2" ]
}

agent_stale() {
  [ "$("$STATUS" --state "$STATE" --json | jq -r '.agents[0].stale')" = true ]
}
