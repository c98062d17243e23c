"""What may keep the loop from claiming: a pause (state/pause.json), the machine
(load average per core over MAX_LOAD, MemAvailable under MIN_FREE_MEM_MB), too
little free disk under state/, and the circuit breaker (state/circuit.json).

claim_gated() checks them in that order and claims the best ready item only when
all of them let it; in half_open the claimed session becomes the breaker's probe.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import jsonio, queue
from .circuit import Breaker, describe
from .policy import Policy, iso

LOAD_RECHECK_S = 2.0


@dataclass
class Blocked:
    kind: str  # paused, circuit, disk, load, memory
    reason: str
    until: float | None = None
    halt: bool = False  # a person must act (credentials, disk): --drain/--once exit 4

    def as_dict(self) -> dict[str, Any]:
        return {"blocked": self.kind, "reason": self.reason, "until": self.until, "halt": self.halt}


def read_pause(state_dir: Path) -> dict[str, Any] | None:
    try:
        data = jsonio.read_json(state_dir / "pause.json")
    except FileNotFoundError:
        return None
    except ValueError:
        return {"until_epoch": 0, "reason": "pause.json is unreadable", "unreadable": True}
    return data if isinstance(data, dict) else None


def active_pause(state_dir: Path, now: float) -> dict[str, Any] | None:
    p = read_pause(state_dir)
    if p is None:
        return None
    until = p.get("until_epoch")
    return p if isinstance(until, (int, float)) and until > now else None


def write_pause(state_dir: Path, until: float, reason: str, by: str, session: str | None = None) -> None:
    """Pauses spawning until then; an existing later pause is kept."""
    current = active_pause(state_dir, 0)
    if current and float(current.get("until_epoch") or 0) >= until and by != "operator":
        return
    jsonio.write_json(state_dir / "pause.json", {
        "until_epoch": round(until, 3), "until": iso(until), "reason": reason, "by": by, "session": session,
        "paused_at": jsonio.utc_now_iso(),
    })
    jsonio.audit(state_dir, "loop.paused", until_epoch=round(until, 3), until=iso(until), reason=reason, by=by,
                 session=session)


def clear_pause(state_dir: Path, by: str) -> bool:
    try:
        os.unlink(state_dir / "pause.json")
    except FileNotFoundError:
        return False
    jsonio.audit(state_dir, "loop.resumed", by=by)
    return True


def mem_available_mb() -> float | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def free_mb(path: Path) -> float:
    return shutil.disk_usage(path).free / (1024 * 1024)


def check(state_dir: Path, policy: Policy, now: float) -> Blocked | None:
    """The pause and the disk; the breaker is asked only once an item is ready."""
    p = active_pause(state_dir, now)
    if p:
        return Blocked("paused", f"paused until {p.get('until') or p.get('until_epoch')}: {p.get('reason')}",
                       until=float(p["until_epoch"]))
    if policy.MAX_LOAD > 0:
        load = os.getloadavg()[0] / (os.cpu_count() or 1)
        if load > policy.MAX_LOAD:
            return Blocked("load", f"load average {load:.2f} per core is above MAX_LOAD {policy.MAX_LOAD:g}",
                           until=now + LOAD_RECHECK_S)
    if policy.MIN_FREE_MEM_MB > 0:
        avail = mem_available_mb()
        if avail is not None and avail < policy.MIN_FREE_MEM_MB:
            return Blocked("memory", f"only {avail:.0f} MB of memory available (MIN_FREE_MEM_MB is "
                           f"{policy.MIN_FREE_MEM_MB:.10g})", until=now + LOAD_RECHECK_S)
    if policy.MIN_FREE_MB > 0:
        free = free_mb(state_dir)
        if free < policy.MIN_FREE_MB:
            return Blocked("disk", f"only {free:.1f} MB free under {state_dir} (MIN_FREE_MB is {policy.MIN_FREE_MB:.10g})",
                           halt=True)
    return None


def claim_gated(q: queue.Queue, session: str, worker: str, policy: Policy, now: float) -> dict[str, Any] | Blocked | None:
    blocked = check(q.state_dir, policy, now)
    if blocked:
        return blocked
    breaker = Breaker(q.state_dir, policy)
    asked: dict[str, Any] = {}

    def admit() -> bool:
        ok, c = breaker.allow(session, now)
        asked.update(ok=ok, circuit=c)
        return ok

    item = queue.claim(q, session, worker, now, admit=admit, aging_s=policy.AGING_S)
    if item is not None or not asked:
        return item  # claimed, or nothing was ready
    if asked["ok"]:
        breaker.release(session)  # admitted, then lost every race for an item
        return None
    c = asked["circuit"]
    until = c.get("open_until") if c.get("state") == "open" else None
    return Blocked("circuit", f"circuit breaker {describe(c, now)}", until=until, halt=bool(c.get("auth")))
