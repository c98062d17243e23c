"""Following a growing file by (inode, offset), line by line.

A writer appends; the reader never blocks it. A new inode at the path means the
file was rotated: what is left in the old file is read to its end first, then the
new file from its start. A size below the offset means the file was truncated:
reading starts again at 0 and the partial line held so far is dropped. A path
that is gone while path + ".gz" exists is a finished session's file that
retention compressed: it is read from the compressed copy, start to end. Lines
are bytes; nothing here parses them.
"""

from __future__ import annotations

import contextlib
import gzip
import os
from dataclasses import dataclass

READ_CHUNK_BYTES = 4 << 20
# A "line" longer than this without a newline is dropped (and counted) rather than
# held in memory without bound.
MAX_LINE_BYTES = 64 << 20


@dataclass
class TailStats:
    lines: int = 0
    bytes_read: int = 0
    truncations: int = 0
    rotations: int = 0
    oversized: int = 0


class Tailer:
    """Yields complete new lines of one file each time read() is called."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self.stats = TailStats()
        self._fd: int | None = None
        self._inode: tuple[int, int] | None = None
        self._offset = 0
        self._partial = b""
        self._gz: gzip.GzipFile | None = None

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
        self._fd = None
        if self._gz is not None:
            self._gz.close()
        self._gz = None

    def _open(self) -> bool:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            if not os.path.exists(self.path + ".gz"):
                return False
            self._gz = gzip.open(self.path + ".gz", "rb")  # noqa: SIM115 - closed by close()
            return True
        st = os.fstat(fd)
        self._fd, self._inode, self._offset, self._partial = fd, (st.st_dev, st.st_ino), 0, b""
        return True

    def _path_inode(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            return None
        return (st.st_dev, st.st_ino)

    def read(self, max_bytes: int = READ_CHUNK_BYTES) -> list[bytes]:
        """Complete lines appended since the last call (at most about max_bytes of them)."""
        if self._fd is None and self._gz is None and not self._open():
            return []
        if self._gz is not None:  # a compressed finished file: no writer, read through
            data = self._gz.read(max_bytes)
            self.stats.bytes_read += len(data)
            return self._split(data)
        lines = self._drain(max_bytes)
        current = self._path_inode()
        if current is not None and current != self._inode and len(lines) == 0:
            # Rotated, and the old file is read to its end: on to the new one. Its
            # unterminated tail, if any, is a line of its own.
            if self._partial.strip():
                lines.append(self._partial)
                self.stats.lines += 1
            self.close()
            self.stats.rotations += 1
            if self._open():
                lines.extend(self._drain(max_bytes))
        return lines

    def _drain(self, max_bytes: int) -> list[bytes]:
        assert self._fd is not None
        size = os.fstat(self._fd).st_size
        if size < self._offset:
            self.stats.truncations += 1
            self._offset, self._partial = 0, b""
        want = min(size - self._offset, max_bytes)
        if want <= 0:
            return []
        data = os.pread(self._fd, want, self._offset)
        self._offset += len(data)
        self.stats.bytes_read += len(data)
        return self._split(data)

    def _split(self, data: bytes) -> list[bytes]:
        last_nl = data.rfind(b"\n")
        if last_nl < 0:
            self._partial += data
            if len(self._partial) > MAX_LINE_BYTES:
                self.stats.oversized += 1
                self._partial = b""
            return []
        head = self._partial + data[: last_nl + 1] if self._partial else data[: last_nl + 1]
        self._partial = data[last_nl + 1 :]
        lines = [ln for ln in head.split(b"\n") if ln]
        self.stats.lines += len(lines)
        return lines

    def flush(self) -> list[bytes]:
        """The unterminated last line, for a file whose writer has finished."""
        tail, self._partial = self._partial, b""
        if tail.strip():
            self.stats.lines += 1
            return [tail]
        return []
