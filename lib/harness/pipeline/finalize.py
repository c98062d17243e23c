"""The end of a session: verdict, receipt, policy, breaker, pause, queue move, audit.

The order makes a crash at any point safe to repeat: the receipt and meta.json
first, then the breaker and the pause (both idempotent per session), then the
item's one rename out of running/ (the commit point), then the audit lines. A
loop killed before the rename finds the item still in running/ and finalizes the
session again, with the same verdict.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

from harness import jsonio
from harness.pipeline import policy, receipt, verdict
from harness.pipeline.breaker import Breaker, outcome
from harness.pipeline.gate import write_pause
from harness.store import FencedError, Lease, Store, open_store
from harness.stream import facts as facts_mod


class FinishError(Exception):
    """The item could not be moved out of running/ (full disk, permissions)."""


def _merge_meta(sdir: Path, **fields: Any) -> dict[str, Any]:
    meta = jsonio.read_dict(sdir / "meta.json") or {}
    meta.update(fields)
    jsonio.write_json(sdir / "meta.json", meta)
    return meta


def _ended_epoch(sdir: Path, now: float) -> float:
    """When the agent exited: exit_code's mtime (a session that ended while no loop ran), else now."""
    try:
        return min(now, os.stat(sdir / "exit_code").st_mtime)
    except FileNotFoundError:
        return now


def _stall_phase(sdir: Path) -> str | None:
    stall = jsonio.read_dict(sdir / "stall.json")
    return str(stall.get("phase")) if stall else None


def _fenced(store: Store, out: dict[str, Any], sid: str, item_id: str, verdict_name: str,
            why: str) -> dict[str, Any]:
    """A session whose lease is no longer the item's: its result is an orphaned
    attempt, never the item's outcome, and the breaker does not count it."""
    store.audit("session.fenced", session=sid, item=item_id, verdict=verdict_name, reason=why)
    out.update(to=None, orphaned=True, fenced=True)
    return out


def finalize(sdir: Path, state_dir: Path, pol: policy.Policy, now: float, rng: random.Random) -> dict[str, Any]:
    meta = jsonio.read_dict(sdir / "meta.json") or {}
    sid = str(meta.get("session_id") or sdir.name)
    item_id = str(meta.get("item_id") or "")
    if "ended_epoch" not in meta:
        ended = _ended_epoch(sdir, now)
        meta = _merge_meta(sdir, ended_epoch=round(ended, 6), ended_at=policy.iso(ended))
    f = facts_mod.scan(sdir / "events.jsonl")
    v = verdict.classify(sdir, f)
    metrics = receipt.build(sdir, f, v, meta)
    receipt.write(sdir, metrics)
    _merge_meta(sdir, verdict=v.verdict, reason=v.reason, exit_code=v.exit_code)
    out: dict[str, Any] = v.as_dict()
    out.update(session=sid, item=item_id, receipt=receipt.line(metrics), cost_usd=metrics["cost_usd"])

    store = open_store(state_dir)
    held = store.lease_of(item_id) if item_id else None
    if held is None or held.session_id not in ("", sid) or held.item is None:
        store.audit("session.orphaned", session=sid, item=item_id, verdict=v.verdict,
                    reason="the item is no longer in running/ under this session")
        out.update(to=None, orphaned=True)
        return out
    # the session presents its own token (meta.json, from its claim); a session
    # started before tokens presents the lease's
    token = meta.get("lease_token")
    lease = Lease(item_id, held.session_id, token if isinstance(token, int) else held.token)
    if lease.token != held.token:
        return _fenced(store, out, sid, item_id, v.verdict, f"its token {lease.token} is not the lease's {held.token}")
    item = held.item

    result = outcome(v.verdict, f.init is not None, _stall_phase(sdir))
    c = Breaker(state_dir, pol).record(sid, result, v.verdict, v.reason, now)
    out["circuit"] = c.get("state")

    attempts = int(item.get("attempts") or 0)
    max_attempts = int(item.get("max_attempts") or pol.MAX_ATTEMPTS)
    d = policy.decide(v, attempts, max_attempts, pol, now, rng, canceled=(sdir / "cancel").exists())
    if d.pause_until is not None:
        write_pause(state_dir, d.pause_until, v.reason, by="usage_limited", session=sid)
    record = {
        "session_id": sid, "attempt": meta.get("attempt"), "verdict": v.verdict, "reason": d.reason,
        "exit_code": v.exit_code, "started_at": meta.get("started_at"), "ended_at": meta.get("ended_at"),
        "cost_usd": metrics["cost_usd"],
    }
    try:
        store.finish(lease, d.to_state, record, d.attempts, d.not_before)
    except FencedError as exc:  # another session took the item since: this one's result is not its outcome
        return _fenced(store, out, sid, item_id, v.verdict, str(exc))
    except OSError as exc:
        jsonio.audit(state_dir, "item.finish_failed", item=item_id, session=sid, to=d.to_state, error=str(exc))
        raise FinishError(f"cannot move item {item_id} to {d.to_state}: {exc.strerror or exc}; "
                          "it stays in running/ for the next start to finalize") from exc
    jsonio.audit(state_dir, "session.ended", session=sid, item=item_id, verdict=v.verdict, reason=v.reason,
                 exit_code=v.exit_code, cost_usd=metrics["cost_usd"], circuit=result)
    jsonio.audit(state_dir, f"item.{d.to_state}", item=item_id, session=sid, **{"from": "running"}, to=d.to_state,
                 verdict=v.verdict, reason=d.reason, action=d.action, attempts=d.attempts, not_before=d.not_before,
                 delay_s=d.delay_s)
    out.update(to=d.to_state, action=d.action, attempts=d.attempts, not_before=d.not_before, reason=d.reason)
    return out
