"""The calls only the loop's bash makes: each takes its argv as it comes and
answers in the one reply format of the helper pipe: lines whose fields are apart
by US (0x1f), the separator no field holds.

    audit --log FILE EVENT [--arg KEY VALUE | --argjson KEY JSON]...   one audit line
    stop-record --session-dir D --reason R --detail T --by B   kill.json, once
    loop-heartbeat --state-dir D [--arg K V | --argjson K J]... state/loop.heartbeat.json
    reconcile --state-dir D --loop-pid N [--cfg K=V]...       what an earlier loop left
    drain-check --state-dir D --max-wait-s S [--cfg K=V]...    what a drain waits for
    sd-notify --socket PATH FIELD...                           a datagram to systemd (sdnotify.py)
    sandbox-settle --session-dir D                             a sandboxed agent's git, settled

They run in the helper coprocess (serve/helper.py) or, without one, as
`python -m harness <call> ...`.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness import jsonio
from harness.pipeline import stops
from harness.store import StoreError

US = "\x1f"
BEAT_FAILING: set[str] = set()  # state directories whose fleet heartbeat failed: said once, until it works


class CallError(Exception):
    """A malformed call: one line on stderr, exit 2."""


def _fields(argv: list[str]) -> dict[str, Any]:
    """--arg KEY VALUE and --argjson KEY JSON pairs, in order (as jq's $ARGS.named)."""
    out: dict[str, Any] = {}
    i = 0
    while i < len(argv):
        flag = argv[i]
        if flag not in ("--arg", "--argjson"):
            raise CallError(f"expected --arg KEY VALUE or --argjson KEY JSON, got {flag!r}")
        if i + 2 >= len(argv):
            raise CallError(f"{flag} needs a key and a value")
        key, value = argv[i + 1], argv[i + 2]
        if flag == "--arg":
            out[key] = value
        else:
            try:
                out[key] = jsonio.loads(value)
            except ValueError:
                raise CallError(f"--argjson {key}: not JSON: {value[:80]!r}") from None
        i += 3
    return out


def audit(argv: list[str]) -> int:
    """audit --log FILE EVENT [--arg K V | --argjson K JSON]...: one line in the audit
    log, written with one O_APPEND write (concurrent writers never interleave)."""
    if len(argv) < 3 or argv[0] != "--log":
        raise CallError("expected --log FILE EVENT [--arg KEY VALUE | --argjson KEY JSON]...")
    log, event = argv[1], argv[2]
    fields = _fields(argv[3:])
    jsonio.append_line(log, jsonio.dumps({"ts": jsonio.utc_now_iso(), "event": event, **fields}) + b"\n")
    return 0


def stop_record(argv: list[str]) -> int:
    """stop-record: creates the session's kill.json unless it exists (stops.record).
    Prints "created", or "exists<US>reason" of the stop that came first."""
    ap = argparse.ArgumentParser(prog="stop-record")
    ap.add_argument("--session-dir", required=True)
    ap.add_argument("--reason", required=True, choices=stops.REASONS)
    ap.add_argument("--detail", default="")
    ap.add_argument("--by", required=True)
    args = ap.parse_args(argv)
    first = stops.record(Path(args.session_dir), args.reason, args.detail, args.by, time.time())
    print("created" if first is None else f"exists{US}{first.get('reason') or '?'}")
    return 0


def loop_heartbeat(argv: list[str]) -> int:
    """loop-heartbeat --state-dir D [--arg K V | --argjson K JSON]...: the loop's own
    heartbeat, state/loop.heartbeat.json, written whole (atomically)."""
    if len(argv) < 2 or argv[0] != "--state-dir":
        raise CallError("expected --state-dir DIR [--arg KEY VALUE | --argjson KEY JSON]...")
    state_dir, fields = Path(argv[1]), _fields(argv[2:])
    jsonio.write_json(state_dir / "loop.heartbeat.json", fields)
    _fleet_beat(state_dir, fields)
    return 0


def _fleet_beat(state_dir: Path, fields: dict[str, Any]) -> None:
    """With a shared store (postgres): this host's heartbeat in the database, and its
    leases renewed. A database that does not answer is said once per beat; the
    leases then run out, and another host takes the items over: as it should."""
    from harness.store import StoreError, backend_of, open_store

    try:
        if backend_of(state_dir) != "postgres":
            return
        open_store(state_dir).beat(fields)
    except StoreError as exc:
        if str(state_dir) not in BEAT_FAILING:
            print(f"harness: the fleet heartbeat failed (leases not renewed until it works again): {exc}",
                  file=sys.stderr, flush=True)
        BEAT_FAILING.add(str(state_dir))
    else:
        if str(state_dir) in BEAT_FAILING:
            BEAT_FAILING.discard(str(state_dir))
            print("harness: the fleet heartbeat works again", file=sys.stderr, flush=True)


def reconcile(argv: list[str]) -> int:
    """reconcile --state-dir D --loop-pid N [--cfg K=V]...: returns the unstarted
    sessions' items to pending; prints one line per session to adopt (reconcile.Adopt)."""
    from harness.pipeline import reconcile as rec
    from harness.pipeline.policy import Policy
    from harness.store import open_store

    ap = argparse.ArgumentParser(prog="reconcile")
    ap.add_argument("--state-dir", required=True)
    ap.add_argument("--loop-pid", type=int, required=True)
    ap.add_argument("--cfg", action="append", default=[])
    args = ap.parse_args(argv)
    for a in rec.reconcile(open_store(Path(args.state_dir)), args.loop_pid, Policy.from_pairs(args.cfg)):
        print(a.line())
    return 0


def drain_check(argv: list[str]) -> int:
    """drain-check --state-dir DIR --max-wait-s S [--cfg KEY=VALUE]... [--now EPOCH]: what a
    draining loop waits for, or leaves behind (gate.drain_check): one line, fields apart
    by US (gate.Drain.line), then the groups of items left as JSON for the audit log."""
    from harness.pipeline import gate
    from harness.pipeline.policy import Policy

    ap = argparse.ArgumentParser(prog="drain-check")
    ap.add_argument("--state-dir", required=True)
    ap.add_argument("--max-wait-s", type=float, required=True)
    ap.add_argument("--cfg", action="append", default=[])
    ap.add_argument("--now", type=float)
    args = ap.parse_args(argv)
    now = time.time() if args.now is None else args.now
    d = gate.drain_check(Path(args.state_dir), Policy.from_pairs(args.cfg), now, args.max_wait_s)
    print(d.line(now))
    print(jsonio.dumps([g.as_dict() for g in d.left]).decode())
    return 0


def sd_notify(argv: list[str]) -> int:
    """sd-notify --socket PATH KEY=VALUE...: one notify datagram (READY=1, STATUS=...,
    WATCHDOG=1, STOPPING=1) to systemd's socket."""
    from harness.serve import sdnotify

    if len(argv) < 3 or argv[0] != "--socket":
        raise CallError("expected --socket PATH KEY=VALUE...")
    try:
        sdnotify.send(argv[1], argv[2:])
    except ValueError as exc:
        raise CallError(str(exc)) from None
    except OSError as exc:  # the loop says it, once (lib/notify.sh)
        print(exc)
        return 1
    return 0


def sandbox_settle(argv: list[str]) -> int:
    """sandbox-settle --session-dir D: after a sandboxed agent (the wrapper's call,
    settle.argv): its objects imported, its branch at its HEAD (pipeline/sandbox.py)."""
    from harness.pipeline import sandbox

    if len(argv) != 2 or argv[0] != "--session-dir":
        raise CallError("expected --session-dir DIR")
    done = sandbox.settle(Path(argv[1]))
    if done:
        print(done)
    return 0


COMMANDS: dict[str, Callable[[list[str]], int]] = {
    "audit": audit,
    "stop-record": stop_record,
    "loop-heartbeat": loop_heartbeat,
    "reconcile": reconcile,
    "drain-check": drain_check,
    "sd-notify": sd_notify,
    "sandbox-settle": sandbox_settle,
}


def run(name: str, argv: list[str]) -> int:
    """One call; a malformed one or an OSError is one line on stderr, never a traceback."""
    try:
        return COMMANDS[name](argv)
    except CallError as exc:
        print(f"harness: {name}: {exc}", file=sys.stderr)
        return 2
    except (OSError, StoreError, sqlite3.Error) as exc:  # a store that cannot be used: one line, never a traceback
        print(f"harness: {name}: {exc}", file=sys.stderr)
        return 1
