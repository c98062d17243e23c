"""queue.sh's verbs: add, list, show, cancel, retry, ready."""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

from harness import jsonio
from harness.cli.common import EXIT_REFUSED, Subparsers, cell, store_of, with_state
from harness.store import queue


def cmd_queue_add(args: argparse.Namespace) -> int:
    if args.file in (None, "-"):
        data, label = sys.stdin.buffer.read(), args.label or "stdin"
    else:
        try:
            data, label = Path(args.file).read_bytes(), args.file
        except OSError as exc:
            raise queue.QueueError(f"cannot read {args.file}: {exc.strerror}") from None
    entries = queue.parse_items(data, label)
    if args.budget_usd is not None and not args.run:
        raise queue.QueueError("--budget-usd is a run's: give --run NAME too")
    if args.budget_usd is not None and not (args.budget_usd > 0 and math.isfinite(args.budget_usd)):
        raise queue.QueueError(f"--budget-usd must be a positive number of USD, got {args.budget_usd:g}")
    if args.run:
        entries = [(where, _in_run(where, raw, queue.check_run(args.run))) for where, raw in entries]
    store = store_of(args)
    ids = store.add(entries)
    if args.budget_usd is not None:  # once the items are in: a refused add sets no budget
        store.set_run_budget(args.run, args.budget_usd)
    for item_id in ids:
        print(item_id)
    return 0


def _in_run(where: str, raw: Any, run: str) -> Any:
    """The item, put in the run --run names (an item naming another run is refused)."""
    if isinstance(raw, dict):
        if raw.get("run") not in (None, "", run):
            raise queue.QueueError(f"{where}: the item names run {raw['run']!r}, not {run!r}")
        raw = {**raw, "run": run}
    return raw


def cmd_queue_runs(args: argparse.Namespace) -> int:
    from harness.report import runs as run_report

    store, now = store_of(args), time.time()
    found = run_report.runs(store, now, args.name)
    if args.name and not found:
        raise queue.QueueError(f"unknown run: {args.name}")
    if args.json:
        docs = [r.as_dict() for r in found]
        sys.stdout.buffer.write(jsonio.dumps(docs[0] if args.name else docs, pretty=True) + b"\n")
        return 0
    if args.name:
        print(run_report.render_one(found[0], store.items(list(queue.STATES)), now))
    elif not found:
        print("no runs (queue.sh add --run NAME groups items in one)")
    else:
        print(run_report.render_table(found, now))
    return 0


def cmd_queue_cancel_run(args: argparse.Namespace) -> int:
    store = store_of(args)
    run = queue.check_run(args.run)
    items = [i for i in store.items(["pending", "verified", "running"]) if i.get("run") == run]
    if not items and not any(i.get("run") == run for i in store.items(list(queue.STATES))):
        raise queue.QueueError(f"unknown run: {run}")
    failed = 0
    for item in items:  # one that finished meanwhile is said, and the rest go on
        try:
            print(store.cancel(item["id"]))
        except queue.QueueError as exc:
            print(f"harness: {exc}", file=sys.stderr)
            failed += 1
    print(f"run {run}: {len(items) - failed} item(s) canceled or being stopped"
          + (f"; {failed} could not be (above)" if failed else ""))
    return EXIT_REFUSED if failed else 0


def _age(created: str | None, now: float) -> str:
    try:
        secs = now - jsonio.parse_iso(str(created)).timestamp()
    except ValueError:
        return "?"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if secs >= size:
            return f"{int(secs // size)}{unit}"
    return f"{int(max(secs, 0))}s"


def cmd_queue_list(args: argparse.Namespace) -> int:
    states = args.state or list(queue.STATES)
    for s in states:
        if s not in queue.STATES:
            raise queue.QueueError(f"unknown state {s!r} (known: {', '.join(queue.STATES)})")
    rows = store_of(args).items(states)
    if args.json:
        sys.stdout.buffer.write(jsonio.dumps(rows, pretty=True) + b"\n")
        return 0
    now = time.time()
    print(f"{'ID':<30} {'STATE':<11} {'PRIORITY':<8} {'TRIES':>5} {'AGE':>5}  {'LAST':<15} TITLE")
    for r in rows:
        state, title = r["state"], r.get("title", "")
        if r.get("blocked"):
            state, title = "blocked", f"{r['blocked']} | {title}"
        elif r.get("waiting_for"):
            state, title = "waiting", f"waits for {', '.join(r['waiting_for'])} | {title}"
        print(
            f"{cell(r['id'], 30):<30} {state:<11} {cell(r.get('priority', ''), 8):<8} "
            f"{r.get('attempts', 0):>5} {_age(r.get('created_at'), now):>5}  "
            f"{cell(r.get('last_verdict') or '-', 15):<15} {cell(title, 80)}"
        )
    return 0


def cmd_queue_show(args: argparse.Namespace) -> int:
    state, item = store_of(args).get(args.id)
    item["state"] = state
    # the item's roll-up: every session's cost, retries and fix rounds included
    item["cost_usd_total"] = round(sum(float(h.get("cost_usd") or 0) for h in item.get("history") or []
                                       if isinstance(h, dict)), 6)
    hint = allow_hint(item)
    if hint:
        item["hint"] = hint
    sys.stdout.buffer.write(jsonio.dumps(item, pretty=True) + b"\n")
    return 0


def allow_hint(item: dict[str, Any]) -> str:
    """When the item's last session was refused tool calls: the allowed_tools that
    would let them through (what that session was allowed, plus the refused ones)."""
    history = item.get("history") or []
    last = history[-1] if history and isinstance(history[-1], dict) else {}
    denied = [str(t) for t in last.get("denied") or []]
    if not denied:
        return ""
    own = [t.strip() for t in str(last.get("allowed_tools") or "").split(",") if t.strip()]
    merged = ",".join(dict.fromkeys(own + denied))
    return (f"its last session was denied {', '.join(denied)}: allow with ALLOWED_TOOLS "
            f"(loop.sh --set ALLOWED_TOOLS={merged}) or the item's allowed_tools ({merged})")


def cmd_queue_cancel(args: argparse.Namespace) -> int:
    print(store_of(args).cancel(args.id))
    return 0


def cmd_queue_retry(args: argparse.Namespace) -> int:
    print(store_of(args).retry(args.id))
    return 0


def cmd_queue_ready(args: argparse.Namespace) -> int:
    store, now = store_of(args), time.time()
    states = store.states()
    for c in store.pending(now):
        if c.not_before <= now and all(states.get(d) == "succeeded" for d in c.depends_on):
            print(c.item_id)
    return 0



def add_parsers(sub: Subparsers) -> None:
    p = with_state(sub, "queue-add")
    p.add_argument("--file")
    p.add_argument("--label", help="how errors name the input (default: the file, or stdin)")
    p.add_argument("--run", help="the run every item joins")
    p.add_argument("--budget-usd", type=float, help="the run's budget: no item of it is claimed once it has spent this")
    p.set_defaults(fn=cmd_queue_add)
    p = with_state(sub, "queue-runs")
    p.add_argument("--name", help="one run, with its items")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_queue_runs)
    p = with_state(sub, "queue-cancel-run")
    p.add_argument("run")
    p.set_defaults(fn=cmd_queue_cancel_run)
    p = with_state(sub, "queue-list")
    p.add_argument("--state", action="append")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_queue_list)
    for name, fn in (("queue-show", cmd_queue_show), ("queue-cancel", cmd_queue_cancel), ("queue-retry", cmd_queue_retry)):
        p = with_state(sub, name)
        p.add_argument("id")
        p.set_defaults(fn=fn)
    p = with_state(sub, "queue-ready")
    p.set_defaults(fn=cmd_queue_ready)

