"""The Store protocol: every read and write of the harness's shared state.

Items (add, claim with a lease, finish, cancel, retry, list, get), the question
"which sessions are live" (the leases), audit events, the pause, the circuit
breaker's record and the hosts. A backend is one module beside this one
(files.py today); store/__init__.py picks it, and tests/python/test_store_contract.py
runs the same contract against every backend.

A lease carries a fencing token: the item's claim count, one more at every claim
(so two sessions of one item never share one). The session keeps it (meta.json's
lease_token) and every later write of that session presents it (Store.finish); a
write whose token is not the item's current one is refused with FencedError and
changes nothing.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from harness.store.queue import QueueError


def host_name() -> str:
    """This host's name in a fleet: HOST_NAME (HARNESS_HOST_NAME), else the hostname."""
    return os.environ.get("HARNESS_HOST_NAME") or socket.gethostname()


class ItemState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    QUARANTINED = "quarantined"
    CANCELED = "canceled"

    @property
    def terminal(self) -> bool:
        """No session will run it again unless an operator retries it."""
        return self in TERMINAL


TERMINAL = frozenset({ItemState.SUCCEEDED, ItemState.QUARANTINED, ItemState.CANCELED})


class StoreError(QueueError):
    """A refused store operation; the message is one line for a person."""


class StoreUnavailableError(StoreError):
    """The store cannot be used at all (a corrupt or missing database, one that stays
    locked): a fatal error (exit 1), not a refused request."""


class StoreDownError(StoreUnavailableError):
    """A database server that cannot be reached now (down, restarting, the network):
    the loop stops claiming until it answers again, rather than ending."""


class FleetFullError(StoreError):
    """FLEET_JOBS sessions run across the fleet already: a claim waits."""


class UnknownItemError(StoreError):
    """No item has that id."""


class UnreadableItemError(StoreError):
    """An item's record exists but cannot be read (not JSON, not an object)."""


class FencedError(StoreError):
    """A write presented a lease that is no longer the item's (a stale fencing token)."""


@dataclass(frozen=True)
class Lease:
    """A claim: the session that holds the item, and its fencing token."""

    item_id: str
    session_id: str
    token: int  # the item's claim count at this claim (0: a lease from before tokens)
    worker: str = ""
    item: dict[str, Any] | None = None


class Store(Protocol):
    state_dir: Path

    def init(self) -> None: ...

    # --- items -----------------------------------------------------------
    def add(self, entries: list[tuple[str, Any]]) -> list[str]: ...
    def get(self, item_id: str) -> tuple[str, dict[str, Any]]: ...
    def states(self) -> dict[str, str]: ...
    def items(self, states: list[str]) -> list[dict[str, Any]]: ...
    def pending(self, now: float, aging_s: float = 0.0) -> list[Any]: ...  # queue.Candidate, in claim order
    def claim(self, session_id: str, worker: str, now: float, admit: Callable[[], bool] | None = None,
              aging_s: float = 0.0, skip_runs: frozenset[str] = frozenset()) -> Lease | None: ...
    def lease_of(self, item_id: str) -> Lease | None: ...
    def finish(self, lease: Lease, to_state: str, record: dict[str, Any], attempts: int,
               not_before: str | None, updates: dict[str, Any] | None = None) -> dict[str, Any]: ...
    def settle(self, item_id: str, from_state: str, to_state: str, record: dict[str, Any],
               updates: dict[str, Any] | None = None) -> dict[str, Any]: ...  # an item no session holds
    def cancel(self, item_id: str) -> str: ...
    def retry(self, item_id: str) -> str: ...

    # --- attempts (one per session: its receipt) ----------------------------
    def record_attempt(self, receipt: dict[str, Any]) -> None: ...
    def attempts(self, since: float | None = None, run: str | None = None,
                 skipped: list[str] | None = None) -> list[dict[str, Any]]: ...  # attempts.ATTEMPT_COLUMNS

    # --- live sessions ---------------------------------------------------
    def live(self) -> dict[str, tuple[str, dict[str, Any]]]: ...
    def live_changes(self) -> list[Path]: ...  # directories whose changes may change live() (inotify)

    # --- audit, pause, breaker, hosts ------------------------------------
    def audit(self, event: str, **fields: Any) -> None: ...
    def events(self) -> Iterator[dict[str, Any]]: ...
    def event_counts(self, names: list[str]) -> dict[str, int]: ...  # how often each audit event occurred
    def pause(self) -> dict[str, Any] | None: ...
    def set_pause(self, until: float, reason: str, by: str, session: str | None = None) -> None: ...
    def clear_pause(self, by: str) -> bool: ...
    def breaker(self, fresh: dict[str, Any]) -> AbstractContextManager[dict[str, Any]]: ...
    def hosts(self) -> list[dict[str, Any]]: ...
    def set_run_budget(self, run: str, usd: float) -> None: ...  # queue.sh add --run NAME --budget-usd X
    def run_budgets(self) -> dict[str, float]: ...
    def beat(self, info: dict[str, Any], now: float | None = None) -> int: ...  # a fleet's host heartbeat and lease renewal
    def exclusive(self, name: str) -> AbstractContextManager[bool]: ...  # True: no other host runs `name` now
    def shared_record(self, name: str) -> dict[str, Any] | None: ...  # a record every loop shares (store/shared.py)
    def update_shared(self, name: str) -> AbstractContextManager[dict[str, Any]]: ...
    def running_count(self, now: float) -> int: ...  # sessions running on every host


class SingleHost:
    """What a store one host keeps (files, SQLite) answers to the fleet's calls."""

    def beat(self, info: dict[str, Any], now: float | None = None) -> int:
        """One host: its loop's heartbeat file says all, and a lease has no expiry."""
        return 0

    @contextmanager
    def exclusive(self, name: str) -> Iterator[bool]:
        """One host: its own locks (a file's flock) are all there is to take."""
        yield True
