"""report.sh's roll-up computed by SQLite itself (the SQLite store's fast path).

The same numbers as report/rollup.py computes from rows in Python (the files
backend's way, and the reference: tests/python/test_rollup.py holds them equal):
counts, sums and the cost per succeeded item are GROUP BY queries; a percentile
reads each group's values in order once. Over 100,000 attempts this answers in a
fraction of the Python pass (tests/bench/bench_report.py).
"""

from __future__ import annotations

import sqlite3
from typing import Any

from harness.store.attempts import TOKEN_KINDS

KEY_SQL = {
    "day": "COALESCE(strftime('%Y-%m-%d', COALESCE(started, ended), 'unixepoch'), 'unknown')",
    "run": "COALESCE(run, '-')",
    "item": "COALESCE(item_id, '-')",
    "model": "COALESCE(NULLIF(model, ''), '-')",
    "verdict": "COALESCE(verdict, '-')",
}


def where_clause(since: float | None, run: str | None) -> tuple[str, list[Any]]:
    """The attempts a report or a listing selects: started since, of one run."""
    where, args = ["1 = 1"], list[Any]()  # (SQLite and PostgreSQL alike)
    if since is not None:
        where.append("started >= ?")
        args.append(since)
    if run is not None:
        where.append("run = ?")
        args.append(run)
    return " AND ".join(where), args


def rollup(db: sqlite3.Connection, by: str, since: float | None, run: str | None,
           measures: tuple[str, ...], percentiles: tuple[int, ...]) -> dict[str, Any]:
    """{"by", "groups", "total"} as report/rollup.py builds it: the sums by one
    GROUP BY, the rest (percentiles, the cost per succeeded item) from one scan of
    narrow columns."""
    key = KEY_SQL[by]
    where, args = where_clause(since, run)
    sums = ", ".join(f"sum({k})" for k in TOKEN_KINDS)
    groups: dict[str, dict[str, Any]] = {}
    for row in db.execute(f"SELECT {key}, count(*), sum(verdict = 'succeeded'), sum(cost_usd), sum(cost_estimated), "
                          f"{sums} FROM attempts WHERE {where} GROUP BY 1", args):
        groups[row[0]] = _group(row[0], row[1], row[2] or 0, row[3] or 0.0, row[4] or 0, row[5:])
    total = _group("total", sum(g["sessions"] for g in groups.values()),
                   sum(g["succeeded"] for g in groups.values()), sum(g["_cost"] for g in groups.values()),
                   sum(g["cost_estimated"] for g in groups.values()),
                   [sum(g["tokens"][k] for g in groups.values()) for k in TOKEN_KINDS])
    assert len(measures) == 4 and measures[3] == "cost_usd", "one scan reads four measures, the cost last"
    values: dict[str, tuple[list[float], ...]] = {k: ([], [], [], []) for k in groups}
    item_cost: dict[str, float] = {}
    ok: dict[str, set[str]] = {k: set() for k in groups}
    cols = ", ".join(measures)
    # the one Python pass over the rows: kept to the least work per row
    for k, item, verdict, m0, m1, m2, m3 in db.execute(
            f"SELECT {key}, item_id, verdict, {cols} FROM attempts WHERE {where}", args):
        if item is not None:
            item_cost[item] = item_cost.get(item, 0.0) + (m3 or 0.0)
            if verdict == "succeeded":
                ok[k].add(item)
        lists = values[k]
        if m0 is not None:
            lists[0].append(m0)
        if m1 is not None:
            lists[1].append(m1)
        if m2 is not None:
            lists[2].append(m2)
        if m3 is not None:
            lists[3].append(m3)
    every = [[v for lists in values.values() for v in lists[i]] for i in range(4)]
    for name, g in groups.items():
        _finish(g, ok[name], item_cost, values[name], measures, percentiles)
    _finish(total, set().union(*ok.values()), item_cost, every, measures, percentiles)
    return {"by": by, "groups": [groups[k] for k in sorted(groups)], "total": total}


def _group(key: str, sessions: int, succeeded: int, cost: float, estimated: int, tokens: Any) -> dict[str, Any]:
    return {"key": key, "sessions": sessions, "succeeded": succeeded,
            "success_rate": round(succeeded / sessions, 4) if sessions else None, "cost_usd": round(cost, 6),
            "_cost": cost, "cost_estimated": estimated,
            "tokens": {k: v or 0 for k, v in zip(TOKEN_KINDS, tokens, strict=True)},
            "succeeded_items": 0, "cost_per_succeeded_item": None, "percentiles": {}}


def _finish(g: dict[str, Any], items: set[str], item_cost: dict[str, float], lists: Any,
            measures: tuple[str, ...], percentiles: tuple[int, ...]) -> None:
    from harness.report.rollup import percentile

    del g["_cost"]
    g["succeeded_items"] = len(items)
    if items:
        g["cost_per_succeeded_item"] = round(sum(item_cost[i] for i in items) / len(items), 6)
    for m, vs in zip(measures, lists, strict=True):
        vs.sort()
        g["percentiles"][m] = {f"p{p}": _round(percentile(vs, p)) for p in percentiles}


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 6)
