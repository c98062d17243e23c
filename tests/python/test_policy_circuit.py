"""The failure policy (policy.py) and the circuit breaker (breaker.py), driven by
an explicit clock: every transition of the breaker, with the times it promises."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import orjson
import pytest
from harness.pipeline import gate, policy
from harness.pipeline.breaker import Breaker, outcome
from harness.pipeline.verdict import Verdict
from harness.store import Lease, open_store, queue

T0 = 1_800_000_000.0


@pytest.fixture
def state(tmp_path: Path) -> Path:
    queue.Queue(tmp_path).init()
    return tmp_path


def pol(**kw: Any) -> policy.Policy:
    return policy.Policy(**kw)


def audit(state: Path) -> list[dict[str, Any]]:
    path = state / "events.jsonl"
    return [orjson.loads(line) for line in path.read_bytes().splitlines()] if path.exists() else []


# --- the policy ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("verdict", "retryable", "action", "to_state", "attempts"),
    [
        ("succeeded", None, "succeed", "succeeded", 1),
        ("max_turns", None, "quarantine", "quarantined", 1),
        ("budget_exceeded", None, "quarantine", "quarantined", 1),
        ("usage_limited", None, "pause", "pending", 0),
        ("interrupted", None, "requeue", "pending", 0),
        ("auth_error", None, "requeue", "pending", 0),
        ("api_error", None, "retry", "pending", 1),
        ("crashed", None, "retry", "pending", 1),
        ("stalled", None, "retry", "pending", 1),
        ("timed_out", None, "retry", "pending", 1),
        ("spawn_failed", None, "retry", "pending", 1),
        ("failed", False, "quarantine", "quarantined", 1),
        ("failed", None, "retry", "pending", 1),
    ],
)
def test_each_verdict_has_its_policy(verdict: str, retryable: bool | None, action: str, to_state: str,
                                     attempts: int) -> None:
    d = policy.decide(Verdict(verdict, "why", retryable=retryable), 0, 3, pol(), T0, random.Random(1))
    assert (d.action, d.to_state, d.attempts) == (action, to_state, attempts)
    assert (d.not_before is not None) == (action == "retry")


def test_backoff_is_full_jitter_under_a_doubling_capped_ceiling() -> None:
    p = pol(RETRY_BASE_S=30, RETRY_CAP_S=100)
    rng = random.Random(7)
    for attempt, ceiling in ((1, 30), (2, 60), (3, 100), (9, 100)):
        delays = [policy.backoff_s(attempt, p, rng) for _ in range(2000)]
        assert min(delays) >= 0 and max(delays) <= ceiling
        assert max(delays) > 0.9 * ceiling and min(delays) < 0.1 * ceiling  # spread over the whole range


def test_retries_stop_at_max_attempts_with_the_count_in_the_reason() -> None:
    v = Verdict("api_error", "API error 500")
    assert policy.decide(v, 1, 3, pol(), T0, random.Random(1)).to_state == "pending"
    last = policy.decide(v, 2, 3, pol(), T0, random.Random(1))
    assert (last.to_state, last.attempts, last.reason) == ("quarantined", 3, "API error 500 (gave up after 3 attempts)")


def test_usage_limit_pauses_until_the_reset_plus_jitter() -> None:
    p = pol(PAUSE_JITTER_S=60, USAGE_PAUSE_S=300)
    d = policy.decide(Verdict("usage_limited", "five_hour", resets_at=T0 + 3600), 2, 3, p, T0, random.Random(3))
    assert d.attempts == 2 and d.pause_until is not None and T0 + 3600 <= d.pause_until <= T0 + 3660
    no_reset = policy.decide(Verdict("usage_limited", "limit"), 0, 3, p, T0, random.Random(3))
    assert no_reset.pause_until is not None and T0 + 300 <= no_reset.pause_until <= T0 + 360


def test_a_canceled_interrupt_goes_to_canceled() -> None:
    d = policy.decide(Verdict("interrupted", "canceled by operator"), 1, 3, pol(), T0, random.Random(1), canceled=True)
    assert (d.action, d.to_state, d.attempts) == ("cancel", "canceled", 1)


# --- the breaker ----------------------------------------------------------------


def test_outcomes_as_the_breaker_counts_them() -> None:
    assert outcome("api_error", True) == "failure"
    assert outcome("spawn_failed", False) == "failure"
    assert outcome("crashed", False) == "failure"  # crashed before the stream's init line
    assert outcome("crashed", True) == "neutral"
    assert outcome("stalled", True, "requesting") == "failure"  # waiting on the API
    assert outcome("stalled", True, "in_tool") == "neutral"
    assert outcome("failed", True) == "success"  # the API answered (a 400, say)
    assert outcome("interrupted", True) == "neutral"
    assert outcome("usage_limited", True) == "neutral"


def test_opens_after_n_failures_in_a_row_and_a_success_resets_the_run(state: Path) -> None:
    b = Breaker(state, pol(CIRCUIT_FAILURES=3, CIRCUIT_WINDOW=0))
    b.record("s1", "failure", "api_error", "500", T0)
    b.record("s2", "failure", "api_error", "500", T0 + 1)
    b.record("s3", "success", "succeeded", "ok", T0 + 2)
    b.record("s4", "failure", "api_error", "500", T0 + 3)
    c = b.record("s5", "failure", "api_error", "500", T0 + 4)
    assert c["state"] == "closed" and c["consecutive_failures"] == 2
    c = b.record("s6", "failure", "api_error", "529", T0 + 5)
    assert c["state"] == "open" and c["open_until"] == T0 + 5 + 60
    assert "3 API-level failures in a row" in c["reason"]
    assert orjson.loads((state / "circuit.json").read_bytes())["state"] == "open"  # persisted
    assert [e["event"] for e in audit(state)] == ["circuit.opened"]


def test_opens_on_the_failure_rate_over_a_full_window(state: Path) -> None:
    b = Breaker(state, pol(CIRCUIT_FAILURES=0, CIRCUIT_WINDOW=6, CIRCUIT_FAILURE_RATE=0.5))
    results = ["failure", "success", "failure", "success", "failure"]
    for i, r in enumerate(results):
        c = b.record(f"s{i}", r, "x", "y", T0 + i)
        assert c["state"] == "closed", "fewer than CIRCUIT_WINDOW outcomes never open it"
    c = b.record("s5", "success", "x", "y", T0 + 5)
    assert c["state"] == "open" and "3 of the last 6 sessions failed" in c["reason"]


def test_neutral_outcomes_do_not_count(state: Path) -> None:
    b = Breaker(state, pol(CIRCUIT_FAILURES=2))
    b.record("s1", "failure", "api_error", "500", T0)
    b.record("s2", "neutral", "interrupted", "stop", T0)
    b.record("s3", "neutral", "usage_limited", "limit", T0)
    assert b.status(T0)["consecutive_failures"] == 1 and len(b.status(T0)["window"]) == 1


def test_open_half_open_one_probe_then_closed(state: Path) -> None:
    b = Breaker(state, pol(CIRCUIT_FAILURES=1, CIRCUIT_OPEN_S=60))
    b.record("s1", "failure", "api_error", "500", T0)
    assert b.allow("s2", T0 + 59.9)[0] is False
    assert b.status(T0 + 60)["state"] == "half_open"
    ok, c = b.allow("probe", T0 + 60)
    assert ok and c["state"] == "half_open" and c["probe"]["session"] == "probe"
    assert b.allow("other", T0 + 61)[0] is False, "exactly one probe"
    assert b.allow("probe", T0 + 61)[0] is True, "the probe itself may ask again"
    c = b.record("probe", "success", "succeeded", "ok", T0 + 70)
    assert c["state"] == "closed" and c["open_s"] == 60 and c["window"] == []
    assert b.allow("next", T0 + 71)[0] is True
    events = [e["event"] for e in audit(state)]
    assert events == ["circuit.opened", "circuit.half_open", "circuit.probe", "circuit.closed"]


def test_a_failed_probe_doubles_the_open_time_up_to_the_cap(state: Path) -> None:
    b = Breaker(state, pol(CIRCUIT_FAILURES=1, CIRCUIT_OPEN_S=60, CIRCUIT_OPEN_CAP_S=200))
    b.record("s0", "failure", "api_error", "500", T0)
    now, opens = T0, []
    for i in range(4):
        c = b.status(now)
        now = float(c["open_until"])
        assert b.allow(f"p{i}", now)[0]
        c = b.record(f"p{i}", "failure", "api_error", "500", now)
        assert c["state"] == "open"
        opens.append(c["open_s"])
    assert opens == [120, 200, 200, 200]
    assert b.allow("x", now + 199)[0] is False


def test_a_neutral_probe_lets_another_probe_go(state: Path) -> None:
    b = Breaker(state, pol(CIRCUIT_FAILURES=1, CIRCUIT_OPEN_S=10))
    b.record("s0", "failure", "api_error", "500", T0)
    assert b.allow("p1", T0 + 10)[0]
    c = b.record("p1", "neutral", "interrupted", "stop", T0 + 11)
    assert c["state"] == "half_open" and c["probe"] is None
    assert b.allow("p2", T0 + 12)[0]


def test_a_probe_that_never_started_is_released(state: Path) -> None:
    b = Breaker(state, pol(CIRCUIT_FAILURES=1, CIRCUIT_OPEN_S=10))
    b.record("s0", "failure", "api_error", "500", T0)
    assert b.allow("p1", T0 + 10)[0]
    b.release("p1")
    assert b.allow("p2", T0 + 11)[0]
    # a probe whose lease vanished (a loop killed between claim and spawn) goes stale after a minute
    assert b.allow("p3", T0 + 12)[0] is False
    assert b.allow("p3", T0 + 11 + 61)[0] is True


def test_auth_error_opens_at_once_and_says_the_credentials_are_wrong(state: Path) -> None:
    b = Breaker(state, pol(CIRCUIT_FAILURES=5))
    c = b.record("s1", "failure", "auth_error", "credentials rejected (401): Invalid API key", T0)
    assert c["state"] == "open" and c["auth"] is True
    opened = audit(state)[-1]
    assert opened["event"] == "circuit.opened" and opened["credentials"] is True
    assert "credentials rejected (401)" in opened["reason"]
    # a second 401 from a session that was already running changes nothing
    assert b.record("s2", "failure", "auth_error", "401", T0 + 1)["opened_at"] == T0


def test_a_live_storm_counts_once_and_the_final_outcome_replaces_it(state: Path) -> None:
    b = Breaker(state, pol(CIRCUIT_FAILURES=2))
    b.storm("s1", 5, "529", T0)
    b.storm("s1", 6, "529", T0 + 1)  # the same session again: not counted twice
    c = b.status(T0)
    assert c["consecutive_failures"] == 1 and c["state"] == "closed"
    c = b.record("s1", "failure", "api_error", "529", T0 + 2)
    assert c["consecutive_failures"] == 1 and c["state"] == "closed"
    c = b.storm("s2", 5, "500", T0 + 3)
    assert c["state"] == "open", "two sessions in a storm open it before either ends"
    b2 = Breaker(state / "other", pol(CIRCUIT_FAILURES=2))
    (state / "other").mkdir(exist_ok=True)
    b2.storm("a", 5, "529", T0)
    assert b2.record("a", "success", "succeeded", "ok", T0 + 1)["consecutive_failures"] == 0


def test_an_unreadable_circuit_file_starts_closed_and_says_so(state: Path) -> None:
    (state / "circuit.json").write_bytes(b"{not json")
    b = Breaker(state, pol())
    assert b.allow("s", T0)[0] is True
    assert any(e["event"] == "circuit.reset" for e in audit(state))


# --- the claim gate -------------------------------------------------------------


def _add(state: Path, *ids: str) -> None:
    queue.add(queue.Queue(state), [(i, {"id": i, "prompt": "p"}) for i in ids])


def test_the_gate_blocks_on_a_pause_and_an_operator_resume_lifts_it(state: Path) -> None:
    _add(state, "a")
    gate.write_pause(state, T0 + 100, "five_hour limit", by="usage_limited")
    got = gate.claim_gated(open_store(state), "ses_1", "w", pol(MIN_FREE_MB=0), T0)
    assert isinstance(got, gate.Blocked) and got.kind == "paused" and got.until == T0 + 100 and not got.halt
    assert gate.clear_pause(state, "operator")
    got = gate.claim_gated(open_store(state), "ses_1", "w", pol(MIN_FREE_MB=0), T0)
    assert isinstance(got, Lease) and got.item_id == "a"
    assert [e["event"] for e in audit(state)][-2:] == ["loop.paused", "loop.resumed"]


def test_the_gate_blocks_on_low_disk_as_a_halt(state: Path) -> None:
    _add(state, "a")
    got = gate.claim_gated(open_store(state), "ses_1", "w", pol(MIN_FREE_MB=1e12), T0)
    assert isinstance(got, gate.Blocked) and got.kind == "disk" and got.halt
    assert queue.Queue(state).ids("pending") == ["a"]


def test_the_gate_makes_the_claimed_session_the_probe_and_blocks_the_rest(state: Path) -> None:
    _add(state, "a", "b")
    p = pol(CIRCUIT_FAILURES=1, CIRCUIT_OPEN_S=10, MIN_FREE_MB=0)
    Breaker(state, p).record("s0", "failure", "api_error", "500", T0)
    blocked = gate.claim_gated(open_store(state), "ses_1", "w", p, T0 + 5)
    assert isinstance(blocked, gate.Blocked) and blocked.kind == "circuit" and blocked.until == T0 + 10
    got = gate.claim_gated(open_store(state), "ses_2", "w", p, T0 + 10)
    assert isinstance(got, Lease)
    second = gate.claim_gated(open_store(state), "ses_3", "w", p, T0 + 10)
    assert isinstance(second, gate.Blocked) and "probe ses_2 running" in second.reason
    assert len(queue.Queue(state).ids("running")) == 1


def test_nothing_ready_never_takes_the_probe(state: Path) -> None:
    p = pol(CIRCUIT_FAILURES=1, CIRCUIT_OPEN_S=10, MIN_FREE_MB=0)
    Breaker(state, p).record("s0", "failure", "api_error", "500", T0)
    assert gate.claim_gated(open_store(state), "ses_1", "w", p, T0 + 10) is None
    assert Breaker(state, p).status(T0 + 10)["probe"] is None


# --- what a drain waits for, and what it leaves --------------------------------


def _retry_at(state: Path, item_id: str, epoch: float) -> None:
    q = queue.Queue(state)
    item = q.load("pending", item_id)
    item["not_before"] = policy.iso(epoch)
    q.path("pending", item_id).write_bytes(orjson.dumps(item))


def test_a_drain_waits_for_the_first_retry_due_within_the_limit(state: Path) -> None:
    _add(state, "a", "b")
    _retry_at(state, "a", T0 + 30)
    _retry_at(state, "b", T0 + 10)
    d = gate.drain_check(state, pol(MIN_FREE_MB=0), T0, 60)
    assert d.wait_until == T0 + 10 and d.left == [] and d.summary(T0) == ""
    assert d.line(T0).split("\x1f") == [f"{T0 + 10:.6f}", policy.iso(T0 + 10), "0", ""]


def test_a_drain_leaves_a_retry_beyond_the_limit_and_says_until_when(state: Path) -> None:
    _add(state, "a", "b")
    _retry_at(state, "a", T0 + 600)
    _retry_at(state, "b", T0 + 900)
    d = gate.drain_check(state, pol(MIN_FREE_MB=0), T0, 300)
    assert d.wait_until is None and d.count == 2
    assert d.summary(T0) == (f"2 items left: 2 waiting out retries, the first until {policy.iso(T0 + 600)} "
                             "(beyond DRAIN_MAX_WAIT_S)")
    assert d.line(T0).split("\x1f")[:3] == ["-", "-", "2"]
    assert [g.as_dict()["until"] for g in d.left] == [policy.iso(T0 + 600)]


def test_a_drain_leaves_paused_items_and_names_a_retry_that_ends_after_the_pause(state: Path) -> None:
    _add(state, "a", "b", "c")
    gate.write_pause(state, T0 + 100, "maintenance", by="operator")
    _retry_at(state, "b", T0 + 50)  # held by the pause, which ends later
    _retry_at(state, "c", T0 + 200)  # its own retry ends after the pause
    d = gate.drain_check(state, pol(MIN_FREE_MB=0), T0, 300)
    assert d.wait_until is None
    until = str(gate.active_pause(state, T0)["until"])  # type: ignore[index]
    assert d.summary(T0) == f"3 items left: 1 waiting out a retry until {policy.iso(T0 + 200)}, 2 paused until {until}"


def test_a_drain_leaves_items_the_breaker_holds_and_never_takes_the_probe(state: Path) -> None:
    _add(state, "a")
    p = pol(CIRCUIT_FAILURES=1, CIRCUIT_OPEN_S=10, MIN_FREE_MB=0)
    Breaker(state, p).record("s0", "failure", "api_error", "500", T0)
    d = gate.drain_check(state, p, T0 + 5, 300)
    assert d.wait_until is None
    assert d.summary(T0 + 5) == f"1 item left: 1 held by the breaker until {policy.iso(T0 + 10)}"
    # half-open: the next claim is the probe; the drain goes on (the item is ready) and takes nothing
    d = gate.drain_check(state, p, T0 + 10, 300)
    assert d.wait_until == T0 + 10 and d.left == []
    assert Breaker(state, p).status(T0 + 10)["probe"] is None


def test_a_drain_names_items_held_by_their_dependencies(state: Path) -> None:
    _add(state, "base", "gone")
    q = queue.Queue(state)
    queue.add(q, [("x", {"id": "after", "prompt": "p", "depends_on": ["base"]}),
                  ("y", {"id": "orphan", "prompt": "p", "depends_on": ["gone"]})])
    _retry_at(state, "base", T0 + 1000)
    queue.cancel(q, "gone")
    d = gate.drain_check(state, pol(MIN_FREE_MB=0), T0, 300)
    assert d.summary(T0) == (f"3 items left: 1 waiting out a retry until {policy.iso(T0 + 1000)} (beyond DRAIN_MAX_WAIT_S), "
                             "1 waiting for an item left behind, 1 blocked: depends on gone, which is canceled")
