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

from harness.pipeline import budget, governor
from harness.pipeline.breaker import Breaker, describe
from harness.pipeline.policy import Policy, iso
from harness.serve import reply
from harness.store import FleetFullError, Lease, Store, open_store, queue

LOAD_RECHECK_S = 2.0
FLEET_RECHECK_S = 2.0  # a full fleet (FLEET_JOBS) is asked again this soon
GOVERNOR_RECHECK_S = 2.0  # a claim the governor turned away is asked again this soon (or when a session ends)
STORE_RECHECK_S = 5.0  # a database server that did not answer is asked again this soon


@dataclass
class Blocked:
    kind: str  # paused, budget, run_budget, governor, circuit, disk, load, memory, fleet (FLEET_JOBS), store (its server is down)
    reason: str
    until: float | None = None
    halt: bool = False  # a person must act (credentials, disk): --drain/--once exit 4

    def line(self) -> str:
        """For the loop (serve/reply.py): kind, halt (true/false), until (epoch; 0: none), reason."""
        return reply.line(self.kind, self.halt, f"{self.until:.3f}" if self.until else "0", self.reason)


def read_pause(state_dir: Path) -> dict[str, Any] | None:
    return open_store(state_dir).pause()


def active_pause(state_dir: Path, now: float) -> dict[str, Any] | None:
    p = read_pause(state_dir)
    if p is None:
        return None
    until = p.get("until_epoch")
    return p if isinstance(until, (int, float)) and until > now else None


def write_pause(state_dir: Path, until: float, reason: str, by: str, session: str | None = None) -> None:
    """Pauses spawning until then; an existing later pause is kept (store.set_pause)."""
    open_store(state_dir).set_pause(until, reason, by, session)


def clear_pause(state_dir: Path, by: str) -> bool:
    return open_store(state_dir).clear_pause(by)


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
    if policy.BUDGET_USD_PER_DAY > 0:
        over = budget.daily_reason(open_store(state_dir), policy.BUDGET_USD_PER_DAY, now)
        if over is not None:
            return Blocked("budget", over[0], until=over[1])
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


def claim_gated(store: Store, session: str, worker: str, policy: Policy, now: float) -> Lease | Blocked | None:
    blocked = check(store.state_dir, policy, now)
    if blocked:
        return blocked
    breaker = Breaker(store.state_dir, policy)
    asked: dict[str, Any] = {}

    def admit() -> bool:
        if policy.JOBS_MAX > 0:
            go, record, running = governor.admit(store, policy, now)
            if not go:
                asked.update(governor=record, running=running)
                return False
        ok, c = breaker.allow(session, now)
        asked.update(ok=ok, circuit=c)
        return ok

    held = budget.held_runs(store)
    try:
        lease = store.claim(session, worker, now, admit=admit, aging_s=policy.AGING_S, skip_runs=frozenset(held))
    except FleetFullError as exc:
        if asked.get("ok"):
            breaker.release(session)
        return Blocked("fleet", str(exc), until=now + FLEET_RECHECK_S)
    if lease is None and not asked and held and _held_ready(store, held, now, policy):
        return Blocked("run_budget", "; ".join(held[r] for r in sorted(held)) + " (queue.sh add --run NAME "
                       "--budget-usd X raises it)")
    if lease is not None or not asked:
        return lease  # claimed, or nothing was ready
    if "governor" in asked:
        g = asked["governor"]
        return Blocked("governor", f"the governor's target is {g['target']} sessions at once, {asked['running']} "
                       f"run ({g.get('why')})", until=now + min(GOVERNOR_RECHECK_S, policy.GOVERNOR_STEP_S / 2))
    if asked["ok"]:
        breaker.release(session)  # admitted, then lost every race for an item
        return None
    c = asked["circuit"]
    until = c.get("open_until") if c.get("state") == "open" else None
    return Blocked("circuit", f"circuit breaker {describe(c, now)}", until=until, halt=bool(c.get("auth")))


def _held_ready(store: Store, held: dict[str, str], now: float, policy: Policy) -> bool:
    """Whether an item of a run over its budget would run now, were it not for the budget."""
    states = store.states()
    return any(c.run in held and c.not_before <= now and all(states.get(d) == "succeeded" for d in c.depends_on)
               for c in store.pending(now, policy.AGING_S))


# --- what a drain leaves behind ---------------------------------------------
#
# `loop.sh --drain` ends when nothing runs and nothing is ready. Before it does,
# it asks here whether a retry comes due soon enough to wait for (DRAIN_MAX_WAIT_S),
# and, when it leaves, what it leaves: how many items and until when.

LEFT_ORDER = ("retry", "paused", "budget", "run_budget", "circuit", "disk", "load", "memory", "waiting", "blocked")


@dataclass
class Left:
    """Pending items that a drain leaves for one reason."""

    kind: str  # LEFT_ORDER
    count: int
    until: float | None  # the earliest time one of them may run; None: unknown or never
    detail: str  # the block's reason, the dependency that failed
    at: str = ""  # until as a person reads it, when the block says it (pause.json's "until")

    @property
    def until_text(self) -> str:
        return self.at or (iso(self.until) if self.until else "")

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "count": self.count, "until": self.until_text or None,
                "until_epoch": self.until, "detail": self.detail}


@dataclass
class Drain:
    wait_until: float | None  # a retry due within the limit: the drain waits until then
    left: list[Left]
    max_wait_s: float

    @property
    def count(self) -> int:
        return sum(g.count for g in self.left)

    def summary(self, now: float) -> str:
        """'2 items left: 1 waiting out a retry until ..., 1 paused until ...'; empty when none is."""
        if not self.left:
            return ""
        n = self.count
        parts = [_phrase(g, now, self.max_wait_s) for g in self.left]
        return f"{n} item{'' if n == 1 else 's'} left: " + ", ".join(parts)

    def line(self, now: float) -> str:
        """One line for the loop, fields apart by US: the wait's end (epoch, or '-'),
        the same as an ISO time, how many items are left, the summary."""
        return reply.line("-" if self.wait_until is None else f"{self.wait_until:.6f}",
                          "-" if self.wait_until is None else iso(self.wait_until), self.count, self.summary(now))


def _phrase(g: Left, now: float, max_wait_s: float) -> str:
    at = g.until_text
    if g.kind == "retry":
        head = f"{g.count} waiting out a retry until {at}" if g.count == 1 else \
            f"{g.count} waiting out retries, the first until {at}"
        return head + (" (beyond DRAIN_MAX_WAIT_S)" if g.until and g.until > now + max_wait_s else "")
    if g.kind == "paused":
        return f"{g.count} paused until {at}" if at else f"{g.count} paused"
    if g.kind == "budget":
        return f"{g.count} held by BUDGET_USD_PER_DAY until {at}"
    if g.kind == "run_budget":
        return f"{g.count} held by their run's budget ({g.detail})"
    if g.kind == "circuit":
        return f"{g.count} held by the breaker until {at}" if at else f"{g.count} held by the breaker ({g.detail})"
    if g.kind == "waiting":
        return f"{g.count} waiting for an item left behind"
    if g.kind == "blocked":
        return f"{g.count} blocked: {g.detail}" if g.count == 1 else \
            f"{g.count} blocked by dependencies that failed, were canceled or do not exist"
    return f"{g.count} held back: {g.detail}"


def _breaker_block(state_dir: Path, policy: Policy, now: float) -> Blocked | None:
    """The breaker as the next claim would find it, asked without becoming its probe."""
    c = Breaker(state_dir, policy).status(now)
    if c.get("state") == "open":
        return Blocked("circuit", f"circuit breaker {describe(c, now)}", until=float(c.get("open_until") or now))
    if c.get("state") == "half_open" and c.get("probe"):
        return Blocked("circuit", "half-open, a probe runs")
    return None


def drain_check(state_dir: Path, policy: Policy, now: float, max_wait_s: float) -> Drain:
    """What keeps each pending item from running now. Items whose retry comes due
    within max_wait_s, when nothing else holds them, are waited for; the rest are left."""
    store = open_store(state_dir)
    cands = store.pending(now, policy.AGING_S)
    states = store.states()
    held = budget.held_runs(store) if cands else {}
    block = (check(state_dir, policy, now) or _breaker_block(state_dir, policy, now)) if cands else None
    block_at = str((active_pause(state_dir, now) or {}).get("until") or "") if block and block.kind == "paused" else ""
    wait_until: float | None = None
    groups: dict[str, Left] = {}

    def add(kind: str, until: float | None, detail: str = "", at: str = "") -> None:
        g = groups.setdefault(kind, Left(kind, 0, until, detail, at))
        g.count += 1
        if until is not None and (g.until is None or until < g.until):
            g.until = until

    for c in cands:
        failed = queue.blocked_reason(c.depends_on, states)
        if failed:
            add("blocked", None, failed)
        elif c.run in held:
            add("run_budget", None, held[str(c.run)])
        elif any(states.get(d) != "succeeded" for d in c.depends_on):
            add("waiting", None)
        elif block is not None and (block.until is None or block.until >= c.not_before):
            add(block.kind, block.until, block.reason, block_at)
        elif block is not None or c.not_before > now + max_wait_s:
            add("retry", c.not_before)
        else:
            due = max(c.not_before, now)
            wait_until = due if wait_until is None else min(wait_until, due)
    if wait_until is not None:
        # the drain goes on; whatever it would leave now it may still run
        return Drain(wait_until, [], max_wait_s)
    return Drain(None, [groups[k] for k in LEFT_ORDER if k in groups], max_wait_s)
