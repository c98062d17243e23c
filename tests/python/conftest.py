from __future__ import annotations

import os
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "lib"))
REFERENCE = Path(__file__).resolve().parent / "fixtures" / "reference"


def _children() -> set[int]:
    me = str(os.getpid())
    kids: set[int] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if fields[1].decode() == me and fields[0] != b"Z":
            kids.add(int(entry))
    return kids


@pytest.fixture(autouse=True)
def no_leaks() -> Iterator[None]:
    """Fails a test that leaves a thread or a child process behind."""
    threads_before = set(threading.enumerate())
    kids_before = _children()
    yield
    leaked_threads = [t for t in threading.enumerate() if t not in threads_before and t.is_alive()]
    leaked_kids = _children() - kids_before
    assert not leaked_threads, f"leaked threads: {leaked_threads}"
    assert not leaked_kids, f"leaked child processes: {leaked_kids}"


@pytest.fixture
def reference() -> Path:
    return REFERENCE
