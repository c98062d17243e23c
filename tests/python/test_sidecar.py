"""The sidecar as a process: heartbeats, restart without double counting, polling
fallback, stall detection and the stop in steps."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from harness import jsonio

ROOT = Path(__file__).resolve().parents[2]


def wait_until(cond: Callable[[], Any], timeout_s: float = 10.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = cond()
        if got:
            return got
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


class Rig:
    def __init__(self, root: Path) -> None:
        self.state = root / "state"
        self.sid = f"ses_{uuid.uuid4()}"
        self.dir = self.state / "sessions" / self.sid
        self.dir.mkdir(parents=True)
        (self.state / "queue" / "running").mkdir(parents=True)
        jsonio.write_json(self.dir / "meta.json", {"session_id": self.sid, "started_epoch": time.time()})
        self.events = self.dir / "events.jsonl"
        self.events.touch()
        self.procs: list[subprocess.Popen[bytes]] = []

    def lease(self, **item: Any) -> None:
        jsonio.write_json(self.state / "queue" / "running" / "it.json",
                          {"id": "it", "lease": {"session_id": self.sid}, **item})

    def append(self, *events: dict[str, Any]) -> None:
        with open(self.events, "ab") as fh:
            fh.write(b"".join(orjson.dumps(e) + b"\n" for e in events))

    def sidecar(self, *extra: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        p = subprocess.Popen(
            [sys.executable, "-m", "harness", "sidecar", "--state-dir", str(self.state), "--heartbeat-s", "0.1",
             "--monitor-poll-s", "0.02", *extra],
            env={**os.environ, "PYTHONPATH": str(ROOT / "lib"), **(env or {})},
            stderr=open(self.state / "sidecar.log", "ab"),  # noqa: SIM115 - closed with the process
        )
        self.procs.append(p)
        return p

    def heartbeat(self) -> dict[str, Any]:
        try:
            return dict(jsonio.read_json(self.dir / "heartbeat.json"))
        except (OSError, ValueError):
            return {}

    def close(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait()
            if p.stderr:
                p.stderr.close()


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    r = Rig(tmp_path)
    yield r
    r.close()


def delta(text: str) -> dict[str, Any]:
    return {"type": "stream_event", "event": {"type": "content_block_delta", "index": 0,
                                              "delta": {"type": "text_delta", "text": text}}}


def turn(n: int) -> dict[str, Any]:
    return {"type": "stream_event", "event": {"type": "message_start", "message": {
        "id": f"msg_{n}", "model": "claude-opus-4-8", "usage": {"input_tokens": 10, "output_tokens": 1}}}}


def test_heartbeats_follow_the_file_and_a_restart_counts_nothing_twice(rig: Rig) -> None:
    rig.lease()
    rig.append({"type": "system", "subtype": "init", "model": "claude-opus-4-8"}, turn(1), *[delta("x")] * 98)
    first = rig.sidecar()
    wait_until(lambda: rig.heartbeat().get("events") == 100, what="100 events in the heartbeat")
    hb = rig.heartbeat()
    assert (hb["phase"], hb["turns"], hb["tokens"]["input"], hb["item_id"]) == ("streaming", 1, 10, "it")
    first.kill()
    first.wait()
    rig.append(turn(2), *[delta("y")] * 49)
    second = rig.sidecar()
    wait_until(lambda: rig.heartbeat().get("events") == 150, what="150 events after the restart")
    assert rig.heartbeat()["turns"] == 2
    marks = [orjson.loads(x) for x in (rig.dir / "timeline.jsonl").read_bytes().splitlines()]
    ns = [m["n"] for m in marks]
    assert len(ns) == len(set(ns)), "a mark was written twice"
    assert [m["kind"] for m in marks] == ["init", "turn", "turn"]
    second.send_signal(signal.SIGTERM)
    assert second.wait(timeout=10) == 0


def test_without_inotify_the_sidecar_polls(rig: Rig) -> None:
    rig.lease()
    car = rig.sidecar(env={"HARNESS_NO_INOTIFY": "1"})
    own = rig.state / "sidecar.heartbeat.json"
    wait_until(lambda: own.exists() and jsonio.read_json(own)["mode"] == "polling", what="polling mode")
    for i in range(5):
        rig.append(delta(str(i)))
        wait_until(lambda i=i: rig.heartbeat().get("events") == i + 1, what=f"event {i + 1}")
    car.send_signal(signal.SIGTERM)
    assert car.wait(timeout=10) == 0


def _stubborn_agent(rig: Rig) -> subprocess.Popen[bytes]:
    """A process group that ignores SIGINT and SIGTERM, as a wedged agent might."""
    p = subprocess.Popen(["bash", "-c", "trap '' INT TERM; while :; do sleep 0.05; done"], start_new_session=True)
    rig.procs.append(p)
    (rig.dir / "agent.pid").write_text(f"{p.pid}\n")
    return p


def test_a_silent_session_is_found_stalled_and_left_to_the_loop_to_stop(rig: Rig) -> None:
    """The sidecar finds the stall and records it; the loop sends the signals (one
    stop state machine: tests/bats/loop.bats has the INT, TERM, KILL steps)."""
    rig.lease(stall_timeout_s=0.5)
    agent = _stubborn_agent(rig)
    rig.append({"type": "system", "subtype": "init"}, turn(1), delta("thinking"))
    rig.sidecar("--stall-timeout-s", "300")  # the item's limit wins
    wait_until(lambda: (rig.dir / "kill.json").exists(), what="the stall's record")
    stall = jsonio.read_json(rig.dir / "stall.json")
    assert (stall["limit_s"], stall["limit_kind"], stall["phase"], stall["events"]) == (0.5, "stream", "streaming", 3)
    kill = jsonio.read_json(rig.dir / "kill.json")
    assert (kill["reason"], kill["by"]) == ("stalled", "sidecar")
    wait_until(lambda: rig.heartbeat().get("stopping") == "stalled", what="the heartbeat saying so")
    audit = [orjson.loads(x) for x in (rig.state / "events.jsonl").read_bytes().splitlines()]
    assert [a["event"] for a in audit if a["event"].startswith("session.")] == ["session.stalled"]
    assert agent.poll() is None, "the sidecar sends no signal"


def test_a_long_silent_tool_call_is_not_a_stall_but_silence_after_it_is(rig: Rig) -> None:
    rig.lease(stall_timeout_s=0.4, tool_timeout_s=30)
    agent = _stubborn_agent(rig)
    rig.append({"type": "system", "subtype": "init"}, {"type": "assistant", "message": {"id": "m1", "content": [
        {"type": "tool_use", "id": "t1", "name": "Bash", "input": {"command": "make build"}}]}})
    rig.sidecar()
    wait_until(lambda: rig.heartbeat().get("phase") == "in_tool", what="in_tool")
    # the sidecar itself reports the session silent for well over the stall limit (0.4 s)
    wait_until(lambda: rig.heartbeat().get("silent_s", 0) >= 1.2, what="1.2 s of silence inside the tool call")
    assert not (rig.dir / "kill.json").exists()
    assert rig.heartbeat()["outstanding_tool"]["name"] == "Bash"
    rig.append({"type": "user", "message": {"content": [{"type": "tool_result", "tool_use_id": "t1", "content": "ok"}]}})
    # the sidecar writes the evidence (stall.json), then the stop's record (kill.json)
    wait_until(lambda: (rig.dir / "kill.json").exists(), what="a stall after the tool returned")
    assert jsonio.read_json(rig.dir / "stall.json")["limit_kind"] == "stream"
    assert jsonio.read_json(rig.dir / "kill.json")["reason"] == "stalled"
    assert agent.poll() is None  # stopping it is the loop's part


def test_a_stop_right_after_the_agent_exits_still_writes_the_final_heartbeat(rig: Rig) -> None:
    """The loop finalizes a session within milliseconds of its end and may stop the sidecar
    (--once) before the sidecar's next round: the stop itself reads the last lines."""
    from harness.sidecar import Options, Sidecar

    rig.lease()
    rig.append({"type": "system", "subtype": "init"}, turn(1))
    car = Sidecar(Options(state_dir=rig.state, heartbeat_s=0.1, poll_s=0.02))
    car.round()
    assert (rig.heartbeat()["phase"], rig.heartbeat()["events"]) == ("streaming", 2)
    rig.append(delta("done"))
    with open(rig.events, "ab") as fh:  # an agent killed mid-write leaves its last line unterminated
        fh.write(orjson.dumps({"type": "result", "subtype": "success", "is_error": False, "num_turns": 1}))
    (rig.dir / "exit_code").write_text("0\n")
    car.stop_requested = True  # as the SIGTERM handler does, before any further round
    assert car.run() == 0
    hb = rig.heartbeat()
    assert (hb["phase"], hb["events"], hb["turns"]) == ("exited", 4, 1)
    marks = [orjson.loads(x) for x in (rig.dir / "timeline.jsonl").read_bytes().splitlines()]
    assert [(m["n"], m["kind"]) for m in marks] == [(1, "init"), (2, "turn"), (4, "result")]
