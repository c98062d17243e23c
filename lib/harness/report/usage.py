"""Token and cost totals of a tree of Claude Code transcripts, per session and in all.

Reads every *.jsonl below a directory (transcripts.py: which lines count and what
they hold), keeps the entries ccusage keeps (dedup.py) and prices them
(prices.py). The files are read by two processes on a machine with more than one
core: a forked child reads the second half (by bytes) and sends its entries back
(forked.py).
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from harness import forked
from harness.report import scan_cache, transcripts
from harness.report.dedup import Ledger
from harness.report.prices import CostMode, PriceBook
from harness.report.transcripts import Entry

TOKEN_KINDS = ("input", "output", "cache_read", "cache_write")
Scanned = tuple[list[Entry], int]  # a file's entries, and its malformed lines


@dataclass
class Totals:
    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0
    cost_usd: float = 0.0
    entries: int = 0
    models: set[str] = field(default_factory=set)
    first: str | None = None  # the earliest and latest timestamps, as written (by their text)
    last: str | None = None

    def add(self, e: Entry, cost: float) -> None:
        self.input += e.input
        self.output += e.output
        self.cache_read += e.cache_read
        self.cache_write += e.cache_write
        self.cost_usd += cost
        self.entries += 1
        if e.model is not None:
            self.models.add(e.model + "-fast" if e.fast else e.model)
        if self.first is None or e.ts < self.first:
            self.first = e.ts
        if self.last is None or e.ts > self.last:
            self.last = e.ts

    def tokens(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in TOKEN_KINDS}


@dataclass
class Usage:
    """What a tree of transcripts adds up to."""

    sessions: dict[tuple[str, str], Totals]  # by (project, session)
    total: Totals
    files: int = 0
    entries_read: int = 0
    duplicates: int = 0
    malformed: int = 0


def _read(path: Path) -> bytes:
    try:
        with open(path, "rb", opener=scan_cache.regular_only) as fh:
            return fh.read()
    except OSError:
        return b""  # gone since the walk, unreadable, or not a file (a FIFO): no entries


def scan_files(paths: list[Path], sessions: list[str], lo: int, hi: int) -> list[Scanned]:
    dates: dict[str, bool] = {}
    return [transcripts.scan(_read(paths[i]), sessions[i], dates) for i in range(lo, hi)]


def _encode(scanned: list[Scanned]) -> bytes:
    return orjson.dumps([[bad, [[getattr(e, s) for s in Entry.__slots__] for e in es]] for es, bad in scanned])


def _decode(data: bytes) -> list[Scanned]:
    return [([Entry(*row) for row in es], bad) for bad, es in orjson.loads(data)]


def _split(paths: list[Path]) -> int:
    """The index that halves the files' bytes."""
    sizes = []
    for p in paths:
        try:
            sizes.append(p.stat().st_size)
        except OSError:
            sizes.append(0)
    return _half(sizes)


def _half(sizes: list[int]) -> int:
    """The index that halves these sizes' sum."""
    half, run = sum(sizes) / 2, 0
    for i, size in enumerate(sizes):
        run += size
        if run >= half:
            return i + 1
    return len(sizes)


def scan_all(paths: list[Path], sessions: list[str], workers: int | None = None) -> list[Scanned]:
    """Every file's entries, in the files' order."""
    if workers is None:
        workers = forked.default_workers()
    mid = _split(paths) if workers > 1 and len(paths) > 1 else len(paths)
    if mid >= len(paths):
        return scan_files(paths, sessions, 0, len(paths))
    first, second = forked.both(lambda: scan_files(paths, sessions, 0, mid),
                                lambda: scan_files(paths, sessions, mid, len(paths)), _encode, _decode)
    return first + second


def _read_parts(paths: list[Path], sessions: list[str], plans: list[scan_cache.Plan],
                lo: int, hi: int) -> list[scan_cache.Part]:
    dates: dict[str, bool] = {}
    return [scan_cache.read(paths[i], sessions[i], plans[i], dates) for i in range(lo, hi)]


def scan_cached(paths: list[Path], sessions: list[str], cache: scan_cache.ScanCache,
                workers: int | None = None) -> list[Scanned]:
    """Every file's entries, in the files' order: what the cache holds of a file that did
    not change, what was appended to one that grew, the whole of the others; then the
    cache written for the next run."""
    plans = [cache.plan(p) for p in paths]
    todo = [i for i, pl in enumerate(plans) if not pl.unchanged]
    tp, ts, tpl = [paths[i] for i in todo], [sessions[i] for i in todo], [plans[i] for i in todo]
    if workers is None:
        workers = forked.default_workers()
    sizes = [(pl.st.st_size - pl.start) if pl.st is not None else 0 for pl in tpl]
    mid = _half(sizes) if workers > 1 and len(tp) > 1 else len(tp)
    if mid >= len(tp):
        parts = _read_parts(tp, ts, tpl, 0, len(tp))
    else:
        first, second = forked.both(
            lambda: _read_parts(tp, ts, tpl, 0, mid), lambda: _read_parts(tp, ts, tpl, mid, len(tp)),
            lambda ps: orjson.dumps([p.encode() for p in ps]),
            lambda data: [scan_cache.Part.decode(v) for v in orjson.loads(data)])
        parts = first + second
    out: list[Scanned] = [(pl.kept, pl.kept_bad) for pl in plans]
    for i, part in zip(todo, parts, strict=True):
        out[i] = cache.take(paths[i], plans[i], part)
    cache.save()
    return out


@contextmanager
def _no_gc() -> Iterator[None]:
    """The cyclic collector off while tens of thousands of entries are made (none of
    them in a cycle): its passes over them cost more than the reading."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def tally(root: Path, mode: CostMode, book: PriceBook, workers: int | None = None,
          cache: scan_cache.ScanCache | None = None) -> Usage:
    """The totals of every transcript below root (or of root, a file); with a cache,
    only what changed since the cache's last run is read."""
    with _no_gc():
        return _tally(root, mode, book, workers, cache)


def _tally(root: Path, mode: CostMode, book: PriceBook, workers: int | None,
           cache: scan_cache.ScanCache | None) -> Usage:
    paths = transcripts.files(root)
    keys = [transcripts.session_of(p, root) for p in paths]
    ledger = Ledger()
    usage = Usage(sessions={}, total=Totals(), files=len(paths))
    sessions = [k[1] for k in keys]
    scanned = scan_all(paths, sessions, workers) if cache is None else scan_cached(paths, sessions, cache, workers)
    for where, (entries, bad) in enumerate(scanned):
        usage.malformed += bad
        usage.entries_read += len(entries)
        for e in entries:
            e.where = where
            ledger.add(e)
    usage.duplicates = ledger.duplicates
    for e in ledger.kept:
        cost = book.cost(e, mode)
        key = keys[e.where]
        totals = usage.sessions.get(key)
        if totals is None:
            totals = usage.sessions[key] = Totals()
        totals.add(e, cost)
        usage.total.add(e, cost)
    return usage


def totals_json(t: Totals) -> dict[str, Any]:
    return {"tokens": t.tokens(), "cost_usd": round(t.cost_usd, 6), "entries": t.entries,
            "models": sorted(t.models),
            "first_at": t.first, "last_at": t.last}
