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
    with pytest.raises(StoreError, match=r"has schema 99; this release knows up to 3: run a newer harness$"):
        open_store(tmp_path, "sqlite")


def test_opening_the_store_again_never_drops_a_live_connection_s_locks(tmp_path: Path) -> None:
    """A second open_store() in one process must not close a descriptor of harness.db
    by hand: that would drop the first connection's POSIX locks, and another process's
    last close would then delete the WAL the first one still writes to (claims lost)."""
    import subprocess
    import sys

    first = open_store(tmp_path, "sqlite")
    first.init()
    first.add([("t", {"id": f"i{n:03d}", "prompt": "p"}) for n in range(30)])
    other = [sys.executable, "-c", "import sys; from pathlib import Path; from harness.store import open_store; "
             "open_store(Path(sys.argv[1])).states()", str(tmp_path)]
    env = {"PYTHONPATH": str(Path(__file__).resolve().parents[2] / "lib")}
    claimed = []
    for n in range(30):
        open_store(tmp_path, "sqlite").pause()  # what the gate and the breaker do before a claim
        subprocess.run(other, check=True, env=env)  # another process opens and closes the database
        lease = first.claim(f"s{n}", "w", 1e10)
        assert lease is not None
        claimed.append(lease.item_id)
    seen = subprocess.run([sys.executable, "-c", "import sys; from pathlib import Path; "
                           "from harness.store import open_store; "
                           "print(sorted(i for i, s in open_store(Path(sys.argv[1])).states().items() if s == 'running'))",
                           str(tmp_path)], check=True, env=env, capture_output=True, text=True).stdout
    assert seen.strip() == str(sorted(claimed))


def test_the_audit_index_keeps_a_rotated_log_s_events_and_reads_the_new_one_whole(tmp_path: Path) -> None:
    store = open_store(tmp_path, "sqlite")
    store.audit("one", n=1)
    store.audit("two", n=2)
    assert [e["event"] for e in store.events()] == ["one", "two"]
    (tmp_path / "events.jsonl").rename(tmp_path / "events.jsonl.1")  # logrotate's way
    store.audit("three", n=3)
    with open(tmp_path / "events.jsonl", "ab") as fh:
        fh.write(b'{"ts":"2026-11-30T00:00:00Z","event":"four"')  # a line still being written
    assert [e["event"] for e in store.events()] == ["one", "two", "three"]
    with open(tmp_path / "events.jsonl", "ab") as fh:
        fh.write(b"}\n")
    assert [e["event"] for e in store.events()] == ["one", "two", "three", "four"]
    (tmp_path / "events.jsonl").write_bytes(b"")  # copytruncate
    store.audit("five")
    assert [e["event"] for e in store.events()][-2:] == ["four", "five"]
    # reindex: what logrotate left (events.jsonl.1: one, two), then the file as it is now (five);
    # three and four were truncated away without a copy here
    assert store.reindex()["events"] == 3  # type: ignore[attr-defined]
    assert [e["event"] for e in store.events()] == ["one", "two", "five"]


def test_a_log_truncated_in_place_and_grown_past_the_old_offset_is_read_from_its_top(tmp_path: Path) -> None:
    """copytruncate, then more lines than there were before the next index: the size
    alone would not tell; the first bytes do."""
    store = open_store(tmp_path, "sqlite")
    for n in range(3):
        store.audit("before", n=n)
    assert len(list(store.events())) == 3
    (tmp_path / "events.jsonl").write_bytes(b"")  # copytruncate
    for n in range(10):
        store.audit("after", n=n, pad="x" * 40)
    assert [e["n"] for e in store.events() if e["event"] == "after"] == list(range(10))


def test_reindex_keeps_the_attempts_of_sessions_retention_removed(tmp_path: Path) -> None:
    store = open_store(tmp_path, "sqlite")
    store.record_attempt({"session_id": "ses_gone", "item_id": "x", "cost_usd": 1.5,
                          "started_at": "2026-11-30T00:00:00.000Z"})
    store.reindex()  # type: ignore[attr-defined]
    assert [a["session_id"] for a in store.attempts()] == ["ses_gone"]


def test_a_state_directory_being_migrated_or_with_an_emptied_database_is_refused(tmp_path: Path) -> None:
    from harness.store import StoreUnavailableError

    (tmp_path / "store").write_text("migrating\n")
    with pytest.raises(StoreUnavailableError, match="is being moved to the SQLite store"):
        open_store(tmp_path)
    (tmp_path / "store").unlink()
    open_store(tmp_path).add([("t", {"id": "a", "prompt": "p"})])
    assert (tmp_path / "store").read_text() == "sqlite\n"
    (tmp_path / "harness.db").write_bytes(b"")  # a failed restore, a stray `: >`
    for suffix in ("-wal", "-shm"):
        (tmp_path / f"harness.db{suffix}").unlink(missing_ok=True)
    with pytest.raises(StoreUnavailableError, match=r"harness\.db is empty, but"):
        open_store(tmp_path)


def test_migrate_on_a_new_state_directory_leaves_it_usable(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from harness.cli import main

    assert main(["migrate", "--state-dir", str(tmp_path / "new")]) == 0
    assert "nothing to migrate" in capsys.readouterr().out
    assert main(["queue-add", "--state-dir", str(tmp_path / "new"), "--file", str(_item_file(tmp_path))]) == 0
    assert open_store(tmp_path / "new").get("a")[0] == "pending"


def _item_file(tmp_path: Path) -> Path:
    f = tmp_path / "item.json"
    f.write_text('{"id": "a", "prompt": "p"}')
    return f


def test_an_older_database_is_brought_up_to_date_keeping_its_rows(tmp_path: Path) -> None:
    """A version-1 database (issue 13's first part) with an item, taken to the newest
    schema in one go; a version-2 one's attempts get the columns of version 3 filled
    from their receipts."""
    import json

    from harness.store.sqlite import MIGRATIONS, SCHEMA_VERSION

    def at(version: int, path: Path) -> sqlite3.Connection:
        con = sqlite3.connect(path, isolation_level=None)
        for step in MIGRATIONS[:version]:
            con.executescript(step)
        con.execute(f"PRAGMA user_version={version}")
        return con

    old = tmp_path / "v1"
    old.mkdir()
    con = at(1, old / "harness.db")
    con.execute("INSERT INTO items VALUES ('a', 'pending', 2, 0, 0, 0, NULL, NULL, ?)",
                (json.dumps({"id": "a", "prompt": "p", "priority": "normal", "depends_on": [], "state": "pending"}),))
    con.close()
    store = open_store(old, "sqlite")
    assert store.get("a")[0] == "pending"
    assert store.db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION  # type: ignore[attr-defined]
    assert store.claim("s1", "w", 1e10) is not None  # the new columns work for it
    two = tmp_path / "v2"
    two.mkdir()
    con = at(2, two / "harness.db")
    receipt = {"session_id": "s1", "item_id": "a", "verdict": "succeeded", "fix_round": 1,
               "verify": {"cmd": "true", "seconds": 2.5}, "api_retries": {"529": 3}, "claim_to_exec_s": 0.2}
    con.execute("INSERT INTO attempts (session_id, item_id, verdict) VALUES ('s1', 'a', 'succeeded')")
    con.execute("INSERT INTO receipts VALUES ('s1', ?)", (json.dumps(receipt),))
    con.close()
    (row,) = open_store(two, "sqlite").attempts()
    assert (row["fix_round"], row["verify_s"], row["claim_s"], json.loads(row["retries"])) == (1, 2.5, 0.2, {"529": 3})
