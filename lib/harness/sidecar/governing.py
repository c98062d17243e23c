"""The sidecar's part in the governor (lib/harness/pipeline/governor.py): what its live
sessions saw (requests answered, requests refused 429/529, rate-limit warnings) is
added up between reports; every REPORT_S it goes to the shared record, where the
target is decided. A session whose rate-limit event reaches STOP_AT_UTILIZATION
pauses claiming at once, not only when it ends."""

from __future__ import annotations

from typing import Any

from harness.pipeline import governor
from harness.sidecar.model import Options, Tracked, log
from harness.store import Store
from harness.store.base import host_name

REPORT_S = 1.0  # at most this often (and at least once per GOVERNOR_STEP_S / 2)


class Feed:
    def __init__(self, opts: Options, store: Store) -> None:
        self.o, self.store = opts, store
        self.on = opts.policy.JOBS_MAX > 0
        self.host = host_name()
        self.seen = governor.Seen()
        self.counted: dict[str, tuple[int, int]] = {}  # session -> (answered, refused) already added
        self.warned: dict[str, int] = {}  # session -> how many of its warnings were added
        self.paused: set[str] = set()  # sessions whose utilization paused claiming already
        self.last_report = float("-inf")
        self.error = ""

    def collect(self, t: Tracked, now_wall: float) -> None:
        """The session's counts since the last call (after its new lines were read)."""
        f = t.live.facts
        if self.on:
            ok, refused = len(f.messages), sum(f.api_retries.get(s, 0) for s in governor.THROTTLED)
            if t.sid not in self.counted and t.live.replay_upto > 0:
                self.counted[t.sid] = (ok, refused)  # a restarted sidecar reads the stream again: counted before
                self.warned[t.sid] = f.warnings
            was_ok, was_refused = self.counted.get(t.sid, (0, 0))
            self.seen.ok += max(0, ok - was_ok)
            self.seen.throttled += max(0, refused - was_refused)
            self.counted[t.sid] = (ok, refused)
            if f.warning is not None and f.warnings > self.warned.get(t.sid, 0):
                self.warned[t.sid] = f.warnings  # every warning (the CLI sends one per change of status)
                self.seen.warning = (f.warning[0] if f.warning[0] is not None else 0.0, f.warning[1])
        if f.utilization is not None and self.o.policy.STOP_AT_UTILIZATION > 0 and t.sid not in self.paused:
            self._stop_at(t, now_wall)

    def _stop_at(self, t: Tracked, now_wall: float) -> None:
        used = t.live.facts.utilization
        if self._guard(lambda: governor.stop_at_utilization(self.store, self.o.policy, used, now_wall, t.sid)):
            self.paused.add(t.sid)
            log(f"{t.sid}: the usage window is {used[0]:.0%} used (STOP_AT_UTILIZATION): claiming paused" if used
                else f"{t.sid}: claiming paused (STOP_AT_UTILIZATION)")

    def forget(self, sid: str) -> None:
        self.counted.pop(sid, None)
        self.warned.pop(sid, None)
        self.paused.discard(sid)

    def tick(self, now_wall: float, now_mono: float) -> None:
        every = min(REPORT_S, self.o.policy.GOVERNOR_STEP_S / 2)
        if not self.on or now_mono - self.last_report < every:
            return
        self.last_report = now_mono
        seen, self.seen = self.seen, governor.Seen()
        change = self._guard(lambda: governor.step(self.store, self.host, seen, self.o.policy, now_wall))
        if self.error:  # not reported: kept for the next report
            self.seen.ok += seen.ok
            self.seen.throttled += seen.throttled
            self.seen.warning = self.seen.warning or seen.warning
        if isinstance(change, dict):
            log(f"governor: {change['why']}")

    def _guard(self, call: Any) -> Any:
        """A store that is down must not stop the sidecar; it says so, once per error."""
        try:
            result = call()
        except Exception as exc:  # a store down, a database error, a record it cannot read: said, not fatal
            if str(exc) != self.error:
                log(f"governor: cannot reach the store: {exc}")
            self.error = str(exc)
            return None
        self.error = ""
        return result
