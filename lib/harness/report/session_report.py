"""The commands of scripts/parse-session-events.sh but watch and export: list,
summary, metrics, tools, errors, timeline, cost."""

from __future__ import annotations

import os
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness import jsonio
from harness.agents import agent_for
from harness.pipeline import receipt, record
from harness.pipeline.verdict import Verdict
from harness.report.sessions import Session, all_sessions
from harness.report.style import Style, clip, iso, out_json, secs
from harness.store import open_store
from harness.store.attempts import TOKEN_KINDS
from harness.stream import events as norm
from harness.stream.calls import Call, ToolCalls, tool_summary
from harness.stream.facts import SessionFacts, scan
from harness.stream.jsonl import LineStats, iter_events
from harness.stream.timeline import read_marks, tool_durations


def turn_id(ev: norm.Turn) -> str:
    """The message id when ev is a turn, else "". A turn is one assistant message of
    the model: one distinct message id, the CLI's own ("synthetic") messages (an API
    error it reports, say) not counted. watch, the timeline and export number turns
    by it; the result line's num_turns counts otherwise (one more after --max-turns,
    2 for a session hung in its first request)."""
    return "" if ev.synthetic else ev.message_id


def session_events(s: Session, stats: LineStats | None = None) -> Iterator[norm.Event]:
    """The session's stream as normalized events, read by its agent."""
    agent = agent_for()
    for line in iter_events(s.file("events.jsonl"), stats):
        yield from agent.decode(line)


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
    m = receipt.build(record.read(s.dir, f, meta), Verdict(state, "not finalized yet"))
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
    m = st.clean(current_metrics(s, f))
    meta = st.clean(s.meta)
    hb = st.clean(s.heartbeat() or {})
    status = s.status()
    print(f"{st.bold('session')}   {s.id}")
    print(f"{st.bold('item')}      {meta.get('item_id')} (attempt {meta.get('attempt')}): {clip(meta.get('title'), 70)}")
    if status.startswith("live"):
        print(
            f"{st.bold('state')}     {st.verdict(st.text(status))}, last event {hb.get('last_event_type') or '-'} "
            f"{secs(time.time() - hb['last_event_at']) if hb.get('last_event_at') else '?'} ago"
        )
    else:
        print(f"{st.bold('verdict')}   {st.verdict(str(m.get('verdict')))}: {m.get('reason')}")
    print(f"{st.bold('model')}     {m.get('model') or '?'}")
    api = m.get("duration_api_ms")
    print(f"{st.bold('started')}   {meta.get('started_at')}  wall {secs(m.get('wall_s'))}"
          + (f", API {secs(api / 1000)}" if isinstance(api, (int, float)) else ""))
    print(f"{st.bold('turns')}     {m.get('turns')}")
    print(f"{st.bold('tokens')}    {_tokens_line(m.get('tokens') or {})}")
    cost = m.get("cost_usd") or 0
    print(f"{st.bold('cost')}      ${cost:.4f}" + (" (estimated from streamed usage)" if m.get("cost_estimated") else ""))
    print(f"{st.bold('tools')}     {_tools_line(m)}")
    for d in m.get("denied") or []:
        print(f"{st.bold('denied')}    {st.red(str(d.get('tool')))} {clip(d.get('input'), 90)}")
    retries = m.get("api_retries") or {}
    if retries:
        print(f"{st.bold('retries')}   " + ", ".join(f"{k}×{v}" for k, v in sorted(retries.items())))
    lines = "?" if f.fast else f"{f.stats.lines:,} lines"
    tail = ", unterminated last line" if f.stats.partial_tail else ""
    print(f"{st.bold('events')}    {lines}, {f.stats.malformed} malformed{tail}")
    worktree = _worktree_line(s.meta, meta)
    if worktree:
        print(f"{st.bold('worktree')}  {worktree}")
    text = st.text(f.last_assistant_text).strip()
    if text:
        shown = text.splitlines()[-6:]
        print(st.bold("last text"))
        for line in shown:
            print(f"  {clip(line, 110)}")
    return 0


def _worktree_line(meta: dict[str, Any], shown: dict[str, Any]) -> str:
    """Where the session worked (meta as it is, for the file system; shown: as it
    may be printed). A succeeded session's worktree is removed; its branch stays."""
    cwd = meta.get("cwd")
    if not cwd:
        return ""
    branch = f"branch {shown['branch']}" if shown.get("branch") else ""
    if os.path.isdir(str(cwd)):
        return f"{shown.get('cwd')}" + (f" ({branch})" if branch else "")
    return f"removed (was {shown.get('cwd')})" + (f"; the work is on {branch}" if branch else "")


def cmd_metrics(s: Session, st: Style, as_json: bool, recompute: bool) -> int:
    m = current_metrics(s) if not recompute else _recomputed(s)
    if as_json:
        out_json(m)
        return 0
    for key, value in m.items():
        shown = jsonio.dumps(value).decode() if isinstance(value, (dict, list)) else value
        print(f"{st.text(key):<18} {st.text(str(shown))}")
    return 0


def _recomputed(s: Session) -> dict[str, Any]:
    f = scan(s.file("events.jsonl"))
    old = s.metrics() or {}
    v = Verdict(str(old.get("verdict") or "unknown"), str(old.get("reason") or "recomputed"), exit_code=old.get("exit_code"))
    return receipt.build(record.read(s.dir, f, dict(s.meta)), v)


# --- tools, errors, timeline -----------------------------------------------


def calls_of(s: Session) -> list[Call]:
    """The session's tool calls, in order, with their results and (from the sidecar's
    timeline) how long each took."""
    walker = ToolCalls()
    for ev in session_events(s):
        walker.feed(ev)
    calls = list(walker.all())
    seconds = {ref: took for ref, (_, took) in tool_durations(read_marks(s.file("timeline.jsonl"))).items()}
    for c in calls:
        c.seconds = seconds.get(c.tool_id)
    return calls


def _call_row(c: Call) -> dict[str, Any]:
    return {"n": c.n, "tool_id": c.tool_id, "name": c.name, "summary": c.summary, "is_error": c.is_error,
            "error": c.text if c.is_error else "", "seconds": c.seconds}


def cmd_tools(s: Session, st: Style, as_json: bool) -> int:
    calls = calls_of(s)
    if as_json:
        out_json([_call_row(c) for c in calls])
        return 0
    print(f"{'#':>3} {'TOOL':<12} {'RESULT':<7} {'TIME':>6}  INPUT")
    for c in calls:
        c.name, c.summary = st.text(c.name), st.text(c.summary)
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
            found.append(Problem("tool_error", f"{c.name} #{c.n} ({clip(c.summary, 60)}): {clip(c.text, 200)}"))
    stats = LineStats()
    for ev in session_events(s, stats):
        problem = _stream_problem(ev)
        if problem is not None:
            found.append(problem)
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


def _stream_problem(ev: norm.Event) -> Problem | None:
    if isinstance(ev, norm.ApiRetry):
        return Problem("api_retry", f"attempt {ev.attempt}/{ev.max_retries}: {ev.status} {ev.error} "
                       f"(retry in {secs(ev.delay_s)})")
    if isinstance(ev, norm.Result) and ev.failed:
        status = f" API {ev.api_error_status}" if ev.api_error_status else ""
        return Problem("result", f"{ev.subtype}{status}: {clip(ev.text or '; '.join(ev.errors), 200)}")
    if isinstance(ev, norm.RateLimit) and ev.status != "allowed":
        return Problem("rate_limit", f"{ev.status} ({ev.kind}), resets {iso(ev.resets_at)}")
    return None


def cmd_errors(s: Session, st: Style, as_json: bool) -> int:
    found = problems_of(s)
    if as_json:
        out_json([{"kind": p.kind, "text": p.text} for p in found])
        return 0
    for p in found:
        print(f"{st.red(f'{p.kind:<11}')} {st.text(p.text)}")
    if not found:
        print(st.green("no errors"))
    return 0


class _Timeline:
    """The timeline's rows, built event by event; a "turn N" row per turn (see turn_id)."""

    def __init__(self, marks: list[dict[str, Any]]) -> None:
        timed = [m for m in marks if isinstance(m.get("t"), (int, float))]
        self.turn_t = {str(m.get("ref")): float(m["t"]) for m in timed if m.get("kind") == "turn"}
        self.mark_t = {(m.get("kind"), str(m.get("ref") or "")): float(m["t"]) for m in timed}
        self.rows: list[dict[str, Any]] = []
        self.turns: dict[str, dict[str, Any]] = {}
        self.cli: dict[str, dict[str, Any]] = {}  # messages that are no turn: the CLI's own, say
        self.row: dict[str, Any] | None = None  # the message whose blocks come now

    def feed(self, ev: norm.Event) -> None:
        if isinstance(ev, norm.Init):
            self.rows.append({"at": self.mark_t.get(("init", "")), "what": "init", "text": f"model {ev.model}, cwd {ev.cwd}"})
        elif isinstance(ev, norm.Turn) and not ev.streamed:
            self.row = self._row_for(ev)
        elif isinstance(ev, norm.Text) and self.row is not None:
            self.row["text"] = (self.row["text"] + " " + ev.text).strip()
        elif isinstance(ev, norm.ToolStart) and self.row is not None:
            self.row["tools"].append(f"{ev.name}: {tool_summary(ev.input)}")
        elif isinstance(ev, norm.ToolEnd):
            self._result(ev)
        elif isinstance(ev, norm.ApiRetry):
            self.rows.append({"at": None, "what": "  retry", "text": f"API {ev.status}: {ev.error or None}"})
        elif isinstance(ev, norm.Result):
            self.rows.append({"at": self.mark_t.get(("result", ev.subtype)), "what": "result", "turns": len(self.turns),
                              "cli_num_turns": ev.num_turns,
                              "text": f"{ev.subtype}, {len(self.turns)} turns, ${ev.cost_usd or 0:.4f}"})

    def _row_for(self, ev: norm.Turn) -> dict[str, Any]:
        tid = turn_id(ev)
        rows = self.turns if tid else self.cli
        row = rows.get(ev.message_id)
        if row is None:
            what = f"turn {len(self.turns) + 1}" if tid else "cli" if ev.synthetic else "message"
            row = {"at": self.turn_t.get(ev.message_id), "what": what, "id": ev.message_id, "text": "", "tools": []}
            rows[ev.message_id] = row
            self.rows.append(row)
        return row

    def _result(self, ev: norm.ToolEnd) -> None:
        at = self.mark_t.get(("tool_result", ev.tool_id))
        if at is None:
            at = _epoch(ev.at) or None
        start = self.mark_t.get(("tool_use", ev.tool_id))
        took = f" after {secs(at - start)}" if at and start else ""
        self.rows.append({"at": at, "what": "  result", "text": ("error" if ev.is_error else "ok") + took})


def cmd_timeline(s: Session, st: Style, as_json: bool) -> int:
    tl = _Timeline(read_marks(s.file("timeline.jsonl")))
    for ev in session_events(s):
        tl.feed(ev)
    if as_json:
        out_json(tl.rows)
        return 0
    t0 = s.started or (min(tl.mark_t.values()) if tl.mark_t else 0.0)
    for r in st.clean(tl.rows):
        shown = f"+{secs(r['at'] - t0)}" if isinstance(r.get("at"), (int, float)) and t0 else "?"
        what = f"{r['what']:<8}"
        print(f"{shown:>8}  {st.bold(what)}  {clip(r.get('text', ''), 90)}")
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
    """Cost and tokens by day and by item, from the store's attempts (one per finished session)."""
    by_day: dict[str, dict[str, Any]] = {}
    by_item: dict[str, dict[str, Any]] = {}
    total = _bucket()
    skipped: list[str] = []
    for r in open_store(state_dir).attempts(since=since, skipped=skipped):
        day = iso(r["started"])[:10] if r.get("started") else "unknown"
        for bucket in (by_day.setdefault(day, _bucket()), by_item.setdefault(str(r.get("item_id")), _bucket()), total):
            _add(bucket, r)
    for line in skipped:
        print(f"harness: cost: skipped {line}", file=sys.stderr)
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


def _add(b: dict[str, Any], r: dict[str, Any]) -> None:
    """One attempt (store/attempts.py's columns) into a bucket."""
    b["sessions"] += 1
    b["succeeded"] += r.get("verdict") == "succeeded"
    b["cost_usd"] = round(b["cost_usd"] + float(r.get("cost_usd") or 0), 6)
    b["estimated"] += bool(r.get("cost_estimated"))
    for k in TOKEN_KINDS:
        b[k] += int(r.get(k) or 0)


def _cost_row(key: str, b: dict[str, Any]) -> None:
    print(f"{clip(key, 24):<24} {b['sessions']:>8} {b['succeeded']:>4} {'$' + format(b['cost_usd'], '.4f'):>10} "
          f"{b['input']:>10,} {b['output']:>10,} {b['cache_read']:>11,} {b['cache_write']:>10,}")
