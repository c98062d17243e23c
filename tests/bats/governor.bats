#!/usr/bin/env bats
# The governor (JOBS_MAX): how many sessions run at once, against a scripted API
# that refuses requests above a concurrency limit, and rate-limit events.

setup() {
  load helpers
  sandbox_setup
  STATUS="$HARNESS_ROOT/scripts/status.sh"
}

teardown() { sandbox_teardown; }

# limited_api <K>: tests/fakeapi answering 429 to a request that arrives while K are
# in flight; the mock agent's "api" mode asks it (and retries 429s as the CLI does)
limited_api() { # <K>
  fakeapi_start answer --max-inflight "$1"
  export CLAUDE_BIN="$HARNESS_ROOT/tests/mocks/claude"
}

@test "the governor settles near the API's limit: JOBS_MAX=8 on an API that refuses above 3 in flight" {
  limited_api 3
  for i in $(seq -w 1 50); do printf '{"id":"a%s","prompt":"item %s [[mock:api]]"}\n' "$i" "$i"; done >"$T/items.jsonl"
  q add --file "$T/items.jsonl" >/dev/null
  # the breaker's retry-storm rule is off: what is measured is the governor alone
  MOCK_CLAUDE_REQUESTS=4 run loop --drain --set JOBS_MAX=8 --set GOVERNOR_STEP_S=2 --set GOVERNOR_WINDOW_S=6 \
    --set CIRCUIT_STORM_RETRIES=0
  assert_success
  [ "$(count_in succeeded)" = 50 ]
  python3 - "$STATE/events.jsonl" "$FAKEAPI_DIR/requests.jsonl" <<'PY'
import json, sys
from datetime import datetime

def ts(text): return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()

events = [json.loads(line) for line in open(sys.argv[1])]
requests = [json.loads(line) for line in open(sys.argv[2])]
changes = [e for e in events if e["event"] == "governor.changed"]
assert changes and changes[0]["from"] == 1 and changes[0]["cause"] == "clean", changes[:1]  # it starts at JOBS=1
storms = [e for e in changes if e["cause"] == "storm"]
assert storms, "the governor never met the limit"
first = ts(storms[0]["ts"])
end = ts(next(e for e in events if e["event"] == "loop.stopped")["ts"])
# after the first storm: the target never above 4, and its time-weighted mean near 3
after = [e for e in changes if ts(e["ts"]) >= first]
assert all(1 <= e["to"] <= 4 for e in after), [(e["from"], e["to"]) for e in after]
weighted = sum(e["to"] * (min(end, ts(n["ts"])) - ts(e["ts"]))
               for e, n in zip(after, after[1:] + [{"ts": events[-1]["ts"]}]))
mean = weighted / (end - first)
assert 2.5 <= mean <= 3.5, f"time-weighted target {mean:.2f} after the first storm"
# the API's own log: once settled (two windows after the first storm), under 5% refused
late = [r for r in requests if r["ts"] >= first + 12 and r["path"].endswith("/v1/messages")]
refused = sum(1 for r in late if r["status"] == 429)
assert late and refused / len(late) < 0.05, f"{refused} of {len(late)} refused once settled"
# and never more sessions at once than the target allowed
live = most = 0
for e in events:
    if e["event"] == "session.started":
        live += 1
        if ts(e["ts"]) > first + 6:
            most = max(most, live)
    elif e["event"] == "session.ended":
        live -= 1
assert most <= 4, f"{most} sessions at once after the first storm"
print(f"mean target {mean:.2f}; {refused}/{len(late)} refused; {len(changes)} changes", file=sys.stderr)
PY
}

@test "a rate-limit warning halves the governor's target; status.sh and /metrics show the target and why" {
  q add --id w --prompt "[[mock:warning]]" >/dev/null
  for i in 1 2 3 4 5 6; do q add --id "s$i" --prompt "[[mock:slow]]" >/dev/null; done
  MOCK_CLAUDE_UTILIZATION=0.8 MOCK_CLAUDE_DELAY_S=1 run loop --drain -j 4 --set JOBS_MAX=4 --set GOVERNOR_STEP_S=60
  assert_success
  [ "$(count_in succeeded)" = 7 ]
  audit_has '.event == "governor.changed" and .cause == "warning" and .from == 4 and .to == 2
    and (.why | test("the five_hour window is 80% used"))'
  run "$STATUS" --state "$STATE"
  assert_success
  assert_output --regexp "governor  target 2 \(1\.\.4\), 0 running; .*rate-limit warning: the five_hour window is 80% used: 4 -> 2"
  run "$STATUS" --state "$STATE" --json
  [ "$(jq -c '.governor | [.target, .min, .max, .cause]' <<<"$output")" = '[2,1,4,"warning"]' ]
  run "$HARNESS_ROOT/scripts/serve.sh" --state "$STATE" --textfile "$T/harness.prom"
  assert_success
  grep -qx "harness_governor_target 2.0" "$T/harness.prom"
  grep -qxF 'harness_governor_cause{cause="warning"} 1.0' "$T/harness.prom"
}

@test "STOP_AT_UTILIZATION, seen live, pauses claiming until the window resets, then the loop goes on by itself" {
  q add --id w --priority high --prompt "[[mock:warning]]" >/dev/null
  q add --id next --prompt p >/dev/null
  MOCK_CLAUDE_UTILIZATION=0.95 MOCK_CLAUDE_RESET_IN_S=7 MOCK_CLAUDE_WARNING_HOLD_S=4 loop --set STOP_AT_UTILIZATION=0.9 -j 1 \
    --set JOBS_MAX=2 >"$T/loop.out" 2>&1 &
  local pid=$!
  wait_for 30 in_state next succeeded
  touch "$STATE/STOP"
  wait "$pid"
  python3 - "$STATE/events.jsonl" <<'PY'
import json, sys
events = [json.loads(line) for line in open(sys.argv[1])]
pause = next(e for e in events if e["event"] == "loop.paused")
assert pause["by"] == "utilization" and "95% used" in pause["reason"], pause
ended = next(e for e in events if e["event"] == "session.ended" and e.get("item") == "w")
assert pause["ts"] < ended["ts"], "the pause came only when the session ended, not while it ran"
claim = next(e for e in events if e["event"] == "item.claimed" and e["item"] == "next")
from datetime import datetime
at = datetime.fromisoformat(claim["ts"].replace("Z", "+00:00")).timestamp()
assert at >= pause["until_epoch"], f"next was claimed at {at}, before the reset {pause['until_epoch']}"
PY
}
