#!/usr/bin/env bash
# Summary: Runs the harness offline on four sample items: real Claude Code CLI, scripted model, verify, fix round, merge queue.
# Usage: scripts/demo.sh [--keep]
#
# Starts the bundled scripted Messages API (tests/fakeapi) on loopback, queues four
# work items into .demo/state, and runs `loop.sh --drain` with the real CLI against
# it, in worktrees of a scratch repository (.demo/repo), with the merge queue on
# (INTEGRATE=merge onto its branch trunk). One item's work fails the repository's
# own check (verify), is fixed by a fix round that resumes its conversation, and
# lands. Prints each session's receipt, the queue and trunk's history. No network beyond loopback; nothing outside .demo/ is
# touched (the CLI's own files go to .demo/claude-config). Run `make setup` first
# (`make demo` does). --keep reuses .demo/ instead of starting afresh.
set -euo pipefail

ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
if [[ "${1:-}" == --help || "${1:-}" == -h ]]; then
  sed -n '2,/^[^#]/{/^#/!q;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"
  exit 0
fi
DEMO="$ROOT/.demo"
CLAUDE="$ROOT/.tools/claude/node_modules/.bin/claude"
[[ -x "$CLAUDE" ]] || { echo "harness: the Claude Code CLI is not installed; run 'make setup'" >&2; exit 1; }
[[ "${1:-}" == --keep ]] || rm -rf "$DEMO"
mkdir -p "$DEMO/claude-config"
umask 077

# A scratch repository for the sessions' worktrees.
if [[ ! -d "$DEMO/repo/.git" ]]; then
  git -C "$DEMO" init -q -b main repo
  printf '# Demo repository\n' >"$DEMO/repo/README.md"
  # the repository's own check: good.txt must exist once bad.txt does (its complaint
  # also tells the scripted model what to do in the fix round)
  printf '%s\n' '#!/bin/sh' '[ ! -e bad.txt ] || [ -e good.txt ] && exit 0' \
    'echo "check failed: bad.txt needs good.txt [[fake:write_commit file=good.txt]]"' 'exit 1' >"$DEMO/repo/check.sh"
  git -C "$DEMO/repo" add README.md check.sh
  git -C "$DEMO/repo" -c user.name=demo -c user.email=demo@example.invalid commit -qm "initial commit"
  git -C "$DEMO/repo" branch trunk
fi

# The scripted model, on a free loopback port.
rm -f "$DEMO/port"
python3 "$ROOT/tests/fakeapi/server.py" --port-file "$DEMO/port" --log "$DEMO/api-requests.jsonl" 2>"$DEMO/fakeapi.log" &
api_pid=$!
trap 'kill "$api_pid" 2>/dev/null || true; wait "$api_pid" 2>/dev/null || true' EXIT
deadline=$((SECONDS + 15))
until [[ -s "$DEMO/port" ]]; do
  ((SECONDS < deadline)) || { echo "harness: the scripted API did not start (see $DEMO/fakeapi.log)" >&2; exit 1; }
  sleep 0.05
done

# Only loopback and a dummy key: whatever the caller's environment says.
while read -r var; do unset "$var"; done < <(compgen -e | grep -E '^(ANTHROPIC_|CLAUDE_CODE_)' || true)
ANTHROPIC_BASE_URL="http://127.0.0.1:$(cat "$DEMO/port")"
export ANTHROPIC_BASE_URL
export ANTHROPIC_API_KEY=sk-demo-offline-not-a-key
export CLAUDE_CONFIG_DIR="$DEMO/claude-config" CLAUDE_CODE_MAX_RETRIES=1 DISABLE_AUTOUPDATER=1
export CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1
export CLAUDE_BIN="$CLAUDE" HARNESS_STATE_DIR="$DEMO/state" HARNESS_REPO_DIR="$DEMO/repo"
export HARNESS_ALLOWED_TOOLS="Bash,Write,Read" HARNESS_RETRY_BASE_S=1 HARNESS_QUIET=1
export HARNESS_INTEGRATE=merge HARNESS_TARGET_BRANCH=trunk

"$ROOT/scripts/queue.sh" add --run demo --file - >/dev/null <<'ITEMS'
{"id": "add-greeting", "title": "Add a greeting file", "priority": "high", "prompt": "Create hello.txt with a friendly greeting and commit it. [[fake:write_commit]]"}
{"id": "check-build", "title": "Run a quick check", "prompt": "Run a shell command that writes out.txt and report. [[fake:bash]]", "depends_on": ["add-greeting"]}
{"id": "runaway", "title": "A task that never ends", "priority": "low", "max_turns": 3, "prompt": "Keep going step by step. [[fake:endless]]"}
{"id": "needs-fix", "title": "Add bad.txt (fails the check)", "prompt": "Add bad.txt and commit it. [[fake:write_commit file=bad.txt]]", "verify": "sh check.sh"}
ITEMS

echo "== loop.sh --drain: four items, real Claude Code CLI $("$CLAUDE" --version | cut -d' ' -f1), scripted model on $ANTHROPIC_BASE_URL"
start=$SECONDS
rc=0
"$ROOT/loop.sh" --drain || rc=$?
echo "== loop exited $rc after $((SECONDS - start)) s"
echo
echo "== every item's history: its sessions, fix rounds and landing, in order"
"$ROOT/scripts/queue.sh" list --json | jq -r '.[] | .id as $i | .history[] | "\($i)\t\(.verdict)\t\(.reason)"' |
  while IFS=$'\t' read -r item verdict reason; do
    printf '%-14s %-16s %.110s\n' "$item" "$verdict" "$reason"
  done
echo
echo "== queue"
"$ROOT/scripts/queue.sh" list
echo
echo "== the run, and every session rolled up by item (report.sh)"
"$ROOT/scripts/queue.sh" runs
"$ROOT/scripts/report.sh" --by item
echo
echo "== trunk, where the merge queue landed the verified work (main is untouched)"
git -C "$DEMO/repo" log --graph --format='%h %s' trunk
echo
echo "Look around: $DEMO/state (harness.db, sessions/<id>/{events.jsonl,meta.json,metrics.json}, events.jsonl)"
exit "$rc"
