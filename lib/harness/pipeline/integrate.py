"""The merge queue: verified work lands on TARGET_BRANCH, one item at a time.

With INTEGRATE (merge, rebase or squash) a succeeded session's item is `verified`,
not yet `succeeded`. The loop runs `python -m harness integrate` as a process of
its own (lib/integrate.sh); each run lands at most one item, holding
state/integrate.lock for its whole run, so one integration runs at a time however
many loops share the state. For the best ready item (verified; its dependencies
succeeded, so they land first; then priority and age):

1. the target's tip: refs/heads/TARGET_BRANCH, or with PUSH_REMOTE the remote's
   branch, fetched;
2. a branch already on it (a landing whose bookkeeping a crash cut short) succeeds
   without being merged again;
3. in a scratch worktree detached at the tip, the item's branch is merged
   (--no-ff), rebased or squashed onto it; the main checkout is never touched;
4. a conflict, or a red verify on the merged tree, is a fix round: the item goes
   back to pending, and the round resumes the agent's conversation with the
   failure and the instruction to bring its branch up to the target first;
5. green: pushed to PUSH_REMOTE (never forced), then the local target ref moved by
   compare-and-swap (`git update-ref <ref> <new> <old>`); a rejected push or a
   moved ref starts again from 1 (INTEGRATE_TRIES times);
6. the item succeeds (audit `item.integrated`, with the commit).

No commit is lost: the item's branch stays, the target only ever moves forward to
a commit that contains it, and a kill at any point leaves the target before or
after the landing, never between (the ref moves in one step).
"""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import jsonio
from harness.pipeline import start
from harness.pipeline.policy import Policy
from harness.sidecar.model import proc_start
from harness.store import Store, StoreError, open_store, queue
from harness.store.base import host_name

MODES = ("merge", "rebase", "squash")
TRIES = 3
OUTPUT_CHARS = 4000
LOCK_FILE = "integrate.lock"
VERIFY_PID_FILE = "integrate.verify.pid"


class IntegrateError(Exception):
    """The merge queue cannot run as configured (one line for a person)."""


@dataclass
class Landing:
    """What the item's last session left to land: its branch, and the conversation a
    fix round resumes."""

    item: dict[str, Any]
    branch: str
    session: str
    agent_session_id: str
    workdir: str


def check(p: Policy) -> None:
    """Refuses a configuration the merge queue cannot work with (the loop asks at start)."""
    if p.INTEGRATE == "off":
        return
    if p.INTEGRATE not in MODES:
        raise IntegrateError(f"INTEGRATE must be off, merge, rebase or squash, not {p.INTEGRATE!r}")
    if not p.REPO_DIR or not p.TARGET_BRANCH:
        raise IntegrateError("INTEGRATE needs REPO_DIR and TARGET_BRANCH")
    if _git(p.REPO_DIR, "check-ref-format", "--branch", p.TARGET_BRANCH).returncode != 0:
        raise IntegrateError(f"TARGET_BRANCH {p.TARGET_BRANCH!r} is not a branch name")
    head = _git(p.REPO_DIR, "symbolic-ref", "--quiet", "--short", "HEAD").stdout.strip()
    if head == p.TARGET_BRANCH:
        raise IntegrateError(f"TARGET_BRANCH {p.TARGET_BRANCH} is checked out in {p.REPO_DIR}: the merge queue never "
                             "touches a working tree; check out another branch there, or pick another target")
    if checked_out(p.REPO_DIR, p.TARGET_BRANCH):
        raise IntegrateError(f"TARGET_BRANCH {p.TARGET_BRANCH} is checked out in a worktree of {p.REPO_DIR} "
                             "(git worktree list): the merge queue never touches a working tree")
    if p.PUSH_REMOTE and _git(p.REPO_DIR, "remote", "get-url", p.PUSH_REMOTE).returncode != 0:
        raise IntegrateError(f"PUSH_REMOTE {p.PUSH_REMOTE!r} is not a remote of {p.REPO_DIR}")
    if not p.PUSH_REMOTE and _rev(p.REPO_DIR, f"refs/heads/{p.TARGET_BRANCH}") is None:
        raise IntegrateError(f"TARGET_BRANCH {p.TARGET_BRANCH} does not exist in {p.REPO_DIR}")


def checked_out(repo: str | Path, branch: str) -> bool:
    """Whether some worktree of repo has branch checked out."""
    listed = _git(repo, "worktree", "list", "--porcelain").stdout
    return f"branch refs/heads/{branch}\n" in listed + "\n"


def target_ref(p: Policy) -> str:
    """The target as a person (or an agent in a worktree) names it: the remote's, with PUSH_REMOTE."""
    return f"{p.PUSH_REMOTE}/{p.TARGET_BRANCH}" if p.PUSH_REMOTE else p.TARGET_BRANCH


def _git(repo: str | Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, check=False)


def _rev(repo: str | Path, ref: str) -> str | None:
    done = _git(repo, "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")
    return done.stdout.strip() if done.returncode == 0 else None


def _words(done: subprocess.CompletedProcess[str]) -> str:
    return " ".join((done.stderr or done.stdout).split())[:OUTPUT_CHARS]


@contextmanager
def _lock(state_dir: Path) -> Iterator[bool]:
    """The one integration at a time: True when this process holds the lock."""
    fd = os.open(state_dir / LOCK_FILE, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


@contextmanager
def _fleet_lock(state_dir: Path, held: bool) -> Iterator[bool]:
    """The one integration at a time across the fleet (a shared store's lock; one host's
    store has none to take): True when this host may integrate now."""
    if not held:
        yield False
        return
    with open_store(state_dir).exclusive("integrate") as fleet_held:
        yield fleet_held


def landing_of(state_dir: Path, item: dict[str, Any]) -> Landing | None:
    """The branch and conversation of the item's last session (its meta.json)."""
    history = [h for h in item.get("history") or [] if isinstance(h, dict) and h.get("session_id")]
    if not history:
        return None
    sid = str(history[-1]["session_id"])
    meta = jsonio.read_dict(state_dir / "sessions" / sid / "meta.json") or {}
    branch = str(meta.get("branch") or "")
    if not branch:
        return None
    return Landing(item, branch, sid, str(meta.get("claude_session_id") or ""), str(meta.get("cwd") or ""))


def next_ready(store: Store) -> dict[str, Any] | None:
    """The verified item to land first: its dependencies have landed; then priority, age, id.
    On a store the fleet shares, only an item whose last session ran here: its branch is
    in this host's clone (each host lands its own work, one host at a time)."""
    states = store.states()
    rows = [r for r in store.items(["verified"]) if all(states.get(d) == "succeeded" for d in r.get("depends_on") or [])]
    if getattr(store, "shared", False):
        rows = [r for r in rows if landing_of(store.state_dir, store.get(str(r["id"]))[1]) is not None]
    rank = {p: i for i, p in enumerate(queue.PRIORITIES)}
    rows.sort(key=lambda r: (rank.get(str(r.get("priority")), 2), str(r.get("created_at") or ""), str(r.get("id"))))
    return rows[0] if rows else None


def settle_unlanded(state_dir: Path) -> int:
    """With the merge queue off, verified items (left by a run that had it on) are done
    as they would have been without it: succeeded, their work on their branch."""
    store = open_store(state_dir)
    done = 0
    for row in store.items(["verified"]):
        _, item = store.get(str(row["id"]))
        landing = landing_of(state_dir, item)
        where = f"its branch {landing.branch} holds the work" if landing else "no branch"
        if _settle(store, item, "succeeded", "succeeded", f"verified; not landed: the merge queue is off ({where})") \
                == "landed":
            done += 1
    return done


def integrate_one(state_dir: Path, p: Policy, now: float | None = None) -> str:
    """Lands (or sends back for a fix round) one verified item: "landed", "fix",
    "quarantined", "nothing" (none ready) or "busy" (another integration runs). With
    the merge queue off: verified items left by an earlier run succeed, unlanded."""
    if p.INTEGRATE == "off":
        return f"settled {settle_unlanded(state_dir)}"
    check(p)
    with _lock(state_dir) as held, _fleet_lock(state_dir, held) as fleet_held:
        if not (held and fleet_held):
            return "busy"
        _stop_leftover_verify(state_dir)
        store = open_store(state_dir)
        row = next_ready(store)
        if row is None:
            return "nothing"
        _, item = store.get(str(row["id"]))
        landing = landing_of(state_dir, item)
        if landing is None:
            return _settle(store, item, "quarantined", "integrate_failed", "no branch to integrate (was REPO_DIR set?)")
        try:
            return _land(state_dir, store, p, landing, time.time() if now is None else now)
        except (ValueError, TypeError, KeyError, UnicodeError) as exc:
            # something about this item; the ones behind it must not wait for a person
            store.audit("integrate.error", item=item["id"], error=f"{type(exc).__name__}: {exc}")
            return _settle(store, item, "quarantined", "integrate_failed",
                           f"the merge queue could not integrate it: {type(exc).__name__}: {exc}")


def _target_tip(p: Policy) -> tuple[str | None, str]:
    """(the target's tip, an error): the remote's, fetched, with PUSH_REMOTE."""
    if p.PUSH_REMOTE:
        tracking = f"refs/remotes/{p.PUSH_REMOTE}/{p.TARGET_BRANCH}"
        done = _git(p.REPO_DIR, "fetch", "--quiet", p.PUSH_REMOTE, f"+refs/heads/{p.TARGET_BRANCH}:{tracking}")
        if done.returncode != 0:
            return None, f"git fetch {p.PUSH_REMOTE} {p.TARGET_BRANCH} failed: {_words(done)}"
        return _rev(p.REPO_DIR, tracking), ""
    return _rev(p.REPO_DIR, f"refs/heads/{p.TARGET_BRANCH}"), ""


def _land(state_dir: Path, store: Store, p: Policy, landing: Landing, now: float) -> str:
    item_id = str(landing.item["id"])
    for _ in range(TRIES):
        tip, error = _target_tip(p)
        if tip is None:
            return _later(store, landing, error or "the target has no commit")
        head = _rev(p.REPO_DIR, f"refs/heads/{landing.branch}")
        if head is None:
            return _settle(store, landing.item, "quarantined", "integrate_failed", f"branch {landing.branch} is gone")
        if already_landed(p, landing, head, tip):
            return _landed(store, p, landing, tip, "already")
        scratch = state_dir / "integrate" / item_id
        try:
            outcome = _merge_and_verify(state_dir, p, landing, tip, scratch)
            if isinstance(outcome, Failure):
                if outcome.merged:
                    outcome.brought_up = _bring_up(p, landing.branch, head, outcome.merged)
                return _fix(state_dir, store, p, landing, outcome)
            published = _publish(p, outcome, tip)
            if not published:
                return _landed(store, p, landing, outcome, p.INTEGRATE)
            if published != "moved":
                return _later(store, landing, published)
            store.audit("integrate.retry", item=item_id, reason="the target moved while the item was integrated")
        finally:
            _drop_scratch(p, scratch)
    return _later(store, landing, f"the target kept moving; tried {TRIES} times")


def _later(store: Store, landing: Landing, reason: str) -> str:
    """Nothing landed and nothing is wrong with the item (the remote cannot be reached,
    the target keeps moving): it stays verified, to be tried again; said in the audit log."""
    store.audit("integrate.deferred", item=landing.item["id"], reason=reason)
    return "retry"


def _trailer(landing: Landing, head: str) -> str:
    """The line of a landing's commit message that says what landed: a squash is found by it."""
    return f"Item {landing.item['id']}, branch {landing.branch} at {head} (claude-harness merge queue)"


def already_landed(p: Policy, landing: Landing, head: str, tip: str) -> bool:
    """Whether the branch at head is on the target already (a landing whose bookkeeping
    a crash cut short must not land twice): its tip is in the target's history (merge),
    every one of its commits has an equal one there (rebase), or a squash of it is."""
    if _git(p.REPO_DIR, "merge-base", "--is-ancestor", head, tip).returncode == 0:
        return True
    if p.INTEGRATE == "squash":
        found = _git(p.REPO_DIR, "log", "-1", "--format=%H", "--fixed-strings", f"--grep={_trailer(landing, head)}", tip)
        return bool(found.stdout.strip())
    if p.INTEGRATE == "rebase":
        cherry = _git(p.REPO_DIR, "cherry", tip, head).stdout.split("\n")
        lines = [line for line in cherry if line.strip()]
        return bool(lines) and all(line.startswith("-") for line in lines)
    return False


@dataclass
class Failure:
    what: str  # conflict or verify
    cmd: str
    exit_code: int | None
    output: str
    merged: str = ""  # the merged commit that failed its verify (merge mode: it holds the branch)
    brought_up: bool = False  # the item's branch was moved to it


def _bring_up(p: Policy, branch: str, head: str, merged: str) -> bool:
    """The item's branch, fast-forwarded to the merged commit that failed (the target's
    tip merged in), so that its fix round starts where the failure is; only when that
    keeps every commit of the branch (merge mode) and no worktree has it checked out."""
    if p.INTEGRATE != "merge" or _git(p.REPO_DIR, "merge-base", "--is-ancestor", head, merged).returncode != 0:
        return False
    listed = _git(p.REPO_DIR, "worktree", "list", "--porcelain").stdout
    if f"branch refs/heads/{branch}\n" in listed + "\n":
        return False
    return _git(p.REPO_DIR, "update-ref", f"refs/heads/{branch}", merged, head).returncode == 0


def _merge_and_verify(state_dir: Path, p: Policy, landing: Landing, tip: str, scratch: Path) -> str | Failure:
    """The merged commit, tested; or why it cannot land."""
    _drop_scratch(p, scratch)
    scratch.parent.mkdir(mode=0o700, exist_ok=True)
    done = _git(p.REPO_DIR, "worktree", "add", "--quiet", "--detach", str(scratch), tip)
    if done.returncode != 0:
        raise IntegrateError(f"git worktree add for the integration failed: {_words(done)}")
    title = " ".join(str(landing.item.get("title") or landing.item["id"]).replace("\0", " ").split())
    head = _rev(p.REPO_DIR, f"refs/heads/{landing.branch}") or ""
    message = f"{title}\n\n{_trailer(landing, head)}"
    ident = ["-c", "user.name=claude-harness", "-c", "user.email=harness@localhost"]
    if p.INTEGRATE == "merge":
        done = _git(scratch, *ident, "merge", "--no-ff", "--no-edit", "-m", message, landing.branch)
    elif p.INTEGRATE == "squash":
        done = _git(scratch, *ident, "merge", "--squash", landing.branch)
        if done.returncode == 0:
            done = _git(scratch, *ident, "commit", "--quiet", "--allow-empty", "-m", message)
    else:  # rebase a copy of the branch: the item's branch itself stays as it is
        done = _git(scratch, "checkout", "--quiet", "-B", _scratch_branch(landing), landing.branch)
        if done.returncode == 0:
            done = _git(scratch, *ident, "rebase", "--quiet", tip)
    if done.returncode != 0:
        conflicts = _git(scratch, "diff", "--name-only", "--diff-filter=U").stdout.split()
        detail = _words(done) + (f" (conflicts in: {', '.join(conflicts)})" if conflicts else "")
        verb = "rebase" if p.INTEGRATE == "rebase" else "merge"
        return Failure("conflict", f"git {verb} {target_ref(p)}", 1, detail)
    merged = _rev(scratch, "HEAD")
    assert merged is not None
    failed = _verify(state_dir, p, landing, scratch)
    if failed is not None:
        failed.merged = merged
        return failed
    return merged


def _verify(state_dir: Path, p: Policy, landing: Landing, scratch: Path) -> Failure | None:
    """The item's verify command (or VERIFY_CMD) on the merged tree; None when green
    (or there is none)."""
    verify = start.verify_for(landing.item, p)
    if verify is None:
        return None
    log = state_dir / "sessions" / landing.session / "integrate.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(["bash", "-c", verify.cmd], cwd=scratch, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
        jsonio.write_atomic(state_dir / VERIFY_PID_FILE, f"{proc.pid} {proc_start(proc.pid) or ''}\n".encode(),
                            durable=False)
        try:
            code = proc.wait(timeout=verify.timeout_s or None)
        except subprocess.TimeoutExpired:
            _stop_group(proc.pid, p.KILL_GRACE_S)
            code = 124
            proc.wait()
        finally:
            (state_dir / VERIFY_PID_FILE).unlink(missing_ok=True)
    if code == 0:
        return None
    tail = log.read_bytes()[-OUTPUT_CHARS:].decode("utf-8", "replace")
    return Failure("verify", verify.cmd, code, tail)


def _stop_group(pgid: int, grace_s: float) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + max(0.1, grace_s)
        while time.monotonic() < deadline:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.05)  # polling a process group's end: no event says when


def _stop_leftover_verify(state_dir: Path) -> None:
    """An integration killed while it verified leaves its verify command's group: stopped."""
    try:
        pid, _, start = (state_dir / VERIFY_PID_FILE).read_text().strip().partition(" ")
        pgid = int(pid)
    except (OSError, ValueError):
        return
    if start and proc_start(pgid) == start:  # the same process: not a later one that reused the number
        _stop_group(pgid, 1.0)
    (state_dir / VERIFY_PID_FILE).unlink(missing_ok=True)


def _publish(p: Policy, merged: str, tip: str) -> str:
    """Pushes (PUSH_REMOTE, never forced), then moves the local target ref by
    compare-and-swap: "" when landed, "moved" when the target moved meanwhile (try
    again), else why the push failed."""
    ref = f"refs/heads/{p.TARGET_BRANCH}"
    if p.PUSH_REMOTE:
        done = _git(p.REPO_DIR, "push", "--porcelain", p.PUSH_REMOTE, f"{merged}:{ref}")
        if done.returncode != 0:
            rejected = any(line.startswith("!") and "[rejected]" in line for line in done.stdout.splitlines())
            return "moved" if rejected else f"git push {p.PUSH_REMOTE} failed: {_words(done)}"
        local = _rev(p.REPO_DIR, ref)
        if local is None or _git(p.REPO_DIR, "merge-base", "--is-ancestor", local, merged).returncode == 0:
            _git(p.REPO_DIR, "update-ref", ref, merged, *([local] if local else []))
        return ""
    return "" if _git(p.REPO_DIR, "update-ref", ref, merged, tip).returncode == 0 else "moved"


def _scratch_branch(landing: Landing) -> str:
    return f"harness-integrate/{landing.item['id']}"


def _drop_scratch(p: Policy, scratch: Path) -> None:
    """The scratch worktree, and the rebase's copy of the branch, removed."""
    if scratch.exists():
        _git(p.REPO_DIR, "worktree", "remove", "--force", str(scratch))
    _git(p.REPO_DIR, "worktree", "prune")
    _git(p.REPO_DIR, "branch", "-D", f"harness-integrate/{scratch.name}")


def _landed(store: Store, p: Policy, landing: Landing, commit: str, how: str) -> str:
    reason = (f"already on {p.TARGET_BRANCH} (at {commit[:12]}): nothing to merge" if how == "already"
              else f"landed on {p.TARGET_BRANCH} as {commit[:12]} ({how})")
    store.audit("item.integrated", item=landing.item["id"], branch=landing.branch, target=p.TARGET_BRANCH,
                commit=commit, mode=p.INTEGRATE, remote=p.PUSH_REMOTE or None)
    return _settle(store, landing.item, "succeeded", "succeeded", reason, extra={"commit": commit},
                   updates={"fix": None})


def _fix(state_dir: Path, store: Store, p: Policy, landing: Landing, failure: Failure) -> str:
    item = landing.item
    used = int(item.get("fix_rounds") or 0)
    what = "does not merge onto" if failure.what == "conflict" else "fails its verify command merged onto"
    reason = f"the branch {what} {p.TARGET_BRANCH}: {failure.cmd} exited {failure.exit_code}: " + \
        " ".join(failure.output.split())[-300:]
    store.audit("integrate.failed", item=item["id"], kind=failure.what, exit_code=failure.exit_code,
                target=p.TARGET_BRANCH)
    if used >= p.FIX_ROUNDS:
        rounds = "no fix round" if p.FIX_ROUNDS == 0 else f"{used} fix round{'s' * (used != 1)}"
        return _settle(store, item, "quarantined", "integrate_failed", f"still failing after {rounds}: {reason}")
    fix = {
        "round": used + 1, "session": landing.session, "agent_session_id": landing.agent_session_id,
        "workdir": landing.workdir, "branch": landing.branch, "cmd": failure.cmd, "exit_code": failure.exit_code,
        "output": failure.output[-OUTPUT_CHARS:], "target": target_ref(p), "mode": p.INTEGRATE,
        "brought_up": failure.brought_up, "host": host_name(),
    }
    if p.INTEGRATE == "rebase" and failure.what == "conflict":
        # the fix round rebases the branch: its commits as they are now keep a branch of their own
        _git(p.REPO_DIR, "update-ref", f"refs/heads/harness/salvage/{item['id']}/before-fix-{used + 1}",
             f"refs/heads/{landing.branch}")
    _settle(store, item, "pending", "integrate_failed", reason, updates={"fix": fix, "fix_rounds": used + 1},
            extra={"fix_round_next": used + 1})
    return "fix"


def _settle(store: Store, item: dict[str, Any], to_state: str, verdict: str, reason: str,
            extra: dict[str, Any] | None = None, updates: dict[str, Any] | None = None) -> str:
    """The integration's outcome, in the item's history and the audit log."""
    record = {"verdict": verdict, "reason": reason, "at": jsonio.utc_now_iso(), "by": "merge queue", **(extra or {})}
    try:
        store.settle(str(item["id"]), "verified", to_state, record, updates)
    except StoreError:
        return "nothing"  # canceled meanwhile
    store.audit(f"item.{to_state}", item=item["id"], **{"from": "verified"}, to=to_state, verdict=verdict,
                reason=reason)
    return {"succeeded": "landed", "pending": "fix"}.get(to_state, to_state)
