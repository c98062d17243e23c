"""The files backend: one JSON file per item under state/queue/<state>/, moved
between states by rename(2); the audit log state/events.jsonl; state/pause.json;
state/circuit.json under state/circuit.lock. A claim is one rename out of
pending/, so exactly one claimer wins; the lease is written into the running file.
"""

from __future__ import annotations

import fcntl
import os
import socket
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import jsonio
from harness.pipeline.policy import iso
from harness.store import attempts, queue
from harness.store.base import FencedError, Lease, SingleHost, UnknownItemError, UnreadableItemError
from harness.store.shared import FileShared


def _lease(item_id: str, item: dict[str, Any]) -> Lease:
    """The lease of a running item; session "" when none was recorded (a claim cut
    short between its rename and its write)."""
    lease = item.get("lease")
    lease = lease if isinstance(lease, dict) else {}
    token = lease.get("token")
    if not isinstance(token, int):  # a lease written before tokens (an earlier release)
        token = 0
    return Lease(item_id, str(lease.get("session_id") or ""), token, str(lease.get("worker") or ""), item)


class RunBudgetFile:
    """The files store's run budgets: state/run_budgets.json, rewritten whole."""

    state_dir: Path

    def audit(self, event: str, **fields: Any) -> None: ...

    def set_run_budget(self, run: str, usd: float) -> None:
        budgets = self.run_budgets()
        budgets[run] = usd
        jsonio.write_json(self.state_dir / "run_budgets.json", budgets)
        self.audit("run.budget", run=run, usd=usd)

    def run_budgets(self) -> dict[str, float]:
        try:
            data = jsonio.read_json(self.state_dir / "run_budgets.json")
        except FileNotFoundError:
            return {}
        return {str(k): float(v) for k, v in data.items()} if isinstance(data, dict) else {}


@dataclass
class FilesStore(SingleHost, attempts.ReceiptFiles, RunBudgetFile, FileShared):
    state_dir: Path
    # running/<file> -> (mtime, session id, item id, item): live() reads a file again
    # only when it changed (the sidecar asks many times a second)
    _live_cache: dict[str, tuple[float, str, str, dict[str, Any]]] = field(default_factory=dict)

    @property
    def q(self) -> queue.Queue:
        return queue.Queue(self.state_dir)

    def init(self) -> None:
        self.q.init()

    # --- items -----------------------------------------------------------

    def add(self, entries: list[tuple[str, Any]]) -> list[str]:
        return queue.add(self.q, entries)

    def get(self, item_id: str) -> tuple[str, dict[str, Any]]:
        try:
            state, path = self.q.find(item_id)
        except queue.QueueError as exc:
            raise UnknownItemError(str(exc)) from None
        return state, jsonio.read_json(path)

    def states(self) -> dict[str, str]:
        return self.q.all_states()

    def items(self, states: list[str]) -> list[dict[str, Any]]:
        return queue.list_items(self.q, states)

    def pending(self, now: float, aging_s: float = 0.0) -> list[queue.Candidate]:
        """Pending items in claim order (what a claim would try, first to last)."""
        return queue.candidates(self.q, now, aging_s)[0]

    def claim(self, session_id: str, worker: str, now: float, admit: Callable[[], bool] | None = None,
              aging_s: float = 0.0, skip_runs: frozenset[str] = frozenset()) -> Lease | None:
        item = queue.claim(self.q, session_id, worker, now, admit, aging_s, skip_runs)
        if item is None:
            return None
        return _lease(str(item["id"]), item)

    def lease_of(self, item_id: str) -> Lease | None:
        """The lease of a running item; None when it is not running."""
        path = self.q.path("running", item_id)
        try:
            item = jsonio.read_json(path)
        except FileNotFoundError:
            return None
        except ValueError:
            item = None
        if not isinstance(item, dict):
            raise UnreadableItemError(f"item {item_id}: {path} is not a JSON object")
        return _lease(item_id, item)

    def finish(self, lease: Lease, to_state: str, record: dict[str, Any], attempts: int,
               not_before: str | None, updates: dict[str, Any] | None = None) -> dict[str, Any]:
        current = self.lease_of(lease.item_id)
        if current is None or (current.session_id, current.token) != (lease.session_id, lease.token):
            held = f"held by {current.session_id} (token {current.token})" if current else "not running"
            raise FencedError(f"item {lease.item_id}: the lease of {lease.session_id} (token {lease.token}) is stale; "
                              f"the item is {held}")
        return queue.finish(self.q, lease.item_id, to_state, record, attempts, not_before, updates)

    def settle(self, item_id: str, from_state: str, to_state: str, record: dict[str, Any],
               updates: dict[str, Any] | None = None) -> dict[str, Any]:
        try:
            return queue.settle(self.q, item_id, from_state, to_state, record, updates)
        except queue.QueueError as exc:
            raise UnknownItemError(str(exc)) from None

    def cancel(self, item_id: str) -> str:
        self.get(item_id)  # an unknown id is UnknownItemError
        return queue.cancel(self.q, item_id)

    def retry(self, item_id: str) -> str:
        self.get(item_id)
        return queue.retry(self.q, item_id)

    # --- live sessions ---------------------------------------------------

    def live_changes(self) -> list[Path]:
        """queue/running/: a lease taken or given up is a file created or removed there."""
        return [self.q.dir("running")]

    def live(self) -> dict[str, tuple[str, dict[str, Any]]]:
        """session id -> (item id, item) for every leased (running) item."""
        out: dict[str, tuple[str, dict[str, Any]]] = {}
        seen: set[str] = set()
        try:
            entries = list(os.scandir(self.q.dir("running")))
        except FileNotFoundError:
            return out
        for entry in entries:
            if not entry.name.endswith(".json") or entry.name.startswith("."):
                continue
            seen.add(entry.name)
            try:
                mtime = entry.stat().st_mtime
            except FileNotFoundError:
                continue
            cached = self._live_cache.get(entry.name)
            if cached is None or cached[0] != mtime:
                try:
                    item = jsonio.read_json(entry.path)
                    sid = str((item.get("lease") or {}).get("session_id") or "")
                except (OSError, ValueError, AttributeError):
                    continue
                cached = (mtime, sid, str(item.get("id") or entry.name[:-5]), item)
                self._live_cache[entry.name] = cached
            if cached[1]:
                out[cached[1]] = (cached[2], cached[3])
        for name in set(self._live_cache) - seen:
            del self._live_cache[name]
        return out

    # --- audit, pause, breaker, hosts ------------------------------------

    def audit(self, event: str, **fields: Any) -> None:
        jsonio.audit(self.state_dir, event, **fields)

    def event_counts(self, names: list[str]) -> dict[str, int]:
        return dict(Counter(str(e["event"]) for e in self.events() if e.get("event") in names))

    def events(self) -> Iterator[dict[str, Any]]:
        """The audit log's events, oldest first; a torn last line is skipped."""
        path = self.state_dir / "events.jsonl"
        if not path.exists():
            return
        with open(path, "rb") as fh:
            for line in fh:
                try:
                    ev = jsonio.loads(line)
                except ValueError:
                    continue
                if isinstance(ev, dict):
                    yield ev

    def pause(self) -> dict[str, Any] | None:
        """state/pause.json; an unreadable one reads as a pause that has ended, said so."""
        try:
            data = jsonio.read_json(self.state_dir / "pause.json")
        except FileNotFoundError:
            return None
        except ValueError:
            return {"until_epoch": 0, "reason": "pause.json is unreadable", "unreadable": True}
        return data if isinstance(data, dict) else None

    def set_pause(self, until: float, reason: str, by: str, session: str | None = None) -> None:
        """Pauses spawning until then; a later pause already there is kept, unless an
        operator sets this one."""
        current = self.pause() or {}
        later = current.get("until_epoch")
        if isinstance(later, (int, float)) and later >= until and by != "operator":
            return
        when = iso(until)
        jsonio.write_json(self.state_dir / "pause.json", {
            "until_epoch": round(until, 3), "until": when, "reason": reason, "by": by, "session": session,
            "paused_at": jsonio.utc_now_iso(),
        })
        self.audit("loop.paused", until_epoch=round(until, 3), until=when, reason=reason, by=by, session=session)

    def clear_pause(self, by: str) -> bool:
        try:
            os.unlink(self.state_dir / "pause.json")
        except FileNotFoundError:
            return False
        self.audit("loop.resumed", by=by)
        return True

    @contextmanager
    def breaker(self, fresh: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """The breaker's record under state/circuit.lock: fresh updated with what
        circuit.json holds (fresh alone when it is missing or not a record; then
        "_unreadable" says why), written back if the caller changed it."""
        path = self.state_dir / "circuit.json"
        fd = os.open(self.state_dir / "circuit.lock", os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            record = dict(fresh)
            try:
                stored = jsonio.read_json(path)
            except FileNotFoundError:
                stored = {}
            except ValueError:
                stored, record["_unreadable"] = {}, "circuit.json was unreadable; started closed"
            if isinstance(stored, dict) and stored.get("state") in ("closed", "open", "half_open"):
                record.update(stored)
            before = jsonio.dumps({k: v for k, v in record.items() if k != "_unreadable"})
            yield record
            record.pop("_unreadable", None)
            if jsonio.dumps(record) != before:
                record["updated_at"] = jsonio.utc_now_iso()
                jsonio.write_json(path, record)
        finally:
            os.close(fd)

    def hosts(self) -> list[dict[str, Any]]:
        return this_host(self.state_dir)


def this_host(state_dir: Path) -> list[dict[str, Any]]:
    """One host: this one, with the loop that holds the state directory, if any."""
    try:
        pid_text = (state_dir / "loop.lock.pid").read_text().strip()
    except OSError:
        pid_text = ""
    beat = jsonio.read_dict(state_dir / "loop.heartbeat.json")
    return [{"host": socket.gethostname(), "pid": int(pid_text) if pid_text.isdigit() else None, "heartbeat": beat}]
