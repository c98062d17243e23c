"""What the sidecar knows about one live session: phase, progress and liveness.

Fed line by line as the session's events.jsonl grows. Text and tool-input deltas,
by far the most frequent lines, are recognised by their first bytes (the agent's
is_delta) and only counted: they prove the session alive and carry nothing else the
heartbeat needs. Every other line is decoded by the agent into normalized events,
which feed the session's facts (and their walker of tool calls) and its phase.

Liveness (docs/verdicts.md, "stalled"): a session is alive while lines arrive. A
session silent for longer than its stall limit outside a tool call, or longer than
the outstanding tool's allowance inside one, is stalled.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from harness.agents import Agent, agent_for
from harness.stream import events as norm
from harness.stream.calls import Call
from harness.stream.facts import SessionFacts, apply, estimate_cost_usd
from harness.stream.jsonl import parse_line

# events of a response being streamed (the usage of the message being streamed too)
STREAMING = (norm.TextDelta, norm.BlockEnd, norm.Streaming)
PHASES = ("starting", "requesting", "streaming", "in_tool", "idle", "verifying", "exited")
# Tool calls that change something (the burn detector, BURN_*): a file tool's write, or
# a shell command that writes, moves, installs, builds or commits.
WRITE_TOOLS = frozenset({"Write", "Edit", "MultiEdit", "NotebookEdit"})
SHELL_WRITES = re.compile(r">|(^|[;&|(`]\s*|\bsudo\s+)(git\s+(commit|add|rm|mv|apply|am|merge|rebase|cherry-pick|"
                          r"checkout|switch|reset|stash|tag|push)|mv|cp|rm|mkdir|rmdir|touch|tee|patch|ln|chmod|"
                          r"sed\s+-i|perl\s+-[a-z]*i|npm\s+(install|i|ci|run)|pip\s+install|make|cargo|go\s+"
                          r"(build|mod|get))\b")


def changes_anything(name: str, tool_input: Any) -> bool:
    """Whether a tool call writes, edits or commits (the burn detector's progress)."""
    if name in WRITE_TOOLS:
        return True
    if name == "Bash" and isinstance(tool_input, dict):
        return bool(SHELL_WRITES.search(str(tool_input.get("command") or "")))
    return False


@dataclass
class Limits:
    stall_s: float
    tool_s: float


@dataclass
class Mark:
    """One line of timeline.jsonl: when the sidecar saw an event of note."""

    n: int
    t: float
    kind: str
    ref: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"n": self.n, "t": round(self.t, 3), "kind": self.kind}
        if self.ref:
            out["ref"] = self.ref
        out.update(self.extra)
        return out


def tool_allowance_s(call: Call, limits: Limits) -> float:
    """How long a tool call may stay silent: the call's own timeout (a Bash call's),
    plus the stall limit for the CLI to report back, when it names one; else the tool limit."""
    return call.timeout_s + limits.stall_s if call.timeout_s is not None else limits.tool_s


class LiveSession:
    def __init__(self, session_id: str, limits: Limits, replay_upto: int = 0, agent: Agent | None = None) -> None:
        self.session_id = session_id
        self.agent = agent or agent_for()
        self.limits = limits
        self.facts = SessionFacts()
        self.phase = "starting"
        self.last_event_wall = 0.0
        self.last_event_mono = 0.0
        self.last_event_type = ""
        self.marks: list[Mark] = []
        self.replay_upto = replay_upto  # lines at or below this index are already in timeline.jsonl
        self.turn_changed = False
        self.retry_run = 0  # system/api_retry lines since the API last answered
        self.retry_status = ""
        # the burn detector: the turn, cost and tokens at the last call that changed
        # something (the start, before one), and the tools called since
        self.change_turn, self.change_cost, self.change_tokens = 0, 0.0, 0
        self.since_change: Counter[str] = Counter()

    # --- feeding ---------------------------------------------------------

    def feed_line(self, line: bytes, wall: float, mono: float) -> None:
        self.last_event_wall, self.last_event_mono = wall, mono
        f = self.facts
        f.stats.lines += 1
        if self.agent.is_delta(line):
            f.events += 1
            self.phase = "streaming"
            self.last_event_type = "stream_event/content_block_delta"
            return
        raw = parse_line(line)
        if raw is None:
            f.stats.malformed += 1
            f.events += 1
            return
        turns_before = len(f.messages)
        self.last_event_type = self.agent.label(raw)
        f.events += 1
        evs = self.agent.decode(raw)
        for ev in evs:
            if isinstance(ev, norm.ToolEnd):  # marked while the walker still knows the call
                call = self.tools.get(ev.tool_id)
                self._mark(wall, "tool_result", ev.tool_id, is_error=ev.is_error, name=call.name if call else "?")
            apply(f, ev)
            self._on(ev, wall)
        if evs and isinstance(evs[0], norm.Turn) and not evs[0].streamed and self.tools and self.phase != "streaming":
            self.phase = "in_tool"  # a whole message while a call is outstanding
        if len(f.messages) != turns_before:
            self.turn_changed = True

    @property
    def tools(self) -> dict[str, Call]:
        """The calls outstanding, by id (the facts' walker)."""
        return self.facts.calls.open

    def _mark(self, wall: float, kind: str, ref: str = "", **extra: Any) -> None:
        n = self.facts.events
        if n > self.replay_upto:
            self.marks.append(Mark(n, wall, kind, ref, extra))

    def _on(self, ev: norm.Event, wall: float) -> None:
        if isinstance(ev, norm.Turn):
            self.retry_run = 0
            if ev.streamed:
                self._mark(wall, "turn", ev.message_id)
                self.phase = "streaming"
        elif isinstance(ev, STREAMING) or (isinstance(ev, norm.Usage) and not ev.message_id):
            self.phase = "streaming"
        elif isinstance(ev, norm.MessageEnd):
            self.phase = "in_tool" if self.tools else "idle"
        elif isinstance(ev, norm.ToolStart):
            self._progress(ev)
            call = self.tools.get(ev.tool_id)
            if call is not None:
                call.started_at, call.allowance_s = wall, tool_allowance_s(call, self.limits)
            self._mark(wall, "tool_use", ev.tool_id, name=ev.name)
            if self.phase != "streaming":
                self.phase = "in_tool"
        elif isinstance(ev, norm.Prompt):
            self.phase = "in_tool" if self.tools else "requesting"
        elif not isinstance(ev, norm.ToolEnd):
            self._on_session(ev, wall)

    def _on_session(self, ev: norm.Event, wall: float) -> None:
        if isinstance(ev, norm.Init):
            self._mark(wall, "init")
            self.phase = "requesting"
        elif isinstance(ev, (norm.Status, norm.ApiRetry)):
            if isinstance(ev, norm.ApiRetry):
                self.retry_status = ev.status
                self.retry_run += 1
                self._mark(wall, "api_retry", self.retry_status)
            if not self.tools:
                self.phase = "requesting"
        elif isinstance(ev, norm.Result):
            self._mark(wall, "result", ev.subtype)
            self.phase = "idle"

    def _progress(self, ev: norm.ToolStart) -> None:
        if ev.input is None:  # its input is still streaming: the whole message names it again
            return
        if changes_anything(ev.name, ev.input):
            self.change_turn = len(self.facts.messages)
            self.change_cost = self.cost_so_far(self.facts.model)
            self.change_tokens = sum(self.tokens().values())
            self.since_change.clear()
        else:
            self.since_change[ev.name] += 1

    # --- reading ---------------------------------------------------------

    def burn(self, turns: int, usd: float, tokens: int) -> dict[str, Any] | None:
        """The evidence when, over at least `turns` turns since the last call that changed
        anything, the session spent more than `usd` or `tokens` (0: that limit off)."""
        since = len(self.facts.messages) - self.change_turn
        if turns <= 0 or since < turns or (usd <= 0 and tokens <= 0):
            return None
        spent = self.cost_so_far(self.facts.model) - self.change_cost
        used = sum(self.tokens().values()) - self.change_tokens
        if not ((usd > 0 and spent > usd) or (tokens > 0 and used > tokens)):
            return None
        return {"turns_since_change": since, "spent_usd": round(spent, 6), "tokens": used,
                "last_change_turn": self.change_turn or None, "tools_since": dict(self.since_change),
                "limits": {"turns": turns, "usd": usd, "tokens": tokens}}

    def silence(self, now_mono: float, started_mono: float) -> tuple[float, float, str]:
        """(seconds silent, the limit that applies, "tool" or "stream")."""
        since = self.last_event_mono or started_mono
        silent = max(0.0, now_mono - since)
        if self.tools:
            return silent, max(c.allowance_s for c in self.tools.values()), "tool"
        return silent, self.limits.stall_s, "stream"

    def tokens(self) -> dict[str, int]:
        return self.facts.streamed_tokens()

    def outstanding(self, now_wall: float) -> list[dict[str, Any]]:
        return [
            {"id": c.tool_id, "name": c.name, "input": c.summary,
             "running_s": round(now_wall - (c.started_at if c.started_at is not None else now_wall), 1),
             "allowance_s": c.allowance_s}
            for c in self.tools.values()
        ]

    def heartbeat(self, now_wall: float, now_mono: float, started_mono: float, extra: dict[str, Any]) -> dict[str, Any]:
        silent, limit, kind = self.silence(now_mono, started_mono)
        f = self.facts
        model = f.model
        hb: dict[str, Any] = {
            "session_id": self.session_id,
            "written_at": round(now_wall, 3),
            "phase": self.phase,
            "last_event_at": round(self.last_event_wall, 3) if self.last_event_wall else None,
            "last_event_type": self.last_event_type or None,
            "silent_s": round(silent, 1),
            "stall_limit_s": limit,
            "limit_kind": kind,
            "events": f.events,
            "malformed": f.stats.malformed,
            "turns": len(f.messages),
            "tool_calls": sum(f.tool_calls.values()),
            "tool_errors": sum(f.tool_errors.values()),
            "tokens": self.tokens(),
            "cost_usd_so_far": self.cost_so_far(model),
            "api_retries": sum(f.api_retries.values()),
            "outstanding_tool": next(iter(self.outstanding(now_wall)), None),
            "model": model or None,
        }
        hb.update(extra)
        return hb

    def cost_so_far(self, model: str) -> float:
        reported = self.facts.result.cost_usd if self.facts.result else None
        if reported is not None:
            return round(reported, 6)
        return estimate_cost_usd(self.facts.messages, model)

    def take_marks(self) -> list[Mark]:
        marks, self.marks = self.marks, []
        return marks
