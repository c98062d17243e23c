"""The store seam: the one place a backend is picked, by name ("files", the loop's; "sqlite").

    from harness.store import open_store
    store = open_store(state_dir)        # a Store (store/base.py)
"""

from __future__ import annotations

from pathlib import Path

from harness.store.base import FencedError, ItemState, Lease, Store, StoreError, UnknownItemError, UnreadableItemError
from harness.store.files import FilesStore
from harness.store.sqlite import SqliteStore

BACKENDS: dict[str, type[FilesStore] | type[SqliteStore]] = {"files": FilesStore, "sqlite": SqliteStore}

__all__ = ["BACKENDS", "FencedError", "ItemState", "Lease", "Store", "StoreError", "UnknownItemError", "UnreadableItemError",
           "open_store"]


def open_store(state_dir: Path, backend: str | None = None) -> Store:
    """The state directory's store: the backend named, else the one it holds (SQLite
    once state/harness.db exists, else the files backend)."""
    if backend is None:
        backend = "sqlite" if (Path(state_dir) / "harness.db").exists() else "files"
    try:
        kind = BACKENDS[backend]
    except KeyError:
        raise StoreError(f"unknown store backend {backend!r} (one of: {', '.join(BACKENDS)})") from None
    return kind(state_dir)
