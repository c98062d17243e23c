"""The fleet's store (STORE=postgres): claim throughput and latency, the cost of the
loop's own calls, and the takeover of a dead host's items.

    .venv/bin/python tests/bench/bench_fleet.py [--out .bench/fleet.json]

Starts a private PostgreSQL cluster of its own (tests/pg_cluster.sh: a unix socket,
fsync off) and stops it at the end, however the run ends. Each measurement has a
schema of its own (the URL's search_path, as the tests do).

Claims: 8 loops (processes, each with a host name and a state directory of its
own) of 8 claimers each (threads, each with a store of its own: 64 connections)
start together behind a barrier and claim for BENCH_FLEET_SECONDS from a queue of
BENCH_FLEET_ITEMS items added up front; then the same with the claimers' connections
setting jit off (the server's default is on, and the claim's cost estimate passes
jit_above_cost with a long queue); then 8 loops of one claimer each; then 8x8 again
with a finish after each claim (succeeded). The baseline, in the same run:
the SQLite store with 8 claimer processes on one state directory, over the same
queue. Then 8x8 and SQLite again over 2,000 items, drained: a claim's cost grows
with the pending items. Claims pass the default AGING_S, as the loop's do.
Reported: claims per second (the first claim's start to the last one's end), each
claim's and each finish's latency (p50, p99), postgres/sqlite, and the CPU of the
server's processes, of the claimers and of the whole machine over the window, in
cores (this machine's count is printed): what saturates, and whether anything else
ran. No item may be claimed twice. Target: postgres 8x8 at least 500 claims per
second (claims alone, the BENCH_FLEET_ITEMS queue); exit 1 when it is missed.

Calls: what the loop's helpers pay per call, one client on an idle server: a store
opened (a connection, its settings, the schema check: the helpers open one per
call), a heartbeat (store.beat: the host's row and its 8 leases renewed), live()
(the sidecar asks it at every round), a claim on an open store, and the loop's claim
as start.py makes it (gate.claim_gated over stores opened for it, with the
breaker's admission), with items and on an empty queue (an idle loop's poll); each
with the server's CPU per call.

Takeover: a host claims BENCH_FLEET_TAKE items with LEASE_S of 1, 2 and 4 s, renews
its leases every 0.5 s (its loop's heartbeat) and is killed (SIGKILL) at a random
moment; another host calls claim() every 50 ms. For each item: the time from the
death to its takeover, against the lease: LEASE_S after the last renewal (the
database's record of it), plus up to one poll. Each takeover must be audited
(item.taken_over), and a finish with the dead host's lease fenced (FencedError).
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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from common import ROOT, cpu_s, env, pct

sys.path.insert(0, str(ROOT / "lib"))
import psycopg
from harness import config
from harness.pipeline import gate
from harness.pipeline.policy import Policy
from harness.store import FencedError, Lease, open_store

N_ITEMS = int(os.environ.get("BENCH_FLEET_ITEMS", "20000"))
SMALL_ITEMS = 2000
RUN_S = float(os.environ.get("BENCH_FLEET_SECONDS", "10"))
LOOPS, CLAIMERS, SQLITE_CLAIMERS = 8, 8, 8
TARGET_RATE = 500.0
AGING_S = float(config.default("AGING_S"))
TAKE_ITEMS = int(os.environ.get("BENCH_FLEET_TAKE", "8"))
TAKE_LEASES_S = (1.0, 2.0, 4.0)
BEAT_S, POLL_S = 0.5, 0.05
CALLS = 100
DRAIN_S = 120.0  # a drained run's limit
PG_CLUSTER = ROOT / "tests" / "pg_cluster.sh"


@dataclass(frozen=True)
class Setup:
    """One claims measurement."""

    backend: str
    loops: int
    per_loop: int
    finish: bool
    items: int
    seconds: float  # the claimers stop then, or when the queue is empty
    jit: bool = True  # False: the claimers' connections set jit off (the server's default is on)

    @property
    def name(self) -> str:
        return (f"{self.backend}-{self.loops}x{self.per_loop}-{'finish' if self.finish else 'claim'}-{self.items}"
                + ("" if self.jit else "-nojit"))


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


def schema_url(url: str, schema: str = "", settings: str = "") -> str:
    """A schema of its own, named in the URL's search_path (as the tests do), and any other
    settings (" -cjit=off"); made now."""
    schema = schema or f"b_{secrets.token_hex(4)}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")  # type: ignore[arg-type]  # a name made here
    return psycopg.conninfo.make_conninfo(url, options=f"-csearch_path={schema}{settings}")


def server_cpu_s(postmaster: int) -> float:
    """The server's CPU: the postmaster's own and its ended children's, and every live child's."""
    with open(f"/proc/{postmaster}/stat", "rb") as fh:
        fields = fh.read().rsplit(b")", 1)[1].split()
    total = sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, IndexError), open(f"/proc/{entry}/stat", "rb") as fh:
                if int(fh.read().rsplit(b")", 1)[1].split()[1]) == postmaster:
                    total += cpu_s(int(entry))
    return total


def machine_busy_s() -> float:
    """The CPU time all of this machine's cores have spent busy (/proc/stat): anything else running shows here."""
    with open("/proc/stat") as fh:
        ticks = [int(x) for x in fh.readline().split()[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


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


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.communicate()


# --- the claimers --------------------------------------------------------


def claimer(store: Any, host: str, n: int, finish: bool, deadline: float, out: dict[str, Any]) -> None:
    """One claimer: claims (and finishes) until the deadline, or nothing is left."""
    won, lat, fin = [], [], []
    while time.monotonic() < deadline:
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
    """A loop: n claimers (threads), each with a store of its own, started by a line on stdin."""
    state, backend, host, n, finish, seconds = Path(argv[0]), argv[1], argv[2], int(argv[3]), argv[4] == "1", argv[5]
    stores = [open_store(state, backend) for _ in range(n)]
    outs: list[dict[str, Any]] = [{} for _ in range(n)]
    print("ready", flush=True)
    sys.stdin.readline()
    cpu0, start = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
    threads = [threading.Thread(target=claimer, args=(stores[i], host, i, finish, start + float(seconds), outs[i]))
               for i in range(n)]
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
    sys.stdin.readline()  # connections kept until the bench has read the server's CPU


def queue_of(s: Setup, root: Path, url: str, template: str) -> Path:
    """The state directory whose store holds the setup's queue: postgres copies the template's items."""
    adder = root / "adder"
    store = open_store(adder, s.backend)
    store.init()
    if s.backend == "sqlite":
        store.add([("bench", {"id": f"i{i:05d}", "prompt": f"item {i}"}) for i in range(s.items)])
        return adder
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"INSERT INTO items SELECT * FROM {template}.items ORDER BY id LIMIT %s",  # type: ignore[arg-type]
                     (s.items,))
        conn.execute("ANALYZE items")
    return adder


def claims(work: Path, s: Setup, url: str, postmaster: int, template: str) -> dict[str, Any]:
    """The setup's claimers at once over its queue; postgres: a state directory and a host per loop."""
    url = schema_url(url, settings="" if s.jit else " -cjit=off") if s.backend == "postgres" else ""
    root = work / s.name
    os.environ["HARNESS_DATABASE_URL"] = url  # the bench's own store: the queue, and what was claimed
    adder = queue_of(s, root, url, template)
    procs = [spawn(["loop", str(root / f"h{k}" if s.backend == "postgres" else adder), s.backend, f"h{k}",
                    str(s.per_loop), "1" if s.finish else "0", str(s.seconds)], worker_env(url, f"h{k}"))
             for k in range(s.loops)]
    try:
        for p in procs:
            if line_of(p, "loop") != b"ready\n":
                raise RuntimeError("a loop did not start")
        cpu0, busy0, t0 = server_cpu_s(postmaster) if postmaster else 0.0, machine_busy_s(), time.monotonic()
        for p in procs:
            say(p, b"go\n")
        results = [orjson.loads(line_of(p, "loop")) for p in procs]
        server = (server_cpu_s(postmaster) - cpu0) if postmaster else 0.0
        busy, window = machine_busy_s() - busy0, time.monotonic() - t0
        for p in procs:
            say(p, b"exit\n")
            p.wait(timeout=30)
    finally:
        stop(procs)
    won = [w for r in results for w in r["won"]]
    wall = max(r["end"] for r in results) - min(r["start"] for r in results)
    left = sum(1 for state in open_store(adder, s.backend).states().values() if state == "pending")
    return {"backend": s.backend + ("" if s.jit else ", jit off"), "shape": f"{s.loops}x{s.per_loop}",
            "finish": s.finish, "items": s.items, "wall": wall, "claims": len(won), "rate": len(won) / wall,
            "once": len(set(won)) == len(won) == s.items - left,
            "lat": [x for r in results for x in r["lat"]], "fin": [x for r in results for x in r["fin"]],
            "client_cores": sum(r["cpu"] for r in results) / window, "server_cores": server / window,
            "busy_cores": busy / window}


# --- the loop's calls, one at a time ------------------------------------------


def timed(step: Callable[[int], Any], n: int, postmaster: int) -> dict[str, Any]:
    """n calls of step: each one's time, and the server's CPU per call."""
    lat = []
    cpu0 = server_cpu_s(postmaster)
    for k in range(n):
        t = time.perf_counter()
        step(k)
        lat.append(time.perf_counter() - t)
    return {"lat": lat, "server_ms": (server_cpu_s(postmaster) - cpu0) / n * 1000}


def calls(work: Path, base: str, postmaster: int, template: str) -> dict[str, dict[str, Any]]:
    """A store opened, a heartbeat and live() with 8 leases held, the loop's claim (start.py's)
    and its poll of an empty queue, a claim on an open store: one client."""
    url = schema_url(base)
    os.environ.update(HARNESS_DATABASE_URL=url, HARNESS_STORE="postgres", HARNESS_HOST_NAME="calls")
    state = work / "calls"
    queue_of(Setup("postgres", 1, 1, False, SMALL_ITEMS, 0), work / "calls-queue", url, template)
    store = open_store(state)  # named postgres (state/store), as the loop's helpers find it
    store.init()
    out = {"open": timed(lambda k: open_store(state), CALLS, postmaster)}
    for k in range(8):
        store.claim(f"ses_held_{k}", "w0", time.time())
    out["beat"] = timed(lambda k: store.beat({"pid": os.getpid()}), 10 * CALLS, postmaster)  # short: more of them,
    out["live"] = timed(lambda k: store.live(), 10 * CALLS, postmaster)  # for the CPU's clock ticks (10 ms)
    policy = Policy()

    def loop_claim(k: int, where: Path, expect: type) -> None:
        got = gate.claim_gated(open_store(where), f"ses_gated_{k}", "w0", policy, time.time())
        assert isinstance(got, expect), f"the loop's claim got {got!r}"

    out["loop_claim"] = timed(lambda k: loop_claim(k, state, Lease), CALLS, postmaster)
    out["claim"] = timed(lambda k: store.claim(f"ses_one_{k}", "w0", time.time(), aging_s=AGING_S), CALLS, postmaster)
    os.environ["HARNESS_DATABASE_URL"] = schema_url(base)  # an empty queue
    open_store(work / "calls-idle").init()
    out["idle_poll"] = timed(lambda k: loop_claim(k, work / "calls-idle", type(None)), CALLS, postmaster)
    return out


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


def kill_and_watch(root: Path, url: str, lease_s: float) -> tuple[list[list[Any]], float, list[list[Any]]]:
    """The holder's leases, the moment it was killed, and what the poller took."""
    dead = spawn(["holder", str(root / "dead")], worker_env(url, "dead", lease_s))
    procs = [dead]
    try:
        held = orjson.loads(line_of(dead, "holder"))
        alive = spawn(["poller", str(root / "alive"), str(len(held))], worker_env(url, "alive", lease_s))
        procs.append(alive)
        line_of(alive, "poller")
        time.sleep(lease_s + random.uniform(0, 2 * BEAT_S))  # past its first lease: renewals keep the items
        died = time.time()
        dead.kill()
        dead.wait()
        return held, died, orjson.loads(line_of(alive, "poller"))
    finally:
        stop(procs)


def takeover(work: Path, url: str, lease_s: float, template: str) -> dict[str, Any]:
    url = schema_url(url)
    root = work / f"takeover-{lease_s:g}"
    os.environ["HARNESS_DATABASE_URL"] = url
    queue_of(Setup("postgres", 1, 1, False, TAKE_ITEMS, 0), root, url, template)
    held, died, taken = kill_and_watch(root, url, lease_s)
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT heartbeat FROM hosts WHERE name = 'dead'").fetchone()
    renewed = float(row[0]) if row else float("nan")
    store = open_store(root / "dead", "postgres")
    fenced = 0
    for item_id, sid, token in held:
        try:
            store.finish(Lease(item_id, sid, token), "succeeded", {"session_id": sid}, 1, None)
        except FencedError:
            fenced += 1
    audited = sum(1 for e in open_store(root / "alive", "postgres").events() if e.get("event") == "item.taken_over")
    return {"lease_s": lease_s, "items": TAKE_ITEMS, "held": len(held), "taken": len(taken), "fenced": fenced,
            "audited": audited, "since_renewal": died - renewed,
            "after_death": [t - died for _, t, _ in taken], "after_renewal": [t - renewed for _, t, _ in taken]}


# --- the report -------------------------------------------------------------


def ms(values: list[float], q: float) -> str:
    return f"{pct(values, q) * 1000:.2f}" if values else "-"


def claims_table(runs: list[dict[str, Any]]) -> None:
    print(f"  {'store':<18}{'loopsxclaimers':>15}{'with':>8}{'queue':>7}{'claims/s':>10}{'claim p50':>11}{'p99 ms':>9}"
          f"{'finish p50':>12}{'p99 ms':>8}{'cores: server':>15}{'clients':>9}{'machine':>9}{'server ms/claim':>17}"
          f"{'once':>6}")
    for r in runs:
        pg = r["backend"].startswith("postgres")
        server, per_claim = (f"{r['server_cores']:.2f}", f"{r['server_cores'] / r['rate'] * 1000:.2f}") if pg else ("-", "-")
        print(f"  {r['backend']:<18}{r['shape']:>15}{'finish' if r['finish'] else 'claim':>8}{r['items']:>7}"
              f"{r['rate']:10.1f}{ms(r['lat'], 0.5):>11}{ms(r['lat'], 0.99):>9}{ms(r['fin'], 0.5):>12}"
              f"{ms(r['fin'], 0.99):>8}{server:>15}{r['client_cores']:9.2f}{r['busy_cores']:9.2f}{per_claim:>17}"
              f"{'yes' if r['once'] else 'NO':>6}")
    base = {(r["finish"], r["items"]): r["rate"] for r in runs if r["backend"] == "sqlite"}
    for r in runs:
        if r["backend"].startswith("postgres") and (r["finish"], r["items"]) in base:
            print(f"  {r['backend']} {r['shape']}/sqlite, {'claim+finish' if r['finish'] else 'claim alone'}, {r['items']} "
                  f"items: {r['rate'] / base[(r['finish'], r['items'])]:.2f}x the claims per second")


def calls_table(out: dict[str, dict[str, Any]]) -> None:
    names = {"open": "a store opened (connection, settings, schema check)", "beat": "a heartbeat, 8 leases renewed",
             "live": "live(), 8 leases (the sidecar's, at each of its rounds)",
             "claim": f"a claim on an open store ({SMALL_ITEMS} items queued)",
             "loop_claim": "the loop's claim: gate.claim_gated, 3 stores opened",
             "idle_poll": "the same on an empty queue (an idle loop's poll)"}
    for key, name in names.items():
        r = out[key]
        print(f"  {name:<56} p50 {ms(r['lat'], 0.5):>7} ms  p99 {ms(r['lat'], 0.99):>7} ms  "
              f"server CPU {r['server_ms']:6.2f} ms per call")


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


def run_all(work: Path, url: str, postmaster: int) -> dict[str, Any]:
    template = "template_items"
    os.environ["HARNESS_DATABASE_URL"] = schema_url(url, template)
    t = time.monotonic()
    open_store(work / "template", "postgres").add([("bench", {"id": f"i{i:05d}", "prompt": f"item {i}"})
                                                    for i in range(N_ITEMS)])
    add_rate = N_ITEMS / (time.monotonic() - t)
    pg, lite = ("postgres", LOOPS, CLAIMERS), ("sqlite", SQLITE_CLAIMERS, 1)
    setups = [Setup(*pg, False, N_ITEMS, RUN_S), Setup(*pg, False, N_ITEMS, RUN_S, jit=False),
              Setup("postgres", LOOPS, 1, False, N_ITEMS, RUN_S), Setup(*lite, False, N_ITEMS, RUN_S),
              Setup(*pg, True, N_ITEMS, RUN_S), Setup(*lite, True, N_ITEMS, RUN_S),
              Setup(*pg, False, SMALL_ITEMS, DRAIN_S), Setup(*lite, False, SMALL_ITEMS, DRAIN_S)]
    runs = [claims(work, s, url, postmaster, template) for s in setups]
    one = calls(work, url, postmaster, template)
    rounds = [takeover(work, url, lease_s, template) for lease_s in TAKE_LEASES_S]
    return {"add_rate": add_rate, "runs": runs, "calls": one, "takeover": rounds}


def report(out: dict[str, Any], seconds: float) -> bool:
    runs, rounds = out["runs"], out["takeover"]
    print(f"fleet claims: a queue added up front, claimed by all at once for {RUN_S:g} s (the {SMALL_ITEMS} items: "
          f"until empty); postgres {out['server']} on a unix socket (fsync off); AGING_S={AGING_S:g}; "
          f"{os.cpu_count()} cores")
    claims_table(runs)
    print(f"  (postgres store.add: {out['add_rate']:.0f} items/s)")
    print("the loop's calls, one client, idle server:")
    calls_table(out["calls"])
    print(f"takeover: {TAKE_ITEMS} items held by a host renewing every {BEAT_S:g} s, killed; the other claims every "
          f"{POLL_S * 1000:.0f} ms")
    takeover_table(rounds)
    rate = runs[0]["rate"]
    met = rate >= TARGET_RATE
    print(f"target: postgres {runs[0]['shape']}, {runs[0]['items']} items: >= {TARGET_RATE:g} claims/s: {rate:.0f}/s, "
          f"{'ok' if met else 'MISSED'}; {seconds:.0f} s in all; load average {out['load_before'][0]:.2f} before, "
          f"{out['load_after'][0]:.2f} after")
    return met and all(r["once"] for r in runs) and all(
        r["taken"] == r["items"] == r["audited"] == r["fenced"] for r in rounds)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, default=ROOT / ".bench" / "fleet.json")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a stop still stops the cluster
    began, load = time.monotonic(), os.getloadavg()
    work = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    try:
        with cluster() as (url, postmaster):
            out = run_all(work, url, postmaster)
            with psycopg.connect(url) as conn:
                out["server"] = str(conn.execute("SHOW server_version").fetchone()[0])  # type: ignore[index]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out["load_before"], out["load_after"] = load, os.getloadavg()
    ok = report(out, time.monotonic() - began)
    for r in out["runs"]:
        r.update(claim_p50_ms=pct(r["lat"], 0.5) * 1000, claim_p99_ms=pct(r["lat"], 0.99) * 1000,
                 finish_p50_ms=pct(r["fin"], 0.5) * 1000, finish_p99_ms=pct(r["fin"], 0.99) * 1000)
        del r["lat"], r["fin"]
    for r in out["calls"].values():
        r.update(p50_ms=pct(r["lat"], 0.5) * 1000, p99_ms=pct(r["lat"], 0.99) * 1000)
        del r["lat"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=1))
    return 0 if ok else 1


WORKERS = {"loop": loop_main, "holder": holder_main, "poller": poller_main}

if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] in WORKERS:
        WORKERS[sys.argv[1]](sys.argv[2:])
        sys.exit(0)
    sys.exit(main())
