"""Runs: progress, state, cost so far and the ETA (report/runs.py), on both stores."""

from __future__ import annotations

import heapq
from pathlib import Path
from typing import Any

import pytest
from harness.pipeline.policy import iso
from harness.report import runs
from harness.store import Store, open_store

T0 = 1_800_000_000.0


def _receipt(sid: str, item: str, run: str, start: float, wall: float, cost: float,
             verdict: str = "succeeded") -> dict[str, Any]:
    return {"session_id": sid, "item_id": item, "run": run, "verdict": verdict, "started_at": iso(start),
            "ended_at": iso(start + wall), "wall_s": wall, "cost_usd": cost, "turns": 2,
            "tokens": {"input": 10, "output": 5, "cache_read": 0, "cache_write": 0}}


def _finish(store: Store, sid: str, to: str) -> None:
    lease = store.claim(sid, "w", T0 + 10_000)
    assert lease is not None
    store.finish(lease, to, {"session_id": sid, "verdict": to}, 1, None)


def _session_dir(state: Path, receipt: dict[str, Any]) -> None:
    """The receipt file as finalize leaves it (what the files store reads)."""
    from harness import jsonio

    d = state / "sessions" / receipt["session_id"]
    d.mkdir(parents=True, exist_ok=True)
    jsonio.write_json(d / "metrics.json", receipt)


@pytest.mark.parametrize("backend", ["sqlite", "files"])
def test_a_run_shows_progress_cost_and_an_eta_computed_by_hand(tmp_path: Path, backend: str) -> None:
    store = open_store(tmp_path, backend)
    store.init()
    store.add([(f"t{i}", {"id": f"a{i}", "prompt": "p", "run": "night", "created_at": iso(T0 + i)})
               for i in range(5)] + [("t", {"id": "solo", "prompt": "p", "created_at": iso(T0 + 50)})])
    walls = [10.0, 30.0, 20.0]
    start = T0
    for i, wall in enumerate(walls):  # one after another: one session at a time
        _finish(store, f"s{i}", "succeeded")
        r = _receipt(f"s{i}", f"a{i}", "night", start, wall, 0.25)
        store.record_attempt(r)
        _session_dir(tmp_path, r)
        start += wall
    (run,) = runs.runs(store, T0 + 100)
    assert (run.name, run.state, run.total, run.done, run.sessions) == ("night", "running", 5, 3, 3)
    assert run.counts["succeeded"] == 3 and run.counts["pending"] == 2
    assert run.cost_usd == pytest.approx(0.75)
    assert run.eta is not None
    # 2 items left x 1 session each x the median 20 s, one at a time
    assert (run.eta.seconds, run.eta.median_s, run.eta.parallel, run.eta.confidence) == (40.0, 20.0, 1.0, "high")
    assert run.eta_at == iso(T0 + 140)
    assert "[############........] 3/5" in runs.line(run)


def test_run_states_done_failed_canceled(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    store.add([(str(i), {"id": f"{name}{i}", "prompt": "p", "run": name, "created_at": iso(T0 + n * 2 + i)})
               for n, name in enumerate(("ok", "bad", "stop")) for i in range(2)])
    for sid in ("1", "2", "3", "4"):  # ok0, ok1, bad0, bad1 in claim order (created order)
        _finish(store, sid, "quarantined" if sid == "3" else "succeeded")
    store.cancel("stop0")
    assert {r.name: r.state for r in runs.runs(store, T0)} == {"ok": "done", "bad": "failed", "stop": "running"}
    store.cancel("stop1")
    assert runs.runs(store, T0, "stop")[0].state == "canceled"


def test_too_little_data_gives_no_eta_and_says_so(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    store.add([("t", {"id": f"a{i}", "prompt": "p", "run": "r"}) for i in range(4)])
    _finish(store, "s0", "succeeded")
    store.record_attempt(_receipt("s0", "a0", "r", T0, 10, 0.1))
    (run,) = runs.runs(store, T0 + 20)
    assert run.eta is not None and run.eta.seconds is None and run.eta.confidence == "none"
    assert runs.eta_text(run) == "ETA unknown (fewer than 3 finished sessions)"


def _simulate(durations: list[float], slots: int) -> list[tuple[float, float]]:
    """Start and end of each item, run in order on `slots` workers."""
    free = [0.0] * slots
    out = []
    for d in durations:
        start = heapq.heappop(free)
        out.append((start, start + d))
        heapq.heappush(free, start + d)
    return out


@pytest.mark.parametrize("slots", [1, 3, 8])
def test_the_eta_is_within_20_percent_once_a_third_of_the_run_is_done(slots: int) -> None:
    # 60 items of known durations (8 to 12 s, in a fixed pattern), `slots` at a time
    durations = [8.0 + (i * 7) % 5 for i in range(60)]
    spans = _simulate(durations, slots)
    ends = sorted(e for _, e in spans)
    now = ends[len(ends) // 3 - 1] + 0.5  # just after the 20th item finished
    finished = [(s, e) for s, e in spans if e <= now]
    running = [now - s for s, e in spans if s <= now < e]
    pending = sum(1 for s, _ in spans if s > now)
    eta = runs.estimate([e - s for s, e in finished], 1.0, pending, running, float(len(running)),
                        len(finished), len(spans))
    actual = max(ends) - now
    assert eta.seconds is not None
    assert abs(eta.seconds - actual) <= 0.2 * actual, (eta, actual)
    assert eta.confidence == "medium"


def test_canceled_items_that_never_ran_do_not_dilute_the_eta_and_a_blocked_run_is_failed(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    store.add([("t", {"id": f"a{i}", "prompt": "p", "run": "r", "created_at": iso(T0 + i)}) for i in range(6)])
    for i in range(3):  # a0..a2: two sessions each, 10 s apiece, one at a time
        _finish(store, f"s{i}", "succeeded")
        for k in range(2):
            store.record_attempt(_receipt(f"s{i}-{k}", f"a{i}", "r", T0 + 100 * i + 20 * k, 10, 0.1))
    store.cancel("a3")
    (run,) = runs.runs(store, T0 + 1000)
    assert run.eta is not None and run.eta.sessions_per_item == 2.0
    assert run.eta.seconds == 40.0  # a4, a5: 2 sessions x 10 s each, one at a time
    blocked = open_store(tmp_path / "b")
    blocked.add([("t", {"id": "x", "prompt": "p", "run": "b", "created_at": iso(T0)}),
                 ("t", {"id": "y", "prompt": "p", "run": "b", "depends_on": ["x"], "created_at": iso(T0 + 1)})])
    blocked.cancel("x")
    (run,) = runs.runs(blocked, T0)
    assert (run.state, run.blocked) == ("failed", 1)
