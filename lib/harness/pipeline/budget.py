"""BUDGET_USD_PER_DAY: what the day (UTC) has spent, and the claim gate it makes;
and a run's budget (queue.sh add --run NAME --budget-usd X).

Spent = the receipts of sessions started since 00:00 UTC (the store's attempts:
every host's with STORE=postgres) plus the running cost of this host's live
sessions (their heartbeats' cost_usd_so_far, which the sidecar keeps current).
At the cap nothing new is claimed until the next 00:00 UTC; running sessions go on
(and may end above the cap by what they spend meanwhile).
"""

from __future__ import annotations

from harness import jsonio
from harness.pipeline.policy import iso
from harness.store import Store

DAY_S = 86400.0


def day_start(now: float) -> float:
    return now - now % DAY_S


def live_cost(store: Store, run: str | None = None) -> float:
    """The running cost of this host's live sessions (of one run's only, given one)."""
    total = 0.0
    for sid, (_item, doc) in store.live().items():
        if run is not None and doc.get("run") != run:
            continue
        hb = jsonio.read_dict(store.state_dir / "sessions" / sid / "heartbeat.json") or {}
        cost = hb.get("cost_usd_so_far")
        if isinstance(cost, (int, float)):
            total += float(cost)
    return total


def spent_today(store: Store, now: float) -> tuple[float, float]:
    """(the day's receipts, the live sessions' running cost), in USD."""
    done = sum(float(a.get("cost_usd") or 0.0) for a in store.attempts(since=day_start(now)))
    return done, live_cost(store)


def daily_reason(store: Store, cap: float, now: float) -> tuple[str, float] | None:
    """Why claiming stops, and until when (the next 00:00 UTC); None under the cap."""
    if cap <= 0:
        return None
    done, live = spent_today(store, now)
    if done + live < cap:
        return None
    until = day_start(now) + DAY_S
    return (f"today's spend ${done + live:.2f} (${done:.2f} in receipts, ${live:.2f} running) reached "
            f"BUDGET_USD_PER_DAY ${cap:g}: no new sessions until {iso(until)}"), until


def held_runs(store: Store) -> dict[str, str]:
    """The runs whose spend (their receipts, every host's, plus this host's live
    sessions of theirs) has reached their budget: run -> why. Their items are not
    claimed until the budget is raised (queue.sh add --run NAME --budget-usd X again)."""
    held = {}
    for run, cap in store.run_budgets().items():
        done = sum(float(a.get("cost_usd") or 0.0) for a in store.attempts(run=run))
        live = live_cost(store, run)
        if done + live >= cap:
            held[run] = f"run {run} spent ${done + live:.2f} of its budget ${cap:g}"
    return held
