# shellcheck shell=bash
# shellcheck disable=SC2034 # CFG_ERROR, HARNESS_PY and LOOP_FATAL are read by the scripts that source this
# Configuration: defaults, then harness.conf (KEY=VALUE, parsed, never sourced),
# then HARNESS_<KEY> environment variables, then flags. Sourced, not executed.
# Every value lives in CFG[KEY]; where it came from in CFG_SRC[KEY].

declare -gA CFG=() CFG_SRC=() CFG_TYPE=() CFG_SCOPE=()
declare -ga CFG_KEYS=() CLI_FLAGS=() CLI_REST=()
CFG_ERROR=""

# config_define <key> <type> <default> <scope>: one key of lib/config.schema; type is
# int, num, bool or str; scope says who reads it (loop, helpers, sidecar).
config_define() { # <key> <type> <default> <scope>
  CFG_KEYS+=("$1")
  CFG_TYPE[$1]=$2
  CFG[$1]=$3
  CFG_SRC[$1]=default
  CFG_SCOPE[$1]=$4
}

# config_defaults <harness-root>: every key of lib/config.schema at its default.
# The schema is parsed, never sourced: KEY | TYPE | DEFAULT | SCOPE | HELP lines.
config_defaults() { # <harness-root>
  local root=$1 schema="$1/lib/config.schema" key type default scope help n=0
  CFG_KEYS=() CFG=() CFG_SRC=() CFG_TYPE=() CFG_SCOPE=()
  [[ -r "$schema" ]] || { CFG_ERROR="cannot read the configuration schema $schema"; return 1; }
  while IFS='|' read -r key type default scope help || [[ -n "$key" ]]; do
    n=$((n + 1))
    [[ "$key" =~ ^[[:space:]]*(#|$) ]] && continue
    config__trim key type default scope
    if [[ ! "$key" =~ ^[A-Z][A-Z0-9_]*$ || ! "$type" =~ ^(int|num|bool|str)$ || -z "$scope" || -z "$help" ]]; then
      CFG_ERROR="$schema:$n: expected KEY | TYPE | DEFAULT | SCOPE | HELP"
      return 1
    fi
    [[ "$default" != '""' ]] || default=""
    if [[ -n "${CFG_TYPE[$key]+x}" || ! "$scope" =~ ^(loop|helpers|sidecar)$ ]]; then
      CFG_ERROR="$schema:$n: a key twice, or a scope that is not loop, helpers or sidecar"
      return 1
    fi
    config_define "$key" "$type" "${default//\{root\}/"$root"}" "$scope"
  done <"$schema"
}

# config__trim <var>...: strips the spaces around each variable's value.
config__trim() { # <var>...
  local -n _v
  for _v in "$@"; do
    _v=${_v#"${_v%%[![:space:]]*}"}
    _v=${_v%"${_v##*[![:space:]]}"}
  done
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

# The environment variables named HARNESS_* that are not configuration keys: how a
# process runs (tracing, quiet, which config file), not what it does.
CONFIG_PROCESS_VARS=" ROOT DEBUG QUIET CONFIG NO_INOTIFY TEST_CLAUDE PY AUDIT_LOG FIELDS "

# config_load_env: HARNESS_<KEY> for every key, and CLAUDE_BIN itself. An exported
# HARNESS_<NAME> that is neither a key nor one of CONFIG_PROCESS_VARS is an error
# (a typo there would otherwise be ignored without a word).
config_load_env() {
  local var key
  if [[ -n "${CLAUDE_BIN:-}" ]]; then
    config_set CLAUDE_BIN "$CLAUDE_BIN" "env CLAUDE_BIN" || return 1
  fi
  for var in "${!HARNESS_@}"; do
    [[ "${!var@a}" == *x* ]] || continue
    key=${var#HARNESS_}
    if config_is_key "$key"; then
      config_set "$key" "${!var}" "env $var" || return 1
    elif [[ "$CONFIG_PROCESS_VARS" != *" $key "* ]]; then
      CFG_ERROR="unknown configuration key $key (env $var)"
      return 1
    fi
  done
}

# config_load <root> <config-file-or-empty> <flag-assignments...>: the whole chain.
# A missing explicit config file is an error; a missing default harness.conf is not.
# On failure CFG_ERROR says why.
config_load() { # <root> <config-file> [KEY=VALUE from flags...]
  local root=$1 file=$2 kv
  shift 2
  config_defaults "$root" || return 1
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
  if ((CFG[JOBS_MAX] > 0)); then
    if ((CFG[JOBS_MIN] < 1 || CFG[JOBS_MIN] > CFG[JOBS_MAX])); then
      CFG_ERROR="JOBS_MIN must be between 1 and JOBS_MAX (${CFG[JOBS_MAX]}), got ${CFG[JOBS_MIN]}"
      return 1
    fi
    if [[ ! "${CFG[GOVERNOR_STEP_S]}" =~ [1-9] || ! "${CFG[GOVERNOR_WINDOW_S]}" =~ [1-9] ]]; then
      CFG_ERROR="with JOBS_MAX, GOVERNOR_STEP_S and GOVERNOR_WINDOW_S must be above 0"
      return 1
    fi
  fi
  # the store's choices reach every helper (lib/harness/store/__init__.py reads them)
  export HARNESS_STORE="${CFG[STORE]}" HARNESS_DB_LOCK_WAIT_S="${CFG[DB_LOCK_WAIT_S]}"
  export HARNESS_DATABASE_URL="${CFG[DATABASE_URL]}" HARNESS_HOST_NAME="${CFG[HOST_NAME]}"
  export HARNESS_LEASE_S="${CFG[LEASE_S]}" HARNESS_FLEET_JOBS="${CFG[FLEET_JOBS]}"
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
    if [[ $key == SERVE_TOKEN || $key == DATABASE_URL ]] && [[ -n "${CFG[$key]}" ]]; then # a secret: never printed
      printf '%-*s = %-*s # %s\n' "$kw" "$key" "$vw" "(set)" "${CFG_SRC[$key]}"
      continue
    fi
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

# py_again <command> [args...]: py_call for a call that may run twice (an audit
# line, kill.json's create-once, a heartbeat): when the coprocess died during it,
# it is made once more by a helper of its own. The loop then stops as after any
# death of its helper (LOOP_FATAL): it claims nothing more, sees its running
# sessions to their end, and exits 1; the next start reconciles.
py_again() { # <command> [args...]
  local rc=0
  py_call "$@" || rc=$?
  ((rc == 70)) || return "$rc"
  LOOP_FATAL=${LOOP_FATAL:-"the helper process died during '$1'; the next start reconciles"}
  py_call "$@"
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

# py_serve: starts the helpers as one long-lived coprocess (lib/harness/serve/helper.py),
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
