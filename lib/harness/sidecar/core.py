"""The sidecar: one per loop. Follows every live session, writes heartbeats, stops stalls.

Live sessions are the store's leases (Store.live; inotify on Store.live_changes). For each, events.jsonl is
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

import logging
import os
import resource
import signal
import sys
import time
from pathlib import Path
from typing import Any

from harness import jsonio
from harness.sidecar import checks
from harness.sidecar.governing import Feed
from harness.sidecar.model import Options, Tracked, lock, log, proc_start
from harness.store import open_store
from harness.stream.waker import Waker

BUSY_ROUNDS = 3  # reads with new data in a row before a session is polled instead of watched
QUIET_ROUNDS = 20  # empty polls in a row before it is watched again
IDLE_WAIT_S = 1.0
EXIT_BUSY = 3


class MetricsFile:
    """METRICS_TEXTFILE, rewritten every METRICS_INTERVAL_S (atomically) for
    node_exporter's textfile collector."""

    def __init__(self, state_dir: Path, path: Path, every_s: float) -> None:
        self.state_dir, self.path, self.every_s = state_dir, path, every_s
        self.last = float("-inf")
        self.error = ""

    def tick(self, now_mono: float) -> None:
        if now_mono - self.last < self.every_s:
            return
        self.last = now_mono
        from harness.serve.metrics import write_textfile

        try:
            write_textfile(self.state_dir, self.path)
        except Exception as exc:  # the metrics must never stop the sidecar; it says why, once
            if str(exc) != self.error:
                log(f"cannot write the metrics to {self.path}: {type(exc).__name__}: {exc}")
            self.error = str(exc)
        else:
            self.error = ""


def write_marks(t: Tracked) -> None:
    """The session's new marks (turns, tools, retries) appended to its timeline.jsonl."""
    marks = t.live.take_marks()
    if marks:
        data = b"".join(jsonio.dumps(m.as_dict()) + b"\n" for m in marks)
        try:
            fd = os.open(t.dir / "timeline.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "ab") as fh:
                fh.write(data)
        except OSError as exc:
            log(f"{t.sid}: cannot append to timeline.jsonl: {exc}")


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
        self.gov = Feed(opts, self.store)
        self.metrics = MetricsFile(opts.state_dir, opts.metrics_textfile, opts.metrics_s) \
            if opts.metrics_textfile is not None else None

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
        t = checks.tracked(self.o, sid, item_id, item, sdir)
        self.sessions[sid] = t
        t.watched = self.waker.watch(sid, str(sdir), ("events.jsonl", "exit_code", "verify.pid"))
        self.pump(t)  # what arrived before the watch existed
        log(f"following {sid} ({item_id}); stall limit {t.live.limits.stall_s:g}s, tool limit "
            f"{t.live.limits.tool_s:g}s, {'inotify' if t.watched else 'polling'}")

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
        self.gov.collect(t, time.time())  # after the replay too: what arrived before the sidecar looked
        self.lines += n
        write_marks(t)
        return n

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
                t.watched = self.waker.watch(t.sid, str(t.dir), ("events.jsonl", "exit_code", "verify.pid"))
                if t.watched:
                    self.pump(t)

    def finish(self, t: Tracked, why: str) -> None:
        self.pump(t)
        wall = time.time()
        for line in t.tailer.flush():
            t.live.feed_line(line, wall, time.monotonic())
        write_marks(t)  # the unterminated last line's, if it has any
        self.gov.collect(t, wall)
        self.gov.forget(t.sid)
        t.live.phase = "exited"
        t.ended = True
        checks.heartbeat(self.o, t, wall, time.monotonic(), force=True)
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
            checks.check_all(self.o, t, now_wall, now_mono)
        if now_mono - self.hb_mono >= self.o.heartbeat_s:
            self.own_heartbeat(now_wall)
            self.hb_mono = now_mono
        self.gov.tick(now_wall, now_mono)
        if self.metrics is not None:
            self.metrics.tick(now_mono)

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
        for n, path in enumerate(self.store.live_changes()):
            self.waker.watch(f"@live{n}", str(path))
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
