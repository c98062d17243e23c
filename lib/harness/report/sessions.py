"""Finding sessions under state/sessions/: by id, unique prefix, work-item id or `latest`."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import jsonio
from harness.store import StoreError, open_store

SAFE_REF_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class SessionLookupError(Exception):
    """An unknown, ambiguous or unsafe session reference; the message is one line."""


@dataclass
class Session:
    dir: Path
    meta: dict[str, Any]

    @property
    def id(self) -> str:
        return self.dir.name

    @property
    def started(self) -> float:
        value = self.meta.get("started_epoch")
        return float(value) if isinstance(value, (int, float)) else 0.0

    def file(self, name: str) -> Path:
        return self.dir / name

    def metrics(self) -> dict[str, Any] | None:
        return jsonio.read_dict(self.dir / "metrics.json")

    def heartbeat(self) -> dict[str, Any] | None:
        return jsonio.read_dict(self.dir / "heartbeat.json")

    def ended(self) -> bool:
        return (self.dir / "exit_code").exists() or (self.dir / "metrics.json").exists()

    def status(self) -> str:
        m = self.metrics()
        if m:
            return str(m.get("verdict") or "?")
        if (self.dir / "exit_code").exists():
            return "ended"
        hb = self.heartbeat()
        return f"live:{hb.get('phase')}" if hb else "live"


def sessions_dir(state_dir: Path) -> Path:
    return state_dir / "sessions"


def load(state_dir: Path, name: str) -> Session:
    d = sessions_dir(state_dir) / name
    return Session(d, jsonio.read_dict(d / "meta.json") or {})


def all_sessions(state_dir: Path) -> list[Session]:
    """Every session directory, oldest first."""
    root = sessions_dir(state_dir)
    try:
        names = [e.name for e in os.scandir(root) if e.is_dir() and e.name.startswith("ses_")]
    except FileNotFoundError:
        return []
    found = [load(state_dir, n) for n in names]
    found.sort(key=lambda s: (s.started or _mtime(s.dir), s.id))
    return found


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


def _item_session(state_dir: Path, ref: str) -> str | None:
    """The latest session of work item ref, from the store: its lease's, else its history's last."""
    try:
        _, item = open_store(state_dir).get(ref)
    except (StoreError, ValueError, OSError):
        return None  # no such item (or one that cannot be read): ref is no item id
    if not isinstance(item, dict):
        return None
    lease = item.get("lease") or {}
    if isinstance(lease, dict) and lease.get("session_id"):
        return str(lease["session_id"])
    history = item.get("history") or []
    for record in reversed(history if isinstance(history, list) else []):
        if isinstance(record, dict) and record.get("session_id"):
            return str(record["session_id"])
    return None


def resolve(state_dir: Path, ref: str) -> Session:
    """The session ref names: a full session id, `latest`, a work-item id (its latest
    session), or a unique prefix of a session id (with or without "ses_")."""
    if not SAFE_REF_RE.fullmatch(ref) or ".." in ref:
        raise SessionLookupError(f"refused {ref!r}: a session reference is an id, a prefix, an item id or 'latest', never a path")
    root = sessions_dir(state_dir)
    if ref == "latest":
        every = all_sessions(state_dir)
        if not every:
            raise SessionLookupError(f"no sessions yet in {root}")
        return every[-1]
    if (root / ref).is_dir() and ref.startswith("ses_"):
        return load(state_dir, ref)
    sid = _item_session(state_dir, ref)
    if sid and SAFE_REF_RE.fullmatch(sid) and (root / sid).is_dir():
        return load(state_dir, sid)
    try:
        names = [e.name for e in os.scandir(root) if e.name.startswith("ses_")]
    except FileNotFoundError:
        names = []
    matches = sorted(n for n in names if n.startswith(ref) or n.startswith("ses_" + ref))
    if len(matches) == 1:
        return load(state_dir, matches[0])
    if len(matches) > 1:
        raise SessionLookupError(f"{ref!r} is ambiguous: it matches {len(matches)} sessions ({', '.join(matches[:3])}, …)")
    if sid:
        raise SessionLookupError(f"item {ref!r} has no session directory yet")
    raise SessionLookupError(f"no session, item or session prefix {ref!r} in {state_dir}")
