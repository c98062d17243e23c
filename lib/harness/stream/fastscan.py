"""Reading a large events.jsonl without parsing its deltas.

In a session streamed with --include-partial-messages nearly every line is a
stream_event text or tool-input delta, and a receipt needs none of them. The CLI
writes compact JSON with "type" as the first key, so the lines that matter are
found by one regular-expression pass over the mapped file: every line that is not
a stream_event, plus stream_event message_start (each turn's id) and, for a session
without a result line, message_delta (streamed usage).
Only those are parsed. On a machine with more than one core the file is split in
two and the second half is scanned by a forked child at the same time (forked.py).

Used for files of FAST_MIN_BYTES and more whose first line is compact JSON;
anything else is read line by line (jsonl.iter_events).
"""

from __future__ import annotations

import mmap
import os
import re
from pathlib import Path
from typing import Any

import orjson

from harness import forked

FAST_MIN_BYTES = 32 << 20
COMPACT_PREFIX = b'{"type":"'
# every line that is not a stream_event, and message_start (one per turn: a turn's id
# even when its assistant lines are text, which the scan skips but the last of)
WANTED_RE = re.compile(rb'\n\{"type":"(?:[^s]|sy|stream_event","event":\{"type":"message_start)')
# with the stream_event lines that carry usage, for a session that has no result line
WANTED_USAGE_RE = re.compile(rb'\n\{"type":"(?:[^s]|sy|stream_event","event":\{"type":"message_(?:start|delta))')
MAX_PATTERN_BYTES = 64
KEEP_TEXT_CHARS = 4000


def usable(path: Path) -> bool:
    try:
        if path.stat().st_size < FAST_MIN_BYTES:
            return False
        with open(path, "rb") as fh:
            return fh.read(len(COMPACT_PREFIX)) == COMPACT_PREFIX
    except OSError:
        return False


def _slim(ev: dict[str, Any]) -> dict[str, Any]:
    """What the facts need of a big line: ids, names, usage, error flags and text."""
    etype = ev.get("type")
    msg = ev.get("message")
    if not isinstance(msg, dict) or not isinstance(msg.get("content"), list):
        return ev
    if etype == "user":
        blocks = [{k: b.get(k) for k in ("type", "tool_use_id", "is_error")} for b in msg["content"] if isinstance(b, dict)]
        return {"type": "user", "message": {"role": "user", "content": blocks}}
    if etype == "assistant":
        blocks = []
        for b in msg["content"]:
            if not isinstance(b, dict):
                continue
            if b.get("type") == "tool_use":
                blocks.append({"type": "tool_use", "id": b.get("id"), "name": b.get("name")})
            elif b.get("type") == "text":
                text = str(b.get("text") or "")
                blocks.append({"type": "text", "text": text[-KEEP_TEXT_CHARS:]})
        slim = {k: msg.get(k) for k in ("id", "model", "usage")}
        slim["content"] = blocks
        return {"type": "assistant", "message": slim, "parent_tool_use_id": ev.get("parent_tool_use_id")}
    return ev


def _parse(mm: mmap.mmap, start: int, end: int) -> dict[str, Any] | None:
    try:
        ev = orjson.loads(mm[start:end])
    except orjson.JSONDecodeError:
        return None
    return _slim(ev) if isinstance(ev, dict) else {}


def _scan(mm: mmap.mmap, lo: int, hi: int, size: int, pattern: re.Pattern[bytes]) -> tuple[list[dict[str, Any]], int]:
    """Events of the wanted lines whose newline lies in [lo, hi); and how many of them were malformed.

    Without streamed usage (a result line holds the totals), an assistant line with
    no tool_use in it is text or thinking: only the last such line is parsed."""
    out: list[dict[str, Any]] = []
    bad = 0
    skip_text = pattern is WANTED_RE
    last_text: tuple[int, int] | None = None
    spans: list[tuple[int, int]] = []
    if lo == 0:
        end = mm.find(b"\n")
        spans.append((0, end if end >= 0 else size))
    for m in pattern.finditer(mm, lo, min(size, hi + MAX_PATTERN_BYTES)):
        nl = m.start()
        if nl >= hi:
            break
        end = mm.find(b"\n", nl + 1)
        end = end if end >= 0 else size
        if skip_text and mm[nl + 10 : nl + 11] == b"a" and mm.find(b'"type":"tool_use"', nl, end) < 0:
            last_text = (nl + 1, end)
            continue
        spans.append((nl + 1, end))
    if last_text is not None:
        spans.append(last_text)  # out of order, which only the last text cares about
    for start, end in spans:
        ev = _parse(mm, start, end)
        if ev is None:
            bad += 1
        elif ev:
            out.append(ev)
    return out, bad


def _encode(got: tuple[list[dict[str, Any]], int]) -> bytes:
    return orjson.dumps({"events": got[0], "bad": got[1]})


def _decode(data: bytes) -> tuple[list[dict[str, Any]], int]:
    got = orjson.loads(data)
    return list(got["events"]), int(got["bad"])


def events(
    path: Path, workers: int | None = None, with_usage: bool = False
) -> tuple[list[dict[str, Any]], int, bool]:
    """(events of the wanted lines in file order, malformed wanted lines, unterminated tail).
    with_usage adds the stream_event lines that carry token usage."""
    pattern = WANTED_USAGE_RE if with_usage else WANTED_RE
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size == 0:
            return [], 0, False
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            partial = mm[size - 1 : size] != b"\n"
            if workers is None:
                workers = forked.default_workers()
            if workers < 2:
                evs, bad = _scan(mm, 0, size, size, pattern)
                return evs, bad, partial
            mid = size // 2
            first, second = forked.both(lambda: _scan(mm, 0, mid, size, pattern),
                                        lambda: _scan(mm, mid, size, size, pattern), _encode, _decode)
            return first[0] + second[0], first[1] + second[1], partial
