"""One pass over a session's events.jsonl, collecting what verdicts and receipts need.

The agent decodes each line into normalized events (stream/events.py); the facts
are built from those alone.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.agents import Agent, agent_for
from harness.stream import events as norm
from harness.stream import fastscan
from harness.stream.calls import ToolCalls
from harness.stream.jsonl import LineStats, iter_lines, open_stream, parse_line

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
    utilization: tuple[float, str, float | None] | None = None  # the highest seen: (0..1, window, its reset)
    warnings: int = 0  # allowed_warning events seen (the CLI sends one each time the limit's status changes)
    warning: tuple[float | None, str] | None = None  # the latest: its utilization (0..1, when said), window
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
    f.calls.end(ev)
    f.tool_results.add(ev.tool_id)
    if ev.is_error:
        f.tool_errors[f.calls.name_of(ev.tool_id)] += 1


def _on_tool_start(f: SessionFacts, ev: norm.ToolStart) -> None:
    f.calls.start(ev)
    f.tool_calls[ev.name] += 1


def _on_text(f: SessionFacts, ev: norm.Text) -> None:
    f.last_assistant_text = ev.text


def _on_init(f: SessionFacts, ev: norm.Init) -> None:
    f.init = ev


def _on_retry(f: SessionFacts, ev: norm.ApiRetry) -> None:
    f.api_retries[ev.status] += 1


def _on_compaction(f: SessionFacts, ev: norm.Compaction) -> None:
    f.compactions += 1


def _on_result(f: SessionFacts, ev: norm.Result) -> None:
    f.result = ev
    f.calls.close_all()


def _on_rate_limit(f: SessionFacts, ev: norm.RateLimit) -> None:
    if f.rate_limit is None or ev.status == "rejected":
        f.rate_limit = ev
    used = ev.raw.get("utilization")
    share = None
    if isinstance(used, (int, float)) and not isinstance(used, bool):
        share = float(used) / 100 if used > 1 else float(used)  # a percentage, in some releases' words
        if f.utilization is None or share > f.utilization[0]:
            f.utilization = (share, ev.kind, ev.resets_at)
    if ev.status == "allowed_warning":
        f.warnings += 1
        f.warning = (share, ev.kind)


# what each kind of event adds; the others (deltas, block ends...) add nothing
APPLY: dict[type, Callable[[SessionFacts, Any], None]] = {
    norm.Usage: _on_usage,
    norm.Turn: _on_turn,
    norm.ToolStart: _on_tool_start,
    norm.ToolEnd: _on_tool_end,
    norm.Text: _on_text,
    norm.Init: _on_init,
    norm.ApiRetry: _on_retry,
    norm.Compaction: _on_compaction,
    norm.Result: _on_result,
    norm.RateLimit: _on_rate_limit,
}


def apply(f: SessionFacts, ev: norm.Event) -> None:
    """Adds one normalized event to the facts."""
    add = APPLY.get(type(ev))
    if add is not None:
        add(f, ev)


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
        try:
            evs, bad, partial = fastscan.events(path)
            if not any(ev.get("type") == "result" for ev in evs):
                # no result line: the estimate needs the streamed usage too
                evs, bad, partial = fastscan.events(path, with_usage=True)
        except FileNotFoundError:  # compressed by retention's gc meanwhile: read as any other
            _scan_lines(f, path, DEFAULT_AGENT)
            return f
        f.fast = True
        f.stats = LineStats(lines=len(evs) + bad, malformed=bad, partial_tail=partial)
        for ev in evs:
            feed(f, ev)
        f.events = len(evs)
        return f
    _scan_lines(f, path, DEFAULT_AGENT)
    return f


def _scan_lines(f: SessionFacts, path: Path, agent: Agent) -> None:
    """Every line; a delta (the agent's is_delta), which adds nothing but its count, is
    counted unparsed when it is whole (ends its object: the unterminated tail is parsed)."""
    try:
        fh = open_stream(path)  # or its compressed copy
    except FileNotFoundError:
        return
    with fh:
        for line in iter_lines(fh, f.stats):
            if not line.strip():
                continue
            f.stats.lines += 1
            if agent.is_delta(line) and not f.stats.partial_tail and line.rstrip().endswith(b"}"):
                f.events += 1
                continue
            ev = parse_line(line)
            if ev is None:
                f.stats.malformed += 1
                continue
            feed(f, ev, agent)


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
