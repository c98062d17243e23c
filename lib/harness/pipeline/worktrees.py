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
        used.add(str(state_dir / "worktrees" / sid))
        cwd = (jsonio.read_dict(state_dir / "sessions" / sid / "meta.json") or {}).get("cwd")
        if cwd:
            used.add(str(cwd))
    for item in store.items(["pending"]):
        fix = item.get("fix")
        if isinstance(fix, dict) and fix.get("workdir"):
            used.add(str(fix["workdir"]))
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
            "branch": meta.get("branch") or None, "age_s": round(age, 1), "live": str(path) in in_use,
            "git": (path / ".git").exists(),
        })
    return rows


def prune(state_dir: Path, repo: str, older_than_s: float, dry_run: bool, now: float | None = None) -> list[str]:
    """Removes kept worktrees older than older_than_s (never a live session's); returns what went."""
    now = time.time() if now is None else now
    gone = []
    for row in kept(state_dir, now):
        if row["live"] or row["age_s"] < older_than_s:
            continue
        gone.append(row["path"])
        if dry_run:
            continue
        error = ""
        if row["git"] and repo:
            done = subprocess.run(["git", "-C", repo, "worktree", "remove", "--force", row["path"]],
                                  capture_output=True, text=True, check=False)
            if done.returncode != 0:
                error = " ".join(done.stderr.split())
        if not error and os.path.exists(row["path"]):
            shutil.rmtree(row["path"], ignore_errors=False)
        jsonio.audit(state_dir, "worktree.pruned" if not error else "worktree.prune_failed", session=row["session"],
                     item=row["item"], branch=row["branch"], age_s=row["age_s"], error=error or None)
    if repo and gone and not dry_run:
        subprocess.run(["git", "-C", repo, "worktree", "prune"], capture_output=True, check=False)
    return gone
