"""The sidecar: one per loop. Follows every live session, writes heartbeats, stops stalls.

Live sessions are the leases in state/queue/running/. For each, events.jsonl is
followed by (inode, offset); a session whose stream is quiet is woken by inotify
(watchdog), one that streams fast is read on a short poll instead, so that a flood
of writes costs one read per poll rather than one wake-up per write. Everything
the sidecar holds is rebuilt from state/ when it starts: the event files are read
again from their start, and timeline.jsonl says which marks are already written.

A stalled session is found here and stopped by the loop: the sidecar writes the
evidence (stall.json) and the stop's record (kill.json, by "sidecar"), then wakes
the loop, which sends the signals in steps as it does for every stop (SIGINT to
the agent's process group, SIGTERM after KILL_GRACE_S, SIGKILL after another):
one stop state machine, in lib/session.sh.
"""

from __future__ import annotations

import fcntl
import logging
import os
import resource
import signal
import stat
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import jsonio, stops
from .circuit import Breaker
from .follow import Waker
from .live import Limits, LiveSession, read_marks
from .policy import Policy
from .store import open_store
from .tailer import Tailer

BUSY_ROUNDS = 3  # reads with new data in a row before a session is polled instead of watched
QUIET_ROUNDS = 20  # empty polls in a row before it is watched again
IDLE_WAIT_S = 1.0
LOCK_WAIT_S = 5.0
EXIT_BUSY = 3


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


class Sidecar:
    def __init__(self, opts: Options) -> None:
        self.o = opts
        self.sessions: dict[str, Tracked] = {}
        self.waker = Waker()
        self.stop_requested = False
        self.rounds = 0
        self.lines = 0
        self.hb_mono = 0.0
        self.started_wall = time.time()
        self.store = open_store(opts.state_dir)  # its live() rereads a lease only when it changed
        self.done: set[str] = set()  # ended, but the loop has not finalized them yet
        self.unspawned = 0  # leases whose session has no meta.json yet

    # --- discovery -------------------------------------------------------

    def leases(self) -> dict[str, tuple[str, dict[str, Any]]]:
        """session id -> (item id, item) for every live (leased) item: the store's answer."""
        return self.store.live()

    def discover(self) -> None:
        leases = self.leases()
        self.done &= set(leases)
        self.unspawned = 0
        for sid, (item_id, item) in leases.items():
            if sid in self.sessions or sid in self.done:
                continue
            sdir = self.o.state_dir / "sessions" / sid
            if not sid.startswith("ses_") or "/" in sid:
                continue
            if not (sdir / "meta.json").exists():
                self.unspawned += 1  # not spawned yet; looked for again at the next poll
                continue
            self.track(sid, item_id, item, sdir)
        for sid, t in list(self.sessions.items()):
            if sid not in leases and not t.ended:
                self.finish(t, "the item left running/")

    def track(self, sid: str, item_id: str, item: dict[str, Any], sdir: Path) -> None:
        limits = Limits(
            stall_s=_num(item.get("stall_timeout_s"), self.o.stall_s), tool_s=_num(item.get("tool_timeout_s"), self.o.tool_s)
        )
        try:
            meta = jsonio.read_json(sdir / "meta.json")
        except (OSError, ValueError):
            meta = {}
        now_wall, now_mono = time.time(), time.monotonic()
        started = meta.get("started_epoch") if isinstance(meta, dict) else None
        started_mono = now_mono - max(0.0, now_wall - started) if isinstance(started, (int, float)) else now_mono
        marks = read_marks(sdir / "timeline.jsonl")  # what an earlier sidecar already wrote
        live = LiveSession(sid, limits, replay_upto=max((m["n"] for m in marks if isinstance(m.get("n"), int)), default=0))
        t = Tracked(sid, item_id, sdir, live, Tailer(sdir / "events.jsonl"), started_mono)
        self.sessions[sid] = t
        self.replay(t)
        t.watched = self.waker.watch(sid, str(sdir), ("events.jsonl", "exit_code"))
        self.pump(t)  # what arrived before the watch existed
        log(f"following {sid} ({item_id}); stall limit {limits.stall_s:g}s, tool limit {limits.tool_s:g}s, "
            f"{'inotify' if t.watched else 'polling'}")

    def replay(self, t: Tracked) -> None:
        """Reads what the file already holds; its last line's time is the file's mtime."""
        try:
            mtime = os.stat(t.tailer.path).st_mtime
        except FileNotFoundError:
            return
        now_wall, now_mono = time.time(), time.monotonic()
        mono = now_mono - max(0.0, now_wall - mtime)
        while True:
            lines = t.tailer.read()
            if not lines:
                break
            for line in lines:
                t.live.feed_line(line, mtime, mono)
        for mark in t.live.marks:
            mark.extra["approx"] = True  # seen late: the time is the file's last write

    # --- each round ------------------------------------------------------

    def pump(self, t: Tracked) -> int:
        n = 0
        while True:
            lines = t.tailer.read()
            if not lines:
                break
            wall, mono = time.time(), time.monotonic()
            for line in lines:
                t.live.feed_line(line, wall, mono)
            n += len(lines)
        self.lines += n
        self.write_marks(t)
        return n

    def write_marks(self, t: Tracked) -> None:
        marks = t.live.take_marks()
        if marks:
            data = b"".join(jsonio.dumps(m.as_dict()) + b"\n" for m in marks)
            try:
                fd = os.open(t.dir / "timeline.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
                with os.fdopen(fd, "ab") as fh:
                    fh.write(data)
            except OSError as exc:
                log(f"{t.sid}: cannot append to timeline.jsonl: {exc}")

    def adapt(self, t: Tracked, got: int) -> None:
        """Busy sessions are polled; quiet ones are watched (when inotify works)."""
        if got:
            t.busy, t.quiet = t.busy + 1, 0
            if t.watched and t.busy >= BUSY_ROUNDS:
                self.waker.unwatch(t.sid)
                t.watched = False
        else:
            t.busy, t.quiet = 0, t.quiet + 1
            if not t.watched and t.quiet >= QUIET_ROUNDS and self.waker.mode == "inotify":
                t.watched = self.waker.watch(t.sid, str(t.dir), ("events.jsonl", "exit_code"))
                if t.watched:
                    self.pump(t)

    def heartbeat(self, t: Tracked, now_wall: float, now_mono: float, force: bool = False) -> None:
        turns = len(t.live.facts.messages)
        if not force and turns == t.hb_turns and now_mono - t.hb_mono < self.o.heartbeat_s:
            return
        extra = {
            "item_id": t.item_id,
            "follow": "inotify" if t.watched else "polling",
            "stopping": t.stopping,
        }
        hb = t.live.heartbeat(now_wall, now_mono, t.started_mono, extra)
        try:
            jsonio.write_atomic(t.dir / "heartbeat.json", jsonio.dumps(hb) + b"\n", durable=False)
        except OSError as exc:
            log(f"{t.sid}: cannot write heartbeat.json: {exc}")
        t.hb_mono, t.hb_turns = now_mono, turns

    def check_storm(self, t: Tracked, now_wall: float) -> None:
        """API retries in a row inside one live session count for the breaker before it ends."""
        limit = self.o.policy.CIRCUIT_STORM_RETRIES
        if t.storm or limit <= 0 or t.live.retry_run < limit:
            return
        t.storm = True
        try:
            c = Breaker(self.o.state_dir, self.o.policy).storm(t.sid, t.live.retry_run, t.live.retry_status, now_wall)
        except OSError as exc:
            log(f"{t.sid}: cannot record an API retry storm in circuit.json: {exc}")
            return
        log(f"{t.sid}: {t.live.retry_run} API retries in a row (status {t.live.retry_status}); circuit {c.get('state')}")

    def check_stall(self, t: Tracked, now_wall: float, now_mono: float) -> None:
        if t.stopping is not None:
            return
        if (t.dir / "kill.json").exists():
            t.stopping = str((stops.read(t.dir) or {}).get("reason") or "?")
            return
        silent, limit, kind = t.live.silence(now_mono, t.started_mono)
        if silent <= limit:
            return
        evidence = {
            "session_id": t.sid,
            "item_id": t.item_id,
            "detected_at": jsonio.utc_now_iso(),
            "silent_s": round(silent, 3),
            "limit_s": limit,
            "limit_kind": kind,
            "phase": t.live.phase,
            "last_event_at": round(t.live.last_event_wall, 3) if t.live.last_event_wall else None,
            "last_event_type": t.live.last_event_type or None,
            "events": t.live.facts.events,
            "turns": len(t.live.facts.messages),
            "outstanding_tools": t.live.outstanding(now_wall),
        }
        what = f"outstanding {kind} call" if kind == "tool" else "stream"
        detail = f"no output for {silent:.1f}s (limit {limit:g}s, {what}; phase {t.live.phase})"
        jsonio.write_json(t.dir / "stall.json", evidence)
        first = stops.record(t.dir, "stalled", detail, "sidecar", now_wall)
        t.stopping = "stalled" if first is None else str(first.get("reason") or "?")
        if first is not None:
            return  # the loop stopped it first (timeout, cancel, shutdown)
        audit(self.o.state_dir, "session.stalled", session=t.sid, item=t.item_id, detail=detail)
        log(f"{t.sid}: stalled: {detail}; the loop stops it")
        wake_loop(self.o.state_dir)


    def finish(self, t: Tracked, why: str) -> None:
        self.pump(t)
        wall = time.time()
        for line in t.tailer.flush():
            t.live.feed_line(line, wall, time.monotonic())
        self.write_marks(t)  # the unterminated last line's, if it has any
        t.live.phase = "exited"
        t.ended = True
        self.heartbeat(t, wall, time.monotonic(), force=True)
        self.waker.unwatch(t.sid)
        t.tailer.close()
        del self.sessions[t.sid]
        self.done.add(t.sid)
        log(f"{t.sid}: ended ({why}); {t.live.facts.events} events")

    def settle(self) -> None:
        """On a stop: a session whose agent has exited gets its last lines read and its final heartbeat.

        The loop finalizes a session as soon as its wrapper ends and may stop the sidecar
        (--once, --drain) before the sidecar's next round has seen exit_code.
        """
        for t in list(self.sessions.values()):
            if (t.dir / "exit_code").exists():
                self.finish(t, "exit_code written; sidecar stopping")

    def round(self) -> None:
        self.rounds += 1
        dirty = self.waker.take_dirty()
        self.discover()
        now_wall, now_mono = time.time(), time.monotonic()
        for t in list(self.sessions.values()):
            if t.watched and t.sid not in dirty and (now_mono - t.hb_mono) < self.o.heartbeat_s:
                got = 0
            else:
                got = self.pump(t)
                self.adapt(t, got)
            if (t.dir / "exit_code").exists():
                self.finish(t, "exit_code written")
                continue
            now_wall, now_mono = time.time(), time.monotonic()
            self.check_storm(t, now_wall)
            self.check_stall(t, now_wall, now_mono)
            self.heartbeat(t, now_wall, now_mono)
        if now_mono - self.hb_mono >= self.o.heartbeat_s:
            self.own_heartbeat(now_wall)
            self.hb_mono = now_mono

    def own_heartbeat(self, now_wall: float) -> None:
        ru = resource.getrusage(resource.RUSAGE_SELF)
        hb = {
            "pid": os.getpid(),
            "written_at": round(now_wall, 3),
            "started_at": round(self.started_wall, 3),
            "mode": self.waker.mode,
            "mode_error": self.waker.error or None,
            "sessions": sorted(self.sessions),
            "polled": sorted(s for s, t in self.sessions.items() if not t.watched),
            "rounds": self.rounds,
            "lines": self.lines,
            "cpu_s": round(ru.ru_utime + ru.ru_stime, 3),
            "max_rss_kb": ru.ru_maxrss,
            "loop_pid": self.o.loop_pid or None,
        }
        try:
            jsonio.write_atomic(self.o.state_dir / "sidecar.heartbeat.json", jsonio.dumps(hb) + b"\n", durable=False)
        except OSError as exc:
            log(f"cannot write sidecar.heartbeat.json: {exc}")

    def next_wait_s(self) -> float:
        if self.unspawned or any(not t.watched for t in self.sessions.values()):
            return self.o.poll_s
        if not self.sessions:
            return IDLE_WAIT_S
        now = time.monotonic()
        soonest = IDLE_WAIT_S
        for t in self.sessions.values():
            silent, limit, _ = t.live.silence(now, t.started_mono)
            soonest = min(soonest, max(0.0, limit - silent) + 0.01, self.o.heartbeat_s)
        return max(self.o.poll_s, soonest)

    def loop_alive(self) -> bool:
        if not self.o.loop_pid:
            return True
        start = proc_start(self.o.loop_pid)
        return start is not None and (not self.o.loop_start or start == self.o.loop_start)

    def run(self) -> int:
        log(f"sidecar {os.getpid()} started for {self.o.state_dir} ({self.waker.mode}"
            f"{'; ' + self.waker.error if self.waker.error else ''})")
        self.waker.watch("@running", str(self.o.state_dir / "queue" / "running"))
        try:
            while not self.stop_requested:
                self.round()
                if not self.loop_alive():
                    log(f"loop {self.o.loop_pid} is gone; the next loop starts its own sidecar")
                    break
                self.waker.wait(self.next_wait_s())
                if self.waker.mode == "inotify" and not self.stop_requested:
                    # a burst of wake-ups is read in one go: at most one round per poll interval
                    time.sleep(self.o.poll_s)
            if self.stop_requested:
                self.settle()
        finally:
            for t in list(self.sessions.values()):
                t.tailer.close()
            self.waker.close()
            log("sidecar stopped")
        return 0




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


def main(opts: Options) -> int:
    # watchdog reports harmless races between unschedule() and its emitter threads
    logging.getLogger("watchdog.observers.inotify").setLevel(logging.CRITICAL)
    fd = lock(opts.state_dir)
    if fd is None:
        print(f"harness: another sidecar holds {opts.state_dir}/sidecar.lock", file=sys.stderr)
        return EXIT_BUSY
    car = Sidecar(opts)

    def stop(_sig: int, _frame: Any) -> None:
        car.stop_requested = True
        car.waker.poke("@stop")

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        return car.run()
    finally:
        os.close(fd)
