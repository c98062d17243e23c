"""/events: the audit log as server-sent events, live, resumable with Last-Event-ID,
and each live session's heartbeat as it is rewritten.

One tailer per server follows state/events.jsonl (every writer appends whole lines
to it) and hands each new line to every connected client's queue without waiting:
a queue is bounded (QUEUE_MAX events), and a client whose queue is full (it reads
too slowly, or not at all) is dropped and counted, never waited for. So no client,
however slow, delays the loop, the sidecar, the tailer or another client.

An event's id is `<inode>:<offset>`, where offset is the byte just past its line. A
client that reconnects with `Last-Event-ID` gets every line after that offset from
the file first (or the whole file when the log was rotated since: another inode),
then the live ones; it misses none and sees none twice. A new client without it
starts at the end of the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

QUEUE_MAX = 1000
POLL_S = 0.05  # how often the tailer looks for new lines


@dataclass(eq=False)
class Client:
    queue: asyncio.Queue[bytes | None] = field(default_factory=lambda: asyncio.Queue(QUEUE_MAX))
    task: asyncio.Task[None] | None = None
    dropped: bool = False


def event(ino: int, end: int, line: bytes) -> bytes:
    """One server-sent event: its id, its type and the audit line (JSON, one line)."""
    return b"id: %d:%d\nevent: audit\ndata: %s\n\n" % (ino, end, line)


def parse_last_id(text: str | None) -> tuple[int, int] | None:
    try:
        ino, _, off = (text or "").partition(":")
        return int(ino), int(off)
    except ValueError:
        return None


class Feed:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.clients: set[Client] = set()
        self.dropped = 0
        self.ino, self.pos = self._stat()
        self.task: asyncio.Task[None] | None = None
        self.stopping: Callable[[], bool] = lambda: False  # the server's "should exit"
        self.live: Callable[[], Iterable[str]] | None = None  # the live sessions' ids (the store's leases)
        self.beat_mtimes: dict[str, float] = {}

    def _stat(self) -> tuple[int, int]:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return 0, 0
        return st.st_ino, st.st_size

    async def start(self) -> None:
        self.task = asyncio.create_task(self._tail())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task

    async def _tail(self) -> None:
        while not self.stopping():
            self.poll()
            self.beats()
            await asyncio.sleep(POLL_S)
        for client in list(self.clients):  # the server stops: every stream ends, cleanly
            with contextlib.suppress(asyncio.QueueFull):
                client.queue.put_nowait(None)

    def poll(self) -> None:
        """New whole lines since the last look, to every client."""
        ino, size = self._stat()
        if ino != self.ino or size < self.pos:  # rotated or truncated: the new file from its start
            self.ino, self.pos = ino, 0
        if size <= self.pos:
            return
        try:
            with open(self.path, "rb") as fh:
                fh.seek(self.pos)
                data = fh.read(size - self.pos)
        except FileNotFoundError:
            return
        start = self.pos
        for line in data.splitlines(keepends=True):
            if not line.endswith(b"\n"):
                break  # a line being written: read next time
            start += len(line)
            self.broadcast(event(self.ino, start, line.rstrip(b"\n")))
        self.pos = start

    def beats(self) -> None:
        """Each live session's heartbeat.json, as it is rewritten: `event: heartbeat`,
        without an id (a heartbeat is a state, not history: a reconnect gets the next)."""
        if not self.clients or self.live is None:
            return
        seen: dict[str, float] = {}
        for sid in self.live():
            path = self.path.parent / "sessions" / sid / "heartbeat.json"
            try:
                mtime = os.stat(path).st_mtime
                if self.beat_mtimes.get(sid) != mtime:
                    line = path.read_bytes().strip()
                    if line and b"\n" not in line:
                        self.broadcast(b"event: heartbeat\ndata: %s\n\n" % line)
            except OSError:
                continue
            seen[sid] = mtime
        self.beat_mtimes = seen

    def broadcast(self, ev: bytes) -> None:
        for client in list(self.clients):
            try:
                client.queue.put_nowait(ev)
            except asyncio.QueueFull:
                self.drop(client)

    def drop(self, client: Client) -> None:
        """A client that fell behind: gone, its stream ended, never waited for."""
        self.clients.discard(client)
        client.dropped = True
        self.dropped += 1
        print(f"harness: feed: dropped a client {QUEUE_MAX} events behind (harness_feed_dropped_clients_total "
              f"{self.dropped})", file=sys.stderr, flush=True)
        if client.task is not None:
            client.task.cancel()

    def backlog(self, since: tuple[int, int] | None) -> list[bytes]:
        """The events after Last-Event-ID up to where the tailer is now."""
        if since is None or self.ino == 0:
            return []
        ino, off = since
        if ino != self.ino:
            off = 0  # the log was rotated since: all of the new one
        if off >= self.pos:
            return []
        with open(self.path, "rb") as fh:
            fh.seek(off)
            data = fh.read(self.pos - off)
        out, end = [], off
        for line in data.splitlines(keepends=True):
            end += len(line)
            out.append(event(self.ino, end, line.rstrip(b"\n")))
        return out

    async def stream(self, last_id: str | None) -> AsyncIterator[bytes]:
        """A client's events: the backlog, then live ones until it goes or is dropped."""
        client = Client(task=asyncio.current_task())
        self.clients.add(client)  # first: nothing the tailer reads from now on is missed
        backlog = self.backlog(parse_last_id(last_id))  # up to where the tailer is: no await in between
        try:
            yield b"retry: 1000\n\n"
            for ev in backlog:
                yield ev
            while True:
                live = await client.queue.get()
                if live is None:
                    return
                yield live
        finally:
            self.clients.discard(client)
