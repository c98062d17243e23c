"""The loop's helper coprocess (serve/helper.py): its protocol, captured output, exit
codes, errors that do not take it down, and its end when the loop goes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from conftest import ROOT


def request(*args: str) -> bytes:
    return b"".join(a.encode() + b"\0" for a in (str(len(args)), *args))


def answers(out: bytes) -> list[tuple[int, bytes]]:
    got = []
    while out:
        head, _, rest = out.partition(b"\n")
        rc, n = (int(x) for x in head.split())
        got.append((rc, rest[:n]))
        out = rest[n:]
    return got


def test_serves_requests_in_order_until_end_of_input(tmp_path: Path) -> None:
    state = tmp_path / "state"
    item = b'{"id": "a", "prompt": "hello"}'
    subprocess.run([str(ROOT / "scripts/queue.sh"), "--state", str(state), "add", "--file", "-"], input=item,
                   check=True, capture_output=True)
    reqs = (
        request("queue-ready", "--state-dir", str(state))
        + request("queue-show", "--state-dir", str(state), "nope")  # refused: exit 2, one line on stderr
        + request("no-such-command")  # argparse: exit 2, the server goes on
        + request("worktrees", "prune", "--state-dir", str(state), "--repo", "", "--older-than-days", "0")
        + request("queue-ready", "--state-dir", str(state))
    )
    done = subprocess.run([sys.executable, "-m", "harness", "serve"], input=reqs, capture_output=True, timeout=30,
                          env={**os.environ, "PYTHONPATH": str(ROOT / "lib")}, check=False)
    assert done.returncode == 0
    got = answers(done.stdout)
    assert [rc for rc, _ in got] == [0, 2, 2, 0, 0]
    assert got[0][1] == b"a\n" and got[4][1] == b"a\n"
    assert got[3][1] == b"removed 0 worktree(s)\n"  # an empty argument survives the protocol
    assert b"nope" in done.stderr  # the refusal went to stderr, not into an answer
