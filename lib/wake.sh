# shellcheck shell=bash
# shellcheck disable=SC2034 # WAKE_WOKEN is read by loop.sh
# state/loop.wake: a FIFO that a running loop sleeps on (wake_sleep reads it with
# a timeout) and that anyone may write a byte into to wake it at once: a session's
# wrapper when its agent has exited, the loop's own signal traps, queue.sh and
# loopctl.sh after a change. Without a loop holding it open, the byte is dropped.
# Sourced, not executed.
#
# Why not `wait -n`: bash 5.2's `wait -n` can block for good when a trapped signal
# arrives just as the child it waits for ends while other children (the sidecar,
# the agents) live on; the loop then neither wakes nor stops. `read -t` on a FIFO
# has no such race, costs no fork, and a trap handler can wake it with one byte.

# The loop holds the FIFO on descriptor 8; long-lived children are started with
# 8>&- (as with the lock's 9>&-).

# wake_open <state-dir>: (the loop, under its lock) makes the FIFO and holds it
# open read-write, so that neither side's open ever blocks.
wake_open() { # <state-dir>
  local fifo="$1/loop.wake"
  if [[ -e "$fifo" && ! -p "$fifo" ]]; then rm -f -- "$fifo" || return 1; fi
  if [[ ! -p "$fifo" ]]; then mkfifo -m 600 -- "$fifo" || return 1; fi
  exec 8<>"$fifo" || return 1
  WAKE_OPEN=1
}

# wake_sleep <seconds>: until the time is up or a byte arrives (one byte per call;
# more pending bytes just make the next calls return at once). WAKE_WOKEN is 1
# when a byte came.
wake_sleep() { # <seconds>
  local _
  WAKE_WOKEN=0
  if [[ "${WAKE_OPEN:-0}" == 1 ]]; then
    if read -r -t "$1" -N 1 -u 8 _; then WAKE_WOKEN=1; fi
  else
    sleep "$1"
  fi
}

# wake_self: from the loop's signal traps (the trap runs while read waits).
wake_self() {
  [[ "${WAKE_OPEN:-0}" == 1 ]] || return 0
  { printf x >&8; } 2>/dev/null || true
}

# wake_loop <state-dir>: wakes the loop on that state directory, if one runs.
# Never blocks (a FIFO opened read-write), never fails.
wake_loop() { # <state-dir>
  local fifo="$1/loop.wake"
  [[ -p "$fifo" ]] || return 0
  { printf x 1<>"$fifo"; } 2>/dev/null || true
}
