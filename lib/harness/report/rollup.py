"""scripts/report.sh: the attempts rolled up by day, run, item, model or verdict.

Each group: sessions, succeeded, success rate, cost, tokens by kind, the cost per
succeeded item (every session of the items that succeeded in the group, their
failed attempts included, wherever those fall), and the 50th, 95th and 99th
percentiles of wall time, time to first token, turns and cost. Percentiles
interpolate linearly between the closest ranks (numpy's default, R's type 7).

The rows come from the store (Store.attempts): on SQLite one indexed query, so a
report over 100,000 sessions answers in well under a second (tests/bench/bench_report.py).
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from harness.store.attempts import TOKEN_KINDS

GROUPINGS = ("day", "run", "item", "model", "verdict")
MEASURES = ("wall_s", "ttft_s", "turns", "cost_usd")
PERCENTILES = (50, 95, 99)


def percentile(sorted_values: list[float], p: float) -> float | None:
    """The p-th percentile of already sorted values, linearly interpolated; None when empty."""
    if not sorted_values:
        return None
    k = (len(sorted_values) - 1) * p / 100
    lo, hi = math.floor(k), math.ceil(k)
    if lo == hi:
        return float(sorted_values[lo])
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


def _day(r: dict[str, Any]) -> str:
    when = r.get("started") or r.get("ended")
    return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%d") if when else "unknown"


KEYS: dict[str, Callable[[dict[str, Any]], str]] = {
    "day": _day,
    "run": lambda r: str(r.get("run") or "-"),
    "item": lambda r: str(r.get("item_id") or "-"),
    "model": lambda r: str(r.get("model") or "-"),
    "verdict": lambda r: str(r.get("verdict") or "-"),
}


def _group(key: str, rows: list[dict[str, Any]], item_cost: dict[str, float]) -> dict[str, Any]:
    ok_items = {str(r["item_id"]) for r in rows if r.get("verdict") == "succeeded" and r.get("item_id")}
    succeeded = sum(1 for r in rows if r.get("verdict") == "succeeded")
    out: dict[str, Any] = {
        "key": key, "sessions": len(rows), "succeeded": succeeded,
        "success_rate": round(succeeded / len(rows), 4) if rows else None,
        "cost_usd": round(sum(float(r.get("cost_usd") or 0) for r in rows), 6),
        "cost_estimated": sum(int(r.get("cost_estimated") or 0) for r in rows),
        "tokens": {k: sum(int(r.get(k) or 0) for r in rows) for k in TOKEN_KINDS},
        "succeeded_items": len(ok_items),
        "cost_per_succeeded_item": round(sum(item_cost[i] for i in ok_items) / len(ok_items), 6)
        if ok_items else None,
    }
    out["percentiles"] = {}
    for m in MEASURES:
        values = sorted(float(r[m]) for r in rows if isinstance(r.get(m), (int, float)))
        out["percentiles"][m] = {f"p{p}": _round(percentile(values, p)) for p in PERCENTILES}
    return out


def _round(v: float | None) -> float | None:
    return None if v is None else round(v, 6)


def rollup(rows: Iterable[dict[str, Any]], by: str) -> dict[str, Any]:
    """{"by", "groups": [...], "total": {...}}: the groups sorted by their key."""
    if by not in KEYS:
        raise ValueError(f"--by takes one of {', '.join(GROUPINGS)}; got {by!r}")
    rows = list(rows)
    item_cost: dict[str, float] = {}
    for r in rows:
        if r.get("item_id"):
            item = str(r["item_id"])
            item_cost[item] = item_cost.get(item, 0.0) + float(r.get("cost_usd") or 0)
    groups: dict[str, list[dict[str, Any]]] = {}
    key_of = KEYS[by]
    for r in rows:
        groups.setdefault(key_of(r), []).append(r)
    return {"by": by, "groups": [_group(k, groups[k], item_cost) for k in sorted(groups)],
            "total": _group("total", rows, item_cost)}


# --- output ------------------------------------------------------------------------

COLUMNS = ("sessions", "succeeded", "success_rate", "cost_usd", "cost_per_succeeded_item", "input", "output",
           "cache_read", "cache_write", *(f"{m}_p{p}" for m in MEASURES for p in PERCENTILES))


def flat(g: dict[str, Any]) -> dict[str, Any]:
    """A group as one flat row (CSV)."""
    out = {k: g[k] for k in ("key", "sessions", "succeeded", "success_rate", "cost_usd", "cost_per_succeeded_item")}
    out.update(g["tokens"])
    for m in MEASURES:
        for p in PERCENTILES:
            out[f"{m}_p{p}"] = g["percentiles"][m][f"p{p}"]
    return out


def to_csv(report: dict[str, Any]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=[report["by"], *COLUMNS], lineterminator="\n")
    w.writeheader()
    for g in [*report["groups"], report["total"]]:
        row = flat(g)
        row[report["by"]] = row.pop("key")
        w.writerow({k: "" if v is None else v for k, v in row.items()})
    return buf.getvalue()


def _num(v: Any, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def to_text(report: dict[str, Any], clip: Callable[[str, int], str]) -> str:
    head = (f"{report['by'].upper():<24} {'SESS':>6} {'OK%':>5} {'COST':>10} {'$/OK ITEM':>10} {'IN':>9} {'OUT':>9} "
            f"{'CACHE R':>10} {'CACHE W':>9}  {'WALL p50/p95/p99':>20}  {'TTFT p50/p95/p99':>18}  "
            f"{'TURNS p50/p95/p99':>17}  {'$ p50/p95/p99':>20}")
    lines = [head]
    for g in [*report["groups"], report["total"]]:
        t, pc = g["tokens"], g["percentiles"]
        rate = "-" if g["success_rate"] is None else f"{g['success_rate'] * 100:.0f}%"
        lines.append(
            f"{clip(g['key'], 24):<24} {g['sessions']:>6} {rate:>5} {'$' + _num(g['cost_usd'], '.4f'):>10} "
            f"{'$' + _num(g['cost_per_succeeded_item'], '.4f') if g['cost_per_succeeded_item'] is not None else '-':>10} "
            f"{t['input']:>9,} {t['output']:>9,} {t['cache_read']:>10,} {t['cache_write']:>9,}  "
            f"{_triple(pc['wall_s'], '.1f'):>20}  {_triple(pc['ttft_s'], '.1f'):>18}  {_triple(pc['turns'], '.0f'):>17}  "
            f"{_triple(pc['cost_usd'], '.3f'):>20}")
    return "\n".join(lines)


def _triple(p: dict[str, Any], fmt: str) -> str:
    return "/".join(_num(p[f"p{n}"], fmt) for n in PERCENTILES)
