#!/usr/bin/env bats
# scripts/serve.sh: /metrics after a real drain agrees with report.sh; the token;
# METRICS_TEXTFILE rewritten by the sidecar while the loop runs.

setup() {
  load helpers
  sandbox_setup
  SERVE="$HARNESS_ROOT/scripts/serve.sh"
}

teardown() {
  [[ -z "${SERVER_PID:-}" ]] || kill "$SERVER_PID" 2>/dev/null || true
  sandbox_teardown
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

port_open() { # <port>
  python3 -c 'import socket, sys; socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=1).close()' "$1" \
    2>/dev/null
}

# metric <file> <name> [labels]: the sample's value, as prometheus_client's parser reads it
metric() {
  PYTHONPATH="$HARNESS_ROOT/lib" "$HARNESS_ROOT/.venv/bin/python" - "$@" <<'PY'
import sys
from prometheus_client.parser import text_string_to_metric_families

text = open(sys.argv[1]).read()
want = dict(kv.split("=", 1) for kv in sys.argv[3:])
for fam in text_string_to_metric_families(text):
    for s in fam.samples:
        if s.name == sys.argv[2] and s.labels == want:
            print(f"{s.value:g}")
            sys.exit(0)
sys.exit(1)
PY
}

@test "serve.sh: /metrics after a drain agrees with report.sh; it wants its token, and audits a refusal" {
  q add --id a --prompt p >/dev/null
  q add --id b --prompt "[[mock:exit]]" --max-attempts 2 >/dev/null
  q add --id c --prompt p >/dev/null
  run loop --drain
  assert_success
  local port token=tok-0123456789abcdef report
  port=$(free_port)
  HARNESS_SERVE_TOKEN=$token "$SERVE" --state "$STATE" --addr "127.0.0.1:$port" 3>&- &
  SERVER_PID=$!
  wait_for 20 port_open "$port"
  run curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/metrics"
  assert_output 401
  curl -sf -H "Authorization: Bearer $token" "http://127.0.0.1:$port/metrics" >"$T/metrics.txt"
  report=$("$HARNESS_ROOT/scripts/report.sh" --state "$STATE" --json)
  [ "$(metric "$T/metrics.txt" harness_sessions_total verdict=succeeded)" = 2 ]
  [ "$(metric "$T/metrics.txt" harness_sessions_total verdict=crashed)" = 2 ]
  [ "$(metric "$T/metrics.txt" harness_session_wall_seconds_count)" = "$(jq .total.sessions <<<"$report")" ]
  [ "$(metric "$T/metrics.txt" harness_tokens_total kind=input)" = "$(jq .total.tokens.input <<<"$report")" ]
  [ "$(metric "$T/metrics.txt" harness_cost_usd_total)" = "$(jq .total.cost_usd <<<"$report")" ]
  [ "$(metric "$T/metrics.txt" harness_queue_items state=quarantined)" = 1 ]
  [ "$(metric "$T/metrics.txt" harness_breaker_state state=closed)" = 1 ]
  run jq -r 'select(.event == "serve.refused") | [.path, .reason] | join(" ")' "$STATE/events.jsonl"
  assert_output "/metrics no token"
  run grep -c "$token" "$STATE/events.jsonl"
  assert_output 0
}

@test "serve.sh off loopback without a token refuses to start; --textfile writes the metrics once" {
  q add --id a --prompt p >/dev/null
  run "$SERVE" --state "$STATE" --addr 0.0.0.0:8765
  assert_failure 2
  assert_output "harness: serving on 0.0.0.0 (not loopback) needs SERVE_TOKEN; refused"
  run "$SERVE" --state "$STATE" --addr nope
  assert_failure 2
  run "$SERVE" --state "$STATE" --textfile "$T/prom/harness.prom"
  assert_success
  [ "$(metric "$T/prom/harness.prom" harness_queue_items state=pending)" = 1 ]
}

@test "METRICS_TEXTFILE: the sidecar rewrites it while the loop runs" {
  q add --id h --prompt "[[mock:slow]]" >/dev/null
  MOCK_CLAUDE_DELAY_S=3 "$LOOP" --state "$STATE" --drain --set METRICS_TEXTFILE="$T/m/harness.prom" \
    --set METRICS_INTERVAL_S=0.2 3>&- &
  local pid=$!
  wait_for 20 test -s "$T/m/harness.prom"
  wait_for 20 bash -c "grep -q '^harness_running_sessions 1' '$T/m/harness.prom'"
  wait "$pid"
  [ "$(item_state h)" = succeeded ]
}

@test "SERVE_ADDR: the loop starts the server beside itself, and stops it when it ends" {
  q add --id h --prompt "[[mock:slow]]" >/dev/null
  local port
  port=$(free_port)
  MOCK_CLAUDE_DELAY_S=3 "$LOOP" --state "$STATE" --drain --set SERVE_ADDR="127.0.0.1:$port" 3>&- &
  local pid=$!
  wait_for 20 port_open "$port"
  wait_for 20 bash -c "curl -sf http://127.0.0.1:$port/metrics | grep -q '^harness_running_sessions 1'"
  wait "$pid"
  run port_open "$port"
  assert_failure
  [ "$(item_state h)" = succeeded ]
  run audit_events
  assert_line serve.started
  assert_line serve.stopped
}
