"""Kept worktrees under state/worktrees/: listing and pruning.

A succeeded session's git worktree is removed when it ends (its branch stays);
any other is kept for inspection. Pruning removes kept ones older than a limit
(WORKTREE_MAX_AGE_DAYS, or `loopctl.sh prune`): `git worktree remove --force` for
a worktree (the branch and its commits stay in the repository), plain removal for
a plain directory. A worktree a live session works in, or a pending fix round
will, is never touched.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from harness import jsonio
from harness.store import open_store


def _in_use(state_dir: Path) -> set[str]:
    """The worktrees a live session works in (a fix round works in the one of the
    session it resumes) or a pending fix round will: never pruned."""
    store = open_store(state_dir)
    used: set[str] = set()
    for sid in store.live():
        used.add(os.path.realpath(state_dir / "worktrees" / sid))
        cwd = (jsonio.read_dict(state_dir / "sessions" / sid / "meta.json") or {}).get("cwd")
        if cwd:
            used.add(os.path.realpath(str(cwd)))
    for item in store.items(["pending"]):
        fix = item.get("fix")
        if isinstance(fix, dict) and fix.get("workdir"):
            used.add(os.path.realpath(str(fix["workdir"])))
    return used


def kept(state_dir: Path, now: float) -> list[dict[str, Any]]:
    root = state_dir / "worktrees"
    in_use = _in_use(state_dir)
    rows = []
    for name in sorted(os.listdir(root)) if root.is_dir() else []:
        path = root / name
        if not path.is_dir():
            continue
        meta = jsonio.read_dict(state_dir / "sessions" / name / "meta.json") or {}
        age = now - os.stat(path).st_mtime
        rows.append({
            "session": name, "path": str(path), "item": meta.get("item_id"), "verdict": meta.get("verdict"),
            "branch": meta.get("branch") or None, "age_s": round(age, 1), "live": os.path.realpath(path) in in_use,
            "git": (path / ".git").exists(),
        })
    return rows


def _git(repo: str | Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=False)


def commit_leftovers(path: Path, session: str) -> bool:
    """A succeeded session's uncommitted changes (the verified tree may hold them),
    committed on its branch before its worktree goes: the branch then holds exactly
    what was verified. True when there were any."""
    if not _git(path, "status", "--porcelain").stdout.strip():
        return False
    for step in (("add", "-A"), ("-c", "user.name=claude-harness", "-c", "user.email=harness@localhost", "commit",
                                 "--quiet", "--no-verify", "-m", f"Uncommitted work of {session}, as it was verified")):
        done = _git(path, *step)
        if done.returncode != 0:
            raise OSError(f"cannot commit the work left in {path}: " + " ".join((done.stderr or done.stdout).split()))
    return True


def salvage(path: Path, session: str) -> str:
    """Work in a worktree that no branch holds (uncommitted changes, or commits on a
    detached HEAD) is committed to a branch of its own, harness/salvage/<session>,
    before the worktree goes; "" when there was none, else the branch (or an error)."""
    dirty = bool(_git(path, "status", "--porcelain").stdout.strip())
    head = _git(path, "rev-parse", "--verify", "--quiet", "HEAD").stdout.strip()
    held = bool(head) and bool(_git(path, "branch", "--contains", head, "--format=%(refname)").stdout.strip())
    if not dirty and (held or not head):
        return ""
    branch = f"harness/salvage/{session}"
    steps: list[tuple[str, ...]] = [("checkout", "--quiet", "-B", branch)]
    if dirty:
        steps += [("add", "-A"), ("-c", "user.name=claude-harness", "-c", "user.email=harness@localhost", "commit",
                                  "--quiet", "--no-verify", "-m", f"Uncommitted work of {session}, saved before its "
                                  "worktree was pruned")]
    for step in steps:
        done = _git(path, *step)
        if done.returncode != 0:
            raise OSError(f"cannot save the work in {path}: " + " ".join((done.stderr or done.stdout).split()))
    return branch


def prune(state_dir: Path, repo: str, older_than_s: float, dry_run: bool, now: float | None = None) -> list[str]:
    """Removes kept worktrees older than older_than_s (never one a live session or a
    pending fix round uses); work no branch holds is saved on a branch first; returns
    what went."""
    now = time.time() if now is None else now
    gone = []
    for row in kept(state_dir, now):
        if row["live"] or row["age_s"] < older_than_s:
            continue
        gone.append(row["path"])
        if dry_run:
            continue
        error = saved = ""
        if row["git"] and repo:
            try:
                saved = salvage(Path(row["path"]), row["session"])
            except OSError as exc:
                error = str(exc)
            if not error:
                done = _git(repo, "worktree", "remove", "--force", row["path"])
                if done.returncode != 0:
                    error = " ".join(done.stderr.split())
        if not error and os.path.exists(row["path"]):
            shutil.rmtree(row["path"], ignore_errors=False)
        jsonio.audit(state_dir, "worktree.pruned" if not error else "worktree.prune_failed", session=row["session"],
                     item=row["item"], branch=row["branch"], age_s=row["age_s"], saved_on=saved or None,
                     error=error or None)
        if error:
            gone.pop()
    if repo and gone and not dry_run:
        _git(repo, "worktree", "prune")
    return gone


def prune_merged(state_dir: Path, repo: str, target: str, dry_run: bool) -> list[str]:
    """Deletes the branches of succeeded items that are wholly on target: each ref is
    deleted only at the commit found on the target (compare-and-swap), so a branch
    that moved meanwhile stays; returns them."""
    if not repo or not target:
        raise ValueError("prune --merged needs REPO_DIR and TARGET_BRANCH")
    states = open_store(state_dir).states()
    merged = _git(repo, "branch", "--merged", target, "--list", "harness/*", "--format=%(refname:short)").stdout.split()
    gone = []
    for branch in merged:
        parts = branch.split("/")
        item = parts[1] if len(parts) >= 3 and parts[1] not in ("salvage",) else ""
        if not item or states.get(item) != "succeeded":
            continue
        if f"branch refs/heads/{branch}\n" in _git(repo, "worktree", "list", "--porcelain").stdout + "\n":
            continue  # a kept worktree has it checked out
        tip = _git(repo, "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}").stdout.strip()
        if not tip or _git(repo, "merge-base", "--is-ancestor", tip, target).returncode != 0:
            continue
        if not dry_run:
            done = _git(repo, "update-ref", "-d", f"refs/heads/{branch}", tip)
            if done.returncode != 0:
                jsonio.audit(state_dir, "branch.delete_failed", branch=branch, item=item,
                             error=" ".join(done.stderr.split()))
                continue
            jsonio.audit(state_dir, "branch.deleted", branch=branch, item=item, target=target)
        gone.append(branch)
    return gone
