"""Retention (loopctl.sh gc, ops/retention.py): finished sessions of final items are
compressed, then removed; live ones and those of items not final are never touched;
every reader reads a compressed session as it read it before."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from harness.ops import retention
from harness.store import open_store

ROOT = Path(__file__).resolve().parents[2]
DAY = 86400.0


def env_for(tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HARNESS_", "ANTHROPIC_", "CLAUDE", "MOCK_"))}
    home = tmp / "home"
    home.mkdir(exist_ok=True)
    env.update(HOME=str(home), CLAUDE_BIN=str(ROOT / "tests" / "mocks" / "claude"), HARNESS_QUIET="1",
               HARNESS_IDLE_POLL_S="0.1", HARNESS_POLL_INTERVAL_S="0.05", HARNESS_RETRY_BASE_S="3600",
               HARNESS_DRAIN_MAX_WAIT_S="0", HARNESS_GC_INTERVAL_S="0",
               PATH=f"{ROOT / 'tests' / 'mocks'}:{env['PATH']}")
    return env


def sh(tmp: Path, script: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(ROOT / "scripts" / script), "--state", str(tmp / "state"), *args], env=env_for(tmp),
                          capture_output=True, text=True, check=check, timeout=120)


@pytest.fixture
def state(tmp_path: Path) -> Path:
    """Two finished sessions: 'done' (succeeded) and 'again' (failed, its item pending
    for a retry: not final), and a live one: 'live', claimed by ses_live."""
    sh(tmp_path, "queue.sh", "add", "--id", "done", "--prompt", "[[mock:tool]] read a file")
    sh(tmp_path, "queue.sh", "add", "--id", "again", "--prompt", "[[mock:api_error]]")
    subprocess.run([str(ROOT / "loop.sh"), "--state", str(tmp_path / "state"), "--drain"], env=env_for(tmp_path),
                   capture_output=True, check=True, timeout=120)
    s = tmp_path / "state"
    store = open_store(s)
    assert store.get("done")[0] == "succeeded" and store.get("again")[0] == "pending"
    sh(tmp_path, "queue.sh", "add", "--id", "live", "--prompt", "p")
    assert store.claim("ses_live", "w", time.time()) is not None
    live = s / "sessions" / "ses_live"
    live.mkdir()
    (live / "events.jsonl").write_text('{"type":"system","subtype":"init"}\n')
    (live / "metrics.json").write_text("{}")
    (live / "meta.json").write_text(json.dumps({"item_id": "live", "ended_epoch": 1.0}))
    return s


def sessions_of(s: Path, item: str) -> list[Path]:
    return [d for d in (s / "sessions").iterdir() if json.loads((d / "meta.json").read_text()).get("item_id") == item]


def session_of(s: Path, item: str) -> Path:
    found = sessions_of(s, item)
    assert len(found) == 1
    return found[0]


def views(tmp: Path, sid: str) -> dict[str, str]:
    return {verb: sh(tmp, "parse-session-events.sh", verb, sid, *extra).stdout
            for verb, extra in (("summary", ()), ("timeline", ()), ("tools", ("--json",)), ("errors", ()),
                                ("export", ()), ("metrics", ("--json", "--recompute")))}


def test_old_sessions_of_final_items_are_compressed_and_read_as_before(state: Path) -> None:
    tmp, done, again = state.parent, session_of(state, "done"), sessions_of(state, "again")
    before = views(tmp, done.name)
    report_before = sh(tmp, "report.sh", "--json").stdout
    raw = (done / "events.jsonl").read_bytes()
    r = retention.gc(state, raw_days=1, keep_days=0, now=time.time() + 2 * DAY)
    assert (r.compressed, r.removed, r.kept_not_final, r.kept_live, r.errors) == (1, 0, len(again), 1, [])
    assert not (done / "events.jsonl").exists() and (done / "events.jsonl.gz").exists()
    assert r.bytes_before == len(raw) and 0 < r.bytes_after < r.bytes_before
    assert all((d / "events.jsonl").exists() for d in again)
    assert (state / "sessions" / "ses_live" / "events.jsonl").exists()
    assert views(tmp, done.name) == before
    assert sh(tmp, "report.sh", "--json").stdout == report_before
    again_r = retention.gc(state, raw_days=1, keep_days=0, now=time.time() + 2 * DAY)
    assert (again_r.compressed, again_r.freed) == (0, 0)  # nothing twice


def test_old_sessions_are_removed_their_receipts_stay_and_the_rest_is_untouched(state: Path) -> None:
    tmp, done = state.parent, session_of(state, "done")
    report_before = json.loads(sh(tmp, "report.sh", "--json").stdout)
    dry = retention.gc(state, raw_days=1, keep_days=30, now=time.time() + 31 * DAY, dry_run=True)
    assert dry.removed == 1 and done.is_dir()
    r = retention.gc(state, raw_days=1, keep_days=30, now=time.time() + 31 * DAY)
    assert r.removed == 1 and r.freed > 0 and not done.exists()
    assert sessions_of(state, "again") and (state / "sessions" / "ses_live").is_dir()
    assert json.loads(sh(tmp, "report.sh", "--json").stdout) == report_before


def test_a_gc_stopped_between_its_rename_and_its_removal_finishes_the_next_time(state: Path) -> None:
    done = session_of(state, "done")
    raw = (done / "events.jsonl").read_bytes()
    retention.compress(done / "events.jsonl")
    (done / "events.jsonl").write_bytes(raw)  # as if the removal had not happened
    r = retention.gc(state, raw_days=1, keep_days=0, now=time.time() + 2 * DAY)
    assert r.compressed == 1 and not (done / "events.jsonl").exists()
    assert "succeeded" in sh(state.parent, "parse-session-events.sh", "summary", done.name).stdout


def test_loopctl_gc_measures_the_disk_for_status_and_refuses_bad_limits(state: Path) -> None:
    tmp = state.parent
    out = sh(tmp, "loopctl.sh", "gc", "--json")
    doc: dict[str, Any] = json.loads(out.stdout)
    assert doc["compressed"] == 0 and doc["sessions"] == 2 + len(sessions_of(state, "again"))  # none 7 days old
    status = json.loads(sh(tmp, "status.sh", "--json").stdout)
    assert status["disk"]["bytes"]["streams_raw"] > 0 and status["disk"]["bytes"]["store"] > 0
    assert "streams " in sh(tmp, "status.sh", "--no-color").stdout
    bad = subprocess.run([str(ROOT / "scripts" / "loopctl.sh"), "--state", str(state), "gc"],
                         env={**env_for(tmp), "HARNESS_RETAIN_RAW_DAYS": "10", "HARNESS_RETAIN_DAYS": "5"},
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and bad.stderr.strip() == ("harness: RETAIN_DAYS (5) must not be below "
                                                          "RETAIN_RAW_DAYS (10)")
    events = [json.loads(line) for line in (state / "events.jsonl").read_text().splitlines()]
    assert any(e["event"] == "gc.done" for e in events)


def test_a_removal_a_gc_did_not_finish_is_finished_by_the_next(state: Path) -> None:
    done = session_of(state, "done")
    trash = done.with_name(retention.TRASH + done.name)
    done.rename(trash)  # as if the gc had stopped between its rename and its removal
    r = retention.gc(state, raw_days=1, keep_days=0, now=time.time())
    assert not trash.exists() and r.errors == []
