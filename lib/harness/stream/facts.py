"""One pass over a session's events.jsonl, collecting what verdicts and receipts need.

The agent decodes each line into normalized events (stream/events.py); the facts
are built from those alone.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.agents import Agent, agent_for
from harness.stream import events as norm
from harness.stream import fastscan
from harness.stream.calls import ToolCalls
from harness.stream.jsonl import LineStats, iter_events

DEFAULT_AGENT = agent_for()


@dataclass
class MessageUsage:
    model: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read: int = 0
    cache_write: int = 0


@dataclass
class SessionFacts:
    stats: LineStats = field(default_factory=LineStats)
    init: norm.Init | None = None
    result: norm.Result | None = None
    events: int = 0
    messages: dict[str, MessageUsage] = field(default_factory=dict)
    tool_calls: Counter[str] = field(default_factory=Counter)
    tool_errors: Counter[str] = field(default_factory=Counter)
    calls: ToolCalls = field(default_factory=lambda: ToolCalls(keep=False))  # the open ones, by id
    tool_results: set[str] = field(default_factory=set)  # tool ids whose result is in the stream
    api_retries: Counter[str] = field(default_factory=Counter)
    compactions: int = 0
    rate_limit: norm.RateLimit | None = None
    last_assistant_text: str = ""
    current_message: str = ""
    fast: bool = False  # read by fastscan: deltas were skipped, not counted

    def streamed_tokens(self) -> dict[str, int]:
        """Token totals over the streamed per-message usage."""
        t = {"input": 0, "output": 0, "cache_read": 0, "cache_write": 0}
        for mu in self.messages.values():
            t["input"] += mu.input_tokens
            t["output"] += mu.output_tokens
            t["cache_read"] += mu.cache_read
            t["cache_write"] += mu.cache_write
        return t

    @property
    def model(self) -> str:
        """The model the session ran on, as its start named it; "" before that."""
        return self.init.model if self.init else ""


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _usage_into(mu: MessageUsage, u: norm.Usage) -> None:
    mu.input_tokens = max(mu.input_tokens, u.input)
    mu.cache_read = max(mu.cache_read, u.cache_read)
    mu.cache_write = max(mu.cache_write, u.cache_write)
    mu.output_tokens = max(mu.output_tokens, u.output)


def _on_turn(f: SessionFacts, ev: norm.Turn) -> None:
    if ev.streamed:
        f.current_message = ev.message_id
    if ev.message_id and (ev.streamed or not ev.synthetic):
        f.messages.setdefault(ev.message_id, MessageUsage(model=ev.model))


def _on_usage(f: SessionFacts, ev: norm.Usage) -> None:
    mid = ev.message_id or f.current_message
    if mid:
        _usage_into(f.messages.setdefault(mid, MessageUsage(model=ev.model)), ev)


def _on_tool_end(f: SessionFacts, ev: norm.ToolEnd) -> None:
    call = f.calls.end(ev)
    f.tool_results.add(ev.tool_id)
    if ev.is_error:
        f.tool_errors[call.name if call else "?"] += 1


def apply(f: SessionFacts, ev: norm.Event) -> None:
    """Adds one normalized event to the facts."""
    if isinstance(ev, norm.Usage):
        _on_usage(f, ev)
    elif isinstance(ev, norm.Turn):
        _on_turn(f, ev)
    elif isinstance(ev, norm.ToolStart):
        f.calls.start(ev)
        f.tool_calls[ev.name] += 1
    elif isinstance(ev, norm.ToolEnd):
        _on_tool_end(f, ev)
    elif isinstance(ev, norm.Text):
        f.last_assistant_text = ev.text
    elif isinstance(ev, norm.Init):
        f.init = ev
    elif isinstance(ev, norm.ApiRetry):
        f.api_retries[ev.status] += 1
    elif isinstance(ev, norm.Compaction):
        f.compactions += 1
    elif isinstance(ev, norm.Result):
        f.result = ev
        f.calls.close_all()
    elif isinstance(ev, norm.RateLimit) and (f.rate_limit is None or ev.status == "rejected"):
        f.rate_limit = ev


def feed(f: SessionFacts, line: dict[str, Any], agent: Agent | None = None) -> list[norm.Event]:
    """Adds one line of the agent's stream to the facts; its normalized events."""
    f.events += 1
    evs = (agent or DEFAULT_AGENT).decode(line)
    for ev in evs:
        apply(f, ev)
    return evs


def scan(path: Path) -> SessionFacts:
    f = SessionFacts()
    if fastscan.usable(path):
        evs, bad, partial = fastscan.events(path)
        if not any(ev.get("type") == "result" for ev in evs):
            # no result line: the estimate needs the streamed usage too
            evs, bad, partial = fastscan.events(path, with_usage=True)
        f.fast = True
        f.stats = LineStats(lines=len(evs) + bad, malformed=bad, partial_tail=partial)
        for ev in evs:
            feed(f, ev)
        f.events = len(evs)
        return f
    for ev in iter_events(path, f.stats):
        feed(f, ev)
    return f


def estimate_cost_usd(messages: dict[str, MessageUsage], default_model: str, agent: Agent | None = None) -> float:
    """The cost of the streamed usage at the agent's prices (agents/)."""
    agent = agent or agent_for()
    total = 0.0
    for mu in messages.values():
        p_in, p_out, p_read, p_write = agent.price_per_mtok(mu.model or default_model)
        total += (
            mu.input_tokens * p_in + mu.output_tokens * p_out + mu.cache_read * p_read + mu.cache_write * p_write
        ) / 1_000_000
    return round(total, 6)
