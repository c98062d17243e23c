"""The sidecar's timeline.jsonl, read back: when it saw each turn, tool call and
result (the stream itself carries no times for tool calls). The receipt's tool
times and the reports' timeline come from it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson


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
