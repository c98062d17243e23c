# shellcheck shell=bash
# The work queue's directories (state/queue/<state>/); every read and write of an
# item goes through the Python helpers' store (lib/harness/store/). Sourced, not executed.

queue_init() { # <state-dir>
  local s
  [[ -d "$1/queue" ]] || mkdir -m 700 "$1/queue" || die "cannot create $1/queue"
  for s in pending running verified succeeded quarantined canceled; do
    [[ -d "$1/queue/$s" ]] || mkdir -m 700 "$1/queue/$s" || die "cannot create $1/queue/$s"
  done
}
