"""Runs: items grouped by a name (queue.sh add --run NAME), with a state, progress,
cost so far and an estimate of when the rest is done.

The estimate is the run's own: the median wall time of its finished sessions, the
sessions an item has taken so far, and how many of its sessions run at once now
(or, with none running, how many ran side by side on average). Remaining work is
the pending items' expected sessions plus what the running ones have left; the
ETA is that work divided by the parallelism. Its confidence says how much it rests
on: "none" (fewer than MIN_FINISHED finished sessions: no ETA), "low" (under a
fifth of the run finished), "medium" (under half), "high".
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field
from typing import Any

from harness import jsonio
from harness.pipeline.policy import iso
from harness.store import Store, queue

MIN_FINISHED = 3
ACTIVE = ("pending", "running", "verified")


@dataclass(frozen=True)
class Eta:
    seconds: float | None
    confidence: str  # none, low, medium, high
    median_s: float | None
    sessions_per_item: float
    parallel: float


def estimate(durations: list[float], sessions_per_item: float, pending: int, running_elapsed: list[float],
             parallel: float, done: int, total: int) -> Eta:
    """The ETA of what is left: pure, from the run's own numbers."""
    if len(durations) < MIN_FINISHED or total == 0:
        return Eta(None, "none", statistics.median(durations) if durations else None, sessions_per_item, parallel)
    d = statistics.median(durations)
    left = pending * sessions_per_item * d + sum(max(d - e, 0.0) for e in running_elapsed)
    share = done / total
    confidence = "low" if share < 0.2 else "medium" if share < 0.5 else "high"
    seconds = left / max(parallel, 1.0) if pending or running_elapsed else 0.0
    return Eta(round(seconds, 1), confidence, round(d, 3), round(sessions_per_item, 3), round(parallel, 2))


@dataclass
class Run:
    name: str
    state: str = "running"  # running, done, failed, canceled
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(queue.STATES, 0))
    total: int = 0
    done: int = 0  # items in a terminal state
    blocked: int = 0  # pending items a failed or canceled dependency holds for good
    sessions: int = 0
    cost_usd: float = 0.0
    created_at: str | None = None
    last_ended_at: str | None = None
    eta: Eta | None = None
    eta_at: str | None = None

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["progress"] = round(self.done / self.total, 4) if self.total else 0.0
        out["cost_usd"] = round(self.cost_usd, 6)
        return out


def _state(counts: dict[str, int], blocked: int) -> str:
    """running while an item may still run; then failed (an item quarantined, or
    blocked for good by a dependency that failed or was canceled), canceled (an item
    canceled, none failed) or done (every item succeeded)."""
    if sum(counts[s] for s in ACTIVE) > blocked:
        return "running"
    if counts["quarantined"] or blocked:
        return "failed"
    return "canceled" if counts["canceled"] else "done"


def _parallel(rows: list[dict[str, Any]], running: int) -> float:
    """Sessions at once: those running now, else the average overlap of the finished."""
    if running:
        return float(running)
    spans = [(r["started"], r["ended"]) for r in rows if r.get("started") and r.get("ended")]
    if not spans:
        return 1.0
    busy = sum(e - s for s, e in spans)
    window = max(e for _, e in spans) - min(s for s, _ in spans)
    return max(1.0, busy / window) if window > 0 else 1.0


def summarize(name: str, items: list[dict[str, Any]], rows: list[dict[str, Any]], now: float) -> Run:
    """One run from its items (as Store.items lists them) and its attempts."""
    run = Run(name)
    for item in items:
        run.counts[item["state"]] = run.counts.get(item["state"], 0) + 1
    run.total = len(items)
    run.done = sum(run.counts[s] for s in queue.TERMINAL_STATES)
    run.blocked = sum(1 for i in items if i["state"] == "pending" and i.get("blocked"))
    run.state = _state(run.counts, run.blocked)
    run.sessions = len(rows)
    run.cost_usd = sum(float(r.get("cost_usd") or 0) for r in rows)
    run.created_at = min((str(i.get("created_at")) for i in items if i.get("created_at")), default=None)
    ended = [r["ended"] for r in rows if r.get("ended")]
    run.last_ended_at = iso(max(ended)) if ended else None
    tried = {r.get("item_id") for r in rows}  # a canceled item that never ran takes no sessions
    finished_items = {i["id"] for i in items if i["state"] in queue.TERMINAL_STATES and i["id"] in tried}
    durations = [float(r["wall_s"]) for r in rows if isinstance(r.get("wall_s"), (int, float))]
    per_item = _sessions_per_item(rows, finished_items)
    running = [now - _claimed(i, now) for i in items if i["state"] == "running"]
    pending = run.counts["pending"] - run.blocked  # a verified item only waits to land: no session left
    run.eta = estimate(durations, max(per_item, 1.0), pending, running, _parallel(rows, len(running)),
                       run.done, run.total)
    if run.eta.seconds is not None:
        run.eta_at = iso(now + run.eta.seconds)
    return run


def _sessions_per_item(rows: list[dict[str, Any]], finished: set[str]) -> float:
    """Sessions an item takes: over the finished items once there are a few, else
    over every item that has had one (retries show before anything finishes)."""
    if len(finished) >= MIN_FINISHED:
        return sum(1 for r in rows if r.get("item_id") in finished) / len(finished)
    touched = {r.get("item_id") for r in rows}
    return len(rows) / len(touched) if touched else 1.0


def _claimed(item: dict[str, Any], now: float) -> float:
    lease = item.get("lease")
    if not isinstance(lease, dict):
        return now
    try:
        return jsonio.parse_iso(str(lease.get("claimed_at"))).timestamp()
    except ValueError:
        return now


def runs(store: Store, now: float, name: str | None = None) -> list[Run]:
    """Every run (or the one named), newest first."""
    by_run: dict[str, list[dict[str, Any]]] = {}
    for item in store.items(list(queue.STATES)):
        if item.get("run") and (name is None or item["run"] == name):
            by_run.setdefault(str(item["run"]), []).append(item)
    rows: dict[str, list[dict[str, Any]]] = {}
    for r in store.attempts(run=name):
        if r.get("run") in by_run:
            rows.setdefault(str(r["run"]), []).append(r)
    out = [summarize(n, items, rows.get(n, []), now) for n, items in by_run.items()]
    out.sort(key=lambda r: r.created_at or "", reverse=True)
    out.sort(key=lambda r: r.state != "running")  # stable: running first, each part newest first
    return out


# --- rendering -------------------------------------------------------------------

BAR = 20


def bar(done: int, total: int, width: int = BAR) -> str:
    """[#######.............]: the finished share of a run."""
    filled = round(width * done / total) if total else 0
    return "[" + "#" * filled + "." * (width - filled) + "]"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    s = round(seconds)
    if s >= 86400:
        return f"{s // 86400}d{s % 86400 // 3600:02d}h"
    if s >= 3600:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def eta_text(run: Run) -> str:
    """What a person reads about when the run ends."""
    if run.state != "running":
        return run.state
    eta = run.eta
    if eta is None or eta.seconds is None:
        return f"ETA unknown (fewer than {MIN_FINISHED} finished sessions)"
    return f"ETA {duration(eta.seconds)} ({eta.confidence} confidence; {run.eta_at})"


def line(run: Run) -> str:
    """One run on one line: name, progress bar, counts, cost, ETA."""
    c = run.counts
    parts = [f"{c['succeeded']} ok"]
    if run.blocked:
        parts.append(f"{run.blocked} blocked")
    for label, key in (("failed", "quarantined"), ("canceled", "canceled"), ("running", "running"),
                       ("pending", "pending"), ("landing", "verified")):
        if c.get(key):
            parts.append(f"{c[key]} {label}")
    return (f"{run.name}  {bar(run.done, run.total)} {run.done}/{run.total}  {', '.join(parts)}  "
            f"${run.cost_usd:.2f}  {eta_text(run)}")


def render_table(found: list[Run], now: float) -> str:
    return "\n".join(line(r) for r in found)


def render_one(run: Run, items: list[dict[str, Any]], now: float) -> str:
    eta = run.eta
    out = [line(run), f"  created {run.created_at}, {run.sessions} session(s), last ended {run.last_ended_at or '-'}"]
    if eta is not None and eta.median_s is not None:
        out.append(f"  median session {duration(eta.median_s)}, {eta.sessions_per_item:g} session(s) per item, "
                   f"{eta.parallel:g} at once")
    for item in items:
        if item.get("run") == run.name:
            out.append(f"  {item['id']:<30} {item['state']:<11} {item.get('attempts', 0)} tries  "
                       f"{item.get('last_verdict') or '-'}")
    return "\n".join(out)
