# shellcheck shell=bash
# shellcheck disable=SC2034 # exit codes are read by the scripts that source this
# Logging, errors and the audit log (state/events.jsonl). Sourced, not executed.
# The clock is lib/clock.sh, sourced here: every user of this module needs it.

# shellcheck source=lib/clock.sh
source "${BASH_SOURCE[0]%/*}/clock.sh"

# Exit codes shared by every entry point (docs/verdicts.md and README.md list them).
readonly EXIT_OK=0
readonly EXIT_FATAL=1
readonly EXIT_USAGE=2
readonly EXIT_BUSY=3
readonly EXIT_HALTED=4
# Answers of the helpers that only the loop reads (lib/harness/__main__.py), apart
# from the codes above; 70: the helper coprocess died during the call (py_call).
readonly EXIT_NOTHING_READY=10
readonly EXIT_BLOCKED=11
readonly EXIT_STORE_DOWN=13 # the store's server (postgres) did not answer: the call may be made again

# die <message> [exit-code]: one line on stderr, then exit (default 1).
die() { # <message> [code]
  printf 'harness: %s\n' "$1" >&2
  exit "${2:-$EXIT_FATAL}"
}

# usage_error <message>: a bad flag or argument; exit 2.
usage_error() { # <message>
  die "$1" "$EXIT_USAGE"
}

# log_help <script>: prints the script's leading comment block (# Summary:, # Usage: ...).
log_help() { # <script>
  sed -n '2,/^[^#]/{/^#/!q;s/^# \{0,1\}//;p}' "$1"
}

warn() { # <message>
  printf 'harness: %s\n' "$1" >&2
}

# info <message>: progress for a person at a terminal; quiet with HARNESS_QUIET=1.
info() { # <message>
  local now
  [[ "${HARNESS_QUIET:-0}" == 1 ]] && return 0
  clock_iso now
  printf '%s %s\n' "$now" "$1" >&2
}

# log_audit <event> [--arg k v | --argjson k v]...: appends one JSON line to the
# audit log ($HARNESS_AUDIT_LOG). The helpers write it (lib/harness/serve/loopcalls.py,
# one O_APPEND write, so concurrent writers never interleave a line); PY_OUT is
# left as it was. A helper coprocess that died during the call is not asked again:
# the line is written by a helper of its own (at worst twice, never lost).
log_audit() { # <event> [--arg k v | --argjson k v]...
  local saved=${PY_OUT:-} rc=0
  py_again audit --log "${HARNESS_AUDIT_LOG:?audit log not set}" "$@" || rc=$?
  PY_OUT=$saved
  if ((rc != 0)); then
    warn "audit: could not append event $1 to $HARNESS_AUDIT_LOG (exit $rc)"
    return 1
  fi
}

# log_capture <var> <command> [args...]: the command's output in var, trailing
# newlines dropped as $(...) drops them; returns the command's status. bash 5.2
# can lose a trapped signal (SIGTERM, SIGINT) that arrives during a command or
# process substitution: tests/signal_loss.sh measures it (between 1 in 250 and
# 1 in 70 of the signals that land during one; none for a command whose output
# goes to a file). So the loop, which
# sets LOG_CAPTURE_FILE, takes output through that file; other scripts, which trap
# no signal, through $(...).
log_capture() { # <var> <command> [args...]
  local _lc_var=$1 _lc_out="" _lc_rc=0
  shift
  if [[ -n "${LOG_CAPTURE_FILE:-}" ]]; then
    "$@" >"$LOG_CAPTURE_FILE" || _lc_rc=$?
    IFS= read -r -d '' _lc_out <"$LOG_CAPTURE_FILE" || true
  else
    _lc_out=$("$@") || _lc_rc=$? # subst-ok: no trapped signal outside the loop
  fi
  while [[ "$_lc_out" == *$'\n' ]]; do _lc_out=${_lc_out%$'\n'}; done
  printf -v "$_lc_var" '%s' "$_lc_out"
  return "$_lc_rc"
}

# log_debug_init: HARNESS_DEBUG=1 turns on tracing with file:line prefixes.
log_debug_init() {
  if [[ "${HARNESS_DEBUG:-0}" == 1 ]]; then
    PS4='+ ${BASH_SOURCE##*/}:${LINENO}: '
    set -x
  fi
}
