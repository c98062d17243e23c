"""The governor: how many sessions run at once, between JOBS_MIN and JOBS_MAX.

One record, shared by every loop of the state directory (every host of a fleet):
the store's shared record "governor" (store/shared.py). Each loop's sidecar adds
what its live sessions saw since it last looked (requests answered, requests
refused 429/529 as the CLI's api_retry lines show them, rate-limit warnings) and
then decides, for the whole fleet, under the record's lock:

- a storm: since the last change, more than GOVERNOR_STORM_SHARE of the requests
  (and at least 2) were refused. The target drops in proportion: to what went
  through, min(target, running) x (1 - share), at least one less, never below
  JOBS_MIN. The level that stormed is tried again only after PROBE_WINDOWS windows.
- a rate-limit warning (allowed_warning, with the window's utilization): the
  target halves, at most once per window (every session reports the account's
  warning), and does not grow while warnings keep coming within the window.
- clean: no refusal for GOVERNOR_STEP_S since the last change, while work waited
  (a claim the governor turned away within the step): one more, up to JOBS_MAX.

A rejected rate limit pauses claiming until its reset, and STOP_AT_UTILIZATION
pauses it at that utilization (stop_at_utilization), as the pause always has; the
machine's own gates (MAX_LOAD, MIN_FREE_MEM_MB) stay in the claim gate (gate.py).
The claim gate asks admit(): a claim waits while as many sessions run (on every
host) as the target says. Every change is an audit line, governor.changed.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Any

from harness.pipeline.policy import Policy, iso
from harness.store import Store

NAME = "governor"
PROBE_WINDOWS = 5  # a level that stormed is tried again after this many windows
STALE_WINDOWS = 10  # a record nobody updated for this many windows starts over (a loop that stopped)
THROTTLED = ("429", "529")
CUT_AFTER_S = 2.0  # a cut needs this much evidence after the last change (less with a shorter GOVERNOR_STEP_S)


@dataclass
class Seen:
    """What one loop's sessions saw since it last reported."""

    ok: int = 0  # requests answered (assistant messages)
    throttled: int = 0  # requests refused 429/529 (api_retry lines)
    warning: tuple[float, str] | None = None  # an allowed_warning: utilization, window


def start_target(p: Policy) -> int:
    return max(p.JOBS_MIN, min(p.JOBS, p.JOBS_MAX))


def current(record: dict[str, Any] | None, p: Policy, now: float) -> dict[str, Any]:
    """The record as it stands (its target kept within this loop's JOBS_MIN..JOBS_MAX),
    or a fresh one when there is none or nobody kept it for STALE_WINDOWS windows."""
    horizon = STALE_WINDOWS * max(p.GOVERNOR_WINDOW_S, p.GOVERNOR_STEP_S)
    if record and isinstance(record.get("target"), int) and now - horizon <= _num(record, "updated_at") <= now + horizon:
        # another host's JOBS_MIN..JOBS_MAX may differ: this one's bounds, not a new record
        record["target"] = max(p.JOBS_MIN, min(p.JOBS_MAX, record["target"]))
        if _num(record, "changed_at") > now:  # a clock that went back: the evidence starts now
            record["changed_at"] = round(now, 3)
        return record
    target = start_target(p)
    return {"target": target, "cause": "start", "why": f"starting at {target} (JOBS={p.JOBS}, between "
            f"JOBS_MIN={p.JOBS_MIN} and JOBS_MAX={p.JOBS_MAX})", "changed_at": now, "updated_at": now,
            "buckets": [], "storm_level": None, "storm_at": None, "warning": None, "demand_at": None}


def _num(d: dict[str, Any], key: str) -> float:
    v = d.get(key)
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else 0.0


def note(record: dict[str, Any], host: str, seen: Seen, p: Policy, now: float) -> None:
    """Adds one loop's counts (a bucket) and its warning; drops what left the window."""
    record.update(min=p.JOBS_MIN, max=p.JOBS_MAX, window_s=p.GOVERNOR_WINDOW_S, step_s=p.GOVERNOR_STEP_S)
    keep_from = now - p.GOVERNOR_WINDOW_S
    buckets = [b for b in record.get("buckets") or [] if b[0] >= keep_from]
    if seen.ok or seen.throttled:
        buckets.append([round(now, 3), host, seen.ok, seen.throttled])
    record["buckets"] = buckets
    if seen.warning is not None:
        n = int((record.get("warning") or {}).get("n") or 0) + 1  # which warning: each is acted on once
        record["warning"] = {"utilization": seen.warning[0], "window": seen.warning[1], "at": round(now, 3), "n": n}
    record["updated_at"] = round(now, 3)


def evidence(record: dict[str, Any], p: Policy, now: float) -> tuple[int, int]:
    """Requests answered and refused since the last change, within the window."""
    since = max(float(record.get("changed_at") or 0), now - p.GOVERNOR_WINDOW_S)
    ok = throttled = 0
    for b in record.get("buckets") or []:
        if b[0] > since:
            ok, throttled = ok + int(b[2]), throttled + int(b[3])
    return ok, throttled


def decide(record: dict[str, Any], p: Policy, now: float, running: int) -> dict[str, Any] | None:
    """Changes the target when the evidence says so; the change (for the audit line), or None."""
    target = int(record["target"])
    since_change = now - float(record.get("changed_at") or 0)
    ok, throttled = evidence(record, p, now)
    total = ok + throttled
    share = throttled / total if total else 0.0
    warning = record.get("warning") or None
    if record.get("cause") in ("storm", "warning") and running > target:
        # the sessions started above the new target still run: what they meet is the old
        # level's evidence, so the count starts when they have gone down to the target
        record["changed_at"] = round(now, 3)
        return None
    if throttled >= 2 and share > p.GOVERNOR_STORM_SHARE and since_change >= min(p.GOVERNOR_STEP_S / 2, CUT_AFTER_S):
        level = max(1, min(target, running) if running else target)
        new = max(p.JOBS_MIN, min(target - 1, math.floor(level * (1 - share))))
        record.update(storm_level=level, storm_at=round(now, 3))
        why = f"{throttled} of {total} requests refused 429/529 ({share:.0%}) with {level} running"
        return _change(record, new, "storm", why, now, share=round(share, 3), requests=total)
    fresh = warning is not None and _num(warning, "n") > _num(record, "warning_used")
    if fresh and warning is not None:
        record["warning_used"] = warning["n"]  # acted on once: a cut, or none within a window of the last
        if _num(warning, "at") - _num(record, "warning_cut_at") >= p.GOVERNOR_WINDOW_S:  # every session says it
            record["warning_cut_at"] = round(now, 3)
            new = max(p.JOBS_MIN, min(target - 1, math.ceil(target / 2)))
            why = (f"rate-limit warning: the {warning.get('window') or 'usage'} window is "
                   f"{_num(warning, 'utilization'):.0%} used")
            return _change(record, new, "warning", why, now)
    return _grow(record, p, now, throttled, warning)


def _grow(record: dict[str, Any], p: Policy, now: float, throttled: int,
          warning: dict[str, Any] | None) -> dict[str, Any] | None:
    target = int(record["target"])
    if throttled or target >= p.JOBS_MAX or now - float(record.get("changed_at") or 0) < p.GOVERNOR_STEP_S:
        return None
    if warning and now - float(warning.get("at") or 0) < p.GOVERNOR_WINDOW_S:
        return None
    if now - float(record.get("demand_at") or 0) > p.GOVERNOR_STEP_S:
        return None  # nothing waited for a slot: more would not run more
    level, at = record.get("storm_level"), float(record.get("storm_at") or 0)
    retry_at = at + PROBE_WINDOWS * p.GOVERNOR_WINDOW_S
    if isinstance(level, int) and target + 1 >= level and now < retry_at:
        hold = f"holding at {target}: {level} met 429/529 at {iso(at)}; tried again from {iso(retry_at)}"
        if record.get("why") != hold:
            record["why"], record["cause"] = hold, "hold"
        return None
    return _change(record, target + 1, "clean", f"no 429/529 for {p.GOVERNOR_STEP_S:g} s and work waiting", now)


def _change(record: dict[str, Any], new: int, cause: str, why: str, now: float, **more: Any) -> dict[str, Any] | None:
    old = int(record["target"])
    record["changed_at"] = round(now, 3)  # the evidence starts over, changed or not
    if new == old:
        record.update(cause=cause, why=f"{why}; staying at {old} (JOBS_MIN)")
        return None
    record.update(target=new, cause=cause, why=f"{why}: {old} -> {new}")
    return {"from": old, "to": new, "cause": cause, "why": record["why"], **more}


def step(store: Store, host: str, seen: Seen, p: Policy, now: float) -> dict[str, Any] | None:
    """One loop's report and the fleet's decision, in one update of the shared record."""
    running = store.running_count(now)
    with store.update_shared(NAME) as stored:
        record = dict(current(stored, p, now))  # a copy: the stored one is replaced below
        note(record, host, seen, p, now)
        change = decide(record, p, now, running)
        stored.clear()
        stored.update(record)
    if change is not None:
        store.audit("governor.changed", host=host, running=running, **change)
    return change


def note_warning(store: Store, host: str, p: Policy, warning: tuple[float | None, str] | None, now: float) -> None:
    """A finished session's last rate-limit warning, reported by its finalize: a session
    shorter than the sidecar's look at it must not go unheard (the sidecar may have
    reported it too: each warning cuts at most once a window). Errors are said, never fatal."""
    if p.JOBS_MAX <= 0 or warning is None:
        return
    try:
        step(store, host, Seen(warning=(warning[0] if warning[0] is not None else 0.0, warning[1])), p, now)
    except Exception as exc:  # the session's finalize goes on without it
        print(f"harness: governor: cannot note a rate-limit warning: {type(exc).__name__}: {exc}", file=sys.stderr)


def admit(store: Store, p: Policy, now: float) -> tuple[bool, dict[str, Any], int]:
    """Whether one more session may start: fewer run (every host's) than the target.
    A refusal is work that waited (demand_at), which lets the target grow."""
    record = current(store.shared_record(NAME), p, now)
    running = store.running_count(now)
    if running < int(record["target"]):
        return True, record, running
    if now - float(record.get("demand_at") or 0) >= p.GOVERNOR_STEP_S / 4:
        with store.update_shared(NAME) as stored:
            fresh = dict(current(stored, p, now))
            fresh["demand_at"] = round(now, 3)
            stored.clear()
            stored.update(fresh)
    return False, record, running


def stop_at_utilization(store: Store, p: Policy, used: tuple[float, str, float | None] | None, now: float,
                        session: str) -> bool:
    """STOP_AT_UTILIZATION: a rate-limit event that says the account's window is used
    that far pauses claiming (every host's) until the window resets."""
    if p.STOP_AT_UTILIZATION <= 0 or used is None or used[0] < p.STOP_AT_UTILIZATION:
        return False
    share, window, resets = used
    if resets is None or resets <= now:
        return False
    paused = store.pause() or {}
    if paused.get("by") == "utilization" and float(paused.get("until_epoch") or 0) >= resets:
        return False  # said already
    store.set_pause(resets, f"the {window or 'usage'} window is {share:.0%} used (STOP_AT_UTILIZATION "
                    f"{p.STOP_AT_UTILIZATION:g}); claiming resumes when it resets", by="utilization", session=session)
    return True


def status(store: Store, now: float) -> dict[str, Any] | None:
    """For status.sh and the metrics: the target, why, and the window's counts, while
    a loop keeps the record (it is not STALE_WINDOWS old); None without a governor."""
    record = store.shared_record(NAME)
    if not record or not isinstance(record.get("target"), int):
        return None
    window = float(record.get("window_s") or 60.0)
    if float(record.get("updated_at") or 0) < now - STALE_WINDOWS * max(window, float(record.get("step_s") or 0)):
        return None
    ok = throttled = 0
    for b in record.get("buckets") or []:
        if b[0] >= now - window:
            ok, throttled = ok + int(b[2]), throttled + int(b[3])
    return {"target": record["target"], "min": record.get("min"), "max": record.get("max"),
            "cause": record.get("cause"), "why": record.get("why"),
            "changed_at": iso(float(record.get("changed_at") or now)), "running": store.running_count(now),
            "window_s": window, "requests": ok + throttled, "throttled": throttled,
            "throttled_share": round(throttled / (ok + throttled), 4) if ok + throttled else 0.0}
