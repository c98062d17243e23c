"""The commands of scripts/parse-session-events.sh but watch and export: list,
summary, metrics, tools, errors, timeline, cost."""

from __future__ import annotations

import os
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from . import jsonio, receipt
from .facts import SessionFacts, scan
from .live import read_marks, tool_durations, tool_summary
from .sessions import Session, all_sessions
from .streamjson import LineStats, iter_events
from .verdict import Verdict


class Style:
    """ANSI colour on a terminal, never with NO_COLOR or --no-color."""

    def __init__(self, out: TextIO, enabled: bool | None = None) -> None:
        if enabled is None:
            enabled = out.isatty() and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"
        self.on = enabled

    def _wrap(self, code: str, text: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.on else text

    def bold(self, t: str) -> str:
        return self._wrap("1", t)

    def dim(self, t: str) -> str:
        return self._wrap("2", t)

    def red(self, t: str) -> str:
        return self._wrap("31", t)

    def green(self, t: str) -> str:
        return self._wrap("32", t)

    def yellow(self, t: str) -> str:
        return self._wrap("33", t)

    def cyan(self, t: str) -> str:
        return self._wrap("36", t)

    def verdict(self, v: str) -> str:
        if v == "succeeded":
            return self.green(v)
        if v.startswith("live") or v == "ended":
            return self.cyan(v)
        return self.red(v) if v not in ("interrupted", "usage_limited") else self.yellow(v)


def clip(text: Any, width: int) -> str:
    s = " ".join(str(text if text is not None else "").split())
    return s if len(s) <= width else s[: width - 1] + "…"


def iso(epoch: Any) -> str:
    if not isinstance(epoch, (int, float)) or epoch <= 0:
        return "?"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S")


def secs(value: Any) -> str:
    if not isinstance(value, (int, float)):
        return "?"
    if value >= 3600:
        return f"{value / 3600:.1f}h"
    if value >= 60:
        return f"{value / 60:.1f}m"
    return f"{value:.1f}s"


def out_json(obj: Any) -> None:
    sys.stdout.buffer.write(jsonio.dumps(obj, pretty=True) + b"\n")


def current_metrics(s: Session, f: SessionFacts | None = None) -> dict[str, Any]:
    """metrics.json when the session has been finalized, else computed from its events now."""
    m = s.metrics()
    if m is not None:
        return m
    if f is None:
        f = scan(s.file("events.jsonl"))
    meta = dict(s.meta)
    meta.setdefault("ended_epoch", time.time())
    state = "ended" if s.file("exit_code").exists() else "running"
    m = receipt.build(s.dir, f, Verdict(state, "not finalized yet"), meta)
    m["wall_s"] = round(time.time() - s.started, 3) if s.started and state == "running" else m.get("wall_s")
    return m


# --- list ----------------------------------------------------------------


def cmd_list(state_dir: Path, st: Style, as_json: bool, limit: int, item: str | None) -> int:
    rows = []
    for s in reversed(all_sessions(state_dir)):
        if item and s.meta.get("item_id") != item:
            continue
        m = s.metrics() or {}
        hb = s.heartbeat() or {}
        rows.append(
            {
                "session_id": s.id,
                "item_id": s.meta.get("item_id"),
                "attempt": s.meta.get("attempt"),
                "started_at": s.meta.get("started_at"),
                "status": s.status(),
                "turns": m.get("turns", hb.get("turns")),
                "cost_usd": m.get("cost_usd", hb.get("cost_usd_so_far")),
                "wall_s": m.get("wall_s"),
            }
        )
        if limit and len(rows) >= limit:
            break
    if as_json:
        out_json(rows)
        return 0
    print(f"{'SESSION':<16} {'ITEM':<24} {'TRY':>3} {'STARTED (UTC)':<19} {'WALL':>6} {'TURNS':>5} {'COST':>9}  STATUS")
    for r in rows:
        cost = f"${r['cost_usd']:.4f}" if isinstance(r["cost_usd"], (int, float)) else "-"
        print(
            f"{str(r['session_id'])[:16]:<16} {clip(r['item_id'], 24):<24} {r['attempt'] or '?':>3} "
            f"{iso(_epoch(r['started_at'])):<19} {secs(r['wall_s']) if r['wall_s'] is not None else '-':>6} "
            f"{r['turns'] if r['turns'] is not None else '-':>5} {cost:>9}  {st.verdict(str(r['status']))}"
        )
    if not rows:
        print(st.dim("(no sessions)"))
    return 0


def _epoch(text: Any) -> float:
    try:
        return jsonio.parse_iso(str(text)).timestamp()
    except ValueError:
        return 0.0


# --- summary and metrics -------------------------------------------------


def _tokens_line(t: dict[str, Any]) -> str:
    return (
        f"in {t.get('input', 0):,}, out {t.get('output', 0):,}, cache read {t.get('cache_read', 0):,}, "
        f"cache write {t.get('cache_write', 0):,}"
    )


def _tools_line(m: dict[str, Any]) -> str:
    calls, errors, times = m.get("tool_calls") or {}, m.get("tool_errors") or {}, m.get("tool_time_s") or {}
    parts = []
    for name, n in sorted(calls.items(), key=lambda kv: (-kv[1], kv[0])):
        extra = []
        if errors.get(name):
            extra.append(f"{errors[name]} failed")
        if name in times:
            extra.append(secs(times[name]))
        parts.append(f"{name} {n}" + (f" ({', '.join(extra)})" if extra else ""))
    return ", ".join(parts) or "none"


def cmd_summary(s: Session, st: Style) -> int:
    f = scan(s.file("events.jsonl"))
    m = current_metrics(s, f)
    hb = s.heartbeat() or {}
    status = s.status()
    print(f"{st.bold('session')}   {s.id}")
    print(f"{st.bold('item')}      {s.meta.get('item_id')} (attempt {s.meta.get('attempt')}): {clip(s.meta.get('title'), 70)}")
    if status.startswith("live"):
        print(
            f"{st.bold('state')}     {st.verdict(status)}, last event {hb.get('last_event_type') or '-'} "
            f"{secs(time.time() - hb['last_event_at']) if hb.get('last_event_at') else '?'} ago"
        )
    else:
        print(f"{st.bold('verdict')}   {st.verdict(str(m.get('verdict')))}: {m.get('reason')}")
    print(f"{st.bold('model')}     {m.get('model') or '?'}")
    api = m.get("duration_api_ms")
    print(f"{st.bold('started')}   {s.meta.get('started_at')}  wall {secs(m.get('wall_s'))}"
          + (f", API {secs(api / 1000)}" if isinstance(api, (int, float)) else ""))
    print(f"{st.bold('turns')}     {m.get('turns')}")
    print(f"{st.bold('tokens')}    {_tokens_line(m.get('tokens') or {})}")
    cost = m.get("cost_usd") or 0
    print(f"{st.bold('cost')}      ${cost:.4f}" + (" (estimated from streamed usage)" if m.get("cost_estimated") else ""))
    print(f"{st.bold('tools')}     {_tools_line(m)}")
    retries = m.get("api_retries") or {}
    if retries:
        print(f"{st.bold('retries')}   " + ", ".join(f"{k}×{v}" for k, v in sorted(retries.items())))
    lines = "?" if f.fast else f"{f.stats.lines:,} lines"
    tail = ", unterminated last line" if f.stats.partial_tail else ""
    print(f"{st.bold('events')}    {lines}, {f.stats.malformed} malformed{tail}")
    if s.meta.get("cwd"):
        print(f"{st.bold('worktree')}  {s.meta.get('cwd')}" + (f" (branch {s.meta['branch']})" if s.meta.get("branch") else ""))
    text = f.last_assistant_text.strip()
    if text:
        shown = text.splitlines()[-6:]
        print(st.bold("last text"))
        for line in shown:
            print(f"  {clip(line, 110)}")
    return 0


def cmd_metrics(s: Session, as_json: bool, recompute: bool) -> int:
    m = current_metrics(s) if not recompute else _recomputed(s)
    if as_json:
        out_json(m)
        return 0
    for key, value in m.items():
        shown = jsonio.dumps(value).decode() if isinstance(value, (dict, list)) else value
        print(f"{key:<18} {shown}")
    return 0


def _recomputed(s: Session) -> dict[str, Any]:
    f = scan(s.file("events.jsonl"))
    old = s.metrics() or {}
    v = Verdict(str(old.get("verdict") or "unknown"), str(old.get("reason") or "recomputed"), exit_code=old.get("exit_code"))
    return receipt.build(s.dir, f, v, dict(s.meta))


# --- tools, errors, timeline -----------------------------------------------


@dataclass
class Call:
    n: int
    tool_id: str
    name: str
    summary: str
    is_error: bool | None = None
    error: str = ""
    seconds: float | None = None


def _result_text(block: dict[str, Any]) -> str:
    content = block.get("content")
    if isinstance(content, list):
        content = " ".join(str(c.get("text", "")) for c in content if isinstance(c, dict))
    return str(content or "")


def calls_of(s: Session) -> list[Call]:
    calls: dict[str, Call] = {}
    order: list[Call] = []
    for ev in iter_events(s.file("events.jsonl")):
        msg = ev.get("message")
        if not isinstance(msg, dict) or not isinstance(msg.get("content"), list):
            continue
        for b in msg["content"]:
            if not isinstance(b, dict):
                continue
            if ev.get("type") == "assistant" and b.get("type") == "tool_use":
                name = str(b.get("name") or "?")
                c = Call(len(order) + 1, str(b.get("id")), name, tool_summary(name, b.get("input")))
                calls[c.tool_id] = c
                order.append(c)
            elif ev.get("type") == "user" and b.get("type") == "tool_result":
                c2 = calls.get(str(b.get("tool_use_id")))
                if c2 is not None:
                    c2.is_error = bool(b.get("is_error"))
                    if c2.is_error:
                        c2.error = _result_text(b)
    for ref, (_, seconds) in tool_durations(read_marks(s.file("timeline.jsonl"))).items():
        if ref in calls:
            calls[ref].seconds = seconds
    return order


def cmd_tools(s: Session, st: Style, as_json: bool) -> int:
    calls = calls_of(s)
    if as_json:
        out_json([c.__dict__ for c in calls])
        return 0
    print(f"{'#':>3} {'TOOL':<12} {'RESULT':<7} {'TIME':>6}  INPUT")
    for c in calls:
        result = "running" if c.is_error is None else (st.red("error") if c.is_error else st.green("ok"))
        pad = " " * max(0, 7 - len("running" if c.is_error is None else ("error" if c.is_error else "ok")))
        print(f"{c.n:>3} {clip(c.name, 12):<12} {result}{pad} {secs(c.seconds) if c.seconds is not None else '-':>6}  "
              f"{clip(c.summary, 80)}")
    by_name: dict[str, list[Call]] = defaultdict(list)
    for c in calls:
        by_name[c.name].append(c)
    if calls:
        print()
        print(f"{'TOOL':<12} {'CALLS':>5} {'ERRORS':>6} {'TIME':>7}")
        for name, cs in sorted(by_name.items(), key=lambda kv: -len(kv[1])):
            total = sum(c.seconds or 0 for c in cs)
            print(f"{clip(name, 12):<12} {len(cs):>5} {sum(1 for c in cs if c.is_error):>6} {secs(total):>7}")
    else:
        print(st.dim("(no tool calls)"))
    return 0


@dataclass
class Problem:
    kind: str
    text: str
    detail: dict[str, Any] = field(default_factory=dict)


def problems_of(s: Session) -> list[Problem]:
    found: list[Problem] = []
    for c in calls_of(s):
        if c.is_error:
            found.append(Problem("tool_error", f"{c.name} #{c.n} ({clip(c.summary, 60)}): {clip(c.error, 200)}"))
    stats = LineStats()
    for ev in iter_events(s.file("events.jsonl"), stats):
        if ev.get("type") == "system" and ev.get("subtype") == "api_retry":
            found.append(Problem("api_retry", f"attempt {ev.get('attempt')}/{ev.get('max_retries')}: "
                                 f"{ev.get('error_status') or 'connection'} {ev.get('error') or ''} "
                                 f"(retry in {secs((ev.get('retry_delay_ms') or 0) / 1000)})"))
        elif ev.get("type") == "result" and (ev.get("is_error") or ev.get("subtype") != "success"):
            errs = ev["errors"] if isinstance(ev.get("errors"), list) else []
            status = f" API {ev['api_error_status']}" if ev.get("api_error_status") else ""
            text = clip(ev.get("result") or "; ".join(map(str, errs)), 200)
            found.append(Problem("result", f"{ev.get('subtype')}{status}: {text}"))
        elif ev.get("type") == "rate_limit_event":
            info = ev.get("rate_limit_info") or {}
            if isinstance(info, dict) and info.get("status") != "allowed":
                resets = iso(info.get("resetsAt"))
                found.append(Problem("rate_limit", f"{info.get('status')} ({info.get('rateLimitType')}), resets {resets}"))
    if stats.malformed:
        found.append(Problem("malformed", f"{stats.malformed} line(s) of events.jsonl are not JSON objects"))
    for name, kind in (("stall.json", "stall"), ("kill.json", "stopped"), ("spawn_error", "spawn")):
        path = s.file(name)
        if not path.exists():
            continue
        if name.endswith(".json"):
            try:
                rec = jsonio.read_json(path)
            except (OSError, ValueError):
                rec = {}
            text = rec.get("detail") or f"silent {rec.get('silent_s')}s (limit {rec.get('limit_s')}s, {rec.get('phase')})"
            found.append(Problem(kind, f"{rec.get('reason', 'stalled')}: {text}" if kind == "stopped" else str(text), rec))
        else:
            found.append(Problem(kind, clip(path.read_text(errors="replace"), 300)))
    try:
        tail = s.file("stderr.log").read_bytes()[-2000:].decode("utf-8", "replace").strip().splitlines()[-5:]
    except FileNotFoundError:
        tail = []
    for line in tail:
        found.append(Problem("stderr", clip(line, 200)))
    m = s.metrics() or {}
    if m.get("verdict") not in (None, "succeeded"):
        found.insert(0, Problem("verdict", f"{m.get('verdict')}: {m.get('reason')}"))
    return found


def cmd_errors(s: Session, st: Style, as_json: bool) -> int:
    found = problems_of(s)
    if as_json:
        out_json([{"kind": p.kind, "text": p.text} for p in found])
        return 0
    for p in found:
        print(f"{st.red(f'{p.kind:<11}')} {p.text}")
    if not found:
        print(st.green("no errors"))
    return 0


def cmd_timeline(s: Session, st: Style, as_json: bool) -> int:
    marks = read_marks(s.file("timeline.jsonl"))
    timed = [m for m in marks if isinstance(m.get("t"), (int, float))]
    seen_turn = {str(m.get("ref")): float(m["t"]) for m in timed if m.get("kind") == "turn"}
    tool_t = {(m.get("kind"), str(m.get("ref") or "")): float(m["t"]) for m in marks if isinstance(m.get("t"), (int, float))}
    t0 = s.started or (min(tool_t.values()) if tool_t else 0.0)
    rows: list[dict[str, Any]] = []
    turns: dict[str, dict[str, Any]] = {}
    for ev in iter_events(s.file("events.jsonl")):
        etype = ev.get("type")
        if etype == "system" and ev.get("subtype") == "init":
            rows.append({"at": tool_t.get(("init", "")), "what": "init", "text": f"model {ev.get('model')}, cwd {ev.get('cwd')}"})
        elif etype == "assistant" and isinstance(ev.get("message"), dict):
            msg = ev["message"]
            mid = str(msg.get("id") or "")
            row = turns.get(mid)
            if row is None:
                row = {"at": seen_turn.get(mid), "what": f"turn {len(turns) + 1}", "id": mid, "text": "", "tools": []}
                turns[mid] = row
                rows.append(row)
            for b in msg.get("content") or []:
                if not isinstance(b, dict):
                    continue
                if b.get("type") == "text":
                    row["text"] = (row["text"] + " " + str(b.get("text") or "")).strip()
                elif b.get("type") == "tool_use":
                    name = str(b.get("name") or "?")
                    row["tools"].append(f"{name}: {tool_summary(name, b.get('input'))}")
        elif etype == "user" and isinstance(ev.get("message"), dict):
            for b in ev["message"].get("content") or []:
                if isinstance(b, dict) and b.get("type") == "tool_result":
                    ref = str(b.get("tool_use_id"))
                    at = tool_t.get(("tool_result", ref))
                    if at is None:
                        at = _epoch(ev.get("timestamp")) or None
                    start = tool_t.get(("tool_use", ref))
                    took = f" after {secs(at - start)}" if at and start else ""
                    rows.append({"at": at, "what": "  result", "text": ("error" if b.get("is_error") else "ok") + took})
        elif etype == "system" and ev.get("subtype") == "api_retry":
            status = ev.get("error_status") or "connection"
            rows.append({"at": None, "what": "  retry", "text": f"API {status}: {ev.get('error')}"})
        elif etype == "result":
            rows.append({"at": tool_t.get(("result", str(ev.get("subtype")))), "what": "result",
                         "text": f"{ev.get('subtype')}, {ev.get('num_turns')} turns, ${ev.get('total_cost_usd') or 0:.4f}"})
    if as_json:
        out_json(rows)
        return 0
    for r in rows:
        shown = f"+{secs(r['at'] - t0)}" if isinstance(r.get("at"), (int, float)) and t0 else "?"
        text = r.get("text", "")
        what = f"{r['what']:<8}"
        print(f"{shown:>8}  {st.bold(what)}  {clip(text, 90)}")
        for tool in r.get("tools") or []:
            print(f"{'':>8}  {'':<8}  {st.cyan('▶')} {clip(tool, 88)}")
    return 0


# --- cost ------------------------------------------------------------------


def parse_since(text: str, now: float) -> float:
    units = {"m": 60, "h": 3600, "d": 86400, "w": 604800}
    if text and text[-1] in units and text[:-1].isdigit():
        return now - int(text[:-1]) * units[text[-1]]
    try:
        return jsonio.parse_iso(text).timestamp()
    except ValueError:
        raise ValueError(f"--since takes a date, an ISO time or an age like 12h, 7d; got {text!r}") from None


def cmd_cost(state_dir: Path, st: Style, as_json: bool, since: float | None) -> int:
    by_day: dict[str, dict[str, Any]] = {}
    by_item: dict[str, dict[str, Any]] = {}
    total = _bucket()
    for s in all_sessions(state_dir):
        m = s.metrics()
        if m is None or (since is not None and s.started < since):
            continue
        day = iso(s.started)[:10]
        for bucket in (by_day.setdefault(day, _bucket()), by_item.setdefault(str(m.get("item_id")), _bucket()), total):
            _add(bucket, m)
    if as_json:
        out_json({"since": since, "total": total, "by_day": by_day, "by_item": by_item})
        return 0
    for title, rows in (("DAY", by_day), ("ITEM", by_item)):
        head = f"{title:<24} {'SESSIONS':>8} {'OK':>4} {'COST':>10} {'INPUT':>10} {'OUTPUT':>10} {'CACHE R':>11} {'CACHE W':>10}"
        print(st.bold(head))
        for key in sorted(rows):
            _cost_row(key, rows[key])
        print()
    _cost_row("total", total)
    return 0


def _bucket() -> dict[str, Any]:
    return {"sessions": 0, "succeeded": 0, "cost_usd": 0.0, "estimated": 0,
            "input": 0, "output": 0, "cache_read": 0, "cache_write": 0}


def _add(b: dict[str, Any], m: dict[str, Any]) -> None:
    b["sessions"] += 1
    b["succeeded"] += m.get("verdict") == "succeeded"
    b["cost_usd"] = round(b["cost_usd"] + float(m.get("cost_usd") or 0), 6)
    b["estimated"] += bool(m.get("cost_estimated"))
    for k in ("input", "output", "cache_read", "cache_write"):
        b[k] += int((m.get("tokens") or {}).get(k) or 0)


def _cost_row(key: str, b: dict[str, Any]) -> None:
    print(f"{clip(key, 24):<24} {b['sessions']:>8} {b['succeeded']:>4} {'$' + format(b['cost_usd'], '.4f'):>10} "
          f"{b['input']:>10,} {b['output']:>10,} {b['cache_read']:>11,} {b['cache_write']:>10,}")
