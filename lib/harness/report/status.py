"""scripts/status.sh: the loop, the breaker, the pause, every live agent, the queue
and today's totals on one screen, or as JSON.

Everything is read from state/ (heartbeats, leases, receipts); nothing is locked,
so looking never gets in the loop's way. A heartbeat older than STALE_FACTOR times
its interval (and at least STALE_MIN_S) is flagged stale: its writer (the loop or
the sidecar) is gone or stuck.
"""

from __future__ import annotations

import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness import jsonio
from harness.pipeline import gate, governor
from harness.pipeline.breaker import Breaker, describe
from harness.pipeline.policy import Policy
from harness.report.style import Style, clip
from harness.store import open_store, queue
from harness.store.attempts import TOKEN_KINDS

STALE_FACTOR = 3.0
STALE_MIN_S = 3.0
# The PHASE column: the phase and the tool it is in ("in_tool/WebFetch"). An MCP
# tool name ("mcp__server__tool") too long for it is shown as server:tool; a tool
# name still too long keeps its start and its end ("in_tool/github…request").
PHASE_WIDTH = 22


def _alive(pid: Any) -> bool:
    return isinstance(pid, int) and pid > 0 and os.path.exists(f"/proc/{pid}")


def _age(written: Any, now: float) -> float | None:
    return round(now - float(written), 1) if isinstance(written, (int, float)) else None


def _stale_after(heartbeat_s: float) -> float:
    return max(STALE_MIN_S, STALE_FACTOR * heartbeat_s)


def _stale(hb_age: float | None, running_s: float | None, heartbeat_s: float) -> bool:
    """No heartbeat long after the start, or one that stopped being rewritten."""
    limit = _stale_after(heartbeat_s)
    if hb_age is None:
        return running_s is not None and running_s > limit
    return hb_age > limit


def loop_state(state_dir: Path, now: float, heartbeat_s: float) -> dict[str, Any]:
    hb = jsonio.read_dict(state_dir / "loop.heartbeat.json") or {}
    age = _age(hb.get("written_at"), now)
    alive = _alive(hb.get("pid")) and hb.get("state") == "running"
    return {
        "running": alive,
        "pid": hb.get("pid"),
        "mode": hb.get("mode"),
        "jobs": hb.get("jobs"),
        "sessions": hb.get("sessions"),
        "stopping": hb.get("stopping") or None,
        "blocked": hb.get("blocked") or None,
        "heartbeat_age_s": age,
        "stale": bool(alive and age is not None and age > _stale_after(heartbeat_s)),
        "stop_file": (state_dir / "STOP").exists(),
    }


def agents(state_dir: Path, now: float, heartbeat_s: float) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for item in open_store(state_dir).items(["running"]):
        item_id = str(item.get("id"))
        sid = str((item.get("lease") or {}).get("session_id") or "")
        sdir = state_dir / "sessions" / sid
        meta = jsonio.read_dict(sdir / "meta.json") or {} if sid else {}
        hb = jsonio.read_dict(sdir / "heartbeat.json") or {} if sid else {}
        last = hb.get("last_event_at")
        hb_age = _age(hb.get("written_at"), now)
        started = meta.get("started_epoch")
        out.append({
            "item": item_id,
            "session": sid or None,
            "attempt": meta.get("attempt"),
            "phase": hb.get("phase") or ("starting" if sid else "claimed"),
            "since_last_event_s": _age(last, now),
            "running_s": _age(started, now),
            "turns": hb.get("turns", 0),
            "tokens": hb.get("tokens") or {},
            "cost_usd": hb.get("cost_usd_so_far", 0.0),
            "outstanding_tool": (hb.get("outstanding_tool") or {}).get("name"),
            "worktree": meta.get("cwd") or None,
            "branch": meta.get("branch") or None,
            "heartbeat_age_s": hb_age,
            "stale": _stale(hb_age, _age(started, now), heartbeat_s),
        })
    return out


def queue_counts(state_dir: Path) -> dict[str, int]:
    store = open_store(state_dir)
    counts = dict.fromkeys(queue.STATES, 0)
    for state in store.states().values():
        counts[state] = counts.get(state, 0) + 1
    rows = store.items(["pending"])
    counts["blocked"] = sum(1 for r in rows if r.get("blocked"))
    counts["waiting"] = sum(1 for r in rows if not r.get("blocked") and r.get("waiting_for"))
    return counts


def today(state_dir: Path, now: float) -> dict[str, Any]:
    midnight = datetime.fromtimestamp(now, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    totals: dict[str, Any] = {"date": midnight.strftime("%Y-%m-%d"), "sessions": 0, "succeeded": 0,
                              "success_rate": None, "cost_usd": 0.0, "tokens": dict.fromkeys(TOKEN_KINDS, 0),
                              "verdicts": {}}
    for r in open_store(state_dir).attempts(since=midnight.timestamp()):
        totals["sessions"] += 1
        verdict = str(r.get("verdict"))
        totals["verdicts"][verdict] = totals["verdicts"].get(verdict, 0) + 1
        totals["succeeded"] += verdict == "succeeded"
        totals["cost_usd"] += float(r.get("cost_usd") or 0)
        for k in TOKEN_KINDS:
            totals["tokens"][k] += int(r.get(k) or 0)
    if totals["sessions"]:
        totals["success_rate"] = round(totals["succeeded"] / totals["sessions"], 3)
    totals["cost_usd"] = round(totals["cost_usd"], 4)
    return totals


def active_runs(state_dir: Path, now: float) -> list[dict[str, Any]]:
    from harness.report import runs

    return [r.as_dict() | {"line": runs.line(r)} for r in runs.runs(open_store(state_dir), now) if r.state == "running"]


def hosts(state_dir: Path, now: float) -> list[dict[str, Any]]:
    """The hosts that share this store (one: this one, unless the store is postgres),
    each with its heartbeat's age and its sessions running."""
    out = []
    for h in open_store(state_dir).hosts():
        beat = h.get("heartbeat") or {}
        age = h.get("heartbeat_age_s")
        out.append({"host": h.get("host"), "this": h.get("this", True), "pid": beat.get("pid") or h.get("pid"),
                    "heartbeat_age_s": age if age is not None else _age(beat.get("written_at"), now),
                    "running": h.get("running", beat.get("sessions")), "jobs": beat.get("jobs"),
                    "state": beat.get("state")})
    return out


def collect(state_dir: Path, p: Policy, now: float, heartbeat_s: float) -> dict[str, Any]:
    c = Breaker(state_dir, p).status(now)
    pause = gate.active_pause(state_dir, now)
    side = jsonio.read_dict(state_dir / "sidecar.heartbeat.json") or {}
    side_age = _age(side.get("written_at"), now)
    return {
        "at": jsonio.utc_now_iso(),
        "state_dir": str(state_dir),
        "loop": loop_state(state_dir, now, heartbeat_s),
        "sidecar": {"pid": side.get("pid"), "running": _alive(side.get("pid")), "mode": side.get("mode"),
                    "heartbeat_age_s": side_age,
                    "stale": bool(_alive(side.get("pid")) and side_age is not None
                                  and side_age > _stale_after(heartbeat_s))},
        "pause": {"until": pause.get("until"), "until_epoch": pause.get("until_epoch"), "reason": pause.get("reason"),
                  "by": pause.get("by")} if pause else None,
        "circuit": {"state": c.get("state"), "reason": c.get("reason"), "credentials": bool(c.get("auth")),
                    "open_until": c.get("open_until"), "summary": describe(c, now)},
        "agents": agents(state_dir, now, heartbeat_s),
        "queue": queue_counts(state_dir),
        "today": today(state_dir, now),
        "runs": active_runs(state_dir, now),
        "hosts": hosts(state_dir, now),
        "disk": disk(state_dir, now),
        "governor": governor.status(open_store(state_dir), now),
    }


def disk(state_dir: Path, now: float) -> dict[str, Any] | None:
    """The state directory's disk use by category, as retention's last gc measured it
    (state/disk.json; ops/retention.py), with its age; None before the first."""
    doc = jsonio.read_dict(state_dir / "disk.json")
    if not doc or not isinstance(doc.get("bytes"), dict):
        return None
    measured = doc.get("measured_epoch")
    age = round(now - measured, 1) if isinstance(measured, (int, float)) else None
    return {"bytes": doc["bytes"], "measured_epoch": measured, "age_s": age}


def _size(n: Any) -> str:
    n = int(n or 0)
    for unit, scale in (("GB", 2**30), ("MB", 2**20), ("kB", 2**10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def disk_line(d: dict[str, Any] | None) -> str:
    if d is None:
        return "not measured yet (loopctl.sh gc measures it; the loop every GC_INTERVAL_S)"
    b = d["bytes"]
    return (f"streams {_size(b.get('streams_raw'))} (+{_size(b.get('streams_compressed'))} compressed), "
            f"sessions {_size(b.get('sessions_other'))}, worktrees {_size(b.get('worktrees'))}, "
            f"store {_size(b.get('store'))}, audit log {_size(b.get('audit_log'))}, other {_size(b.get('other'))}"
            f"  [{_dur(d['age_s'])} ago]")


def _dur(s: Any) -> str:
    if not isinstance(s, (int, float)):
        return "-"
    s = int(s)
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def _tokens(t: dict[str, Any]) -> str:
    total = sum(int(v or 0) for v in t.values())
    return f"{total / 1000:.1f}k" if total >= 1000 else str(total)


def phase_cell(phase: str, tool: str | None, width: int = PHASE_WIDTH) -> str:
    """phase/tool in at most width characters, the phase whole."""
    if not tool:
        return clip(phase, width)
    room = width - len(phase) - 1
    if len(tool) > room and tool.startswith("mcp__") and "__" in tool[5:]:
        tool = tool[5:].replace("__", ":", 1)
    if len(tool) > room >= 5:
        head = (room - 1) // 2
        tool = tool[:head] + "…" + tool[len(tool) - (room - 1 - head):]
    return clip(f"{phase}/{tool}", width)


def render(st: dict[str, Any], style: Style) -> str:
    lines: list[str] = []
    loop, c, pause = st["loop"], st["circuit"], st["pause"]
    if loop["running"]:
        what = style.green("running") + f" (pid {loop['pid']}, {loop['mode']}, {loop['sessions']}/{loop['jobs']} sessions)"
        if loop["stopping"]:
            what += style.yellow(f", stopping ({loop['stopping']})")
        if loop["stale"]:
            what += style.red(f", heartbeat STALE ({loop['heartbeat_age_s']}s old)")
    else:
        what = style.dim("not running")
    lines.append(f"loop      {what}")
    if loop["blocked"]:
        lines.append(f"          {style.yellow('not claiming: ' + str(loop['blocked']).split(':', 1)[-1])}")
    lines.append(f"pause     {style.yellow('until ' + str(pause['until']) + ': ' + str(pause['reason'])) if pause else 'no'}")
    cstate = c["summary"]
    lines.append(f"circuit   {style.green(cstate) if c['state'] == 'closed' else style.red(cstate)}")
    g = st.get("governor")
    if g:
        lines.append(f"governor  target {g['target']} ({g['min']}..{g['max']}), {g['running']} running; "
                     f"{g['throttled']} of {g['requests']} requests refused 429/529 in {g['window_s']:g} s; "
                     f"{style.text(str(g['why']))}")
    if loop["stop_file"]:
        lines.append(f"STOP      {style.yellow('present: loops stop claiming (scripts/loopctl.sh unstop)')}")
    qc = st["queue"]
    lines.append(
        f"queue     pending {qc['pending']} (blocked {qc['blocked']}, waiting {qc['waiting']})  running {qc['running']}  "
        + (f"verified {qc['verified']}  " if qc.get("verified") else "")
        + f"succeeded {qc['succeeded']}  quarantined {qc['quarantined']}  canceled {qc['canceled']}"
    )
    t = st["today"]
    rate = f"{t['success_rate'] * 100:.0f}%" if t["success_rate"] is not None else "-"
    lines.append(f"today     {t['sessions']} sessions, {t['succeeded']} succeeded ({rate}), ${t['cost_usd']:.4f}, "
                 f"{_tokens(t['tokens'])} tokens  [{t['date']} UTC]")
    lines.append(f"disk      {disk_line(st.get('disk'))}")
    lines.extend(f"{'runs' if i == 0 else '':<10}{style.text(r['line'])}" for i, r in enumerate(st.get("runs") or []))
    fleet = st.get("hosts") or []
    if len(fleet) > 1:  # a fleet (STORE=postgres): every host, its heartbeat's age, its sessions
        lines.extend(f"{'hosts' if i == 0 else '':<10}{style.text(str(h['host']))}{' (this)' if h['this'] else ''}: "
                     f"{h['running'] if h['running'] is not None else '?'} running, heartbeat "
                     f"{_dur(h['heartbeat_age_s'])} ago" for i, h in enumerate(fleet))
    lines.append("")
    agents_ = st["agents"]
    if not agents_:
        lines.append(style.dim("no live agents"))
        return "\n".join(lines)
    lines.append(f"{'ITEM':<24} {'SESSION':<16} {'PHASE':<{PHASE_WIDTH}} {'QUIET':>6} {'RUN':>7} {'TURNS':>5} "
                 f"{'TOKENS':>7} {'COST':>8}  WORKTREE")
    for a in agents_:
        phase = phase_cell(style.text(str(a["phase"])), style.text(str(a["outstanding_tool"] or "")))
        quiet = _dur(a["since_last_event_s"])
        row = (f"{clip(a['item'], 24):<24} {(a['session'] or '-')[:16]:<16} {phase:<{PHASE_WIDTH}} {quiet:>6} "
               f"{_dur(a['running_s']):>7} {a['turns']:>5} {_tokens(a['tokens']):>7} ${a['cost_usd']:>7.4f}  "
               f"{style.text(str(a['branch'] or a['worktree'] or '-'))}")
        lines.append(row + (style.red("  STALE heartbeat") if a["stale"] else ""))
    return "\n".join(lines)


def main(state_dir: Path, p: Policy, heartbeat_s: float, as_json: bool, watch_s: float, no_color: bool) -> int:
    style = Style(sys.stdout, False if no_color else None)
    try:
        return _loop(state_dir, p, heartbeat_s, as_json, watch_s, style)
    except KeyboardInterrupt:
        return 0


def _loop(state_dir: Path, p: Policy, heartbeat_s: float, as_json: bool, watch_s: float, style: Style) -> int:
    while True:
        st = collect(state_dir, p, time.time(), heartbeat_s)
        if as_json:
            sys.stdout.buffer.write(jsonio.dumps(st, pretty=True) + b"\n")
        else:
            text = render(st, style)
            if watch_s > 0:
                sys.stdout.write("\x1b[H\x1b[2J" + f"{st['at']}  (every {watch_s:g}s; Ctrl-C to leave)\n\n")
            sys.stdout.write(text + "\n")
        sys.stdout.flush()
        if watch_s <= 0:
            return 0
        time.sleep(watch_s)  # the redraw interval, not a wait for anything
