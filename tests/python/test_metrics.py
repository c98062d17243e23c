"""/metrics (serve/metrics.py, serve/http.py): what prometheus_client's own parser
reads from it agrees with the store; the server's token; the textfile."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from harness import jsonio
from harness.pipeline.policy import iso
from harness.store import open_store
from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_800_000_000.0
TOKEN = "s3cret-token-0123456789"


def _receipt(sid: str, item: str, verdict: str, wall: float, **extra: Any) -> dict[str, Any]:
    return {"session_id": sid, "item_id": item, "verdict": verdict, "started_at": iso(T0), "ended_at": iso(T0 + wall),
            "wall_s": wall, "cost_usd": 0.5, "turns": 3,
            "tokens": {"input": 100, "output": 20, "cache_read": 1000, "cache_write": 10}, **extra}


def _state(tmp_path: Path, backend: str) -> Path:
    state = tmp_path / backend
    store = open_store(state, backend)
    store.init()
    store.add([("t", {"id": i, "prompt": "p", "run": "night", "created_at": iso(T0 + n)})
               for n, i in enumerate(("a", "b", "c", "d"))])
    for sid in ("s1", "s2"):
        lease = store.claim(sid, "w", T0 + 10)
        assert lease is not None
        store.finish(lease, "succeeded", {"session_id": sid}, 1, None)
    assert store.claim("s3", "w", T0 + 10) is not None  # c is running
    receipts = [
        _receipt("s1", "a", "succeeded", 40.0, ttft_s=1.5, claim_to_exec_s=0.08, api_retries={"529": 3, "503": 1}),
        _receipt("s2", "b", "succeeded", 400.0, ttft_s=4.0, fix_round=1, verify={"cmd": "t", "seconds": 20.0}),
        _receipt("s0", "b", "verify_failed", 100.0, verify={"cmd": "t", "seconds": 2.0}, api_retries={"429": 2}),
        _receipt("s9", "x", "stalled", 700.0),
    ]
    for r in receipts:
        store.record_attempt(r)
        d = state / "sessions" / r["session_id"]
        d.mkdir(parents=True, exist_ok=True)
        jsonio.write_json(d / "metrics.json", r)
    store.audit("item.integrated", item="a")
    store.audit("item.integrated", item="b")
    store.audit("integrate.failed", item="x")
    store.set_pause(T0 + 3600, "five_hour limit", by="usage_limited")
    return state


def _families(text: str) -> dict[str, Any]:
    return {f.name: f for f in text_string_to_metric_families(text)}


def _samples(fam: Any, name: str | None = None) -> dict[tuple[tuple[str, str], ...], float]:
    return {tuple(sorted(s.labels.items())): s.value for s in fam.samples if name is None or s.name == name}


@pytest.mark.parametrize("backend", ["sqlite", "files"])
def test_the_metrics_agree_with_the_store(tmp_path: Path, backend: str) -> None:
    from harness.serve.metrics import StoreCollector, registry
    from prometheus_client import generate_latest

    state = _state(tmp_path, backend)
    fams = _families(generate_latest(registry(state)).decode())
    sessions = _samples(fams["harness_sessions"], "harness_sessions_total")
    assert fams["harness_sessions"].type == "counter"
    assert sessions[(("verdict", "succeeded"),)] == 2 and sessions[(("verdict", "stalled"),)] == 1
    assert sessions[(("verdict", "verify_failed"),)] == 1 and sessions[(("verdict", "crashed"),)] == 0
    assert _samples(fams["harness_tokens"]) == {(("kind", "input"),): 400, (("kind", "output"),): 80,
                                                (("kind", "cache_read"),): 4000, (("kind", "cache_write"),): 40}
    assert _samples(fams["harness_cost_usd"]) == {(): 2.0}
    assert _samples(fams["harness_api_retries"]) == {(("status", "429"),): 2, (("status", "503"),): 1,
                                                     (("status", "529"),): 3}
    assert _samples(fams["harness_stalls"]) == {(): 1} and _samples(fams["harness_fix_rounds"]) == {(): 1}
    integrations = _samples(fams["harness_integrations"])
    assert integrations[(("result", "landed"),)] == 2 and integrations[(("result", "failed"),)] == 1
    assert _samples(fams["harness_running_sessions"]) == {(): 1}
    queue_items = _samples(fams["harness_queue_items"])
    assert {k[0][1]: v for k, v in queue_items.items() if v} == {"pending": 1, "running": 1, "succeeded": 2}
    assert _samples(fams["harness_breaker_state"]) == {(("state", "closed"),): 1, (("state", "open"),): 0,
                                                       (("state", "half_open"),): 0}
    # the pause's end, by the collector's clock
    fams = _families(generate_latest(_one(StoreCollector(state, clock=lambda: T0))).decode())
    assert _samples(fams["harness_pause_until_timestamp_seconds"]) == {(): T0 + 3600}
    assert _samples(fams["harness_run_progress_ratio"]) == {(("run", "night"),): 0.5}
    wall = _samples(fams["harness_session_wall_seconds"], "harness_session_wall_seconds_bucket")
    assert fams["harness_session_wall_seconds"].type == "histogram"
    assert (wall[(("le", "60.0"),)], wall[(("le", "600.0"),)], wall[(("le", "+Inf"),)]) == (1, 3, 4)
    assert _samples(fams["harness_session_wall_seconds"], "harness_session_wall_seconds_sum") == {(): 1240.0}
    verify = _samples(fams["harness_verify_seconds"], "harness_verify_seconds_count")
    assert verify == {(): 2}
    claim = _samples(fams["harness_claim_to_exec_seconds"], "harness_claim_to_exec_seconds_bucket")
    assert claim[(("le", "0.1"),)] == 1
    # labels from bounded sets only: never a session or item id
    labels = {k for f in _families(generate_latest(registry(state)).decode()).values() for x in f.samples
              for k in x.labels}
    assert labels == {"verdict", "kind", "status", "result", "state", "run", "le"}


def _one(collector: Any) -> Any:
    from prometheus_client.registry import CollectorRegistry

    reg = CollectorRegistry(auto_describe=False)
    reg.register(collector)
    return reg


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str, token: str | None = None) -> tuple[int, str]:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def _server(state: Path, addr: str, token: str | None) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "lib")}
    env.pop("HARNESS_SERVE_TOKEN", None)
    if token:
        env["HARNESS_SERVE_TOKEN"] = token
    return subprocess.Popen([sys.executable, "-m", "harness", "http", "--state-dir", str(state), "--addr", addr],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _up(port: int, proc: subprocess.Popen[bytes], deadline_s: float = 20.0) -> None:
    """Until the port takes a connection (no request: it would be refused and audited)."""
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"the server exited: {proc.stderr.read().decode() if proc.stderr else ''}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)  # polling for the port to open, with a deadline
    raise AssertionError("the server did not come up")


def test_the_server_wants_its_token_for_every_request_and_audits_a_refusal(tmp_path: Path) -> None:
    state = _state(tmp_path, "sqlite")
    port = _free_port()
    proc = _server(state, f"127.0.0.1:{port}", TOKEN)
    try:
        base = f"http://127.0.0.1:{port}"
        _up(port, proc)
        assert _get(base + "/metrics")[0] == 401
        assert _get(base + "/healthz", "wrong-token-0123456789")[0] == 401
        status, text = _get(base + "/metrics", TOKEN)
        assert status == 200
        assert _samples(_families(text)["harness_cost_usd"]) == {(): 2.0}
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    log = (state / "events.jsonl").read_text()
    refused = [e for e in map(jsonio.loads, log.splitlines()) if e["event"] == "serve.refused"]
    assert [(e["path"], e["reason"]) for e in refused] == [("/metrics", "no token"), ("/healthz", "wrong token")]
    assert TOKEN not in log and "wrong-token" not in log


def test_a_server_off_loopback_without_a_token_refuses_to_start(tmp_path: Path) -> None:
    state = _state(tmp_path, "sqlite")
    proc = _server(state, "0.0.0.0:9", None)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 2
    assert err.decode().strip() == "harness: serving on 0.0.0.0 (not loopback) needs SERVE_TOKEN; refused"
    proc = _server(state, "127.0.0.1:99999", None)
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 2 and "SERVE_ADDR must be host:port" in err.decode()


def test_the_textfile_is_written_whole_and_parses(tmp_path: Path) -> None:
    state = _state(tmp_path, "sqlite")
    out = tmp_path / "textfile" / "harness.prom"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "lib")}
    subprocess.run([sys.executable, "-m", "harness", "http", "--state-dir", str(state), "--textfile", str(out)],
                   env=env, check=True)
    fams = _families(out.read_text())
    assert _samples(fams["harness_sessions"], "harness_sessions_total")[(("verdict", "succeeded"),)] == 2
    assert [p.name for p in out.parent.iterdir()] == ["harness.prom"]  # no temp file left


def test_the_textfile_is_readable_by_node_exporter(tmp_path: Path) -> None:
    from harness.serve.metrics import write_textfile

    state = _state(tmp_path, "sqlite")
    old = os.umask(0o077)  # the harness's
    try:
        write_textfile(state, tmp_path / "new" / "harness.prom")
    finally:
        os.umask(old)
    assert oct((tmp_path / "new" / "harness.prom").stat().st_mode & 0o777) == "0o644"
    assert oct((tmp_path / "new").stat().st_mode & 0o777) == "0o755"


def test_events_need_the_token_too(tmp_path: Path) -> None:
    state = _state(tmp_path, "sqlite")
    port = _free_port()
    proc = _server(state, f"127.0.0.1:{port}", TOKEN)
    try:
        _up(port, proc)
        assert _get(f"http://127.0.0.1:{port}/events")[0] == 401
        assert _get(f"http://127.0.0.1:{port}/nowhere")[0] == 401  # every path, even an unknown one
    finally:
        proc.terminate()
        proc.wait(timeout=10)
