#!/usr/bin/env bash
# Summary: Controls a running loop: pause and resume spawning, the circuit breaker, STOP.
# Usage: loopctl.sh [--state DIR] [--config FILE] <command> [args]
#
#   show                         pause, circuit breaker and STOP, one line each
#   pause [--for SECONDS] [--reason TEXT]
#                                no new sessions until then (default 1 h); running ones go on
#   resume                       ends a pause at once, a usage-limit pause included
#   circuit [status] [--json]    the breaker's state (closed, open, half-open) and why
#   circuit close                closes the breaker at once (after fixing credentials, say)
#   circuit open                 opens it, as if the API had failed
#   stop                         writes state/STOP: the loop stops claiming and ends once
#                                running sessions finish (within SHUTDOWN_GRACE_S)
#   unstop                       removes state/STOP
#   worktrees [--json]           kept worktrees (failed sessions): item, verdict, age, branch
#   prune [--older-than DAYS] [--dry-run]
#                                removes kept worktrees older than DAYS (default
#                                WORKTREE_MAX_AGE_DAYS; 0: all); branches stay; never a live one,
#                                nor one a fix round will use; work no branch holds is saved
#                                on harness/salvage/<session> first
#   prune --merged [--dry-run]   deletes the branches of succeeded items wholly on
#                                TARGET_BRANCH (never one with a commit the target lacks)
#   migrate                      moves a files-backend state directory (an earlier
#                                release's) to the SQLite store; the old files are kept
#                                in state/files-backend/. The loop's start does it too.
#                                Refused while a loop runs on the state directory (exit 3)
#   reindex                      rebuilds the store's attempts from sessions/*/metrics.json
#                                and its audit rows from events.jsonl
#   gc [--dry-run] [--json]      retention now: finished sessions (their item final) older
#                                than RETAIN_RAW_DAYS get their stream and transcript
#                                compressed, older than RETAIN_DAYS removed (receipts stay in
#                                the store); never a live session; measures the disk's use
#
# Every change goes to the audit log (state/events.jsonl) and wakes a running loop,
# which acts on it at once. <command> --help: that command's usage. Exit codes:
# 0 done, 1 fatal error, 2 bad usage.
set -euo pipefail

HARNESS_ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=lib/log.sh
source "$HARNESS_ROOT/lib/log.sh"
# shellcheck source=lib/config.sh
source "$HARNESS_ROOT/lib/config.sh"
# shellcheck source=lib/resilience.sh
source "$HARNESS_ROOT/lib/resilience.sh"
# shellcheck source=lib/wake.sh
source "$HARNESS_ROOT/lib/wake.sh"

loopctl_pause() { # [--for S] [--reason T]
  local seconds=3600 reason=""
  while (($#)); do
    case "$1" in
      --for) [[ "${2:-}" =~ ^[0-9]+([.][0-9]+)?$ ]] || usage_error "pause: --for needs seconds"; seconds=$2; shift ;;
      --reason) reason=${2:?--reason needs text}; shift ;;
      *) usage_error "pause: unknown argument: $1" ;;
    esac
    shift
  done
  py pause set --state-dir "$STATE" --seconds "$seconds" --reason "${reason:-paused by operator}" "${RES_POLICY_ARGS[@]}"
}

loopctl_circuit() { # [status|close|open] [--json]
  local action=status
  local -a args=()
  while (($#)); do
    case "$1" in
      status | close | open) action=$1 ;;
      --json) args+=(--json) ;;
      *) usage_error "circuit: unknown argument: $1" ;;
    esac
    shift
  done
  py circuit "$action" --state-dir "$STATE" --by "operator ($(id -un 2>/dev/null || echo "uid $UID"))" \
    "${args[@]}" "${RES_POLICY_ARGS[@]}"
}

loopctl_prune() { # [--older-than DAYS] [--dry-run] | --merged [--dry-run]
  local days=${CFG[WORKTREE_MAX_AGE_DAYS]}
  local -a args=()
  while (($#)); do
    case "$1" in
      --older-than) [[ "${2:-}" =~ ^[0-9]+([.][0-9]+)?$ ]] || usage_error "prune: --older-than needs days"; days=$2; shift ;;
      --dry-run) args+=(--dry-run) ;;
      --merged) args+=(--merged "${RES_POLICY_ARGS[@]}") ;;
      *) usage_error "prune: unknown argument: $1" ;;
    esac
    shift
  done
  py worktrees prune --state-dir "$STATE" --repo "${CFG[REPO_DIR]}" --older-than-days "$days" "${args[@]}"
}

main() {
  local cmd
  config_cli "${BASH_SOURCE[0]}" "" "$@"
  set -- "${CLI_REST[@]}"
  cmd=$1
  case "$cmd" in
    show | pause | resume | circuit | stop | unstop | worktrees | prune | migrate | reindex | gc) config_verb_help "${BASH_SOURCE[0]}" "$@" ;;
  esac
  shift
  config_python "$HARNESS_ROOT" quick || die "$CFG_ERROR"
  STATE=${CFG[STATE_DIR]}
  [[ -d "$STATE" ]] || die "no state directory at $STATE (wrong --state?)" "$EXIT_USAGE"
  HARNESS_AUDIT_LOG="$STATE/events.jsonl"
  resilience_init
  case "$cmd" in
    show)
      (($# == 0)) || usage_error "show takes no arguments"
      py pause show --state-dir "$STATE"
      py circuit status --state-dir "$STATE" "${RES_POLICY_ARGS[@]}"
      if [[ -e "$STATE/STOP" ]]; then echo "STOP: present (the loop stops claiming)"; else echo "STOP: absent"; fi
      ;;
    pause) loopctl_pause "$@" ;;
    resume)
      (($# == 0)) || usage_error "resume takes no arguments"
      py pause clear --state-dir "$STATE" --by operator ;;
    circuit) loopctl_circuit "$@" ;;
    stop)
      : >>"$STATE/STOP" || die "cannot write $STATE/STOP"
      log_audit loop.stop_requested --arg by operator
      echo "STOP written: the loop stops claiming and ends once running sessions finish" ;;
    unstop)
      if rm -f -- "$STATE/STOP"; then log_audit loop.stop_withdrawn --arg by operator; echo "STOP removed"; fi ;;
    worktrees) py worktrees list --state-dir "$STATE" "$@" ;;
    prune) loopctl_prune "$@" ;;
    migrate)
      (($# == 0)) || usage_error "migrate takes no arguments"
      if [[ -e "$STATE/loop.lock" ]] && ! flock -n "$STATE/loop.lock" true; then
        die "a loop is running on $STATE: stop it first (loopctl.sh stop), then migrate" "$EXIT_BUSY"
      fi
      py migrate --state-dir "$STATE" ;;
    reindex)
      (($# == 0)) || usage_error "reindex takes no arguments"
      py reindex --state-dir "$STATE" ;;
    gc)
      local arg
      for arg in "$@"; do
        [[ "$arg" == --dry-run || "$arg" == --json ]] || usage_error "gc takes --dry-run and --json, got: $arg"
      done
      py gc --state-dir "$STATE" --raw-days "${CFG[RETAIN_RAW_DAYS]}" --keep-days "${CFG[RETAIN_DAYS]}" "$@" ;;
    help) log_help "${BASH_SOURCE[0]}" ;;
    *) usage_error "unknown command: $cmd (see --help)" ;;
  esac
  case "$cmd" in
    pause | resume | circuit | stop | unstop) wake_loop "$STATE" ;;
  esac
}

main "$@"
