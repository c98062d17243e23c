# shellcheck shell=bash
# shellcheck disable=SC2034 # SPAWN_* and CFG_ERROR are read by the callers
# Spawning one agent session: the argv (an array, never a string: the helpers'
# start writes it NUL-separated and the loop reads it with mapfile), and a small
# wrapper that runs the agent in its own process group, detached from the loop,
# and records its exit status. Sourced, not executed.

# spawn_resolve_bin: SPAWN_BIN is CLAUDE_BIN as an absolute path.
spawn_resolve_bin() {
  local bin=${CFG[CLAUDE_BIN]}
  # subst-ok (next 1 line): at start, before the loop's traps
  SPAWN_BIN=$(command -v -- "$bin" 2>/dev/null) || { CFG_ERROR="agent binary not found: $bin (set CLAUDE_BIN)"; return 1; }
  [[ -x "$SPAWN_BIN" ]] || { CFG_ERROR="agent binary is not executable: $SPAWN_BIN"; return 1; }
}

# spawn_agent <session-dir> <workdir> <argv...>: starts the wrapper in a new
# session (setsid) without the loop's lock fd; sets SPAWN_PID to its pid.
spawn_agent() { # <session-dir> <workdir> <argv...>
  local dir=$1
  # shellcheck disable=SC2016 # $1.. are expanded by the child shell, on purpose
  setsid bash -c 'source "$1" && source "${1%/*}/wake.sh" && shift && spawn_wrapper "$@"' harness-wrapper \
    "$HARNESS_ROOT/lib/spawn.sh" "$@" </dev/null >>"$dir/wrapper.log" 2>&1 8>&- 9>&- &
  SPAWN_PID=$!
}

# spawn_wrapper <session-dir> <workdir> <argv...>: runs in the child. The agent
# gets its own process group (set -m), so a stop signal sent to that group never
# reaches this wrapper, which then records the exit status.
spawn_wrapper() { # <session-dir> <workdir> <argv...>
  local dir=$1 workdir=$2 pid rc
  shift 2
  umask 077
  # subst-ok (next 3 lines): the wrapper, a process of its own, traps no signal
  if ! spawn_mark_started "$dir" "$$ $(spawn_proc_start "$$")"; then
    printf 'wrapper %s: the session was abandoned before it started (%s); not starting the agent\n' "$$" \
      "$(cat "$dir/wrapper.pid" 2>/dev/null)"
    return 0
  fi
  if ! cd -- "$workdir"; then
    printf 'cannot enter working directory %s\n' "$workdir" >"$dir/spawn_error"
    spawn__record "$dir" exit_code 126
    wake_loop "${dir%/sessions/*}"
    return 126
  fi
  spawn_private_dirs "$dir" || return 0
  set -m
  # A background job of a non-interactive shell starts with SIGINT and SIGQUIT
  # ignored; the agent must get them with their default meaning, since SIGINT is
  # the first step of every stop (the CLI then writes its result line). The HTTP
  # server's token and the database's URL, when in the environment, are no
  # business of the agent's.
  env --default-signal=INT,QUIT,TERM,PIPE -u HARNESS_SERVE_TOKEN -u HARNESS_DATABASE_URL TMPDIR="$SPAWN_TMP" CLAUDE_CODE_TMPDIR="$SPAWN_TMP" \
    XDG_RUNTIME_DIR="$SPAWN_RUNTIME" "$@" <"$dir/input.txt" >>"$dir/events.jsonl" 2>>"$dir/stderr.log" &
  pid=$!
  # The job has its own process group already; without monitor mode bash prints no
  # "[1]+ Exit 1 env --default-signal=..." line when it ends, and the wait's own
  # stderr takes its "Killed" line: exit_code says how it ended.
  set +m
  spawn__record "$dir" agent.pid "$pid"
  wait "$pid" 2>/dev/null
  rc=$?
  rm -rf -- "$SPAWN_RUNTIME"
  [[ ! -s "$dir/settle.argv" ]] || spawn_sandbox_settle "$dir"
  if [[ $rc == 0 && -s "$dir/verify.argv" && ! -e "$dir/kill.json" ]]; then
    spawn_verify "$dir"
  fi
  spawn__record "$dir" exit_code "$rc"
  wake_loop "${dir%/sessions/*}"
  return 0
}

# spawn_sandbox_settle <session-dir>: after a sandboxed agent (SANDBOX=bwrap): its
# git objects imported into the repository and its branch set to its worktree's
# HEAD (settle.argv, written by the helpers' start: lib/harness/pipeline/sandbox.py),
# before the verify command or anything else reads the branch. Finalize does it
# again when this could not.
spawn_sandbox_settle() { # <session-dir>
  local -a argv
  mapfile -d '' argv <"$1/settle.argv"
  env -u HARNESS_SERVE_TOKEN "${argv[@]}" </dev/null ||
    echo "wrapper $$: the sandbox's git was not settled; finalize tries again"
}

# spawn_verify <session-dir>: the agent exited 0; the verify command (verify.argv,
# written by the helpers' start: timeout(1) around `bash -c CMD`) runs in the
# worktree, in a process group of its own that a stop signals (verify.pid), with
# its output in verify.log and its exit status in verify_exit. The exit status of
# the session (exit_code) is written after it: until then the session is live, in
# its "verifying" phase.
spawn_verify() { # <session-dir>
  local dir=$1 pid rc
  local -a argv
  mapfile -d '' argv <"$dir/verify.argv"
  set -m
  env --default-signal=INT,QUIT,TERM,PIPE -u HARNESS_SERVE_TOKEN -u HARNESS_DATABASE_URL TMPDIR="$SPAWN_TMP" "${argv[@]}" </dev/null >"$dir/verify.log" 2>&1 &
  pid=$!
  set +m
  spawn__record "$dir" verify.pid "$pid"
  wake_loop "${dir%/sessions/*}"
  wait "$pid" 2>/dev/null
  rc=$?
  spawn__record "$dir" verify_exit "$rc"
}

# spawn_private_dirs <session-dir>: the agent's temporary files stay in state/: TMPDIR
# (and CLAUDE_CODE_TMPDIR, which the CLI prefers) is the session's tmp/;
# XDG_RUNTIME_DIR, where the CLI puts its messaging socket, is state/run/<12 hex of
# the session>, short enough for a socket path (the CLI falls back to /tmp past 103
# bytes), private to the session and removed when the agent exits. Sets SPAWN_TMP
# and SPAWN_RUNTIME; on failure records spawn_error and the exit status.
spawn_private_dirs() { # <session-dir>
  local dir=$1 uuid=${1##*/ses_} state=${1%/sessions/*}
  SPAWN_TMP="$dir/tmp" SPAWN_RUNTIME="$state/run/${uuid:0:12}"
  if ! mkdir -p -- "$SPAWN_TMP" "$SPAWN_RUNTIME"; then # 0700: the wrapper runs under umask 077
    printf 'cannot create the session'"'"'s private directories %s and %s\n' "$SPAWN_TMP" "$SPAWN_RUNTIME" \
      >"$dir/spawn_error"
    spawn__record "$dir" exit_code 126
    wake_loop "$state"
    return 1
  fi
  if ((${#SPAWN_RUNTIME} > 81)); then
    printf 'warning: %s is %d bytes long; the CLI will put its socket under /tmp\n' "$SPAWN_RUNTIME" \
      "${#SPAWN_RUNTIME}" >&2
  fi
}

# spawn_proc_start <pid> [var]: the process's start time (clock ticks since boot),
# to tell a live process from a later one that reused its pid; into var (no fork)
# or printed. Fails when the process is gone.
spawn_proc_start() { # <pid> [var]
  local stat=""
  local -a f
  read -r stat 2>/dev/null <"/proc/$1/stat" || return 1
  stat=${stat##*) }
  read -r -a f <<<"$stat"
  if [[ -n "${2:-}" ]]; then printf -v "$2" '%s' "${f[19]}"; else printf '%s\n' "${f[19]}"; fi
}

# spawn_mark_started <session-dir> <content>: creates wrapper.pid, never replacing
# it (link(2)). The wrapper writes its pid there before it starts the agent; the
# next loop's reconcile writes "abandoned" there for a session that never started.
# Whoever creates it first decides, so a session is never both requeued and run.
spawn_mark_started() { # <session-dir> <content>
  local tmp="$1/.wrapper.pid.$$"
  printf '%s\n' "$2" >"$tmp" || return 1
  if ln "$tmp" "$1/wrapper.pid" 2>/dev/null; then
    rm -f "$tmp"
    return 0
  fi
  rm -f "$tmp"
  return 1
}

spawn__record() { # <dir> <name> <value>
  printf '%s\n' "$3" >"$1/.$2.tmp" && mv -f "$1/.$2.tmp" "$1/$2"
}
