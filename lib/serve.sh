# shellcheck shell=bash
# The HTTP server beside the loop (SERVE_ADDR set): scripts/serve.sh's server,
# started with the loop and stopped with it. Sourced, not executed.

SERVE_PID="" SERVE_TOLD=0

# serve_start: the server in its own session, without the loop's lock fd; its
# output goes to state/serve.log. The token reaches it through its environment.
serve_start() {
  [[ -n "${CFG[SERVE_ADDR]}" ]] || return 0
  local s=${CFG[STATE_DIR]} own=""
  spawn_proc_start "$$" own || true
  HARNESS_SERVE_TOKEN="${CFG[SERVE_TOKEN]}" PYTHONPATH="$HARNESS_ROOT/lib" setsid "$HARNESS_PY" -m harness http \
    --state-dir "$s" --addr "${CFG[SERVE_ADDR]}" --loop-pid "$$" --loop-start "$own" \
    --heartbeat-s "${CFG[HEARTBEAT_S]}" "${RES_POLICY_ARGS[@]}" \
    </dev/null >>"$s/serve.log" 2>&1 8>&- 9>&- &
  SERVE_PID=$!
  info "serving the dashboard, /metrics and /events on ${CFG[SERVE_ADDR]} (pid $SERVE_PID; its log: $s/serve.log)"
}

# serve__running <pid>: the process exists and has not exited (a zombie has).
serve__running() { # <pid>
  local stat
  read -r stat <"/proc/$1/stat" 2>/dev/null || return 1
  stat=${stat##*) }
  [[ "${stat:0:1}" != Z ]]
}

# serve_check: a server that died is said once (the loop goes on without it).
serve_check() {
  [[ -n "$SERVE_PID" ]] && ((SERVE_TOLD == 0)) || return 0
  serve__running "$SERVE_PID" && return 0
  local rc=0
  wait "$SERVE_PID" 2>/dev/null || rc=$?
  SERVE_TOLD=1
  log_audit serve.died --argjson pid "$SERVE_PID" --arg exit_code "$rc"
  warn "the HTTP server on ${CFG[SERVE_ADDR]} (pid $SERVE_PID) is gone (exit $rc); see ${CFG[STATE_DIR]}/serve.log"
  SERVE_PID=""
}

# serve_stop: SIGTERM (its streams end, then it stops), SIGKILL after 5 s.
serve_stop() {
  local i
  [[ -n "$SERVE_PID" ]] || return 0
  if kill -TERM "$SERVE_PID" 2>/dev/null; then
    for ((i = 0; i < 50; i++)); do
      serve__running "$SERVE_PID" || break
      wake_sleep 0.1
    done
    if serve__running "$SERVE_PID"; then
      warn "the HTTP server did not stop within 5 s; killing it"
      kill -KILL "$SERVE_PID" 2>/dev/null || true
    fi
  fi
  wait "$SERVE_PID" 2>/dev/null || true
  SERVE_PID=""
}
