"""/events (serve/feed.py) through a real server: a reconnect with Last-Event-ID
misses nothing and repeats nothing; a client that reads nothing is dropped while
one that reads keeps up with every event."""

from __future__ import annotations

import http.client
import shutil
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
from harness import jsonio
from harness.store import open_store
from test_metrics import _families, _free_port, _get, _samples, _server, _up

PAD = "x" * 4000  # 3,000 events of 4 kB: more than the kernel buffers and the queue hold


class Reader:
    """A client of /events: its events' (id, data) in order, read on a thread."""

    def __init__(self, port: int, last_id: str | None = None) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        headers = {"Last-Event-ID": last_id} if last_id else {}
        self.conn.request("GET", "/events", headers=headers)
        self.resp = self.conn.getresponse()
        assert self.resp.status == 200
        self.events: list[tuple[str, dict[str, object]]] = []
        self.beats: list[tuple[str, dict[str, object]]] = []  # heartbeats: no id
        self.error = ""
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        ev_id, kind, data = "", "", b""
        try:
            for line in self.resp:
                if line.startswith(b"id: "):
                    ev_id = line[4:].strip().decode()
                elif line.startswith(b"event: "):
                    kind = line[7:].strip().decode()
                elif line.startswith(b"data: "):
                    data = line[6:].rstrip(b"\n")
                elif line == b"\n" and data:
                    (self.beats if kind == "heartbeat" else self.events).append((ev_id, jsonio.loads(data)))
                    ev_id, kind, data = "", "", b""
        except (OSError, ValueError, http.client.HTTPException) as exc:
            self.error = f"{type(exc).__name__}: {exc}"

    def close(self) -> None:
        """Gone, as a browser tab closes: the socket shut first, which wakes the reader."""
        if self.conn.sock is not None:
            self.conn.sock.shutdown(socket.SHUT_RDWR)
        self.thread.join(timeout=10)
        self.conn.close()

    def wait_for(self, n: int, deadline_s: float = 30.0) -> None:
        deadline = time.monotonic() + deadline_s
        while len(self.events) < n:
            assert time.monotonic() < deadline, f"{len(self.events)} of {n} events ({self.error or 'still reading'})"
            time.sleep(0.02)  # polling the reader thread's list, with a deadline


def _stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise AssertionError("the server did not stop on SIGTERM") from None


def _connected(port: int, n: int, deadline_s: float = 10.0) -> None:
    """Until the server counts n feed clients (so that nothing appended next is before them)."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        status, text = _get(f"http://127.0.0.1:{port}/metrics")
        if status == 200 and _samples(_families(text)["harness_feed_clients"]) == {(): n}:
            return
        time.sleep(0.05)  # polling the server's own count, with a deadline
    raise AssertionError(f"the server never had {n} feed clients")


def test_a_reconnect_with_last_event_id_misses_nothing_and_repeats_nothing(tmp_path: Path) -> None:
    state = tmp_path / "state"
    store = open_store(state)
    store.audit("before", n=-1)  # before the client: not sent to a new client
    port = _free_port()
    proc = _server(state, f"127.0.0.1:{port}", None)
    try:
        _up(port, proc)
        first = Reader(port)
        _connected(port, 1)
        for n in range(10):
            store.audit("e", n=n)
        first.wait_for(10)
        assert [d["n"] for _, d in first.events] == list(range(10))
        last_id = first.events[3][0]
        first.close()
        for n in range(10, 20):
            store.audit("e", n=n)
        again = Reader(port, last_id)
        again.wait_for(16)
        store.audit("e", n=20)
        again.wait_for(17)
        assert [d["n"] for _, d in again.events] == list(range(4, 21))
        again.close()
    finally:
        _stop(proc)


def test_a_client_that_reads_nothing_is_dropped_and_the_others_keep_up(tmp_path: Path) -> None:
    state = tmp_path / "state"
    store = open_store(state)
    port = _free_port()
    proc = _server(state, f"127.0.0.1:{port}", None)
    slow = socket.socket()
    try:
        _up(port, proc)
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.connect(("127.0.0.1", port))
        slow.sendall(b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")  # and never reads a byte
        fast = Reader(port)
        _connected(port, 2)
        n_events = 3000
        for n in range(n_events):
            store.audit("e", n=n, pad=PAD)
            if n - len(fast.events) > 300:  # a client that keeps up: never far behind
                fast.wait_for(n - 100)
        fast.wait_for(n_events, deadline_s=60)
        assert [d["n"] for _, d in fast.events] == list(range(n_events))
        deadline = time.monotonic() + 30
        while True:
            fams = _families(_get(f"http://127.0.0.1:{port}/metrics")[1])
            if _samples(fams["harness_feed_dropped_clients"], "harness_feed_dropped_clients_total") == {(): 1}:
                break
            assert time.monotonic() < deadline, "the slow client was never dropped"
            time.sleep(0.05)  # polling the server's count, with a deadline
        assert _samples(fams["harness_feed_clients"]) == {(): 1}
        fast.close()
    finally:
        slow.close()
        _stop(proc)


def test_a_live_session_s_heartbeats_are_in_the_feed_as_they_are_rewritten(tmp_path: Path) -> None:
    state = tmp_path / "state"
    store = open_store(state)
    store.add([("t", {"id": "a", "prompt": "p"})])
    assert store.claim("ses_live", "w", 1e10) is not None
    hb = state / "sessions" / "ses_live" / "heartbeat.json"
    hb.parent.mkdir(parents=True)
    port = _free_port()
    proc = _server(state, f"127.0.0.1:{port}", None)
    try:
        _up(port, proc)
        reader = Reader(port)
        _connected(port, 1)
        for turns in (1, 2):
            jsonio.write_atomic(hb, jsonio.dumps({"session_id": "ses_live", "turns": turns}) + b"\n")
            deadline = time.monotonic() + 10
            while not any(d.get("turns") == turns for _, d in reader.beats):
                assert time.monotonic() < deadline, f"no heartbeat with turns {turns}: {reader.beats}"
                time.sleep(0.02)  # polling the reader thread's list, with a deadline
        assert all(i == "" for i, _ in reader.beats) and reader.events == []
        reader.close()
    finally:
        _stop(proc)


def _raw(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request)
        return s.recv(200)


def test_bad_input_neither_leaks_a_client_nor_stops_the_feed(tmp_path: Path) -> None:
    state = tmp_path / "state"
    store = open_store(state)
    store.add([("t", {"id": "a", "prompt": "p"})])
    assert store.claim("ses_live", "w", 1e10) is not None
    port = _free_port()
    proc = _server(state, f"127.0.0.1:{port}", None)
    try:
        _up(port, proc)
        for bad in ("1:-1", "x", "99999999:99999999999"):  # a malformed or impossible Last-Event-ID
            r = Reader(port, bad)
            r.close()
        # a Host that is not loopback's: refused (no DNS rebinding onto a tokenless server)
        assert _raw(port, b"GET /metrics HTTP/1.1\r\nHost: evil.example\r\n\r\n").startswith(b"HTTP/1.1 400")
        _connected(port, 0)
        reader = Reader(port)
        _connected(port, 1)
        # the log replaced by a directory for a while: the tailer's look fails, says so, and goes on
        log = state / "events.jsonl"
        log.rename(state / "events.jsonl.1")
        log.mkdir()
        deadline = time.monotonic() + 10
        while b"harness: feed: IsADirectoryError" not in _stderr_so_far(proc):
            assert time.monotonic() < deadline, "the tailer's failure was never said"
            time.sleep(0.05)  # polling the server's stderr, with a deadline
        log.rmdir()
        store.audit("still", n=1)
        reader.wait_for(1)
        assert reader.events[0][1]["event"] == "still"
        assert _get(f"http://127.0.0.1:{port}/healthz")[0] == 200
        (state / "store").write_text("migrating\n")  # the store cannot be opened: /metrics says so
        assert _get(f"http://127.0.0.1:{port}/metrics")[0] == 503
        reader.close()
    finally:
        _stop(proc)


_seen: dict[int, bytes] = {}


def _stderr_so_far(proc: subprocess.Popen[bytes]) -> bytes:
    """What the server wrote to stderr so far (read without blocking)."""
    import fcntl
    import os

    assert proc.stderr is not None
    fd = proc.stderr.fileno()
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_NONBLOCK)
    try:
        chunk = os.read(fd, 65536)
    except BlockingIOError:
        chunk = b""
    _seen[proc.pid] = _seen.get(proc.pid, b"") + chunk
    return _seen[proc.pid]


def test_logrotate_copytruncate_of_the_audit_log_keeps_the_feed_going(tmp_path: Path) -> None:
    """packaging/logrotate.in rotates events.jsonl with copytruncate: the server's tailer
    sees a shorter file and reads the new lines from its top, none lost or repeated."""
    logrotate = shutil.which("logrotate") or shutil.which("/usr/sbin/logrotate")
    if logrotate is None:
        pytest.skip("logrotate is not installed (tests/install-deps.sh installs it)")
    state = tmp_path / "state"
    store = open_store(state)
    conf = tmp_path / "logrotate.conf"
    template = (Path(__file__).resolve().parents[2] / "packaging" / "logrotate.in").read_text()
    conf.write_text("\n".join(line for line in template.replace("@STATE_DIR@", str(state)).splitlines()
                              if not line.strip().startswith("su ")) + "\n")
    port = _free_port()
    proc = _server(state, f"127.0.0.1:{port}", None)
    try:
        _up(port, proc)
        reader = Reader(port)
        _connected(port, 1)
        for n in range(5):
            store.audit("e", n=n)
        reader.wait_for(5)
        subprocess.run([logrotate, "--state", str(tmp_path / "lr.state"), "--force", str(conf)], check=True)
        assert (state / "events.jsonl.1").stat().st_size > 0 and (state / "events.jsonl").stat().st_size == 0
        for n in range(5, 8):
            store.audit("e", n=n)
        reader.wait_for(8)
        assert [d["n"] for _, d in reader.events] == list(range(8))
        reader.close()
    finally:
        _stop(proc)
