"""/events under load: 16 live sessions whose heartbeats are rewritten every 0.5 s,
10 connected clients, audit events written at 20 a second for 20 s.

    .venv/bin/python tests/bench/bench_feed.py

Prints the latency from an audit event's write to its arrival at a client (p50,
p95, max; target p95 at most 250 ms; to the client's socket, not a browser's DOM),
the server's CPU over the window (target at most 5% of one core) and its peak RSS;
and, as the same run's baseline, the same with a single client.
"""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "lib"))

from common import ROOT, cpu_s, pct, peak_rss_mb
from harness import jsonio
from harness.store import open_store

SESSIONS, CLIENTS, RATE, SECONDS = 16, 10, 20, 20.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Client(threading.Thread):
    def __init__(self, port: int) -> None:
        super().__init__(daemon=True)
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.conn.request("GET", "/events")
        self.resp = self.conn.getresponse()
        self.latencies: list[float] = []
        self.beats = 0

    def run(self) -> None:
        kind = ""
        try:
            for line in self.resp:
                if line.startswith(b"event: "):
                    kind = line[7:].strip().decode()
                elif line.startswith(b"data: "):
                    doc = jsonio.loads(line[6:])
                    if kind == "heartbeat":
                        self.beats += 1
                    elif isinstance(doc.get("sent"), float):
                        self.latencies.append(time.time() - doc["sent"])
        except (OSError, ValueError, http.client.HTTPException):
            return

    def stop(self) -> None:
        if self.conn.sock is not None:
            self.conn.sock.shutdown(socket.SHUT_RDWR)
        self.join(timeout=10)
        self.conn.close()


def measure(n_clients: int) -> tuple[list[float], float, float, int]:
    state = Path(tempfile.mkdtemp(prefix="bench-feed-")) / "state"
    store = open_store(state)
    store.add([("t", {"id": f"s{i:02d}", "prompt": "p"}) for i in range(SESSIONS)])
    sids = []
    for i in range(SESSIONS):
        lease = store.claim(f"ses_{i:02d}", "w", 1e10)
        assert lease is not None
        sids.append(lease.session_id)
        (state / "sessions" / lease.session_id).mkdir(parents=True)
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "lib")}
    env.pop("HARNESS_SERVE_TOKEN", None)
    proc = subprocess.Popen([sys.executable, "-m", "harness", "http", "--state-dir", str(state), "--addr",
                             f"127.0.0.1:{port}"], env=env, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert time.monotonic() < deadline, "the server did not come up"
            time.sleep(0.05)
    clients = [Client(port) for _ in range(n_clients)]
    for c in clients:
        c.start()
    time.sleep(0.5)  # let every client's first read settle before the window opens
    cpu0, t0 = cpu_s(proc.pid), time.monotonic()
    n, beat_at = 0, 0.0
    while time.monotonic() - t0 < SECONDS:
        now = time.monotonic()
        if now - beat_at >= 0.5:
            for k, sid in enumerate(sids):
                jsonio.write_atomic(state / "sessions" / sid / "heartbeat.json",
                                    jsonio.dumps({"session_id": sid, "turns": n, "k": k}) + b"\n", durable=False)
            beat_at = now
        store.audit("bench.event", n=n, sent=time.time())
        n += 1
        time.sleep(1.0 / RATE)  # the event rate of the load, not a wait for anything
    time.sleep(1.0)  # the last events' way to the clients
    cpu = (cpu_s(proc.pid) - cpu0) / (time.monotonic() - t0)
    rss = peak_rss_mb(proc.pid)
    for c in clients:
        c.stop()
    proc.terminate()
    proc.wait(timeout=15)
    lat = [x for c in clients for x in c.latencies]
    beats = sum(c.beats for c in clients)
    assert all(len(c.latencies) == n for c in clients), [len(c.latencies) for c in clients]
    return lat, cpu, rss, beats


def main() -> int:
    print(f"/events: {SESSIONS} live sessions (heartbeats every 0.5 s), audit events at {RATE}/s for {SECONDS:g} s")
    worst = 0.0
    for n_clients in (1, CLIENTS):
        lat, cpu, rss, beats = measure(n_clients)
        ms = [x * 1000 for x in lat]
        worst = max(worst, pct(ms, 0.95))
        print(f"  {n_clients:2d} client(s): latency p50 {pct(ms, 0.5):6.1f} ms  p95 {pct(ms, 0.95):6.1f} ms  "
              f"max {max(ms):6.1f} ms  (target p95 <= 250 ms);  server CPU {cpu * 100:4.1f}% of a core "
              f"(target <= 5%), peak RSS {rss:.0f} MB;  {beats} heartbeats delivered")
    return 0 if worst <= 250 else 1


if __name__ == "__main__":
    sys.exit(main())
