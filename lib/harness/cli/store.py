"""The store's own verbs (loopctl.sh migrate, reindex, gc): moving a files-backend
state directory to SQLite, rebuilding the attempts and audit rows from files, and
retention."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from harness import jsonio
from harness.cli.common import Subparsers, now_of, with_state
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


def _mb(n: int) -> str:
    return f"{n / 2**20:.1f} MB"


def cmd_gc(args: argparse.Namespace) -> int:
    """loopctl.sh gc: retention's pass (ops/retention.py); one line, or --json."""
    from harness import config
    from harness.ops import retention

    try:
        r = retention.gc(Path(args.state_dir), args.raw_days, args.keep_days, now_of(args), args.dry_run)
    except retention.GcBusyError as exc:
        print(f"gc: {exc}; nothing done")
        return 0
    except ValueError as exc:
        jsonio.audit(Path(args.state_dir), "gc.failed", error=str(exc))
        raise config.ConfigError(str(exc)) from None
    for error in r.errors:
        print(f"harness: gc: {error}", file=sys.stderr)
    if not args.quiet or r.compressed or r.removed or r.errors:
        jsonio.audit(Path(args.state_dir), "gc.done", **retention.as_dict(r))
    if args.json:
        print(jsonio.dumps(retention.as_dict(r)).decode())
    else:
        verb = "would free" if args.dry_run else "freed"
        print(f"gc: {r.sessions} sessions: {r.compressed} files compressed, {r.removed} sessions removed, "
              f"{verb} {_mb(r.freed if not args.dry_run else r.bytes_before)}; kept {r.kept_live} live or unfinished, "
              f"{r.kept_not_final} whose item is not final" + (f"; {len(r.errors)} errors" if r.errors else ""))
    return 1 if r.errors else 0


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
    p = with_state(sub, "gc")
    p.add_argument("--raw-days", type=float, required=True)
    p.add_argument("--keep-days", type=float, required=True)
    p.add_argument("--dry-run", action="store_true")
    p.add_argument("--json", action="store_true")
    p.add_argument("--quiet", action="store_true", help="audit only a pass that changed something (the loop's)")
    p.add_argument("--now", type=float, help="the clock, in epoch seconds (tests)")
    p.set_defaults(fn=cmd_gc)
