# shellcheck shell=bash
# shellcheck disable=SC2034 # LOOP_CLAIM_AT is read by loop.sh
# The merge queue, seen from the loop (INTEGRATE): one integration at a time, as a
# process of its own (the helpers' integrate, lib/harness/pipeline/integrate.py),
# started in its own session without the loop's lock fd, so that it outlives a loop
# that dies; its own lock (state/integrate.lock) keeps the next one from starting
# until it has ended. Each run lands (or sends back for a fix round) one item.
# Sourced, not executed.

INT_PID="" INT_START="" INT_DUE=0 INT_AT=0 INT_DEFERRED_SINCE=0

integrate_on() { [[ "${CFG[INTEGRATE]}" != off ]]; }

# integrate_check: fails (CFG_ERROR set) when the merge queue is on but cannot work
# as configured (no TARGET_BRANCH, the target checked out in REPO_DIR, ...).
integrate_check() {
  integrate_on || return 0
  log_capture CFG_ERROR integrate__check && return 0
  CFG_ERROR=${CFG_ERROR#harness: }
  return 1
}

integrate__check() { py integrate --check --state-dir "${CFG[STATE_DIR]}" "${RES_POLICY_ARGS[@]}" 2>&1; }

# integrate_due: there may be verified work to land (at start, after a session
# ended verified, after a landing).
integrate_due() { INT_DUE=1 INT_AT=0; }

# integrate_leftovers: at start with the merge queue off, verified items an earlier
# run left (it had the queue on) succeed as they are, their work on their branch.
integrate_leftovers() {
  local rc=0
  integrate_on && return 0
  py_call integrate --state-dir "${CFG[STATE_DIR]}" "${RES_POLICY_ARGS[@]}" || rc=$?
  if ((rc != 0)); then
    warn "settling the items an earlier run left verified failed (exit $rc)"
  elif [[ "$PY_OUT" != "settled 0" ]]; then
    info "merge queue off: ${PY_OUT#settled } item(s) an earlier run left verified succeeded, unlanded"
  fi
}

# integrate_busy: an integration runs, or one is due. A loop that ends by itself
# (--drain, --once) stops waiting for one that has been put off (another one held the
# lock, the remote could not be reached, the target kept moving) for longer than
# DRAIN_MAX_WAIT_S: the item stays verified for the next run, and the loop says so.
integrate_busy() {
  local limit
  integrate_on && [[ -n "$INT_PID" || "$INT_DUE" == 1 ]] || return 1
  [[ "$LOOP_MODE" != forever && -z "$INT_PID" && $INT_DEFERRED_SINCE != 0 ]] || return 0
  clock_now
  clock_us "${CFG[DRAIN_MAX_WAIT_S]}" limit
  ((NOW_US - INT_DEFERRED_SINCE > limit)) || return 0
  log_audit integrate.given_up --arg reason "put off for more than DRAIN_MAX_WAIT_S"
  warn "the merge queue was put off for more than ${CFG[DRAIN_MAX_WAIT_S]} s; verified items wait for the next run"
  INT_DUE=0 INT_DEFERRED_SINCE=0
  return 1
}

# integrate_step: reaps an ended integration, and starts the next one when it is due.
integrate_step() {
  integrate_on || return 0
  if [[ -n "$INT_PID" ]]; then
    integrate__alive && return 0
    integrate__ended
  fi
  [[ "$INT_DUE" == 1 && -z "$LOOP_STOPPING" && -z "$LOOP_FATAL" ]] || return 0
  clock_now
  ((NOW_US >= INT_AT)) || return 0
  PYTHONPATH="$HARNESS_ROOT/lib" setsid "$HARNESS_PY" -m harness integrate --state-dir "${CFG[STATE_DIR]}" \
    "${RES_POLICY_ARGS[@]}" </dev/null >"${CFG[STATE_DIR]}/integrate.out" 2>>"${CFG[STATE_DIR]}/integrate.log" 8>&- 9>&- &
  INT_PID=$!
  INT_START=""
  spawn_proc_start "$INT_PID" INT_START || true
  INT_DUE=0
}

integrate__alive() {
  local start
  spawn_proc_start "$INT_PID" start || return 1
  [[ -z "$INT_START" || "$start" == "$INT_START" ]]
}

# integrate__ended: what the integration did: landed or sent back an item (0: maybe
# more to land), nothing ready (10), put off (11: another one runs, the remote cannot
# be reached, the target kept moving), or it failed (said); put off or failed, it is
# tried again after IDLE_POLL_S.
integrate__ended() {
  local rc=0 did="" idle
  wait "$INT_PID" 2>/dev/null || rc=$?
  read -r did 2>/dev/null <"${CFG[STATE_DIR]}/integrate.out" || true
  INT_PID=""
  LOOP_CLAIM_AT=0 # a landing unblocks dependents; a fix round waits to be claimed
  case $rc in
    0) INT_DEFERRED_SINCE=0; integrate_due ;;
    "$EXIT_NOTHING_READY") INT_DEFERRED_SINCE=0 ;;
    *)
      if [[ $INT_DEFERRED_SINCE == 0 ]]; then
        clock_now
        INT_DEFERRED_SINCE=$NOW_US
      fi
      if [[ $rc != "$EXIT_BLOCKED" ]]; then
        log_audit integrate.error --argjson exit_code "$rc" --arg log "${CFG[STATE_DIR]}/integrate.log"
        warn "the merge queue's integration exited $rc (see ${CFG[STATE_DIR]}/integrate.log)"
      fi
      INT_DUE=1
      clock_now
      clock_us "${CFG[IDLE_POLL_S]}" idle
      INT_AT=$((NOW_US + idle))
      ;;
  esac
  [[ -z "$did" || $rc != 0 ]] || info "merge queue: $did"
}
