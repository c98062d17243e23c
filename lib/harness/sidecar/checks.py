"""What the sidecar does for one live session: start following it (what the file
already holds read first), and on every round check its heartbeat, an API retry
storm (for the breaker) and a stall (for the loop to stop)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from harness import jsonio
from harness.pipeline import stops
from harness.pipeline.breaker import Breaker
from harness.sidecar.live import Limits, LiveSession
from harness.sidecar.model import Options, Tracked, _num, audit, log, wake_loop
from harness.stream.tailer import Tailer
from harness.stream.timeline import read_marks


def tracked(o: Options, sid: str, item_id: str, item: dict[str, Any], sdir: Path) -> Tracked:
    """A session to follow, with the item's limits, its start time from meta.json, and
    what its file already holds read (replay)."""
    limits = Limits(stall_s=_num(item.get("stall_timeout_s"), o.stall_s), tool_s=_num(item.get("tool_timeout_s"), o.tool_s))
    meta = jsonio.read_dict(sdir / "meta.json") or {}
    now_wall, now_mono = time.time(), time.monotonic()
    started = meta.get("started_epoch")
    started_mono = now_mono - max(0.0, now_wall - started) if isinstance(started, (int, float)) else now_mono
    marks = read_marks(sdir / "timeline.jsonl")  # what an earlier sidecar already wrote
    live = LiveSession(sid, limits, replay_upto=max((m["n"] for m in marks if isinstance(m.get("n"), int)), default=0))
    t = Tracked(sid, item_id, sdir, live, Tailer(sdir / "events.jsonl"), started_mono)
    replay(t)
    return t


def replay(t: Tracked) -> None:
    """Reads what the file already holds; its last line's time is the file's mtime."""
    try:
        mtime = os.stat(t.tailer.path).st_mtime
    except FileNotFoundError:
        return
    now_wall, now_mono = time.time(), time.monotonic()
    mono = now_mono - max(0.0, now_wall - mtime)
    while True:
        lines = t.tailer.read()
        if not lines:
            break
        for line in lines:
            t.live.feed_line(line, mtime, mono)
    for mark in t.live.marks:
        mark.extra["approx"] = True  # seen late: the time is the file's last write


def heartbeat(o: Options, t: Tracked, now_wall: float, now_mono: float, force: bool = False) -> None:
    """The session's heartbeat.json: at every turn, and every HEARTBEAT_S."""
    turns = len(t.live.facts.messages)
    if not force and turns == t.hb_turns and now_mono - t.hb_mono < o.heartbeat_s:
        return
    extra = {
        "item_id": t.item_id,
        "follow": "inotify" if t.watched else "polling",
        "stopping": t.stopping,
    }
    hb = t.live.heartbeat(now_wall, now_mono, t.started_mono, extra)
    try:
        jsonio.write_atomic(t.dir / "heartbeat.json", jsonio.dumps(hb) + b"\n", durable=False)
    except OSError as exc:
        log(f"{t.sid}: cannot write heartbeat.json: {exc}")
    t.hb_mono, t.hb_turns = now_mono, turns


def check_storm(o: Options, t: Tracked, now_wall: float) -> None:
    """API retries in a row inside one live session count for the breaker before it ends."""
    limit = o.policy.CIRCUIT_STORM_RETRIES
    if t.storm or limit <= 0 or t.live.retry_run < limit:
        return
    t.storm = True
    try:
        c = Breaker(o.state_dir, o.policy).storm(t.sid, t.live.retry_run, t.live.retry_status, now_wall)
    except OSError as exc:
        log(f"{t.sid}: cannot record an API retry storm in circuit.json: {exc}")
        return
    log(f"{t.sid}: {t.live.retry_run} API retries in a row (status {t.live.retry_status}); circuit {c.get('state')}")


def verifying(t: Tracked) -> bool:
    """The agent has ended and its wrapper runs the verify command (verify.pid): the
    stream is silent by then, and the command has its own time limit, so no stall."""
    if t.live.phase == "verifying":
        return True
    if t.live.facts.result is not None and (t.dir / "verify.pid").exists():
        t.live.phase = "verifying"
        return True
    return False


def check_all(o: Options, t: Tracked, now_wall: float, now_mono: float) -> None:
    """A round's checks of one live session: a retry storm, a stall, a burn; its heartbeat."""
    check_storm(o, t, now_wall)
    check_stall(o, t, now_wall, now_mono)
    check_burn(o, t, now_wall)
    heartbeat(o, t, now_wall, now_mono)


def check_burn(o: Options, t: Tracked, now_wall: float) -> None:
    """A session that spends past BURN_USD or BURN_TOKENS over BURN_TURNS turns without a
    tool call that changes anything: the evidence (burn.json) and the stop's record
    (kill.json, reason no_progress); the loop, woken, sends the signals."""
    p = o.policy
    if t.stopping is not None or verifying(t) or (t.dir / "kill.json").exists():
        return
    evidence = t.live.burn(p.BURN_TURNS, p.BURN_USD, p.BURN_TOKENS)
    if evidence is None:
        return
    detail = (f"{evidence['turns_since_change']} turns and ${evidence['spent_usd']:.4f} ({evidence['tokens']} tokens) "
              f"without a write, an edit or a commit (BURN_TURNS {p.BURN_TURNS}, BURN_USD {p.BURN_USD:g}, "
              f"BURN_TOKENS {p.BURN_TOKENS}); tools since: "
              + (", ".join(f"{k}:{v}" for k, v in sorted(evidence["tools_since"].items())) or "none"))
    jsonio.write_json(t.dir / "burn.json", {"session_id": t.sid, "item_id": t.item_id,
                                             "detected_at": jsonio.utc_now_iso(), **evidence})
    first = stops.record(t.dir, "no_progress", detail, "sidecar", now_wall)
    t.stopping = "no_progress" if first is None else str(first.get("reason") or "?")
    if first is not None:
        return
    audit(o.state_dir, "session.no_progress", session=t.sid, item=t.item_id, detail=detail)
    log(f"{t.sid}: no progress: {detail}; the loop stops it")
    wake_loop(o.state_dir)


def check_stall(o: Options, t: Tracked, now_wall: float, now_mono: float) -> None:
    """A session silent past its limit: the evidence (stall.json) and the stop's record
    (kill.json); the loop, woken, sends the signals."""
    if t.stopping is not None or verifying(t):
        return
    if (t.dir / "kill.json").exists():
        t.stopping = str((stops.read(t.dir) or {}).get("reason") or "?")
        return
    silent, limit, kind = t.live.silence(now_mono, t.started_mono)
    if silent <= limit:
        return
    evidence = {
        "session_id": t.sid,
        "item_id": t.item_id,
        "detected_at": jsonio.utc_now_iso(),
        "silent_s": round(silent, 3),
        "limit_s": limit,
        "limit_kind": kind,
        "phase": t.live.phase,
        "last_event_at": round(t.live.last_event_wall, 3) if t.live.last_event_wall else None,
        "last_event_type": t.live.last_event_type or None,
        "events": t.live.facts.events,
        "turns": len(t.live.facts.messages),
        "outstanding_tools": t.live.outstanding(now_wall),
    }
    what = f"outstanding {kind} call" if kind == "tool" else "stream"
    detail = f"no output for {silent:.1f}s (limit {limit:g}s, {what}; phase {t.live.phase})"
    jsonio.write_json(t.dir / "stall.json", evidence)
    first = stops.record(t.dir, "stalled", detail, "sidecar", now_wall)
    t.stopping = "stalled" if first is None else str(first.get("reason") or "?")
    if first is not None:
        return  # the loop stopped it first (timeout, cancel, shutdown)
    audit(o.state_dir, "session.stalled", session=t.sid, item=t.item_id, detail=detail)
    log(f"{t.sid}: stalled: {detail}; the loop stops it")
    wake_loop(o.state_dir)
