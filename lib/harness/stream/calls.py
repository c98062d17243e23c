"""The one walker of tool calls and their results, over normalized events.

The facts (counts by tool, errors), the sidecar (calls outstanding and how long
each may stay silent), and the `tools` and `errors` reports all read a session's
calls through ToolCalls.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from harness.stream.events import ToolEnd, ToolStart

SUMMARY_KEYS = ("command", "file_path", "path", "pattern", "url", "description", "prompt")
MAX_SUMMARY_CHARS = 120


def tool_summary(tool_input: Any) -> str:
    """A one-line description of a tool call's input: its command, path, pattern..."""
    if not isinstance(tool_input, dict):
        return ""
    for key in SUMMARY_KEYS:
        value = tool_input.get(key)
        if isinstance(value, str) and value:
            first = value.strip().splitlines()[0] if value.strip() else ""
            return first if len(first) <= MAX_SUMMARY_CHARS else first[: MAX_SUMMARY_CHARS - 1] + "…"
    return ""


def timeout_s(name: str, tool_input: Any) -> float | None:
    """The timeout a call names for itself (a Bash call's `timeout`, in ms), in seconds."""
    if name == "Bash" and isinstance(tool_input, dict):
        ms = tool_input.get("timeout")
        if isinstance(ms, (int, float)) and not isinstance(ms, bool) and ms > 0:
            return float(ms) / 1000
    return None


@dataclass
class Call:
    n: int  # 1 for the session's first call
    tool_id: str
    name: str
    summary: str
    timeout_s: float | None = None
    started_at: float | None = None  # wall time, when the walker was told
    is_error: bool | None = None  # None: no result yet
    text: str = ""  # the result's body
    ended: bool = False  # a result came, or the session's result line closed the call
    seconds: float | None = None  # how long it took, when a report knows (the sidecar's timeline)
    allowance_s: float = 0.0  # how long it may stay silent, when the sidecar follows it


class ToolCalls:
    def __init__(self, keep: bool = True) -> None:
        self.keep = keep  # keep ended calls (reports); the live side keeps open ones only
        self.open: dict[str, Call] = {}
        self.done: list[Call] = []
        self.ended: dict[str, Call] = {}  # ended calls by id, when kept
        self.names: dict[str, str] = {}  # every call's tool name by id, kept or not
        self.started = 0

    def start(self, ev: ToolStart, at: float | None = None) -> Call:
        self.started += 1
        call = Call(self.started, ev.tool_id, ev.name, tool_summary(ev.input), timeout_s(ev.name, ev.input), at)
        self.open[ev.tool_id] = call
        self.names[ev.tool_id] = ev.name
        return call

    def end(self, ev: ToolEnd) -> Call | None:
        """The call this result ends (a second result for it: the last one stands);
        None when its start was not seen or not kept."""
        call = self.open.pop(ev.tool_id, None)
        if call is None:
            call = self.ended.get(ev.tool_id)
            if call is None:
                return None
        elif self.keep:
            self.done.append(call)
            self.ended[ev.tool_id] = call
        call.is_error, call.text, call.ended = ev.is_error, ev.text, True
        return call

    def name_of(self, tool_id: str) -> str:
        """The tool a call id named, "?" when its start was not seen."""
        return self.names.get(tool_id, "?")

    def close_all(self) -> None:
        """The session's result line: no call is outstanding any more."""
        for call in self.open.values():
            call.ended = True
            if self.keep:
                self.done.append(call)
                self.ended[call.tool_id] = call
        self.open.clear()

    def feed(self, ev: object, at: float | None = None) -> Call | None:
        if isinstance(ev, ToolStart):
            return self.start(ev, at)
        if isinstance(ev, ToolEnd):
            return self.end(ev)
        return None

    def all(self) -> Iterator[Call]:
        """Every call seen, in the order they started."""
        yield from sorted([*self.done, *self.open.values()], key=lambda c: c.n)
