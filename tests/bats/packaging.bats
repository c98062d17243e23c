#!/usr/bin/env bats
# Running as a service: systemd's notify protocol against a socket the test
# listens on, the units as systemd-analyze verifies them, install and uninstall.

load helpers

setup() { sandbox_setup; }
teardown() { sandbox_teardown; }

# notify_start: a listener on $T/notify.sock writing $T/notify.log (one JSON line a datagram).
notify_start() {
  notify-listener "$T/notify.sock" "$T/notify.log" &
  wait_for 10 test -s "$T/notify.log"
}

# notified <field>: how many datagrams held that field (a KEY=VALUE line, or a KEY= prefix).
notified() { jq -c --arg f "$1" 'select(any(.fields[]; startswith($f)))' "$T/notify.log" | wc -l; }
notified_at_least() { (($(notified "$1") >= $2)); } # <field> <n>

@test "under systemd: READY=1 with MAINPID, STATUS with live counts, WATCHDOG=1 from the main loop idle or busy, STOPPING=1; agents never see the socket" {
  notify_start
  # an idle loop sleeps IDLE_POLL_S (10 s here); the watchdog (3 s) still gets a ping every second
  NOTIFY_SOCKET="$T/notify.sock" WATCHDOG_USEC=3000000 "$LOOP" --state "$STATE" \
    --set IDLE_POLL_S=10 --set SHUTDOWN_GRACE_S=0.5 3>&- &
  local pid=$!
  wait_for 15 notified_at_least READY=1 1
  jq -e --arg pid "$pid" 'select(any(.fields[]; . == "READY=1")) | .fields | index("MAINPID=" + $pid) != null' \
    "$T/notify.log"
  wait_for 15 notified_at_least WATCHDOG=1 4
  q add --id h --prompt "[[mock:hang]]" >/dev/null # queue.sh add wakes the loop
  wait_for 15 test -s "$MOCK_CLAUDE_LOG"
  wait_for 15 grep -q 'STATUS=1 of 1 sessions running, 1 started' "$T/notify.log"
  kill -TERM "$pid"
  local rc=0
  wait "$pid" || rc=$?
  [ "$rc" = 143 ]
  [ "$(notified STOPPING=1)" = 1 ]
  # every watchdog ping came within the watchdog's interval of the one before (READY starts it)
  jq -s '[.[] | select(any(.fields[]; . == "READY=1" or . == "WATCHDOG=1")) | .t]
         | [range(1; length) as $i | .[$i] - .[$i - 1]] | max' "$T/notify.log" >"$T/gap"
  awk '{ exit !($1 < 3.0) }' "$T/gap"
  [ "$(jq -r .notify_socket "$MOCK_CLAUDE_LOG")" = null ]
}

@test "a drain run's end says STOPPING=1; without NOTIFY_SOCKET the loop says nothing of systemd" {
  notify_start
  q add --id a --prompt p >/dev/null
  NOTIFY_SOCKET="$T/notify.sock" run loop --drain
  assert_success
  [ "$(notified READY=1) $(notified STOPPING=1)" = "1 1" ]
  [ "$(jq -c 'select(any(.fields[]; . == "STOPPING=1")) | .fields' "$T/notify.log")" = \
    '["STOPPING=1","STATUS=0 of 1 sessions running, 1 started; stopping (drained)"]' ]
  rm -rf "$STATE"
  q add --id a --prompt p >/dev/null
  run loop --drain
  assert_success
  refute_output --partial notify
  run grep -c notify "$STATE/events.jsonl"
  [ "$output" = 0 ]
}

@test "a notify socket that is gone: one warning and one audit line, and the loop goes on" {
  q add --id a --prompt p >/dev/null
  HARNESS_QUIET=0 NOTIFY_SOCKET="$T/nobody.sock" run loop --drain
  assert_success
  assert_output --partial "cannot notify systemd at $T/nobody.sock (READY): [Errno 2] No such file or directory"
  [ "$(grep -c 'cannot notify systemd' <<<"$output")" = 1 ]
  [ "$(item_state a)" = succeeded ]
  [ "$(jq -c 'select(.event == "loop.notify_failed") | .message' "$STATE/events.jsonl")" = '"READY"' ]
}

@test "make install: the harness with its venv and pinned CLI, a 0700 state directory, a commented harness.conf, units systemd-analyze verifies, a logrotate file; the installed loop runs; make uninstall keeps the state" {
  command -v systemd-analyze >/dev/null || skip "systemd-analyze is not installed (Debian: systemd)"
  local p="$T/opt" etc="$T/etc" var="$T/var/harness" units="$T/units" lr="$T/logrotate"
  git_repo "$T/repo"
  run make -C "$HARNESS_ROOT" --no-print-directory install PREFIX="$p" \
    INSTALL_ARGS="--state-dir $var --config-dir $etc --unit-dir $units --logrotate-dir $lr --repo $T/repo --user $(id -un)"
  assert_success
  assert_output --partial "install: done"
  [ -x "$p/loop.sh" ] && [ -x "$p/.venv/bin/python" ] && [ ! -e "$p/tests" ]
  "$p/.venv/bin/python" -c 'import orjson, watchdog, starlette, uvicorn, prometheus_client, psycopg'
  run "$p/.tools/claude/node_modules/.bin/claude" --version
  assert_output --partial "$(sed -n 's/^CLAUDE_CODE_PINNED := //p' "$HARNESS_ROOT/Makefile")"
  [ "$(stat -c %a "$var")" = 700 ]
  [ "$(stat -c %a "$etc/harness.conf")" = 640 ]
  # every line a comment or blank but the keys given
  [ "$(grep -v '^#' "$etc/harness.conf" | grep -v '^$' | sort | tr '\n' ' ')" = "REPO_DIR=$T/repo STATE_DIR=$var " ]
  grep -qx '# JOBS=1' "$etc/harness.conf"
  # the units, as systemd reads them
  grep -qx "ExecStart=$p/loop.sh --config $etc/harness.conf" "$units/harness.service"
  local home
  home=$(getent passwd "$(id -un)" | cut -d: -f6)
  grep -qx "ReadWritePaths=$var $T/repo -$home/.claude -$home/.claude.json -$home/.cache -$home/.config" \
    "$units/harness.service"
  run systemd-analyze verify "$units/harness.service" "$units/harness-drain.service" "$units/harness-drain.timer"
  assert_success
  refute_output
  ! grep -q @ "$units/harness.service" "$lr/harness"
  # the installed loop, with the installed configuration
  "$HARNESS_ROOT/scripts/queue.sh" --state "$var" add --id a --prompt p >/dev/null
  run "$p/loop.sh" --config "$etc/harness.conf" --drain
  assert_success
  [ "$(STATE=$var item_state a)" = succeeded ]
  # logrotate: copytruncate keeps the file the loop appends to; the copy is compressed on the next turn
  if command -v logrotate >/dev/null; then
    sed -i "s/^    su .*//" "$lr/harness" # not root in every sandbox: rotate as whoever runs the test
    logrotate --state "$T/logrotate.state" --force "$lr/harness"
    [ -s "$var/events.jsonl.1" ] && [ ! -s "$var/events.jsonl" ]
  fi
  # uninstall: the tree, the units and logrotate's file go; the state and harness.conf stay
  run make -C "$HARNESS_ROOT" --no-print-directory uninstall PREFIX="$p"
  assert_success
  [ ! -e "$p" ] && [ ! -e "$units/harness.service" ] && [ ! -e "$units/harness-drain.timer" ] && [ ! -e "$lr/harness" ]
  [ -s "$var/harness.db" ] && [ -s "$etc/harness.conf" ]
  run make -C "$HARNESS_ROOT" --no-print-directory uninstall PREFIX="$p"
  assert_failure
  assert_output --partial "no install at $p"
  # refused, with nothing changed: root by default, a path systemd would split, the state inside PREFIX
  if ((EUID == 0)); then
    run env -u SUDO_USER "$HARNESS_ROOT/packaging/install.sh" --prefix "$T/p2" --unit-dir "" --logrotate-dir ""
    assert_failure 2
    assert_output --partial "name their user with --user"
  fi
  run "$HARNESS_ROOT/packaging/install.sh" --prefix "$T/with space" --user "$(id -un)"
  assert_failure 2
  run "$HARNESS_ROOT/packaging/install.sh" --prefix "$T/p3" --state-dir "$T/p3/state" --user "$(id -un)"
  assert_failure 2
  assert_output --partial "STATE_DIR must not be inside PREFIX"
  run "$HARNESS_ROOT/packaging/install.sh" --prefix "$HARNESS_ROOT" --user "$(id -un)"
  assert_failure 2
  assert_output --partial "is this copy of the harness"
  [ ! -e "$T/p2" ] && [ ! -e "$T/with space" ] && [ ! -e "$T/p3" ]
}

@test "a unit with a mistake fails systemd-analyze verify (the check above can fail)" {
  command -v systemd-analyze >/dev/null || skip "systemd-analyze is not installed (Debian: systemd)"
  sed 's/^Type=notify$/Type=notifyy/; s#^ExecStart=@PREFIX@#ExecStart=/nonexistent#' \
    "$HARNESS_ROOT/packaging/harness.service.in" >"$T/harness.service"
  run systemd-analyze verify "$T/harness.service"
  assert_failure
}

@test "the loop runs retention's gc by itself every GC_INTERVAL_S, in the background: an old finished session is compressed and still reads the same" {
  q add --id a --prompt p >/dev/null
  # a session a tenth of a second old is "old" here (RETAIN_RAW_DAYS in days)
  "$LOOP" --state "$STATE" --set GC_INTERVAL_S=0.3 --set RETAIN_RAW_DAYS=0.000001 3>&- &
  local pid=$! dir
  wait_for 15 in_state a succeeded
  dir=$(session_of a)
  wait_for 15 test -s "$dir/events.jsonl.gz"
  [ ! -e "$dir/events.jsonl" ]
  run "$HARNESS_ROOT/scripts/parse-session-events.sh" --state "$STATE" summary "$(basename "$dir")"
  assert_success
  assert_output --partial succeeded
  wait_for 15 audit_has '.event == "gc.done" and .compressed == 1'
  jq -e '.bytes.streams_compressed > 0' "$STATE/disk.json" >/dev/null
  kill -TERM "$pid"
  wait "$pid" || true
}

@test "a gc still running a whole GC_INTERVAL_S later (hung) is killed, said and audited, and the next one runs" {
  # the helpers' python, but a gc that never ends: stuck on I/O (a FIFO nobody opens to write)
  mkfifo "$T/never"
  cat >"$T/py" <<SH
#!/usr/bin/env bash
if [[ "\${3:-}" == gc ]]; then echo "gc \$\$" >>"$T/gc-runs"; exec cat "$T/never"; fi
exec "$HARNESS_ROOT/.venv/bin/python" "\$@"
SH
  chmod +x "$T/py"
  HARNESS_QUIET=0 "$LOOP" --state "$STATE" --set GC_INTERVAL_S=1 --set PYTHON="$T/py" 2>"$T/loop.err" 3>&- &
  local pid=$!
  wait_for 20 audit_has '.event == "gc.killed"'
  wait_for 10 bash -c "[ \$(wc -l <'$T/gc-runs') -ge 2 ]"
  kill -TERM "$pid"
  wait "$pid" || true
  grep -q "the last gc (pid [0-9]*) still ran after GC_INTERVAL_S (1s); killed it" "$T/loop.err"
  # the first one is gone; the last outlives the loop (a gc finishes by itself): the test ends it
  local first last
  first=$(head -n 1 "$T/gc-runs" | cut -d' ' -f2)
  last=$(tail -n 1 "$T/gc-runs" | cut -d' ' -f2)
  kill "$last" 2>/dev/null || true
  ! kill -0 "$first" 2>/dev/null
}
