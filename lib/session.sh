# shellcheck shell=bash
# shellcheck disable=SC2034 # LOOP_FATAL, LOOP_CLAIM_AT and RES_RECHECK_AT are read by loop.sh and resilience.sh
# One session's life inside the loop: start (claim, worktree, prompt, spawn),
# poll, stop in steps, finalize (verdict, policy, queue move, receipt).
# Sourced, not executed. The loop keeps live sessions in the S_* maps below.

declare -gA S_ITEM=() S_WRAPPER=() S_WSTART=() S_DEADLINE=() S_STOP_STAGE=() S_STOP_AT=() S_BRANCH=()

session_dir() { # <session>
  printf '%s/sessions/%s\n' "${CFG[STATE_DIR]}" "$1"
}

session_alive() { # <session>
  local pid=${S_WRAPPER[$1]:-} start
  [[ -n "$pid" ]] || return 1
  start=$(spawn_proc_start "$pid") || return 1
  [[ -z "${S_WSTART[$1]:-}" || "$start" == "${S_WSTART[$1]}" ]]
}

session_count() {
  printf '%s\n' "${#S_ITEM[@]}"
}

# session_start <worker>: claims the best ready item and spawns its session.
# Returns 0 when a session started (or failed to and was finalized), 3 when
# nothing is ready, 4 when claiming is blocked (pause, breaker, disk), 1 when the
# claim itself failed.
session_start() { # <worker>
  local uuid sid dir item item_id attempt rc timeout now
  uuid=$(</proc/sys/kernel/random/uuid)
  sid="ses_$uuid"
  item=$(queue_claim "$sid" "$1") && rc=0 || rc=$?
  case $rc in
    0) resilience_unblocked ;;
    3) resilience_unblocked; return 3 ;;
    4) resilience_blocked "$item"; return 4 ;;
    *)
      log_audit loop.claim_failed --arg error "queue-claim exited $rc"
      warn "claiming an item failed (exit $rc)"
      return 1
      ;;
  esac
  item_id=$(jq -r .id <<<"$item")
  attempt=$(($(jq -r '.attempts // 0' <<<"$item") + 1))
  dir=$(session_dir "$sid")
  mkdir -m 700 "$dir" || { warn "cannot create $dir"; return 1; }
  S_ITEM[$sid]=$item_id
  S_STOP_STAGE[$sid]=0
  log_audit item.claimed --arg item "$item_id" --arg session "$sid" --argjson attempt "$attempt" \
    --arg from pending --arg to running
  if ! worktree_create "$sid" "$item_id" "$attempt"; then
    session__spawn_failed "$sid" "$item" "$attempt" "$WT_ERROR"
    return 0
  fi
  # shellcheck disable=SC2153 # set by worktree_create
  S_BRANCH[$sid]=$WT_BRANCH
  if ! py prepare --item "$(queue_running_path "$item_id")" --template "${CFG[BOOTSTRAP]}" --out-dir "$dir" \
    --var "SESSION_ID=$sid" --var "WORKTREE=$WT_DIR" --var "BRANCH=${WT_BRANCH:-none}" 2>"$dir/prepare.err"; then
    session__spawn_failed "$sid" "$item" "$attempt" "rendering the prompt failed: $(head -c 300 "$dir/prepare.err")"
    return 0
  fi
  spawn_build_argv "$item" "$uuid" "$dir/prompt.md"
  session__write_meta "$sid" "$item" "$attempt" "$WT_DIR" "$WT_BRANCH"
  spawn_agent "$dir" "$WT_DIR" "${SPAWN_ARGV[@]}"
  S_WRAPPER[$sid]=$SPAWN_PID
  S_WSTART[$sid]=$(spawn_proc_start "$SPAWN_PID" || true)
  timeout=$(jq -r --arg d "${CFG[SESSION_TIMEOUT_S]}" '.timeout_s // $d' <<<"$item")
  now=$(log_epoch)
  S_DEADLINE[$sid]=$(awk -v n="$now" -v t="$timeout" 'BEGIN { printf "%.3f", (t > 0 ? n + t : 0) }')
  log_audit session.started --arg item "$item_id" --arg session "$sid" --argjson attempt "$attempt" \
    --arg worktree "$WT_DIR" --arg branch "$WT_BRANCH" --argjson wrapper_pid "$SPAWN_PID"
  info "started $sid for $item_id (attempt $attempt)"
}

session__write_meta() { # <session> <item-json> <attempt> <workdir> <branch>
  local dir argv='[]'
  dir=$(session_dir "$1")
  # argv travels NUL-separated on stdin: as jq arguments, "-p" would be read as a jq option.
  ((${#SPAWN_ARGV[@]} == 0)) || argv=$(printf '%s\0' "${SPAWN_ARGV[@]}" | jq -Rsc 'rtrimstr("\u0000") | split("\u0000")')
  jq -n --arg sid "$1" --argjson item "$2" --argjson attempt "$3" --arg workdir "$4" --arg branch "$5" \
    --arg started_at "$(log_now)" --argjson started_epoch "$(log_epoch)" --arg host "$(hostname)" \
    --argjson loop_pid "$$" --arg model "$(jq -r '.model // empty' <<<"$2")" --argjson argv "$argv" \
    '{session_id: $sid, claude_session_id: ($sid | ltrimstr("ses_")), item_id: $item.id,
      title: $item.title, attempt: $attempt, host: $host, loop_pid: $loop_pid, cwd: $workdir,
      branch: $branch, model: $model, started_at: $started_at, started_epoch: $started_epoch,
      argv: $argv}' >"$dir/.meta.tmp" && mv -f "$dir/.meta.tmp" "$dir/meta.json"
}

session__spawn_failed() { # <session> <item-json> <attempt> <error>
  local dir
  dir=$(session_dir "$1")
  printf '%s\n' "$4" >"$dir/spawn_error"
  SPAWN_ARGV=()
  session__write_meta "$1" "$2" "$3" "" ""
  warn "session $1 could not start: $4"
  session_finalize "$1"
}

# session_stop <session> <reason> <detail>: records why in kill.json, then SIGINT
# to the agent's process group; session_poll escalates to SIGTERM and SIGKILL.
session_stop() { # <session> <reason> <detail>
  local sid=$1 dir
  [[ "${S_STOP_STAGE[$sid]:-0}" == 0 ]] || return 0
  dir=$(session_dir "$sid")
  S_STOP_STAGE[$sid]=1
  S_STOP_AT[$sid]=$(log_epoch)
  # kill.json is created, never replaced: when the sidecar stopped the session
  # first (a stall), its record stands and it carries the stop on.
  jq -n --arg reason "$2" --arg detail "$3" --arg at "$(log_now)" --argjson at_epoch "${S_STOP_AT[$sid]}" \
    '{reason: $reason, detail: $detail, at: $at, at_epoch: $at_epoch, by: "loop"}' >"$dir/.kill.tmp" || {
    warn "cannot write $dir/kill.json"
    return 0
  }
  if ! ln "$dir/.kill.tmp" "$dir/kill.json" 2>/dev/null; then
    rm -f "$dir/.kill.tmp"
    log_audit session.stopping --arg session "$sid" --arg item "${S_ITEM[$sid]}" --arg reason "$2" \
      --arg detail "already being stopped: $(jq -r '.reason // "?"' "$dir/kill.json" 2>/dev/null)"
    return 0
  fi
  rm -f "$dir/.kill.tmp"
  log_audit session.stopping --arg session "$sid" --arg item "${S_ITEM[$sid]}" --arg reason "$2" --arg detail "$3"
  session__signal "$sid" INT
}

session__signal() { # <session> <signal>
  local pid
  pid=$(cat "$(session_dir "$1")/agent.pid" 2>/dev/null) || return 0
  [[ "$pid" =~ ^[0-9]+$ ]] || return 0
  kill -s "$2" -- "-$pid" 2>/dev/null || true
}

# session_poll <session>: 0 when the session has ended, 1 while it runs. Acts on
# cancel requests, the wall-clock limit and pending stop escalations.
session_poll() { # <session>
  local sid=$1 dir now stage
  dir=$(session_dir "$sid")
  [[ -e "$dir/exit_code" ]] && return 0
  session_alive "$sid" || return 0
  now=$(log_epoch)
  stage=${S_STOP_STAGE[$sid]:-0}
  if [[ $stage == 0 ]]; then
    if [[ -e "$dir/cancel" ]]; then
      session_stop "$sid" interrupted "canceled by operator"
    elif awk -v d="${S_DEADLINE[$sid]:-0}" -v n="$now" 'BEGIN { exit !(d > 0 && n > d) }'; then
      session_stop "$sid" timed_out "ran past its wall-clock limit"
    fi
  elif awk -v a="${S_STOP_AT[$sid]}" -v n="$now" -v g="${CFG[KILL_GRACE_S]}" 'BEGIN { exit !(n - a > g) }'; then
    if [[ $stage == 1 ]]; then
      session__signal "$sid" TERM
    else
      session__signal "$sid" KILL
    fi
    S_STOP_STAGE[$sid]=$((stage + 1))
    S_STOP_AT[$sid]=$now
  fi
  return 1
}

# session_finalize <session>: the helpers' finalize does the verdict, the receipt,
# the policy, the breaker, the pause and the queue move (lib/harness/finish.py);
# then the worktree is released. When the item cannot leave running/ (a full disk),
# the loop stops claiming and exits 1; the next start finalizes it again.
session_finalize() { # <session>
  local sid=$1 dir item_id out rc verdict reason to receipt
  dir=$(session_dir "$sid")
  item_id=${S_ITEM[$sid]}
  out=$(py finalize --state-dir "${CFG[STATE_DIR]}" --session-dir "$dir" "${RES_POLICY_ARGS[@]}") && rc=0 || rc=$?
  LOOP_CLAIM_AT=0 RES_RECHECK_AT=0 # a finished session may unblock claims (a probe, a dependency)
  if [[ $rc != 0 ]]; then
    log_audit session.finalize_failed --arg session "$sid" --arg item "$item_id" --argjson exit_code "$rc"
    LOOP_FATAL="finalizing $sid ($item_id) failed (exit $rc); the item stays in running/ for the next start"
    warn "$LOOP_FATAL"
    session__forget "$sid"
    return 0
  fi
  IFS=$'\t' read -r verdict reason to < <(jq -r '[.verdict, .reason, (.to // "")] | @tsv' <<<"$out")
  receipt=$(jq -r '.receipt // empty' <<<"$out")
  if [[ -z "$to" ]]; then
    warn "session $sid ended ($verdict) but item $item_id is no longer in running/ under it"
  fi
  worktree_release "$sid" "$verdict" "${S_BRANCH[$sid]:-}"
  [[ -n "$receipt" ]] && printf '%s\n' "$receipt"
  info "$sid $item_id: $verdict ($reason) -> ${to:-nowhere}"
  session__forget "$sid"
}

session__merge_meta() { # <dir> [jq args...]
  local dir=$1
  shift
  [[ -f "$dir/meta.json" ]] || printf '{}\n' >"$dir/meta.json"
  jq "$@" '. + $ARGS.named' "$dir/meta.json" >"$dir/.meta.tmp" && mv -f "$dir/.meta.tmp" "$dir/meta.json"
}

session__forget() { # <session>
  unset "S_ITEM[$1]" "S_WRAPPER[$1]" "S_WSTART[$1]" "S_DEADLINE[$1]" "S_STOP_STAGE[$1]" "S_STOP_AT[$1]" "S_BRANCH[$1]"
}

# session_adopt <session> <item>: supervises a session that a previous loop started.
session_adopt() { # <session> <item>
  local sid=$1 dir pidline timeout started
  dir=$(session_dir "$sid")
  S_ITEM[$sid]=$2
  S_STOP_STAGE[$sid]=0
  S_BRANCH[$sid]=$(jq -r '.branch // empty' "$dir/meta.json" 2>/dev/null || true)
  pidline=$(cat "$dir/wrapper.pid" 2>/dev/null || true)
  S_WRAPPER[$sid]=${pidline%% *}
  S_WSTART[$sid]=${pidline#* }
  timeout=$(jq -r --arg d "${CFG[SESSION_TIMEOUT_S]}" '.timeout_s // $d' "$(queue_running_path "$2")" 2>/dev/null || echo 0)
  started=$(jq -r '.started_epoch // 0' "$dir/meta.json" 2>/dev/null || echo 0)
  S_DEADLINE[$sid]=$(awk -v s="$started" -v t="$timeout" 'BEGIN { printf "%.3f", (t > 0 && s > 0 ? s + t : 0) }')
}
