"""The helpers as one long-lived process: the loop's coprocess.

A helper started per call spends about 85 ms on the interpreter and imports for
about 5 ms of work; the loop makes two such calls per session (start and
finalize). Served from one process they cost the work alone.

Protocol, on stdin and stdout: a request is the argument count, then the
arguments, each ended by a NUL byte (bash: printf '%s\\0' "$#" "$@"). The answer
is one line "<exit code> <bytes>" and then that many bytes: what the command
would have printed. Its stderr goes where the server's goes. The server leaves at
end of input, that is when its loop is gone, after finishing the request in hand.

Besides every command of ``python -m harness``, the server answers requests that
only a running loop makes (LOOP_COMMANDS): ``drain-check``.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path


class Requests:
    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.buf = b""

    def field(self) -> bytes | None:
        while b"\0" not in self.buf:
            chunk = os.read(self.fd, 65536)
            if not chunk:
                return None
            self.buf += chunk
        value, _, self.buf = self.buf.partition(b"\0")
        return value

    def next(self) -> list[str] | None:
        count = self.field()
        if count is None:
            return None
        args = []
        for _ in range(int(count)):
            value = self.field()
            if value is None:
                return None
            args.append(value.decode("utf-8", "surrogateescape"))
        return args


def drain_check(argv: list[str]) -> int:
    """drain-check --state-dir DIR --max-wait-s S [--cfg KEY=VALUE]... [--now EPOCH]: what a
    draining loop waits for, or leaves behind (gate.drain_check): one line, fields apart
    by US (gate.Drain.line), then the groups of items left as JSON for the audit log."""
    from . import gate, jsonio
    from .policy import Policy

    ap = argparse.ArgumentParser(prog="drain-check")
    ap.add_argument("--state-dir", required=True)
    ap.add_argument("--max-wait-s", type=float, required=True)
    ap.add_argument("--cfg", action="append", default=[])
    ap.add_argument("--now", type=float)
    args = ap.parse_args(argv)
    now = time.time() if args.now is None else args.now
    try:
        d = gate.drain_check(Path(args.state_dir), Policy.from_pairs(args.cfg), now, args.max_wait_s)
    except OSError as exc:  # one line, as __main__ says it, never a traceback
        print(f"harness: drain-check: {exc}", file=sys.stderr)
        return 1
    print(d.line(now))
    print(jsonio.dumps([g.as_dict() for g in d.left]).decode())
    return 0


LOOP_COMMANDS: dict[str, Callable[[list[str]], int]] = {"drain-check": drain_check}


def dispatch(args: list[str]) -> int:
    if args and args[0] in LOOP_COMMANDS:
        return LOOP_COMMANDS[args[0]](args[1:])
    from .__main__ import main

    return main(args)


def run(args: list[str]) -> tuple[int, bytes]:
    capture = io.BytesIO()
    text = io.TextIOWrapper(capture, encoding="utf-8", errors="surrogateescape", write_through=True)
    real = sys.stdout
    sys.stdout = text
    try:
        rc = dispatch(args)
    except SystemExit as exc:  # argparse
        rc = exc.code if isinstance(exc.code, int) else 2
    except Exception:  # a bug in one command must not take the loop's helper down
        traceback.print_exc()
        rc = 1
    finally:
        text.flush()
        sys.stdout = real
    data = capture.getvalue()
    text.detach()
    return rc, data


def serve() -> int:
    requests = Requests(sys.stdin.fileno())
    out = sys.stdout.buffer
    while True:
        args = requests.next()
        if args is None:
            return 0
        rc, data = run(args)
        out.write(f"{rc} {len(data)}\n".encode() + data)
        out.flush()
