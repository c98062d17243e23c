"""Command line of the helpers: ``python -m harness <command> ...``.

Called by the bash modules; exit 0 on success, 2 with one line on stderr for
refused input, 3 for "nothing to claim", 4 for "claiming is blocked" (pause,
circuit breaker, disk; the reason on stdout as JSON), 5 when finalize could not
move the item out of running/.
"""

from __future__ import annotations

import argparse
import random
import re
import sys
import time
from pathlib import Path
from typing import Any

from harness import config, jsonio
from harness.pipeline.policy import Policy
from harness.serve import loopcalls, reply
from harness.store import Store, open_store, queue

# Each command imports what it needs: the loop runs a helper per claim and per
# finalize, and start-up time counts there.

# Exit codes, one meaning each. 0-4 mean what they mean to a person at every entry
# point (lib/log.sh); 10 and up are answers only the loop reads, apart from them.
EXIT_REFUSED = 2  # a refused request: malformed input, an unknown id or key
EXIT_NOTHING = 10  # start: nothing is ready to claim
EXIT_BLOCKED = 11  # start: claiming is blocked (a pause, the breaker, disk, load, memory)
EXIT_FINISH = 12  # finalize: the item could not leave running/ (it is finalized again)


def _q(args: argparse.Namespace) -> queue.Queue:
    return queue.Queue(Path(args.state_dir))


def _store(args: argparse.Namespace) -> Store:
    return open_store(Path(args.state_dir))


def cmd_queue_add(args: argparse.Namespace) -> int:
    if args.file in (None, "-"):
        data, label = sys.stdin.buffer.read(), args.label or "stdin"
    else:
        try:
            data, label = Path(args.file).read_bytes(), args.file
        except OSError as exc:
            raise queue.QueueError(f"cannot read {args.file}: {exc.strerror}") from None
    ids = _store(args).add(queue.parse_items(data, label))
    for item_id in ids:
        print(item_id)
    return 0


def _age(created: str | None, now: float) -> str:
    try:
        secs = now - jsonio.parse_iso(str(created)).timestamp()
    except ValueError:
        return "?"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if secs >= size:
            return f"{int(secs // size)}{unit}"
    return f"{int(max(secs, 0))}s"


def _cell(text: Any, width: int) -> str:
    s = " ".join(str(text if text is not None else "").split())
    return s if len(s) <= width else s[: width - 1] + "…"


def cmd_queue_list(args: argparse.Namespace) -> int:
    states = args.state or list(queue.STATES)
    for s in states:
        if s not in queue.STATES:
            raise queue.QueueError(f"unknown state {s!r} (known: {', '.join(queue.STATES)})")
    rows = _store(args).items(states)
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
            f"{_cell(r['id'], 30):<30} {state:<11} {_cell(r.get('priority', ''), 8):<8} "
            f"{r.get('attempts', 0):>5} {_age(r.get('created_at'), now):>5}  "
            f"{_cell(r.get('last_verdict') or '-', 15):<15} {_cell(title, 80)}"
        )
    return 0


def cmd_queue_show(args: argparse.Namespace) -> int:
    state, item = _store(args).get(args.id)
    item["state"] = state
    sys.stdout.buffer.write(jsonio.dumps(item, pretty=True) + b"\n")
    return 0


def cmd_queue_cancel(args: argparse.Namespace) -> int:
    print(_store(args).cancel(args.id))
    return 0


def cmd_queue_retry(args: argparse.Namespace) -> int:
    print(_store(args).retry(args.id))
    return 0


def _now(args: argparse.Namespace) -> float:
    return float(args.now) if getattr(args, "now", None) is not None else time.time()


def cmd_queue_ready(args: argparse.Namespace) -> int:
    for item_id in queue.ready(_q(args), time.time()):
        print(item_id)
    return 0


def cmd_start(args: argparse.Namespace) -> int:
    from harness.pipeline import gate, start

    got = start.start(Path(args.state_dir), args.session, args.worker, args.loop_pid, Policy.from_pairs(args.cfg),
                      _now(args))
    if got is None:
        return EXIT_NOTHING
    if isinstance(got, gate.Blocked):
        print(got.line())
        return EXIT_BLOCKED
    print(got.line())
    return 0


def cmd_finalize(args: argparse.Namespace) -> int:
    from harness.pipeline import finalize as finish
    try:
        out = finish.finalize(Path(args.session_dir), Path(args.state_dir), Policy.from_pairs(args.cfg), _now(args),
                              random.Random())
    except finish.FinishError as exc:
        print(f"harness: {exc}", file=sys.stderr)
        return EXIT_FINISH
    # for the loop (serve/reply.py): verdict, reason, the state the item went to (empty:
    # orphaned or fenced); then the receipt's line
    print(reply.line(out.get("verdict"), out.get("reason"), out.get("to")))
    print(out.get("receipt") or "")
    return 0


def cmd_circuit(args: argparse.Namespace) -> int:
    from harness.pipeline import breaker as circuit
    state_dir, now = Path(args.state_dir), _now(args)
    b = circuit.Breaker(state_dir, Policy.from_pairs(args.cfg))
    if args.action == "close":
        c = b.reset(f"closed by {args.by}")
    elif args.action == "open":
        c = b.force_open(f"opened by {args.by}", now)
    elif args.action == "record":
        c = b.record(args.session, args.result, args.verdict, args.reason, now)
    else:
        c = b.status(now)
    if args.json:
        sys.stdout.buffer.write(jsonio.dumps(c) + b"\n")
    else:
        print(f"circuit: {circuit.describe(c, now)}")
    return 0


def cmd_pause(args: argparse.Namespace) -> int:
    from harness.pipeline import gate
    state_dir, now = Path(args.state_dir), _now(args)
    if args.action == "clear":
        print("resumed: spawning allowed" if gate.clear_pause(state_dir, args.by) else "not paused")
        return 0
    if args.action == "set":
        gate.write_pause(state_dir, now + args.seconds, args.reason or f"paused by {args.by}", by="operator")
    p = gate.active_pause(state_dir, now)
    if args.json:
        sys.stdout.buffer.write(jsonio.dumps(p) + b"\n")
    elif p:
        print(f"paused until {p.get('until')} ({max(0.0, float(p['until_epoch']) - now):.0f}s more): {p.get('reason')}")
    else:
        print("not paused")
    return 0


def cmd_sidecar(args: argparse.Namespace) -> int:
    from harness import sidecar

    opts = sidecar.Options(
        state_dir=Path(args.state_dir).resolve(),
        stall_s=args.stall_timeout_s,
        tool_s=args.tool_timeout_s,
        heartbeat_s=args.heartbeat_s,
        poll_s=args.monitor_poll_s,
        loop_pid=args.loop_pid,
        loop_start=args.loop_start,
        policy=Policy.from_pairs(args.cfg),
    )
    return sidecar.main(opts)


def cmd_events(args: argparse.Namespace) -> int:
    from harness.report import export, sessions, watch
    from harness.report import session_report as report
    from harness.report.style import Style

    state_dir = Path(args.state_dir)
    color = False if args.no_color else None
    # session text escaped on a terminal or with --safe; never with --raw
    safe = False if getattr(args, "raw", False) else (True if getattr(args, "safe", False) else None)
    st = Style(sys.stdout, color, safe)
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


def cmd_status(args: argparse.Namespace) -> int:
    from harness.report import status

    return status.main(Path(args.state_dir), Policy.from_pairs(args.cfg), args.heartbeat_s, args.json, args.watch,
                       args.no_color)


def cmd_worktrees(args: argparse.Namespace) -> int:
    from harness.pipeline import worktrees

    state_dir, now = Path(args.state_dir), _now(args)
    if args.action == "prune":
        gone = worktrees.prune(state_dir, args.repo, args.older_than_days * 86400, args.dry_run, now)
        verb = "would remove" if args.dry_run else "removed"
        for path in gone:
            print(f"{verb} {path}")
        print(f"{verb} {len(gone)} worktree(s)")
        return 0
    rows = worktrees.kept(state_dir, now)
    if args.json:
        sys.stdout.buffer.write(jsonio.dumps(rows, pretty=True) + b"\n")
        return 0
    print(f"{'SESSION':<18} {'ITEM':<24} {'VERDICT':<14} {'AGE':>6}  BRANCH / PATH")
    for r in rows:
        age = f"{r['age_s'] / 86400:.1f}d" if r["age_s"] >= 86400 else f"{r['age_s'] / 3600:.1f}h"
        print(f"{r['session'][:18]:<18} {_cell(r['item'], 24):<24} {_cell('live' if r['live'] else r['verdict'], 14):<14} "
              f"{age:>6}  {r['branch'] or r['path']}")
    return 0


def verb_usage(script: Path, verb: str) -> str | None:
    """One command's usage from a script's help block (its leading comments): the
    "#   <command> ..." lines and their deeper-indented continuations, under the Usage
    line with "<command> [args]" replaced by the command's first syntax (cut where two
    spaces begin its description). None when the block names no such command."""
    block: list[str] = []
    for line in script.read_text(encoding="utf-8").splitlines()[1:]:
        if not line.startswith("#"):
            break
        block.append(line[2:] if line.startswith("# ") else line[1:])
    usage = next((b.removeprefix("Usage: ") for b in block if b.startswith("Usage: ")), script.name)
    own, body = False, []
    for b in block:
        if b.startswith(f"  {verb} ") or b == f"  {verb}":
            own = True
            body.append(b)
        elif own and b.startswith("   "):
            body.append(b)
        else:
            own = False
    if not body:
        return None
    syntax = re.split(r"\s{2,}", body[0].strip(), maxsplit=1)[0]
    return (f"Usage: {usage.split('<command>')[0]}{syntax}\n\n" + "\n".join(body)
            + f"\n\n{script.name} --help: every command, the options and the exit codes\n")


def cmd_usage(args: argparse.Namespace) -> int:
    text = verb_usage(Path(args.script), args.verb)
    if text is None:
        print(f"harness: {Path(args.script).name} has no command {args.verb!r} (see --help)", file=sys.stderr)
        return EXIT_REFUSED
    sys.stdout.write(text)
    return 0


def cmd_receipt(args: argparse.Namespace) -> int:
    from harness.pipeline import receipt
    print(receipt.line(jsonio.read_json(Path(args.session_dir) / "metrics.json")))
    return 0


def _with_policy(p: argparse.ArgumentParser) -> None:
    p.add_argument("--cfg", action="append", default=[], metavar="KEY=VALUE", help="policy configuration")
    p.add_argument("--now", type=float, help="the clock, in epoch seconds (tests)")


def _with_state(sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str) -> argparse.ArgumentParser:
    p = sub.add_parser(name)
    p.add_argument("--state-dir", required=True)
    return p


def _queue_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = _with_state(sub, "queue-add")
    p.add_argument("--file")
    p.add_argument("--label", help="how errors name the input (default: the file, or stdin)")
    p.set_defaults(fn=cmd_queue_add)
    p = _with_state(sub, "queue-list")
    p.add_argument("--state", action="append")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_queue_list)
    for name, fn in (("queue-show", cmd_queue_show), ("queue-cancel", cmd_queue_cancel), ("queue-retry", cmd_queue_retry)):
        p = _with_state(sub, name)
        p.add_argument("id")
        p.set_defaults(fn=fn)
    p = _with_state(sub, "queue-ready")
    p.set_defaults(fn=cmd_queue_ready)


def _loop_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """What the loop asks: start, finalize, the sidecar, the breaker and the pause."""
    p = _with_state(sub, "start")
    p.add_argument("--session", required=True)
    p.add_argument("--worker", required=True)
    p.add_argument("--loop-pid", type=int, default=0)
    _with_policy(p)
    p.set_defaults(fn=cmd_start)
    p = _with_state(sub, "finalize")
    p.add_argument("--session-dir", required=True)
    _with_policy(p)
    p.set_defaults(fn=cmd_finalize)
    p = _with_state(sub, "circuit")
    p.add_argument("action", choices=["status", "close", "open", "record"])
    p.add_argument("--json", action="store_true")
    p.add_argument("--by", default="operator")
    p.add_argument("--session", default="manual")
    p.add_argument("--result", choices=["failure", "success", "neutral"], default="failure")
    p.add_argument("--verdict", default="api_error")
    p.add_argument("--reason", default="recorded by hand")
    _with_policy(p)
    p.set_defaults(fn=cmd_circuit)
    p = _with_state(sub, "pause")
    p.add_argument("action", choices=["show", "set", "clear"])
    p.add_argument("--seconds", type=float, default=3600.0)
    p.add_argument("--reason")
    p.add_argument("--json", action="store_true")
    p.add_argument("--by", default="operator")
    _with_policy(p)
    p.set_defaults(fn=cmd_pause)
    p = _with_state(sub, "sidecar")
    p.add_argument("--stall-timeout-s", type=float, default=config.default("STALL_TIMEOUT_S"))
    p.add_argument("--tool-timeout-s", type=float, default=config.default("TOOL_TIMEOUT_S"))
    p.add_argument("--heartbeat-s", type=float, default=config.default("HEARTBEAT_S"))
    p.add_argument("--monitor-poll-s", type=float, default=config.default("MONITOR_POLL_S"))
    p.add_argument("--loop-pid", type=int, default=0)
    p.add_argument("--loop-start", default="")
    _with_policy(p)
    p.set_defaults(fn=cmd_sidecar)


def _events_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """parse-session-events.sh's verbs."""
    p = _with_state(sub, "events")
    p.add_argument("--no-color", action="store_true")
    ev = p.add_subparsers(dest="events_cmd", required=True)
    e = ev.add_parser("list")
    e.add_argument("--json", action="store_true")
    e.add_argument("--limit", type=int, default=0)
    e.add_argument("--item")
    e = ev.add_parser("cost")
    e.add_argument("--json", action="store_true")
    e.add_argument("--since")
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


def _operator_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """worktrees, status, and the helpers' own: serve, usage, receipt."""
    p = _with_state(sub, "worktrees")
    p.add_argument("action", choices=["list", "prune"])
    p.add_argument("--repo", default="")
    p.add_argument("--older-than-days", type=float, default=config.default("WORKTREE_MAX_AGE_DAYS"))
    p.add_argument("--dry-run", action="store_true")
    p.add_argument("--json", action="store_true")
    _with_policy(p)
    p.set_defaults(fn=cmd_worktrees)
    p = _with_state(sub, "status")
    p.add_argument("--json", action="store_true")
    p.add_argument("--watch", type=float, default=0.0, metavar="SECONDS")
    p.add_argument("--heartbeat-s", type=float, default=config.default("HEARTBEAT_S"))
    p.add_argument("--no-color", action="store_true")
    _with_policy(p)
    p.set_defaults(fn=cmd_status)
    p = sub.add_parser("serve", help="the loop's long-lived helper (lib/harness/serve/helper.py)")
    p.set_defaults(fn=cmd_serve)
    p = sub.add_parser("usage", help="one command's usage, from a script's help block (its --help)")
    p.add_argument("--script", required=True)
    p.add_argument("verb")
    p.set_defaults(fn=cmd_usage)
    p = sub.add_parser("receipt")
    p.add_argument("--session-dir", required=True)
    p.set_defaults(fn=cmd_receipt)


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m harness")
    sub = ap.add_subparsers(dest="cmd", required=True)
    for add in (_queue_parsers, _loop_parsers, _events_parsers, _operator_parsers):
        add(sub)
    return ap


def cmd_serve(args: argparse.Namespace) -> int:
    from harness.serve import helper as serve

    return serve.serve(main)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in loopcalls.COMMANDS:
        return loopcalls.run(argv[0], argv[1:])
    args = parser().parse_args(argv)
    try:
        return int(args.fn(args))
    except (queue.QueueError, config.ConfigError) as exc:
        print(f"harness: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except BrokenPipeError:
        return 0
    except OSError as exc:  # a full disk, permissions: one line, never a traceback
        print(f"harness: {args.cmd}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
