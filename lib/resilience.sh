# shellcheck shell=bash
# shellcheck disable=SC2034 # LOOP_* are read by loop.sh
# Failure handling, seen from the loop. The policy itself (verdict -> retry with
# backoff, quarantine, pause, requeue) lives in one place, lib/harness/pipeline/policy.py,
# and the circuit breaker in lib/harness/pipeline/breaker.py; both run inside the helpers'
# start and finalize. This module passes them the configuration and keeps
# the loop's view of why it is not claiming. Sourced, not executed.

declare -ga RES_POLICY_ARGS=()
RES_BLOCK="" RES_BLOCK_KEY="" RES_BLOCK_HALT=0 RES_RECHECK_AT=0
# 1 when a block that needs a person (halt) ends this loop, whose last line then
# says why (loop.sh sets it for --once, --drain and --max-iterations).
RES_HALT_EXITS=0

# resilience_init: the configuration the helpers read (lib/harness/pipeline/policy.py): every
# key whose scope in lib/config.schema is "helpers", as --cfg KEY=VALUE arguments;
# the agent binary as spawn_resolve_bin found it.
resilience_init() {
  local key value
  RES_POLICY_ARGS=()
  for key in "${CFG_KEYS[@]}"; do
    [[ "${CFG_SCOPE[$key]}" == helpers ]] || continue
    value=${CFG[$key]}
    [[ "$key" != CLAUDE_BIN ]] || value=${SPAWN_BIN:-$value}
    RES_POLICY_ARGS+=(--cfg "$key=$value")
  done
}

# resilience_blocked <reply-line>: the claim was refused (kind, halt, until,
# reason: gate.Blocked.line). Says so once per block, in the audit log and on stderr (not
# on stderr when the block halts a loop that then ends: its last line says it),
# and waits before asking again: until the block ends, at most IDLE_POLL_S (so
# that an operator's resume or circuit close is seen soon). A pause and the
# breaker are one block while their end stays (their reason counts the seconds
# down); the machine's checks, while their kind stays (their reason has the load).
resilience_blocked() { # <reply-line>
  local kind reason until halt idle key
  IFS=$'\x1f' read -r kind halt until reason <<<"$1"
  key=$kind
  case "$kind" in paused | circuit) key+=":$until" ;; governor) key+=":$reason" ;; esac
  # the governor's limit is the loop at work, not a block: its changes are audited
  # (governor.changed), the loop's heartbeat and status.sh show it
  if [[ "$key" != "$RES_BLOCK_KEY" && "$kind" != governor ]]; then
    log_audit loop.blocked --arg kind "$kind" --arg reason "$reason" --argjson halt "$halt"
    if [[ "$halt" != true ]] || ((!RES_HALT_EXITS)); then warn "not claiming: $reason"; fi
  fi
  RES_BLOCK_KEY=$key
  RES_BLOCK="$kind:$reason"
  [[ "$halt" == true ]] && RES_BLOCK_HALT=1 || RES_BLOCK_HALT=0
  clock_now
  clock_us "$until" until
  clock_us "${CFG[IDLE_POLL_S]}" idle
  if ((until > NOW_US && until - NOW_US < idle)); then RES_RECHECK_AT=$until; else RES_RECHECK_AT=$((NOW_US + idle)); fi
}

# resilience_unblocked: a claim went through (or nothing was ready) after a block.
resilience_unblocked() {
  [[ -n "$RES_BLOCK" ]] || return 0
  if [[ "$RES_BLOCK" != governor:* ]]; then
    log_audit loop.unblocked --arg was "$RES_BLOCK"
    info "claiming again (was: ${RES_BLOCK#*:})"
  fi
  RES_BLOCK="" RES_BLOCK_KEY="" RES_BLOCK_HALT=0 RES_RECHECK_AT=0
}

# resilience_may_ask: false while a block's recheck time has not come.
resilience_may_ask() {
  [[ -z "$RES_BLOCK" ]] && return 0
  clock_now
  ((NOW_US >= RES_RECHECK_AT))
}
