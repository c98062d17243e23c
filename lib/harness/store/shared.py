"""Records every loop of a state directory (or a fleet) shares beside the items:
one JSON object per name, read by anyone and changed under the store's lock for
that name (read, change, write back). The governor keeps its target here
(lib/harness/pipeline/governor.py); how many sessions run, counted for it, too.

SQLite and postgres keep them in the kv table (postgres: every host sees one
record, changed under an advisory lock of its name); the files store keeps
state/<name>.json under state/<name>.lock.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from harness import jsonio
from harness.store import queue

SHARED_PREFIX = "shared:"


class SqliteShared:
    """The kv table's shared records (SqliteStore and, through it, PostgresStore)."""

    db: Any

    def _tx(self) -> Any: ...
    def _serialize(self, what: str) -> None: ...
    def _kv(self, key: str) -> dict[str, Any] | None: ...

    def shared_record(self, name: str) -> dict[str, Any] | None:
        return self._kv(SHARED_PREFIX + name)

    @contextmanager
    def update_shared(self, name: str) -> Iterator[dict[str, Any]]:
        """The record (empty when there is none), written back when the block changed it."""
        with self._tx():
            self._serialize(SHARED_PREFIX + name)
            record = self._kv(SHARED_PREFIX + name) or {}
            before = jsonio.dumps(record)
            yield record
            if jsonio.dumps(record) != before:
                self.db.execute("INSERT INTO kv (key, doc) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET doc = "
                                "excluded.doc", (SHARED_PREFIX + name, jsonio.dumps(record).decode()))

    def running_count(self, now: float) -> int:
        """Sessions running now, on every host the store serves."""
        row = self.db.execute("SELECT count(*) FROM items WHERE state = 'running'").fetchone()
        return int(row[0]) if row else 0


class PgShared(SqliteShared):
    """A fleet's count leaves out the leases that ran out (their host died or hung)."""

    def running_count(self, now: float) -> int:
        row = self.db.execute("SELECT count(*) FROM items WHERE state = 'running' AND lease_expires >= ?",
                              (now,)).fetchone()
        return int(row[0]) if row else 0


class FileShared:
    """The files store's shared records: state/<name>.json under state/<name>.lock."""

    state_dir: Path

    def shared_record(self, name: str) -> dict[str, Any] | None:
        return jsonio.read_dict(self.state_dir / f"{name}.json")

    @contextmanager
    def update_shared(self, name: str) -> Iterator[dict[str, Any]]:
        fd = os.open(self.state_dir / f"{name}.lock", os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            record = self.shared_record(name) or {}
            before = jsonio.dumps(record)
            yield record
            if jsonio.dumps(record) != before:
                # rewritten every second or so: the next write mends a lost one, no fsync
                jsonio.write_atomic(self.state_dir / f"{name}.json", jsonio.dumps(record) + b"\n", durable=False)
        finally:
            os.close(fd)

    def running_count(self, now: float) -> int:
        return len(queue.Queue(self.state_dir).ids("running"))
