#!/usr/bin/env bash
# Summary: Runs work items from the queue as headless Claude Code sessions, one per item.
# Usage: loop.sh [--once | --drain | --max-iterations N] [-j N] [--state DIR] [--config FILE]
#                [--set KEY=VALUE]... [--print-config] [--help]
#
#   --once              run one item to its end, then exit
#   --drain             exit when nothing is ready and nothing is running; waits for a
#                       retry due within DRAIN_MAX_WAIT_S, and says what it leaves
#   --max-iterations N  start at most N sessions, then exit when they have ended
#   -j, --jobs N        sessions at once (JOBS; with JOBS_MAX, where the governor starts)
#   --state DIR         state directory (STATE_DIR)
#   --config FILE       configuration file (default: harness.conf beside loop.sh, if any)
#   --set KEY=VALUE     set any configuration key (see --print-config)
#   --print-config      show every setting and where it came from, then exit
#
# Without --once, --drain or --max-iterations the loop runs until SIGINT, SIGTERM or
# a state/STOP file. Exit codes: 0 done, 1 fatal error, 2 usage error, 3 busy (another
# loop holds the state directory), 4 halted (credentials rejected), 130/143 stopped by
# SIGINT/SIGTERM.
set -euo pipefail

HARNESS_ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd) # subst-ok: before the traps
# shellcheck source=lib/log.sh
source "$HARNESS_ROOT/lib/log.sh"
# shellcheck source=lib/config.sh
source "$HARNESS_ROOT/lib/config.sh"
# shellcheck source=lib/lock.sh
source "$HARNESS_ROOT/lib/lock.sh"
# shellcheck source=lib/worktree.sh
source "$HARNESS_ROOT/lib/worktree.sh"
# shellcheck source=lib/spawn.sh
source "$HARNESS_ROOT/lib/spawn.sh"
# shellcheck source=lib/resilience.sh
source "$HARNESS_ROOT/lib/resilience.sh"
# shellcheck source=lib/session.sh
source "$HARNESS_ROOT/lib/session.sh"
# shellcheck source=lib/integrate.sh
source "$HARNESS_ROOT/lib/integrate.sh"
# shellcheck source=lib/sidecar.sh
source "$HARNESS_ROOT/lib/sidecar.sh"
# shellcheck source=lib/serve.sh
source "$HARNESS_ROOT/lib/serve.sh"
# shellcheck source=lib/wake.sh
source "$HARNESS_ROOT/lib/wake.sh"
# shellcheck source=lib/notify.sh
source "$HARNESS_ROOT/lib/notify.sh"

LOOP_MODE=forever LOOP_MAX=0 LOOP_CONFIG="" LOOP_PRINT=0 LOOP_HALT="" LOOP_FATAL="" LOOP_SIGNAL="" LOOP_STOPPING=""
LOOP_GC_PID="" LOOP_GC_START="" LOOP_JOBS_CAP=1 LOOP_STOP_AT=0 LOOP_CLAIM_AT=0 LOOP_SPAWN_AT=0 LOOP_STARTED=0 LOOP_GC_AT=0
LOOP_DRAINED=0 LOOP_DRAIN_UNTIL=0 LOOP_DRAIN_AT="" LOOP_DRAIN_SAID="" LOOP_LEFT=0 LOOP_LEFT_SUMMARY="" LOOP_LEFT_GROUPS="[]"
declare -a LOOP_SETS=()

loop_parse_args() { # <args...>
  while (($#)); do
    case "$1" in
      -h | --help) log_help "${BASH_SOURCE[0]}"; exit 0 ;;
      --once) LOOP_MODE=once LOOP_MAX=1 ;;
      --drain) LOOP_MODE=drain ;;
      --max-iterations)
        [[ "${2:-}" =~ ^[1-9][0-9]*$ ]] || usage_error "--max-iterations needs a whole number above 0"
        LOOP_MODE=max LOOP_MAX=$2; shift ;;
      -j | --jobs)
        [[ "${2:-}" =~ ^[1-9][0-9]*$ ]] || usage_error "$1 needs a whole number above 0"
        LOOP_SETS+=("JOBS=$2"); shift ;;
      --state) [[ -n "${2:-}" ]] || usage_error "--state needs a directory"; LOOP_SETS+=("STATE_DIR=$2"); shift ;;
      --config) [[ -n "${2:-}" ]] || usage_error "--config needs a file"; LOOP_CONFIG=$2; shift ;;
      --set) [[ "${2:-}" == *=* ]] || usage_error "--set needs KEY=VALUE"; LOOP_SETS+=("$2"); shift ;;
      --print-config) LOOP_PRINT=1 ;;
      *) usage_error "unknown argument: $1 (see --help)" ;;
    esac
    shift
  done
}

loop_state_init() {
  local s=${CFG[STATE_DIR]} d
  [[ "$s" == /* ]] || s="$PWD/$s"
  CFG[STATE_DIR]=$s
  if ! mkdir -p "$s" || ! chmod 700 "$s"; then
    die "cannot create $s with mode 0700"
  fi
  for d in "$s/sessions" "$s/worktrees"; do
    [[ -d "$d" ]] || mkdir -m 700 "$d" || die "cannot create $d"
  done
  HARNESS_AUDIT_LOG="$s/events.jsonl"
  export HARNESS_AUDIT_LOG
}

# loop_store_init: the store made ready; a files state of an earlier release is
# moved to SQLite first (lib/harness/store/migrate.py), unless STORE=files keeps it.
loop_store_init() {
  local -a migrate=(--migrate)
  [[ "${CFG[STORE]}" != files ]] || migrate=()
  py store-init --state-dir "${CFG[STATE_DIR]}" "${migrate[@]}" ||
    die "cannot open the store in ${CFG[STATE_DIR]} (see above); nothing was changed"
}

# loop_reconcile: before anything is claimed, every item left in running/ by an
# earlier loop is adopted (its session still runs), finalized (it ended while no
# loop watched) or returned to pending (its session never started). The helpers'
# reconcile (lib/harness/pipeline/reconcile.py) requeues the unstarted ones and names the
# sessions to adopt, one line each; whether each still runs is asked here.
loop_reconcile() {
  local line sid item wpid wstart started timeout rc
  local -a lines=()
  py_call reconcile --state-dir "${CFG[STATE_DIR]}" --loop-pid "$$" "${RES_POLICY_ARGS[@]}" && rc=0 || rc=$?
  if ((rc != 0)); then
    LOOP_FATAL="reconciling what an earlier loop left failed (exit $rc)"
    return 0
  fi
  [[ -z "$PY_OUT" ]] || mapfile -t lines <<<"$PY_OUT"
  for line in "${lines[@]}"; do
    IFS=$'\x1f' read -r sid item wpid wstart started timeout _ <<<"$line"
    S_ITEM[$sid]=$item
    S_STOP_STAGE[$sid]=0
    S_WRAPPER[$sid]=$wpid
    S_WSTART[$sid]=$wstart
    session__deadline "$sid" "${timeout:-0}" "${started:-0}"
    if [[ ! -e "${CFG[STATE_DIR]}/sessions/$sid/exit_code" ]] && session_alive "$sid"; then
      log_audit session.adopted --arg session "$sid" --arg item "$item"
      info "adopted running session $sid for $item"
    else
      log_audit session.recovered --arg session "$sid" --arg item "$item" --arg reason "ended while no loop watched"
      session_finalize "$sid"
    fi
  done
}

# shellcheck disable=SC2317 # invoked by trap
# loop_on_signal <signal>: the first signal stops claiming and gives running
# sessions SHUTDOWN_GRACE_S to finish; a second one stops them at once.
loop_on_signal() { # <signal>
  if [[ -n "$LOOP_STOPPING" ]]; then
    LOOP_STOPPING=now
  else
    loop_begin_stop "$1"
  fi
  LOOP_SIGNAL=$1
  wake_self
}

loop_begin_stop() { # <why>
  LOOP_STOPPING=graceful
  clock_now
  LOOP_STOP_AT=$NOW_US
  LOOP_SIGNAL=$1
}

# loop_tick: polls every live session, finalizing those that ended.
loop_tick() {
  local sid grace
  if [[ "$LOOP_STOPPING" == graceful ]]; then
    clock_now
    clock_us "${CFG[SHUTDOWN_GRACE_S]}" grace
    ((NOW_US - LOOP_STOP_AT < grace)) || LOOP_STOPPING=now
  fi
  for sid in "${!S_ITEM[@]}"; do
    if session_finalize_due "$sid"; then
      session_finalize "$sid"
      notify_tick # a finalize can take seconds: the watchdog hears from each
    elif [[ -z "${S_FINAL_AT[$sid]:-}" && "$LOOP_STOPPING" == now ]]; then
      session_stop "$sid" interrupted "the loop was stopped (${LOOP_SIGNAL:-STOP})"
    fi
  done
}

loop_can_claim() {
  local delay
  [[ -z "$LOOP_STOPPING" && -z "$LOOP_FATAL" ]] || return 1
  [[ $LOOP_MAX == 0 || $LOOP_STARTED -lt $LOOP_MAX ]] || return 1
  ((${#S_ITEM[@]} < LOOP_JOBS_CAP)) || return 1
  resilience_may_ask || return 1
  clock_now
  clock_us "${CFG[SPAWN_DELAY_S]}" delay
  ((NOW_US >= LOOP_CLAIM_AT && NOW_US - LOOP_SPAWN_AT >= delay))
}

# loop_claim_all: starts sessions while slots are free and items ready. Sets
# LOOP_IDLE_WHY to "nothing" or "blocked" when it stopped for that reason.
loop_claim_all() {
  local rc
  LOOP_IDLE_WHY=""
  while loop_can_claim; do
    session_start "$LOOP_WORKER" && rc=0 || rc=$?
    case $rc in
      0)
        LOOP_STARTED=$((LOOP_STARTED + 1))
        clock_now
        LOOP_SPAWN_AT=$NOW_US
        notify_tick # a start (a worktree of a big repository) can take seconds: so can the next
        ;;
      "$EXIT_NOTHING_READY")
        LOOP_IDLE_WHY=nothing
        # Nothing is ready: ask again after IDLE_POLL_S, or as soon as a session ends.
        clock_now
        clock_us "${CFG[IDLE_POLL_S]}" LOOP_CLAIM_AT
        LOOP_CLAIM_AT=$((NOW_US + LOOP_CLAIM_AT))
        break
        ;;
      "$EXIT_BLOCKED") LOOP_IDLE_WHY=blocked; break ;;
      *) break ;;
    esac
  done
  [[ -n "$RES_BLOCK" ]] && LOOP_IDLE_WHY=blocked
  return 0
}

# loop_done: true when the loop should end now (nothing runs and, by its mode,
# nothing more will be started). A block that needs a person sets LOOP_HALT. A
# drain with nothing ready waits for a retry that comes due within
# DRAIN_MAX_WAIT_S (loop_drain_check); when it ends, LOOP_DRAINED is 1.
loop_done() {
  ((${#S_ITEM[@]} == 0)) || return 1
  [[ -n "$LOOP_STOPPING" || -n "$LOOP_FATAL" ]] && return 0
  integrate_busy && return 1
  [[ $LOOP_MAX != 0 && $LOOP_STARTED -ge $LOOP_MAX ]] && return 0
  [[ "$LOOP_MODE" != forever && -n "$LOOP_IDLE_WHY" ]] || return 1
  if [[ "$LOOP_IDLE_WHY" == blocked ]] && ((RES_BLOCK_HALT)); then
    LOOP_HALT=${RES_BLOCK#*:}
  fi
  [[ "$LOOP_MODE" == drain ]] || return 0
  loop_drain_check || return 0
  if [[ "$LOOP_IDLE_WHY" == nothing ]] && ((LOOP_DRAIN_UNTIL > 0)); then
    loop_drain_wait
    return 1
  fi
  LOOP_DRAINED=1
  return 0
}

# loop_drain_check: asks the helpers what keeps the pending items from running
# (lib/harness/pipeline/gate.py drain_check). Sets LOOP_DRAIN_UNTIL (microseconds; 0: no
# retry due within DRAIN_MAX_WAIT_S), LOOP_LEFT (items the drain would leave),
# LOOP_LEFT_SUMMARY (one line for a person) and LOOP_LEFT_GROUPS (JSON, for the
# audit log). Fails when the helpers could not tell.
loop_drain_check() {
  local until at rc
  LOOP_DRAIN_UNTIL=0 LOOP_LEFT=0 LOOP_LEFT_SUMMARY="" LOOP_LEFT_GROUPS="[]"
  py_call drain-check --state-dir "${CFG[STATE_DIR]}" --max-wait-s "${CFG[DRAIN_MAX_WAIT_S]}" \
    "${RES_POLICY_ARGS[@]}" && rc=0 || rc=$?
  if ((rc == 70)); then
    LOOP_FATAL="the helper process died while the drain looked at what is left"
    return 1
  elif ((rc != 0)); then
    warn "could not tell what the drain leaves behind (drain-check exited $rc)"
    return 1
  fi
  {
    IFS=$'\x1f' read -r until at LOOP_LEFT LOOP_LEFT_SUMMARY
    IFS= read -r LOOP_LEFT_GROUPS
  } <<<"$PY_OUT"
  [[ "$until" == - ]] || clock_us "$until" LOOP_DRAIN_UNTIL
  LOOP_DRAIN_AT=$at
}

# loop_drain_wait: the next claim waits for the retry that comes due first; the
# loop sleeps on its wake FIFO until then (loop_idle_sleep), so an added item or
# a signal still wakes it at once.
loop_drain_wait() {
  local poll
  clock_now
  if ((LOOP_DRAIN_UNTIL > NOW_US)); then
    LOOP_CLAIM_AT=$LOOP_DRAIN_UNTIL
  else # due already (a clock step between the claim and the check): once more, not at once
    clock_us "${CFG[POLL_INTERVAL_S]}" poll
    LOOP_CLAIM_AT=$((NOW_US + poll))
  fi
  [[ "$LOOP_DRAIN_SAID" != "$LOOP_DRAIN_AT" ]] || return 0
  LOOP_DRAIN_SAID=$LOOP_DRAIN_AT
  log_audit loop.drain_waiting --arg until "$LOOP_DRAIN_AT"
  info "draining: waiting until $LOOP_DRAIN_AT for a retry"
}

# loop_drain_report: what a drain left (LOOP_LEFT items), in the audit log and, when
# it left any, in one line on stderr (unless the loop halts: its last line says why).
loop_drain_report() {
  ((LOOP_DRAINED)) || return 0
  log_audit loop.drained --argjson left "$LOOP_LEFT" --arg summary "$LOOP_LEFT_SUMMARY" \
    --argjson groups "$LOOP_LEFT_GROUPS" || true
  ((LOOP_LEFT > 0)) && [[ -z "$LOOP_HALT" ]] || return 0
  warn "drained; $LOOP_LEFT_SUMMARY"
}

# loop_idle_sleep: nothing runs; sleeps on the wake FIFO for IDLE_POLL_S, or less
# when the next claim or block recheck is due sooner.
loop_idle_sleep() {
  local sleep_us at secs
  clock_us "${CFG[IDLE_POLL_S]}" sleep_us
  clock_now
  for at in "$LOOP_CLAIM_AT" "$RES_RECHECK_AT"; do
    if ((at > NOW_US && at - NOW_US < sleep_us)); then sleep_us=$((at - NOW_US)); fi
  done
  notify_sleep_us sleep_us
  clock_secs "$sleep_us" secs
  wake_sleep "$secs"
}

# loop_gc_tick: every GC_INTERVAL_S, retention's gc (lib/harness/ops/retention.py) in
# the background, in a session of its own: it compresses and removes what the
# RETAIN_* keys say and measures the disk's use (status.sh). It holds state/gc.lock
# (a pass still running makes the next one a no-op; one still running a whole
# interval later is killed, audited as gc.killed); its output goes to state/gc.log.
loop_gc_tick() {
  local every start
  clock_us "${CFG[GC_INTERVAL_S]}" every
  ((every > 0)) || return 0
  clock_now
  ((NOW_US - LOOP_GC_AT >= every)) || return 0
  LOOP_GC_AT=$NOW_US
  # the last pass still runs a whole interval later: hung (a stuck file system, say);
  # it holds gc.lock, so every later pass would be a no-op: its process group goes
  if [[ -n "$LOOP_GC_PID" ]] && spawn_proc_start "$LOOP_GC_PID" start && [[ "$start" == "$LOOP_GC_START" ]]; then
    kill -KILL -- "-$LOOP_GC_PID" 2>/dev/null || true
    log_audit gc.killed --argjson pid "$LOOP_GC_PID" --arg reason "still running after GC_INTERVAL_S"
    warn "the last gc (pid $LOOP_GC_PID) still ran after GC_INTERVAL_S (${CFG[GC_INTERVAL_S]}s); killed it"
  fi
  PYTHONPATH="$HARNESS_ROOT/lib" setsid "$HARNESS_PY" -m harness gc --state-dir "${CFG[STATE_DIR]}" \
    --raw-days "${CFG[RETAIN_RAW_DAYS]}" --keep-days "${CFG[RETAIN_DAYS]}" --quiet \
    </dev/null >>"${CFG[STATE_DIR]}/gc.log" 2>&1 8>&- 9>&- &
  LOOP_GC_PID=$! LOOP_GC_START=""
  spawn_proc_start "$LOOP_GC_PID" LOOP_GC_START || true
}

# loop_gc_init: the first gc when the last one (state/disk.json, which every gc
# rewrites) is GC_INTERVAL_S old: at once for a state directory no gc has seen, so
# that short runs (cron, the drain timer) keep it too.
loop_gc_init() {
  local mtime=0
  if [[ -e "${CFG[STATE_DIR]}/disk.json" ]]; then
    # subst-ok (next 1 line): at start, before the traps
    mtime=$(stat -c %Y -- "${CFG[STATE_DIR]}/disk.json" 2>/dev/null) || mtime=0
  fi
  LOOP_GC_AT=$((mtime * 1000000))
}

loop_run() {
  while :; do
    if [[ -z "$LOOP_STOPPING" && -e "${CFG[STATE_DIR]}/STOP" ]]; then
      loop_begin_stop STOP
      log_audit loop.stopping --arg reason "STOP file"
    fi
    loop_tick
    integrate_step
    sidecar_check
    serve_check
    sidecar_loop_heartbeat running
    worktree_prune_aged
    loop_gc_tick
    loop_claim_all
    notify_tick
    loop_done && return 0
    if ((${#S_ITEM[@]} == 0)) && [[ -z "$INT_PID" ]]; then
      loop_idle_sleep
    else # sessions or an integration run: their end is polled too (the wake may come a little early)
      wake_sleep "${CFG[POLL_INTERVAL_S]}"
    fi
    # woken (a session ended, an item added, a pause lifted): look at the queue now
    if ((WAKE_WOKEN)); then LOOP_CLAIM_AT=0 RES_RECHECK_AT=0; fi
  done
}

# loop_agent_version: LOOP_AGENT_VERSION, the first line of `<agent> --version`,
# asked once at start (before the traps) with AGENT_VERSION_TIMEOUT_S (0: not
# asked); "unknown" when it fails, prints nothing or takes longer (a hung binary
# must not hang the loop).
loop_agent_version() {
  local out="" limit=${CFG[AGENT_VERSION_TIMEOUT_S]} us
  LOOP_AGENT_VERSION=unknown
  clock_us "$limit" us
  ((us > 0)) && command -v timeout >/dev/null || return 0
  # subst-ok (next 1 line): at start, before the traps
  out=$(timeout -k 1 "$limit" "$SPAWN_BIN" --version </dev/null 2>/dev/null 8>&- 9>&-) || return 0
  out=${out%%$'\n'*}
  out=${out//[![:print:]]/}
  [[ -z "$out" ]] || LOOP_AGENT_VERSION=${out:0:200}
}

main() {
  log_debug_init
  notify_init
  umask 077
  loop_parse_args "$@"
  # --once, --drain and --max-iterations end at a block that needs a person, and
  # their last line says why; the forever loop says it when the block begins.
  [[ "$LOOP_MODE" == forever ]] || RES_HALT_EXITS=1
  config_load "$HARNESS_ROOT" "${LOOP_CONFIG:-${HARNESS_CONFIG:-}}" "${LOOP_SETS[@]}" || die "$CFG_ERROR" "$EXIT_USAGE"
  if ((LOOP_PRINT)); then
    config_print
    exit 0
  fi
  command -v setsid >/dev/null || die "setsid is required (util-linux)"
  command -v flock >/dev/null || die "flock is required (util-linux)"
  config_python "$HARNESS_ROOT" || die "$CFG_ERROR"
  spawn_resolve_bin || die "$CFG_ERROR"
  worktree_check_repo || die "$CFG_ERROR"
  [[ -r "${CFG[BOOTSTRAP]}" ]] || die "bootstrap template not readable: ${CFG[BOOTSTRAP]}"
  case "${CFG[SANDBOX]}" in
    "") ;;
    bwrap)
      command -v bwrap >/dev/null || die "SANDBOX=bwrap needs bubblewrap (apt-get install bubblewrap)"
      bwrap --ro-bind / / --dev /dev --proc /proc -- true 2>/dev/null 8>&- 9>&- ||
        die "SANDBOX=bwrap: bwrap cannot make a sandbox on this machine (user namespaces off?); scripts/doctor.sh says more"
      ((EUID != 0)) || warn "SANDBOX=bwrap as root: an agent that gets root inside can leave the sandbox through /proc; run the loop as a user of its own (docs/operations.md)"
      ;;
    *) die "SANDBOX must be empty or bwrap, got '${CFG[SANDBOX]}'" "$EXIT_USAGE" ;;
  esac
  loop_state_init
  resilience_init
  # the governor (JOBS_MAX) decides in the claim gate how many run, up to JOBS_MAX
  LOOP_JOBS_CAP=${CFG[JOBS]}
  ((CFG[JOBS_MAX] == 0)) || LOOP_JOBS_CAP=${CFG[JOBS_MAX]}
  integrate_check || die "$CFG_ERROR" "$EXIT_USAGE"
  # subst-ok (next 2 lines): before the traps
  lock_acquire "${CFG[STATE_DIR]}/loop.lock" ||
    die "another loop is running on ${CFG[STATE_DIR]} (pid $(cat "${CFG[STATE_DIR]}/loop.lock.pid" 2>/dev/null || echo '?'))" "$EXIT_BUSY"
  loop_store_init
  loop_gc_init
  loop_agent_version
  if ! wake_open "${CFG[STATE_DIR]}"; then
    warn "cannot make the FIFO ${CFG[STATE_DIR]}/loop.wake; the loop sleeps with sleep(1) and wakes only by the clock"
    log_audit loop.no_wake --arg error "mkfifo or open failed"
  fi
  LOOP_WORKER="$(hostname):$$" # subst-ok: before the traps
  # From here on, command output comes through this file, not $(...) (log_capture).
  LOG_CAPTURE_FILE="${CFG[STATE_DIR]}/loop.capture"
  trap 'loop_on_signal INT' INT
  trap 'loop_on_signal TERM' TERM
  trap 'loop_on_signal HUP' HUP
  # A write to the helper coprocess after it died must fail (EPIPE), not kill the
  # loop. A trapped signal, unlike an ignored one, is back to default in children.
  trap ':' PIPE
  trap 'sidecar_stop; serve_stop' EXIT
  py_serve
  log_audit loop.started --arg worker "$LOOP_WORKER" --arg mode "$LOOP_MODE" --argjson jobs "${CFG[JOBS]}" \
    --arg agent "$SPAWN_BIN" --arg agent_version "$LOOP_AGENT_VERSION"
  info "agent: $SPAWN_BIN ($LOOP_AGENT_VERSION)"
  sidecar_start
  serve_start
  loop_reconcile
  integrate_leftovers
  integrate_due
  notify_ready
  loop_run
  notify_end
  sidecar_stop
  sidecar_loop_heartbeat stopped
  loop_drain_report
  log_audit loop.stopped --arg reason "${LOOP_FATAL:-${LOOP_HALT:-${LOOP_SIGNAL:-$LOOP_MODE}}}" --argjson started "$LOOP_STARTED"
  serve_stop # after the last audit line: the feed's clients see the loop stop
  [[ -z "$LOOP_FATAL" ]] || die "stopped: $LOOP_FATAL" "$EXIT_FATAL"
  [[ -z "$LOOP_HALT" ]] || die "halted: $LOOP_HALT" "$EXIT_HALTED"
  case "$LOOP_SIGNAL" in
    INT) exit 130 ;;
    TERM) exit 143 ;;
    HUP) exit 129 ;;
  esac
  exit 0
}

main "$@"
