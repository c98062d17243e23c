# shellcheck shell=bash
# shellcheck disable=SC2034 # WT_* and CFG_ERROR are read by the callers
# Where a session works: a git worktree of REPO_DIR on its own branch
# harness/<item>/<attempt>, or, without REPO_DIR, a plain directory.
# Both live under state/worktrees/<session>. Sourced, not executed.

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

# worktree_branch_name <item> <attempt> <session>: a valid, unused branch name.
worktree_branch_name() { # <item> <attempt> <session>
  local repo=${CFG[REPO_DIR]} name="harness/$1/$2"
  if ! git check-ref-format --branch "$name" >/dev/null 2>&1; then
    name="harness/${3}"
  fi
  if git -C "$repo" show-ref --verify --quiet "refs/heads/$name"; then
    name="$name-${3:4:8}"
  fi
  printf '%s\n' "$name"
}

# worktree_create <session> <item> <attempt>: sets WT_DIR and WT_BRANCH (empty
# without a repository); on failure WT_ERROR says why.
worktree_create() { # <session> <item> <attempt>
  local sid=$1 item=$2 attempt=$3 repo=${CFG[REPO_DIR]} out
  WT_DIR="${CFG[STATE_DIR]}/worktrees/$sid"
  WT_BRANCH=""
  WT_ERROR=""
  [[ -d "${CFG[STATE_DIR]}/worktrees" ]] || mkdir -m 700 "${CFG[STATE_DIR]}/worktrees" ||
    { WT_ERROR="cannot create ${CFG[STATE_DIR]}/worktrees"; return 1; }
  if [[ -z "$repo" ]]; then
    mkdir -m 700 "$WT_DIR" || { WT_ERROR="cannot create $WT_DIR"; return 1; }
    return 0
  fi
  WT_BRANCH=$(worktree_branch_name "$item" "$attempt" "$sid")
  if ! out=$(git -C "$repo" worktree add -q -b "$WT_BRANCH" "$WT_DIR" "${CFG[BASE_REF]}" 2>&1 9>&-); then
    WT_ERROR="git worktree add failed: ${out//$'\n'/ }"
    return 1
  fi
}

# worktree_release <session> <verdict> <branch>: a succeeded session's worktree is
# removed (its branch stays); any other is kept for inspection. Plain directories
# are always kept: they hold the only copy of the work.
worktree_release() { # <session> <verdict> <branch>
  local dir="${CFG[STATE_DIR]}/worktrees/$1" out
  [[ -n "${CFG[REPO_DIR]}" && -n "$3" && "$2" == succeeded && -d "$dir" ]] || return 0
  if ! out=$(git -C "${CFG[REPO_DIR]}" worktree remove --force "$dir" 2>&1 9>&-); then
    log_audit worktree.remove_failed --arg session "$1" --arg error "${out//$'\n'/ }"
    warn "could not remove worktree $dir: ${out//$'\n'/ }"
  fi
}
