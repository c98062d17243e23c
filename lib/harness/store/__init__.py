"""The store seam: the one place a backend is picked ("sqlite", the default; "files";
"postgres", for a fleet of hosts sharing one database: store/postgres.py).

    from harness.store import open_store
    store = open_store(state_dir)        # a Store (store/base.py)

A state directory keeps the backend it was made with: state/store names it. A new
one gets HARNESS_STORE's (the configuration's STORE; sqlite when unset). A state
directory of an earlier release (a queue/ directory, no name) is read with the files
backend until the loop's start or `loopctl.sh migrate` moves it over (migrate.py).
A directory named sqlite whose database has gone is refused, never started afresh.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from harness import jsonio
from harness.store.base import (
    FencedError,
    FleetFullError,
    ItemState,
    Lease,
    Store,
    StoreDownError,
    StoreError,
    StoreUnavailableError,
    UnknownItemError,
    UnreadableItemError,
)
from harness.store.files import FilesStore
from harness.store.sqlite import DB_FILE, SqliteStore


def _postgres() -> type[SqliteStore]:
    from harness.store.postgres import PostgresStore  # psycopg: imported only where it is used

    return PostgresStore


# each backend's class, by name (postgres's is imported when first asked for)
BACKENDS: dict[str, Callable[[], type[FilesStore] | type[SqliteStore]]] = {
    "sqlite": lambda: SqliteStore, "files": lambda: FilesStore, "postgres": _postgres}
MARKER = "store"

__all__ = ["BACKENDS", "FencedError", "FleetFullError", "ItemState", "Lease", "Store", "StoreDownError", "StoreError",
           "StoreUnavailableError",
           "UnknownItemError", "UnreadableItemError", "backend_of", "open_store"]


def open_store(state_dir: Path, backend: str | None = None) -> Store:
    """The state directory's store: the backend named, else the one it holds."""
    state_dir = Path(state_dir)
    name = backend or backend_of(state_dir)
    try:
        kind = BACKENDS[name]()
    except KeyError:
        raise StoreError(f"unknown store backend {name!r} (one of: {', '.join(BACKENDS)})") from None
    fresh = backend is None and not (state_dir / MARKER).exists() and not (state_dir / "queue").is_dir()
    store = kind(state_dir)
    if fresh or (backend is None and name == "sqlite" and not (state_dir / MARKER).exists()):
        name_store(state_dir, name)  # named once the store exists: never a name without its database
    return store


def backend_of(state_dir: Path) -> str:
    """The backend a state directory holds (a new directory's: HARNESS_STORE's)."""
    try:
        named = (state_dir / MARKER).read_text().strip()
    except FileNotFoundError:
        named = ""
    db = state_dir / DB_FILE
    if named == "migrating":
        raise StoreUnavailableError(f"{state_dir} is being moved to the SQLite store (loopctl.sh migrate); "
                                    "a migration cut short is finished by running that again")
    if named == "sqlite" and (not db.exists() or db.stat().st_size == 0):
        raise StoreUnavailableError(f"{db} is {'empty' if db.exists() else 'missing'}, but {state_dir} was made with "
                                    "it: restore it from a backup (loopctl.sh reindex rebuilds the attempts, "
                                    "not the queue)")
    if named:
        if named not in BACKENDS:
            raise StoreError(f"{state_dir / MARKER} names an unknown store {named!r} (one of: {', '.join(BACKENDS)})")
        return named
    if db.exists():
        return "sqlite"
    if (state_dir / "queue").is_dir():
        return "files"  # an earlier release's state: migrate.py moves it over
    name = os.environ.get("HARNESS_STORE") or "sqlite"
    if name not in BACKENDS:
        raise StoreError(f"STORE must be one of {', '.join(BACKENDS)}, got {name!r}")
    return name


def name_store(state_dir: Path, name: str) -> None:
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    jsonio.write_atomic(state_dir / MARKER, (name + "\n").encode())
