"""Shared by the benchmarks: a state directory with sessions in it, and process stats."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[2]


def make_session(state: Path, item: str, lease: bool = True) -> Path:
    sid = f"ses_{uuid.uuid4()}"
    d = state / "sessions" / sid
    d.mkdir(parents=True, mode=0o700)
    (state / "queue" / "running").mkdir(parents=True, exist_ok=True)
    meta = {"session_id": sid, "item_id": item, "attempt": 1, "title": item, "started_epoch": time.time(),
            "started_at": "2026-11-21T00:00:00Z"}
    (d / "meta.json").write_bytes(orjson.dumps(meta))
    if lease:
        item_doc: dict[str, Any] = {"id": item, "lease": {"session_id": sid}}
        (state / "queue" / "running" / f"{item}.json").write_bytes(orjson.dumps(item_doc))
    return d


def cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat", "rb") as fh:
        fields = fh.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))] if s else float("nan")


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT / "lib")}
