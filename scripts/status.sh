#!/usr/bin/env bash
# Summary: One screen of everything: the loop, pause and circuit breaker, each live agent, queue counts, today's totals.
# Usage: status.sh [--state DIR] [--config FILE] [--no-color] [--json] [--watch [SECONDS]]
#
#   --json              the same as one JSON document (for scripts and dashboards)
#   --watch [SECONDS]   redraw every SECONDS (default 2) until Ctrl-C
#
# Each live agent: item, session, phase (and the tool it is in), seconds since its
# last event, running time, turns, tokens and cost so far, branch or worktree.
# A heartbeat that stopped being rewritten is flagged STALE. Nothing is locked:
# looking never gets in the loop's way. Exit codes: 0 done, 1 fatal, 2 bad usage.
set -euo pipefail

HARNESS_ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=lib/log.sh
source "$HARNESS_ROOT/lib/log.sh"
# shellcheck source=lib/config.sh
source "$HARNESS_ROOT/lib/config.sh"
# shellcheck source=lib/resilience.sh
source "$HARNESS_ROOT/lib/resilience.sh"

main() {
  local -a opts=()
  # the command is optional here: status.sh alone shows the screen
  config_cli "${BASH_SOURCE[0]}" "--no-color --json --watch" "$@" show
  set -- "${CLI_REST[@]}"
  while (($#)); do
    case "$1" in
      show) ;;
      -h | --help) log_help "${BASH_SOURCE[0]}"; exit 0 ;;
      [0-9]*) [[ " ${CLI_FLAGS[*]} " == *" --watch "* ]] || usage_error "unexpected argument: $1"
        [[ "$1" =~ ^[0-9]+([.][0-9]+)?$ ]] || usage_error "--watch needs seconds"
        opts+=(--watch "$1") ;;
      *) usage_error "unexpected argument: $1 (see --help)" ;;
    esac
    shift
  done
  config_python "$HARNESS_ROOT" quick || die "$CFG_ERROR"
  [[ -e "${CFG[STATE_DIR]}/store" || -d "${CFG[STATE_DIR]}/queue" ]] || die "no queue in ${CFG[STATE_DIR]} (wrong --state?)" "$EXIT_USAGE"
  resilience_init
  local f
  for f in "${CLI_FLAGS[@]}"; do
    case "$f" in
      --watch) [[ " ${opts[*]} " == *" --watch "* ]] || opts+=(--watch 2) ;;
      *) opts+=("$f") ;;
    esac
  done
  PYTHONPATH="$HARNESS_ROOT/lib" exec "$HARNESS_PY" -m harness status --state-dir "${CFG[STATE_DIR]}" \
    --heartbeat-s "${CFG[HEARTBEAT_S]}" "${opts[@]}" "${RES_POLICY_ARGS[@]}"
}

main "$@"
