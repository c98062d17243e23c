"""The sidecar's records: its options, one tracked session, and the small helpers
every part of it uses."""

from __future__ import annotations

import fcntl
import os
import stat
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import jsonio
from harness.pipeline.policy import Policy
from harness.sidecar.live import LiveSession
from harness.stream.tailer import Tailer

LOCK_WAIT_S = 5.0


@dataclass
class Options:
    state_dir: Path
    stall_s: float = 300.0
    tool_s: float = 660.0
    heartbeat_s: float = 2.0
    poll_s: float = 0.05
    loop_pid: int = 0
    loop_start: str = ""
    policy: Policy = field(default_factory=Policy)
    metrics_textfile: Path | None = None  # rewritten with the Prometheus metrics every metrics_s
    metrics_s: float = 15.0


@dataclass
class Tracked:
    sid: str
    item_id: str
    dir: Path
    live: LiveSession
    tailer: Tailer
    started_mono: float
    watched: bool = False
    busy: int = 0
    quiet: int = 0
    hb_mono: float = 0.0
    hb_turns: int = -1
    ended: bool = False
    storm: bool = False  # an api_retry storm was reported to the breaker
    stopping: str | None = None  # kill.json's reason once the session is being stopped


def proc_start(pid: int) -> str | None:
    """The process's start time in clock ticks (field 22 of /proc/PID/stat)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[19].decode()
    except (OSError, IndexError):
        return None


def wake_loop(state_dir: Path) -> None:
    """A byte into state/loop.wake, so that the loop acts at once rather than at its
    next poll. Best effort by design: without a loop holding the FIFO open there is
    nobody to wake (ENXIO), and the loop's poll finds the stop anyway."""
    fifo = state_dir / "loop.wake"
    try:
        if not stat.S_ISFIFO(os.stat(fifo).st_mode):
            return
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.write(fd, b"x")
    except OSError:
        pass  # a full FIFO: the loop has bytes waiting already
    finally:
        os.close(fd)


def _num(value: Any, default: float) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0 else default


def audit(state_dir: Path, event: str, **fields: Any) -> None:
    try:
        jsonio.audit(state_dir, event, **fields)
    except OSError as exc:
        log(f"audit: cannot append {event}: {exc}")


def log(message: str) -> None:
    print(f"{jsonio.utc_now_iso()} sidecar: {message}", file=sys.stderr, flush=True)


def lock(state_dir: Path) -> int | None:
    """flock on state/sidecar.lock, waiting a little for a sidecar that is on its way out."""
    fd = os.open(state_dir / "sidecar.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    deadline = time.monotonic() + LOCK_WAIT_S
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            return fd
        except BlockingIOError:
            if time.monotonic() > deadline:
                os.close(fd)
                return None
            time.sleep(0.05)


