"""The harness's own time per session, with the fast stub agent (target: at most
150 ms each way).

N items run at -j1 with a stub that answers at once. For each session:
  claim -> exec      from the moment the loop was free to start it (the previous
                     session finalized, or the loop started) to the stub's exec
                     (the first item's figure includes the loop's own start-up,
                     so it is left out of the percentiles)
  exit -> finalized  from the wrapper's exit_code (the agent has exited) to the
                     item's move out of running/ (its audit line)
The stub's own run time sits between the two and is not counted.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson
from common import ROOT

N_ITEMS = int(os.environ.get("BENCH_OVERHEAD_ITEMS", "40"))
TARGET_MS = 150.0


def epoch(ts: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def pct(values: list[float], p: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(p / 100 * (len(s) - 1)))]


def measure(store: str, env: dict[str, str], work: Path) -> tuple[list[float], list[float], float]:
    """One drain of N_ITEMS stub sessions on a fresh state directory of that store."""
    state = work / f"state-{store}"
    env = {**env, "HARNESS_STORE": store, "MOCK_CLAUDE_LOG": str(work / f"mock-{store}.log")}
    items = b"".join(orjson.dumps({"id": f"i{i:03d}", "prompt": f"item {i}"}) + b"\n" for i in range(N_ITEMS))
    subprocess.run([str(ROOT / "scripts/queue.sh"), "--state", str(state), "add", "--file", "-"], input=items,
                   env=env, check=True, capture_output=True)
    t0 = time.time()
    subprocess.run([str(ROOT / "loop.sh"), "--state", str(state), "--drain", "-j", "1"], env=env, check=True,
                   capture_output=True)
    wall = time.time() - t0
    execs = sorted(orjson.loads(line)["started"] for line in (work / f"mock-{store}.log").read_bytes().splitlines())
    audit = [orjson.loads(line) for line in (state / "events.jsonl").read_bytes().splitlines()]
    started = {a["session"]: a for a in audit if a["event"] == "session.started"}
    finished = {a["session"]: epoch(a["ts"]) for a in audit if a["event"] == "item.succeeded"}
    exits = {sid: os.stat(state / "sessions" / sid / "exit_code").st_mtime for sid in started}
    order = sorted(started, key=lambda sid: epoch(started[sid]["ts"]))
    claim_ms, exit_ms = [], []
    for k, sid in enumerate(order):
        exit_ms.append((finished[sid] - exits[sid]) * 1000)
        if k > 0:
            claim_ms.append((execs[k] - finished[order[k - 1]]) * 1000)
    return claim_ms, exit_ms, wall


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="bench-overhead-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HARNESS_", "ANTHROPIC_", "MOCK_CLAUDE_"))}
    env.update(CLAUDE_BIN=str(ROOT / "tests/mocks/claude"), HARNESS_QUIET="1", HARNESS_MIN_FREE_MB="0", HOME=str(work))
    medians: dict[str, tuple[float, float]] = {}
    for store in ("files", "sqlite"):  # the files store is the baseline of the same run
        claim_ms, exit_ms, wall = measure(store, env, work)
        print(f"harness overhead, {store} store, {N_ITEMS} sessions of the stub agent at -j1 ({wall:.1f}s wall, "
              f"{wall / N_ITEMS * 1000:.0f} ms per session in all)")
        for name, values in (("claim -> exec", claim_ms), ("exit -> finalized", exit_ms)):
            verdict = "ok" if statistics.median(values) <= TARGET_MS else "over"
            print(f"  {name:18s} p50 {statistics.median(values):6.1f} ms  p95 {pct(values, 95):6.1f} ms  "
                  f"max {max(values):6.1f} ms   target p50 <= {TARGET_MS:.0f} ms: {verdict}")
        medians[store] = (statistics.median(claim_ms), statistics.median(exit_ms))
    (fc, fe), (sc, se) = medians["files"], medians["sqlite"]
    print(f"  sqlite against files (p50): claim -> exec {sc / fc:.2f}x, exit -> finalized {se / fe:.2f}x")
    # baseline, same run: the stub alone, started directly, as the wrapper would
    runs = []
    for _ in range(10):
        b0 = time.time()
        subprocess.run([str(ROOT / "tests/mocks/claude"), "-p"], input=b"hi", env=env, capture_output=True, check=True)
        runs.append((time.time() - b0) * 1000)
    base = statistics.median(runs)
    print(f"  baseline: the stub alone, started directly: p50 {base:.1f} ms; on SQLite the harness adds "
          f"{sc / base:.1f}x that before exec and {se / base:.1f}x after exit")
    subprocess.run(["rm", "-rf", str(work)], check=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
