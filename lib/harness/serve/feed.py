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
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

QUEUE_MAX = 1000
POLL_S = 0.05  # how often the tailer looks for new lines
BEATS_S = 0.25  # how often it looks at the live sessions' heartbeats
LIVE_S = 1.0  # how long the list of live sessions (a store query) is used before it is asked again
KEEPALIVE_S = 15.0  # a comment line on a quiet stream, so that no proxy times it out
KEEPALIVE = b": keep-alive\n\n"
BATCH_MAX = 256  # events sent to a client in one write at most


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
        parsed = int(ino), int(off)
    except ValueError:
        return None
    return parsed if parsed[1] >= 0 else None


class Feed:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.clients: set[Client] = set()
        self.dropped = 0
        self.fd: int | None = None  # the log being followed, kept open: a rotation never loses its end
        self.ino, self.pos = 0, 0
        self._open(at_end=True)
        self.task: asyncio.Task[None] | None = None
        self.stopping: Callable[[], bool] = lambda: False  # the server's "should exit"
        self.live: Callable[[], Iterable[str]] | None = None  # the live sessions' ids (the store's leases)
        self.beat_mtimes: dict[str, float] = {}
        self.beats_at = 0.0  # time.monotonic() of the last look at the heartbeats
        self.live_ids: tuple[float, list[str]] = (0.0, [])  # (when asked, the live sessions)
        self.error = ""  # the tailer's last error, said once on stderr
        self.last_line_at = 0.0  # time.monotonic() of the newest line read: what a cached snapshot must be newer than

    def _open(self, at_end: bool = False) -> None:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return
        if self.fd is not None:
            os.close(self.fd)
        self.fd = fd
        st = os.fstat(fd)
        self.ino, self.pos = st.st_ino, st.st_size if at_end else 0

    async def start(self) -> None:
        self.task = asyncio.create_task(self._tail())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def position(self) -> tuple[int, int] | None:
        """The log's inode and how far the tailer has read it: what a new client's
        `since` may name to get every later line and none twice."""
        return (self.ino, self.pos) if self.fd is not None else None

    @property
    def healthy(self) -> bool:
        return self.task is None or not self.task.done()

    async def _tail(self) -> None:
        while not self.stopping():
            self._look()
            await asyncio.sleep(POLL_S)
        self._look()  # what came in the last poll interval, then every stream ends, cleanly
        for client in list(self.clients):
            with contextlib.suppress(asyncio.QueueFull):
                client.queue.put_nowait(None)

    def _look(self) -> None:
        """One look at the log and the heartbeats; an error is said once and the feed goes on."""
        try:
            self.poll()
            self.beats()
        except Exception as exc:  # the feed outlives a bad look; it says why, once
            if str(exc) != self.error:
                print(f"harness: feed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
            self.error = str(exc)
        else:
            self.error = ""

    def poll(self) -> None:
        """New whole lines since the last look, to every client; a log rotated away is
        read to its end first, then the new one from its start."""
        if self.fd is None:
            self._open()
            if self.fd is None:
                return
        self._send_new()
        try:
            ino = os.stat(self.path).st_ino
        except FileNotFoundError:
            return
        if ino != self.ino:
            self._open()
            self._send_new()
        elif os.fstat(self.fd).st_size < self.pos:  # truncated in place: from its start
            self.pos = 0
            self._send_new()

    def _send_new(self) -> None:
        assert self.fd is not None
        size = os.fstat(self.fd).st_size
        if size <= self.pos:
            return
        data = os.pread(self.fd, size - self.pos, self.pos)
        whole = data[: data.rfind(b"\n") + 1]  # a line being written: read next time
        end = self.pos
        for line in whole.split(b"\n")[:-1]:
            end += len(line) + 1
            self.broadcast(event(self.ino, end, line))
        if end != self.pos:
            self.last_line_at = time.monotonic()
        self.pos = end

    def beats(self) -> None:
        """Each live session's heartbeat.json, as it is rewritten: `event: heartbeat`,
        without an id (a heartbeat is a state, not history: a reconnect gets the next)."""
        now = time.monotonic()
        if not self.clients or self.live is None or now - self.beats_at < BEATS_S:
            return
        self.beats_at = now
        if now - self.live_ids[0] >= LIVE_S:
            self.live_ids = (now, list(self.live()))
        seen: dict[str, float] = {}
        for sid in self.live_ids[1]:
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
        """The events after Last-Event-ID up to where the tailer is now (of the log it
        follows; a client of a log rotated away since gets all of the new one)."""
        if since is None or self.fd is None:
            return []
        ino, off = since
        if ino != self.ino:
            off = 0
        if not 0 <= off < self.pos:
            return []
        data = os.pread(self.fd, self.pos - off, off)
        out, end = [], off
        for line in data.split(b"\n")[:-1]:
            end += len(line) + 1
            out.append(event(self.ino, end, line))
        return out

    async def stream(self, last_id: str | None) -> AsyncIterator[bytes]:
        """A client's events: the backlog, then live ones until it goes or is dropped."""
        client = Client(task=asyncio.current_task())
        try:
            # the backlog up to where the tailer is, then the client joins: no await in
            # between, so what the tailer reads next is in its queue, and nothing twice
            backlog = self.backlog(parse_last_id(last_id))
            self.clients.add(client)
            yield b"retry: 1000\n\n"
            for ev in backlog:
                yield ev
            while True:
                try:
                    live = await asyncio.wait_for(client.queue.get(), KEEPALIVE_S)
                except TimeoutError:
                    yield KEEPALIVE
                    continue
                if live is None:
                    return
                yield self._with_queued(client, live)
        finally:
            self.clients.discard(client)

    @staticmethod
    def _with_queued(client: Client, first: bytes) -> bytes:
        """The event, and every one queued behind it, as one write: a burst (the
        heartbeats of every live session at once, say) costs the server one send per
        client, not one per event. An end of stream (None) is put back for the next get."""
        chunks = [first]
        while len(chunks) < BATCH_MAX and not client.queue.empty():
            ev = client.queue.get_nowait()
            if ev is None:
                client.queue.put_nowait(None)
                break
            chunks.append(ev)
        return b"".join(chunks)
