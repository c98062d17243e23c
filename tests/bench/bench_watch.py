"""watch: from a line appended to events.jsonl to the line printed.

    python tests/bench/bench_watch.py [--lines 200]

Runs `parse-session-events.sh watch <id>` on a live session and appends text-delta
lines at random intervals (20-80 ms), each carrying a numbered marker; the time
from each append to the marker arriving on watch's stdout is the latency.
"""

from __future__ import annotations

import argparse
import os
import random
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, make_session, pct


def delta(text: str) -> bytes:
    return orjson.dumps({"type": "stream_event", "event": {"type": "content_block_delta", "index": 0,
                                                           "delta": {"type": "text_delta", "text": text}}}) + b"\n"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", type=int, default=200)
    args = ap.parse_args()
    state = ROOT / ".bench" / "watch-state"
    shutil.rmtree(state, ignore_errors=True)
    d = make_session(state, "watched")
    events = d / "events.jsonl"
    events.write_bytes(orjson.dumps({"type": "system", "subtype": "init", "model": "claude-opus-4-8"}) + b"\n")
    watch = subprocess.Popen([str(ROOT / "scripts" / "parse-session-events.sh"), "--state", str(state), "watch", d.name],
                             stdout=subprocess.PIPE, env={**os.environ, "NO_COLOR": "1"})
    assert watch.stdout is not None
    out = watch.stdout.fileno()
    buf = b""

    def read_until(marker: bytes, timeout_s: float) -> float | None:
        nonlocal buf
        deadline = time.monotonic() + timeout_s
        while marker not in buf:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([out], [], [], left)[0]:
                return None
            chunk = os.read(out, 65536)
            if not chunk:
                return None
            buf += chunk
        buf = buf[buf.index(marker) + len(marker):]
        return time.monotonic()

    read_until(b"session", 10)  # watch is up and has printed the init line
    rng = random.Random(5)
    lat: list[float] = []
    with open(events, "ab", buffering=0) as fh:
        for k in range(args.lines):
            time.sleep(rng.uniform(0.02, 0.08))
            marker = f"<m{k}>".encode()
            t0 = time.monotonic()
            fh.write(delta(f"<m{k}>\n"))
            got = read_until(marker, 5)
            if got is not None:
                lat.append(got - t0)
    (d / "exit_code").write_text("0\n")
    (d / "metrics.json").write_bytes(orjson.dumps({"session_id": d.name, "verdict": "succeeded"}))
    watch.wait(timeout=10)
    print(f"watch: {len(lat)} of {args.lines} lines seen; append-to-print latency "
          f"p50 {pct(lat, 0.5) * 1000:.1f} ms, p95 {pct(lat, 0.95) * 1000:.1f} ms, max {max(lat) * 1000:.1f} ms "
          f"(target p95 <= 100 ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
