"""`cost --transcripts DIR`: cost and tokens of Claude Code transcripts, per session
and in all, counted as ccusage counts them (usage.py)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from harness.report.prices import CostMode, PriceBook
from harness.report.scan_cache import ScanCache
from harness.report.style import Style, clip, out_json
from harness.report.usage import Totals, Usage, tally, totals_json


class TranscriptCostError(Exception):
    """A transcripts directory or price file that cannot be used; one line."""


def load(root: Path, mode: str, prices: str | None,
         cache: Path | None = None) -> tuple[Usage, PriceBook, CostMode]:
    """The report's numbers; with a cache file, only what changed since its last run is read."""
    if not root.exists():
        raise TranscriptCostError(f"no such transcripts directory: {root}")
    try:
        book = PriceBook.litellm(Path(prices)) if prices else PriceBook()
    except ValueError as exc:
        raise TranscriptCostError(str(exc)) from None
    cost_mode = CostMode(mode)
    return tally(root, cost_mode, book, cache=ScanCache(cache) if cache is not None else None), book, cost_mode


def report_json(root: Path, u: Usage, book: PriceBook, mode: CostMode) -> dict[str, Any]:
    rows = sorted(u.sessions.items(), key=lambda kv: (kv[1].last or "", kv[0]))
    return {"transcripts": str(root), "mode": mode.value, "prices": book.name, "files": u.files,
            "entries": {"read": u.entries_read, "duplicates": u.duplicates, "kept": u.total.entries},
            "malformed_lines": u.malformed,
            "sessions": [{"project": p, "session": s, **totals_json(t)} for (p, s), t in rows],
            "total": totals_json(u.total)}


def _row(st: Style, name: str, project: str, t: Totals) -> None:
    print(f"{clip(name, 38):<38} {clip(project, 24):<24} {t.entries:>7} {'$' + format(t.cost_usd, '.4f'):>11} "
          f"{t.input:>10,} {t.output:>10,} {t.cache_read:>13,} {t.cache_write:>12,}")


def cmd_transcript_cost(root: Path, st: Style, as_json: bool, mode: str, prices: str | None,
                        cache: Path | None = None) -> int:
    u, book, cost_mode = load(root, mode, prices, cache)
    if as_json:
        out_json(report_json(root, u, book, cost_mode))
        return 0
    print(st.bold(f"{'SESSION':<38} {'PROJECT':<24} {'ENTRIES':>7} {'COST':>11} {'INPUT':>10} {'OUTPUT':>10} "
                  f"{'CACHE READ':>13} {'CACHE WRITE':>12}"))
    for (project, session), t in sorted(u.sessions.items(), key=lambda kv: (kv[1].last or "", kv[0])):
        _row(st, session, project, t)
    print()
    _row(st, "total", f"sessions: {len(u.sessions)}", u.total)
    print(st.dim(f"{u.files} files, {u.entries_read} usage lines, {u.duplicates} duplicates; "
                 f"cost mode {cost_mode.value}, prices: {book.name}"))
    if u.malformed:
        print(f"harness: cost: skipped {u.malformed} malformed line(s)", file=sys.stderr)
    return 0
