# shellcheck shell=bash
# One loop per state directory: flock on state/loop.lock, held on fd 9 for the
# loop's lifetime. Children are started with 9>&- so none keeps the lock.

# lock_acquire <lock-file>: returns 1 at once when another process holds it.
lock_acquire() { # <lock-file>
  exec 9<>"$1" || die "cannot open lock file $1"
  flock -n 9 || return 1
  printf '%s\n' "$$" >"$1.pid"
}
