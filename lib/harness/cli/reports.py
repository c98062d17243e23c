"""report.sh (the store's attempts rolled up: report/rollup.py) and serve.sh (the
HTTP server and the metrics textfile: serve/http.py, serve/metrics.py)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from harness import jsonio
from harness.cli.common import Subparsers, with_policy, with_state
from harness.pipeline.policy import Policy
from harness.store import open_store, queue


def cmd_report(args: argparse.Namespace) -> int:
    from harness.report import rollup
    from harness.report.session_report import parse_since
    from harness.report.style import clip

    if args.json and args.csv:
        raise queue.QueueError("give --json or --csv, not both")
    try:
        since = parse_since(args.since, time.time()) if args.since else None
    except ValueError as exc:
        raise queue.QueueError(str(exc)) from None
    store = open_store(Path(args.state_dir))
    fast = getattr(store, "rollup", None)  # the SQLite store computes it itself
    try:
        if fast is not None:
            report = fast(args.by, since, args.run)
        else:
            skipped: list[str] = []
            report = rollup.rollup(store.attempts(since=since, run=args.run, skipped=skipped), args.by)
            for line in skipped:
                print(f"harness: report: skipped {line}", file=sys.stderr)
    except ValueError as exc:
        raise queue.QueueError(str(exc)) from None
    report.update(since=since, run=args.run)
    if args.json:
        sys.stdout.buffer.write(jsonio.dumps(report, pretty=True) + b"\n")
    elif args.csv:
        sys.stdout.write(rollup.to_csv(report))
    else:
        print(rollup.to_text(report, clip))
    return 0


def cmd_http(args: argparse.Namespace) -> int:
    if args.textfile:
        from harness.serve.metrics import write_textfile

        write_textfile(Path(args.state_dir), Path(args.textfile))
        return 0
    from harness.serve import http

    return http.serve(Path(args.state_dir), args.addr, args.loop_pid, args.loop_start, Policy.from_pairs(args.cfg),
                      args.heartbeat_s)


def add_parsers(sub: Subparsers) -> None:
    p = with_state(sub, "http")
    p.add_argument("--addr", default="127.0.0.1:8765")
    p.add_argument("--textfile", help="write the metrics to this file once, and exit")
    p.add_argument("--loop-pid", type=int, default=0, help="the loop that started it: gone, the server stops")
    p.add_argument("--loop-start", default="", help="that loop's start time (/proc/PID/stat field 22)")
    p.add_argument("--heartbeat-s", type=float, default=10.0)
    with_policy(p)
    p.set_defaults(fn=cmd_http)
    p = with_state(sub, "report")
    p.add_argument("--by", default="day")
    p.add_argument("--since")
    p.add_argument("--run")
    p.add_argument("--json", action="store_true")
    p.add_argument("--csv", action="store_true")
    p.set_defaults(fn=cmd_report)
