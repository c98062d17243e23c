"""The store's own verbs (loopctl.sh migrate, reindex): moving a files-backend
state directory to SQLite, and rebuilding the attempts and audit rows from files."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.cli.common import Subparsers, with_state
from harness.store import StoreError, open_store


def cmd_migrate(args: argparse.Namespace) -> int:
    from harness.store import migrate

    state_dir = Path(args.state_dir)
    done = migrate.migrate(state_dir)
    if done is not None:
        print(done.line())
    elif not args.quiet:
        print(f"nothing to migrate: {state_dir} uses the {open_store_name(state_dir)} store")
    return 0


def open_store_name(state_dir: Path) -> str:
    from harness.store import backend_of

    return backend_of(state_dir)


def cmd_reindex(args: argparse.Namespace) -> int:
    store = open_store(Path(args.state_dir))
    reindex = getattr(store, "reindex", None)
    if reindex is None:
        raise StoreError("reindex rebuilds the SQLite store; this state directory uses the files backend, "
                         "whose receipt files are read as they are (loopctl.sh migrate moves it over)")
    counts = reindex()
    print(f"reindexed: {counts['attempts']} attempts from sessions/*/metrics.json, {counts['events']} audit events "
          f"from events.jsonl" + (f"; {counts['skipped']} unreadable skipped (named above)" if counts["skipped"] else ""))
    return 0


def cmd_store_init(args: argparse.Namespace) -> int:
    """The loop's start: an earlier release's files state moved over (unless
    STORE=files keeps it), then the store made ready."""
    state_dir = Path(args.state_dir)
    if args.migrate:
        from harness.store import migrate

        done = migrate.migrate(state_dir)
        if done is not None:
            print(done.line())
    open_store(state_dir).init()
    return 0


def add_parsers(sub: Subparsers) -> None:
    p = with_state(sub, "store-init")
    p.add_argument("--migrate", action="store_true", help="move a files state of an earlier release to SQLite first")
    p.set_defaults(fn=cmd_store_init)
    p = with_state(sub, "migrate")
    p.add_argument("--quiet", action="store_true", help="say nothing when there is nothing to migrate")
    p.set_defaults(fn=cmd_migrate)
    p = with_state(sub, "reindex")
    p.set_defaults(fn=cmd_reindex)
