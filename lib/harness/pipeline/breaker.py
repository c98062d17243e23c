"""The circuit breaker, persisted in state/circuit.json.

    closed     sessions are spawned. Every finished session is an outcome: a
               failure when the API itself failed (api_error, auth_error,
               spawn_failed, a crash before the stream's init line, a stall while
               waiting on the API), a success when the API answered, neutral
               otherwise. It opens after CIRCUIT_FAILURES failures in a row, or when
               the last CIRCUIT_WINDOW outcomes (a full window) hold a failure rate
               of CIRCUIT_FAILURE_RATE or more. auth_error opens it at once.
    open       nothing is spawned until open_until. The open time starts at
               CIRCUIT_OPEN_S and doubles each time a probe fails, up to
               CIRCUIT_OPEN_CAP_S.
    half_open  after open_until: exactly one probe session may start. Its success
               closes the breaker; its failure opens it again for twice as long;
               a neutral end (interrupted, usage limit) lets another probe go.

A live storm of system/api_retry lines (CIRCUIT_STORM_RETRIES in a row without an
answer) counts as that session's failure before it ends; the sidecar reports it.
Each session counts once: its final outcome replaces the storm's.

Every change holds state/circuit.lock; the loop's claim, its finalize and the
sidecar all write through here. Times are epoch seconds passed in by the caller,
so tests drive the clock.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from harness.pipeline import verdicts
from harness.pipeline.policy import Policy
from harness.store import open_store

API_WAIT_PHASES = ("starting", "requesting")
STALE_PROBE_S = 60.0


def outcome(verdict: str, started: bool, stall_phase: str | None = None) -> str:
    """failure, success or neutral, as the breaker counts a session: the verdict
    table's outcome (verdicts.py); an unknown verdict raises verdicts.UnknownVerdictError."""
    return str(verdicts.outcome(verdict, started, stall_phase, API_WAIT_PHASES))


def fresh(policy: Policy) -> dict[str, Any]:
    return {
        "state": "closed",
        "reason": None,
        "auth": False,
        "fix": None,
        "opened_at": None,
        "open_until": None,
        "open_s": policy.CIRCUIT_OPEN_S,
        "opens": 0,
        "consecutive_failures": 0,
        "window": [],
        "probe": None,
        "updated_at": None,
    }


class Breaker:
    def __init__(self, state_dir: Path, policy: Policy) -> None:
        self.state_dir = state_dir
        self.store = open_store(state_dir)
        self.policy = policy
        self.events: list[tuple[str, dict[str, Any]]] = []  # audit lines, written after the change

    # --- storage: the store's breaker record ---------------------------------

    @contextmanager
    def changing(self) -> Iterator[dict[str, Any]]:
        """The breaker's record, changed under the store's lock; the audit lines of
        the change are written after it is saved."""
        with self.store.breaker(fresh(self.policy)) as c:
            unreadable = c.pop("_unreadable", None)
            if unreadable:
                self.events.append(("circuit.reset", {"reason": unreadable}))
            yield c
        for event, fields_ in self.events:
            try:
                self.store.audit(event, **fields_)
            except OSError as exc:  # the record is written; say so where a person looks
                print(f"harness: audit: cannot append {event}: {exc}", file=sys.stderr)
        self.events.clear()

    def read(self) -> dict[str, Any]:
        """The record as it stands (for status), without changing it."""
        with self.store.breaker(fresh(self.policy)) as c:
            c.pop("_unreadable", None)
            return dict(c)

    # --- transitions -----------------------------------------------------

    def _open(self, c: dict[str, Any], now: float, reason: str, open_s: float, auth: bool = False, fix: str = "",
              credentials: bool = False) -> None:
        """auth: a person must act (the loop halts); fix says what they do."""
        c.update(state="open", reason=reason, auth=auth, fix=fix or None, opened_at=round(now, 3), open_s=open_s,
                 open_until=round(now + open_s, 3), probe=None, opens=int(c.get("opens") or 0) + 1)
        self.events.append(("circuit.opened", {"reason": reason, "open_s": open_s, "open_until": c["open_until"],
                                               "credentials": credentials}))

    def _close(self, c: dict[str, Any], reason: str) -> None:
        c.update(state="closed", reason=None, auth=False, fix=None, opened_at=None, open_until=None,
                 open_s=self.policy.CIRCUIT_OPEN_S, probe=None, consecutive_failures=0, window=[])
        self.events.append(("circuit.closed", {"reason": reason}))

    def _settle(self, c: dict[str, Any], now: float) -> None:
        """open -> half_open once open_until has passed."""
        if c["state"] == "open" and now >= float(c.get("open_until") or 0):
            c["state"] = "half_open"
            c["probe"] = None
            self.events.append(("circuit.half_open", {"reason": c.get("reason")}))

    def _probe_stale(self, c: dict[str, Any], now: float) -> bool:
        probe = c.get("probe")
        if not isinstance(probe, dict):
            return True
        sid = probe.get("session")
        if now - float(probe.get("at") or 0) < STALE_PROBE_S:
            return False
        return sid not in self.store.live()

    def allow(self, session: str, now: float) -> tuple[bool, dict[str, Any]]:
        """May session start now? In half_open, the first asker becomes the probe."""
        with self.changing() as c:
            self._settle(c, now)
            if c["state"] == "closed":
                return True, c
            if c["state"] == "open":
                return False, c
            if c.get("probe") and not self._probe_stale(c, now):
                return c["probe"].get("session") == session, c
            c["probe"] = {"session": session, "at": round(now, 3)}
            self.events.append(("circuit.probe", {"session": session}))
            return True, c

    def release(self, session: str) -> None:
        """A probe that never started (nothing was ready) frees its place."""
        with self.changing() as c:
            if isinstance(c.get("probe"), dict) and c["probe"].get("session") == session:
                c["probe"] = None

    def record(self, session: str, result: str, verdict: str, reason: str, now: float) -> dict[str, Any]:
        """A session's final outcome (failure, success or neutral)."""
        with self.changing() as c:
            self._settle(c, now)
            counted = next((w for w in c["window"] if w.get("session") == session), None)
            is_probe = isinstance(c.get("probe"), dict) and c["probe"].get("session") == session
            row = verdicts.TABLE.get(verdict)  # the result was counted by outcome(); here a label
            if row is not None and row.opens_breaker:
                if c["state"] != "open" or not c.get("auth"):
                    grown = c["state"] == "half_open" and is_probe
                    self._open(c, now, reason, self._next_open_s(c, grown), auth=True, fix=row.fix,
                               credentials=verdict == "auth_error")
                self._note(c, session, "failure", verdict, now, counted)
                return c
            if c["state"] == "half_open" and is_probe:
                if result == "success":
                    self._close(c, f"probe {session} succeeded ({verdict})")
                elif result == "failure":
                    self._open(c, now, f"probe failed: {verdict}: {reason}", self._next_open_s(c, True))
                else:
                    c["probe"] = None
                    self.events.append(("circuit.probe_released", {"session": session, "verdict": verdict}))
                return c
            self._note(c, session, result, verdict, now, counted)
            if c["state"] == "closed":
                self._trip(c, now, f"{verdict}: {reason}")
            return c

    def storm(self, session: str, retries: int, status: str, now: float) -> dict[str, Any]:
        """A live session retried the API CIRCUIT_STORM_RETRIES times in a row."""
        with self.changing() as c:
            self._settle(c, now)
            if any(w.get("session") == session for w in c["window"]):
                return c
            self._note(c, session, "failure", "api_retry_storm", now, None)
            self.events.append(("circuit.storm", {"session": session, "retries": retries, "status": status}))
            if c["state"] == "closed":
                self._trip(c, now, f"{retries} API retries in a row in {session} (last status {status})")
            return c

    def reset(self, reason: str) -> dict[str, Any]:
        with self.changing() as c:
            self._close(c, reason)
            return c

    def force_open(self, reason: str, now: float) -> dict[str, Any]:
        with self.changing() as c:
            self._open(c, now, reason, max(float(c.get("open_s") or 0), self.policy.CIRCUIT_OPEN_S))
            return c

    def status(self, now: float) -> dict[str, Any]:
        c = self.read()
        self.events.clear()
        if c["state"] == "open" and now >= float(c.get("open_until") or 0):
            c["state"] = "half_open"
        return c

    # --- helpers ---------------------------------------------------------

    def _next_open_s(self, c: dict[str, Any], grow: bool) -> float:
        if not grow:
            return self.policy.CIRCUIT_OPEN_S
        return min(self.policy.CIRCUIT_OPEN_CAP_S, max(float(c.get("open_s") or 0), self.policy.CIRCUIT_OPEN_S) * 2)

    def _note(self, c: dict[str, Any], session: str, result: str, verdict: str, now: float,
              counted: dict[str, Any] | None) -> None:
        if result == "neutral":
            return
        if counted is not None:  # a storm counted it already: the final outcome replaces it
            was = counted.get("result")
            counted.update(result=result, verdict=verdict, at=round(now, 3))
            if was == "failure" and result == "success":
                c["consecutive_failures"] = 0
            return
        c["window"].append({"session": session, "result": result, "verdict": verdict, "at": round(now, 3)})
        c["window"] = c["window"][-max(1, self.policy.CIRCUIT_WINDOW):]
        c["consecutive_failures"] = int(c.get("consecutive_failures") or 0) + 1 if result == "failure" else 0

    def _trip(self, c: dict[str, Any], now: float, last: str) -> None:
        p = self.policy
        run = int(c.get("consecutive_failures") or 0)
        if p.CIRCUIT_FAILURES > 0 and run >= p.CIRCUIT_FAILURES:
            self._open(c, now, f"{run} API-level failures in a row (last: {last})", self._next_open_s(c, False))
            return
        window = c["window"]
        if p.CIRCUIT_WINDOW > 0 and len(window) >= p.CIRCUIT_WINDOW:
            failures = sum(1 for w in window if w.get("result") == "failure")
            rate = failures / len(window)
            if rate >= p.CIRCUIT_FAILURE_RATE:
                self._open(c, now, f"{failures} of the last {len(window)} sessions failed at the API (last: {last})",
                           self._next_open_s(c, False))


def describe(c: dict[str, Any], now: float) -> str:
    """One line for a person."""
    state = c.get("state")
    if state == "closed":
        return "closed"
    if state == "open":
        left = max(0.0, float(c.get("open_until") or 0) - now)
        if c.get("auth"):
            fix = c.get("fix") or "the credentials are wrong: fix them"
            return f"open for {left:.0f}s more: {c.get('reason')}; {fix}, then run scripts/loopctl.sh circuit close"
        return f"open for {left:.0f}s more: {c.get('reason')}"
    probe = c.get("probe") or {}
    return f"half-open: probe {probe.get('session')} running" if probe else "half-open: the next session is a probe"
