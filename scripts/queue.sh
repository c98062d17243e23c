#!/usr/bin/env bash
# Summary: Manages the work queue: add, list, show, cancel and retry work items.
# Usage: queue.sh [--state DIR] [--config FILE] <command> [args]
#
#   add --prompt TEXT | --prompt-file FILE [--id ID] [--title T] [--priority P]
#       [--depends-on ID]... [--max-turns N] [--max-budget-usd X] [--timeout S]
#       [--stall-timeout S] [--tool-timeout S] [--model M] [--allowed-tools T] [--max-attempts N]
#       [--verify CMD] [--verify-timeout S]
#                              --verify: a shell command run in the worktree after a
#                              succeeded session (over VERIFY_CMD); exit 0 verifies it
#       [--run NAME [--budget-usd X]]
#                              --run: the run the item joins (queue.sh runs); --budget-usd:
#                              the run's budget (set again: changed): once the run's
#                              receipts and live sessions reach it, none of its items
#                              is claimed
#   add --file FILE [--run NAME [--budget-usd X]]
#                              one JSON item, a JSON array, or JSON lines ('-': stdin);
#                              an item's own "run" field works too
#   list [--state S]... [--json]
#   show <id>                  the whole item, prompt included, as JSON
#   runs [--json]              every run: state, progress, cost so far, ETA
#   run NAME [--json]          one run, with its items
#   cancel <id>                pending/quarantined -> canceled; running: the loop stops it
#   cancel --run NAME          every item of the run not yet finished
#   retry <id>                 quarantined/canceled -> pending, attempts reset
#
# <command> --help: that command's usage. Priorities: critical, high, normal
# (default), low. Ids: 1-64 of A-Z a-z 0-9 . _ - starting with a letter or digit;
# generated when omitted. Exit codes: 0 done, 1 fatal error, 2 refused (malformed
# item, unknown or duplicate id, bad usage).
set -euo pipefail

HARNESS_ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=lib/log.sh
source "$HARNESS_ROOT/lib/log.sh"
# shellcheck source=lib/config.sh
source "$HARNESS_ROOT/lib/config.sh"
# shellcheck source=lib/wake.sh
source "$HARNESS_ROOT/lib/wake.sh"

# queue_cmd_add <args...>: builds one item from flags (jq, no string splicing), or
# passes a file through; the helper validates everything before writing anything.
queue_cmd_add() { # <args...>
  local file="" prompt_file="" have_prompt=0 prompt="" key
  local -a jq_args=() deps=() run=()
  while (($#)); do
    case "$1" in
      --file) file=${2:?--file needs a path}; shift ;;
      --prompt) prompt=${2-}; have_prompt=1; shift ;;
      --prompt-file) prompt_file=${2:?--prompt-file needs a path}; shift ;;
      --depends-on) deps+=("${2:?--depends-on needs an id}"); shift ;;
      --run) run+=(--run "${2:?--run needs a name}"); shift ;;
      --budget-usd)
        [[ "${2:-}" =~ ^[0-9]+([.][0-9]+)?$ ]] || usage_error "--budget-usd needs a number"
        run+=(--budget-usd "$2"); shift ;;
      --id | --title | --priority | --model | --allowed-tools | --verify)
        [[ $# -ge 2 ]] || usage_error "$1 needs a value"
        key=${1#--}
        jq_args+=(--arg "${key//-/_}" "$2"); shift ;;
      --max-turns | --max-budget-usd | --timeout | --stall-timeout | --tool-timeout | --max-attempts | --verify-timeout)
        [[ "${2:-}" =~ ^[0-9]+([.][0-9]+)?$ ]] || usage_error "$1 needs a number"
        key=${1#--}
        key=${key//-/_}
        [[ $key == timeout || $key == stall_timeout || $key == tool_timeout || $key == verify_timeout ]] && key="${key}_s"
        jq_args+=(--argjson "$key" "$2"); shift ;;
      *) usage_error "add: unknown argument: $1 (see --help)" ;;
    esac
    shift
  done
  if [[ -n "$file" ]]; then
    [[ $have_prompt == 0 && -z "$prompt_file" && ${#jq_args[@]} == 0 ]] ||
      usage_error "add: --file cannot be combined with other item flags"
    py queue-add --state-dir "$STATE" --file "$file" "${run[@]}"
    return
  fi
  if [[ -n "$prompt_file" ]]; then
    [[ $have_prompt == 0 ]] || usage_error "add: give --prompt or --prompt-file, not both"
    [[ "$prompt_file" == - ]] && prompt_file=/dev/stdin
    [[ -r "$prompt_file" ]] || usage_error "add: cannot read $prompt_file"
    jq_args+=(--rawfile prompt "$prompt_file")
  elif [[ $have_prompt == 1 ]]; then
    jq_args+=(--arg prompt "$prompt")
  else
    usage_error "add: needs --prompt, --prompt-file or --file"
  fi
  jq -n "${jq_args[@]}" --args '$ARGS.named + (if ($ARGS.positional | length) > 0
    then {depends_on: $ARGS.positional} else {} end)' "${deps[@]}" |
    py queue-add --state-dir "$STATE" --file - --label item "${run[@]}"
}

main() {
  local cmd
  config_cli "${BASH_SOURCE[0]}" "" "$@"
  set -- "${CLI_REST[@]}"
  cmd=$1
  case "$cmd" in
    add | list | show | cancel | retry | runs | run) config_verb_help "${BASH_SOURCE[0]}" "$@" ;;
  esac
  shift
  config_python "$HARNESS_ROOT" || die "$CFG_ERROR"
  command -v jq >/dev/null || die "jq is required (apt-get install jq)"
  STATE=${CFG[STATE_DIR]}
  if [[ ! -d "$STATE" ]] && ! { mkdir -p "$STATE" && chmod 700 "$STATE"; }; then
    die "cannot create $STATE"
  fi
  case "$cmd" in
    add)
      queue_cmd_add "$@"
      wake_loop "$STATE" ;;
    list)
      local -a args=()
      while (($#)); do
        case "$1" in
          --json) args+=(--json) ;;
          --state) args+=(--state "${2:?--state needs a state}"); shift ;;
          *) usage_error "list: unknown argument: $1" ;;
        esac
        shift
      done
      py queue-list --state-dir "$STATE" "${args[@]}" ;;
    runs)
      [[ $# == 0 || ($# == 1 && $1 == --json) ]] || usage_error "runs takes only --json"
      py queue-runs --state-dir "$STATE" "$@" ;;
    run)
      [[ $# -ge 1 && $1 != -* ]] || usage_error "run needs a run name"
      local name=$1
      shift
      [[ $# == 0 || ($# == 1 && $1 == --json) ]] || usage_error "run takes only --json after the name"
      py queue-runs --state-dir "$STATE" --name "$name" "$@" ;;
    cancel)
      if [[ "${1:-}" == --run ]]; then
        [[ $# == 2 ]] || usage_error "cancel --run needs exactly one run name"
        py queue-cancel-run --state-dir "$STATE" -- "$2"
      else
        [[ $# == 1 ]] || usage_error "cancel needs exactly one item id"
        py queue-cancel --state-dir "$STATE" "$1"
      fi
      wake_loop "$STATE" ;;
    show | retry)
      [[ $# == 1 ]] || usage_error "$cmd needs exactly one item id"
      py "queue-$cmd" --state-dir "$STATE" "$1"
      [[ $cmd == show ]] || wake_loop "$STATE" ;;
    help) log_help "${BASH_SOURCE[0]}" ;;
    *) usage_error "unknown command: $cmd (see --help)" ;;
  esac
}

main "$@"
