"""The governor (lib/harness/pipeline/governor.py): its decisions on a clock the tests
set, its shared record on every backend, and the claim gate that obeys it."""

from __future__ import annotations

from typing import Any

import pytest
from harness.pipeline import gate, governor
from harness.pipeline.governor import Seen
from harness.pipeline.policy import Policy
from harness.serve.metrics import registry
from harness.store import Store
from prometheus_client import generate_latest

T0 = 1_800_000_000.0


def pol(**over: Any) -> Policy:
    base: dict[str, Any] = {"JOBS": 1, "JOBS_MIN": 1, "JOBS_MAX": 8, "GOVERNOR_STEP_S": 10.0,
                            "GOVERNOR_WINDOW_S": 60.0, "GOVERNOR_STORM_SHARE": 0.05}
    return Policy(**{**base, **over})


def record_at(target: int, now: float = T0, **more: Any) -> dict[str, Any]:
    r = governor.current(None, pol(), now)
    r.update(target=target, **more)
    return r


def feed(r: dict[str, Any], p: Policy, now: float, ok: int, throttled: int, running: int,
         demand: bool = True) -> dict[str, Any] | None:
    governor.note(r, "h1", Seen(ok, throttled), p, now)
    if demand:
        r["demand_at"] = now
    return governor.decide(r, p, now, running)


def test_it_starts_at_jobs_kept_between_min_and_max() -> None:
    assert governor.current(None, pol(JOBS=3), T0)["target"] == 3
    assert governor.current(None, pol(JOBS=20), T0)["target"] == 8
    assert governor.current(None, pol(JOBS=1, JOBS_MIN=2), T0)["target"] == 2
    stale = record_at(5, updated_at=T0 - 11 * 60)
    assert governor.current(stale, pol(JOBS=2), T0)["target"] == 2  # nobody updated it for 10 windows
    # another host's (or an earlier) JOBS_MAX: kept within this one's, its evidence kept
    assert governor.current(record_at(5, buckets=[[T0, "h2", 3, 1]]), pol(JOBS_MAX=4), T0)["buckets"] == [[T0, "h2", 3, 1]]
    assert governor.current(record_at(5), pol(JOBS_MAX=4), T0)["target"] == 4
    assert governor.current(record_at(1), pol(JOBS_MIN=2), T0)["target"] == 2
    ahead = governor.current(record_at(5, changed_at=T0 + 300), pol(), T0)  # the clock went back
    assert ahead["target"] == 5 and ahead["changed_at"] == T0


def test_a_storm_cuts_the_target_in_proportion_to_the_refused_share() -> None:
    p = pol()
    r = record_at(8, changed_at=T0 - 30)
    change = feed(r, p, T0, ok=30, throttled=50, running=8)  # 62% refused: 8 x 0.375 = 3
    assert change is not None and (change["from"], change["to"], change["cause"]) == (8, 3, "storm")
    assert r["why"] == "50 of 80 requests refused 429/529 (62%) with 8 running: 8 -> 3"
    assert (r["storm_level"], r["target"]) == (8, 3)


def test_a_light_storm_still_costs_one_and_one_refusal_is_not_a_storm() -> None:
    p = pol()
    r = record_at(4, changed_at=T0 - 30)
    assert feed(r, p, T0, ok=30, throttled=1, running=4) is None  # one refusal: noise
    r = record_at(4, changed_at=T0 - 30)
    assert feed(r, p, T0, ok=30, throttled=2, running=4) is not None and r["target"] == 3  # 6%: at least one less
    r = record_at(1, changed_at=T0 - 30)
    assert feed(r, p, T0, ok=1, throttled=9, running=1) is None and r["target"] == 1
    assert r["why"].endswith("staying at 1 (JOBS_MIN)")


def test_after_a_cut_the_old_level_s_refusals_do_not_cut_again() -> None:
    p = pol()
    r = record_at(8, changed_at=T0 - 30)
    feed(r, p, T0, ok=30, throttled=50, running=8)
    # the 8 sessions still run: their 429s are the old level's
    assert feed(r, p, T0 + 6, ok=10, throttled=20, running=8) is None and r["target"] == 3
    assert feed(r, p, T0 + 12, ok=10, throttled=20, running=5) is None and r["target"] == 3
    # down to the target: what comes now is the new level's evidence
    assert feed(r, p, T0 + 14, ok=10, throttled=0, running=3) is None
    assert feed(r, p, T0 + 20, ok=10, throttled=5, running=3) is not None and r["target"] == 2


def test_clean_time_with_work_waiting_adds_one_per_step() -> None:
    p = pol()
    r = record_at(2, changed_at=T0)
    assert feed(r, p, T0 + 10, ok=10, throttled=0, running=2, demand=False) is None  # nothing waits
    assert feed(r, p, T0 + 5, ok=10, throttled=0, running=2) is None  # work waits, but not a step yet
    change = feed(r, p, T0 + 11, ok=10, throttled=0, running=2)
    assert change is not None and (change["to"], change["cause"]) == (3, "clean")
    assert feed(r, p, T0 + 15, ok=10, throttled=0, running=3) is None
    assert feed(r, p, T0 + 21, ok=10, throttled=0, running=3) is not None and r["target"] == 4
    r = record_at(8, changed_at=T0)
    assert feed(r, p, T0 + 30, ok=10, throttled=0, running=8) is None and r["target"] == 8  # JOBS_MAX


def test_a_level_that_stormed_is_tried_again_only_after_five_windows() -> None:
    p = pol()
    r = record_at(4, changed_at=T0 - 30)
    feed(r, p, T0, ok=30, throttled=10, running=4)  # 25%: 4 -> 3
    assert r["target"] == 3
    assert feed(r, p, T0 + 60, ok=50, throttled=0, running=3) is None
    assert r["cause"] == "hold" and "holding at 3: 4 met 429/529" in r["why"]
    assert feed(r, p, T0 + 5 * 60 + 1, ok=50, throttled=0, running=3) is not None and r["target"] == 4


def test_a_rate_limit_warning_halves_the_target_and_holds_it_for_a_window() -> None:
    p = pol()
    r = record_at(6, changed_at=T0 - 30)
    governor.note(r, "h1", Seen(5, 0, (0.85, "five_hour")), p, T0)
    change = governor.decide(r, p, T0, 6)
    assert change is not None and (change["to"], change["cause"]) == (3, "warning")
    assert "the five_hour window is 85% used" in r["why"]
    # every session says it: another warning within the window cuts no more
    governor.note(r, "h1", Seen(5, 0, (0.86, "five_hour")), p, T0 + 5)
    assert governor.decide(r, p, T0 + 5, 3) is None and r["target"] == 3
    r["demand_at"] = T0 + 30
    assert feed(r, p, T0 + 30, ok=10, throttled=0, running=3) is None and r["target"] == 3  # within the window
    assert feed(r, p, T0 + 66, ok=10, throttled=0, running=3) is not None and r["target"] == 4


def test_only_the_window_counts() -> None:
    p = pol()
    r = record_at(4, changed_at=T0 - 300)
    governor.note(r, "h1", Seen(0, 40), p, T0 - 100)  # long ago
    assert feed(r, p, T0, ok=20, throttled=0, running=4, demand=False) is None and r["target"] == 4
    assert len(r["buckets"]) == 1


def test_hosts_share_one_record_and_the_claim_gate_obeys_it(any_store: Store) -> None:
    p = pol(JOBS=2, GOVERNOR_STEP_S=2.0)
    any_store.add([("t", {"id": f"i{n}", "prompt": "p"}) for n in range(5)])
    assert isinstance(gate.claim_gated(any_store, "ses_1", "w", p, T0), object)
    assert gate.claim_gated(any_store, "ses_2", "w", p, T0) is not None
    blocked = gate.claim_gated(any_store, "ses_3", "w", p, T0)
    assert isinstance(blocked, gate.Blocked) and blocked.kind == "governor" and blocked.until == T0 + 1  # half a step
    assert "the governor's target is 2 sessions at once, 2 run" in blocked.reason
    assert any_store.running_count(T0) == 2
    # two hosts report: one clean, one that saw 429s; the second's decision is the fleet's
    assert governor.step(any_store, "h1", Seen(ok=20), p, T0 + 1) is None
    change = governor.step(any_store, "h2", Seen(ok=2, throttled=6), p, T0 + 2)
    assert change is not None and (change["from"], change["to"]) == (2, 1)
    shared = any_store.shared_record("governor")
    assert shared is not None and shared["target"] == 1 and {b[1] for b in shared["buckets"]} == {"h1", "h2"}
    events = [e for e in any_store.events() if e.get("event") == "governor.changed"]
    assert events and events[-1]["to"] == 1 and events[-1]["host"] == "h2"
    status = governor.status(any_store, T0 + 2)
    assert status is not None and (status["target"], status["running"], status["throttled"], status["max"]) == (1, 2, 6, 8)
    assert governor.status(any_store, T0 + 2 + 11 * 60) is None  # no loop kept it for 10 windows
    text = generate_latest(registry(any_store.state_dir)).decode()
    assert "harness_governor_target 1.0" in text and 'harness_governor_cause{cause="storm"} 1.0' in text
    assert "harness_governor_throttled_ratio 0.2143" in text  # 6 of 28 (the clock: the record's future)


def test_without_jobs_max_there_is_no_governor(any_store: Store) -> None:
    p = pol(JOBS_MAX=0)
    any_store.add([("t", {"id": f"i{n}", "prompt": "p"}) for n in range(3)])
    assert all(not isinstance(gate.claim_gated(any_store, f"ses_{n}", "w", p, T0), gate.Blocked) for n in range(3))
    assert governor.status(any_store, T0) is None and any_store.shared_record("governor") is None


@pytest.mark.parametrize("used,paused", [((0.95, "five_hour", T0 + 600), True), ((0.5, "five_hour", T0 + 600), False),
                                         ((0.95, "seven_day", T0 - 1), False), (None, False)])
def test_stop_at_utilization_pauses_until_the_reset(any_store: Store, used: Any, paused: bool) -> None:
    p = pol(STOP_AT_UTILIZATION=0.9)
    assert governor.stop_at_utilization(any_store, p, used, T0, "ses_1") is paused
    pause = any_store.pause()
    assert (pause is not None and pause["until_epoch"] == T0 + 600 and pause["by"] == "utilization") is paused
    if paused:  # said once
        assert governor.stop_at_utilization(any_store, p, used, T0 + 1, "ses_2") is False


def test_a_finished_session_s_warning_is_heard_once_even_if_the_sidecar_heard_it_too(any_store: Store) -> None:
    p = pol(JOBS=4, JOBS_MAX=4)
    governor.note_warning(any_store, "h1", p, (0.8, "five_hour"), T0)  # its finalize
    record = any_store.shared_record("governor")
    assert record is not None and (record["target"], record["cause"]) == (2, "warning")
    governor.note_warning(any_store, "h1", p, (0.8, "five_hour"), T0 + 1)  # the sidecar's report of it
    assert any_store.shared_record("governor")["target"] == 2  # type: ignore[index]
    governor.note_warning(any_store, "h1", pol(JOBS_MAX=0), (0.9, "five_hour"), T0 + 2)
    governor.note_warning(any_store, "h1", p, None, T0 + 2)
    assert len([e for e in any_store.events() if e.get("event") == "governor.changed"]) == 1
