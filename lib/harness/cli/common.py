"""What every verb module shares: exit codes, the state and policy options, the clock."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any, TypeAlias

from harness.store import Store, open_store

# Exit codes, one meaning each. 0-4 mean what they mean to a person at every entry
# point (lib/log.sh); 10 and up are answers only the loop reads, apart from them.
EXIT_REFUSED = 2  # a refused request: malformed input, an unknown id or key
EXIT_NOTHING = 10  # start: nothing is ready to claim
EXIT_BLOCKED = 11  # start: claiming is blocked (a pause, the breaker, disk, load, memory)
EXIT_FINISH = 12  # finalize: the item could not leave running/ (it is finalized again)
EXIT_STORE_DOWN = 13  # the store's server (postgres) did not answer: nothing was changed, ask again later

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"


def store_of(args: argparse.Namespace) -> Store:
    """The state directory's store, ready (its directories or tables made)."""
    store = open_store(Path(args.state_dir))
    store.init()
    return store


def now_of(args: argparse.Namespace) -> float:
    """The clock: --now when a test gives it, else the time."""
    return float(args.now) if getattr(args, "now", None) is not None else time.time()


def cell(text: Any, width: int) -> str:
    s = " ".join(str(text if text is not None else "").split())
    return s if len(s) <= width else s[: width - 1] + "…"


def with_policy(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cfg", action="append", default=[], metavar="KEY=VALUE", help="policy configuration")
    p.add_argument("--now", type=float, help="the clock, in epoch seconds (tests)")


def with_state(sub: Subparsers, name: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name)
    p.add_argument("--state-dir", required=True)
    return p
