# shellcheck shell=bash
# The work queue (state/queue/<state>/<item>.json); the file work is done by the
# Python helpers, each an atomic rename. Sourced, not executed.

queue_init() { # <state-dir>
  local s
  [[ -d "$1/queue" ]] || mkdir -m 700 "$1/queue" || die "cannot create $1/queue"
  for s in pending running succeeded quarantined canceled; do
    [[ -d "$1/queue/$s" ]] || mkdir -m 700 "$1/queue/$s" || die "cannot create $1/queue/$s"
  done
}

# queue_finish <item> <to-state> <history-record-json> <attempts> [not-before]
queue_finish() { # <item> <to-state> <record-json> <attempts> [not-before]
  py_call queue-finish --state-dir "${CFG[STATE_DIR]}" "$1" --to "$2" --record "$3" --attempts "$4" --not-before "${5:-}"
}
