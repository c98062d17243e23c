"""What the sidecar knows about one live session: phase, progress and liveness.

Fed line by line as the session's events.jsonl grows. Text and tool-input deltas,
by far the most frequent lines, are recognised by their first bytes and only
counted: they prove the session alive and carry nothing else the heartbeat needs.
Every other line is parsed and added to the session's facts.

Liveness (docs/verdicts.md, "stalled"): a session is alive while lines arrive. A
session silent for longer than its stall limit outside a tool call, or longer than
the outstanding tool's allowance inside one, is stalled.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from harness.stream.facts import SessionFacts, estimate_cost_usd, feed
from harness.stream.jsonl import obj, parse_line

DELTA_PREFIX = b'{"type":"stream_event","event":{"type":"content_block_delta"'
PHASES = ("starting", "requesting", "streaming", "in_tool", "idle", "exited")


@dataclass
class Limits:
    stall_s: float
    tool_s: float


@dataclass
class ToolCall:
    tool_id: str
    name: str
    started_wall: float
    allowance_s: float
    summary: str


@dataclass
class Mark:
    """One line of timeline.jsonl: when the sidecar saw an event of note."""

    n: int
    t: float
    kind: str
    ref: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"n": self.n, "t": round(self.t, 3), "kind": self.kind}
        if self.ref:
            out["ref"] = self.ref
        out.update(self.extra)
        return out


def read_marks(path: Path) -> list[dict[str, Any]]:
    """The marks in a timeline.jsonl; unreadable lines are skipped."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    marks = []
    for raw in data.splitlines():
        try:
            mark = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        if isinstance(mark, dict):
            marks.append(mark)
    return marks


def tool_starts(marks: list[dict[str, Any]]) -> dict[str, tuple[str, float]]:
    """tool id -> (tool name, when its tool_use was seen)."""
    return {
        str(m.get("ref") or ""): (str(m.get("name") or "?"), float(m["t"]))
        for m in marks
        if m.get("kind") == "tool_use" and isinstance(m.get("t"), (int, float))
    }


def tool_durations(marks: list[dict[str, Any]]) -> dict[str, tuple[str, float]]:
    """tool id -> (tool name, seconds from its tool_use to its tool_result)."""
    started = tool_starts(marks)
    done: dict[str, tuple[str, float]] = {}
    for mark in marks:
        t, ref = mark.get("t"), str(mark.get("ref") or "")
        if mark.get("kind") == "tool_result" and isinstance(t, (int, float)) and ref in started:
            name, t0 = started.pop(ref)
            done[ref] = (name, round(max(0.0, float(t) - t0), 3))
    return done


def tool_summary(name: str, tool_input: Any) -> str:
    """A one-line description of a tool call's input."""
    if not isinstance(tool_input, dict):
        return ""
    for key in ("command", "file_path", "path", "pattern", "url", "description", "prompt"):
        value = tool_input.get(key)
        if isinstance(value, str) and value:
            first = value.strip().splitlines()[0] if value.strip() else ""
            return first if len(first) <= 120 else first[:119] + "…"
    return ""


def tool_allowance_s(name: str, tool_input: Any, limits: Limits) -> float:
    """How long a tool call may stay silent: a Bash call's own timeout (plus the
    stall limit for the CLI to report back) when it names one, else the tool limit."""
    if name == "Bash" and isinstance(tool_input, dict):
        timeout_ms = tool_input.get("timeout")
        if isinstance(timeout_ms, (int, float)) and not isinstance(timeout_ms, bool) and timeout_ms > 0:
            return float(timeout_ms) / 1000 + limits.stall_s
    return limits.tool_s


class LiveSession:
    def __init__(self, session_id: str, limits: Limits, replay_upto: int = 0) -> None:
        self.session_id = session_id
        self.limits = limits
        self.facts = SessionFacts()
        self.phase = "starting"
        self.last_event_wall = 0.0
        self.last_event_mono = 0.0
        self.last_event_type = ""
        self.tools: dict[str, ToolCall] = {}
        self.marks: list[Mark] = []
        self.replay_upto = replay_upto  # lines at or below this index are already in timeline.jsonl
        self.turn_changed = False
        self.retry_run = 0  # system/api_retry lines since the API last answered
        self.retry_status = ""

    # --- feeding ---------------------------------------------------------

    def feed_line(self, line: bytes, wall: float, mono: float) -> None:
        self.last_event_wall, self.last_event_mono = wall, mono
        if line.startswith(DELTA_PREFIX):
            self.facts.events += 1
            self.facts.stats.lines += 1
            self.phase = "streaming"
            self.last_event_type = "stream_event/content_block_delta"
            return
        self.facts.stats.lines += 1
        ev = parse_line(line)
        if ev is None:
            self.facts.stats.malformed += 1
            self.facts.events += 1
            return
        turns_before = len(self.facts.messages)
        feed(self.facts, ev)
        self._after(ev, wall, mono)
        if len(self.facts.messages) != turns_before:
            self.turn_changed = True

    def _mark(self, wall: float, kind: str, ref: str = "", **extra: Any) -> None:
        n = self.facts.events
        if n > self.replay_upto:
            self.marks.append(Mark(n, wall, kind, ref, extra))

    def _after(self, ev: dict[str, Any], wall: float, mono: float) -> None:
        etype = str(ev.get("type") or "")
        sub = ev.get("subtype")
        if etype == "stream_event":
            inner = obj(ev.get("event"))
            itype = str(inner.get("type") or "")
            self.last_event_type = f"stream_event/{itype}"
            if itype == "message_start":
                self.retry_run = 0
                msg = obj(inner.get("message"))
                self._mark(wall, "turn", str(msg.get("id") or ""))
                self.phase = "streaming"
            elif itype == "message_stop":
                self.phase = "in_tool" if self.tools else "idle"
            else:
                self.phase = "streaming"
            return
        self.last_event_type = f"{etype}/{sub}" if sub else etype
        if etype == "system":
            if sub == "init":
                self._mark(wall, "init")
                self.phase = "requesting"
            elif sub in ("status", "api_retry"):
                if sub == "api_retry":
                    self.retry_status = str(ev.get("error_status") or "connection")
                    self.retry_run += 1
                    self._mark(wall, "api_retry", self.retry_status)
                if not self.tools:
                    self.phase = "requesting"
        elif etype == "assistant":
            self.retry_run = 0
            self._on_assistant(ev, wall)
        elif etype == "user":
            self._on_user(ev, wall)
        elif etype == "result":
            self._mark(wall, "result", str(sub or ""))
            self.tools.clear()
            self.phase = "idle"

    def _on_assistant(self, ev: dict[str, Any], wall: float) -> None:
        msg = ev.get("message")
        if not isinstance(msg, dict):
            return
        for block in msg.get("content") or []:
            if isinstance(block, dict) and block.get("type") == "tool_use":
                tid = str(block.get("id") or "")
                name = str(block.get("name") or "?")
                tin = block.get("input")
                self.tools[tid] = ToolCall(tid, name, wall, tool_allowance_s(name, tin, self.limits), tool_summary(name, tin))
                self._mark(wall, "tool_use", tid, name=name)
        if self.tools and self.phase != "streaming":
            self.phase = "in_tool"

    def _on_user(self, ev: dict[str, Any], wall: float) -> None:
        msg = ev.get("message")
        content = msg.get("content") if isinstance(msg, dict) else None
        if not isinstance(content, list):
            return
        for block in content:
            if isinstance(block, dict) and block.get("type") == "tool_result":
                tid = str(block.get("tool_use_id") or "")
                call = self.tools.pop(tid, None)
                self._mark(wall, "tool_result", tid, is_error=bool(block.get("is_error")),
                           name=call.name if call else "?")
        self.phase = "in_tool" if self.tools else "requesting"

    # --- reading ---------------------------------------------------------

    def silence(self, now_mono: float, started_mono: float) -> tuple[float, float, str]:
        """(seconds silent, the limit that applies, "tool" or "stream")."""
        since = self.last_event_mono or started_mono
        silent = max(0.0, now_mono - since)
        if self.tools:
            return silent, max(t.allowance_s for t in self.tools.values()), "tool"
        return silent, self.limits.stall_s, "stream"

    def tokens(self) -> dict[str, int]:
        t = {"input": 0, "output": 0, "cache_read": 0, "cache_write": 0}
        for mu in self.facts.messages.values():
            t["input"] += mu.input_tokens
            t["output"] += mu.output_tokens
            t["cache_read"] += mu.cache_read
            t["cache_write"] += mu.cache_write
        return t

    def outstanding(self, now_wall: float) -> list[dict[str, Any]]:
        return [
            {"id": c.tool_id, "name": c.name, "input": c.summary, "running_s": round(now_wall - c.started_wall, 1),
             "allowance_s": c.allowance_s}
            for c in self.tools.values()
        ]

    def heartbeat(self, now_wall: float, now_mono: float, started_mono: float, extra: dict[str, Any]) -> dict[str, Any]:
        silent, limit, kind = self.silence(now_mono, started_mono)
        f = self.facts
        model = str((f.init or {}).get("model") or "")
        hb: dict[str, Any] = {
            "session_id": self.session_id,
            "written_at": round(now_wall, 3),
            "phase": self.phase,
            "last_event_at": round(self.last_event_wall, 3) if self.last_event_wall else None,
            "last_event_type": self.last_event_type or None,
            "silent_s": round(silent, 1),
            "stall_limit_s": limit,
            "limit_kind": kind,
            "events": f.events,
            "malformed": f.stats.malformed,
            "turns": len(f.messages),
            "tool_calls": sum(f.tool_calls.values()),
            "tool_errors": sum(f.tool_errors.values()),
            "tokens": self.tokens(),
            "cost_usd_so_far": self.cost_so_far(model),
            "api_retries": sum(f.api_retries.values()),
            "outstanding_tool": next(iter(self.outstanding(now_wall)), None),
            "model": model or None,
        }
        hb.update(extra)
        return hb

    def cost_so_far(self, model: str) -> float:
        reported = (self.facts.result or {}).get("total_cost_usd")
        if isinstance(reported, (int, float)):
            return round(float(reported), 6)
        return estimate_cost_usd(self.facts.messages, model)

    def take_marks(self) -> list[Mark]:
        marks, self.marks = self.marks, []
        return marks
