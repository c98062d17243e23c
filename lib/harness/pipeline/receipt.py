"""metrics.json, the receipt of one session, and its one-line form."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from harness import jsonio
from harness.pipeline.verdict import Verdict
from harness.sidecar.live import read_marks, tool_durations, tool_starts
from harness.stream.facts import SessionFacts, _int, estimate_cost_usd


def _tokens(facts: SessionFacts) -> tuple[dict[str, int], str]:
    """Token totals from the result's modelUsage (every API call, as billed), else
    from its usage, else from the streamed per-message usage."""
    res = facts.result or {}
    model_usage = res.get("modelUsage")
    if isinstance(model_usage, dict) and model_usage:
        t = {"input": 0, "output": 0, "cache_read": 0, "cache_write": 0}
        for mu in model_usage.values():
            if isinstance(mu, dict):
                t["input"] += _int(mu.get("inputTokens"))
                t["output"] += _int(mu.get("outputTokens"))
                t["cache_read"] += _int(mu.get("cacheReadInputTokens"))
                t["cache_write"] += _int(mu.get("cacheCreationInputTokens"))
        return t, "result.modelUsage"
    usage = res.get("usage")
    if isinstance(usage, dict) and any(_int(usage.get(k)) for k in ("input_tokens", "output_tokens")):
        return {
            "input": _int(usage.get("input_tokens")),
            "output": _int(usage.get("output_tokens")),
            "cache_read": _int(usage.get("cache_read_input_tokens")),
            "cache_write": _int(usage.get("cache_creation_input_tokens")),
        }, "result.usage"
    t = {"input": 0, "output": 0, "cache_read": 0, "cache_write": 0}
    for mu in facts.messages.values():
        t["input"] += mu.input_tokens
        t["output"] += mu.output_tokens
        t["cache_read"] += mu.cache_read
        t["cache_write"] += mu.cache_write
    return t, "stream"


def tool_times(session_dir: Path, facts: SessionFacts) -> dict[str, float]:
    """Seconds spent in tool calls, by tool name, from the sidecar's timeline.jsonl
    (the stream itself carries no times for tool calls).

    The loop finalizes a session as soon as its agent exits, and the sidecar may
    not have read the last lines yet. A call the sidecar saw start whose result is
    in the stream but not yet in the timeline ended at or before the stream's last
    write: that time stands in for its end.
    """
    marks = read_marks(session_dir / "timeline.jsonl")
    done = tool_durations(marks)
    late = [tid for tid in facts.tool_results if tid not in done]
    if late:
        starts = tool_starts(marks)
        try:
            last_write = os.stat(session_dir / "events.jsonl").st_mtime
        except OSError:
            last_write = None
        for tid in late:
            if tid in starts and last_write is not None:
                name, t0 = starts[tid]
                done[tid] = (name, round(max(0.0, last_write - t0), 3))
    totals: dict[str, float] = {}
    for name, seconds in done.values():
        totals[name] = round(totals.get(name, 0.0) + seconds, 3)
    return totals


def build(session_dir: Path, facts: SessionFacts, verdict: Verdict, meta: dict[str, Any]) -> dict[str, Any]:
    res = facts.result or {}
    tokens, token_source = _tokens(facts)
    reported = res.get("total_cost_usd")
    # A result line without billed usage (a session stopped mid-stream reports
    # total_cost_usd 0 and empty modelUsage) while the stream shows tokens: the cost
    # is estimated from the same streamed usage the token counts came from.
    unbilled = token_source == "stream" and any(tokens.values()) and not reported
    estimated = not isinstance(reported, (int, float)) or unbilled
    if estimated:
        model = str((facts.init or {}).get("model") or meta.get("model") or "")
        cost = estimate_cost_usd(facts.messages, model)
    else:
        cost = float(reported or 0)
    wall_s = None
    started, ended = meta.get("started_epoch"), meta.get("ended_epoch")
    if isinstance(started, (int, float)) and isinstance(ended, (int, float)):
        wall_s = round(ended - started, 3)
    return {
        "session_id": meta.get("session_id", session_dir.name),
        "item_id": meta.get("item_id"),
        "attempt": meta.get("attempt"),
        "verdict": verdict.verdict,
        "reason": verdict.reason,
        "exit_code": verdict.exit_code,
        "model": (facts.init or {}).get("model") or meta.get("model"),
        "started_at": meta.get("started_at"),
        "ended_at": meta.get("ended_at"),
        "wall_s": wall_s,
        "duration_ms": res.get("duration_ms"),
        "duration_api_ms": res.get("duration_api_ms"),
        "turns": len(facts.messages),
        "cli_num_turns": res.get("num_turns"),
        "tokens": tokens,
        "token_source": token_source,
        "cost_usd": round(cost, 6),
        "cost_estimated": estimated,
        "tool_calls": dict(facts.tool_calls),
        "tool_errors": dict(facts.tool_errors),
        "tool_time_s": tool_times(session_dir, facts),
        "permission_denials": len(res.get("permission_denials") or []),
        "api_retries": dict(facts.api_retries),
        "compactions": facts.compactions,
        "events": None if facts.fast else facts.events,
        "scan": "fast" if facts.fast else "full",
        "malformed_lines": facts.stats.malformed,
    }


def line(m: dict[str, Any]) -> str:
    t = m.get("tokens") or {}
    tools = ",".join(f"{k}:{v}" for k, v in sorted((m.get("tool_calls") or {}).items())) or "-"
    wall = f"{m['wall_s']:.1f}s" if isinstance(m.get("wall_s"), (int, float)) else "?"
    cost = f"${m.get('cost_usd', 0):.4f}" + ("~" if m.get("cost_estimated") else "")
    return (
        f"{m.get('session_id')} item={m.get('item_id')} verdict={m.get('verdict')} turns={m.get('turns')} "
        f"tokens(in={t.get('input', 0)} out={t.get('output', 0)} cache_read={t.get('cache_read', 0)} "
        f"cache_write={t.get('cache_write', 0)}) cost={cost} tools={tools} wall={wall}"
    )


def write(session_dir: Path, metrics: dict[str, Any]) -> None:
    jsonio.write_json(session_dir / "metrics.json", metrics)
