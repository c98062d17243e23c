"""The store's two backends (issue 13): claim throughput and the size of the attempts.

Claims: 8 claimer processes, each with its own store, start together behind a
barrier and claim until nothing is left, over the same number of items on SQLite
and on the files backend in the same run. Reported: claims per second (from the
first claim's start to the last one's end, across the processes), each claim's
latency, and the ratio sqlite/files. Every item must be claimed exactly once.
Both backends' claim costs time in proportion to the pending items, so the rate
depends on the queue's length (BENCH_STORE_ITEMS).

Size: 10,000 attempts recorded in state/harness.db (record_attempt, one transaction
each) from realistic receipts (every field receipt.build() writes), measured after a
checkpoint (harness.db plus harness.db-wal), against the same receipts as
sessions/<id>/metrics.json files (pretty, as receipt.write() leaves them): bytes on
disk (st_blocks) and apparent bytes.
"""

from __future__ import annotations

import os
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
from common import ROOT, env, pct

sys.path.insert(0, str(ROOT / "lib"))
from harness import jsonio
from harness.pipeline import receipt
from harness.pipeline.policy import iso
from harness.store import open_store
from harness.store.sqlite import LOCK_NOTICE_S

N_ITEMS = int(os.environ.get("BENCH_STORE_ITEMS", "2000"))
N_CLAIMERS = int(os.environ.get("BENCH_STORE_CLAIMERS", "8"))
N_ATTEMPTS = int(os.environ.get("BENCH_STORE_ATTEMPTS", "10000"))
NOW = 1_800_000_000.0
T0 = 1_790_000_000.0  # the first session's start (receipts)
DEADLINE_S = 900.0

# One claimer: opens the store, says "ready", waits for a line on stdin (the start
# barrier), claims until nothing is left; prints its claims and each claim's time.
CLAIMER = """
import sys
import time
from pathlib import Path

import orjson
from harness.store import open_store
from harness.store.sqlite import LOCK_NOTICE_S

state_dir, backend, n, now = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
store = open_store(Path(state_dir), backend)
print("ready", flush=True)
sys.stdin.readline()
won, lat = [], []
start = time.monotonic()
while True:
    t = time.monotonic()
    lease = store.claim(f"ses_{n}_{len(won)}", f"w{n}", now)
    lat.append(time.monotonic() - t)
    if lease is None:
        break
    won.append(lease.item_id)
end = time.monotonic()
sys.stdout.buffer.write(orjson.dumps({"won": won, "lat": lat[:-1], "start": start, "end": end}) + b"\\n")
"""


def claims(work: Path, backend: str) -> dict[str, Any]:
    """N_CLAIMERS processes drain N_ITEMS items from one store of this backend."""
    state = work / f"state-{backend}"
    store = open_store(state, backend)
    store.init()
    ids = [f"i{i:05d}" for i in range(N_ITEMS)]
    store.add([("bench", {"id": item, "prompt": f"item {item}"}) for item in ids])
    procs = [subprocess.Popen([sys.executable, "-c", CLAIMER, str(state), backend, str(n), str(NOW)], env=env(),
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for n in range(N_CLAIMERS)]
    try:
        for p in procs:
            assert p.stdout is not None
            if p.stdout.readline() != b"ready\n":
                raise RuntimeError(f"a {backend} claimer did not start: {p.communicate()[1].decode()}")
        for p in procs:
            assert p.stdin is not None
            p.stdin.write(b"go\n")
            p.stdin.flush()
        deadline = time.monotonic() + DEADLINE_S
        results, notices = [], 0
        for p in procs:
            out, err = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
            if p.returncode != 0:
                raise RuntimeError(f"a {backend} claimer failed: {err.decode()}")
            results.append(orjson.loads(out))
            notices += err.count(b"is locked by another process")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.communicate()
    won = [item for r in results for item in r["won"]]
    wall = max(r["end"] for r in results) - min(r["start"] for r in results)
    return {"wall": wall, "claims": len(won), "exact": sorted(won) == ids,
            "lat": [x for r in results for x in r["lat"]], "per_proc": [len(r["won"]) for r in results],
            "notices": notices}


TOOLS = ("Bash", "Read", "Edit", "Grep", "Glob", "Write", "TodoWrite", "MultiEdit", "Task", "WebFetch")
VERDICTS = (("succeeded", 70), ("verify_failed", 10), ("failed", 6), ("api_error", 5), ("stalled", 3),
            ("max_turns", 3), ("timed_out", 2), ("crashed", 1))
CHECKS = ("make test", "npm test --silent", "pytest -q", "cargo test --quiet")


def realistic_receipt(rng: random.Random, n: int) -> dict[str, Any]:
    """A receipt with every field receipt.build() writes, filled as a real session fills them."""
    sid = f"ses_{uuid.UUID(int=rng.getrandbits(128), version=4)}"
    verdict = rng.choices([v for v, _ in VERDICTS], [w for _, w in VERDICTS])[0]
    turns = rng.randint(3, 80)
    wall = round(rng.uniform(30, 1800), 3)
    start = T0 + n * 90.0
    used = rng.sample(TOOLS, rng.randint(3, 8))
    calls = {t: rng.randint(1, 60) for t in used}
    tokens = {"input": rng.randint(20, 5000), "output": rng.randint(500, 60000),
              "cache_read": rng.randint(50_000, 4_000_000), "cache_write": rng.randint(5000, 300_000)}
    cost = round(tokens["input"] * 3e-6 + tokens["output"] * 15e-6 + tokens["cache_read"] * 0.3e-6
                 + tokens["cache_write"] * 3.75e-6, 6)
    check = rng.choice(CHECKS)
    return {
        "session_id": sid, "item_id": f"item-20261121-{n:06d}", "run": rng.choice([None, "nightly", "refactor-q4"]),
        "attempt": rng.choice([1, 1, 1, 2, 3]), "verdict": verdict,
        "reason": f"completed in {turns} turns" if verdict == "succeeded" else f"{verdict}: {check} exited 1",
        "exit_code": 0 if verdict in ("succeeded", "verify_failed") else 1, "model": "claude-sonnet-4-5-20250929",
        "started_at": iso(start), "ended_at": iso(start + wall), "wall_s": wall, "ttft_s": round(rng.uniform(1.5, 9), 3),
        "duration_ms": int(wall * 970), "duration_api_ms": int(wall * 610), "turns": turns, "cli_num_turns": turns,
        "tokens": tokens, "token_source": "result.modelUsage", "cost_usd": cost, "cost_estimated": False,
        "tool_calls": calls,
        "tool_errors": {t: rng.randint(1, 4) for t in used if rng.random() < 0.3},
        "tool_time_s": {t: round(rng.uniform(0.05, 240), 3) for t in used},
        "permission_denials": 0, "denied": [] if rng.random() < 0.9 else [
            {"tool": "Bash", "input": {"command": "git push origin HEAD", "description": "Push the branch"}}],
        "api_retries": {} if rng.random() < 0.85 else {"529": rng.randint(1, 3)},
        "compactions": rng.choice([0, 0, 0, 1]), "events": turns * rng.randint(4, 9), "scan": "full",
        "malformed_lines": 0,
        "verify": {"cmd": check, "exit_code": 0 if verdict != "verify_failed" else 1,
                   "seconds": round(rng.uniform(2, 300), 3), "log": "verify.log"},
        "fix_round": None if rng.random() < 0.9 else 1, "cli_cost_usd": cost, "cli_tokens": dict(tokens),
        "cli_cumulative": False,
    }


def du(paths: list[Path]) -> tuple[int, int]:
    """(bytes on disk, apparent bytes), as du and du --apparent-size count them."""
    blocks = apparent = 0
    for p in paths:
        st = p.stat()
        blocks += st.st_blocks * 512
        apparent += st.st_size
    return blocks, apparent


def size(work: Path) -> dict[str, Any]:
    rng = random.Random(13)
    receipts = [realistic_receipt(rng, n) for n in range(N_ATTEMPTS)]
    state = work / "state-size"
    store = open_store(state, "sqlite")
    store.init()
    t = time.monotonic()
    for r in receipts:
        store.record_attempt(r)
    db_s = time.monotonic() - t
    recorded = len(store.attempts())
    db = state / "harness.db"
    con = sqlite3.connect(db)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    wal = db.with_name(db.name + "-wal")
    db_disk, db_apparent = du([db, wal] if wal.exists() else [db])
    files = []
    t = time.monotonic()
    for r in receipts:
        sdir = state / "sessions" / r["session_id"]
        sdir.mkdir(parents=True)
        receipt.write(sdir, r)
        files.append(sdir / "metrics.json")
    files_s = time.monotonic() - t
    files_disk, files_apparent = du(files)
    return {"recorded": recorded, "db_disk": db_disk, "db_apparent": db_apparent,
            "wal": wal.stat().st_size if wal.exists() else 0, "files_disk": files_disk,
            "files_apparent": files_apparent, "db_s": db_s, "files_s": files_s,
            "compact": sum(len(jsonio.dumps(r)) for r in receipts) / N_ATTEMPTS}


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="bench-store-"))
    try:
        runs = {backend: claims(work, backend) for backend in ("sqlite", "files")}
        sz = size(work)
    finally:
        subprocess.run(["rm", "-rf", str(work)], check=False)
    print(f"store claims: {N_CLAIMERS} processes at once over {N_ITEMS} items, {os.cpu_count()} cores")
    for backend, r in runs.items():
        print(f"  {backend:<6}  wall {r['wall']:6.1f} s  {r['claims'] / r['wall']:7.1f} claims/s  latency p50 "
              f"{pct(r['lat'], 0.5) * 1000:6.1f} ms  p99 {pct(r['lat'], 0.99) * 1000:6.1f} ms  claims per process "
              f"{min(r['per_proc'])}-{max(r['per_proc'])}  each item once: {'yes' if r['exact'] else 'NO'}"
              + (f"  ({r['notices']} waits over {LOCK_NOTICE_S:g} s for the lock)" if r["notices"] else ""))
    rate = {b: r["claims"] / r["wall"] for b, r in runs.items()}
    print(f"  sqlite/files: {rate['sqlite'] / rate['files']:.2f}x the claims per second")
    n = N_ATTEMPTS
    print(f"store size: {n} attempts, receipts of {sz['files_apparent'] / n:.0f} bytes as metrics.json "
          f"({sz['compact']:.0f} compact)")
    print(f"  harness.db          {sz['db_disk'] / 1e6:7.2f} MB on disk, {sz['db_apparent'] / 1e6:7.2f} MB apparent "
          f"(-wal {sz['wal']} bytes after the checkpoint): {sz['db_disk'] / n:5.0f} bytes per attempt on disk; "
          f"recorded at {sz['db_s'] / n * 1000:.2f} ms each")
    print(f"  metrics.json files  {sz['files_disk'] / 1e6:7.2f} MB on disk, {sz['files_apparent'] / 1e6:7.2f} MB "
          f"apparent: {sz['files_disk'] / n:5.0f} bytes per attempt on disk; written at "
          f"{sz['files_s'] / n * 1000:.2f} ms each")
    print(f"  harness.db/files: {sz['db_disk'] / sz['files_disk']:.2f}x on disk, "
          f"{sz['db_apparent'] / sz['files_apparent']:.2f}x apparent")
    ok = all(r["exact"] for r in runs.values()) and sz["recorded"] == n
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
