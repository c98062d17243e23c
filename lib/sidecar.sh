# shellcheck shell=bash
# The sidecar monitor (lib/harness/sidecar/core.py) and the loop's own heartbeat.
# One sidecar per loop: started with the loop, restarted when it dies, stopped
# when the loop ends. Sourced, not executed.

SIDECAR_PID="" SIDECAR_START="" SIDECAR_LAST_START=0 LOOP_HB_AT=0
SIDECAR_RESTART_MIN_S=5

# sidecar_start: starts the sidecar in its own session, without the loop's lock fd.
sidecar_start() {
  local s=${CFG[STATE_DIR]} own="" key opt
  local -a opts=()
  spawn_proc_start "$$" own || true
  # the keys of scope "sidecar" in lib/config.schema, as its options (STALL_TIMEOUT_S: --stall-timeout-s)
  for key in "${CFG_KEYS[@]}"; do
    [[ "${CFG_SCOPE[$key]}" == sidecar ]] || continue
    opt=${key,,}
    opts+=("--${opt//_/-}" "${CFG[$key]}")
  done
  PYTHONPATH="$HARNESS_ROOT/lib" setsid "$HARNESS_PY" -m harness sidecar --state-dir "$s" "${opts[@]}" \
    --loop-pid "$$" --loop-start "$own" "${RES_POLICY_ARGS[@]}" </dev/null >>"$s/sidecar.log" 2>&1 8>&- 9>&- &
  SIDECAR_PID=$!
  SIDECAR_START=""
  spawn_proc_start "$SIDECAR_PID" SIDECAR_START || true
  clock_now
  SIDECAR_LAST_START=$NOW_US
  log_audit sidecar.started --argjson pid "$SIDECAR_PID"
}

sidecar_alive() {
  local start
  [[ -n "$SIDECAR_PID" ]] && spawn_proc_start "$SIDECAR_PID" start || return 1
  [[ -z "$SIDECAR_START" || "$start" == "$SIDECAR_START" ]]
}

# sidecar_check: restarts a sidecar that died (at most once every SIDECAR_RESTART_MIN_S).
sidecar_check() {
  sidecar_alive && return 0
  clock_now
  ((NOW_US - SIDECAR_LAST_START >= SIDECAR_RESTART_MIN_S * 1000000)) || return 0
  local rc=""
  if [[ -n "$SIDECAR_PID" ]]; then
    wait "$SIDECAR_PID" 2>/dev/null && rc=0 || rc=$?
  fi
  log_audit sidecar.died --argjson pid "${SIDECAR_PID:-0}" --arg exit_code "$rc"
  warn "the sidecar (pid ${SIDECAR_PID:-?}) is gone (exit ${rc:-?}); starting a new one (see ${CFG[STATE_DIR]}/sidecar.log)"
  sidecar_start
}

# sidecar_stop: SIGTERM, then SIGKILL if it has not gone within 3 s.
sidecar_stop() {
  local i
  sidecar_alive || return 0
  kill -TERM "$SIDECAR_PID" 2>/dev/null || return 0
  for ((i = 0; i < 30; i++)); do
    sidecar_alive || break
    wake_sleep 0.1
  done
  if sidecar_alive; then
    warn "the sidecar did not stop within 3 s; killing it"
    kill -KILL "$SIDECAR_PID" 2>/dev/null || true
  fi
  wait "$SIDECAR_PID" 2>/dev/null || true
  SIDECAR_PID=""
}

# sidecar_loop_heartbeat <state>: state/loop.heartbeat.json, at most every HEARTBEAT_S.
sidecar_loop_heartbeat() { # <state>
  local every written now file="${CFG[STATE_DIR]}/loop.heartbeat.json"
  clock_now
  clock_us "${CFG[HEARTBEAT_S]}" every
  ((NOW_US - LOOP_HB_AT >= every)) || [[ "$1" != running ]] || return 0
  LOOP_HB_AT=$NOW_US
  clock_secs "$NOW_US" written
  clock_iso now
  local blocked=${RES_BLOCK:-}
  [[ "$blocked" != governor:* ]] || blocked="" # at the governor's target: at work, as with -j N all running
  if ! py_again loop-heartbeat --state-dir "${CFG[STATE_DIR]}" --argjson pid "$$" --arg state "$1" \
    --argjson written_at "$written" --arg at "$now" --argjson sessions "${#S_ITEM[@]}" --argjson jobs "${LOOP_JOBS_CAP:-${CFG[JOBS]}}" \
    --arg mode "$LOOP_MODE" --argjson sidecar_pid "${SIDECAR_PID:-null}" --arg stopping "$LOOP_STOPPING" \
    --argjson started "$LOOP_STARTED" --arg blocked "$blocked"; then
    warn "cannot write $file"
  fi
}
