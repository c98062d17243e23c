"""The fleet's store (STORE=postgres): claim throughput, claim latency and takeover.

    .venv/bin/python tests/bench/bench_fleet.py [--out .bench/fleet.json]

Starts a private PostgreSQL cluster of its own (tests/pg_cluster.sh, on a unix
socket, fsync off) and stops it at the end, however the run ends.

Claims: 8 loops (processes, each with a host name and a state directory of its
own) of 8 claimers each (threads, each with a store of its own: 64 connections)
start together behind a barrier and claim until the queue is empty, over
BENCH_FLEET_ITEMS items added up front; then the same with a finish after every
claim (claim, then finish as succeeded). The baseline, in the same run: the SQLite
store with 8 claimer processes on one state directory, over the same items. Claims
pass the default AGING_S, as the loop's do. Reported: claims per second (from the
first claim's start to the last one's end), each claim's and each finish's latency
(p50, p99), the ratio postgres/sqlite, and the CPU of the server's processes and of
the claimers over the window, in cores of this machine, beside how many it has:
whichever side takes the cores is what saturates. Every item must be claimed
exactly once. Target: at least 500 claims per second on postgres (claims alone);
exit 1 when it is missed.

Takeover: a host claims BENCH_FLEET_TAKE items with LEASE_S of 1, 2 and 4 s,
renews its leases every 0.5 s (its loop's heartbeat, store.beat) and is killed
(SIGKILL) at a random moment; another host calls claim() every 50 ms from before
the death. For each item: the time from the death to its takeover, against what a
lease promises: LEASE_S after the last renewal (the database's record of it), plus
up to one poll. The takeover must be audited (item.taken_over), and a finish with
the dead host's lease must be fenced.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import json
import os
import random
import resource
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
from common import ROOT, cpu_s, env, pct

sys.path.insert(0, str(ROOT / "lib"))
import psycopg
from harness import config
from harness.store import FencedError, Lease, open_store

N_ITEMS = int(os.environ.get("BENCH_FLEET_ITEMS", "20000"))
LOOPS, CLAIMERS, SQLITE_CLAIMERS = 8, 8, 8
TARGET_RATE = 500.0
AGING_S = float(config.default("AGING_S"))
TAKE_ITEMS = int(os.environ.get("BENCH_FLEET_TAKE", "8"))
TAKE_LEASES_S = (1.0, 2.0, 4.0)
BEAT_S, POLL_S = 0.5, 0.05
DEADLINE_S = 150.0
PG_CLUSTER = ROOT / "tests" / "pg_cluster.sh"


def die_with_parent() -> None:
    """A worker's: SIGKILL when the bench is gone, however it went (prctl PR_SET_PDEATHSIG)."""
    ctypes.CDLL(None).prctl(1, signal.SIGKILL)


@contextlib.contextmanager
def cluster() -> Iterator[tuple[str, int]]:
    """A private cluster for the run: its URL and the postmaster's pid; stopped and removed at the end."""
    base = Path(tempfile.mkdtemp(prefix="harness-pg.", dir="/tmp"))
    base.chmod(0o755)  # the cluster runs as the user postgres when the bench runs as root
    try:
        url = subprocess.run([str(PG_CLUSTER), "start", str(base / "pg")], check=True, capture_output=True,
                             text=True).stdout.strip()
        yield url, int((base / "pg" / "data" / "postmaster.pid").read_text().split()[0])
    finally:
        subprocess.run([str(PG_CLUSTER), "stop", str(base / "pg")], check=False)
        shutil.rmtree(base, ignore_errors=True)


def schema_url(url: str) -> str:
    """A schema of its own for one measurement, named in the URL's search_path (as the tests do)."""
    schema = f"b_{secrets.token_hex(4)}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")  # type: ignore[arg-type]  # a name made above
    return psycopg.conninfo.make_conninfo(url, options=f"-csearch_path={schema}")


def server_cpu_s(postmaster: int) -> float:
    """The server's CPU: the postmaster's own and its ended children's, and every live child's."""
    with open(f"/proc/{postmaster}/stat", "rb") as fh:
        fields = fh.read().rsplit(b")", 1)[1].split()
    total = sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, IndexError):
                with open(f"/proc/{entry}/stat", "rb") as fh:
                    if int(fh.read().rsplit(b")", 1)[1].split()[1]) == postmaster:
                        total += cpu_s(int(entry))
    return total


def worker_env(url: str, host: str, lease_s: float = 120.0) -> dict[str, str]:
    return {**env(), "HARNESS_DATABASE_URL": url, "HARNESS_HOST_NAME": host, "HARNESS_LEASE_S": f"{lease_s:g}",
            "HARNESS_FLEET_JOBS": "0"}


def spawn(args: list[str], environ: dict[str, str]) -> subprocess.Popen[bytes]:
    """This file again, as a worker (loop, holder or poller)."""
    return subprocess.Popen([sys.executable, __file__, *args], env=environ, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=die_with_parent)


def line_of(p: subprocess.Popen[bytes], what: str) -> bytes:
    assert p.stdout is not None
    line = p.stdout.readline()
    if not line:
        p.kill()
        raise RuntimeError(f"a {what} ended early: {p.communicate()[1].decode(errors='replace')[-2000:]}")
    return line


def say(p: subprocess.Popen[bytes], text: bytes) -> None:
    assert p.stdin is not None
    p.stdin.write(text)
    p.stdin.flush()


# --- the claimers --------------------------------------------------------


def claimer(store: Any, host: str, n: int, finish: bool, out: dict[str, Any]) -> None:
    """One claimer: claims (and finishes) until nothing is left."""
    won, lat, fin = [], [], []
    while True:
        sid = f"ses_{host}_{n}_{len(won)}"
        t = time.perf_counter()
        lease = store.claim(sid, f"w{n}", time.time(), aging_s=AGING_S)
        if lease is None:
            break
        lat.append(time.perf_counter() - t)
        won.append(lease.item_id)
        if finish:
            t = time.perf_counter()
            store.finish(lease, "succeeded", {"session_id": sid, "verdict": "succeeded"}, 1, None)
            fin.append(time.perf_counter() - t)
    out.update(won=won, lat=lat, fin=fin)


def loop_main(argv: list[str]) -> None:
    """A loop: N claimers (threads), each with a store of its own, started by a line on stdin."""
    state, backend, host, n, finish = Path(argv[0]), argv[1], argv[2], int(argv[3]), argv[4] == "1"
    stores = [open_store(state, backend) for _ in range(n)]
    outs: list[dict[str, Any]] = [{} for _ in range(n)]
    threads = [threading.Thread(target=claimer, args=(stores[i], host, i, finish, outs[i])) for i in range(n)]
    print("ready", flush=True)
    sys.stdin.readline()
    cpu0, start = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    end, cpu1 = time.monotonic(), resource.getrusage(resource.RUSAGE_SELF)
    cpu = cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime
    doc = {"won": [w for o in outs for w in o["won"]], "lat": [x for o in outs for x in o["lat"]],
           "fin": [x for o in outs for x in o["fin"]], "start": start, "end": end, "cpu": cpu}
    sys.stdout.buffer.write(orjson.dumps(doc) + b"\n")
    sys.stdout.flush()
    sys.stdin.readline()  # kept open until the bench has read the server's CPU


def add_items(state: Path, backend: str, n: int) -> tuple[list[str], float]:
    ids = [f"i{i:05d}" for i in range(n)]
    t = time.monotonic()
    store = open_store(state, backend)
    store.init()
    store.add([("bench", {"id": item, "prompt": f"item {item}"}) for item in ids])
    return ids, time.monotonic() - t


def claims(work: Path, backend: str, url: str, postmaster: int, loops: int, finish: bool) -> dict[str, Any]:
    """loops × claimers drain N_ITEMS items; postgres: a state directory and host per loop."""
    per_loop = CLAIMERS if backend == "postgres" else 1
    url = schema_url(url) if backend == "postgres" else ""
    root = work / f"{backend}-{loops}x{per_loop}-{'finish' if finish else 'claim'}"
    os.environ["HARNESS_DATABASE_URL"] = url  # the parent's store, which adds the items
    ids, add_s = add_items(root / "adder", backend, N_ITEMS)
    procs = [spawn(["loop", str(root / (f"h{k}" if backend == "postgres" else "adder")), backend, f"h{k}",
                    str(per_loop), "1" if finish else "0"], worker_env(url, f"h{k}")) for k in range(loops)]
    try:
        for p in procs:
            if line_of(p, "loop") != b"ready\n":
                raise RuntimeError("a loop did not start")
        cpu0 = server_cpu_s(postmaster) if postmaster else 0.0
        for p in procs:
            say(p, b"go\n")
        results = [orjson.loads(line_of(p, "loop")) for p in procs]
        server = (server_cpu_s(postmaster) - cpu0) if postmaster else 0.0
        for p in procs:
            say(p, b"exit\n")
            p.wait(timeout=30)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.communicate()
    won = [w for r in results for w in r["won"]]
    wall = max(r["end"] for r in results) - min(r["start"] for r in results)
    return {"backend": backend, "shape": f"{loops}×{per_loop}", "finish": finish, "items": N_ITEMS, "add_s": add_s,
            "wall": wall, "claims": len(won), "rate": len(won) / wall, "exact": sorted(won) == ids,
            "lat": [x for r in results for x in r["lat"]], "fin": [x for r in results for x in r["fin"]],
            "client_cpu": sum(r["cpu"] for r in results), "server_cpu": server}


# --- takeover ---------------------------------------------------------------


def holder_main(argv: list[str]) -> None:
    """The host that dies: claims every item, then renews its leases every BEAT_S until killed."""
    store = open_store(Path(argv[0]), "postgres")
    leases = []
    while (lease := store.claim(f"ses_dead_{len(leases)}", "w0", time.time())) is not None:
        leases.append([lease.item_id, lease.session_id, lease.token])
    sys.stdout.buffer.write(orjson.dumps(leases) + b"\n")
    sys.stdout.flush()
    while True:
        time.sleep(BEAT_S)
        store.beat({"pid": os.getpid()})


def poller_main(argv: list[str]) -> None:
    """The host that lives: claim() every POLL_S (again at once after a take) until it holds n items."""
    store, n = open_store(Path(argv[0]), "postgres"), int(argv[1])
    print("ready", flush=True)
    taken: list[list[Any]] = []
    deadline = time.monotonic() + 30
    while len(taken) < n and time.monotonic() < deadline:
        lease = store.claim(f"ses_alive_{len(taken)}", "w0", time.time())
        if lease is None:
            time.sleep(POLL_S)
            continue
        taken.append([lease.item_id, time.time(), lease.token])
    sys.stdout.buffer.write(orjson.dumps(taken) + b"\n")


def takeover(work: Path, url: str, lease_s: float) -> dict[str, Any]:
    url = schema_url(url)
    root = work / f"takeover-{lease_s:g}"
    os.environ["HARNESS_DATABASE_URL"] = url
    ids, _ = add_items(root / "adder", "postgres", TAKE_ITEMS)
    dead = spawn(["holder", str(root / "dead")], worker_env(url, "dead", lease_s))
    alive = spawn(["poller", str(root / "alive"), str(len(ids))], worker_env(url, "alive", lease_s))
    try:
        held = orjson.loads(line_of(dead, "holder"))
        line_of(alive, "poller")
        time.sleep(lease_s + random.uniform(0, 2 * BEAT_S))  # renewed past its first lease: the beats work
        died = time.time()
        dead.kill()
        dead.wait()
        taken = orjson.loads(line_of(alive, "poller"))
    finally:
        for p in (dead, alive):
            p.kill()
            p.communicate()
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT heartbeat FROM hosts WHERE name = 'dead'").fetchone()
    renewed = float(row[0]) if row else float("nan")
    store = open_store(root / "dead", "postgres")
    fenced = 0
    for item_id, sid, token in held:
        with contextlib.suppress(FencedError):
            store.finish(Lease(item_id, sid, token), "succeeded", {"session_id": sid}, 1, None)
            continue
        fenced += 1
    audited = sum(1 for e in open_store(root / "alive", "postgres").events() if e.get("event") == "item.taken_over")
    return {"lease_s": lease_s, "items": len(ids), "held": len(held), "taken": len(taken), "fenced": fenced,
            "audited": audited, "since_renewal": died - renewed,
            "after_death": [t - died for _, t, _ in taken], "after_renewal": [t - renewed for _, t, _ in taken]}


# --- the report -------------------------------------------------------------


def ms(values: list[float], q: float) -> str:
    return f"{pct(values, q) * 1000:7.2f}" if values else "      -"


def claims_table(runs: list[dict[str, Any]]) -> None:
    cores = os.cpu_count() or 1
    print(f"  {'store':<9}{'loops×claimers':>15}{'with':>8}{'claims/s':>10}{'claim p50':>11}{'p99 ms':>8}"
          f"{'finish p50':>12}{'p99 ms':>8}{'server cores':>14}{'clients cores':>15}{'once':>6}")
    for r in runs:
        print(f"  {r['backend']:<9}{r['shape']:>15}{'finish' if r['finish'] else 'claim':>8}{r['rate']:10.1f}"
              f"{ms(r['lat'], 0.5):>11}{ms(r['lat'], 0.99):>8}{ms(r['fin'], 0.5):>12}{ms(r['fin'], 0.99):>8}"
              f"{(r['server_cpu'] / r['wall'] if r['server_cpu'] else float('nan')):14.2f}"
              f"{r['client_cpu'] / r['wall']:15.2f}{'yes' if r['exact'] else 'NO':>6}")
    by = {(r["backend"], r["finish"]): r["rate"] for r in runs}
    for finish in (False, True):
        if ("postgres", finish) in by and ("sqlite", finish) in by:
            print(f"  postgres/sqlite, {'claim+finish' if finish else 'claim alone'}: "
                  f"{by[('postgres', finish)] / by[('sqlite', finish)]:.2f}x the claims per second")
    print(f"  ({cores} cores here; items added up front: "
          + ", ".join(f"{r['backend']} {r['items'] / r['add_s']:.0f}/s" for r in runs if not r["finish"]) + ")")


def span(values: list[float], fmt: str) -> str:
    return f"{min(values):{fmt}}..{max(values):{fmt}}" if values else "-"


def takeover_table(rounds: list[dict[str, Any]]) -> None:
    print(f"  {'LEASE_S':>8}{'taken':>7}{'renewed before death s':>24}{'taken after death s':>21}"
          f"{'after renewal s':>17}{'minus LEASE_S s':>17}{'audited':>9}{'fenced':>8}")
    for r in rounds:
        late = [x - r["lease_s"] for x in r["after_renewal"]]
        print(f"  {r['lease_s']:8g}{r['taken']:>4}/{r['items']:<2}{r['since_renewal']:24.2f}"
              f"{span(r['after_death'], '.2f'):>21}{span(r['after_renewal'], '.2f'):>17}{span(late, '+.3f'):>17}"
              f"{r['audited']:>9}{r['fenced']:>8}")


def run_all(work: Path, url: str, postmaster: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    runs = []
    for finish in (False, True):
        runs.append(claims(work, "postgres", url, postmaster, LOOPS, finish))
        runs.append(claims(work, "sqlite", "", 0, SQLITE_CLAIMERS, finish))
    return runs, [takeover(work, url, lease_s) for lease_s in TAKE_LEASES_S]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=ROOT / ".bench" / "fleet.json")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a stop still stops the cluster
    began = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    try:
        with cluster() as (url, postmaster):
            runs, rounds = run_all(work, url, postmaster)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"fleet claims: {N_ITEMS} items added up front, drained by every claimer at once; "
          f"postgres on a unix socket (fsync off), AGING_S={AGING_S:g}")
    claims_table(runs)
    print(f"takeover: {TAKE_ITEMS} items held by a host renewing every {BEAT_S:g} s, killed; the other claims every "
          f"{POLL_S * 1000:.0f} ms")
    takeover_table(rounds)
    rate = next(r["rate"] for r in runs if r["backend"] == "postgres" and not r["finish"])
    ok = rate >= TARGET_RATE and all(r["exact"] for r in runs) and all(
        r["taken"] == r["items"] == r["audited"] == r["fenced"] for r in rounds)
    print(f"target: postgres claims >= {TARGET_RATE:g}/s: {rate:.0f}/s, {'ok' if rate >= TARGET_RATE else 'MISSED'}; "
          f"{time.monotonic() - began:.0f} s in all")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"runs": [{k: v for k, v in r.items() if k not in ("lat", "fin")} | {
        "claim_p50_ms": pct(r["lat"], 0.5) * 1000, "claim_p99_ms": pct(r["lat"], 0.99) * 1000} for r in runs],
        "takeover": rounds}, indent=1))
    return 0 if ok else 1


WORKERS = {"loop": loop_main, "holder": holder_main, "poller": poller_main}

if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] in WORKERS:
        WORKERS[sys.argv[1]](sys.argv[2:])
        sys.exit(0)
    sys.exit(main())
