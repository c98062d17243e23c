"""parse-session-events.sh's verbs: list, cost, reconcile, watch, summary, metrics,
tools, errors, timeline, export."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from harness.cli.common import Subparsers, with_state
from harness.report.style import Style
from harness.store import queue


def cmd_events(args: argparse.Namespace) -> int:
    state_dir = Path(args.state_dir)
    color = False if args.no_color else None
    # session text escaped on a terminal or with --safe; never with --raw
    safe = False if getattr(args, "raw", False) else (True if getattr(args, "safe", False) else None)
    st = Style(sys.stdout, color, safe)
    cmd = args.events_cmd
    if cmd == "cost" and (args.transcripts or args.prices or args.mode != "auto"):
        return _transcript_cost(args, st)
    if cmd == "reconcile":
        return _reconcile(args, state_dir, st)
    return _session_verbs(args, state_dir, st, safe)


def _session_verbs(args: argparse.Namespace, state_dir: Path, st: Style, safe: bool | None) -> int:
    from harness.report import export, sessions, watch
    from harness.report import session_report as report

    cmd = args.events_cmd
    if cmd == "list":
        return report.cmd_list(state_dir, st, args.json, args.limit, args.item)
    if cmd == "cost":
        try:
            since = report.parse_since(args.since, time.time()) if args.since else None
        except ValueError as exc:
            raise queue.QueueError(str(exc)) from None
        return report.cmd_cost(state_dir, st, args.json, since)
    try:
        s = sessions.resolve(state_dir, args.id)
    except sessions.SessionLookupError as exc:
        raise queue.QueueError(str(exc)) from None
    if cmd == "watch":
        return watch.watch(s, st, args.raw)
    if cmd == "summary":
        return report.cmd_summary(s, st)
    if cmd == "metrics":
        return report.cmd_metrics(s, st, args.json, args.recompute)
    if cmd == "tools":
        return report.cmd_tools(s, st, args.json)
    if cmd == "errors":
        return report.cmd_errors(s, st, args.json)
    if cmd == "timeline":
        return report.cmd_timeline(s, st, args.json)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as fh:
            return export.export(s, fh, Style(fh, False, safe))
    return export.export(s, sys.stdout, st)


def _transcript_cost(args: argparse.Namespace, st: Style) -> int:
    from harness.report import scan_cache, transcript_cost

    if not args.transcripts or args.since:
        raise queue.QueueError("--mode and --prices go with --transcripts DIR, --since without it")
    try:
        root = Path(args.transcripts)
        cache = None if args.no_cache else Path(args.cache) if args.cache else scan_cache.default_path(root)
        return transcript_cost.cmd_transcript_cost(root, st, args.json, args.mode, args.prices, cache)
    except transcript_cost.TranscriptCostError as exc:
        raise queue.QueueError(str(exc)) from None


def _reconcile(args: argparse.Namespace, state_dir: Path, st: Style) -> int:
    from harness.report import drift, sessions

    if args.tolerance < 0:
        raise queue.QueueError(f"--tolerance must be a percentage >= 0, not {args.tolerance:g}")
    try:
        chosen = [sessions.resolve(state_dir, i) for i in args.ids] if args.ids else sessions.all_sessions(state_dir)
    except sessions.SessionLookupError as exc:
        raise queue.QueueError(str(exc)) from None
    return drift.cmd_reconcile(chosen, st, args.json, args.tolerance)


def add_parsers(sub: Subparsers) -> None:
    """parse-session-events.sh's verbs."""
    p = with_state(sub, "events")
    p.add_argument("--no-color", action="store_true")
    ev = p.add_subparsers(dest="events_cmd", required=True)
    e = ev.add_parser("list")
    e.add_argument("--json", action="store_true")
    e.add_argument("--limit", type=int, default=0)
    e.add_argument("--item")
    e = ev.add_parser("cost")
    e.add_argument("--json", action="store_true")
    e.add_argument("--since")
    e.add_argument("--transcripts", metavar="DIR", help="Claude Code transcripts instead of the receipts")
    e.add_argument("--mode", choices=("auto", "calculate", "display"), default="auto")
    e.add_argument("--prices", metavar="FILE", help="a LiteLLM price file instead of the harness's prices")
    e.add_argument("--cache", metavar="FILE", help="where --transcripts keeps what it read (default: ~/.cache/harness)")
    e.add_argument("--no-cache", action="store_true", help="read every transcript whole, keep nothing")
    e = ev.add_parser("reconcile")
    e.add_argument("ids", nargs="*")
    e.add_argument("--json", action="store_true")
    e.add_argument("--tolerance", type=float, default=0.0, metavar="PCT")
    for name in ("watch", "summary", "metrics", "tools", "errors", "timeline", "export"):
        e = ev.add_parser(name)
        e.add_argument("id")
        if name in ("metrics", "tools", "errors", "timeline"):
            e.add_argument("--json", action="store_true")
        if name == "metrics":
            e.add_argument("--recompute", action="store_true")
        shown = e.add_mutually_exclusive_group()
        shown.add_argument("--raw", action="store_true",
                           help="session text as it is" + (": the lines themselves" if name == "watch" else ""))
        shown.add_argument("--safe", action="store_true", help="control and format characters escaped, on a terminal or not")
        if name == "export":
            e.add_argument("-o", "--output")
    p.set_defaults(fn=cmd_events)

