# shellcheck shell=bash
# shellcheck disable=SC2034 # CFG_ERROR is read by the callers
WT_PRUNE_AT=0
# Where a session works: a git worktree of REPO_DIR on its own branch
# harness/<item>/<attempt>, or, without REPO_DIR, a plain directory. Both live
# under state/worktrees/<session>; the helpers' start makes them
# (lib/harness/pipeline/start.py), this module checks the repository and releases them.
# Sourced, not executed.

# worktree_check_repo: fails (CFG_ERROR set) when REPO_DIR is set but not a git work tree.
worktree_check_repo() {
  local repo=${CFG[REPO_DIR]}
  [[ -z "$repo" ]] && return 0
  if ! git -C "$repo" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    CFG_ERROR="REPO_DIR $repo is not a git work tree (leave REPO_DIR empty for plain directories)"
    return 1
  fi
  if ! git -C "$repo" rev-parse --verify --quiet "${CFG[BASE_REF]}^{commit}" >/dev/null; then
    CFG_ERROR="BASE_REF ${CFG[BASE_REF]} is not a commit in $repo (a repository needs one commit)"
    return 1
  fi
}

# worktree_release <session> <dir>: removes the git worktree the helpers' finalize
# named (a succeeded item's: its branch stays). Every other is kept, for a person or
# for the item's fix round; plain directories are never named (they hold the only
# copy of the work).
worktree_release() { # <session> <dir>
  local out
  [[ -n "${CFG[REPO_DIR]}" && -d "$2" ]] || return 0
  if ! log_capture out worktree__remove "$2"; then
    log_audit worktree.remove_failed --arg session "$1" --arg error "${out//$'\n'/ }"
    warn "could not remove worktree $2: ${out//$'\n'/ }"
  fi
}

worktree__remove() { # <dir>: its output on stdout, errors included
  git -C "${CFG[REPO_DIR]}" worktree remove --force "$1" 2>&1 8>&- 9>&-
}

# worktree_prune_aged: kept worktrees older than WORKTREE_MAX_AGE_DAYS go (never a
# live session's); at start, then at most once an hour.
worktree_prune_aged() {
  local days=${CFG[WORKTREE_MAX_AGE_DAYS]} out
  [[ "$days" != 0 ]] || return 0
  clock_now
  ((NOW_US >= WT_PRUNE_AT)) || return 0
  WT_PRUNE_AT=$((NOW_US + 3600 * 1000000))
  if ! py_call worktrees prune --state-dir "${CFG[STATE_DIR]}" --repo "${CFG[REPO_DIR]}" --older-than-days "$days"; then
    warn "pruning old worktrees failed"
    return 0
  fi
  out=$PY_OUT
  [[ "$out" == "removed 0 worktree(s)" ]] || info "pruned old worktrees: ${out##*$'\n'}"
}
