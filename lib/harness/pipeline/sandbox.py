"""SANDBOX=bwrap: each agent under bubblewrap.

Inside, the whole system is read-only (/ bound read-only), $HOME is an empty tmpfs
(so ~/.ssh, ~/.aws and other repositories are not there), and the state directory
is an empty tmpfs too (no harness.db, no other session). Writable are only: the
session's worktree, its box (state/sessions/<sid>/box/: TMPDIR, and the git
directories below), and its runtime directory (state/run/<12 hex>: the CLI's
socket). The CLI gets a config directory of the session's own, box/claude
(CLAUDE_CONFIG_DIR), with copies of the user's settings and state file (its
primaryApiKey left out) and, in a fix round, of the conversation it resumes; the
user's .credentials.json is bound into it read-only, never copied (the CLI cannot
refresh an OAuth token from inside). Nothing the agent writes there reaches the
user's ~/.claude or another session. Network stays (the API). Signals still reach the agent: no new
session, no PID namespace. The session directory itself, where the harness keeps
what it acts on (meta.json, verify.argv, settle.json), is out of the agent's reach.

Git: the main repository's .git is read-only, its refs, objects and hooks included,
and so are the worktree's .git file and its admin directory's commondir and gitdir
(git outside the sandbox follows them: the agent cannot point it elsewhere). The
agent's git writes the worktree's admin directory (HEAD, index) at box/git-admin
(GIT_DIR, with GIT_COMMON_DIR and GIT_WORK_TREE), and its new objects to
box/git-objects (GIT_OBJECT_DIRECTORY, the repository's objects its alternate). The
worktree's HEAD is detached at the branch's commit before the agent starts. When it
has exited, settle() (the wrapper runs it, lib/spawn.sh, and finalize again as a
backstop) imports the objects (regular files named as git names objects, nothing
else) and sets the branch to the worktree's HEAD, then attaches HEAD again, with
git's hooks and fsmonitor off.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from harness import jsonio
from harness.pipeline import transcript

BOX = "box"  # the one directory of the session the agent may write
OBJECTS = "git-objects"
ADMIN = "git-admin"  # where the worktree's admin directory is writable, inside the sandbox
SETTLE = "settle.json"  # what settle() does once the agent has exited (written at the start)
SETTLE_ARGV = "settle.argv"  # the wrapper's call of settle() (lib/spawn.sh)
SAFE_GIT = ("-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false")
OBJECT_NAME = re.compile(r"^(?:[0-9a-f]{2}/[0-9a-f]{38,62}|pack/pack-[0-9a-f]{40,64}\.(?:pack|idx|rev))$")


def git_paths(workdir: str) -> tuple[Path, Path] | None:
    """(the worktree's admin directory, the repository's common .git), or None
    outside a git worktree."""
    try:
        out = subprocess.run(["git", *SAFE_GIT, "-C", workdir, "rev-parse", "--path-format=absolute", "--git-dir",
                              "--git-common-dir"], capture_output=True, text=True, check=True,
                             stdin=subprocess.DEVNULL).stdout.split("\n")
    except (OSError, subprocess.CalledProcessError):
        return None
    return (Path(out[0]), Path(out[1])) if len(out) >= 2 and out[0] and out[1] else None


def _git(env: dict[str, str], *args: str) -> str:
    return subprocess.run(["git", *SAFE_GIT, *args], capture_output=True, text=True, check=True,
                          stdin=subprocess.DEVNULL, env={**os.environ, **env}).stdout.strip()


def _identity(workdir: str) -> list[str]:
    """The commit identity ~/.gitconfig gives outside (it is hidden inside), as git's variables."""
    out: list[str] = []
    for key, names in (("user.name", ("GIT_AUTHOR_NAME", "GIT_COMMITTER_NAME")),
                       ("user.email", ("GIT_AUTHOR_EMAIL", "GIT_COMMITTER_EMAIL"))):
        try:
            value = _git({}, "-C", workdir, "config", key)
        except (OSError, subprocess.CalledProcessError):
            value = "harness agent" if key == "user.name" else "agent@harness.invalid"
        for name in names:
            out += ["--setenv", name, value]
    return out


def _git_binds(workdir: str, branch: str, sdir: Path) -> tuple[list[str], list[str]]:
    """bwrap's binds and environment for a worktree's git; HEAD detached; settle.json."""
    paths = git_paths(workdir)
    if paths is None:
        return [], []
    admin, common = paths
    where = {"GIT_DIR": str(admin), "GIT_COMMON_DIR": str(common), "GIT_WORK_TREE": workdir}
    if branch:
        try:
            _git(where, "update-ref", "--no-deref", "HEAD", _git(where, "rev-parse", "HEAD"))
        except subprocess.CalledProcessError as exc:
            raise OSError(f"cannot detach the worktree's HEAD: {exc.stderr.strip()}") from None
    box = sdir / BOX
    objects, alt = box / OBJECTS, box / ADMIN
    objects.mkdir(mode=0o700, parents=True, exist_ok=True)
    alt.mkdir(mode=0o700, exist_ok=True)
    jsonio.write_json(sdir / SETTLE, {"branch": branch, "admin": str(admin), "common": str(common),
                                      "workdir": workdir})
    binds = ["--ro-bind", str(common), str(common), "--bind", str(admin), str(alt)]
    for name in ("commondir", "gitdir"):  # git outside follows them: never the agent's to change
        if (admin / name).is_file():
            binds += ["--ro-bind", str(admin / name), str(alt / name)]
    if (Path(workdir) / ".git").is_file():
        binds += ["--ro-bind", str(Path(workdir) / ".git"), str(Path(workdir) / ".git")]
    env = ["--setenv", "GIT_DIR", str(alt), "--setenv", "GIT_COMMON_DIR", str(common),
           "--setenv", "GIT_WORK_TREE", workdir, "--setenv", "GIT_OBJECT_DIRECTORY", str(objects),
           "--setenv", "GIT_ALTERNATE_OBJECT_DIRECTORIES", str(common / "objects"), *_identity(workdir)]
    return binds, env


def own_config(sdir: Path, resume: Path | None) -> tuple[Path, list[str]]:
    """box/claude: the session's CLI config directory (module docstring), and the
    binds it needs (the credentials, read-only)."""
    config = sdir / BOX / "claude"
    config.mkdir(mode=0o700, parents=True, exist_ok=True)
    user = transcript.config_dir()
    state_file = user / ".claude.json" if os.environ.get("CLAUDE_CONFIG_DIR") else user.parent / ".claude.json"
    if (user / "settings.json").is_file() and not (config / "settings.json").exists():
        transcript.copy_regular(user / "settings.json", config / "settings.json")
    if state_file.is_file() and not (config / ".claude.json").exists():
        doc = jsonio.read_dict(state_file) or {}
        doc.pop("primaryApiKey", None)  # a secret: never written anywhere
        jsonio.write_json(config / ".claude.json", doc)
    binds: list[str] = []
    credentials = user / ".credentials.json"
    if credentials.is_file():
        (config / ".credentials.json").touch(mode=0o600)  # the bind's mount point: empty
        binds = ["--ro-bind", str(credentials), str(config / ".credentials.json")]
    if resume is not None:
        meta = jsonio.read_dict(resume.parent / "meta.json") or {}
        at = str(meta.get("transcript_at") or "")
        if at and ".." not in Path(at).parts and resume.is_file():
            dest = config / "projects" / at
            dest.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            transcript.copy_regular(resume, dest)
    return config, binds


def wrap(argv: list[str], workdir: str, branch: str, sdir: Path, runtime: Path,
         resume: Path | None = None) -> list[str]:
    """The agent's command line under bwrap (module docstring); writes settle.argv."""
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        raise FileNotFoundError("SANDBOX=bwrap and bwrap is not installed (apt-get install bubblewrap)")
    home = Path(os.environ.get("HOME") or "/root")
    state_dir = sdir.parent.parent
    config, config_binds = own_config(sdir, resume)
    tmp = sdir / BOX / "tmp"
    tmp.mkdir(mode=0o700, parents=True, exist_ok=True)
    args = [bwrap, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", str(home),
            "--tmpfs", str(state_dir)]
    # the agent's binary, if it lives in HOME (a user's npm prefix, ~/.local/bin)
    agent = Path(shutil.which(argv[0]) or argv[0]).resolve()
    if home in agent.parents:
        top = home / agent.relative_to(home).parts[0]
        args += ["--ro-bind", str(top), str(top)]
    args += ["--bind", workdir, workdir, "--bind", str(sdir / BOX), str(sdir / BOX), "--bind", str(runtime), str(runtime),
             *config_binds]
    # what the agent's command line names in the session directory (its prompt file): read-only
    args += [x for a in argv if a.startswith(f"{sdir}/") and Path(a).is_file() for x in ("--ro-bind", a, a)]
    git_binds, git_env = _git_binds(workdir, branch, sdir)
    _write_argv(sdir / SETTLE_ARGV, ["env", f"PYTHONPATH={Path(__file__).resolve().parents[2]}", sys.executable,
                                     "-m", "harness", "sandbox-settle", "--session-dir", str(sdir)])
    env = ["--setenv", "TMPDIR", str(tmp), "--setenv", "CLAUDE_CODE_TMPDIR", str(tmp),
           "--setenv", "CLAUDE_CONFIG_DIR", str(config), *git_env]
    # the two empty tmpfs read-only too, once every bind below them is in place
    ro = ["--remount-ro", str(home), "--remount-ro", str(state_dir)]
    return [*args, *git_binds, *ro, *env, "--", *argv]


def _write_argv(path: Path, argv: list[str]) -> None:
    jsonio.write_atomic(path, b"".join(a.encode() + b"\0" for a in argv))


def settle(sdir: Path) -> str:
    """After the agent: its objects into the repository, its branch at its worktree's
    HEAD, HEAD attached again; settle.json removed once done (safe to repeat: the
    wrapper did it unless it died first). Answers what was done, for the audit."""
    plan = jsonio.read_dict(sdir / SETTLE)
    if not plan:
        return ""
    common, branch = Path(str(plan["common"])), str(plan.get("branch") or "")
    copied = import_objects(sdir / BOX / OBJECTS, common / "objects")
    done = f"{copied} objects imported"
    if branch:
        where = {"GIT_DIR": str(plan["admin"]), "GIT_COMMON_DIR": str(common), "GIT_WORK_TREE": str(plan["workdir"])}
        try:
            head = _git(where, "rev-parse", "--verify", "HEAD^{commit}")
            _git(where, "update-ref", f"refs/heads/{branch}", head)
            _git(where, "symbolic-ref", "HEAD", f"refs/heads/{branch}")
        except subprocess.CalledProcessError as exc:
            raise OSError(f"cannot set {branch} to the worktree's HEAD: {exc.stderr.strip()}") from None
        done += f", {branch} at {head[:12]}"
    (sdir / SETTLE).unlink()
    shutil.rmtree(sdir / BOX / OBJECTS, ignore_errors=True)
    return done


def import_objects(src: Path, dest: Path) -> int:
    """The regular files under src named as git names objects and packs, copied into
    dest (write, then rename) unless there already; symbolic links, info/ and anything
    else are left. Answers how many were copied."""
    n = 0
    for root, _dirs, names in os.walk(src):
        for name in names:
            f = Path(root) / name
            rel = f.relative_to(src).as_posix()
            if not OBJECT_NAME.match(rel) or not f.is_file() or f.is_symlink():
                continue
            target = dest / rel
            if target.exists():
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_name(f".{name}.{os.getpid()}.tmp")
            with open(os.open(f, os.O_RDONLY | os.O_NOFOLLOW), "rb") as fin, open(tmp, "xb") as fout:
                shutil.copyfileobj(fin, fout)
            os.chmod(tmp, 0o444)
            os.replace(tmp, target)
            n += 1
    return n
