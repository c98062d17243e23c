"""report.sh over 100,000 attempts: from the SQLite store against the same report
computed by reading every receipt file (the files backend's way), in the same run.

    .venv/bin/python tests/bench/bench_report.py [--attempts N]

Target (issue 13): the store's report in at most 0.5 s for 100,000 attempts. Prints
the time of each way (best of 3, in-process: the query and the roll-up) and of the
whole command (report.sh --by model --json, a fresh process), and their ratio.
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "lib"))

from common import ROOT, env
from harness.pipeline.policy import iso
from harness.report import rollup
from harness.store import attempts, open_store

T0 = 1_798_761_600.0
MODELS = ("claude-sonnet-4-5", "claude-opus-4-1", "claude-haiku-4-5")
VERDICTS = ("succeeded",) * 8 + ("api_error", "crashed", "stalled", "verify_failed")


def receipt(n: int, rng: random.Random) -> dict[str, Any]:
    start = T0 + n * 30 + rng.random() * 10
    wall = rng.lognormvariate(4, 0.8)
    return {
        "session_id": f"ses_{n:08d}", "item_id": f"item-{n // 2:07d}", "run": f"run-{n // 5000}",
        "attempt": 1 + n % 2, "verdict": rng.choice(VERDICTS), "reason": "ok", "exit_code": 0,
        "model": rng.choice(MODELS), "started_at": iso(start), "ended_at": iso(start + wall), "wall_s": round(wall, 3),
        "ttft_s": round(rng.uniform(0.5, 4), 3), "duration_ms": int(wall * 1000), "turns": rng.randint(1, 40),
        "tokens": {"input": rng.randint(100, 9000), "output": rng.randint(50, 8000),
                   "cache_read": rng.randint(0, 400000), "cache_write": rng.randint(0, 40000)},
        "token_source": "result.usage", "cost_usd": round(rng.uniform(0.01, 3), 6), "cost_estimated": False,
        "tool_calls": {"Bash": rng.randint(0, 20), "Read": rng.randint(0, 30), "Edit": rng.randint(0, 10)},
        "tool_errors": {}, "tool_time_s": {"Bash": 12.5}, "permission_denials": 0, "denied": [],
        "api_retries": {}, "compactions": 0, "events": 400, "scan": "full", "malformed_lines": 0,
    }


def build(state: Path, n: int) -> None:
    rng = random.Random(13)
    store = open_store(state, "sqlite")
    store.init()
    db = store.db  # type: ignore[attr-defined]
    sessions = state / "sessions"
    sessions.mkdir(exist_ok=True)
    db.execute("BEGIN")
    for i in range(n):
        r = receipt(i, rng)
        store._put_attempt(r)  # type: ignore[attr-defined]
        d = sessions / r["session_id"]
        d.mkdir()
        (d / "metrics.json").write_bytes(orjson.dumps(r, option=orjson.OPT_INDENT_2))
    db.execute("COMMIT")


def _same(a: Any, b: Any) -> bool:
    """Equal, floats within 1e-6 (the two ways add up costs in another order)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and abs(a - b) <= 1e-6
    return bool(a == b)


def best_of(fn: Any, times: int = 3) -> float:
    best = float("inf")
    for _ in range(times):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--attempts", type=int, default=100_000)
    n = ap.parse_args().attempts
    with tempfile.TemporaryDirectory() as tmp:
        state = Path(tmp) / "state"
        t = time.perf_counter()
        build(state, n)
        print(f"built {n:,} attempts (database and receipt files) in {time.perf_counter() - t:.1f} s")
        store = open_store(state)
        store_s = best_of(lambda: store.rollup("model"))  # type: ignore[attr-defined]
        rows_s = best_of(lambda: rollup.rollup(store.attempts(), "model"))
        files_s = best_of(lambda: rollup.rollup(attempts.from_files(state), "model"), times=1)
        a = store.rollup("model")  # type: ignore[attr-defined]
        b = rollup.rollup(attempts.from_files(state), "model")
        assert _same(a, b), "the two ways disagree"
        t = time.perf_counter()
        subprocess.run([str(ROOT / "scripts" / "report.sh"), "--state", str(state), "--by", "model", "--json"],
                       check=True, stdout=subprocess.DEVNULL, env=env())
        cli_s = time.perf_counter() - t
    print(f"report over {n:,} attempts, by model (in-process, best of 3):")
    print(f"  computed by SQLite (report.sh):  {store_s:7.3f} s   (target: at most 0.5 s)")
    print(f"  the store's rows, in Python:     {rows_s:7.3f} s")
    print(f"  from the receipt files:          {files_s:7.3f} s")
    print(f"  ratio files/SQLite:              {files_s / store_s:7.1f}x")
    print(f"  report.sh --json (whole process): {cli_s:5.3f} s")
    return 0 if store_s <= 0.5 else 1


if __name__ == "__main__":
    sys.exit(main())
