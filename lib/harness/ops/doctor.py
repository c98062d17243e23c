"""scripts/doctor.sh: everything a first run needs, each gap with how to fix it.

Each check answers ok, warn (works, but look) or fail (the loop will not run, or
not safely). The exit code is 0 only when no check fails. Nothing secret is ever
shown: credentials are named by where they come from, a database by host and name.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

# The CLI versions the tests pass on: the pinned one (the Makefile's CLAUDE_CODE_PINNED)
# and the newest release the end-to-end suite last passed on (make test-e2e CLAUDE_CODE_VERSION=latest).
TESTED_CLI = ("2.1.197", "2.1.332")
MIN_BASH = (4, 4)
MIN_PYTHON = (3, 11)
TOOLS = {"git": "git", "jq": "jq", "flock": "util-linux", "setsid": "util-linux", "timeout": "coreutils"}
PACKAGES = ("orjson", "watchdog", "prometheus_client", "starlette", "uvicorn")
CREDENTIAL_VARS = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN")
SKEW_WARN_S = 1.0


@dataclass
class Check:
    name: str
    status: str  # ok, warn, fail
    detail: str
    fix: str = ""


def version_tuple(text: str) -> tuple[int, ...] | None:
    m = re.search(r"(\d+)\.(\d+)\.(\d+)", text)
    return tuple(int(x) for x in m.groups()) if m else None


def check_runtime(bash_version: str) -> list[Check]:
    out = []
    bv = tuple(int(x) for x in re.findall(r"\d+", bash_version)[:2])
    out.append(Check("bash", "ok" if bv >= MIN_BASH else "fail", f"bash {bash_version or '?'}",
                     "" if bv >= MIN_BASH else "install bash 4.4 or newer (apt-get install bash)"))
    pv = sys.version_info[:2]
    out.append(Check("python", "ok" if pv >= MIN_PYTHON else "fail", f"{sys.executable} {sys.version.split()[0]}",
                     "" if pv >= MIN_PYTHON else "Python 3.11 or newer: set PYTHON, or make setup with it"))
    missing = []
    for name in PACKAGES:
        try:
            __import__(name)
        except ImportError:
            missing.append(name)
    out.append(Check("python packages", "fail" if missing else "ok",
                     f"missing: {', '.join(missing)}" if missing else ", ".join(PACKAGES),
                     "make setup (or .venv/bin/pip install -r requirements.txt)" if missing else ""))
    return out


def check_tools(env: Mapping[str, str]) -> list[Check]:
    out = []
    for tool, package in TOOLS.items():
        found = shutil.which(tool, path=env.get("PATH", ""))
        out.append(Check(tool, "ok" if found else "fail", found or "not on PATH",
                         "" if found else f"apt-get install {package}"))
    return out


def check_cli(cfg: Mapping[str, str], env: Mapping[str, str]) -> Check:
    name = cfg.get("CLAUDE_BIN") or "claude"
    found = shutil.which(name, path=env.get("PATH", ""))
    if not found:
        return Check("claude CLI", "fail", f"not found: {name}",
                     "make setup (installs the pinned CLI), or set CLAUDE_BIN to the claude binary")
    try:
        proc = subprocess.run([found, "--version"], capture_output=True, text=True, timeout=20,
                              env=dict(env), stdin=subprocess.DEVNULL)
        text = (proc.stdout.strip().splitlines() or [""])[0][:200]
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Check("claude CLI", "fail", f"{found} --version failed: {exc}", "reinstall it: make setup")
    version = version_tuple(text)
    low, high = (version_tuple(v) for v in TESTED_CLI)
    if proc.returncode != 0 or version is None:
        return Check("claude CLI", "fail", f"{found} --version answered {proc.returncode}: {text!r}",
                     "reinstall it: make setup")
    assert low is not None and high is not None
    if not low <= version <= high:
        return Check("claude CLI", "warn", f"{found}: {text}, outside the tested {TESTED_CLI[0]} to {TESTED_CLI[1]}",
                     f"make test-e2e CLAUDE_CODE_VERSION={'.'.join(map(str, version))} tests it against this version")
    return Check("claude CLI", "ok", f"{found}: {text} (tested {TESTED_CLI[0]} to {TESTED_CLI[1]})")


def check_credentials(env: Mapping[str, str]) -> Check:
    """Where the CLI's credentials come from, never what they are."""
    for var in CREDENTIAL_VARS:
        if env.get(var):
            return Check("credentials", "ok", f"{var} is set")
    config_dir = Path(env.get("CLAUDE_CONFIG_DIR") or Path(env.get("HOME", "/nonexistent")) / ".claude")
    if (config_dir / ".credentials.json").is_file():
        return Check("credentials", "ok", f"{config_dir / '.credentials.json'} exists")
    settings = config_dir / "settings.json"
    try:
        if "apiKeyHelper" in json.loads(settings.read_text(encoding="utf-8")):
            return Check("credentials", "ok", f"an apiKeyHelper in {settings}")
    except (OSError, ValueError):
        pass
    return Check("credentials", "fail", f"none: no {', '.join(CREDENTIAL_VARS)}, no {config_dir}/.credentials.json",
                 "claude setup-token as this user, or ANTHROPIC_API_KEY in the loop's environment "
                 "(the systemd unit's harness.env, mode 0600)")


@dataclass
class RunAs:
    """Whom the checks are for: the loop's user (--user, as the unit names it), else whoever runs them."""

    name: str
    uid: int
    home: str

    @classmethod
    def of(cls, name: str) -> RunAs:
        if not name:
            me = pwd.getpwuid(os.getuid())
            return cls(me.pw_name, me.pw_uid, os.environ.get("HOME") or me.pw_dir)
        try:
            who = pwd.getpwnam(name)
        except KeyError:
            raise ValueError(f"no such user: {name}") from None
        return cls(who.pw_name, who.pw_uid, who.pw_dir)

    def argv(self, *argv: str) -> list[str]:
        """argv as this user: through runuser when we are root and they are not."""
        if self.uid != os.getuid() and os.getuid() == 0 and shutil.which("runuser"):
            return ["runuser", "-u", self.name, "--", *argv]
        return list(argv)


def check_state(state_dir: Path, who: RunAs) -> Check:
    if not state_dir.exists():
        parent = next((p for p in state_dir.parents if p.exists()), Path("/"))
        if os.access(parent, os.W_OK):
            return Check("state directory", "warn", f"{state_dir} does not exist yet; the first loop makes it (0700)")
        return Check("state directory", "fail", f"{state_dir} does not exist and {parent} is not writable",
                     f"mkdir -m 700 {state_dir} && chown {who.name} {state_dir}")
    st = state_dir.stat()
    if st.st_uid != who.uid:
        return Check("state directory", "fail", f"{state_dir} belongs to uid {st.st_uid}, not {who.name} ({who.uid})",
                     f"chown -R {who.name} {state_dir}, or run the loop as its owner")
    if st.st_mode & 0o077:
        return Check("state directory", "fail", f"{state_dir} is mode {st.st_mode & 0o777:o}: others can read it",
                     f"chmod 700 {state_dir}")
    return Check("state directory", "ok", f"{state_dir} (0700, {who.name}'s)")


def check_disk(state_dir: Path, min_free_mb: float) -> Check:
    where = next((p for p in (state_dir, *state_dir.parents) if p.exists()), Path("/"))
    free_mb = shutil.disk_usage(where).free / 2**20
    if min_free_mb > 0 and free_mb < min_free_mb:
        return Check("free disk", "fail", f"{free_mb:.0f} MB free on {where}, MIN_FREE_MB is {min_free_mb:g}",
                     "free space (loopctl.sh worktrees prune, old sessions) or lower MIN_FREE_MB")
    status = "warn" if free_mb < max(10 * min_free_mb, 1024) else "ok"
    return Check("free disk", status, f"{free_mb:.0f} MB free on {where}",
                 "sessions and worktrees grow: keep a few GB free" if status == "warn" else "")


def check_repo(repo: str, base_ref: str, env: Mapping[str, str], who: RunAs) -> Check:
    if not repo:
        return Check("repository", "ok", "REPO_DIR is empty: sessions work in plain directories")

    def git(*args: str) -> subprocess.CompletedProcess[str]:  # as the loop's user: git's ownership check is theirs
        return subprocess.run(who.argv("git", "-C", repo, *args), capture_output=True, text=True, env=dict(env),
                              stdin=subprocess.DEVNULL)

    try:
        top = git("rev-parse", "--show-toplevel")
    except OSError as exc:
        return Check("repository", "fail", f"git cannot run: {exc}", "apt-get install git")
    if top.returncode != 0:
        said = (top.stderr.strip().splitlines() or [""])[0]
        if "dubious ownership" in said:
            return Check("repository", "fail", f"{repo}: git refuses it to {who.name} (dubious ownership)",
                         f"chown -R {who.name} {repo}, or git config --global --add safe.directory {repo} as {who.name}")
        if "Permission denied" in said:
            return Check("repository", "fail", f"{repo}: {who.name} cannot enter it", f"chown -R {who.name} {repo}")
        return Check("repository", "fail", f"{repo} is not a git repository",
                     "set REPO_DIR to a clone (git clone URL DIR)")
    if git("rev-parse", "--verify", "--quiet", f"{base_ref}^{{commit}}").returncode != 0:
        return Check("repository", "fail", f"{repo}: BASE_REF {base_ref!r} names no commit",
                     "set BASE_REF to a branch or commit of REPO_DIR (git branch -a lists them)")
    return Check("repository", "ok", f"{repo}, BASE_REF {base_ref}")


def check_store(state_dir: Path, store: str, lease_s: float, env: Mapping[str, str]) -> list[Check]:
    if store != "postgres":
        return [check_local_store(state_dir, store)]
    from harness.store.postgres import URL_ENV, where

    url = env.get(URL_ENV, "")
    if not url:
        return [Check("store", "fail", "STORE=postgres and DATABASE_URL is not set",
                      "HARNESS_DATABASE_URL=... in the loop's environment (harness.env), or DATABASE_URL in harness.conf")]
    try:
        import psycopg

        with psycopg.connect(url, connect_timeout=5, autocommit=True) as conn:
            t0 = time.time()
            row = conn.execute("SELECT extract(epoch FROM clock_timestamp())::float8, version()").fetchone()
            t1 = time.time()
    except Exception as exc:  # psycopg's errors, a URL that does not parse: one line, no password
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return [Check("store", "fail", f"postgres: {where(url)} is unreachable: {first}",
                      "start the server, or fix DATABASE_URL (docs/scaling.md)")]
    assert row is not None
    skew = float(row[0]) - (t0 + t1) / 2
    limit = max(SKEW_WARN_S, min(30.0, lease_s / 4))
    status = "fail" if abs(skew) >= limit else "warn" if abs(skew) >= SKEW_WARN_S else "ok"
    return [Check("store", "ok", f"postgres: {where(url)}, {str(row[1]).split(',')[0]}"),
            Check("clock", status, f"this host's clock is {-skew:+.3f} s from the database's",
                  "" if status == "ok" else "run an NTP client (chrony, systemd-timesyncd): leases expire by the clock")]


def check_local_store(state_dir: Path, store: str) -> Check:
    from harness.store import StoreError, open_store

    if not (state_dir / "store").exists() and not (state_dir / "queue").is_dir():
        return Check("store", "ok", f"{store}: made at the first loop or queue.sh add")
    try:
        counts: dict[str, int] = {}
        for state in open_store(state_dir).states().values():
            counts[state] = counts.get(state, 0) + 1
    except (StoreError, OSError) as exc:
        return Check("store", "fail", f"{state_dir}: {exc}", "loopctl.sh reindex rebuilds it from the files")
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "empty"
    return Check("store", "ok", f"{store}: {summary}")


def check_permissions(cfg: Mapping[str, str], env: Mapping[str, str]) -> list[Check]:
    out = []
    sandbox = cfg.get("SANDBOX") or ""
    if sandbox == "bwrap":
        found = shutil.which("bwrap", path=env.get("PATH", ""))
        proc = subprocess.run([found, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--", "true"],
                              capture_output=True, text=True, stdin=subprocess.DEVNULL) if found else None
        if proc is None:
            out.append(Check("sandbox", "fail", "SANDBOX=bwrap and bwrap is not on PATH", "apt-get install bubblewrap"))
        elif proc.returncode != 0:
            out.append(Check("sandbox", "fail", f"bwrap cannot make a sandbox here: {proc.stderr.strip()[:200]}",
                             "allow unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1; "
                             "Ubuntu: an AppArmor profile for bwrap)"))
        elif os.getuid() == 0:
            out.append(Check("sandbox", "warn", "SANDBOX=bwrap as root: an agent that gets root inside can leave it "
                             "through /proc", "run the loop as a user of its own (make install --user NAME)"))
        else:
            out.append(Check("sandbox", "ok", f"bwrap ({found}) makes a sandbox"))
    if cfg.get("SKIP_PERMISSIONS") == "true" and sandbox != "bwrap":
        out.append(Check("permissions", "warn", "SKIP_PERMISSIONS=true without a sandbox: an agent may write "
                         "anything this user can", "SANDBOX=bwrap (docs/operations.md), and a user of its own"))
    else:
        out.append(Check("permissions", "ok", "SKIP_PERMISSIONS=true inside the sandbox" if sandbox == "bwrap" and
                         cfg.get("SKIP_PERMISSIONS") == "true" else
                         f"the CLI asks ({cfg.get('PERMISSION_MODE') or 'its default mode'})"))
    return out


def run_checks(cfg: Mapping[str, str], env: Mapping[str, str], bash_version: str, who: RunAs) -> list[Check]:
    state_dir = Path(cfg["STATE_DIR"])
    env = {**env, "HOME": who.home}  # the loop's user's: their ~/.claude holds their credentials
    steps: list[Callable[[], list[Check] | Check]] = [
        lambda: check_runtime(bash_version), lambda: check_tools(env), lambda: check_cli(cfg, env),
        lambda: check_credentials(env), lambda: check_state(state_dir, who),
        lambda: check_disk(state_dir, float(cfg.get("MIN_FREE_MB") or 0)),
        lambda: check_repo(cfg.get("REPO_DIR", ""), cfg.get("BASE_REF") or "HEAD", env, who),
        lambda: check_store(state_dir, cfg.get("STORE") or "sqlite", float(cfg.get("LEASE_S") or 120), env),
        lambda: check_permissions(cfg, env)]
    out: list[Check] = []
    for step in steps:
        got = step()
        out.extend(got if isinstance(got, list) else [got])
    return out


def render(checks: list[Check]) -> str:
    lines = []
    for c in checks:
        lines.append(f"{c.status.upper() if c.status != 'ok' else 'ok':<5} {c.name}: {c.detail}")
        if c.fix and c.status != "ok":
            lines.append(f"      fix: {c.fix}")
    failed = sum(c.status == "fail" for c in checks)
    lines.append("all checks pass" if not failed else f"{failed} check(s) failed")
    return "\n".join(lines)


def main(cfg: Mapping[str, str], bash_version: str, as_json: bool, user: str = "") -> int:
    checks = run_checks(cfg, os.environ, bash_version, RunAs.of(user))
    ok = not any(c.status == "fail" for c in checks)
    if as_json:
        print(json.dumps({"ok": ok, "checks": [asdict(c) for c in checks]}, indent=1))
    else:
        print(render(checks))
    return 0 if ok else 1
