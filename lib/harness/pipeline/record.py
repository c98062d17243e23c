"""A finished session read once, into one record.

Finalize reads a session directory here and nowhere else: meta.json, the exit
status, the harness's own stop record (kill.json) and stall record (stall.json), a
spawn error, the tail of stderr, the stream's facts (one pass over events.jsonl),
the sidecar's timeline marks, the cancel flag, and the verify command's exit
status and the end of its output. The verdict (verdict.py), the
receipt (receipt.py) and the policy (policy.py) are pure functions of the record.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import jsonio
from harness.agents import Agent, agent_for
from harness.stream import facts as facts_mod
from harness.stream.facts import SessionFacts
from harness.stream.timeline import read_marks

STDERR_TAIL_BYTES = 4096
VERIFY_TAIL_BYTES = 4096


@dataclass(frozen=True)
class SessionRecord:
    dir: Path
    meta: dict[str, Any]
    facts: SessionFacts
    exit_code: int | None = None
    exit_mtime: float | None = None  # when the wrapper recorded the exit status
    exec_at: float | None = None  # when the wrapper started the agent (agent.pid's mtime)
    kill: dict[str, Any] | None = None  # kill.json: the harness stopped it
    stall: dict[str, Any] | None = None  # stall.json: the sidecar found it stalled
    burn: dict[str, Any] | None = None  # burn.json: the sidecar found it spending without progress
    spawn_error: str = ""
    stderr_tail: str = ""
    marks: list[dict[str, Any]] = field(default_factory=list)  # timeline.jsonl
    events_mtime: float | None = None  # the stream's last write
    canceled: bool = False
    verify_exit: int | None = None  # the verify command's exit status (verify_exit)
    verify_began: float | None = None  # when it began (verify.pid's mtime)
    verify_ended: float | None = None  # when it ended (verify_exit's mtime)
    verify_tail: str = ""  # the end of its output (verify.log)

    @property
    def verify(self) -> dict[str, Any] | None:
        """The verify command the session was started with (meta.json): cmd, timeout_s."""
        v = self.meta.get("verify")
        return v if isinstance(v, dict) and v.get("cmd") else None

    @property
    def session_id(self) -> str:
        return str(self.meta.get("session_id") or self.dir.name)

    @property
    def item_id(self) -> str:
        return str(self.meta.get("item_id") or "")

    @property
    def agent(self) -> Agent:
        """The agent that ran the session (meta.json's "agent"; Claude Code before agents were named)."""
        return agent_for(str(self.meta.get("agent") or "claude"))

    @property
    def stall_phase(self) -> str | None:
        return str(self.stall.get("phase")) if self.stall else None


def _exit_code(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except (FileNotFoundError, UnicodeDecodeError):
        return None
    return int(text) if re.fullmatch(r"-?\d+", text) else None


def _tail(path: Path, limit_bytes: int = STDERR_TAIL_BYTES) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(0, size - limit_bytes))
            return fh.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""


def _mtime(path: Path) -> float | None:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return None


def _text(path: Path) -> str:
    try:
        return path.read_text(errors="replace").strip()
    except FileNotFoundError:
        return ""


def read(sdir: Path, facts: SessionFacts | None = None, meta: dict[str, Any] | None = None) -> SessionRecord:
    """The session in sdir; facts and meta when the caller has them already."""
    meta = meta if meta is not None else (jsonio.read_dict(sdir / "meta.json") or {})
    return SessionRecord(
        dir=sdir,
        meta=meta,
        facts=facts if facts is not None else facts_mod.scan(sdir / "events.jsonl"),
        exit_code=_exit_code(sdir / "exit_code"),
        exit_mtime=_mtime(sdir / "exit_code"),
        exec_at=_mtime(sdir / "agent.pid"),
        kill=jsonio.read_dict(sdir / "kill.json"),
        stall=jsonio.read_dict(sdir / "stall.json"),
        burn=jsonio.read_dict(sdir / "burn.json"),
        spawn_error=_text(sdir / "spawn_error"),
        stderr_tail=_tail(sdir / "stderr.log"),
        marks=read_marks(sdir / "timeline.jsonl"),
        events_mtime=_mtime(sdir / "events.jsonl"),
        canceled=(sdir / "cancel").exists(),
        verify_exit=_exit_code(sdir / "verify_exit"),
        verify_began=_mtime(sdir / "verify.pid"),
        verify_ended=_mtime(sdir / "verify_exit"),
        verify_tail=_tail(sdir / "verify.log", VERIFY_TAIL_BYTES),
    )
