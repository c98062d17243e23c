"""The start of a session, in one helper call: claim (through the gate), the
session directory, the worktree, the rendered prompt, the argv and meta.json.

The loop then reads the argv back (NUL-separated, never a string) and spawns it.
One process instead of a claim, a render and a dozen jq calls is what keeps the
harness's own cost per session small (tests/bench/bench_overhead.py).
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import jsonio
from harness.agents import Limits, agent_for, limits_for
from harness.pipeline import gate, render, sandbox
from harness.pipeline.policy import Policy, iso
from harness.serve import reply
from harness.store import Lease, StoreDownError, open_store
from harness.store.base import host_name

ARGV_FILE = "spawn.argv"
VERIFY_ARGV_FILE = "verify.argv"
BRANCH_PREFIX = "harness"


@dataclass
class Started:
    item_id: str
    attempt: int
    workdir: str
    branch: str
    timeout_s: float
    spawn_error: str = ""

    def line(self) -> str:
        """One line for the loop (serve/reply.py)."""
        return reply.line(self.item_id, self.attempt, f"{self.timeout_s:g}", "1" if self.spawn_error else "0",
                          self.workdir, self.branch)


def _limits(item: dict[str, Any], p: Policy) -> Limits:
    return limits_for(item, p.MAX_TURNS, p.MAX_BUDGET_USD, p.MODEL, p.ALLOWED_TOOLS, p.PERMISSION_MODE,
                      p.SKIP_PERMISSIONS == "true")


def argv_for(item: dict[str, Any], p: Policy, uuid: str, bootstrap: Path, resume: bool = False) -> list[str]:
    """The agent's command line (agents/): a new session uuid, or a resume of the
    conversation uuid (a fix round); the item's limits win over the configuration's."""
    limits = _limits(item, p)
    agent = agent_for()
    if resume:
        return agent.resume_argv(p.CLAUDE_BIN, uuid, bootstrap, limits)
    return agent.argv(p.CLAUDE_BIN, uuid, bootstrap, limits)


@dataclass(frozen=True)
class Verify:
    """The command that proves a succeeded session's work, run by the session's
    wrapper in the worktree (lib/spawn.sh), in a process group of its own."""

    cmd: str
    timeout_s: float

    def argv(self, kill_grace_s: float) -> list[str]:
        """timeout(1) stops the whole group: TERM at the limit, KILL kill_grace_s later;
        it exits 124 when the limit was reached."""
        return ["timeout", f"--kill-after={max(1.0, kill_grace_s):g}", f"{self.timeout_s:g}", "bash", "-c", self.cmd]


def verify_for(item: dict[str, Any], p: Policy) -> Verify | None:
    """The item's verify command over VERIFY_CMD; None when neither names one."""
    cmd = item.get("verify") or p.VERIFY_CMD
    if not isinstance(cmd, str) or not cmd.strip():
        return None
    timeout = item.get("verify_timeout_s")
    return Verify(cmd, float(timeout if isinstance(timeout, (int, float)) else p.VERIFY_TIMEOUT_S))


def _write_argv(path: Path, argv: list[str]) -> None:
    """argv NUL-separated, for the loop's mapfile (never a string to split)."""
    jsonio.write_atomic(path, b"".join(a.encode("utf-8", "surrogateescape") + b"\0" for a in argv))


def _git(repo: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-C", repo, *args], capture_output=True, text=True, check=False)


def branch_name(repo: str, item_id: str, attempt: int, sid: str) -> str:
    """harness/<item>/<attempt>; a name git would refuse, or one already taken, gets the session in it."""
    name = f"{BRANCH_PREFIX}/{item_id}/{attempt}"
    if _git(repo, "check-ref-format", "--branch", name).returncode != 0:
        name = f"{BRANCH_PREFIX}/{sid}"
    if _git(repo, "show-ref", "--verify", "--quiet", f"refs/heads/{name}").returncode == 0:
        name = f"{name}-{sid[4:12]}"
    return name


def base_ref(p: Policy) -> str:
    """What a new session's branch starts from: BASE_REF; with the merge queue on and
    BASE_REF left at HEAD, the target (the remote's, fetched by the last landing,
    with PUSH_REMOTE), so that work builds on what has landed, dependencies included."""
    if p.INTEGRATE == "off" or p.BASE_REF != "HEAD" or not p.TARGET_BRANCH:
        return p.BASE_REF
    remote = f"refs/remotes/{p.PUSH_REMOTE}/{p.TARGET_BRANCH}"
    if p.PUSH_REMOTE and _git(p.REPO_DIR, "rev-parse", "--verify", "--quiet", remote).returncode == 0:
        return remote
    return f"refs/heads/{p.TARGET_BRANCH}"


def make_worktree(state_dir: Path, sid: str, item_id: str, attempt: int, p: Policy) -> tuple[str, str, str]:
    """(workdir, branch, error): a git worktree of REPO_DIR, or a plain directory without one."""
    root = state_dir / "worktrees"
    root.mkdir(mode=0o700, exist_ok=True)
    workdir = root / sid
    if not p.REPO_DIR:
        workdir.mkdir(mode=0o700)
        return str(workdir), "", ""
    branch = branch_name(p.REPO_DIR, item_id, attempt, sid)
    done = _git(p.REPO_DIR, "worktree", "add", "-q", "-b", branch, str(workdir), base_ref(p))
    if done.returncode != 0:
        return str(workdir), "", "git worktree add failed: " + " ".join((done.stderr or done.stdout).split())
    return str(workdir), branch, ""


def fix_worktree(fix: dict[str, Any], p: Policy) -> tuple[str, str, str]:
    """(workdir, branch, error) of a fix round: the worktree of the session it resumes,
    made again at the same path from its branch when it is gone (the agent finds its
    conversation by that path)."""
    workdir, branch = str(fix.get("workdir") or ""), str(fix.get("branch") or "")
    if workdir and Path(workdir).is_dir():
        return workdir, branch, ""
    if not (p.REPO_DIR and branch and workdir):
        return workdir, branch, f"the fix round's working directory {workdir or '?'} is gone"
    done = _git(p.REPO_DIR, "worktree", "add", "-q", workdir, branch)
    if done.returncode != 0:
        return workdir, branch, "git worktree add failed: " + " ".join((done.stderr or done.stdout).split())
    return workdir, branch, ""


def _fix_values(fix: dict[str, Any], p: Policy) -> dict[str, str]:
    """The fix prompt's values: the failure, and for a branch that would not land on
    the merge queue's target, what to do first."""
    target = str(fix.get("target") or "")
    why = (f"merged onto {target} (the merge queue's target), it does not pass" if target
           else "its verify command failed")
    verb = "rebase" if fix.get("mode") == "rebase" else "merge"
    hint = (f"First bring your branch up to {target}: run `git {verb} {target}` in the working directory and "
            "resolve every conflict. " if target else "")
    if target and fix.get("brought_up"):
        hint = f"Your branch already has {target} merged in: this is the tree that failed. "
    return {
        "VERIFY_CMD": str(fix.get("cmd") or ""), "VERIFY_EXIT": str(fix.get("exit_code")),
        "VERIFY_OUTPUT": str(fix.get("output") or "(no output)").rstrip(), "FIX_ROUND": str(fix.get("round") or 1),
        "FIX_ROUNDS": str(p.FIX_ROUNDS), "FIX_WHY": why, "FIX_HINT": hint,
    }


def _prepare(state_dir: Path, sdir: Path, sid: str, item: dict[str, Any], attempt: int, p: Policy,
             fix: dict[str, Any] | None) -> tuple[str, str, str]:
    """(workdir, branch, error): the worktree (the resumed session's for a fix round)
    and the rendered prompt."""
    item_id = str(item["id"])
    try:
        workdir, branch, error = fix_worktree(fix, p) if fix else make_worktree(state_dir, sid, item_id, attempt, p)
    except OSError as exc:
        workdir, branch, error = "", "", f"cannot create the session's directory: {exc}"
    if error:
        return workdir, branch, error
    values = {"SESSION_ID": sid, "WORKTREE": workdir, "BRANCH": branch or "none", **(_fix_values(fix, p) if fix else {})}
    try:
        render.prepare(item, Path(p.BOOTSTRAP), sdir, values, Path(p.FIX_PROMPT) if fix else None)
    except (OSError, UnicodeDecodeError) as exc:
        return workdir, branch, f"rendering the prompt failed: {exc}"
    return workdir, branch, ""


def start(state_dir: Path, sid: str, worker: str, loop_pid: int, p: Policy, now: float) -> Started | gate.Blocked | None:
    """Claim, then the session directory, its worktree, its prompt, its argv (a fix
    round resumes the conversation it fixes) and meta.json."""
    try:
        store = open_store(state_dir)
        got = gate.claim_gated(store, sid, worker, p, now)
    except StoreDownError as exc:  # the database server: claims wait for it, sessions go on
        return gate.Blocked("store", f"the store cannot be reached: {exc}", until=now + gate.STORE_RECHECK_S)
    if not isinstance(got, Lease):
        return got
    item = got.item or {}
    item_id = str(item["id"])
    attempt = int(item.get("attempts") or 0) + 1
    fix = item.get("fix") if isinstance(item.get("fix"), dict) and item["fix"].get("agent_session_id") else None
    if fix and fix.get("host") not in (None, host_name()):
        # a fix round whose host is gone (store/postgres.py routes it there while it beats):
        # its conversation and worktree are out of reach; a new session starts from the item
        store.audit("fix.moved", item=item_id, session=sid, from_host=fix.get("host"), round=fix.get("round"),
                    reason="the host that ran it is gone; a new conversation starts here")
        fix = None
    sdir = state_dir / "sessions" / sid
    sdir.mkdir(mode=0o700, parents=True)
    store.audit("item.claimed", item=item_id, session=sid, attempt=attempt, **{"from": "pending"}, to="running",
                fix_round=fix.get("round") if fix else None)
    timeout = item.get("timeout_s")
    timeout_s = float(timeout if isinstance(timeout, (int, float)) else p.SESSION_TIMEOUT_S)
    uuid = str(fix["agent_session_id"]) if fix else sid.removeprefix("ses_")
    meta: dict[str, Any] = {
        "session_id": sid, "claude_session_id": uuid, "item_id": item_id, "title": item.get("title"),
        "attempt": attempt, "lease_token": got.token, "host": host_name(), "loop_pid": loop_pid, "cwd": "", "branch": "",
        "model": item.get("model") or p.MODEL or "", "started_at": iso(now), "started_epoch": round(now, 6), "argv": [],
    }
    if item.get("run"):
        meta["run"] = item["run"]
    if fix:
        meta.update(fix_round=fix.get("round"), fix_of=fix.get("session"))
    workdir, branch, error = _prepare(state_dir, sdir, sid, item, attempt, p, fix)
    if error:
        jsonio.write_atomic(sdir / "spawn_error", (error + "\n").encode())
        jsonio.write_json(sdir / "meta.json", meta)
        return Started(item_id, attempt, "", "", timeout_s, spawn_error=error)
    argv = argv_for(item, p, uuid, sdir / "prompt.md", resume=fix is not None)
    if p.SANDBOX == "bwrap":
        try:
            resume = state_dir / "sessions" / str(fix.get("session") or "?") / "transcript.jsonl" if fix else None
            argv = sandbox.wrap(argv, workdir, branch, sdir, state_dir / "run" / sid.removeprefix("ses_")[:12],
                                resume)
        except OSError as exc:
            jsonio.write_atomic(sdir / "spawn_error", (f"the sandbox: {exc}\n").encode())
            jsonio.write_json(sdir / "meta.json", {**meta, "cwd": workdir, "branch": branch})
            return Started(item_id, attempt, "", "", timeout_s, spawn_error=f"the sandbox: {exc}")
    meta.update(cwd=workdir, branch=branch, argv=argv, allowed_tools=_limits(item, p).allowed_tools)
    _write_argv(sdir / ARGV_FILE, argv)
    verify = verify_for(item, p)
    if verify is not None:
        meta["verify"] = {"cmd": verify.cmd, "timeout_s": verify.timeout_s}
        _write_argv(sdir / VERIFY_ARGV_FILE, verify.argv(p.KILL_GRACE_S))
    jsonio.write_json(sdir / "meta.json", meta)
    return Started(item_id, attempt, workdir, branch, timeout_s)
