"""A session's transcript for the browser: what `watch` shows, as server-sent events.

`text` events carry the rendered text (a JSON string) as the session writes it;
once the session has ended, `receipt` carries its receipt (null when the loop has
written none within watch.RECEIPT_WAIT_S) and `end` closes the stream. Each
connection starts from the session's first line. The file is read and rendered on a
worker thread, CHUNK_BYTES at a time, so that a session of hundreds of megabytes
never holds the server's event loop; a quiet stream gets a keep-alive comment.
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.concurrency import run_in_threadpool

from harness import jsonio
from harness.report import sessions, watch
from harness.report.style import Style
from harness.serve import feed
from harness.stream.tailer import Tailer

POLL_S = 0.1
CHUNK_BYTES = 256 * 1024


def sse(kind: str, data: Any) -> bytes:
    return b"event: %s\ndata: %s\n\n" % (kind.encode(), jsonio.dumps(data))


class Follower:
    """One session's file, read and rendered a chunk at a time (on a worker thread)."""

    def __init__(self, s: sessions.Session) -> None:
        self.s = s
        self.buf = io.StringIO()
        self.renderer = watch.Renderer(self.buf, Style(self.buf, enabled=False, safe=True), raw=False)
        self.tailer = Tailer(s.file("events.jsonl"))

    def step(self) -> tuple[str, bool, bool]:
        """(the text rendered since the last step, whether lines came, whether it has ended)."""
        lines = self.tailer.read(CHUNK_BYTES)
        ended = not lines and watch.ended(self.s)
        for line in lines + (self.tailer.flush() if ended else []):
            self.renderer.line(line)
        self.renderer.verify(self.s, ended=ended)
        text = self.buf.getvalue()
        self.buf.seek(0)
        self.buf.truncate()
        return text, bool(lines), ended

    def close(self) -> None:
        self.tailer.close()


async def follow(s: sessions.Session, stopping: Callable[[], bool]) -> AsyncIterator[bytes]:
    f = Follower(s)
    quiet = time.monotonic()  # since the last line: a quiet stream gets a keep-alive comment
    try:
        yield b"retry: 2000\n\n"
        while not stopping():
            text, got, ended = await run_in_threadpool(f.step)
            if text:
                yield sse("text", text)
            if ended:
                yield sse("receipt", await _receipt(s, stopping))
                yield sse("end", None)
                return
            if got:
                quiet = time.monotonic()
                continue
            if time.monotonic() - quiet > feed.KEEPALIVE_S:
                quiet = time.monotonic()
                yield feed.KEEPALIVE
            await asyncio.sleep(POLL_S)
    finally:
        f.close()


async def _receipt(s: sessions.Session, stopping: Callable[[], bool]) -> dict[str, Any] | None:
    deadline = time.monotonic() + watch.RECEIPT_WAIT_S
    while not s.file("metrics.json").exists() and time.monotonic() < deadline and not stopping():
        await asyncio.sleep(POLL_S)  # the loop writes it soon after the end; no event says when
    return s.metrics()
