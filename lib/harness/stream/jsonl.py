"""Reading a JSON-lines file (an agent's stream): one JSON object per line.

Nothing here raises on bad input: malformed lines, a partial last line, NUL bytes
and invalid UTF-8 are counted and skipped.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, cast

import orjson

READ_CHUNK_BYTES = 1 << 20


@dataclass
class LineStats:
    lines: int = 0
    malformed: int = 0
    partial_tail: bool = False


def parse_line(line: bytes) -> dict[str, Any] | None:
    """The event on this line, or None when it is not a JSON object."""
    try:
        obj = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    return obj if isinstance(obj, dict) else None


def iter_lines(fh: BinaryIO, stats: LineStats, include_partial: bool = True) -> Iterator[bytes]:
    """Complete lines; the unterminated tail too when include_partial (a finished file)."""
    rest = b""
    while True:
        chunk = fh.read(READ_CHUNK_BYTES)
        if not chunk:
            break
        buf = rest + chunk if rest else chunk
        start = 0
        while True:
            nl = buf.find(b"\n", start)
            if nl < 0:
                break
            if nl > start:
                yield buf[start:nl]
            start = nl + 1
        rest = buf[start:]
    if rest.strip():
        stats.partial_tail = True
        if include_partial:
            yield rest


GZ = ".gz"  # a finished session's file that retention compressed (loopctl.sh gc)


def open_stream(path: Path) -> BinaryIO:
    """The file to read, or its compressed copy (path + .gz) when retention has
    compressed it: read the same way. FileNotFoundError when neither exists."""
    try:
        return open(path, "rb")
    except FileNotFoundError:
        gz = path.with_name(path.name + GZ)
        if not gz.exists():
            raise
        return cast(BinaryIO, gzip.open(gz, "rb"))


def iter_events(path: Path, stats: LineStats | None = None) -> Iterator[dict[str, Any]]:
    stats = stats if stats is not None else LineStats()
    try:
        fh = open_stream(path)
    except FileNotFoundError:
        return
    with fh:
        for line in iter_lines(fh, stats):
            if not line.strip():
                continue
            stats.lines += 1
            event = parse_line(line)
            if event is None:
                stats.malformed += 1
                continue
            yield event


def obj(value: Any) -> dict[str, Any]:
    """value when it is a JSON object, else an empty one."""
    return value if isinstance(value, dict) else {}
