"""The CLI's transcript kept in the session directory (lib/harness/pipeline/transcript.py),
its subagents' too; never through a link."""

from __future__ import annotations

import os
from pathlib import Path

from harness.pipeline import transcript

UUID = "0d8778a8-7b4b-48bc-901a-9a33e0ec012a"


def test_the_conversation_and_its_subagents_are_copied_regular_files_only(tmp_path: Path) -> None:
    cwd = "/srv/work/w1"
    project = tmp_path / "cfg" / "projects" / "-srv-work-w1"
    subs = project / UUID / "subagents"
    subs.mkdir(parents=True)
    (project / f"{UUID}.jsonl").write_bytes(b'{"type":"user"}\n')
    (subs / "agent-a.jsonl").write_bytes(b'{"type":"assistant"}\n')
    (tmp_path / "secret").write_bytes(b"not a transcript\n")
    os.symlink(tmp_path / "secret", subs / "agent-b.jsonl")
    sdir = tmp_path / "ses_1"
    sdir.mkdir()
    got = transcript.keep(sdir, {"claude_session_id": UUID, "cwd": cwd}, config=tmp_path / "cfg")
    assert got["transcript"] == "transcript.jsonl" and got["transcript_at"] == f"-srv-work-w1/{UUID}.jsonl"
    assert (sdir / "transcript.jsonl").read_bytes() == b'{"type":"user"}\n'
    assert got["transcript_subagents"] == 1 and "agent-b.jsonl" in got["transcript_subagents_note"]
    assert (sdir / "subagents" / "agent-a.jsonl").read_bytes() == b'{"type":"assistant"}\n'
    assert not (sdir / "subagents" / "agent-b.jsonl").exists()
    assert oct((sdir / "subagents" / "agent-a.jsonl").stat().st_mode & 0o777) == "0o600"


def test_without_subagents_nothing_more_is_said(tmp_path: Path) -> None:
    project = tmp_path / "cfg" / "projects" / "-w"
    project.mkdir(parents=True)
    (project / f"{UUID}.jsonl").write_bytes(b"{}\n")
    (tmp_path / "s").mkdir()
    got = transcript.keep(tmp_path / "s", {"claude_session_id": UUID, "cwd": "/w"}, config=tmp_path / "cfg")
    assert "transcript_subagents" not in got and not (tmp_path / "s" / "subagents").exists()


def test_a_fifo_or_a_linked_directory_is_never_read(tmp_path: Path) -> None:
    project = tmp_path / "cfg" / "projects" / "-w"
    (project / UUID / "subagents").mkdir(parents=True)
    (project / f"{UUID}.jsonl").write_bytes(b"{}\n")
    os.mkfifo(project / UUID / "subagents" / "agent-x.jsonl")  # opening it would block for ever
    (tmp_path / "s").mkdir()
    got = transcript.keep(tmp_path / "s", {"claude_session_id": UUID, "cwd": "/w"}, config=tmp_path / "cfg")
    assert got["transcript_subagents"] == 0 and "not a regular file" in got["transcript_subagents_note"]
    elsewhere = tmp_path / "other" / "subagents"
    elsewhere.mkdir(parents=True)
    (elsewhere / "theirs.jsonl").write_bytes(b"{}\n")
    (project / UUID / "subagents" / "agent-x.jsonl").unlink()
    (project / UUID / "subagents").rmdir()
    os.symlink(elsewhere, project / UUID / "subagents")
    (tmp_path / "t").mkdir()
    got = transcript.keep(tmp_path / "t", {"claude_session_id": UUID, "cwd": "/w"}, config=tmp_path / "cfg")
    assert "transcript_subagents" not in got and not (tmp_path / "t" / "subagents").exists()
