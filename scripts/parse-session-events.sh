#!/usr/bin/env bash
# Summary: Watches and analyses sessions: live view, summaries, metrics, tools, errors, timeline, cost, export.
# Usage: parse-session-events.sh [--state DIR] [--config FILE] [--no-color] <command> [args]
#
#   list [--json] [--limit N] [--item ID]   sessions, newest first
#   watch <id> [--raw]            follow a session live until it ends (--raw: the lines themselves)
#   summary <id>                  one screen: verdict, turns, tokens, cost, tools, last text
#   metrics <id> [--json] [--recompute]   the receipt (computed now for a live session)
#   tools <id> [--json]           every tool call: result, time, input; totals by tool
#   errors <id> [--json]          tool errors, API retries, error results, stalls, stderr
#   timeline <id> [--json]        turn by turn, with times
#   cost [--since WHEN] [--json]  cost and tokens by day and by item (WHEN: 2026-11-01, ISO time, 12h, 7d)
#   export <id> [-o FILE]         the session as a markdown transcript
#
# <id> is a session id, a unique prefix of one, a work-item id (its latest session) or
# "latest". Colour only on a terminal, never with NO_COLOR. Exit codes: 0 done,
# 1 fatal error, 2 unknown, ambiguous or refused id, or bad usage.
set -euo pipefail

HARNESS_ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=lib/log.sh
source "$HARNESS_ROOT/lib/log.sh"
# shellcheck source=lib/config.sh
source "$HARNESS_ROOT/lib/config.sh"

main() {
  config_cli "${BASH_SOURCE[0]}" "--no-color" "$@"
  set -- "${CLI_REST[@]}"
  case "$1" in
    list | cost | watch | summary | metrics | tools | errors | timeline | export) ;;
    help) log_help "${BASH_SOURCE[0]}"; exit 0 ;;
    *) usage_error "unknown command: $1 (see --help)" ;;
  esac
  config_python "$HARNESS_ROOT" quick || die "$CFG_ERROR"
  [[ -d "${CFG[STATE_DIR]}/sessions" ]] || die "no sessions in ${CFG[STATE_DIR]} (wrong --state?)" "$EXIT_USAGE"
  PYTHONPATH="$HARNESS_ROOT/lib" exec "$HARNESS_PY" -m harness events --state-dir "${CFG[STATE_DIR]}" "${CLI_FLAGS[@]}" "$@"
}

main "$@"
