"""The helpers' command line, ``python -m harness <command> ...``: one module per
script's verbs (queue.py, loop.py, events.py, operator.py), assembled here.

Called by the bash modules; exit 0 on success, 2 with one line on stderr for
refused input; the loop's own answers are 10 (nothing to claim), 11 (claiming is
blocked: the reason on stdout as JSON) and 12 (finalize could not move the item
out of running/); see common.py. Each verb imports what it needs: the loop's
helper serves many verbs, and start-up time counts for the others.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys

from harness import config
from harness.cli import events, loop, operator, reports
from harness.cli import plan as plan_verbs
from harness.cli import queue as queue_verbs
from harness.cli import store as store_verbs
from harness.cli.common import EXIT_REFUSED, EXIT_STORE_DOWN
from harness.serve import loopcalls
from harness.store import StoreDownError, StoreUnavailableError, queue


def cmd_serve(args: argparse.Namespace) -> int:
    from harness.serve import helper

    return helper.serve(main)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m harness")
    sub = ap.add_subparsers(dest="cmd", required=True)
    for module in (queue_verbs, loop, events, operator, store_verbs, reports, plan_verbs):
        module.add_parsers(sub)
    p = sub.add_parser("serve", help="the loop's long-lived helper (lib/harness/serve/helper.py)")
    p.set_defaults(fn=cmd_serve)
    return ap


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in loopcalls.COMMANDS:
        return loopcalls.run(argv[0], argv[1:])
    args = parser().parse_args(argv)
    try:
        return int(args.fn(args))
    except StoreDownError as exc:  # a database server that does not answer now: the caller may ask again
        print(f"harness: {exc}", file=sys.stderr)
        return EXIT_STORE_DOWN
    except StoreUnavailableError as exc:  # a corrupt, missing or locked database: fatal, not refused
        print(f"harness: {exc}", file=sys.stderr)
        return 1
    except sqlite3.Error as exc:  # what the store's own checks did not foresee: one line, never a traceback
        print(f"harness: {args.cmd}: the store's database failed: {exc}", file=sys.stderr)
        return 1
    except (queue.QueueError, config.ConfigError) as exc:
        print(f"harness: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except BrokenPipeError:
        return 0
    except OSError as exc:  # a full disk, permissions: one line, never a traceback
        print(f"harness: {args.cmd}: {exc}", file=sys.stderr)
        return 1

