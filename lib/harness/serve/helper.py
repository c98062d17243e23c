"""The helpers as one long-lived process: the loop's coprocess.

A helper started per call spends about 85 ms on the interpreter and imports for
about 5 ms of work; the loop makes two such calls per session (start and
finalize). Served from one process they cost the work alone.

Protocol, on stdin and stdout: a request is the argument count, then the
arguments, each ended by a NUL byte (bash: printf '%s\\0' "$#" "$@"). The answer
is one line "<exit code> <bytes>" and then that many bytes: what the command
would have printed. Its stderr goes where the server's goes. The server leaves at
end of input, that is when its loop is gone, after finishing the request in hand.

It answers every command of ``python -m harness``, the loop's own calls
(loopcalls.py) among them.
"""

from __future__ import annotations

import io
import os
import sys
import traceback
from collections.abc import Callable


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


Dispatch = Callable[[list[str]], int]


def run(dispatch: Dispatch, args: list[str]) -> tuple[int, bytes]:
    """One request: the command's exit code and what it printed."""
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


def serve(dispatch: Dispatch) -> int:
    """Answers requests until end of input; dispatch runs one command (__main__.main)."""
    requests = Requests(sys.stdin.fileno())
    out = sys.stdout.buffer
    while True:
        args = requests.next()
        if args is None:
            return 0
        rc, data = run(dispatch, args)
        out.write(f"{rc} {len(data)}\n".encode() + data)
        out.flush()
