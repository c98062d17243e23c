"""cost --transcripts against ccusage 20.0.24 on the same tree of transcripts, in the same run.

    .venv/bin/python tests/bench/bench_transcript_cost.py [--sessions 2000] [--out .bench/transcript-cost.json]

The tree (gen_transcripts.py: 2,000 sessions, about 90 MB, in .bench/transcripts/)
is made once and read once before timing, so both tools read it from the page
cache. Timed, best of 3: ccusage's `claude session --json --offline` (a native
binary); our report in this process (usage.tally: reading, deduplicating, pricing);
and the whole command (parse-session-events.sh cost --transcripts DIR --json, a
fresh shell and interpreter). Both must agree on every session's tokens.

Target (issue 16): at least 10x faster than ccusage, whole command. Also timed: the
command with its scan cache (report/scan_cache.py) warm, and after 1% of the files
grew by a line (on a copy of the tree).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "lib"))

import gen_transcripts
from common import ROOT, env
from harness.report.prices import CostMode, PriceBook
from harness.report.usage import tally

CCUSAGE = ROOT / ".tools" / "ccusage" / "node_modules" / ".bin" / "ccusage"
TARGET_RATIO = 10.0


def best_of(fn: Callable[[], object], times: int = 3) -> float:
    best = float("inf")
    for _ in range(times):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def run(argv: list[str], extra_env: dict[str, str]) -> bytes:
    return subprocess.run(argv, check=True, capture_output=True, env={**env(), **extra_env}).stdout


def corpus(root: Path, sessions: int) -> int:
    stamp = root / f".made-{sessions}"
    if not stamp.exists():
        print(f"generating {sessions} sessions in {root} ...", file=sys.stderr)
        subprocess.run(["rm", "-rf", str(root)], check=True)
        gen_transcripts.write(root, sessions)
        stamp.touch()
    size = 0
    for d, _, names in os.walk(root):
        for n in names:
            with open(os.path.join(d, n), "rb") as fh:  # into the page cache
                size += len(fh.read())
    return size


def agree(cc: bytes, ours: bytes) -> int:
    theirs = {(s["projectPath"], s["sessionId"]): (s["inputTokens"], s["outputTokens"], s["cacheReadTokens"],
                                                   s["cacheCreationTokens"]) for s in orjson.loads(cc)["sessions"]}
    mine = {(s["project"], s["session"]): tuple(s["tokens"][k] for k in ("input", "output", "cache_read", "cache_write"))
            for s in orjson.loads(ours)["sessions"]}
    assert mine == theirs, "ccusage and cost --transcripts disagree"
    return len(mine)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sessions", type=int, default=2000)
    ap.add_argument("--out", type=Path, default=ROOT / ".bench" / "transcript-cost.json")
    args = ap.parse_args()
    root = ROOT / ".bench" / "transcripts"
    size = corpus(root, args.sessions)
    cc_env = {"CLAUDE_CONFIG_DIR": str(root), "NO_COLOR": "1"}
    cc_argv = [str(CCUSAGE), "claude", "session", "--json", "--offline"]
    script = [str(ROOT / "scripts" / "parse-session-events.sh"), "--state", str(root / "no-state"), "cost",
              "--transcripts", str(root / "projects"), "--json"]
    n = agree(run(cc_argv, cc_env), run([*script, "--no-cache"], {}))
    cc_s = best_of(lambda: run(cc_argv, cc_env))
    ours_s = best_of(lambda: tally(root / "projects", CostMode.AUTO, PriceBook()))
    cli_s = best_of(lambda: run([*script, "--no-cache"], {}))
    warm, tail = cached(root, script)
    ratio = cc_s / cli_s
    print(f"transcript cost of {n:,} sessions, {size / 1e6:.0f} MB (best of 3, page cache warm)")
    print(f"  ccusage 20.0.24 claude session --json      {cc_s:7.3f} s")
    print(f"  cost --transcripts, in-process, no cache   {ours_s:7.3f} s   {cc_s / ours_s:5.1f}x ccusage")
    print(f"  parse-session-events.sh cost --transcripts {cli_s:7.3f} s   {ratio:5.1f}x ccusage "
          f"(target >= {TARGET_RATIO:g}x: {'met' if ratio >= TARGET_RATIO else 'MISSED'}), --no-cache")
    print(f"    the same, its cache warm, nothing new    {warm:7.3f} s   {cc_s / warm:5.1f}x ccusage")
    print(f"    the same, 1% of the files appended to    {tail:7.3f} s   {cc_s / tail:5.1f}x ccusage")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(orjson.dumps({"sessions": n, "bytes": size, "ccusage_s": round(cc_s, 4),
                                       "in_process_s": round(ours_s, 4), "command_s": round(cli_s, 4),
                                       "command_warm_cache_s": round(warm, 4), "command_tail_s": round(tail, 4),
                                       "ratio": round(ratio, 2), "ratio_warm_cache": round(cc_s / warm, 2),
                                       "target_ratio": TARGET_RATIO}, option=orjson.OPT_INDENT_2))
    return 0


def cached(root: Path, script: list[str]) -> tuple[float, float]:
    """The command with its scan cache: warm with nothing new, and after 1% of the
    transcripts (a copy of the corpus) each gained a line; best of 3 each."""
    copy = ROOT / ".bench" / "transcripts-tail"
    subprocess.run(["rm", "-rf", str(copy)], check=True)
    subprocess.run(["cp", "-a", str(root), str(copy)], check=True)
    cache = ["--cache", str(ROOT / ".bench" / "transcript-cost.cache")]
    argv = [*script[:5], str(copy / "projects"), "--json", *cache]
    run(argv, {})  # the cache made
    warm = best_of(lambda: run(argv, {}))
    files = sorted(copy.rglob("*.jsonl"))[:: 100]
    best = float("inf")
    for _ in range(3):
        for f in files:
            with open(f, "rb+") as fh:
                last = fh.read().rstrip(b"\n").rsplit(b"\n", 1)[-1]
                fh.write(last + b"\n")  # the last line again: a duplicate, as a resumed session writes
        t0 = time.perf_counter()
        run(argv, {})
        best = min(best, time.perf_counter() - t0)
    return warm, best


if __name__ == "__main__":
    sys.exit(main())
