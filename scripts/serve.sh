#!/usr/bin/env bash
# Summary: Serves the web dashboard, Prometheus metrics and the live event feed over HTTP (loopback unless SERVE_TOKEN is set), or writes the metrics for node_exporter.
# Usage: serve.sh [--state DIR] [--config FILE] [--addr HOST:PORT] [--textfile PATH]
#
#   --addr HOST:PORT   where to listen (default SERVE_ADDR, else 127.0.0.1:8765); any address
#                      that is not loopback needs SERVE_TOKEN (the server refuses to start)
#   --textfile PATH    write the metrics once to PATH (node_exporter's textfile collector,
#                      atomically) and exit, instead of serving
#
# Routes: / (the dashboard; /session/ID a session's live transcript and receipt),
# /metrics (Prometheus text format), /events (the audit log as server-sent events;
# Last-Event-ID resumes; a client that falls behind is dropped), /healthz.
# With SERVE_TOKEN set (as HARNESS_SERVE_TOKEN in the environment, or in
# harness.conf; never on the command line) every request needs "Authorization:
# Bearer <token>" or the cookie /login gives a browser; one without it is refused
# (401; a browser is sent to /login) and audited. The dashboard's actions (pause,
# resume, retry, cancel) need the token: a server without one takes none. Stops on SIGINT or
# SIGTERM. Exit codes: 0 done, 1 fatal error, 2 bad usage or a refused configuration.
set -euo pipefail

HARNESS_ROOT=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=lib/log.sh
source "$HARNESS_ROOT/lib/log.sh"
# shellcheck source=lib/config.sh
source "$HARNESS_ROOT/lib/config.sh"
# shellcheck source=lib/resilience.sh
source "$HARNESS_ROOT/lib/resilience.sh"

main() {
  local -a pre=() args=()
  local addr="" textfile=""
  while (($#)); do
    case "$1" in
      -h | --help) pre+=("$1") ;;
      --state | --config)
        [[ -n "${2:-}" ]] || usage_error "$1 needs a value"
        pre+=("$1" "$2"); shift ;;
      --addr) [[ -n "${2:-}" ]] || usage_error "--addr needs HOST:PORT"; addr=$2; shift ;;
      --textfile) [[ -n "${2:-}" ]] || usage_error "--textfile needs a path"; textfile=$2; shift ;;
      *) usage_error "unknown argument: $1 (see --help)" ;;
    esac
    shift
  done
  config_cli "${BASH_SOURCE[0]}" "" "${pre[@]}" serve
  config_python "$HARNESS_ROOT" || die "$CFG_ERROR"
  resilience_init
  [[ -d "${CFG[STATE_DIR]}" ]] || die "no state directory at ${CFG[STATE_DIR]} (wrong --state?)" "$EXIT_USAGE"
  if [[ -n "$textfile" ]]; then
    args=(--textfile "$textfile")
  else
    args=(--addr "${addr:-${CFG[SERVE_ADDR]:-127.0.0.1:8765}}" --heartbeat-s "${CFG[HEARTBEAT_S]}"
      "${RES_POLICY_ARGS[@]}")
  fi
  # the token reaches the server through its environment only
  HARNESS_SERVE_TOKEN="${CFG[SERVE_TOKEN]}" PYTHONPATH="$HARNESS_ROOT/lib" exec "$HARNESS_PY" -m harness http \
    --state-dir "${CFG[STATE_DIR]}" "${args[@]}"
}

main "$@"
