#!/usr/bin/env bash
# Summary: Crash trial: kills loop.sh with SIGKILL at random moments during a multi-item queue, restarts it, and checks that no work is lost or done twice.
# Usage: tests/crash_trial.sh [--runs N] [--items N] [--kills N] [--session-s S] [--seed N] [--json FILE] [--integrate]
#                             [--store files|sqlite|postgres]
#
# Each run: a fresh state directory with --items items (the fast stub, --session-s each, 0.2 s),
# loop.sh --drain -j 1..3 started and killed with SIGKILL at a random moment, up to
# --kills times, then restarted until it drains. Afterwards every item must have
# succeeded exactly once (one succeeded session, one succeeded history record), no
# two sessions of one item may have been alive at once (the stub's witness lock),
# and nothing may be left in running/ or alive. Prints one line per run and the
# totals; exit 1 when any run broke a promise.
#
# --integrate: each run has a git repository, and the merge queue lands every
# item's commit on its branch trunk (INTEGRATE=merge); kills land during sessions
# and integrations, and half of them also kill the integration process (a machine
# that goes down). Then every item must also have landed exactly once: one merge
# of its branch on trunk, one landing in its history.
#
# --store files|sqlite|postgres: the store each run's state directory is made with
# (default sqlite, state/harness.db; postgres: the server HARNESS_DATABASE_URL names,
# a schema of its own for each run). Half the kills also kill the loop's helper
# process with SIGKILL at the same moment: a claim or a finish cut off inside its
# transaction.
set -euo pipefail

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=lib/log.sh
source "$ROOT/lib/log.sh" # clock_us, clock_now: times as integer microseconds
RUNS=20 ITEMS=6 KILLS=2 SEED=$$ JSON="" SESSION_S=0.2 INTEGRATE=0 STORE=sqlite
while (($#)); do
  case "$1" in
    --runs) RUNS=$2; shift ;;
    --items) ITEMS=$2; shift ;;
    --kills) KILLS=$2; shift ;;
    --seed) SEED=$2; shift ;;
    --session-s) SESSION_S=$2; shift ;;
    --json) JSON=$2; shift ;;
    --integrate) INTEGRATE=1 ;;
    --store) STORE=$2; shift ;;
    -h | --help) sed -n '2,/^[^#]/{/^#/!q;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "crash_trial: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
RANDOM=$SEED
WORK=$(mktemp -d)
trap 'pkill -9 -f "$WORK" 2>/dev/null || true; [[ -n "${KEEP:-}" ]] || rm -rf "$WORK"' EXIT
export CLAUDE_BIN="$ROOT/tests/mocks/claude" HARNESS_QUIET=1 HARNESS_IDLE_POLL_S=0.1 HARNESS_POLL_INTERVAL_S=0.05
export HARNESS_RETRY_BASE_S=0 HARNESS_KILL_GRACE_S=1 MOCK_CLAUDE_DELAY_S=$SESSION_S HARNESS_MIN_FREE_MB=0
export HARNESS_STORE=$STORE
PG_BASE=${HARNESS_DATABASE_URL:-}
if [[ "$STORE" == postgres && -z "$PG_BASE" ]]; then
  echo "crash_trial: --store postgres needs HARNESS_DATABASE_URL (a server the runs may make schemas on)" >&2
  exit 2
fi

# pg_schema <name>: a fresh schema on the server, named in HARNESS_DATABASE_URL's search_path
pg_schema() { # <name>
  psql -q "$PG_BASE" -c "CREATE SCHEMA $1" >/dev/null
  local sep='?'
  [[ "$PG_BASE" != *\?* ]] || sep='&'
  export HARNESS_DATABASE_URL="$PG_BASE${sep}options=-csearch_path%3D$1"
}

# kill_moment <state> <pid> <seconds>: waits for the random moment, which is
# always one while work remains: <seconds> from now, or as soon as the last
# pending item has been claimed, whichever comes first (so the kill lands while
# that item's session runs), or when the loop has gone.
kill_moment() { # <state> <pid> <seconds>
  local end wait_us
  [[ "$STORE" != postgres ]] || loop_up "$1" "$2"
  clock_us "$3" wait_us
  clock_now
  end=$((NOW_US + wait_us))
  while :; do
    clock_now
    ((NOW_US < end)) || return 0
    kill -0 "$2" 2>/dev/null || return 0
    work_left "$1" || return 0
    sleep 0.02
  done
}

# loop_up <state> <pid>: waits until that loop has said loop.started (or has gone).
# With postgres the loop's start takes a second or more (its helpers import the
# driver and connect): the random moment is counted from there, so that the kills
# land among the claims and sessions rather than all in the start-up.
loop_up() { # <state> <pid>
  local before=$LOOP_STARTS
  while kill -0 "$2" 2>/dev/null; do
    LOOP_STARTS=$(grep -c '"event":"loop.started"' "$1/events.jsonl" 2>/dev/null || true)
    ((${LOOP_STARTS:-0} <= before)) || return 0
    sleep 0.02
  done
}

# work_left <state>: some item is still pending (or verified: waiting to land).
# (postgres: asked with psql, which answers in milliseconds where the interpreter's
# start would let the moment pass)
work_left() { # <state>
  if [[ "$STORE" == postgres ]]; then
    [[ "$(psql -Atq "$HARNESS_DATABASE_URL" -c "SELECT count(*) FROM items WHERE state IN ('pending', 'verified')")" != 0 ]]
    return
  fi
  PYTHONPATH="$ROOT/lib" "$ROOT/.venv/bin/python" -c 'import sys; from pathlib import Path
from harness.store import open_store
sys.exit(0 if {"pending", "verified"} & set(open_store(Path(sys.argv[1])).states().values()) else 1)' "$1"
}

# drain <state>: runs the loop to its end; a "busy" exit (a helper of the killed
# loop still holds the lock) is retried, as cron would.
drain() { # <state>
  local rc tries=0
  while :; do
    rc=0
    timeout 120 "$ROOT/loop.sh" --state "$1" --drain -j 2 >>"$1/../loop.out" 2>&1 || rc=$?
    [[ $rc == 3 && $tries -lt 100 ]] || return "$rc"
    tries=$((tries + 1))
    sleep 0.05
  done
}

total_lost=0 total_doubled=0 total_left=0 total_kills=0 total_adopted=0 total_recovered=0 total_requeued=0 failed_runs=0 unkilled=0
for ((run = 1; run <= RUNS; run++)); do
  dir="$WORK/run$run"
  state="$dir/state"
  mkdir -p "$dir/witness"
  export MOCK_CLAUDE_WITNESS="$dir/witness"
  [[ "$STORE" != postgres ]] || pg_schema "crash_${SEED}_$run"
  mode=slow
  if ((INTEGRATE)); then
    mode=commit
    git init -q -b main "$dir/repo"
    git -C "$dir/repo" -c user.name=t -c user.email=t@example.invalid commit -q --allow-empty -m "initial commit"
    git -C "$dir/repo" branch trunk
    export HARNESS_REPO_DIR="$dir/repo" HARNESS_INTEGRATE=merge HARNESS_TARGET_BRANCH=trunk
  fi
  for ((i = 1; i <= ITEMS; i++)); do
    "$ROOT/scripts/queue.sh" --state "$state" add --id "item$i" \
      --prompt "crash trial run $run item $i file=item$i.txt [[mock:$mode]]" >/dev/null
  done
  if [[ ! -d "$dir/witness" ]]; then # something outside removed the trial's own directory
    echo "crash_trial: run $run: $dir was removed under the trial (not by the harness); giving up" >&2
    exit 2
  fi
  planned=$((1 + RANDOM % KILLS)) kills=0 LOOP_STARTS=0
  for ((k = 0; k < planned; k++)); do
    jobs=$((1 + RANDOM % 3))
    "$ROOT/loop.sh" --state "$state" --drain -j "$jobs" >>"$dir/loop.out" 2>&1 &
    pid=$!
    # the random moment: anywhere from start-up to the claim of the last item
    kill_moment "$state" "$pid" "$(awk -v r="$RANDOM" -v n="$ITEMS" -v j="$jobs" -v s="$SESSION_S" \
      'BEGIN { printf "%.3f", (r / 32767) * (0.3 + n * (s + 0.25) / j) }')"
    if ((RANDOM % 2)); then pkill -9 -P "$pid" -f "harness serve" || true; fi
    if kill -9 "$pid" 2>/dev/null; then kills=$((kills + 1)); fi
    wait "$pid" 2>/dev/null || true
    if ((INTEGRATE && RANDOM % 2)); then pkill -9 -f "harness integrate --state-dir $state" || true; fi
  done
  total_kills=$((total_kills + kills))
  ((kills > 0)) || unkilled=$((unkilled + 1))
  rc=0
  drain "$state" || rc=$?
  lost=0 doubled=0 left=0
  "$ROOT/scripts/queue.sh" --state "$state" list --json >"$dir/items.json"
  for ((i = 1; i <= ITEMS; i++)); do
    f="$dir/item$i.json"
    jq --arg i "item$i" '.[] | select(.id == $i)' "$dir/items.json" >"$f"
    if [[ "$(jq -r .state "$f")" != succeeded ]]; then
      lost=$((lost + 1))
      continue
    fi
    ok_hist=$(jq '[.history[] | select(.verdict == "succeeded" and .session_id)] | length' "$f")
    ok_sess=$(jq -r --arg i "item$i" 'select(.item_id == $i and .verdict == "succeeded") | .session_id' \
      "$state"/sessions/*/meta.json | wc -l)
    [[ $ok_hist == 1 && $ok_sess == 1 ]] || doubled=$((doubled + 1))
    if ((INTEGRATE)); then
      landed=$(jq '[.history[] | select(.by == "merge queue" and .verdict == "succeeded")] | length' "$f")
      merges=$(git -C "$dir/repo" log --merges --format=%b trunk | grep -c "^Item item$i, " || true)
      if ! git -C "$dir/repo" cat-file -e "trunk:item$i.txt" 2>/dev/null; then
        lost=$((lost + 1))
      elif [[ $landed != 1 || $merges != 1 ]]; then
        doubled=$((doubled + 1))
      fi
    fi
  done
  if [[ -s "$dir/witness/doubles" ]]; then doubled=$((doubled + $(wc -l <"$dir/witness/doubles"))); fi
  left=$(jq '[.[] | select(.state == "running")] | length' "$dir/items.json")
  # a killed loop's sidecar notices within a second or so that its loop is gone
  for ((w = 0; w < 100; w++)); do
    pgrep -f "$dir/" >/dev/null || break
    sleep 0.05
  done
  left=$((left + $({ pgrep -f "$dir/" || true; } | wc -l)))
  adopted=$(jq -r 'select(.event == "session.adopted") | .session' "$state/events.jsonl" | wc -l)
  recovered=$(jq -r 'select(.event == "session.recovered") | .session' "$state/events.jsonl" | wc -l)
  requeued=$(jq -r 'select(.event == "item.pending" and .verdict == "interrupted") | .item' "$state/events.jsonl" | wc -l)
  sessions=$(find "$state/sessions" -mindepth 1 -maxdepth 1 -type d | wc -l)
  total_lost=$((total_lost + lost)) total_doubled=$((total_doubled + doubled)) total_left=$((total_left + left))
  total_adopted=$((total_adopted + adopted)) total_recovered=$((total_recovered + recovered))
  total_requeued=$((total_requeued + requeued))
  verdict=ok
  if ((lost + doubled + left > 0 || rc != 0)); then
    verdict=BROKEN
    failed_runs=$((failed_runs + 1))
    cp -r "$dir" "${TMPDIR:-/tmp}/crash-trial-run$run-$$" 2>/dev/null || true
  fi
  printf 'run %2d: %d kill(s), %d sessions for %d items, adopted %d, recovered %d, requeued %d; lost %d, doubled %d, leftovers %d, drain exit %d: %s\n' \
    "$run" "$kills" "$sessions" "$ITEMS" "$adopted" "$recovered" "$requeued" "$lost" "$doubled" "$left" "$rc" "$verdict"
done
printf 'crash trial: %d runs, %d kills (runs without one: %d), %d items each; adopted %d, recovered %d, requeued %d; lost %d, doubled %d, leftovers %d; broken runs %d\n' \
  "$RUNS" "$total_kills" "$unkilled" "$ITEMS" "$total_adopted" "$total_recovered" "$total_requeued" "$total_lost" "$total_doubled" "$total_left" "$failed_runs"
if [[ -n "$JSON" ]]; then
  jq -n --argjson runs "$RUNS" --argjson kills "$total_kills" --argjson items "$ITEMS" --argjson lost "$total_lost" \
    --argjson doubled "$total_doubled" --argjson leftovers "$total_left" --argjson broken "$failed_runs" \
    --argjson unkilled "$unkilled" --argjson adopted "$total_adopted" --argjson recovered "$total_recovered" --argjson requeued "$total_requeued" \
    '$ARGS.named' >"$JSON"
fi
((failed_runs == 0))
