"""Two halves of one job at once: this process does one, a forked child the other.

A child shares the parent's memory (an mmap'd file, a list of paths) without
copying it, does its half, writes the result's bytes to a pipe and leaves without
running any cleanup (os._exit). The parent does its own half meanwhile, then reads
the child's. A fork that fails, or a child that fails, costs nothing but time: its
half is done here. The readers of big files use it (stream/fastscan.py,
report/usage.py); only where there is more than one core and no other thread (a
fork copies only the calling thread).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def default_workers() -> int:
    return 2 if (os.cpu_count() or 1) > 1 and threading.active_count() == 1 else 1


def _child(work: Callable[[], bytes]) -> tuple[int, int]:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: work, write, leave without running any cleanup
        code = 0
        try:
            os.close(r)
            view = memoryview(work())
            while view:
                view = view[os.write(w, view):]
        except BaseException:
            code = 1
        finally:
            os._exit(code)
    os.close(w)
    return pid, r


def _collect(pid: int, r: int) -> bytes | None:
    chunks: list[bytes] = []
    with os.fdopen(r, "rb") as fh:
        while chunk := fh.read(1 << 20):
            chunks.append(chunk)
    _, status = os.waitpid(pid, 0)
    return b"".join(chunks) if status == 0 else None


def both(here: Callable[[], T], there: Callable[[], T], encode: Callable[[T], bytes],
         decode: Callable[[bytes], T]) -> tuple[T, T]:
    """(here(), there()), there() run by a forked child when it can be."""
    try:
        pid, r = _child(lambda: encode(there()))
    except OSError:
        return here(), there()
    try:
        first = here()
    finally:
        data = _collect(pid, r)  # reaped even when here() failed
    return first, (decode(data) if data is not None else there())
