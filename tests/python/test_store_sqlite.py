"""What only the SQLite backend has: its file, its schema version."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

import pytest
from harness.store import StoreError, open_store


def test_the_database_is_its_owner_s_only_and_in_wal_mode(tmp_path: Path) -> None:
    s = open_store(tmp_path, "sqlite")
    s.init()
    s.add([("t", {"id": "a", "prompt": "p"})])
    db = tmp_path / "harness.db"
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    assert sqlite3.connect(db).execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert open_store(tmp_path, "sqlite").get("a")[0] == "pending"  # a second connection sees it


def test_a_database_from_a_newer_release_is_refused_in_one_line(tmp_path: Path) -> None:
    open_store(tmp_path, "sqlite")
    con = sqlite3.connect(tmp_path / "harness.db")
    con.execute("PRAGMA user_version=99")
    con.close()
    with pytest.raises(StoreError, match=r"has schema 99; this release knows up to 2: run a newer harness$"):
        open_store(tmp_path, "sqlite")
