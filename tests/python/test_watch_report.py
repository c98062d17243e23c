"""watch, the timeline, export, summary and status: the observer's start and stop,
one count of turns, the worktree line, the PHASE column."""

from __future__ import annotations

import io
import logging
import shutil
from pathlib import Path
from typing import Any

import orjson
import pytest
from harness.agents import agent_for
from harness.report import export, status, watch
from harness.report import session_report as report
from harness.report.sessions import Session
from harness.report.style import Style
from harness.stream import events as norm
from harness.stream.waker import Waker

# --- the inotify observer --------------------------------------------------


def test_a_stopped_emitter_never_logs_that_its_thread_is_inactive(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    waker = Waker()
    try:
        assert waker.watch("d", str(tmp_path))
        assert waker._observer is not None
        (emitter,) = waker._observer.emitters
        emitter.stop()
        # where the race puts the emitter's thread: past its "still running?" check
        # when stop() lands, so queue_events() runs on a stopped emitter
        with caplog.at_level(logging.DEBUG, logger="watchdog"):
            emitter.queue_events(0.0)
        emitter.join(5)
        assert not emitter.is_alive()
    finally:
        waker.close()
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


def test_a_waker_closed_at_once_logs_nothing(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="watchdog"):
        for _ in range(50):
            waker = Waker()
            waker.watch("d", str(tmp_path), ("events.jsonl",))
            (tmp_path / "events.jsonl").write_text("x\n")
            waker.close()
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


def _ended(tmp_path: Path, reference: Path, name: str, meta: dict[str, Any] | None = None) -> Session:
    d = tmp_path / f"ses_{name}"
    d.mkdir()
    shutil.copy(reference / f"{name}.jsonl", d / "events.jsonl")
    (d / "exit_code").write_text("1\n")
    (d / "metrics.json").write_bytes(orjson.dumps({"session_id": d.name, "verdict": "x", "turns": 0}))
    return Session(d, meta or {})


def test_watch_of_an_ended_session_starts_no_observer(tmp_path: Path, reference: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    def no_waker() -> None:
        raise AssertionError("an ended session needs no inotify observer")

    monkeypatch.setattr(watch, "Waker", no_waker)
    out = io.StringIO()
    assert watch.watch(_ended(tmp_path, reference, "ok"), Style(out, False, False), False, out) == 0
    assert "■ success" in out.getvalue()


# --- turns -------------------------------------------------------------------


def _watched(s: Session) -> str:
    out = io.StringIO()
    watch.watch(s, Style(out, False, False), False, out)
    return out.getvalue()


def _timeline(s: Session, capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    report.cmd_timeline(s, Style(io.StringIO(), False, False), True)
    rows: list[dict[str, Any]] = orjson.loads(capsys.readouterr().out)
    return rows


def _exported(s: Session) -> str:
    out = io.StringIO()
    export.export(s, out, Style(out, False, False))
    return out.getvalue()


def test_max_turns_one_is_one_turn_though_the_cli_says_two(tmp_path: Path, reference: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    s = _ended(tmp_path, reference, "max_turns1")
    assert '"num_turns":2' in s.file("events.jsonl").read_text()
    shown = _watched(s)
    assert "── turn 1 ──" in shown and "── turn 2" not in shown
    assert "■ error_max_turns (error) · 1 turns · " in shown
    rows = _timeline(s, capsys)
    assert [r["what"] for r in rows if r["what"].startswith("turn")] == ["turn 1"]
    assert rows[-1]["text"].startswith("error_max_turns, 1 turns, ")
    assert (rows[-1]["turns"], rows[-1]["cli_num_turns"]) == (1, 2)
    md = _exported(s)
    assert md.count("### Turn ") == 1


def test_the_clis_own_message_is_no_turn(tmp_path: Path, reference: Path, capsys: pytest.CaptureFixture[str]) -> None:
    s = _ended(tmp_path, reference, "err529_r2")
    shown = _watched(s)
    assert "── turn" not in shown and "API Error: 529" in shown
    assert "■ success (error) · 0 turns · " in shown
    rows = _timeline(s, capsys)
    assert [r["what"] for r in rows if r["what"] in ("cli", "turn 1")] == ["cli"]
    assert rows[-1]["text"].startswith("success, 0 turns, ")
    md = _exported(s)
    assert "### Turn" not in md and "### From the CLI (not a turn of the model)" in md


def test_watch_numbers_turns_whether_streamed_or_not(tmp_path: Path, reference: Path) -> None:
    for name in ("partial", "ok", "slowtool"):
        shown = _watched(_ended(tmp_path, reference, name))
        assert "── turn 1 ──" in shown and "── turn 2 ──" in shown and "── turn 3" not in shown
        assert " · 2 turns · " in shown


def _line_turn(line: dict[str, Any]) -> str:
    """turn_id of a line of the stream, decoded by the agent: "" when it holds no turn."""
    return next((report.turn_id(ev) for ev in agent_for().decode(line) if isinstance(ev, norm.Turn)), "")


def test_turn_id_counts_distinct_model_messages() -> None:
    start = {"type": "stream_event", "event": {"type": "message_start", "message": {"id": "m1", "model": "claude-x"}}}
    assert _line_turn(start) == "m1"
    assert _line_turn({"type": "assistant", "message": {"id": "m1", "model": "claude-x"}}) == "m1"
    assert _line_turn({"type": "assistant", "message": {"id": "s1", "model": "<synthetic>"}}) == ""
    assert _line_turn({"type": "stream_event", "event": {"type": "content_block_delta"}}) == ""
    assert _line_turn({"type": "user", "message": {"id": "u"}}) == ""


# --- summary's worktree line -----------------------------------------------------


def _summary(s: Session, capsys: pytest.CaptureFixture[str]) -> str:
    report.cmd_summary(s, Style(io.StringIO(), False, False))
    return capsys.readouterr().out


def test_summary_says_a_removed_worktree_was_removed_and_names_the_branch(tmp_path: Path, reference: Path,
                                                                         capsys: pytest.CaptureFixture[str]) -> None:
    gone = tmp_path / "worktrees" / "ses_gone"
    s = _ended(tmp_path, reference, "ok", {"cwd": str(gone), "branch": "harness/item-1"})
    assert f"worktree  removed (was {gone}); the work is on branch harness/item-1\n" in _summary(s, capsys)
    gone.mkdir(parents=True)
    assert f"worktree  {gone} (branch harness/item-1)\n" in _summary(s, capsys)
    s.meta["branch"] = ""
    assert f"worktree  {gone}\n" in _summary(s, capsys)
    gone.rmdir()
    assert f"worktree  removed (was {gone})\n" in _summary(s, capsys)


# --- status: the PHASE column ------------------------------------------------------


@pytest.mark.parametrize(
    ("tool", "cell"),
    [
        (None, "requesting"),
        ("Bash", "in_tool/Bash"),
        ("WebFetch", "in_tool/WebFetch"),
        ("NotebookEdit", "in_tool/NotebookEdit"),
        ("mcp__x__y", "in_tool/mcp__x__y"),
        ("mcp__github__create_pull_request", "in_tool/github…request"),
        ("ListMcpResourcesTool", "in_tool/ListMc…cesTool"),
    ],
)
def test_the_phase_column_holds_the_phase_and_the_tool(tool: str | None, cell: str) -> None:
    phase = "in_tool" if tool else "requesting"
    assert status.phase_cell(phase, tool) == cell
    assert len(cell) <= status.PHASE_WIDTH


def test_status_rows_keep_their_columns_with_a_long_tool_name() -> None:
    agent = {"item": "it", "session": "ses_0123456789abcdef", "phase": "in_tool", "since_last_event_s": 3,
             "running_s": 65, "turns": 2, "tokens": {"input": 10}, "cost_usd": 0.5, "branch": "b", "worktree": None,
             "stale": False}
    st = {"loop": {"running": False, "blocked": None, "stop_file": False}, "pause": None,
          "circuit": {"summary": "closed", "state": "closed"},
          "queue": {"pending": 0, "blocked": 0, "waiting": 0, "running": 2, "succeeded": 0, "quarantined": 0, "canceled": 0},
          "today": {"sessions": 0, "succeeded": 0, "success_rate": None, "cost_usd": 0.0, "tokens": {}, "date": "d"},
          "agents": [dict(agent, outstanding_tool="WebFetch"), dict(agent, outstanding_tool="mcp__github__create_pull_request")]}
    lines = status.render(st, Style(io.StringIO(), False, False)).splitlines()
    head = next(line for line in lines if line.startswith("ITEM"))
    rows = [line for line in lines if line.startswith("it ")]
    assert "in_tool/WebFetch " in rows[0] and "in_tool/github…request " in rows[1]
    assert {row.index("3s") for row in rows} == {head.index("QUIET") + len("QUIET") - 2}
