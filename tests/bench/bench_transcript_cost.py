"""cost --transcripts against ccusage 20.0.24 on the same tree of transcripts, in the same run.

    .venv/bin/python tests/bench/bench_transcript_cost.py [--sessions 2000] [--out .bench/transcript-cost.json]

The tree (gen_transcripts.py: 2,000 sessions, about 90 MB, in .bench/transcripts/)
is made once and read once before timing, so both tools read it from the page
cache. Timed, best of 3: ccusage's `claude session --json --offline` (a native
binary); our report in this process (usage.tally: reading, deduplicating, pricing);
and the whole command (parse-session-events.sh cost --transcripts DIR --json, a
fresh shell and interpreter). Both must agree on every session's tokens.

Target (issue 16): at least 10x faster than ccusage, whole command.
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
    n = agree(run(cc_argv, cc_env), run(script, {}))
    cc_s = best_of(lambda: run(cc_argv, cc_env))
    ours_s = best_of(lambda: tally(root / "projects", CostMode.AUTO, PriceBook()))
    cli_s = best_of(lambda: run(script, {}))
    ratio = cc_s / cli_s
    print(f"transcript cost of {n:,} sessions, {size / 1e6:.0f} MB (best of 3, page cache warm)")
    print(f"  ccusage 20.0.24 claude session --json      {cc_s:7.3f} s")
    print(f"  cost --transcripts, in-process             {ours_s:7.3f} s   {cc_s / ours_s:5.1f}x ccusage")
    print(f"  parse-session-events.sh cost --transcripts {cli_s:7.3f} s   {ratio:5.1f}x ccusage "
          f"(target >= {TARGET_RATIO:g}x)")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(orjson.dumps({"sessions": n, "bytes": size, "ccusage_s": round(cc_s, 4),
                                       "in_process_s": round(ours_s, 4), "command_s": round(cli_s, 4),
                                       "ratio": round(ratio, 2), "target_ratio": TARGET_RATIO},
                                      option=orjson.OPT_INDENT_2))
    return 0 if ratio >= TARGET_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
