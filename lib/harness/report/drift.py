"""`reconcile`: each finished session's receipt against the CLI's own transcript.

A session's receipt (metrics.json: tokens and cost_usd, from the stream's result
line) is compared with its copy of the CLI transcript (transcript.jsonl, kept at
the session's end): the transcript's usage entries written while the session ran
(its meta.json's started_epoch to ended_epoch: a fix round's copy holds the
rounds before it too), deduplicated and counted as ccusage counts them
(transcripts.py, dedup.py), priced at the harness's prices (prices.py: a line's
costUSD when it has one). Each token kind must be equal, and the cost equal to the
micro-dollar, or within --tolerance percent of the receipt's. Sessions still
running (no metrics.json) are left out.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from harness.report import transcripts
from harness.report.dedup import Ledger
from harness.report.prices import CostMode, PriceBook
from harness.report.sessions import Session
from harness.report.style import Style, clip, out_json
from harness.report.usage import TOKEN_KINDS, Totals, totals_json
from harness.stream.jsonl import open_stream

COST_EPSILON_USD = 1e-6  # receipts keep six decimals


class Check(Enum):
    """A session's outcome; `fails`: it makes reconcile exit 1."""

    OK = ("ok", False)
    DRIFT = ("DRIFT", True)
    NO_TRANSCRIPT = ("no transcript", False)

    def __init__(self, label: str, fails: bool) -> None:
        self.label = label
        self.fails = fails


@dataclass
class Result:
    session: Session
    check: Check
    receipt: dict[str, Any]  # tokens and cost_usd
    transcript: Totals | None = None
    malformed: int = 0
    outside: int = 0  # entries written outside the session's time (earlier rounds)
    drift: list[str] = field(default_factory=list)  # the token kinds (and "cost_usd") that differ


def _window(meta: dict[str, Any]) -> tuple[float, float]:
    """The session's start and end in epoch milliseconds (unbounded where meta.json lacks one)."""
    start, end = meta.get("started_epoch"), meta.get("ended_epoch")
    return (math.floor(start * 1000) if isinstance(start, (int, float)) else -math.inf,
            math.ceil(end * 1000) if isinstance(end, (int, float)) else math.inf)


def transcript_totals(s: Session, book: PriceBook) -> tuple[Totals, int, int] | None:
    """(totals, malformed lines, entries outside the session's time) of the session's
    transcript; None without one."""
    try:  # or its compressed copy (retention's gc)
        with open_stream(s.dir / transcripts.TRANSCRIPT_NAME) as fh:
            data = fh.read()
    except OSError:
        return None
    entries, bad = transcripts.scan(data, s.id, {})
    start, end = _window(s.meta)
    inside = [e for e in entries if start <= transcripts.ts_ms(e.ts) <= end]
    ledger = Ledger()
    for e in inside:
        ledger.add(e)
    totals = Totals()
    for e in ledger.kept:
        totals.add(e, book.cost(e, CostMode.AUTO))
    return totals, bad, len(entries) - len(inside)


def _differs(receipt: float, transcript: float, tolerance_pct: float, floor: float) -> bool:
    return abs(receipt - transcript) > max(floor, abs(receipt) * tolerance_pct / 100)


def check(s: Session, book: PriceBook, tolerance_pct: float) -> Result | None:
    m = s.metrics()
    if m is None:
        return None
    raw = m.get("tokens")
    tokens = {k: int(raw.get(k) or 0) if isinstance(raw, dict) else 0 for k in TOKEN_KINDS}
    cost = float(m.get("cost_usd") or 0)
    receipt = {"tokens": tokens, "cost_usd": cost}
    got = transcript_totals(s, book)
    if got is None:
        return Result(s, Check.NO_TRANSCRIPT, receipt)
    t, bad, outside = got
    drift = [k for k in TOKEN_KINDS if _differs(tokens[k], getattr(t, k), tolerance_pct, 0)]
    if _differs(cost, t.cost_usd, tolerance_pct, COST_EPSILON_USD):
        drift.append("cost_usd")
    return Result(s, Check.DRIFT if drift else Check.OK, receipt, t, bad, outside, drift)


def result_json(r: Result) -> dict[str, Any]:
    t = r.transcript
    return {"session_id": r.session.id, "item_id": r.session.meta.get("item_id"), "status": r.check.name.lower(),
            "drift": r.drift, "receipt": r.receipt,
            "transcript": None if t is None else {**totals_json(t), "malformed_lines": r.malformed,
                                                  "outside_session": r.outside}}


def _row(st: Style, r: Result) -> None:
    t = r.transcript
    flag = st.red(r.check.label) if r.check.fails else (st.yellow(r.check.label) if t is None else st.green(r.check.label))
    print(f"{clip(r.session.id, 30):<30} {clip(r.session.meta.get('item_id') or '-', 16):<16} {flag}"
          + (f" ({', '.join(r.drift)})" if r.drift else "")
          + (f"  {r.malformed} malformed line(s) skipped" if r.malformed else ""))
    rt = r.receipt["tokens"]
    print(f"    receipt     in={rt['input']:,} out={rt['output']:,} cache_read={rt['cache_read']:,} "
          f"cache_write={rt['cache_write']:,} cost=${r.receipt['cost_usd']:.6f}")
    if t is not None:
        print(f"    transcript  in={t.input:,} out={t.output:,} cache_read={t.cache_read:,} "
              f"cache_write={t.cache_write:,} cost=${t.cost_usd:.6f}")


def cmd_reconcile(sessions: list[Session], st: Style, as_json: bool, tolerance_pct: float) -> int:
    """Exit 1 when a session drifts; a session without a transcript is shown, not failed."""
    book = PriceBook()
    results = [r for r in (check(s, book, tolerance_pct) for s in sessions) if r is not None]
    counts = {c.name.lower(): sum(r.check is c for r in results) for c in Check}
    if as_json:
        out_json({"tolerance_pct": tolerance_pct, "prices": book.name, "counts": counts,
                  "sessions": [result_json(r) for r in results]})
    else:
        for r in results:
            _row(st, r)
        print(", ".join(f"{n} {c.label}" for c, n in ((c, counts[c.name.lower()]) for c in Check)))
    if not results:
        print("harness: reconcile: no finished session", file=sys.stderr)
    return 1 if any(r.check.fails for r in results) else 0
