"""The sidecar following 16 live sessions that each append 500 lines a second.

    python tests/bench/bench_sidecar.py [--sessions 16] [--rate 500] [--seconds 60]

One writer process appends realistic delta lines (one write(2) per line, as the CLI
does) to every session's events.jsonl in 10 ms ticks. The sidecar runs with the
loop's default settings. Measured: the sidecar's CPU (utime + stime from /proc over
the run, as a share of one core), its peak RSS (VmHWM), and heartbeat lag: for every
heartbeat.json written, the time from the append of the newest line it counts to
the moment it was written.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, cpu_s, env, make_session, pct, peak_rss_mb

LINE = (b'{"type":"stream_event","event":{"type":"content_block_delta","index":0,"delta":{"type":"text_delta",'
        b'"text":"the build passes now "}},"session_id":"8f1e2851-5462-42e2-97f2-5ebe08065c22",'
        b'"parent_tool_use_id":null,"uuid":"8a6e2851-5462-42e2-97f2-5ebe08065c22"}\n')
TICK_S = 0.01


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", type=int, default=16)
    ap.add_argument("--rate", type=int, default=500)
    ap.add_argument("--seconds", type=float, default=float(os.environ.get("BENCH_SIDECAR_S", "60")))
    args = ap.parse_args()
    state = ROOT / ".bench" / "sidecar-state"
    shutil.rmtree(state, ignore_errors=True)
    dirs = [make_session(state, f"item{i}") for i in range(args.sessions)]
    fds = [os.open(d / "events.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600) for d in dirs]
    for fd in fds:
        os.write(fd, orjson.dumps({"type": "system", "subtype": "init", "model": "claude-opus-4-8"}) + b"\n")
    car = subprocess.Popen([sys.executable, "-m", "harness", "sidecar", "--state-dir", str(state)], env=env(),
                           stderr=open(state / "sidecar.log", "wb"))  # noqa: SIM115
    time.sleep(2.0)  # the sidecar finds the sessions; not measured
    cpu0, t_start = cpu_s(car.pid), time.monotonic()
    per_tick = max(1, int(args.rate * TICK_S))
    appended = [1] * len(dirs)  # lines per file so far
    history: list[list[tuple[int, float]]] = [[(1, time.time())] for _ in dirs]  # (count, wall time appended)
    seen: list[float] = [0.0] * len(dirs)
    lags: list[float] = []
    k = 0
    while time.monotonic() - t_start < args.seconds:
        k += 1
        for i, fd in enumerate(fds):
            for _ in range(per_tick):
                os.write(fd, LINE)
            appended[i] += per_tick
            history[i].append((appended[i], time.time()))
        for i, d in enumerate(dirs):  # read heartbeats as a status screen would
            try:
                hb = orjson.loads((d / "heartbeat.json").read_bytes())
            except (OSError, ValueError):
                continue
            if hb["written_at"] != seen[i]:
                seen[i] = hb["written_at"]
                n = hb["events"]
                # when the newest line it counts was appended
                first = next((t for c, t in history[i] if c >= n), None)
                if first is not None:
                    lags.append(max(0.0, hb["written_at"] - first))
        delay = t_start + k * TICK_S - time.monotonic()
        if delay > 0:
            time.sleep(delay)
    elapsed = time.monotonic() - t_start
    cpu = (cpu_s(car.pid) - cpu0) / elapsed * 100
    rss = peak_rss_mb(car.pid)
    car.send_signal(signal.SIGTERM)
    car.wait(timeout=10)
    for fd in fds:
        os.close(fd)
    total = sum(appended) - len(dirs)
    print(f"sidecar: {args.sessions} sessions x {args.rate} lines/s for {elapsed:.0f} s ({total:,} lines)")
    print(f"  CPU            {cpu:6.1f} % of one core   (target <= 10)")
    print(f"  peak RSS       {rss:6.1f} MB              (target <= 60)")
    print(f"  heartbeat lag  p50 {pct(lags, 0.5) * 1000:.0f} ms, p99 {pct(lags, 0.99) * 1000:.0f} ms over "
          f"{len(lags)} heartbeats (target p99 <= 200 ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
