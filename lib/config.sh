# shellcheck shell=bash
# shellcheck disable=SC2034 # CFG_ERROR and HARNESS_PY are read by the scripts that source this
# Configuration: defaults, then harness.conf (KEY=VALUE, parsed, never sourced),
# then HARNESS_<KEY> environment variables, then flags. Sourced, not executed.
# Every value lives in CFG[KEY]; where it came from in CFG_SRC[KEY].

declare -gA CFG=() CFG_SRC=() CFG_TYPE=()
declare -ga CFG_KEYS=() CLI_FLAGS=() CLI_REST=()
CFG_ERROR=""

# config_define <key> <type> <default> <help>: type is int, num, bool or str; the
# help text is for readers here and in docs/configuration.md.
config_define() { # <key> <type> <default> <help>
  CFG_KEYS+=("$1")
  CFG_TYPE[$1]=$2
  CFG[$1]=$3
  CFG_SRC[$1]=default
}

config_defaults() { # <harness-root>
  local root=$1
  CFG_KEYS=()
  config_define CLAUDE_BIN str claude "agent binary (name on PATH or path); env CLAUDE_BIN also works; left at its default with no claude on PATH: the one 'make setup' installed in .tools/claude"
  config_define STATE_DIR str "$root/state" "runtime data: queue, sessions, audit log"
  config_define REPO_DIR str "" "git repository the sessions work on (a worktree each); empty: plain directories"
  config_define BASE_REF str HEAD "what each session's branch starts from"
  config_define WORKTREE_MAX_AGE_DAYS num 14 "kept worktrees (failed sessions) older than this are pruned by the loop; 0: never"
  config_define BOOTSTRAP str "$root/bootstrap/default.md" "prompt template appended to the system prompt"
  config_define MAX_TURNS int 50 "--max-turns for each session (an item may lower or raise it)"
  config_define MAX_BUDGET_USD num 5 "--max-budget-usd for each session; 0: no limit"
  config_define MODEL str "" "--model; empty: the CLI's default"
  config_define ALLOWED_TOOLS str "" "--allowedTools, e.g. 'Bash,Read,Write,Edit'; empty: none pre-approved"
  config_define PERMISSION_MODE str "" "--permission-mode (default, acceptEdits, plan, bypassPermissions)"
  config_define SKIP_PERMISSIONS bool false "pass --dangerously-skip-permissions (sandboxes only)"
  config_define MAX_ATTEMPTS int 3 "sessions an item may use before it is quarantined"
  config_define RETRY_BASE_S num 30 "first retry delay; doubles each attempt (full jitter)"
  config_define RETRY_CAP_S num 1800 "longest retry delay"
  config_define USAGE_PAUSE_S num 300 "pause after a usage limit that names no reset time"
  config_define PAUSE_JITTER_S num 60 "a usage-limit pause ends this much (at random, at most) after the reset time"
  config_define CIRCUIT_FAILURES int 3 "API-level failures in a row that open the circuit breaker; 0: off"
  config_define CIRCUIT_WINDOW int 10 "the breaker's window: the failure rate is checked once this many outcomes are in it; 0: off"
  config_define CIRCUIT_FAILURE_RATE num 0.5 "the failure rate over a full window that opens the breaker"
  config_define CIRCUIT_OPEN_S num 60 "how long the breaker stays open the first time; doubles after each failed probe"
  config_define CIRCUIT_OPEN_CAP_S num 1800 "longest open time"
  config_define CIRCUIT_STORM_RETRIES int 5 "API retries in a row inside one live session that count as a failure before it ends; 0: off"
  config_define MIN_FREE_MB num 100 "no claims while the state directory's file system has less free space; 0: no check"
  config_define SESSION_TIMEOUT_S num 3600 "wall-clock limit for one session; 0: none"
  config_define STALL_TIMEOUT_S num 300 "a session silent this long outside a tool call is stalled and stopped (item: stall_timeout_s)"
  config_define TOOL_TIMEOUT_S num 660 "a tool call silent this long is stalled; a Bash call with its own timeout gets that plus STALL_TIMEOUT_S (item: tool_timeout_s)"
  config_define HEARTBEAT_S num 2 "how often heartbeat.json files are rewritten (and at every turn)"
  config_define MONITOR_POLL_S num 0.05 "the sidecar's poll interval for busy sessions, or for all when inotify is unavailable"
  config_define KILL_GRACE_S num 10 "seconds between SIGINT, SIGTERM and SIGKILL when stopping a session"
  config_define SHUTDOWN_GRACE_S num 60 "after SIGINT/SIGTERM/STOP: how long running sessions may go on before they are stopped"
  config_define POLL_INTERVAL_S num 0.2 "how often running sessions are checked (an ended session wakes the loop at once)"
  config_define IDLE_POLL_S num 5 "how often an idle loop looks at the queue (queue.sh add and loopctl.sh wake it at once)"
  config_define DRAIN_MAX_WAIT_S num 300 "--drain waits for a retry that comes due within this many seconds; items held longer (a later retry, a pause, the breaker) are left, and it says how many and until when"
  config_define AGENT_VERSION_TIMEOUT_S num 10 "how long the agent's --version may take when the loop starts; past it the version is said as unknown; 0: not asked"
  config_define JOBS int 1 "sessions at once"
  config_define SPAWN_DELAY_S num 0 "at least this long between two spawns (spreads the CLI's start-up cost)"
  config_define MAX_LOAD num 0 "no claims while the 1-minute load average per core is above this; 0: no check"
  config_define MIN_FREE_MEM_MB num 0 "no claims while MemAvailable is below this; 0: no check"
  config_define AGING_S num 3600 "a pending item rises one priority level for each AGING_S it has waited; 0: no aging"
  config_define PYTHON str "" "python with orjson for the helpers; empty: .venv/bin/python, else python3"
}

config_is_key() { # <key>
  [[ -n "${CFG_TYPE[$1]+x}" ]]
}

# config_set <key> <value> <source>: validates and stores one value.
config_set() { # <key> <value> <source>
  local key=$1 value=$2 src=$3
  config_is_key "$key" || { CFG_ERROR="unknown configuration key $key ($src)"; return 1; }
  case "${CFG_TYPE[$key]}" in
    int) [[ "$value" =~ ^[0-9]+$ ]] || { CFG_ERROR="$key must be a whole number, got \"$value\" ($src)"; return 1; } ;;
    num) [[ "$value" =~ ^[0-9]+([.][0-9]+)?$ ]] || { CFG_ERROR="$key must be a number, got \"$value\" ($src)"; return 1; } ;;
    bool)
      case "${value,,}" in
        1 | true | yes | on) value=true ;;
        0 | false | no | off | "") value=false ;;
        *) CFG_ERROR="$key must be true or false, got \"$value\" ($src)"; return 1 ;;
      esac
      ;;
  esac
  CFG[$key]=$value
  CFG_SRC[$key]=$src
}

# config_load_file <path>: KEY=VALUE lines; '#' comments and blank lines skipped;
# one pair of matching quotes around a value is removed; nothing is expanded.
config_load_file() { # <path>
  local file=$1 line key value n=0
  [[ -r "$file" ]] || { CFG_ERROR="cannot read config file $file"; return 1; }
  while IFS= read -r line || [[ -n "$line" ]]; do
    n=$((n + 1))
    line=${line%$'\r'}
    [[ "$line" =~ ^[[:space:]]*(#|$) ]] && continue
    if [[ ! "$line" =~ ^[[:space:]]*([A-Z_][A-Z0-9_]*)[[:space:]]*=(.*)$ ]]; then
      CFG_ERROR="$file:$n: expected KEY=VALUE"
      return 1
    fi
    key=${BASH_REMATCH[1]}
    value=${BASH_REMATCH[2]}
    value=${value#"${value%%[![:space:]]*}"}
    value=${value%"${value##*[![:space:]]}"}
    if [[ "$value" =~ ^\"(.*)\"$ || "$value" =~ ^\'(.*)\'$ ]]; then
      value=${BASH_REMATCH[1]}
    fi
    config_set "$key" "$value" "$file:$n" || return 1
  done <"$file"
}

# config_load_env: HARNESS_<KEY> for every key, and CLAUDE_BIN itself.
config_load_env() {
  local key var
  if [[ -n "${CLAUDE_BIN:-}" ]]; then
    config_set CLAUDE_BIN "$CLAUDE_BIN" "env CLAUDE_BIN" || return 1
  fi
  for key in "${CFG_KEYS[@]}"; do
    var="HARNESS_$key"
    if [[ -n "${!var+x}" ]]; then
      config_set "$key" "${!var}" "env $var" || return 1
    fi
  done
}

# config_load <root> <config-file-or-empty> <flag-assignments...>: the whole chain.
# A missing explicit config file is an error; a missing default harness.conf is not.
# On failure CFG_ERROR says why.
config_load() { # <root> <config-file> [KEY=VALUE from flags...]
  local root=$1 file=$2 kv
  shift 2
  config_defaults "$root"
  if [[ -n "$file" ]]; then
    config_load_file "$file" || return 1
  elif [[ -f "$root/harness.conf" ]]; then
    config_load_file "$root/harness.conf" || return 1
  fi
  config_load_env || return 1
  for kv in "$@"; do
    [[ "$kv" == *=* ]] || { CFG_ERROR="expected KEY=VALUE, got \"$kv\" (flag)"; return 1; }
    config_set "${kv%%=*}" "${kv#*=}" "flag" || return 1
  done
  config_agent_default "$root"
}

# config_agent_default <root>: CLAUDE_BIN left at its default names the claude on
# PATH; without one, the CLI that `make setup` installed under .tools/claude. Its
# source (--print-config) says which.
config_agent_default() { # <root>
  local setup="$1/.tools/claude/node_modules/.bin/claude" found=""
  [[ "${CFG_SRC[CLAUDE_BIN]}" == default ]] || return 0
  if log_capture found type -P -- "${CFG[CLAUDE_BIN]}"; then
    CFG_SRC[CLAUDE_BIN]="default (on PATH: $found)"
  elif [[ -x "$setup" ]]; then
    CFG[CLAUDE_BIN]=$setup
    CFG_SRC[CLAUDE_BIN]="make setup (no ${CFG[CLAUDE_BIN]##*/} on PATH)"
  else
    CFG_SRC[CLAUDE_BIN]="default (not on PATH; run 'make setup' or set CLAUDE_BIN)"
  fi
}

# config_print: every value and where it came from, in columns as wide as the
# longest key and the longest value.
config_print() {
  local key kw=0 vw=0
  for key in "${CFG_KEYS[@]}"; do
    ((${#key} <= kw)) || kw=${#key}
    ((${#CFG[$key]} <= vw)) || vw=${#CFG[$key]}
  done
  for key in "${CFG_KEYS[@]}"; do
    printf '%-*s = %-*s # %s\n' "$kw" "$key" "$vw" "${CFG[$key]}" "${CFG_SRC[$key]}"
  done
}

# config_cli <script> <flags> <args...>: the start every script shares: tracing
# (HARNESS_DEBUG=1), umask 077, the leading options (--state DIR, --config FILE,
# -h/--help) plus the script's own switches, given as a space-separated list
# (e.g. "--no-color"); then the configuration, loaded (a bad one is exit 2). Sets
# CLI_FLAGS (the switches seen) and CLI_REST (the command and its arguments).
config_cli() { # <script> <flags> <args...>
  local script=$1 flags=" $2 " config=""
  local -a sets=()
  shift 2
  log_debug_init
  umask 077
  CLI_FLAGS=() CLI_REST=()
  while (($#)); do
    case "$1" in
      -h | --help) log_help "$script"; exit 0 ;;
      --state) [[ -n "${2:-}" ]] || usage_error "--state needs a directory"; sets+=("STATE_DIR=$2"); shift ;;
      --config) [[ -n "${2:-}" ]] || usage_error "--config needs a file"; config=$2; shift ;;
      -*) [[ "$flags" == *" $1 "* ]] || usage_error "unknown option: $1 (see --help)"; CLI_FLAGS+=("$1") ;;
      *) break ;;
    esac
    shift
  done
  CLI_REST=("$@")
  ((${#CLI_REST[@]})) || { log_help "$script" >&2; exit "$EXIT_USAGE"; }
  config_load "$HARNESS_ROOT" "${config:-${HARNESS_CONFIG:-}}" "${sets[@]}" || die "$CFG_ERROR" "$EXIT_USAGE"
}

# config_python <root> [quick]: picks the interpreter for the helpers (PYTHON, then
# the project's .venv, then python3) and checks that it can import them; "quick"
# skips that check (an interactive command that fails loudly anyway, and whose
# start-up time counts).
config_python() { # <root> [quick]
  local root=$1 py=${CFG[PYTHON]}
  if [[ -z "$py" ]]; then
    if [[ -x "$root/.venv/bin/python" ]]; then py="$root/.venv/bin/python"; else py=python3; fi
  fi
  command -v "$py" >/dev/null 2>&1 || { CFG_ERROR="python not found: $py (run 'make setup')"; return 1; }
  if [[ "${2:-}" != quick ]] && ! PYTHONPATH="$root/lib" "$py" -c 'import orjson, harness' >/dev/null 2>&1; then
    CFG_ERROR="$py cannot import orjson and the harness helpers (run 'make setup')"
    return 1
  fi
  HARNESS_PY=$py
}

# py <command> [args...]: runs one helper command of lib/harness.
py() { # <command> [args...]
  PYTHONPATH="$HARNESS_ROOT/lib" "$HARNESS_PY" -m harness "$@"
}

# config_verb_help <script> <command> [args...]: when the command's arguments hold
# -h or --help, prints that command's usage (from the script's help block) and
# exits 0, before any state is looked at.
config_verb_help() { # <script> <command> [args...]
  local arg
  for arg in "${@:3}"; do
    [[ "$arg" == -h || "$arg" == --help ]] || continue
    config_python "$HARNESS_ROOT" quick || die "$CFG_ERROR"
    py usage --script "$1" "$2"
    exit 0
  done
}

# py_serve: starts the helpers as one long-lived coprocess (lib/harness/serve.py),
# which saves the interpreter's start-up on every call. Its pipes are
# close-on-exec, so no other child holds them; it leaves when the loop is gone.
py_serve() {
  coproc PYSRV { PYTHONPATH="$HARNESS_ROOT/lib" exec "$HARNESS_PY" -m harness serve 8>&-; }
  PY_SERVER=$PYSRV_PID
}

# py_call <command> [args...]: runs a helper command through the coprocess (or on
# its own without one); its output in PY_OUT, its exit code returned. A coprocess
# that dies during a request is not asked again, and the request is not repeated
# (a claim may already have happened): the call fails with 70 and the caller
# stops the loop, whose next start reconciles.
py_call() { # <command> [args...]
  local rc n wfd rfd
  if [[ -z "${PY_SERVER:-}" ]]; then
    log_capture PY_OUT py "$@" && return 0 || return $?
  fi
  wfd=${PYSRV[1]:-} rfd=${PYSRV[0]:-}
  if [[ -n "$wfd" ]] && printf '%s\0' "$#" "$@" 2>/dev/null 1>&"$wfd" && read -r rc n 0<&"$rfd" &&
    LC_ALL=C IFS= read -r -N "$n" PY_OUT 0<&"$rfd"; then
    PY_OUT=${PY_OUT%$'\n'}
    return "$rc"
  fi
  warn "the helper process ($PY_SERVER) died during '$1'; no more requests go to it"
  PY_SERVER=""
  PY_OUT=""
  return 70
}
