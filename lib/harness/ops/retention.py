"""Retention (loopctl.sh gc, and the loop once an hour): state that stops growing.

A finished session (its receipt written, no live lease, its item in a terminal
state) older than RETAIN_RAW_DAYS has its stream and transcript compressed
(events.jsonl and transcript.jsonl to .gz: every reader reads either,
stream/jsonl.open_stream and the Tailer); older than RETAIN_DAYS its whole
directory is removed, its receipt staying in the store. A session still live, or
whose item is not final, is never touched. One gc at a time (state/gc.lock); the
disk's use by category is measured at each run and kept in state/disk.json for
status.sh.
"""

from __future__ import annotations

import fcntl
import gzip
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness import jsonio
from harness.store import backend_of, open_store
from harness.store.queue import TERMINAL_STATES

COMPRESSED = ("events.jsonl", "transcript.jsonl")
DAY_S = 86400.0


@dataclass
class GcReport:
    sessions: int = 0
    compressed: int = 0
    removed: int = 0
    bytes_before: int = 0  # of what was compressed or removed
    bytes_after: int = 0
    kept_live: int = 0
    kept_not_final: int = 0
    errors: list[str] = field(default_factory=list)
    dry_run: bool = False

    @property
    def freed(self) -> int:
        return self.bytes_before - self.bytes_after


class GcBusyError(Exception):
    """Another gc holds state/gc.lock."""


@contextmanager
def _locked(state_dir: Path) -> Iterator[None]:
    fd = os.open(state_dir / "gc.lock", os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise GcBusyError(f"another gc runs on {state_dir}") from None
        yield
    finally:
        os.close(fd)


def compress(path: Path) -> tuple[int, int]:
    """path to path.gz (written whole, then renamed; the original's times kept), then
    the original removed. A .gz left by a gc that stopped between its rename and the
    removal is complete: the original then just goes. Answers (bytes before, after)."""
    gz = path.with_name(path.name + ".gz")
    before = path.stat().st_size
    if not gz.exists():
        tmp = path.with_name(f".{path.name}.gz.tmp")
        with open(path, "rb") as fin, gzip.open(tmp, "wb", compresslevel=6) as fout:
            shutil.copyfileobj(fin, fout, 1 << 20)
        st = path.stat()
        os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
        os.replace(tmp, gz)
    path.unlink()
    return before, gz.stat().st_size


def _size(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
            except OSError:
                continue
    return total


def _ended_epoch(sdir: Path) -> float | None:
    """When a finished session ended (meta.json), None unless its receipt is written."""
    metrics = sdir / "metrics.json"
    if not metrics.exists():
        return None
    meta = jsonio.read_dict(sdir / "meta.json") or {}
    ended = meta.get("ended_epoch")
    return float(ended) if isinstance(ended, (int, float)) else metrics.stat().st_mtime


TRASH = ".trash-"  # a session directory being removed: renamed first, so that it is gone whole or not at all


def _one(sdir: Path, age_s: float, raw_s: float, keep_s: float, r: GcReport) -> None:
    if keep_s > 0 and age_s > keep_s:
        size = _size(sdir)
        if not r.dry_run:
            trash = sdir.with_name(TRASH + sdir.name)
            os.rename(sdir, trash)
            shutil.rmtree(trash)
        r.removed += 1
        r.bytes_before += size
        return
    if raw_s > 0 and age_s > raw_s:
        for name in COMPRESSED:
            path = sdir / name
            if not path.exists():
                continue
            if r.dry_run:
                r.bytes_before += path.stat().st_size
            else:
                before, after = compress(path)
                r.bytes_before += before
                r.bytes_after += after
            r.compressed += 1


def gc(state_dir: Path, raw_days: float, keep_days: float, now: float, dry_run: bool = False) -> GcReport:
    """One pass over state/sessions (module docstring)."""
    r = GcReport(dry_run=dry_run)
    if keep_days > 0 and raw_days > 0 and keep_days < raw_days:
        raise ValueError(f"RETAIN_DAYS ({keep_days:g}) must not be below RETAIN_RAW_DAYS ({raw_days:g})")
    if keep_days > 0 and backend_of(state_dir) == "files":
        raise ValueError("RETAIN_DAYS needs the sqlite or postgres store: the files store keeps receipts only in "
                         "the session directories (loopctl.sh migrate moves it to sqlite)")
    with _locked(state_dir):
        store = open_store(state_dir)
        live = {sid for sid in store.live()}
        meta_items: dict[str, str] = store.states()
        sessions = state_dir / "sessions"
        for entry in sorted(os.scandir(sessions), key=lambda e: e.name) if sessions.is_dir() else []:
            if entry.name.startswith(TRASH) and not dry_run:  # a removal an earlier gc did not finish
                shutil.rmtree(entry.path, ignore_errors=True)
                continue
            if not entry.is_dir(follow_symlinks=False):
                continue
            r.sessions += 1
            sdir = Path(entry.path)
            ended = _ended_epoch(sdir)
            if entry.name in live or ended is None:
                r.kept_live += 1
                continue
            item = str((jsonio.read_dict(sdir / "meta.json") or {}).get("item_id") or "")
            if meta_items.get(item) not in TERMINAL_STATES:
                r.kept_not_final += 1
                continue
            try:
                _one(sdir, now - ended, raw_days * DAY_S, keep_days * DAY_S, r)
            except OSError as exc:
                r.errors.append(f"{entry.name}: {exc}")
        if not dry_run:
            jsonio.write_json(state_dir / "disk.json", {"measured_epoch": now, "bytes": disk_use(state_dir)})
    return r


def disk_use(state_dir: Path) -> dict[str, int]:
    """Bytes on disk by category: session streams raw and compressed, the rest of the
    sessions, worktrees, the store, the audit log, everything else."""
    use = {"streams_raw": 0, "streams_compressed": 0, "sessions_other": 0, "worktrees": 0, "store": 0,
           "audit_log": 0, "other": 0}
    for root, _dirs, files in os.walk(state_dir):
        rel = Path(root).relative_to(state_dir).parts
        for name in files:
            try:
                size = os.lstat(os.path.join(root, name)).st_blocks * 512
            except OSError:
                continue
            use[_category(rel, name)] += size
    return use


def _category(rel: tuple[str, ...], name: str) -> str:
    if rel[:1] == ("sessions",):
        if len(rel) == 2 and name in COMPRESSED:
            return "streams_raw"
        if len(rel) == 2 and name.endswith(".gz") and name[:-3] in COMPRESSED:
            return "streams_compressed"
        return "sessions_other"
    if rel[:1] == ("worktrees",):
        return "worktrees"
    if not rel and name.startswith("harness.db"):
        return "store"
    if not rel and name.startswith("events.jsonl"):
        return "audit_log"
    return "other"


def as_dict(r: GcReport) -> dict[str, Any]:
    return {**asdict(r), "freed": r.freed}
