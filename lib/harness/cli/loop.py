"""What the loop (and loopctl.sh) asks the helpers: start, finalize, the sidecar,
the breaker and the pause."""

from __future__ import annotations

import argparse
import random
import sys
from pathlib import Path

from harness import config, jsonio
from harness.cli.common import EXIT_BLOCKED, EXIT_FINISH, EXIT_NOTHING, Subparsers, now_of, with_policy, with_state
from harness.pipeline.policy import Policy
from harness.serve import reply


def cmd_start(args: argparse.Namespace) -> int:
    from harness.pipeline import gate, start

    got = start.start(Path(args.state_dir), args.session, args.worker, args.loop_pid, Policy.from_pairs(args.cfg),
                      now_of(args))
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
        out = finish.finalize(Path(args.session_dir), Path(args.state_dir), Policy.from_pairs(args.cfg), now_of(args),
                              random.Random())
    except finish.FinishError as exc:
        print(f"harness: {exc}", file=sys.stderr)
        return EXIT_FINISH
    # for the loop (serve/reply.py): verdict, reason, the state the item went to (empty:
    # orphaned or fenced), the worktree to remove (empty: kept); then the receipt's line
    print(reply.line(out.get("verdict"), out.get("reason"), out.get("to"), out.get("release")))
    print(out.get("receipt") or "")
    return 0


def cmd_circuit(args: argparse.Namespace) -> int:
    from harness.pipeline import breaker as circuit
    state_dir, now = Path(args.state_dir), now_of(args)
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
    state_dir, now = Path(args.state_dir), now_of(args)
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
        metrics_textfile=Path(args.metrics_textfile) if args.metrics_textfile else None,
        metrics_s=args.metrics_interval_s,
    )
    return sidecar.main(opts)



def cmd_integrate(args: argparse.Namespace) -> int:
    """One turn of the merge queue (pipeline/integrate.py): prints what it did; exit 0
    when it landed or sent back an item, 10 when none is ready, 11 when another
    integration runs or the target kept moving (try later); --check: only whether the
    configuration can work (exit 2 and why when it cannot)."""
    from harness.pipeline import integrate
    from harness.sidecar import wake_loop

    p = Policy.from_pairs(args.cfg)
    try:
        if args.check:
            integrate.check(p)
            return 0
        did = integrate.integrate_one(Path(args.state_dir), p, now_of(args))
    except integrate.IntegrateError as exc:
        raise config.ConfigError(str(exc)) from None
    finally:
        if not args.check:
            wake_loop(Path(args.state_dir))  # the loop reaps it at once
    print(did)
    return {"nothing": EXIT_NOTHING, "busy": EXIT_BLOCKED, "retry": EXIT_BLOCKED}.get(did, 0)


def add_parsers(sub: Subparsers) -> None:
    """What the loop asks: start, finalize, integrate, the sidecar, the breaker and the pause."""
    p = with_state(sub, "start")
    p.add_argument("--session", required=True)
    p.add_argument("--worker", required=True)
    p.add_argument("--loop-pid", type=int, default=0)
    with_policy(p)
    p.set_defaults(fn=cmd_start)
    p = with_state(sub, "finalize")
    p.add_argument("--session-dir", required=True)
    with_policy(p)
    p.set_defaults(fn=cmd_finalize)
    p = with_state(sub, "integrate")
    p.add_argument("--check", action="store_true")
    with_policy(p)
    p.set_defaults(fn=cmd_integrate)
    p = with_state(sub, "circuit")
    p.add_argument("action", choices=["status", "close", "open", "record"])
    p.add_argument("--json", action="store_true")
    p.add_argument("--by", default="operator")
    p.add_argument("--session", default="manual")
    p.add_argument("--result", choices=["failure", "success", "neutral"], default="failure")
    p.add_argument("--verdict", default="api_error")
    p.add_argument("--reason", default="recorded by hand")
    with_policy(p)
    p.set_defaults(fn=cmd_circuit)
    p = with_state(sub, "pause")
    p.add_argument("action", choices=["show", "set", "clear"])
    p.add_argument("--seconds", type=float, default=3600.0)
    p.add_argument("--reason")
    p.add_argument("--json", action="store_true")
    p.add_argument("--by", default="operator")
    with_policy(p)
    p.set_defaults(fn=cmd_pause)
    p = with_state(sub, "sidecar")
    p.add_argument("--stall-timeout-s", type=float, default=config.default("STALL_TIMEOUT_S"))
    p.add_argument("--tool-timeout-s", type=float, default=config.default("TOOL_TIMEOUT_S"))
    p.add_argument("--heartbeat-s", type=float, default=config.default("HEARTBEAT_S"))
    p.add_argument("--monitor-poll-s", type=float, default=config.default("MONITOR_POLL_S"))
    p.add_argument("--metrics-textfile", default="")
    p.add_argument("--metrics-interval-s", type=float, default=config.default("METRICS_INTERVAL_S"))
    p.add_argument("--loop-pid", type=int, default=0)
    p.add_argument("--loop-start", default="")
    with_policy(p)
    p.set_defaults(fn=cmd_sidecar)

