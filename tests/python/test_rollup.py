"""report.sh's numbers (report/rollup.py): a fixture of receipts against a hand
computation, percentiles against a known distribution, and the command line."""

from __future__ import annotations

import csv
import io
import json
import statistics
from pathlib import Path
from typing import Any

import pytest
from harness.cli import main
from harness.pipeline.policy import iso
from harness.report import rollup
from harness.store import open_store

DAY1 = 1_798_761_600.0  # 2027-01-01T00:00:00Z
DAY2 = DAY1 + 86400


def _receipt(sid: str, item: str, verdict: str, start: float, wall: float, cost: float, turns: int,
             model: str = "claude-sonnet", run: str | None = "r1", ttft: float | None = 1.0,
             tokens: tuple[int, int, int, int] = (100, 10, 1000, 50)) -> dict[str, Any]:
    return {"session_id": sid, "item_id": item, "run": run, "verdict": verdict, "model": model,
            "started_at": iso(start), "ended_at": iso(start + wall), "wall_s": wall, "ttft_s": ttft, "turns": turns,
            "cost_usd": cost, "tokens": dict(zip(("input", "output", "cache_read", "cache_write"), tokens, strict=True))}


# item a: failed once ($0.10), then succeeded ($0.20); item b: succeeded at once ($0.30) on
# day 2 with another model; item c: failed twice ($0.05 each), never succeeded
FIXTURE = [
    _receipt("s1", "a", "api_error", DAY1 + 100, 10.0, 0.10, 2),
    _receipt("s2", "a", "succeeded", DAY1 + 200, 30.0, 0.20, 6),
    _receipt("s3", "b", "succeeded", DAY2 + 100, 50.0, 0.30, 8, model="claude-opus", ttft=3.0),
    _receipt("s4", "c", "crashed", DAY1 + 300, 20.0, 0.05, 1, run="r2", ttft=None),
    _receipt("s5", "c", "crashed", DAY2 + 300, 40.0, 0.05, 3, run="r2"),
]


def _store(tmp_path: Path, backend: str = "sqlite") -> Path:
    state = tmp_path / backend
    store = open_store(state, backend)
    store.init()
    for r in FIXTURE:
        store.record_attempt(r)
        d = state / "sessions" / r["session_id"]
        d.mkdir(parents=True)
        (d / "metrics.json").write_text(json.dumps(r))
    return state


def test_percentiles_of_a_known_distribution() -> None:
    values = [float(v) for v in range(1, 101)]
    assert (rollup.percentile(values, 50), rollup.percentile(values, 95), rollup.percentile(values, 99)) == \
        pytest.approx((50.5, 95.05, 99.01))
    # the same as statistics' inclusive method (numpy's default)
    q = statistics.quantiles(values, n=100, method="inclusive")
    assert rollup.percentile(values, 95) == pytest.approx(q[94])
    assert rollup.percentile([7.0], 99) == 7.0 and rollup.percentile([], 50) is None


def test_the_totals_equal_a_hand_computation(tmp_path: Path) -> None:
    rows = open_store(_store(tmp_path)).attempts()
    t = rollup.rollup(rows, "day")["total"]
    assert (t["sessions"], t["succeeded"], t["success_rate"]) == (5, 2, 0.4)
    assert t["cost_usd"] == pytest.approx(0.70)
    # a and b succeeded: a cost 0.10 + 0.20, b 0.30; c's sessions are no succeeded item's
    assert t["cost_per_succeeded_item"] == pytest.approx(0.30)
    assert t["tokens"] == {"input": 500, "output": 50, "cache_read": 5000, "cache_write": 250}
    # wall 10, 20, 30, 40, 50: p50 30, p95 48, p99 49.6
    assert t["percentiles"]["wall_s"] == pytest.approx({"p50": 30.0, "p95": 48.0, "p99": 49.6})
    # turns 1, 2, 3, 6, 8: p95 = 6 + 0.8 * 2
    assert t["percentiles"]["turns"] == pytest.approx({"p50": 3.0, "p95": 7.6, "p99": 7.92})
    # ttft: one session has none; 1, 1, 1, 3
    assert t["percentiles"]["ttft_s"]["p50"] == pytest.approx(1.0)


def test_groups_by_day_item_model_verdict_and_run(tmp_path: Path) -> None:
    rows = open_store(_store(tmp_path)).attempts()
    by_day = {g["key"]: g for g in rollup.rollup(rows, "day")["groups"]}
    assert list(by_day) == ["2027-01-01", "2027-01-02"]
    assert (by_day["2027-01-01"]["sessions"], by_day["2027-01-01"]["cost_usd"]) == (3, pytest.approx(0.35))
    # a succeeded on day 1; its failed attempt (also day 1) counts: (0.10 + 0.20) / 1
    assert by_day["2027-01-01"]["cost_per_succeeded_item"] == pytest.approx(0.30)
    by_item = {g["key"]: g for g in rollup.rollup(rows, "item")["groups"]}
    assert {k: (g["sessions"], g["succeeded"]) for k, g in by_item.items()} == {"a": (2, 1), "b": (1, 1), "c": (2, 0)}
    assert by_item["c"]["cost_per_succeeded_item"] is None and by_item["c"]["success_rate"] == 0.0
    by_model = {g["key"]: g["sessions"] for g in rollup.rollup(rows, "model")["groups"]}
    assert by_model == {"claude-opus": 1, "claude-sonnet": 4}
    by_verdict = {g["key"]: g["sessions"] for g in rollup.rollup(rows, "verdict")["groups"]}
    assert by_verdict == {"api_error": 1, "crashed": 2, "succeeded": 2}
    by_run = {g["key"]: g["cost_usd"] for g in rollup.rollup(rows, "run")["groups"]}
    assert by_run == {"r1": pytest.approx(0.60), "r2": pytest.approx(0.10)}


@pytest.mark.parametrize("by", rollup.GROUPINGS)
def test_both_stores_and_the_database_give_the_same_report(tmp_path: Path, by: str) -> None:
    sqlite = open_store(_store(tmp_path, "sqlite"))
    reference = rollup.rollup(sqlite.attempts(), by)
    assert rollup.rollup(open_store(_store(tmp_path, "files")).attempts(), by) == reference
    computed = sqlite.rollup(by)  # type: ignore[attr-defined]
    assert computed == reference
    assert sqlite.rollup(by, DAY2, "r2") == rollup.rollup(sqlite.attempts(DAY2, "r2"), by)  # type: ignore[attr-defined]
    assert sqlite.rollup(by, DAY2 * 2)["total"] == rollup.rollup([], by)["total"]  # type: ignore[attr-defined]


def test_the_command_line_filters_and_writes_json_and_csv(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = str(_store(tmp_path))
    assert main(["report", "--state-dir", state, "--by", "item", "--json", "--since", iso(DAY2)]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [g["key"] for g in doc["groups"]] == ["b", "c"] and doc["total"]["sessions"] == 2
    assert main(["report", "--state-dir", state, "--by", "verdict", "--csv", "--run", "r2"]) == 0
    table = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [(r["verdict"], r["sessions"], r["cost_usd"]) for r in table] == [("crashed", "2", "0.1"), ("total", "2", "0.1")]
    assert main(["report", "--state-dir", state, "--by", "week"]) == 2
    assert "--by takes one of day, run, item, model, verdict" in capsys.readouterr().err
    assert main(["report", "--state-dir", state]) == 0
    text = capsys.readouterr().out.splitlines()
    assert text[0].startswith("DAY") and text[-1].startswith("total") and "40%" in text[-1]
