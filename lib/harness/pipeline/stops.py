"""The record of why the harness stops a session: state/sessions/<sid>/kill.json.

Whoever stops a session first (the loop for a timeout, a cancel or a shutdown; the
sidecar for a stall) creates it; it is never replaced, so the first reason stands
and the verdict (verdict.py) reads it. Created whole with link(2).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness import jsonio

REASONS = ("stalled", "timed_out", "interrupted", "no_progress")
FILE = "kill.json"


def record(sdir: Path, reason: str, detail: str, by: str, now: float) -> dict[str, Any] | None:
    """Creates kill.json; None when this call created it, else the record that was there."""
    kill = {"reason": reason, "detail": detail, "at": jsonio.utc_now_iso(), "at_epoch": round(now, 3), "by": by}
    if jsonio.create_once(sdir / FILE, jsonio.dumps(kill, pretty=True) + b"\n"):
        return None
    return jsonio.read_dict(sdir / FILE) or {"reason": "?"}


def read(sdir: Path) -> dict[str, Any] | None:
    return jsonio.read_dict(sdir / FILE)
