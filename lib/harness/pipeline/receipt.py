"""metrics.json, the receipt of one session, and its one-line form."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness import jsonio
from harness.pipeline.record import SessionRecord
from harness.pipeline.verdict import Verdict
from harness.stream.facts import SessionFacts, estimate_cost_usd
from harness.stream.timeline import tool_durations, tool_starts


def _tokens(facts: SessionFacts) -> tuple[dict[str, int], str]:
    """Token totals as the agent's result billed them, else from the streamed per-message usage."""
    res = facts.result
    if res is not None and res.billed is not None:
        return dict(res.billed), res.billed_source
    return facts.streamed_tokens(), "stream"


def tool_times(rec: SessionRecord) -> dict[str, float]:
    """Seconds spent in tool calls, by tool name, from the sidecar's timeline.jsonl
    (the stream itself carries no times for tool calls).

    The loop finalizes a session as soon as its agent exits, and the sidecar may
    not have read the last lines yet. A call the sidecar saw start whose result is
    in the stream but not yet in the timeline ended at or before the stream's last
    write: that time stands in for its end.
    """
    done = tool_durations(rec.marks)
    late = [tid for tid in rec.facts.tool_results if tid not in done]
    if late and rec.events_mtime is not None:
        starts = tool_starts(rec.marks)
        for tid in late:
            if tid in starts:
                name, t0 = starts[tid]
                done[tid] = (name, round(max(0.0, rec.events_mtime - t0), 3))
    totals: dict[str, float] = {}
    for name, seconds in done.values():
        totals[name] = round(totals.get(name, 0.0) + seconds, 3)
    return totals


def _cost(facts: SessionFacts, tokens: dict[str, int], token_source: str, model: str,
          reported: float | None) -> tuple[float, bool]:
    """(USD, estimated). A result line without billed usage (a session stopped
    mid-stream reports total_cost_usd 0 and empty modelUsage) while the stream shows
    tokens: the cost is estimated from the same streamed usage the counts came from."""
    unbilled = token_source == "stream" and any(tokens.values()) and not reported
    if reported is None or unbilled:
        return estimate_cost_usd(facts.messages, model), True
    return reported, False


def build(rec: SessionRecord, verdict: Verdict) -> dict[str, Any]:
    """The receipt: a pure function of the session's record and its verdict."""
    facts, meta = rec.facts, rec.meta
    res = facts.result
    tokens, token_source = _tokens(facts)
    reported = res.cost_usd if res else None
    model = facts.model or str(meta.get("model") or "")
    cost, estimated = _cost(facts, tokens, token_source, model, reported)
    wall_s = None
    started, ended = meta.get("started_epoch"), meta.get("ended_epoch")
    if isinstance(started, (int, float)) and isinstance(ended, (int, float)):
        wall_s = round(ended - started, 3)
    return {
        "session_id": meta.get("session_id", rec.dir.name),
        "item_id": meta.get("item_id"),
        "run": meta.get("run"),
        "attempt": meta.get("attempt"),
        "verdict": verdict.verdict,
        "reason": verdict.reason,
        "exit_code": verdict.exit_code,
        "model": facts.model or meta.get("model"),
        "started_at": meta.get("started_at"),
        "ended_at": meta.get("ended_at"),
        "wall_s": wall_s,
        "ttft_s": _ttft(rec),
        "claim_to_exec_s": _claim_to_exec(rec),
        "duration_ms": res.duration_ms if res else None,
        "duration_api_ms": res.duration_api_ms if res else None,
        "turns": len(facts.messages),
        "cli_num_turns": res.num_turns if res else None,
        "tokens": tokens,
        "token_source": token_source,
        "cost_usd": round(cost, 6),
        "cost_estimated": estimated,
        "tool_calls": dict(facts.tool_calls),
        "tool_errors": dict(facts.tool_errors),
        "tool_time_s": tool_times(rec),
        "permission_denials": res.permission_denials if res else 0,
        "denied": [{"tool": d.tool, "input": d.input} for d in res.denials] if res else [],
        "api_retries": dict(facts.api_retries),
        "compactions": facts.compactions,
        "events": None if facts.fast else facts.events,
        "scan": "fast" if facts.fast else "full",
        "malformed_lines": facts.stats.malformed,
        "verify": _verify(rec),
        "fix_round": meta.get("fix_round"),
        "no_progress": rec.burn,  # the burn detector's evidence (burn.json), when it stopped the session
        # as the result line reported them: a resumed conversation's from its start on
        # some releases (cli_cumulative), where cost_usd and tokens are this round's own
        "cli_cost_usd": res.cli_cost_usd if res else None,
        "cli_tokens": res.cli_billed if res else None,
        "cli_cumulative": bool(res and res.billed_source == "result.model_usage_since_last_result"
                               and res.cli_cost_usd is not None and res.cost_usd is not None
                               and abs(res.cli_cost_usd - res.cost_usd) > 1e-9),
    }


def _claim_to_exec(rec: SessionRecord) -> float | None:
    """Seconds from the claim (the session's start in meta.json) to the agent's exec."""
    started = rec.meta.get("started_epoch")
    if not isinstance(started, (int, float)) or rec.exec_at is None:
        return None
    return round(max(0.0, rec.exec_at - started), 3)


def _ttft(rec: SessionRecord) -> float | None:
    """Seconds from the agent's start to the model's first streamed message (or tool
    call), as the sidecar saw it; None for a session that streamed none."""
    started = rec.meta.get("started_epoch")
    first = next((m.get("t") for m in rec.marks if m.get("kind") in ("turn", "tool_use")), None)
    if not isinstance(started, (int, float)) or not isinstance(first, (int, float)):
        return None
    return round(max(0.0, first - started), 3)


def _verify(rec: SessionRecord) -> dict[str, Any] | None:
    """The verify command, its exit status and how long it ran; None without one."""
    if rec.verify is None:
        return None
    seconds = None
    if rec.verify_began is not None and rec.verify_ended is not None:
        seconds = round(max(0.0, rec.verify_ended - rec.verify_began), 3)
    return {"cmd": rec.verify.get("cmd"), "exit_code": rec.verify_exit, "seconds": seconds,
            "log": "verify.log" if rec.verify_began is not None else None}


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
