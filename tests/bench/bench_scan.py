"""summary and metrics of a 1 GB stream-json file against one jq pass and wc -l.

    python tests/bench/bench_scan.py [--mb 1024]

The file is generated once into .bench/ (gen_stream.py: mostly text deltas, with
tool calls and a result) and read once before timing, so every tool reads it from
the page cache. Prints wall times (best of 3; jq runs once) and the ratios.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gen_stream
from common import ROOT, make_session


def timed(argv: list[str], runs: int) -> float:
    best = float("inf")
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(argv, check=True, stdout=subprocess.DEVNULL)
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=int(os.environ.get("BENCH_SCAN_MB", "1024")))
    args = ap.parse_args()
    bench = ROOT / ".bench"
    bench.mkdir(exist_ok=True)
    big = bench / f"stream-{args.mb}mb.jsonl"
    if not big.exists() or big.stat().st_size < args.mb << 20:
        print(f"generating {big} ...", file=sys.stderr)
        gen_stream.write(str(big), args.mb << 20)
    state = bench / "scan-state"
    shutil.rmtree(state, ignore_errors=True)
    d = make_session(state, "bench-scan", lease=False)
    os.link(big, d / "events.jsonl")
    with open(big, "rb") as fh:  # into the page cache
        while fh.read(1 << 24):
            pass
    size_mb = big.stat().st_size / (1 << 20)
    wc = timed(["wc", "-l", str(big)], 3)
    jq = timed(["jq", "-r", ".type", str(big)], 1)
    script = str(ROOT / "scripts" / "parse-session-events.sh")
    summary = timed([script, "--state", str(state), "summary", d.name], 3)
    metrics = timed([script, "--state", str(state), "metrics", d.name, "--json"], 3)
    print(f"scan of {size_mb:.0f} MB stream-json (best of 3; jq once)")
    print(f"  wc -l      {wc:8.3f} s")
    print(f"  jq .type   {jq:8.3f} s")
    for name, t in (("summary", summary), ("metrics", metrics)):
        print(f"  {name:<10} {t:8.3f} s   {jq / t:6.1f}x faster than jq (target >= 20)   "
              f"{t / wc:5.2f}x wc -l (target <= 3)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
