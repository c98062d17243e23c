#!/usr/bin/env bash
# Summary: Watches and analyses sessions: live view, summaries, metrics, tools, errors, timeline, cost, reconcile, export.
# Usage: parse-session-events.sh [--state DIR] [--config FILE] [--no-color] <command> [args]
#
#   list [--json] [--limit N] [--item ID]   sessions, newest first
#   watch <id> [--raw | --safe]   follow a session live until it ends (--raw: the lines themselves)
#   summary <id> [--raw | --safe]   one screen: verdict, turns, tokens, cost, tools, last text
#   metrics <id> [--json] [--recompute] [--raw | --safe]   the receipt (computed now for a live session)
#   tools <id> [--json] [--raw | --safe]   every tool call: result, time, input; totals by tool
#   errors <id> [--json] [--raw | --safe]   tool errors, API retries, error results, stalls, stderr
#   timeline <id> [--json] [--raw | --safe]   turn by turn, with times
#   cost [--since WHEN] [--json]  cost and tokens by day and by item (WHEN: 2026-11-01, ISO time, 12h, 7d)
#        cost --transcripts DIR [--mode auto|calculate|display] [--prices FILE] [--json]: per session and in
#        all, from Claude Code transcripts (DIR: ~/.claude/projects, one project, or any tree of *.jsonl),
#        counted as the ccusage tool counts (docs/receipts.md): one response once (message id + request id;
#        the largest of its lines; a sidechain replay not again). Prices: the harness's, or a LiteLLM file.
#        auto: a line's costUSD, else its tokens priced; calculate: always priced; display: costUSD only.
#        What was read is kept (--cache FILE; default ~/.cache/harness, 0600: token counts, ids, models,
#        times; no text): the next run reads only what the transcripts gained. --no-cache: read all, keep none
#   reconcile [<id>...] [--json] [--tolerance PCT]   each finished session's receipt (metrics.json)
#        against its transcript.jsonl (the entries written while it ran): tokens and cost per session, a
#        DRIFT flag where a token kind differs or the cost differs by more than $0.000001, or by more than
#        PCT percent of the receipt's; "no transcript" shown, not failed. Exit 1 when a session drifts
#   export <id> [-o FILE] [--raw | --safe]   the session as a markdown transcript
#
# <id> is a session id, a unique prefix of one, a work-item id (its latest session) or
# "latest". <command> --help: that command's usage. Colour only on a terminal, never
# with NO_COLOR. Text from a session (the model's words, tool inputs and results,
# titles, reasons) is shown with control and format characters escaped (ESC as \x1b,
# U+202E as \u202e) when stdout is a terminal or with --safe; byte for byte in a
# pipe or a file (export -o), and always with --raw. A turn is one assistant message
# of the model (the CLI's own <synthetic> messages are none); the CLI's num_turns
# counts otherwise. Exit codes: 0 done, 1 fatal error, 2 unknown, ambiguous or
# refused id, or bad usage; reconcile: 1 also when a session drifts.
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
    list | cost | reconcile | watch | summary | metrics | tools | errors | timeline | export) config_verb_help "${BASH_SOURCE[0]}" "$@" ;;
    help) log_help "${BASH_SOURCE[0]}"; exit 0 ;;
    *) usage_error "unknown command: $1 (see --help)" ;;
  esac
  config_python "$HARNESS_ROOT" quick || die "$CFG_ERROR"
  # cost --transcripts reads no state
  [[ -d "${CFG[STATE_DIR]}/sessions" || ("$1" == cost && " $* " == *" --transcripts "*) ]] ||
    die "no sessions in ${CFG[STATE_DIR]} (wrong --state?)" "$EXIT_USAGE"
  PYTHONPATH="$HARNESS_ROOT/lib" exec "$HARNESS_PY" -m harness events --state-dir "${CFG[STATE_DIR]}" "${CLI_FLAGS[@]}" "$@"
}

main "$@"
