"""SANDBOX=bwrap: each agent under bubblewrap.

Inside, the whole system is read-only (/ bound read-only), $HOME is an empty
tmpfs (so ~/.ssh, ~/.aws and other repositories are not there), and writable are
only: the session's worktree, its session directory (its TMPDIR is there), its
runtime directory (state/run/<12 hex>, the CLI's socket), and the CLI's config
directory (~/.claude or CLAUDE_CONFIG_DIR: credentials, transcripts). Network
stays (the API). Signals still reach the agent: no new session, no PID namespace.

Git: the main repository's .git is read-only, its refs and objects included,
and so is the worktree's own admin directory at its place in it
(.git/worktrees/<name>); the agent's git writes that directory (HEAD, index) at
another path, the session's git-admin/ (GIT_DIR, with GIT_COMMON_DIR and
GIT_WORK_TREE), so that `rm -rf <repo>/.git` finds nothing it may delete. The
worktree's HEAD is detached at the branch's commit before the agent
starts, so its commits move that HEAD alone, and new objects go to the session's
git-objects/ (GIT_OBJECT_DIRECTORY, the repository's objects its alternate). When
the agent has exited, the objects are copied into the repository and the branch
is set to the worktree's HEAD, then HEAD attached to it again (lib/spawn.sh, then
finalize as a backstop: SETTLE names the branch until then). An agent can commit
its work; it cannot delete or rewrite the repository's history, its branches or
its configuration (its own worktree it can break, and then its work is its loss).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from harness.pipeline import transcript

OBJECTS = "git-objects"
ADMIN = "git-admin"  # where the worktree's admin directory is writable, inside the sandbox
SETTLE = "sandbox.branch"  # the branch to set to the worktree's HEAD once the agent has exited


def git_paths(workdir: str) -> tuple[Path, Path] | None:
    """(the worktree's admin directory, the repository's common .git), or None
    outside a git worktree."""
    try:
        out = subprocess.run(["git", "-C", workdir, "rev-parse", "--path-format=absolute", "--git-dir",
                              "--git-common-dir"], capture_output=True, text=True, check=True,
                             stdin=subprocess.DEVNULL).stdout.split("\n")
    except (OSError, subprocess.CalledProcessError):
        return None
    return (Path(out[0]), Path(out[1])) if len(out) >= 2 and out[0] and out[1] else None


def _git(workdir: str, *args: str) -> str:
    return subprocess.run(["git", "-C", workdir, *args], capture_output=True, text=True, check=True,
                          stdin=subprocess.DEVNULL).stdout.strip()


def _git_binds(workdir: str, branch: str, sdir: Path) -> tuple[list[str], list[str]]:
    """bwrap's binds and environment for a worktree's git; HEAD detached (SETTLE)."""
    paths = git_paths(workdir)
    if paths is None:
        return [], []
    admin, common = paths
    if branch:
        try:
            _git(workdir, "update-ref", "--no-deref", "HEAD", _git(workdir, "rev-parse", "HEAD"))
        except subprocess.CalledProcessError as exc:
            raise OSError(f"cannot detach the worktree's HEAD: {exc.stderr.strip()}") from None
        (sdir / SETTLE).write_text(branch + "\n")
    objects, alt = sdir / OBJECTS, sdir / ADMIN
    objects.mkdir(mode=0o700, exist_ok=True)
    alt.mkdir(mode=0o700, exist_ok=True)
    env = ["--setenv", "GIT_DIR", str(alt), "--setenv", "GIT_COMMON_DIR", str(common),
           "--setenv", "GIT_WORK_TREE", workdir, "--setenv", "GIT_OBJECT_DIRECTORY", str(objects),
           "--setenv", "GIT_ALTERNATE_OBJECT_DIRECTORIES", str(common / "objects")]
    return ["--ro-bind", str(common), str(common), "--bind", str(admin), str(alt)], env


def wrap(argv: list[str], workdir: str, branch: str, sdir: Path, runtime: Path) -> list[str]:
    """The agent's command line under bwrap (module docstring)."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise FileNotFoundError("SANDBOX=bwrap and bwrap is not installed (apt-get install bubblewrap)")
    home = Path(os.environ.get("HOME") or "/root")
    config = transcript.config_dir()
    config.mkdir(mode=0o700, parents=True, exist_ok=True)
    args = [bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", str(home)]
    # the agent's binary, if it lives in HOME (a user's npm prefix, ~/.local/bin)
    agent = Path(shutil.which(argv[0]) or argv[0]).resolve()
    if home in agent.parents:
        top = home / agent.relative_to(home).parts[0]
        args += ["--ro-bind", str(top), str(top)]
    args += ["--bind", str(config), str(config), "--bind", workdir, workdir, "--bind", str(sdir), str(sdir)]
    args += ["--bind", str(runtime), str(runtime)]  # made by lib/spawn.sh before bwrap runs
    git_binds, git_env = _git_binds(workdir, branch, sdir)  # after sdir's: git-admin is mounted inside it
    return [*args, *git_binds, *git_env, "--", *argv]


def settle(sdir: Path, workdir: str) -> str:
    """After the agent: its objects into the repository, its branch at its worktree's
    HEAD, HEAD attached again. Safe to repeat (lib/spawn.sh did it unless it died
    first). Answers what was done, for the audit."""
    copied = move_objects(sdir, workdir)
    marker = sdir / SETTLE
    if not marker.is_file():
        return f"{copied} objects copied" if copied else ""
    branch = marker.read_text().strip()
    try:
        head = _git(workdir, "rev-parse", "--verify", "HEAD^{commit}")
        _git(workdir, "update-ref", f"refs/heads/{branch}", head)
        _git(workdir, "symbolic-ref", "HEAD", f"refs/heads/{branch}")
    except subprocess.CalledProcessError as exc:
        raise OSError(f"cannot set {branch} to the worktree's HEAD: {exc.stderr.strip()}") from None
    marker.unlink()
    return f"{copied} objects copied, {branch} at {head[:12]}"


def move_objects(sdir: Path, workdir: str) -> int:
    """Copies what the sandboxed agent wrote to its object directory into the
    repository (objects never change: an existing one is left as it is); answers how
    many files were copied. Safe to repeat."""
    src = sdir / OBJECTS
    paths = git_paths(workdir) if src.is_dir() and workdir else None
    if paths is None:
        return 0
    dest, n = paths[1] / "objects", 0
    for f in src.rglob("*"):
        if f.is_file():
            target = dest / f.relative_to(src)
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(f, target)
                n += 1
    return n
