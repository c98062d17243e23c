"""BUDGET_USD_PER_DAY: what the day (UTC) has spent, and the claim gate it makes.

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


def live_cost(store: Store) -> float:
    total = 0.0
    for sid in store.live():
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
