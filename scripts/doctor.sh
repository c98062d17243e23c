#!/usr/bin/env bash
# Summary: Checks everything a first run needs, and says how to fix each gap.
# Usage: doctor.sh [--state DIR] [--config FILE] [--json]
#
# Checks bash and Python and their versions, the Python packages, git, jq and
# util-linux, the claude CLI and whether its version is in the tested range,
# credentials (where they come from, never what they are), the state directory's
# owner and mode, free disk, REPO_DIR and BASE_REF, the store (with STORE=postgres:
# the database reachable, and this host's clock against it), SANDBOX=bwrap (bwrap makes a
# sandbox here) and SKIP_PERMISSIONS without one.
# Each check is ok, WARN (works, but look) or FAIL (with a fix).
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

main() {
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
    "${CLI_FLAGS[@]}"
}

main "$@"
