#!/usr/bin/env bash
# Summary: Reports on every session the store holds: counts, success rate, cost, tokens and percentiles, grouped.
# Usage: report.sh [--state DIR] [--config FILE] [--by GROUP] [--since WHEN] [--run NAME] [--json | --csv]
#
#   --by GROUP     day (default), run, item, model or verdict
#   --since WHEN   sessions started since then: 2026-11-01, an ISO time, or an age (90m, 12h, 7d, 2w)
#   --run NAME     only the sessions of one run (queue.sh add --run)
#   --json         the whole report as JSON; --csv: one row per group, then the total
#
# Each group: sessions, succeeded, success rate, cost, tokens by kind (input, output,
# cache read, cache write), the cost per succeeded item (all the sessions of the items
# that succeeded in the group, their failed attempts included), and the 50th, 95th
# and 99th percentiles of wall time, time to first token, turns and cost. The last
# row is the total. Exit codes: 0 done, 1 fatal error (an unreadable store), 2 bad usage.
set -euo pipefail

HARNESS_ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=lib/log.sh
source "$HARNESS_ROOT/lib/log.sh"
# shellcheck source=lib/config.sh
source "$HARNESS_ROOT/lib/config.sh"

main() {
  local -a pre=() args=()
  while (($#)); do
    case "$1" in
      -h | --help) pre+=("$1") ;;
      --state | --config)
        [[ -n "${2:-}" ]] || usage_error "$1 needs a value"
        pre+=("$1" "$2"); shift ;;
      --by | --since | --run)
        [[ -n "${2:-}" ]] || usage_error "$1 needs a value"
        args+=("$1" "$2"); shift ;;
      --json | --csv) args+=("$1") ;;
      *) usage_error "unknown argument: $1 (see --help)" ;;
    esac
    shift
  done
  config_cli "${BASH_SOURCE[0]}" "" "${pre[@]}" report
  config_python "$HARNESS_ROOT" quick || die "$CFG_ERROR"
  [[ -d "${CFG[STATE_DIR]}" ]] || die "no state directory at ${CFG[STATE_DIR]} (wrong --state?)" "$EXIT_USAGE"
  PYTHONPATH="$HARNESS_ROOT/lib" exec "$HARNESS_PY" -m harness report --state-dir "${CFG[STATE_DIR]}" "${args[@]}"
}

main "$@"
