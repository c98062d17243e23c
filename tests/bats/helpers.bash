# shellcheck shell=bash
# Shared setup for the bats suites: one sandbox per test (HOME, state, PATH with
# the stub first), helpers to poll with a deadline, and the fake Messages API.

HARNESS_ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd)
export HARNESS_ROOT
load /usr/lib/bats/bats-support/load.bash
load /usr/lib/bats/bats-assert/load.bash

# The real CLI the end-to-end tests run: the pinned one from `make setup`, or any
# version `make test-e2e CLAUDE_CODE_VERSION=...` installed (HARNESS_TEST_CLAUDE).
REAL_CLAUDE="${HARNESS_TEST_CLAUDE:-$HARNESS_ROOT/.tools/claude/node_modules/.bin/claude}"

sandbox_setup() {
  T=$BATS_TEST_TMPDIR
  export HOME="$T/home" STATE="$T/state"
  mkdir -p "$HOME"
  # Nothing of the caller's Claude or API configuration may leak into a test.
  local v
  for v in $(compgen -e | grep -E '^(ANTHROPIC_|CLAUDE|HARNESS_|MOCK_CLAUDE_)' | grep -vx HARNESS_ROOT || true); do
    unset "$v"
  done
  export PATH="$HARNESS_ROOT/tests/mocks:$PATH"
  export CLAUDE_BIN="$HARNESS_ROOT/tests/mocks/claude"
  export MOCK_CLAUDE_LOG="$T/mock.log"
  export HARNESS_QUIET=1 HARNESS_RETRY_BASE_S=0 HARNESS_IDLE_POLL_S=0.1 HARNESS_POLL_INTERVAL_S=0.05
  export HARNESS_KILL_GRACE_S=1
  # no background gc in tests but those that ask for one (GC_INTERVAL_S)
  export HARNESS_GC_INTERVAL_S=0
  Q="$HARNESS_ROOT/scripts/queue.sh"
  LOOP="$HARNESS_ROOT/loop.sh"
}

sandbox_teardown() {
  fakeapi_stop
  # A test must not leave agents behind.
  local -a pids
  mapfile -t pids < <(pgrep -f "$BATS_TEST_TMPDIR" || true)
  if ((${#pids[@]})); then
    kill -9 "${pids[@]}" 2>/dev/null || true
  fi
  if mountpoint -q "$T/state" 2>/dev/null; then
    umount -l "$T/state" || echo "teardown: cannot unmount $T/state" >&2
  fi
}

# small_disk <size>: STATE on a tmpfs of that size (needs root; the test is skipped,
# saying why, where mounting is not allowed).
small_disk() { # <size>
  mkdir -p "$STATE"
  mount -t tmpfs -o "size=$1,mode=0700" tmpfs "$STATE" 2>/dev/null ||
    skip "mounting a tmpfs needs root (CAP_SYS_ADMIN); this machine refused it"
}

# fill_disk <dir> <kb-left>: fills the file system holding dir, then frees kb-left KB.
fill_disk() { # <dir> <kb-left>
  dd if=/dev/zero of="$1/filler" bs=64k 2>/dev/null || true
  truncate -s "-$2K" "$1/filler"
}

q() { "$Q" --state "$STATE" "$@"; }
loop() { "$LOOP" --state "$STATE" "$@"; }

# wait_for <seconds> <command...>: polls until the command succeeds.
wait_for() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@"; do
    ((SECONDS < deadline)) || { echo "timed out waiting for: $*" >&2; return 1; }
    sleep 0.05
  done
}

# the item as the store holds it (either backend), with its state; {} when unknown
item_json() { # <id>
  PYTHONPATH="$HARNESS_ROOT/lib" "$HARNESS_ROOT/.venv/bin/python" -m harness queue-show --state-dir "$STATE" "$1" \
    2>/dev/null || echo '{}'
}

item_state() { # <id>: prints the item's state (missing when there is none)
  item_json "$1" | jq -r '.state // "missing"'
}

item_field() { # <id> <jq-filter>
  item_json "$1" | jq -r "$2"
}

in_state() { # <id> <state>: the item is in that state
  [[ "$(item_state "$1")" == "$2" ]]
}

# store_record pause|breaker: the store's record as JSON, as it stands (null when none)
store_record() { # pause|breaker
  PYTHONPATH="$HARNESS_ROOT/lib" "$HARNESS_ROOT/.venv/bin/python" - "$STATE" "$1" <<'PY'
import sys
from pathlib import Path

from harness import jsonio
from harness.store import open_store

store = open_store(Path(sys.argv[1]))
if sys.argv[2] == "pause":
    record = store.pause()
else:
    with store.breaker({}) as c:
        record = {k: v for k, v in c.items() if not k.startswith("_")} or None
sys.stdout.buffer.write(jsonio.dumps(record) + b"\n")
PY
}

# store_claim <session>: a claim as a loop makes it (the next ready item, leased to
# that session), with nothing started: what a loop that died right after leaves
store_claim() { # <session>
  PYTHONPATH="$HARNESS_ROOT/lib" "$HARNESS_ROOT/.venv/bin/python" - "$STATE" "$1" <<'PY'
import sys
import time
from pathlib import Path

from harness.store import open_store

lease = open_store(Path(sys.argv[1])).claim(sys.argv[2], "a-loop-that-died", time.time())
sys.exit(0 if lease is not None else 1)
PY
}

is_paused() { [[ "$(store_record pause)" != null ]]; }

count_in() { # <state>: how many items are in that state
  PYTHONPATH="$HARNESS_ROOT/lib" "$HARNESS_ROOT/.venv/bin/python" -m harness queue-list --state-dir "$STATE" \
    --state "$1" --json | jq length
}

audit_events() { # [item]: the audit log's event names, in order, optionally for one item
  if [[ -n "${1:-}" ]]; then
    jq -r --arg i "$1" 'select(.item == $i) | .event' "$STATE/events.jsonl"
  else
    jq -r .event "$STATE/events.jsonl"
  fi
}

session_of() { # <item>: the newest session directory of the item
  local sid
  sid=$(jq -r --arg i "$1" 'select(.item == $i and .event == "session.started") | .session' "$STATE/events.jsonl" | tail -n 1)
  echo "$STATE/sessions/$sid"
}

# fakeapi_start [scenario [server options...]]: the scripted Messages API on a free
# loopback port (--max-inflight K, say); exports what the real CLI needs to talk to it.
fakeapi_start() {
  local scenario=${1:-answer}
  (($# == 0)) || shift
  FAKEAPI_DIR="$T/fakeapi"
  mkdir -p "$FAKEAPI_DIR/bodies"
  rm -f "$FAKEAPI_DIR/port" # a server started before in this test wrote its own
  python3 "$HARNESS_ROOT/tests/fakeapi/server.py" --scenario "$scenario" --port-file "$FAKEAPI_DIR/port" \
    --log "$FAKEAPI_DIR/requests.jsonl" --bodies "$FAKEAPI_DIR/bodies" "$@" 2>"$FAKEAPI_DIR/stderr.log" 3>&- &
  FAKEAPI_PID=$!
  wait_for 10 test -s "$FAKEAPI_DIR/port"
  ANTHROPIC_BASE_URL="http://127.0.0.1:$(cat "$FAKEAPI_DIR/port")"
  export ANTHROPIC_BASE_URL
  export ANTHROPIC_API_KEY=sk-test-not-a-secret-0000
  export CLAUDE_CODE_MAX_RETRIES=1 DISABLE_AUTOUPDATER=1 CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1
  export CLAUDE_BIN="$REAL_CLAUDE"
  export HARNESS_ALLOWED_TOOLS="Bash,Write,Read"
}

fakeapi_stop() {
  if [[ -n "${FAKEAPI_PID:-}" ]]; then
    kill "$FAKEAPI_PID" 2>/dev/null || true
    wait "$FAKEAPI_PID" 2>/dev/null || true
    FAKEAPI_PID=""
  fi
}

# harness_copy: $T/h, the harness with its own .tools/ (links to the real files),
# and a PATH that holds no claude, in NO_CLAUDE_PATH.
harness_copy() { # sets NO_CLAUDE_PATH
  local d f
  local -a dirs
  mkdir -p "$T/h/.tools/claude/node_modules/.bin"
  for f in loop.sh lib bootstrap scripts .venv; do ln -s "$HARNESS_ROOT/$f" "$T/h/$f"; done
  NO_CLAUDE_PATH=""
  IFS=: read -ra dirs <<<"$PATH"
  for d in "${dirs[@]}"; do
    [[ -x "$d/claude" ]] || NO_CLAUDE_PATH+="${NO_CLAUDE_PATH:+:}$d"
  done
}

# git_repo <dir>: a repository with one commit, for REPO_DIR.
git_repo() {
  mkdir -p "$1"
  git -C "$1" init -q -b main
  echo "base" >"$1/README"
  git -C "$1" add README
  git -C "$1" -c user.name=test -c user.email=test@example.invalid commit -qm "initial commit"
}

# first_match <glob>: prints the first path matching the glob; fails when none does.
first_match() { # <glob>
  local found
  found=$(compgen -G "$1") || return 1
  printf '%s\n' "${found%%$'\n'*}"
}

# audit_has <jq-condition>: some line of the audit log meets it (jq 1.6's -e looks
# only at the last input, so the lines are counted instead).
audit_has() { # <jq-condition>
  [[ -n "$(jq -c "select($1)" "$STATE/events.jsonl" 2>/dev/null)" ]]
}
