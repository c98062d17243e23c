"""Parallel sessions with the real Claude Code CLI: 24 items whose scripted model
answers after about 2 s per turn, run at -j1, -j3 and -j8 (targets: 2.9x at 3,
6x at 8, against -j1 measured in the same run).

Each run gets a fresh state directory and the same queue. The CPU time of
everything the loop started (the CLI above all) is reported too: on a small
machine it, not the harness, is what caps the speedup.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson
from common import ROOT

N_ITEMS = int(os.environ.get("BENCH_PARALLEL_ITEMS", "24"))
TURN_S = float(os.environ.get("BENCH_PARALLEL_TURN_S", "2"))
JOBS = [int(j) for j in os.environ.get("BENCH_PARALLEL_JOBS", "1 3 8").split()]
SPAWN_DELAY_S = os.environ.get("BENCH_SPAWN_DELAY_S", "0")
TARGETS = {3: 2.9, 8: 6.0}
CLAUDE = ROOT / ".tools/claude/node_modules/.bin/claude"


def children_cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def run(work: Path, jobs: int, env: dict[str, str]) -> tuple[float, float, int]:
    state = work / f"state-j{jobs}"
    items = b"".join(
        orjson.dumps({"id": f"p{i:02d}", "prompt": f"Answer item {i}. [[fake:answer delay={TURN_S:g}]]"}) + b"\n"
        for i in range(N_ITEMS)
    )
    subprocess.run([str(ROOT / "scripts/queue.sh"), "--state", str(state), "add", "--file", "-"], input=items,
                   env=env, check=True, capture_output=True)
    cpu0, t0 = children_cpu_s(), time.monotonic()
    subprocess.run([str(ROOT / "loop.sh"), "--state", str(state), "--drain", "-j", str(jobs),
                    "--set", f"SPAWN_DELAY_S={SPAWN_DELAY_S}"], env=env, check=True, capture_output=True)
    wall, cpu = time.monotonic() - t0, children_cpu_s() - cpu0
    ok = len(os.listdir(state / "queue" / "succeeded"))
    return wall, cpu, ok


def main() -> int:
    if not os.access(CLAUDE, os.X_OK):
        print(f"bench_parallel: the Claude Code CLI is not installed at {CLAUDE} (run 'make setup')", file=sys.stderr)
        return 1
    work = Path(tempfile.mkdtemp(prefix="bench-parallel-"))
    port_file = work / "port"
    api = subprocess.Popen([sys.executable, str(ROOT / "tests/fakeapi/server.py"), "--scenario", "answer",
                            "--port-file", str(port_file), "--log", str(work / "requests.jsonl")],
                           stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not (port_file.exists() and port_file.read_text().strip()):
            if time.monotonic() > deadline:
                print("bench_parallel: the fake API did not start", file=sys.stderr)
                return 1
            time.sleep(0.05)
        (work / "home").mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("HARNESS_", "ANTHROPIC_", "CLAUDE", "MOCK_"))}
        env.update(
            HOME=str(work / "home"), CLAUDE_BIN=str(CLAUDE), HARNESS_QUIET="1", HARNESS_MIN_FREE_MB="0",
            ANTHROPIC_BASE_URL=f"http://127.0.0.1:{port_file.read_text().strip()}",
            ANTHROPIC_API_KEY="sk-test-not-a-secret-0000", CLAUDE_CODE_MAX_RETRIES="1", DISABLE_AUTOUPDATER="1",
            CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC="1",
        )
        print(f"parallel sessions: {N_ITEMS} items, real CLI, scripted model answering after {TURN_S:g}s per turn, "
              f"{os.cpu_count()} cores, SPAWN_DELAY_S={SPAWN_DELAY_S}")
        base = None
        for jobs in JOBS:
            wall, cpu, ok = run(work, jobs, env)
            base = base or wall
            speedup = base / wall
            target = TARGETS.get(jobs)
            mark = "" if target is None else f"   target >= {target:g}x: {'ok' if speedup >= target else 'below'}"
            print(f"  -j{jobs:<2} wall {wall:6.1f}s  speedup {speedup:4.2f}x  CPU {cpu:6.1f}s "
                  f"({cpu / wall:4.2f} cores busy of {os.cpu_count()})  succeeded {ok}/{N_ITEMS}{mark}")
        return 0
    finally:
        api.terminate()
        api.wait()
        subprocess.run(["rm", "-rf", str(work)], check=False)


if __name__ == "__main__":
    sys.exit(main())
