"""Claims from many processes at once: each item is claimed exactly once, by one lease.

Eight claimer processes, each with its own store (its own database connection, its
own view of the queue's files), start together behind a barrier (every one has
opened the store and says so; then all are told to go) and claim until claim()
returns None. The store must end with every item running, held by the session
that claimed it, with fencing token 1."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest
from harness.store import open_store

ROOT = Path(__file__).resolve().parents[2]
N_CLAIMERS = 8
# The files backend's claim reads every pending file, so its drain is quadratic:
# 2,000 items take about 90 s on two cores; it gets fewer. SQLite's claim reads the
# claim order from an index-free ORDER BY over narrow columns (about 4 s for 2,000).
N_ITEMS = {"sqlite": 2000, "files": 400}
NOW = 1_800_000_000.0
DEADLINE_S = 300.0

# One claimer: opens the store, says "ready", waits for a line on stdin (the start
# barrier), claims until nothing is left, prints [[item_id, session_id, token], ...].
CLAIMER = """
import sys
from pathlib import Path

import orjson
from harness.store import open_store

state_dir, backend, n, now = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
store = open_store(Path(state_dir), backend)
print("ready", flush=True)
sys.stdin.readline()
won = []
while (lease := store.claim(f"ses_{n}_{len(won)}", f"w{n}", now)) is not None:
    won.append((lease.item_id, lease.session_id, lease.token))
sys.stdout.buffer.write(orjson.dumps(won) + b"\\n")
"""


def _claim_in_processes(state: Path, backend: str) -> list[tuple[str, str, int]]:
    """Every claim the claimer processes made, as (item_id, session_id, token)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "lib")}
    procs = [subprocess.Popen([sys.executable, "-c", CLAIMER, str(state), backend, str(n), str(NOW)], env=env,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for n in range(N_CLAIMERS)]
    try:
        for p in procs:
            assert p.stdout is not None
            assert p.stdout.readline() == b"ready\n", p.communicate(timeout=DEADLINE_S)[1].decode()
        for p in procs:
            assert p.stdin is not None
            p.stdin.write(b"go\n")
            p.stdin.flush()
        deadline = time.monotonic() + DEADLINE_S
        claims: list[tuple[str, str, int]] = []
        for p in procs:
            out, err = p.communicate(timeout=max(1.0, deadline - time.monotonic()))
            assert p.returncode == 0, err.decode()
            claims.extend((item, sid, token) for item, sid, token in orjson.loads(out))
        return claims
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.communicate()


@pytest.mark.parametrize("backend", ["sqlite", "files"])
def test_many_processes_claim_each_item_exactly_once(tmp_path: Path, backend: str) -> None:
    store = open_store(tmp_path, backend)
    store.init()
    ids = [f"i{i:04d}" for i in range(N_ITEMS[backend])]
    store.add([("test", {"id": item, "prompt": f"item {item}"}) for item in ids])

    claims = _claim_in_processes(tmp_path, backend)

    claimed = [item for item, _, _ in claims]
    doubled = sorted(item for item, times in Counter(claimed).items() if times > 1)
    assert not doubled, f"claimed more than once: {doubled[:10]}"
    assert sorted(claimed) == ids
    assert len({sid for _, sid, _ in claims}) == len(ids)
    assert {token for _, _, token in claims} == {1}
    assert store.states() == dict.fromkeys(ids, "running")
    for item, sid, token in claims:
        lease = store.lease_of(item)
        assert lease is not None, item
        assert (lease.session_id, lease.token, lease.worker) == (sid, token, "w" + sid.split("_")[1]), item
    assert {sid: item for sid, (item, _) in store.live().items()} == {sid: item for item, sid, _ in claims}
