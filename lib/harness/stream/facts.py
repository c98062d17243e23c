"""One pass over a session's events.jsonl, collecting what verdicts and receipts need."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.agents import Agent, agent_for
from harness.stream import fastscan
from harness.stream.jsonl import LineStats, iter_events


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
    init: dict[str, Any] | None = None
    result: dict[str, Any] | None = None
    events: int = 0
    messages: dict[str, MessageUsage] = field(default_factory=dict)
    tool_calls: Counter[str] = field(default_factory=Counter)
    tool_errors: Counter[str] = field(default_factory=Counter)
    tool_names: dict[str, str] = field(default_factory=dict)  # tool id -> name
    tool_results: set[str] = field(default_factory=set)  # tool ids whose result is in the stream
    api_retries: Counter[str] = field(default_factory=Counter)
    compactions: int = 0
    rate_limit: dict[str, Any] | None = None
    last_assistant_text: str = ""
    current_message: str = ""
    fast: bool = False  # read by fastscan: deltas were skipped, not counted


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _usage_into(mu: MessageUsage, usage: Any, with_output: bool) -> None:
    if not isinstance(usage, dict):
        return
    mu.input_tokens = max(mu.input_tokens, _int(usage.get("input_tokens")))
    mu.cache_read = max(mu.cache_read, _int(usage.get("cache_read_input_tokens")))
    mu.cache_write = max(mu.cache_write, _int(usage.get("cache_creation_input_tokens")))
    if with_output:
        mu.output_tokens = max(mu.output_tokens, _int(usage.get("output_tokens")))


def _on_assistant(f: SessionFacts, ev: dict[str, Any]) -> None:
    msg = ev.get("message")
    if not isinstance(msg, dict):
        return
    mid = str(msg.get("id") or "")
    if mid and msg.get("model") != "<synthetic>":
        mu = f.messages.setdefault(mid, MessageUsage(model=str(msg.get("model") or "")))
        _usage_into(mu, msg.get("usage"), with_output=True)
    for block in msg.get("content") or []:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "tool_use":
            name = str(block.get("name") or "?")
            f.tool_calls[name] += 1
            f.tool_names[str(block.get("id"))] = name
        elif block.get("type") == "text":
            f.last_assistant_text = str(block.get("text") or "")


def _on_user(f: SessionFacts, ev: dict[str, Any]) -> None:
    msg = ev.get("message")
    content = msg.get("content") if isinstance(msg, dict) else None
    if not isinstance(content, list):
        return
    for block in content:
        if not isinstance(block, dict) or block.get("type") != "tool_result":
            continue
        tid = str(block.get("tool_use_id"))
        f.tool_results.add(tid)
        if block.get("is_error"):
            f.tool_errors[f.tool_names.get(tid, "?")] += 1


def _on_stream_event(f: SessionFacts, ev: dict[str, Any]) -> None:
    inner = ev.get("event")
    if not isinstance(inner, dict):
        return
    etype = inner.get("type")
    if etype == "message_start":
        msg = inner.get("message") or {}
        f.current_message = str(msg.get("id") or "")
        if f.current_message:
            mu = f.messages.setdefault(f.current_message, MessageUsage(model=str(msg.get("model") or "")))
            _usage_into(mu, msg.get("usage"), with_output=True)
    elif etype == "message_delta" and f.current_message:
        usage = inner.get("usage")
        if isinstance(usage, dict):
            mu = f.messages.setdefault(f.current_message, MessageUsage())
            mu.output_tokens = max(mu.output_tokens, _int(usage.get("output_tokens")))


def _on_system(f: SessionFacts, ev: dict[str, Any]) -> None:
    sub = ev.get("subtype")
    if sub == "init":
        f.init = ev
    elif sub == "api_retry":
        status = ev.get("error_status")
        f.api_retries[str(status) if status is not None else "connection"] += 1
    elif sub == "compact_boundary":
        f.compactions += 1


def feed(f: SessionFacts, ev: dict[str, Any]) -> None:
    """Adds one stream-json event to the facts."""
    f.events += 1
    etype = ev.get("type")
    if etype == "stream_event":
        _on_stream_event(f, ev)
    elif etype == "assistant":
        _on_assistant(f, ev)
    elif etype == "user":
        _on_user(f, ev)
    elif etype == "system":
        _on_system(f, ev)
    elif etype == "result":
        f.result = ev
    elif etype == "rate_limit_event":
        info = ev.get("rate_limit_info")
        if isinstance(info, dict) and (f.rate_limit is None or info.get("status") == "rejected"):
            f.rate_limit = info


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
