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
    where, args = ["1"], list[Any]()
    if since is not None:
        where.append("started >= ?")
        args.append(since)
    if run is not None:
        where.append("run = ?")
        args.append(run)
    return " AND ".join(where), args


def rollup(db: sqlite3.Connection, by: str, since: float | None, run: str | None,
           measures: tuple[str, ...], percentiles: tuple[int, ...]) -> dict[str, Any]:
    """{"by", "groups", "total"} as report/rollup.py builds it."""
    from harness.report.rollup import percentile

    key = KEY_SQL[by]
    where, args = where_clause(since, run)
    sums = ", ".join(f"sum({k})" for k in TOKEN_KINDS)
    groups: dict[str, dict[str, Any]] = {}
    total: dict[str, Any] = {}
    for level, sql_key in (("groups", key), ("total", "'total'")):
        for row in db.execute(
                f"SELECT {sql_key}, count(*), sum(verdict = 'succeeded'), sum(cost_usd), sum(cost_estimated), {sums} "
                f"FROM attempts WHERE {where} GROUP BY 1", args):
            g = {"key": row[0], "sessions": row[1], "succeeded": row[2] or 0,
                 "success_rate": round((row[2] or 0) / row[1], 4) if row[1] else None,
                 "cost_usd": round(row[3] or 0.0, 6), "cost_estimated": row[4] or 0,
                 "tokens": {k: v or 0 for k, v in zip(TOKEN_KINDS, row[5:], strict=True)},
                 "succeeded_items": 0, "cost_per_succeeded_item": None, "percentiles": {}}
            if level == "total":
                total = g
            else:
                groups[row[0]] = g
    if not total:
        total = _empty("total")
    _per_item(db, key, where, args, groups)
    _per_item(db, "'total'", where, args, {"total": total})
    for m in measures:
        values: dict[str, list[float]] = {}
        all_values: list[float] = []
        for k, v in db.execute(f"SELECT {key}, {m} FROM attempts WHERE {where} AND {m} IS NOT NULL ORDER BY {m}", args):
            values.setdefault(k, []).append(float(v))
            all_values.append(float(v))
        for name, g in groups.items():
            g["percentiles"][m] = {f"p{p}": _round(percentile(values.get(name, []), p)) for p in percentiles}
        total["percentiles"][m] = {f"p{p}": _round(percentile(all_values, p)) for p in percentiles}
    return {"by": by, "groups": [groups[k] for k in sorted(groups)], "total": total}


def _per_item(db: sqlite3.Connection, key: str, where: str, args: list[Any], groups: dict[str, dict[str, Any]]) -> None:
    """The cost per succeeded item: every session of the items that succeeded in the
    group (their failed attempts too, wherever those fall) over their number."""
    for k, n, cost in db.execute(
            f"WITH ic AS (SELECT item_id, sum(cost_usd) AS c FROM attempts WHERE {where} GROUP BY item_id), "
            f"ok AS (SELECT DISTINCT {key} AS k, item_id FROM attempts WHERE {where} AND verdict = 'succeeded' "
            f"AND item_id IS NOT NULL) "
            f"SELECT ok.k, count(*), sum(ic.c) FROM ok JOIN ic USING (item_id) GROUP BY ok.k", [*args, *args]):
        if k in groups:
            groups[k]["succeeded_items"] = n
            groups[k]["cost_per_succeeded_item"] = round(cost / n, 6) if n else None


def _empty(key: str) -> dict[str, Any]:
    return {"key": key, "sessions": 0, "succeeded": 0, "success_rate": None, "cost_usd": 0.0, "cost_estimated": 0,
            "tokens": dict.fromkeys(TOKEN_KINDS, 0), "succeeded_items": 0, "cost_per_succeeded_item": None,
            "percentiles": {}}


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 6)
