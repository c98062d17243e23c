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

# queue_finish <item> <session> <to-state> <history-record-json> <attempts>: ends the
# item's running attempt through the store; refused (fenced) unless that session
# holds its lease (or none is recorded).
queue_finish() { # <item> <session> <to-state> <record-json> <attempts>
  py_call queue-finish --state-dir "${CFG[STATE_DIR]}" "$1" --session "$2" --to "$3" --record "$4" --attempts "$5"
}
