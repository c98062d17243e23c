# shellcheck shell=bash
# shellcheck disable=SC2034 # LOOP_FATAL, LOOP_CLAIM_AT and RES_RECHECK_AT are read by loop.sh and resilience.sh
# One session's life inside the loop: start (claim, worktree, prompt, spawn),
# poll, stop in steps, finalize (verdict, policy, queue move, receipt).
# Sourced, not executed. The loop keeps live sessions in the S_* maps below;
# times are whole microseconds (clock_now), compared without forking.

declare -gA S_ITEM=() S_WRAPPER=() S_WSTART=() S_DEADLINE=() S_STOP_STAGE=() S_STOP_AT=() S_VERIFY=()
# a finalize the store's server did not answer: when to try again, and whether it was said
declare -gA S_FINAL_AT=() S_FINAL_TOLD=()
readonly STORE_RETRY_S=5

session_alive() { # <session>
  local pid=${S_WRAPPER[$1]:-}
  [[ -n "$pid" ]] && spawn_proc_start "$pid" _SES_START || return 1
  [[ -z "${S_WSTART[$1]:-}" || "$_SES_START" == "${S_WSTART[$1]}" ]]
}

# session_start <worker>: claims the best ready item and spawns its session. The
# helpers' start (lib/harness/pipeline/start.py) claims through the gate, makes the
# worktree, renders the prompt and writes meta.json and the argv. Returns 0 when a
# session started (or failed to and was finalized), EXIT_NOTHING_READY when nothing
# is ready, EXIT_BLOCKED when claiming is blocked (pause, breaker, disk, load), 1
# when the claim failed.
session_start() { # <worker>
  local uuid sid dir out rc item_id attempt workdir branch timeout failed
  read -r uuid </proc/sys/kernel/random/uuid
  sid="ses_$uuid"
  dir="${CFG[STATE_DIR]}/sessions/$sid"
  py_call start --state-dir "${CFG[STATE_DIR]}" --session "$sid" --worker "$1" --loop-pid "$$" \
    "${RES_POLICY_ARGS[@]}" && rc=0 || rc=$?
  out=$PY_OUT
  case $rc in
    0) resilience_unblocked ;;
    "$EXIT_NOTHING_READY") resilience_unblocked; return "$EXIT_NOTHING_READY" ;;
    "$EXIT_BLOCKED") resilience_blocked "$out"; return "$EXIT_BLOCKED" ;;
    70)
      LOOP_FATAL="the helper process died during a claim; the next start reconciles"
      log_audit loop.claim_failed --arg error "$LOOP_FATAL"
      return 1
      ;;
    *)
      # the store could not be written (a full disk, a database that stays locked):
      # nothing was claimed; the loop stops claiming and ends (exit 1) rather than
      # report a drained queue that is not
      LOOP_FATAL="claiming an item failed (exit $rc; the line above says why); nothing was claimed"
      log_audit loop.claim_failed --arg error "the start helper exited $rc"
      warn "claiming an item failed (exit $rc)"
      return 1
      ;;
  esac
  IFS=$'\x1f' read -r item_id attempt timeout failed workdir branch <<<"$out"
  S_ITEM[$sid]=$item_id
  S_STOP_STAGE[$sid]=0
  if [[ "$failed" == 1 ]]; then
    out=""
    LC_ALL=C read -r -N 300 out <"$dir/spawn_error" || true
    warn "session $sid could not start: ${out%$'\n'}"
    session_finalize "$sid"
    return 0
  fi
  mapfile -d '' SPAWN_ARGV <"$dir/spawn.argv"
  spawn_agent "$dir" "$workdir" "${SPAWN_ARGV[@]}"
  S_WRAPPER[$sid]=$SPAWN_PID
  spawn_proc_start "$SPAWN_PID" "S_WSTART[$sid]" || S_WSTART[$sid]=""
  session__deadline "$sid" "$timeout" ""
  log_audit session.started --arg item "$item_id" --arg session "$sid" --argjson attempt "$attempt" \
    --arg worktree "$workdir" --arg branch "$branch" --argjson wrapper_pid "$SPAWN_PID"
  info "started $sid for $item_id (attempt $attempt)"
}

# session__deadline <session> <timeout-s> <started-epoch>: the wall-clock limit
# (0: none), from the start time (default now).
session__deadline() { # <session> <timeout-s> <started-epoch>
  local limit start
  clock_us "$2" limit
  if [[ -n "$3" ]]; then clock_us "$3" start; else clock_now; start=$NOW_US; fi
  if ((limit > 0 && start > 0)); then S_DEADLINE[$1]=$((start + limit)); else S_DEADLINE[$1]=0; fi
}

# session_stop <session> <reason> <detail>: records why in kill.json, then SIGINT
# to the agent's process group; session_poll escalates to SIGTERM and SIGKILL.
session_stop() { # <session> <reason> <detail>
  local sid=$1 dir first by
  [[ "${S_STOP_STAGE[$sid]:-0}" == 0 ]] || return 0
  dir="${CFG[STATE_DIR]}/sessions/$sid"
  clock_now
  S_STOP_STAGE[$sid]=1
  S_STOP_AT[$sid]=$NOW_US
  # kill.json is created, never replaced (lib/harness/pipeline/stops.py): when the sidecar
  # recorded a stall first, its record stands and the stop carries on from it.
  if ! py_again stop-record --session-dir "$dir" --reason "$2" --detail "$3" --by loop; then
    warn "cannot write $dir/kill.json"
    return 0
  fi
  IFS=$'\x1f' read -r first by <<<"$PY_OUT"
  if [[ "$first" == exists ]]; then
    log_audit session.stopping --arg session "$sid" --arg item "${S_ITEM[$sid]}" --arg reason "$2" \
      --arg detail "already being stopped: ${by:-?}"
  else
    log_audit session.stopping --arg session "$sid" --arg item "${S_ITEM[$sid]}" --arg reason "$2" --arg detail "$3"
  fi
  session__signal "$sid" INT
}

# session__take_over <session>: a stop recorded by someone else (the sidecar found
# a stall; an earlier loop began it) is carried on here, from SIGINT: this is the
# one place that signals a session.
session__take_over() { # <session>
  clock_now
  S_STOP_STAGE[$1]=1
  S_STOP_AT[$1]=$NOW_US
  session__signal "$1" INT
}

# session__signal <session> <signal>: to the process group of what the session runs
# now: its verify command once that has begun (verify.pid), else the agent; said in
# the audit log.
session__signal() { # <session> <signal>
  local dir="${CFG[STATE_DIR]}/sessions/$1" pid="" what=agent
  [[ ! -e "$dir/exit_code" ]] || return 0
  if [[ -e "$dir/verify.pid" ]]; then
    what=verify
    read -r pid 2>/dev/null <"$dir/verify.pid" || return 0
  else
    read -r pid 2>/dev/null <"$dir/agent.pid" || return 0
  fi
  [[ "$pid" =~ ^[0-9]+$ ]] || return 0
  kill -s "$2" -- "-$pid" 2>/dev/null || return 0
  log_audit session.signal --arg session "$1" --arg item "${S_ITEM[$1]:-}" --arg signal "$2" --arg by loop \
    --arg target "$what"
}

# session_poll <session>: 0 when the session has ended, 1 while it runs. Acts on
# cancel requests, the wall-clock limit and pending stop escalations.
session_poll() { # <session>
  local sid=$1 dir stage grace
  dir="${CFG[STATE_DIR]}/sessions/$sid"
  [[ -e "$dir/exit_code" ]] && return 0
  session_alive "$sid" || return 0
  clock_now
  stage=${S_STOP_STAGE[$sid]:-0}
  if [[ $stage == 0 ]]; then
    if [[ -e "$dir/kill.json" ]]; then
      session__take_over "$sid"
    elif [[ -e "$dir/cancel" ]]; then
      session_stop "$sid" interrupted "canceled by operator"
    elif [[ -e "$dir/verify.pid" ]]; then
      session__verifying "$sid"
    elif ((S_DEADLINE[$sid] > 0 && NOW_US > S_DEADLINE[$sid])); then
      session_stop "$sid" timed_out "ran past its wall-clock limit"
    fi
    return 1
  fi
  clock_us "${CFG[KILL_GRACE_S]}" grace
  if ((NOW_US - S_STOP_AT[$sid] > grace)); then
    if [[ $stage == 1 ]]; then session__signal "$sid" TERM; else session__signal "$sid" KILL; fi
    S_STOP_STAGE[$sid]=$((stage + 1))
    S_STOP_AT[$sid]=$NOW_US
  fi
  return 1
}

# session__verifying <session>: the agent has exited and its verify command runs
# (the wall-clock limit was the agent's; the command has its own, VERIFY_TIMEOUT_S).
# Said once in the audit log.
session__verifying() { # <session>
  [[ -z "${S_VERIFY[$1]:-}" ]] || return 0
  S_VERIFY[$1]=1
  log_audit verify.started --arg session "$1" --arg item "${S_ITEM[$1]:-}"
  info "$1 ${S_ITEM[$1]:-}: verifying"
}

# session_finalize <session>: the helpers' finalize does the verdict, the receipt,
# the policy, the breaker, the pause and the queue move (lib/harness/pipeline/finalize.py);
# then the worktree is released. When the item cannot leave running/ (a full disk),
# the loop stops claiming and exits 1; the next start finalizes it again.
session_finalize() { # <session>
  local sid=$1 dir item_id out rc verdict reason to release receipt
  dir="${CFG[STATE_DIR]}/sessions/$sid"
  item_id=${S_ITEM[$sid]}
  py_call finalize --state-dir "${CFG[STATE_DIR]}" --session-dir "$dir" "${RES_POLICY_ARGS[@]}" && rc=0 || rc=$?
  out=$PY_OUT
  LOOP_CLAIM_AT=0 RES_RECHECK_AT=0 # a finished session may unblock claims (a probe, a dependency)
  if [[ $rc == "$EXIT_STORE_DOWN" ]]; then
    # the database server does not answer: the session stays ours, finalized again
    # in STORE_RETRY_S; claims wait for the server too (their block says so)
    clock_now
    clock_us "$STORE_RETRY_S" "S_FINAL_AT[$sid]"
    ((S_FINAL_AT[$sid] += NOW_US))
    if [[ -z "${S_FINAL_TOLD[$sid]:-}" ]]; then
      S_FINAL_TOLD[$sid]=1
      log_audit session.finalize_waiting --arg session "$sid" --arg item "$item_id" --arg reason "the store does not answer"
      warn "finalizing $sid ($item_id) waits for the store, which does not answer; trying again every ${STORE_RETRY_S}s"
    fi
    return 0
  fi
  if [[ $rc != 0 ]]; then
    log_audit session.finalize_failed --arg session "$sid" --arg item "$item_id" --argjson exit_code "$rc"
    LOOP_FATAL="finalizing $sid ($item_id) failed (exit $rc); the item stays in running/ for the next start"
    warn "$LOOP_FATAL"
    session__forget "$sid"
    return 0
  fi
  {
    IFS=$'\x1f' read -r verdict reason to release
    IFS= read -r receipt
  } <<<"$out"
  if [[ -z "$to" ]]; then
    warn "session $sid ended ($verdict) but item $item_id is no longer in running/ under it"
  fi
  [[ "$to" != verified ]] || integrate_due
  [[ -z "$release" ]] || worktree_release "$sid" "$release"
  [[ -n "$receipt" ]] && printf '%s\n' "$receipt"
  info "$sid $item_id: $verdict ($reason) -> ${to:-nowhere}"
  session__forget "$sid"
}

session__forget() { # <session>
  unset "S_ITEM[$1]" "S_WRAPPER[$1]" "S_WSTART[$1]" "S_DEADLINE[$1]" "S_STOP_STAGE[$1]" "S_STOP_AT[$1]" \
    "S_VERIFY[$1]" "S_FINAL_AT[$1]" "S_FINAL_TOLD[$1]"
}

# session_finalize_due <session>: it has ended, and no wait for the store holds its finalize back
session_finalize_due() { # <session>
  session_poll "$1" || return 1
  [[ -n "${S_FINAL_AT[$1]:-}" ]] || return 0
  clock_now
  ((NOW_US >= S_FINAL_AT[$1]))
}
