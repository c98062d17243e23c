#!/usr/bin/env bash
# Summary: Turns a goal into a plan of work items ordered by the code's own imports, and queues it as a run.
# Usage: plan.sh [--state DIR] [--config FILE] [options] [GOAL]
#        plan.sh [--state DIR] [--config FILE] analyze [REPO] [--json]
#
#   GOAL                 what you want done, in words (one argument); or --file F, or
#                        on stdin. A read-only session of the CLI (Read, Grep, Glob
#                        only) answers with a plan; it is checked, ordered by the
#                        repository's imports and printed as a tree, the critical
#                        path marked *, and saved in state/plans/RUN/plan.json
#     --file F           the goal in a file ('-': stdin)
#     --plan FILE        no session: check, order and print (or --apply) a plan file
#                        (a saved one, corrected, or one written by hand)
#     --repo DIR         the repository (default REPO_DIR)
#     --run NAME         the run's name (default plan-YYYYMMDD-HHMMSS); its items are
#                        queued as NAME.ID
#     --apply            queue the plan as a run: every item or none
#     --json             the plan as JSON (items, dependencies added, critical path)
#     --model M, --max-turns N, --max-budget-usd X, --timeout S
#                        the session's limits (default MODEL, MAX_TURNS,
#                        MAX_BUDGET_USD, SESSION_TIMEOUT_S)
#   analyze [REPO] [--json]
#                        the repository's import graph (default REPO_DIR): files by
#                        language, imports, cycles, and its layers (Python, JavaScript,
#                        TypeScript, shell)
#
# An item B is put after an item A when a file B touches imports one A touches
# (unless the plan orders them already); the critical path's items get priority
# high. docs/planning.md says more. Exit codes: 0 done, 1 the session failed (the
# CLI, the API, the time limit), 2 refused (bad usage, no such repository, a goal
# that is not text or over 1 MiB, a malformed plan, an unknown dependency, a cycle):
# nothing queued.
set -euo pipefail

HARNESS_ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=lib/log.sh
source "$HARNESS_ROOT/lib/log.sh"
# shellcheck source=lib/config.sh
source "$HARNESS_ROOT/lib/config.sh"
# shellcheck source=lib/wake.sh
source "$HARNESS_ROOT/lib/wake.sh"

# plan_number <flag> <value>: a positive number, or a usage error.
plan_number() { # <flag> <value>
  [[ "$2" =~ ^[0-9]+([.][0-9]+)?$ ]] || usage_error "$1 needs a number, got \"$2\""
}

# plan_analyze <repo> <args...>: the import graph of the repository.
plan_analyze() { # <repo> [--json]
  [[ -n "$1" ]] || usage_error "analyze: no repository: give REPO or set REPO_DIR"
  [[ -d "$1" ]] || die "no repository at $1" "$EXIT_USAGE"
  py plan-analyze --repo "$1" "${@:2}"
}

main() {
  local verb="" help=0 apply=0 goal_given=0 goal="" repo=""
  local -a pre=() args=() src=() analyze=()
  while (($#)); do
    case "$1" in
      -h | --help) help=1 ;;
      --state | --config) [[ -n "${2:-}" ]] || usage_error "$1 needs a value"; pre+=("$1" "$2"); shift ;;
      --repo) [[ -n "${2:-}" ]] || usage_error "--repo needs a directory"; repo=$2; shift ;;
      --file) [[ -n "${2:-}" ]] || usage_error "--file needs a path"; src=(--goal-file "$2"); shift ;;
      --plan) [[ -n "${2:-}" ]] || usage_error "--plan needs a file"; src=(--plan "$2"); shift ;;
      --run | --model) [[ -n "${2:-}" ]] || usage_error "$1 needs a value"; args+=("$1" "$2"); shift ;;
      --max-turns | --max-budget-usd | --timeout) plan_number "$1" "${2:-}"; args+=("$1" "$2"); shift ;;
      --apply) args+=(--apply); apply=1 ;;
      --json) args+=(--json); analyze+=(--json) ;;
      -*) usage_error "unknown option: $1 (see --help)" ;;
      *)
        if [[ -z "$verb" && $goal_given == 0 && "$1" == analyze ]]; then
          verb=analyze
        elif [[ $verb == analyze && -z "$repo" ]]; then
          repo=$1
        elif [[ -z "$verb" && $goal_given == 0 ]]; then
          goal=$1 goal_given=1
        else
          usage_error "unexpected argument: $1 (a goal of several words goes in quotes)"
        fi ;;
    esac
    shift
  done
  if ((help)) && [[ -z "$verb" ]]; then
    pre+=(--help)
  fi
  config_cli "${BASH_SOURCE[0]}" "" "${pre[@]}" plan
  if ((help)); then
    printf 'Usage: plan.sh [--state DIR] [--config FILE] analyze [REPO] [--json]\n\n'
    log_help "${BASH_SOURCE[0]}" | sed -n '/^  analyze /,/^$/p'
    printf 'plan.sh --help: the options and the exit codes\n'
    exit 0
  fi
  config_python "$HARNESS_ROOT" quick || die "$CFG_ERROR"
  repo=${repo:-${CFG[REPO_DIR]}}
  if [[ $verb == analyze ]]; then
    [[ ${#args[@]} == "${#analyze[@]}" && ${#src[@]} == 0 ]] || usage_error "analyze takes only REPO and --json"
    plan_analyze "$repo" "${analyze[@]}"
    return
  fi
  plan_make "$repo" "$goal_given" "$goal" "${src[@]}" -- "${args[@]}"
  ((apply == 0)) || wake_loop "${CFG[STATE_DIR]}"
}

# plan_make <repo> <goal-given> <goal> [--goal-file F | --plan F] -- <args...>: a plan,
# made (a session) or read, checked, ordered, printed; queued with --apply.
plan_make() { # <repo> <goal-given> <goal> [source...] -- <args...>
  local repo=$1 goal_given=$2 goal=$3
  local -a src=() args=()
  shift 3
  while [[ $1 != -- ]]; do src+=("$1"); shift; done
  shift
  args=("$@")
  if ((goal_given)); then
    ((${#src[@]} == 0)) || usage_error "give the goal once: as an argument, --file, or --plan"
    src=(--goal "$goal")
  elif ((${#src[@]} == 0)); then
    [[ ! -t 0 ]] || usage_error "no goal: give it as an argument, with --file F, or on stdin (see --help)"
    src=(--goal-file -)
  fi
  [[ -n "$repo" ]] || usage_error "no repository: give --repo DIR or set REPO_DIR"
  [[ -d "$repo" ]] || die "no repository at $repo (--repo DIR, or REPO_DIR)" "$EXIT_USAGE"
  local state=${CFG[STATE_DIR]}
  if [[ ! -d "$state" ]] && ! { mkdir -p "$state" && chmod 700 "$state"; }; then
    die "cannot create $state"
  fi
  local -a limits=(--claude-bin "${CFG[CLAUDE_BIN]}" --bootstrap "$HARNESS_ROOT/bootstrap/plan.md"
    --model "${CFG[MODEL]}" --max-turns "${CFG[MAX_TURNS]}" --max-budget-usd "${CFG[MAX_BUDGET_USD]}"
    --timeout "${CFG[SESSION_TIMEOUT_S]}" --kill-grace "${CFG[KILL_GRACE_S]}")
  py plan --state-dir "$state" --repo "$repo" "${src[@]}" "${limits[@]}" "${args[@]}"
}

main "$@"
