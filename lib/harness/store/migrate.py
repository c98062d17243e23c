"""Moving a files-backend state directory (an earlier release's) to the SQLite store.

    loopctl.sh migrate            (the loop's start does it too, unless STORE=files)

The database is built beside the old state under another name and renamed into
place only when it is whole, so a crash (or kill -9) at any moment leaves either
the old state, read as before, or the new one. Nothing is deleted: the old files
move to state/files-backend/ (queue/, pause.json, circuit.json), where a person
can still read them. Items keep their state, attempts, history and leases; the
pause, the breaker's record, the audit log and every session's receipt come along.
An item file that cannot be read stays in files-backend/ and is named on stderr.
"""

from __future__ import annotations

import fcntl
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import jsonio
from harness.store import attempts, queue
from harness.store.base import StoreError
from harness.store.sqlite import DB_FILE, ITEM_COLUMNS, ITEM_MARKS, SqliteRecords, row_values

BUILDING = DB_FILE + ".migrating"
MIGRATING = "migrating"  # state/store while a migration runs
KEPT = "files-backend"


@dataclass
class Migrated:
    items: dict[str, int] = field(default_factory=dict)  # state -> items moved over
    unreadable: list[str] = field(default_factory=list)
    attempts: int = 0
    events: int = 0
    pause: bool = False
    breaker: bool = False

    def line(self) -> str:
        moved = ", ".join(f"{n} {s}" for s, n in self.items.items() if n) or "no items"
        extra = f"; {len(self.unreadable)} unreadable item file(s) left in {KEPT}/" if self.unreadable else ""
        return (f"migrated to {DB_FILE}: {moved}; {self.attempts} attempts, {self.events} audit events"
                f"{', the pause' if self.pause else ''}{', the breaker' if self.breaker else ''}{extra}")


def _marker(state_dir: Path) -> str:
    try:
        return (state_dir / "store").read_text().strip()
    except FileNotFoundError:
        return ""


def needed(state_dir: Path) -> bool:
    """A files-backend state that no one has named (an earlier release's), or one
    whose migration was cut short before its database was in place."""
    return ((state_dir / "queue").is_dir() and not (state_dir / DB_FILE).exists()
            and _marker(state_dir) in ("", MIGRATING))


def migrate(state_dir: Path) -> Migrated | None:
    """Moves the state over; None when there is nothing to move. One migration at a
    time (state/migrate.lock). While it runs, state/store says "migrating", so every
    other command refuses (open_store) rather than write where the migration has
    already read; a write already under way finishes first (queue/.lock)."""
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    with open(state_dir / "migrate.lock", "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (state_dir / DB_FILE).exists():
            if _marker(state_dir) in ("", MIGRATING):  # cut short after its database was in place
                jsonio.write_atomic(state_dir / "store", b"sqlite\n")
                if (state_dir / "queue").is_dir() and not (state_dir / KEPT).exists():
                    _settle(state_dir)
            return None
        if not needed(state_dir):
            return None
        if (state_dir / KEPT).exists():
            raise StoreError(f"{state_dir / KEPT} already exists: move it aside and run loopctl.sh migrate again")
        jsonio.write_atomic(state_dir / "store", (MIGRATING + "\n").encode())
        for suffix in ("", "-wal", "-shm", "-journal"):  # a migration cut short before
            (state_dir / (BUILDING + suffix)).unlink(missing_ok=True)
        with queue.Queue(state_dir).locked():
            out = _build(state_dir)
            _settle(state_dir)
    from harness.store import open_store  # the store names itself sqlite now

    open_store(state_dir).audit("store.migrated", backend="sqlite", items=out.items, attempts=out.attempts,
                                events=out.events, unreadable=out.unreadable or None, kept=KEPT)
    return out


def _build(state_dir: Path) -> Migrated:
    """The whole database under its building name, then renamed into place."""
    out = Migrated()
    db = SqliteRecords(state_dir, BUILDING)
    q = queue.Queue(state_dir)
    skipped: list[str] = []
    with db._tx():
        for state in queue.STATES:
            out.items[state] = 0
            for item_id in q.ids(state):
                item = _item(q, state, item_id, out)
                if item is not None:
                    db.db.execute(f"INSERT INTO items ({ITEM_COLUMNS}) VALUES ({ITEM_MARKS})", row_values(item))
                    out.items[state] += 1
        for name, key in (("pause.json", "pause"), ("circuit.json", "breaker")):
            doc = _json(state_dir / name)
            if doc is not None:
                db.db.execute("INSERT INTO kv VALUES (?, ?)", (key, jsonio.dumps(doc).decode()))
                setattr(out, key, True)
        for receipt in attempts.receipts(state_dir, skipped):
            db._put_attempt(receipt)
            out.attempts += 1
    out.events = db.index_audit(skipped)
    db.db.execute("PRAGMA journal_mode=DELETE")  # one self-contained file to rename
    db.db.close()
    for line in skipped:
        print(f"migrate: skipped {line}", file=sys.stderr)
    fd = os.open(state_dir / BUILDING, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    os.rename(state_dir / BUILDING, state_dir / DB_FILE)
    jsonio.write_atomic(state_dir / "store", b"sqlite\n")
    return out


def _item(q: queue.Queue, state: str, item_id: str, out: Migrated) -> dict[str, Any] | None:
    path = q.path(state, item_id)
    try:
        item = q.load(state, item_id)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        out.unreadable.append(str(path))
        print(f"migrate: {path}: unreadable item file, left in {KEPT}/ ({exc})", file=sys.stderr)
        return None
    if not isinstance(item, dict) or not isinstance(item.get("id"), str):
        out.unreadable.append(str(path))
        print(f"migrate: {path}: not an item, left in {KEPT}/", file=sys.stderr)
        return None
    item["state"] = state
    item.setdefault("priority", "normal")
    item.setdefault("created_at", jsonio.utc_now_iso())
    lease = item.get("lease")
    if state == "running" and isinstance(lease, dict) and lease.get("session_id"):
        leases = q.root.parent / "leases"
        leases.mkdir(mode=0o700, exist_ok=True)
        (leases / str(lease["session_id"])).touch(mode=0o600)
    return item


def _json(path: Path) -> dict[str, Any] | None:
    try:
        doc = jsonio.read_json(path)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        print(f"migrate: {path}: unreadable, not moved over ({exc}); it stays in {KEPT}/", file=sys.stderr)
        return None
    return doc if isinstance(doc, dict) else None


def _settle(state_dir: Path) -> None:
    """The old files, out of the way and kept (state/files-backend/)."""
    kept = state_dir / KEPT
    kept.mkdir(mode=0o700)
    for name in ("queue", "pause.json", "circuit.json", "circuit.lock"):
        if (state_dir / name).exists():
            os.rename(state_dir / name, kept / name)
