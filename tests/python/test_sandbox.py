"""SANDBOX=bwrap's git plumbing, without bwrap: the worktree's HEAD detached before
the agent, its commits in the session's own object directory, and settle() (the
finalize backstop of lib/spawn.sh) landing them on the branch, once."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from harness.pipeline import sandbox


def git(cwd: Path, *args: str, env: dict[str, str] | None = None) -> str:
    return subprocess.run(["git", "-C", str(cwd), "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args],
                          check=True, capture_output=True, text=True, env=env).stdout.strip()


def test_an_agent_s_commit_lands_on_its_branch_only_after_settle(tmp_path: Path) -> None:
    repo, wt, sdir = tmp_path / "repo", tmp_path / "wt", tmp_path / "ses"
    repo.mkdir()
    sdir.mkdir()
    git(repo, "init", "-q", "-b", "main")
    (repo / "README").write_text("x\n")
    git(repo, "add", "README")
    git(repo, "commit", "-qm", "first")
    git(repo, "worktree", "add", "-q", "-b", "harness/a/1", str(wt))
    base = git(repo, "rev-parse", "harness/a/1")
    args = sandbox.wrap(["/bin/true"], str(wt), "harness/a/1", sdir, tmp_path / "run")
    env_pairs = {args[i + 1]: args[i + 2] for i, a in enumerate(args) if a == "--setenv"}
    # the agent, as the sandbox's environment makes it commit: HEAD detached, objects its own
    (wt / "new.txt").write_text("work\n")
    paths = sandbox.git_paths(str(wt))
    assert paths is not None
    # inside bwrap the worktree's admin directory is bound at git-admin; here GIT_DIR names it itself
    env = {**os.environ, **env_pairs, "GIT_DIR": str(paths[0])}
    git(wt, "add", "new.txt", env=env)
    git(wt, "commit", "-qm", "agent's work", env=env)
    head = git(wt, "rev-parse", "HEAD", env=env)
    assert git(repo, "rev-parse", "harness/a/1") == base  # the branch has not moved
    assert any((sdir / sandbox.BOX / sandbox.OBJECTS).rglob("*"))  # and the objects are the session's
    # what an agent might leave there besides: a link to a secret, git's info/ files
    (sdir / sandbox.BOX / sandbox.OBJECTS / "info").mkdir(exist_ok=True)
    (sdir / sandbox.BOX / sandbox.OBJECTS / "info" / "alternates").write_text("/elsewhere\n")
    (tmp_path / "secret").write_text("key\n")
    (sdir / sandbox.BOX / sandbox.OBJECTS / "ab").mkdir(exist_ok=True)
    (sdir / sandbox.BOX / sandbox.OBJECTS / "ab" / ("c" * 38)).symlink_to(tmp_path / "secret")
    assert sandbox.settle(sdir).endswith(f"harness/a/1 at {head[:12]}")
    assert git(repo, "rev-parse", "harness/a/1") == head
    assert git(wt, "symbolic-ref", "HEAD") == "refs/heads/harness/a/1"
    assert git(repo, "log", "--format=%s", "harness/a/1") == "agent's work\nfirst"
    subprocess.run(["git", "-C", str(repo), "fsck", "--no-progress"], check=True, capture_output=True)
    assert not (sdir / sandbox.SETTLE).exists() and not (sdir / sandbox.BOX / sandbox.OBJECTS).exists()
    objects = repo / ".git" / "objects"
    assert not (objects / "info" / "alternates").exists() and not (objects / "ab" / ("c" * 38)).exists()
    assert sandbox.settle(sdir) == ""  # again: nothing left to do
