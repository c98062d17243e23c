#!/usr/bin/env bash
# Summary: Checks everything a first run needs, and says how to fix each gap.
# Usage: doctor.sh [--state DIR] [--config FILE] [--user NAME] [--env-file FILE] [--json]
#
# Checks bash and Python and their versions, the Python packages, git, jq and
# util-linux, the claude CLI and whether its version is in the tested range,
# credentials (where they come from, never what they are), the state directory's
# owner and mode, free disk, REPO_DIR and BASE_REF, the store (with STORE=postgres:
# the database reachable, and this host's clock against it), SANDBOX=bwrap (bwrap makes a
# sandbox here) and SKIP_PERMISSIONS without one.
# Each check is ok, WARN (works, but look) or FAIL (with a fix).
#   --user NAME      check for the loop's user (the unit's User=): the state directory's
#                    owner, git's ownership check on REPO_DIR (as NAME, through runuser when
#                    run as root), the credentials in NAME's home
#   --env-file FILE  the unit's EnvironmentFile (KEY=VALUE lines, read, never sourced):
#                    HARNESS_DATABASE_URL, ANTHROPIC_API_KEY and the like, as the loop gets them
#   --json   {"ok": bool, "checks": [{"name", "status", "detail", "fix"}]}
# Exit codes: 0 every check passes (warnings allowed), 1 a check failed, 2 bad usage.
set -euo pipefail

HARNESS_ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=lib/log.sh
source "$HARNESS_ROOT/lib/log.sh"
# shellcheck source=lib/config.sh
source "$HARNESS_ROOT/lib/config.sh"

# early_fail <name> <detail> <fix>: a check that fails before Python can run the others.
early_fail() { # <name> <detail> <fix>
  if [[ " ${CLI_FLAGS[*]} " == *" --json "* ]]; then
    local esc=()
    local s
    for s in "$@"; do
      s=${s//\\/\\\\}
      esc+=("${s//\"/\\\"}")
    done
    printf '{"ok": false, "checks": [{"name": "%s", "status": "fail", "detail": "%s", "fix": "%s"}]}\n' "${esc[@]}"
  else
    printf 'FAIL  %s: %s\n      fix: %s\n1 check(s) failed (the others need it)\n' "$@"
  fi
  exit 1
}

# doctor_env_file <file>: its KEY=VALUE lines exported, as systemd's EnvironmentFile
# reads them (comments and blank lines skipped, one pair of surrounding quotes taken
# off); parsed, never sourced.
doctor_env_file() { # <file>
  local line key value n=0
  [[ -r "$1" ]] || usage_error "--env-file: cannot read $1"
  while IFS= read -r line || [[ -n "$line" ]]; do
    n=$((n + 1))
    [[ "$line" =~ ^[[:space:]]*(#|$) ]] && continue
    # the line itself is never shown: it may hold a secret
    [[ "$line" =~ ^[[:space:]]*([A-Za-z_][A-Za-z0-9_]*)=(.*)$ ]] || usage_error "--env-file $1: line $n is not KEY=VALUE"
    key=${BASH_REMATCH[1]} value=${BASH_REMATCH[2]}
    if [[ "$value" =~ ^\"(.*)\"$ || "$value" =~ ^\'(.*)\'$ ]]; then value=${BASH_REMATCH[1]}; fi
    export "$key=$value"
  done <"$1"
}

main() {
  local user="" arg
  local -a rest=()
  # --user and --env-file first: the environment file's values are the configuration's too
  while (($#)); do
    arg=$1
    case "$arg" in
      --user) user=${2:?--user needs a name}; shift ;;
      --env-file) doctor_env_file "${2:?--env-file needs a file}"; shift ;;
      *) rest+=("$arg") ;;
    esac
    shift
  done
  set -- "${rest[@]}"
  config_cli "${BASH_SOURCE[0]}" "--json" "$@" check
  set -- "${CLI_REST[@]}"
  [[ "$*" == check ]] || usage_error "unexpected argument: $1 (see --help)"
  ((BASH_VERSINFO[0] > 4 || (BASH_VERSINFO[0] == 4 && BASH_VERSINFO[1] >= 4))) ||
    early_fail bash "bash $BASH_VERSION" "install bash 4.4 or newer"
  config_python "$HARNESS_ROOT" || early_fail python "$CFG_ERROR" "make setup (Python 3.11 or newer, and the packages of requirements.txt)"
  local key
  local -a cfg=()
  # DATABASE_URL reaches Python through the environment (HARNESS_DATABASE_URL), never argv
  for key in STATE_DIR STORE REPO_DIR BASE_REF MIN_FREE_MB CLAUDE_BIN LEASE_S SKIP_PERMISSIONS PERMISSION_MODE SANDBOX; do
    cfg+=(--cfg "$key=${CFG[$key]}")
  done
  PYTHONPATH="$HARNESS_ROOT/lib" exec "$HARNESS_PY" -m harness doctor --bash-version "$BASH_VERSION" "${cfg[@]}" \
    --user "$user" "${CLI_FLAGS[@]}"
}

main "$@"
