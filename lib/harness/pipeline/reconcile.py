"""What an earlier loop left in running/, sorted out before anything is claimed.

For every running item: a session that never started (no session id, no session
directory, or a wrapper.pid that says "abandoned") goes back to pending with no
attempt charged. "Never started" is decided by creating wrapper.pid first, with
link(2): a wrapper that comes up later finds it taken and does not start the agent
(lib/spawn.sh, spawn_mark_started). Every other session is the loop's to adopt:
whether it still runs is the loop's question (a process), and one that has ended
is finalized as usual.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import jsonio
from harness.pipeline.policy import Policy
from harness.serve import reply
from harness.store import Lease, Store, UnreadableItemError
from harness.store.base import host_name

SESSION_ID_RE = re.compile(r"ses_[A-Za-z0-9-]+")
UNSTARTED = "the loop stopped before the session started"


@dataclass
class Adopt:
    """A session to supervise: its wrapper, its limits, its branch."""

    session_id: str
    item_id: str
    wrapper_pid: str
    wrapper_start: str
    started_epoch: float
    timeout_s: float
    branch: str

    def line(self) -> str:
        return reply.line(self.session_id, self.item_id, self.wrapper_pid, self.wrapper_start,
                          f"{self.started_epoch:.6f}", f"{self.timeout_s:g}", self.branch)


def _started(sdir: Path, loop_pid: int) -> str | None:
    """wrapper.pid's first line, after trying to claim it as abandoned; None when this
    call created it (the session never started, and now never will)."""
    mark = f"abandoned by loop {loop_pid} at {jsonio.utc_now_iso()}\n".encode()
    if jsonio.create_once(sdir / "wrapper.pid", mark):
        return None
    try:
        return (sdir / "wrapper.pid").read_text(errors="replace").split("\n", 1)[0]
    except OSError:
        return ""


def requeue_unstarted(store: Store, lease: Lease) -> None:
    record = {"session_id": lease.session_id, "verdict": "interrupted", "reason": UNSTARTED}
    attempts = int((lease.item or {}).get("attempts") or 0)
    try:
        store.finish(lease, "pending", record, attempts, None)
    except OSError as exc:
        store.audit("item.finish_failed", item=lease.item_id, session=lease.session_id, to="pending", error=str(exc))
        print(f"harness: could not return {lease.item_id} to pending ({exc}); it stays in running/", file=sys.stderr)
        return
    store.audit("item.pending", item=lease.item_id, session=lease.session_id, to="pending", verdict="interrupted",
                reason=UNSTARTED, **{"from": "running"})


def reconcile(store: Store, loop_pid: int, pol: Policy) -> list[Adopt]:
    """This host's running items: each session adopted, or finalized, or its item
    returned to pending. On a store the fleet shares, another host's items are its
    own (a host that died leaves them to run out their leases: store/postgres.py)."""
    adopt: list[Adopt] = []
    me = host_name()
    for row in store.items(["running"]):
        try:
            lease = store.lease_of(str(row["id"]))
        except UnreadableItemError as exc:  # left where it is, for a person to look at
            store.audit("item.unreadable", item=str(row["id"]), reason=str(exc))
            print(f"harness: {exc}; left in running/", file=sys.stderr)
            continue
        if lease is None:
            continue  # it left running/ since
        if getattr(store, "shared", False) and ((lease.item or {}).get("lease") or {}).get("host") != me:
            continue
        sdir = store.state_dir / "sessions" / lease.session_id
        if not SESSION_ID_RE.fullmatch(lease.session_id) or not sdir.is_dir():
            requeue_unstarted(store, lease)
            continue
        first = _started(sdir, loop_pid)
        if first is None or first.startswith("abandoned"):
            requeue_unstarted(store, lease)
            continue
        pid, _, start = first.partition(" ")
        meta: dict[str, Any] = jsonio.read_dict(sdir / "meta.json") or {}
        timeout = (lease.item or {}).get("timeout_s")
        started = meta.get("started_epoch")
        adopt.append(Adopt(lease.session_id, lease.item_id, pid, start,
                           float(started) if isinstance(started, (int, float)) else 0.0,
                           float(timeout if isinstance(timeout, (int, float)) else pol.SESSION_TIMEOUT_S),
                           str(meta.get("branch") or "")))
    return adopt
