"""The pipeline's cost: verify, fix rounds and the merge queue (issue 12's figure).

12 items at -j 4 with the stub agent in its "commit" mode (each commits a file on
its branch); 4 of them fail the check on their first attempt and are repaired by a
fix round; the check (VERIFY_CMD) takes 2 s. The same queue runs twice on a fresh
repository: with INTEGRATE=off (verified work succeeds at once) and with
INTEGRATE=merge (each item lands on trunk one at a time, checked again on the merged
tree). Reported: both wall times, their ratio, and the merge queue's throughput
(items landed per minute, from the first landing to the last, and over the run).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson
from common import ROOT

N_ITEMS = int(os.environ.get("BENCH_PIPELINE_ITEMS", "12"))
N_BROKEN = int(os.environ.get("BENCH_PIPELINE_BROKEN", "4"))
VERIFY_S = float(os.environ.get("BENCH_PIPELINE_VERIFY_S", "2"))
# a broken item's file needs compat.txt beside it (a fix round writes it)
CHECK = (f"sleep {VERIFY_S:g}; for f in broken*.txt; do [ -e \"$f\" ] || continue; "
         "[ -e compat.txt ] || { echo \"$f needs compat.txt\"; exit 1; }; done")


def _epoch(ts: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def run(integrate: str, work: Path) -> dict[str, float]:
    repo, state = work / f"repo-{integrate}", work / f"state-{integrate}"
    git = ["git", "-C", str(repo)]
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True)
    subprocess.run([*git, "-c", "user.name=b", "-c", "user.email=b@example.invalid", "commit", "-q", "--allow-empty",
                    "-m", "initial commit"], check=True)
    subprocess.run([*git, "branch", "trunk"], check=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HARNESS_", "ANTHROPIC_", "MOCK_CLAUDE_"))}
    env.update(CLAUDE_BIN=str(ROOT / "tests/mocks/claude"), HARNESS_QUIET="1", HARNESS_MIN_FREE_MB="0",
               HOME=str(work), MOCK_CLAUDE_MODE="commit")
    items = b"".join(orjson.dumps({"id": f"i{i:02d}", "prompt": f"file={'broken' if i < N_BROKEN else 'ok'}{i}.txt"})
                     + b"\n" for i in range(N_ITEMS))
    subprocess.run([str(ROOT / "scripts/queue.sh"), "--state", str(state), "add", "--file", "-"], input=items,
                   env=env, check=True, capture_output=True)
    t0 = time.time()
    subprocess.run([str(ROOT / "loop.sh"), "--state", str(state), "--drain", "-j", "4", "--set", f"REPO_DIR={repo}",
                    "--set", f"VERIFY_CMD={CHECK}", "--set", f"INTEGRATE={integrate}", "--set", "TARGET_BRANCH=trunk"],
                   env=env, check=True, capture_output=True)
    wall = time.time() - t0
    audit = [orjson.loads(line) for line in (state / "events.jsonl").read_bytes().splitlines()]
    landed = sorted(_epoch(a["ts"]) for a in audit if a["event"] == "item.integrated")
    done = sum(1 for a in audit if a["event"] == "item.succeeded")
    fixes = sum(1 for a in audit if a["event"] == "item.pending" and a.get("action") == "fix")
    return {"wall": wall, "succeeded": done, "fix_rounds": fixes, "landed": len(landed),
            "span": (landed[-1] - landed[0]) if len(landed) > 1 else 0.0}


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="bench-pipeline-"))
    try:
        off = run("off", work)
        merge = run("merge", work)
    finally:
        subprocess.run(["rm", "-rf", str(work)], check=False)
    print(f"pipeline: {N_ITEMS} items at -j 4, {N_BROKEN} fail the check first and are fixed, the check takes "
          f"{VERIFY_S:g} s")
    print(f"  INTEGRATE=off    wall {off['wall']:6.1f} s   succeeded {off['succeeded']:.0f}, fix rounds "
          f"{off['fix_rounds']:.0f}")
    print(f"  INTEGRATE=merge  wall {merge['wall']:6.1f} s   succeeded {merge['succeeded']:.0f}, fix rounds "
          f"{merge['fix_rounds']:.0f}, landed {merge['landed']:.0f}")
    per_min = merge["landed"] / merge["wall"] * 60
    span = f"{(merge['landed'] - 1) / merge['span'] * 60:.1f}" if merge["span"] else "-"
    print(f"  the merge queue costs {merge['wall'] / off['wall']:.2f}x the wall time of INTEGRATE=off; it lands "
          f"{per_min:.1f} items/min over the run, {span} items/min from the first landing to the last "
          f"(each landing checks the merged tree: {VERIFY_S:g} s)")
    ok = off["succeeded"] == merge["succeeded"] == merge["landed"] == N_ITEMS
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
