"""BUDGET_USD_PER_DAY: the day's receipts (UTC) plus the live sessions' running cost
stop claiming at the cap, until the next 00:00 UTC; yesterday's spend does not count."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from harness.pipeline import gate
from harness.pipeline.policy import Policy, iso
from harness.store import Store, open_store

NOON = 1_800_014_400.0  # 2027-01-15T12:00:00Z
MIDNIGHT_NEXT = 1_800_057_600.0


def receipt(s: Store, sid: str, cost: float, started: float) -> None:
    s.record_attempt({"session_id": sid, "item_id": "x", "verdict": "succeeded", "cost_usd": cost,
                      "started_at": iso(started), "ended_at": iso(started + 60)})


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = open_store(tmp_path / "state")
    s.init()
    s.add([("test", {"id": "next", "prompt": "p"}), ("test", {"id": "live", "prompt": "p"})])
    return s


def test_the_daily_cap_counts_today_s_receipts_and_the_live_sessions(store: Store) -> None:
    pol = Policy(BUDGET_USD_PER_DAY=1.0, MIN_FREE_MB=0)
    receipt(store, "ses_yesterday", 5.0, NOON - 86400)  # another day: not counted
    receipt(store, "ses_a", 0.40, NOON - 3600)
    receipt(store, "ses_b", 0.50, NOON - 60)
    assert gate.check(store.state_dir, pol, NOON) is None  # $0.90
    assert store.claim("ses_live", "w", NOON) is not None
    hb = store.state_dir / "sessions" / "ses_live" / "heartbeat.json"
    hb.parent.mkdir(parents=True)
    hb.write_text(json.dumps({"cost_usd_so_far": 0.15}))
    blocked = gate.check(store.state_dir, pol, NOON)
    assert blocked is not None and (blocked.kind, blocked.until, blocked.halt) == ("budget", MIDNIGHT_NEXT, False)
    assert blocked.reason == ("today's spend $1.05 ($0.90 in receipts, $0.15 running) reached BUDGET_USD_PER_DAY $1: "
                              "no new sessions until 2027-01-16T00:00:00.000Z")
    assert gate.claim_gated(store, "ses_2", "w", pol, NOON) == blocked  # the loop's claim is refused the same
    assert gate.check(store.state_dir, pol, MIDNIGHT_NEXT + 1) is None  # a new day
    assert gate.check(store.state_dir, Policy(MIN_FREE_MB=0), NOON) is None  # no cap: never


def test_a_drain_left_at_the_cap_says_so(store: Store) -> None:
    receipt(store, "ses_a", 2.0, time.time())
    d = gate.drain_check(store.state_dir, Policy(BUDGET_USD_PER_DAY=1.0, MIN_FREE_MB=0), time.time(), 60)
    assert d.wait_until is None and d.summary(time.time()).startswith("2 items left: 2 held by BUDGET_USD_PER_DAY until ")


def test_a_run_at_its_budget_is_skipped_and_said_so_others_go_on(store: Store) -> None:
    store.add([("test", {"id": "r1", "prompt": "p", "run": "capped", "priority": "critical"}),
               ("test", {"id": "r2", "prompt": "p", "run": "capped"})])
    store.set_run_budget("capped", 1.0)
    s = store.record_attempt
    s({"session_id": "ses_r0", "item_id": "r0", "run": "capped", "cost_usd": 0.6, "started_at": iso(NOON)})
    pol = Policy(MIN_FREE_MB=0, AGING_S=0)  # the clock is a year on: no ageing, priority alone
    got = gate.claim_gated(store, "ses_a", "w", pol, NOON)
    assert not isinstance(got, gate.Blocked) and got is not None and got.item_id == "r1"  # $0.60 of $1
    s({"session_id": "ses_r1", "item_id": "r1", "run": "capped", "cost_usd": 0.5, "started_at": iso(NOON)})
    got = gate.claim_gated(store, "ses_b", "w", pol, NOON)
    assert not isinstance(got, gate.Blocked) and got is not None and got.item_id in ("next", "live")  # not r2
    assert store.get("r2")[0] == "pending"
    got = gate.claim_gated(store, "ses_c", "w", pol, NOON)
    assert not isinstance(got, gate.Blocked) and got is not None and got.item_id in ("next", "live")
    blocked = gate.claim_gated(store, "ses_d", "w", pol, NOON)
    assert isinstance(blocked, gate.Blocked) and blocked.kind == "run_budget" and not blocked.halt
    assert blocked.reason.startswith("run capped spent $1.10 of its budget $1")
    d = gate.drain_check(store.state_dir, pol, NOON, 60)
    assert d.summary(NOON) == "1 item left: 1 held by their run's budget (run capped spent $1.10 of its budget $1)"
    store.set_run_budget("capped", 5.0)  # raised: it runs again
    got = gate.claim_gated(store, "ses_e", "w", pol, NOON)
    assert not isinstance(got, gate.Blocked) and got is not None and got.item_id == "r2"
