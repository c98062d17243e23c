"""The end of a session: verdict, receipt, policy, breaker, pause, queue move, audit.

The session is read once (record.py); the verdict, the receipt and the item's
fate are pure functions of that record. The writes come in an order that makes a
crash at any point safe to repeat: when the session ended, in meta.json, before
anything else; then the receipt and meta.json's verdict; then the breaker and the
pause (both idempotent per session); then the item's one rename out of running/
(the commit point); then the audit lines. A loop killed before the rename finds
the item still in running/ and finalizes the session again, with the same verdict.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from harness import jsonio
from harness.pipeline import governor, policy, receipt, record, sandbox, transcript, verdict, worktrees
from harness.pipeline.breaker import Breaker, outcome
from harness.pipeline.gate import write_pause
from harness.pipeline.record import SessionRecord
from harness.store import FencedError, Lease, Store, StoreError, open_store
from harness.store.base import host_name

FIX_OUTPUT_CHARS = 4000  # of the verify command's output, for the fix round's prompt


class FinishError(Exception):
    """The item could not be moved out of running/ (full disk, permissions)."""


def _fenced(store: Store, out: dict[str, Any], sid: str, item_id: str, verdict_name: str,
            why: str) -> dict[str, Any]:
    """A session whose lease is no longer the item's: its result is an orphaned
    attempt, never the item's outcome, and the breaker does not count it."""
    store.audit("session.fenced", session=sid, item=item_id, verdict=verdict_name, reason=why)
    out.update(to=None, orphaned=True, fenced=True)
    return out


def _ended(rec: SessionRecord, now: float) -> dict[str, Any]:
    """meta.json with when the agent exited: exit_code's mtime (a session that ended
    while no loop ran), else now."""
    ended = min(now, rec.exit_mtime) if rec.exit_mtime is not None else now
    return {**rec.meta, "ended_epoch": round(ended, 6), "ended_at": policy.iso(ended)}


def _end_once(rec: SessionRecord, now: float) -> SessionRecord:
    """When it ended, and its transcript kept (from a sandboxed session's own config
    directory, else the CLI's), in meta.json: first, and once, so that a finalize
    repeated after a crash finds the same end."""
    if "ended_epoch" in rec.meta:
        return rec
    own = rec.dir / sandbox.BOX / "claude"
    rec = replace(rec, meta={**_ended(rec, now), **transcript.keep(rec.dir, rec.meta, own if own.is_dir() else None)})
    jsonio.write_json(rec.dir / "meta.json", rec.meta)
    return rec


def _settle(store: Store, sdir: Path, sid: str, item_id: str) -> None:
    """A sandboxed agent's commits, onto its branch (lib/spawn.sh did it already,
    unless the wrapper died first)."""
    try:
        done = sandbox.settle(sdir)
        if done:
            store.audit("sandbox.settled", session=sid, item=item_id, detail=done)
    except OSError as exc:
        store.audit("sandbox.settle_failed", session=sid, item=item_id, error=str(exc))


def finalize(sdir: Path, state_dir: Path, pol: policy.Policy, now: float, rng: random.Random) -> dict[str, Any]:
    """Reads the session once, decides purely, then writes: when it ended (once), the
    receipt and meta.json, the breaker and the pause, the item's move (the commit
    point), the audit lines."""
    rec = _end_once(record.read(sdir), now)
    v = verdict.classify(rec)
    metrics = receipt.build(rec, v)
    receipt.write(sdir, metrics)
    jsonio.write_json(sdir / "meta.json", {**rec.meta, "verdict": v.verdict, "reason": v.reason, "exit_code": v.exit_code})
    sid, item_id = rec.session_id, rec.item_id
    out: dict[str, Any] = v.as_dict()
    out.update(session=sid, item=item_id, receipt=receipt.line(metrics), cost_usd=metrics["cost_usd"])

    store = open_store(state_dir)
    store.record_attempt(metrics)
    lease = _lease(store, rec, v, out)
    if lease is None:
        return out
    item = lease.item

    result = outcome(v.verdict, rec.facts.init is not None, rec.stall_phase)
    c = Breaker(state_dir, pol).record(sid, result, v.verdict, v.reason, now)
    out["circuit"] = c.get("state")

    d = _decide(rec, v, item, pol, now, rng)
    _settle(store, sdir, sid, item_id)
    release = _released_worktree(rec, v, d, pol)
    if release:  # what was verified is what the branch holds, and lands
        try:
            if worktrees.commit_leftovers(Path(release), sid):
                store.audit("worktree.committed", session=sid, item=item_id, branch=rec.meta.get("branch"))
        except OSError as exc:
            store.audit("worktree.commit_failed", session=sid, item=item_id, error=str(exc))
            release = ""  # kept: nothing of it is lost
    if d.pause_until is not None:
        write_pause(state_dir, d.pause_until, v.reason, by="usage_limited", session=sid)
    governor.stop_at_utilization(store, pol, rec.facts.utilization, now, rec.session_id)
    governor.note_warning(store, host_name(), pol, rec.facts.warning, now)
    history = {
        "session_id": sid, "attempt": rec.meta.get("attempt"), "verdict": v.verdict, "reason": d.reason,
        "exit_code": v.exit_code, "started_at": rec.meta.get("started_at"), "ended_at": rec.meta.get("ended_at"),
        "cost_usd": metrics["cost_usd"],
    }
    if rec.meta.get("fix_round"):
        history["fix_round"] = rec.meta["fix_round"]
    if metrics.get("denied"):
        history["denied"] = list(dict.fromkeys(d["tool"] for d in metrics["denied"]))
        history["allowed_tools"] = rec.meta.get("allowed_tools") or ""
    try:
        store.finish(lease.lease, d.to_state, history, d.attempts, d.not_before, _item_updates(rec, d))
    except FencedError as exc:  # another session took the item since: this one's result is not its outcome
        return _fenced(store, out, sid, item_id, v.verdict, str(exc))
    except OSError as exc:
        jsonio.audit(state_dir, "item.finish_failed", item=item_id, session=sid, to=d.to_state, error=str(exc))
        raise FinishError(f"cannot move item {item_id} to {d.to_state}: {exc.strerror or exc}; "
                          "it stays in running/ for the next start to finalize") from exc
    _audit_end(state_dir, rec, v, d, metrics, result)
    out.update(to=d.to_state, action=d.action, attempts=d.attempts, not_before=d.not_before, reason=d.reason,
               release=release)
    return out


def _decide(rec: SessionRecord, v: verdict.Verdict, item: dict[str, Any], pol: policy.Policy, now: float,
            rng: random.Random) -> policy.Decision:
    """The policy's decision; with the merge queue on, succeeded work is verified
    first and succeeds once it has landed (integrate.py)."""
    attempts = int(item.get("attempts") or 0)
    max_attempts = int(item.get("max_attempts") or pol.MAX_ATTEMPTS)
    d = policy.decide(v, attempts, max_attempts, pol, now, rng, canceled=rec.canceled,
                      fix_rounds=int(item.get("fix_rounds") or 0))
    if d.to_state == "succeeded" and pol.INTEGRATE != "off" and rec.meta.get("branch"):
        d.to_state, d.action = "verified", "integrate"
    return d


def _item_updates(rec: SessionRecord, d: policy.Decision) -> dict[str, Any]:
    """What the item keeps for its fix round: the conversation to resume, where, and
    the failure; a terminal state drops it; a retry keeps it (the round is run again)."""
    if d.action == "fix":
        verify = rec.verify or {}
        fix = {
            "round": d.extra["fix_round"], "session": rec.session_id,
            "agent_session_id": rec.meta.get("claude_session_id"), "workdir": rec.meta.get("cwd"),
            "branch": rec.meta.get("branch"), "cmd": verify.get("cmd"), "exit_code": rec.verify_exit,
            "output": rec.verify_tail[-FIX_OUTPUT_CHARS:],
            "host": host_name(),  # the conversation and the worktree are here: a fleet routes the round back
        }
        return {"fix": fix, "fix_rounds": d.extra["fix_round"]}
    if d.to_state in ("verified", "succeeded", "quarantined", "canceled"):
        return {"fix": None}
    return {}


def _released_worktree(rec: SessionRecord, v: verdict.Verdict, d: policy.Decision, pol: policy.Policy) -> str:
    """The git worktree the loop removes: a succeeded item's (its branch stays); any
    other is kept, for a person or for the item's fix round."""
    cwd, branch = str(rec.meta.get("cwd") or ""), str(rec.meta.get("branch") or "")
    if pol.REPO_DIR and branch and cwd and v.verdict == "succeeded" and d.to_state in ("succeeded", "verified"):
        return cwd
    return ""


def _audit_end(state_dir: Path, rec: SessionRecord, v: verdict.Verdict, d: policy.Decision, metrics: dict[str, Any],
               result: str) -> None:
    sid, item_id = rec.session_id, rec.item_id
    verified = metrics.get("verify")
    if verified and (verified.get("log") or v.verdict == "verify_failed"):
        jsonio.audit(state_dir, "verify.passed" if v.verdict == "succeeded" else "verify.failed", session=sid,
                     item=item_id, exit_code=verified.get("exit_code"), seconds=verified.get("seconds"))
    jsonio.audit(state_dir, "session.ended", session=sid, item=item_id, verdict=v.verdict, reason=v.reason,
                 exit_code=v.exit_code, cost_usd=metrics["cost_usd"], circuit=result)
    jsonio.audit(state_dir, f"item.{d.to_state}", item=item_id, session=sid, **{"from": "running"}, to=d.to_state,
                 verdict=v.verdict, reason=d.reason, action=d.action, attempts=d.attempts, not_before=d.not_before,
                 delay_s=d.delay_s, fix_round=d.extra.get("fix_round"))


def _taken_over(store: Store, item_id: str, sid: str) -> int:
    """The item's newest fencing token when it was claimed again while this session
    had not finished it (its lease ran out: another host took it over); 0 when the
    session did finish it before (a finalize made again), or the item is unknown."""
    try:
        item = store.get(item_id)[1] if item_id else {}
    except StoreError:
        return 0
    if any(isinstance(h, dict) and sid in (h.get("session"), h.get("session_id")) for h in item.get("history") or []):
        return 0
    claims = item.get("claims")
    return claims if isinstance(claims, int) else 0


@dataclass
class _Held:
    lease: Lease
    item: dict[str, Any]


def _lease(store: Store, rec: SessionRecord, v: verdict.Verdict, out: dict[str, Any]) -> _Held | None:
    """The session's lease on its item, when the item is still its own; else the
    result is recorded as orphaned (or fenced) and None."""
    sid, item_id = rec.session_id, rec.item_id
    held = store.lease_of(item_id) if item_id else None
    # the session presents its own token (meta.json, from its claim); a session
    # started before tokens presents the lease's
    token = rec.meta.get("lease_token")
    if held is None or held.session_id not in ("", sid) or held.item is None:
        claims = _taken_over(store, item_id, sid)
        if isinstance(token, int) and claims > token:  # claimed again under it (a lease that ran out, taken over)
            _fenced(store, out, sid, item_id, v.verdict, f"its token {token} is stale: the item was claimed again "
                    f"(token {claims}){f' by {held.session_id}' if held else ''}")
            return None
        store.audit("session.orphaned", session=sid, item=item_id, verdict=v.verdict,
                    reason="the item is no longer in running/ under this session")
        out.update(to=None, orphaned=True)
        return None
    lease = Lease(item_id, held.session_id, token if isinstance(token, int) else held.token)
    if lease.token != held.token:
        _fenced(store, out, sid, item_id, v.verdict, f"its token {lease.token} is not the lease's {held.token}")
        return None
    return _Held(lease, held.item)
