"""The sidecar: one per loop (see core.py)."""

from __future__ import annotations

from harness.sidecar.core import Sidecar, main
from harness.sidecar.model import Options, Tracked, proc_start, wake_loop

__all__ = ["Options", "Sidecar", "Tracked", "main", "proc_start", "wake_loop"]
