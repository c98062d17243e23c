# shellcheck shell=bash
# systemd's notify protocol, when the loop runs as a Type=notify service
# (packaging/harness.service): READY=1 once it has reconciled what an earlier
# loop left, STATUS= with its live counts, WATCHDOG=1 from the main loop's path
# (a wedged loop stops pinging and systemd restarts it), STOPPING=1 when a
# graceful stop begins. The datagrams go out through the helper coprocess
# (lib/harness/serve/sdnotify.py). Sourced, not executed.

NOTIFY_SOCKET_PATH="" NOTIFY_WATCHDOG_US=0 NOTIFY_PING_AT=0 NOTIFY_STATUS="" NOTIFY_FAILED=0 NOTIFY_STOPPING=0 NOTIFY_ENDING=""

# notify_init: takes NOTIFY_SOCKET (and WATCHDOG_USEC, when WATCHDOG_PID is this
# loop's or unset) out of the environment, so that no child can speak for the loop.
notify_init() {
  NOTIFY_SOCKET_PATH=${NOTIFY_SOCKET:-}
  local usec=${WATCHDOG_USEC:-0}
  [[ "$usec" =~ ^[0-9]+$ ]] || usec=0
  if [[ -n "${WATCHDOG_PID:-}" && "${WATCHDOG_PID}" != "$$" ]]; then usec=0; fi
  [[ -n "$NOTIFY_SOCKET_PATH" ]] || usec=0
  NOTIFY_WATCHDOG_US=$usec
  unset NOTIFY_SOCKET WATCHDOG_USEC WATCHDOG_PID
}

# notify_send <KEY=VALUE>...: one datagram; a failure is said once (stderr and audit).
notify_send() {
  [[ -n "$NOTIFY_SOCKET_PATH" ]] || return 0
  if py_call sd-notify --socket "$NOTIFY_SOCKET_PATH" "$@"; then
    NOTIFY_FAILED=0
    return 0
  fi
  ((NOTIFY_FAILED)) && return 0
  NOTIFY_FAILED=1
  warn "cannot notify systemd at $NOTIFY_SOCKET_PATH (${1%%=*}): ${PY_OUT:-the helper failed}; said once until a message gets through"
  log_audit loop.notify_failed --arg socket "$NOTIFY_SOCKET_PATH" --arg message "${1%%=*}" --arg error "$PY_OUT"
}

# notify_status_text: the STATUS= line, from the loop's own counts.
notify_status_text() {
  local -n _out=$1
  _out="${#S_ITEM[@]} of ${LOOP_JOBS_CAP:-${CFG[JOBS]}} sessions running, $LOOP_STARTED started"
  local stopping=${LOOP_STOPPING:-$NOTIFY_ENDING}
  [[ -z "$stopping" ]] || _out+="; stopping ($stopping)"
  [[ -z "${RES_BLOCK:-}" ]] || _out+="; not claiming: ${RES_BLOCK}"
  _out=${_out//[$'\n\r']/ }
}

notify_ready() {
  local status
  notify_status_text status
  NOTIFY_STATUS=$status
  clock_now
  NOTIFY_PING_AT=$NOW_US
  notify_send READY=1 "MAINPID=$$" "STATUS=$status"
}

# notify_tick: from the main loop, every round: WATCHDOG=1 every third of the
# watchdog's interval, STATUS= whenever it changed, STOPPING=1 once a stop began
# (a signal's trap only sets LOOP_STOPPING: it never writes to the helper's pipe).
notify_tick() {
  [[ -n "$NOTIFY_SOCKET_PATH" ]] || return 0
  local status
  local -a fields=()
  notify_status_text status
  if [[ -n "$LOOP_STOPPING$NOTIFY_ENDING" ]] && ((!NOTIFY_STOPPING)); then
    NOTIFY_STOPPING=1
    fields+=(STOPPING=1)
  fi
  [[ "$status" == "$NOTIFY_STATUS" ]] || fields+=("STATUS=$status")
  if ((NOTIFY_WATCHDOG_US > 0)); then
    clock_now
    if ((NOW_US - NOTIFY_PING_AT >= NOTIFY_WATCHDOG_US / 3)); then
      fields+=(WATCHDOG=1)
      NOTIFY_PING_AT=$NOW_US
    fi
  fi
  ((${#fields[@]})) || return 0
  NOTIFY_STATUS=$status
  notify_send "${fields[@]}"
}

# notify_end: the loop leaves (a drain's end, --once, a halt, a fatal error):
# STOPPING=1, unless a stop already said it.
notify_end() {
  ((!NOTIFY_STOPPING)) && [[ -n "$NOTIFY_SOCKET_PATH" ]] || return 0
  local why=$LOOP_MODE
  ((!LOOP_DRAINED)) || why=drained
  [[ -z "$LOOP_HALT" ]] || why=halted
  [[ -z "$LOOP_FATAL" ]] || why=fatal
  NOTIFY_ENDING=$why
  notify_tick
}

# notify_sleep_us <var>: caps an idle sleep at the next watchdog ping.
notify_sleep_us() { # <var>
  local -n _us=$1
  ((NOTIFY_WATCHDOG_US > 0)) || return 0
  local due=$((NOTIFY_PING_AT + NOTIFY_WATCHDOG_US / 3 - NOW_US))
  ((due > 0)) || due=1
  ((_us <= due)) || _us=$due
}
