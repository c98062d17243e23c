"""Claude Code's stream-json, decoded into normalized events (stream/events.py).

One JSON object per line (`--output-format stream-json --verbose
--include-partial-messages`): system (init, status, api_retry, compact_boundary,
task_started), stream_event (the raw Messages API stream: message_start, content
block deltas, message_delta with usage, message_stop), assistant (a whole message:
text and tool_use blocks, its usage), user (tool_result blocks), rate_limit_event
and the closing result line. The reference runs are tests/python/fixtures/.

This module is the only reader of that format outside the fast scan
(stream/fastscan.py); everything else reads the events it gives.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from harness.stream import events as norm
from harness.stream.calls import tool_summary

# A text or tool-input delta, by far the most frequent line, starts with these bytes
# (the CLI writes compact JSON, "type" first): the sidecar counts such lines unparsed.
DELTA_PREFIX = b'{"type":"stream_event","event":{"type":"content_block_delta"'
SYNTHETIC_MODEL = "<synthetic>"


def _obj(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _usage(message_id: str, model: str, usage: Any) -> norm.Usage | None:
    if not isinstance(usage, dict):
        return None
    return norm.Usage(message_id, model, _int(usage.get("input_tokens")), _int(usage.get("output_tokens")),
                   _int(usage.get("cache_read_input_tokens")), _int(usage.get("cache_creation_input_tokens")))


def result_text(block: dict[str, Any]) -> str:
    """A tool result's body as text: a string as it is, a list of blocks by their text, one per line."""
    content = block.get("content")
    if isinstance(content, list):
        return "\n".join(str(c.get("text", "")) for c in content if isinstance(c, dict))
    return str(content or "")


def _stream_event(ev: dict[str, Any]) -> list[norm.Event]:
    inner = _obj(ev.get("event"))
    itype = str(inner.get("type") or "")
    if itype == "content_block_delta":
        delta = _obj(inner.get("delta"))
        dtype = delta.get("type")
        if dtype == "text_delta":
            return [norm.TextDelta(str(delta.get("text") or ""), "text")]
        if dtype == "thinking_delta":
            return [norm.TextDelta(str(delta.get("thinking") or ""), "thinking")]
        if dtype == "input_json_delta":
            return [norm.TextDelta(str(delta.get("partial_json") or ""), "input")]
        return [norm.TextDelta("", "other")]
    if itype == "message_start":
        msg = _obj(inner.get("message"))
        mid, model = str(msg.get("id") or ""), str(msg.get("model") or "")
        out: list[norm.Event] = [norm.Turn(mid, model, model == SYNTHETIC_MODEL, bool(ev.get("parent_tool_use_id")),
                                     streamed=True)]
        usage = _usage(mid, model, msg.get("usage")) if mid else None
        return [*out, usage] if usage else out
    if itype == "message_delta":
        counts = _obj(inner.get("usage"))
        return [norm.Usage("", output=_int(counts.get("output_tokens")))] if counts else [norm.Streaming(itype)]
    if itype == "message_stop":
        return [norm.MessageEnd()]
    if itype == "content_block_stop":
        return [norm.BlockEnd()]
    return [norm.Streaming(itype)]


def _assistant(ev: dict[str, Any]) -> list[norm.Event]:
    msg = ev.get("message")
    if not isinstance(msg, dict):
        return []
    mid, model = str(msg.get("id") or ""), str(msg.get("model") or "")
    synthetic = model == SYNTHETIC_MODEL
    out: list[norm.Event] = [norm.Turn(mid, model, synthetic, bool(ev.get("parent_tool_use_id")))]
    usage = _usage(mid, model, msg.get("usage")) if mid and not synthetic else None
    if usage:
        out.append(usage)
    for block in msg.get("content") or []:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "tool_use":
            out.append(norm.ToolStart(str(block.get("id") or ""), str(block.get("name") or "?"), block.get("input"), mid))
        elif block.get("type") == "text":
            out.append(norm.Text(mid, str(block.get("text") or "")))
    return out


def _user(ev: dict[str, Any]) -> list[norm.Event]:
    content = _obj(ev.get("message")).get("content")
    if not isinstance(content, list):
        return []
    at = str(ev.get("timestamp") or "")
    out: list[norm.Event] = [norm.ToolEnd(str(b.get("tool_use_id") or ""), bool(b.get("is_error")), result_text(b), at)
                             for b in content if isinstance(b, dict) and b.get("type") == "tool_result"]
    return [*out, norm.Prompt()]


def _system(ev: dict[str, Any]) -> list[norm.Event]:
    sub = ev.get("subtype")
    if sub == "init":
        return [norm.Init(str(ev.get("session_id") or ""), str(ev.get("model") or ""), str(ev.get("cwd") or ""), ev)]
    if sub == "api_retry":
        status = ev.get("error_status")
        delay = ev.get("retry_delay_ms")
        return [norm.ApiRetry(str(status) if status is not None else "connection", ev.get("attempt"),
                           ev.get("max_retries"), str(ev.get("error") or ""),
                           float(delay) / 1000 if isinstance(delay, (int, float)) else 0.0)]
    if sub == "status":
        return [norm.Status()]
    if sub == "compact_boundary":
        return [norm.Compaction()]
    if sub == "task_started":
        return [norm.TaskStarted(str(ev.get("description") or ""))]
    return []


def _model_usage(model_usage: Any) -> tuple[dict[str, int], float | None] | None:
    """Token totals and cost (USD) over a result's per-model usage; None when it has none."""
    if not isinstance(model_usage, dict) or not model_usage:
        return None
    t = {"input": 0, "output": 0, "cache_read": 0, "cache_write": 0}
    cost: float | None = None
    for mu in model_usage.values():
        if isinstance(mu, dict):
            t["input"] += _int(mu.get("inputTokens"))
            t["output"] += _int(mu.get("outputTokens"))
            t["cache_read"] += _int(mu.get("cacheReadInputTokens"))
            t["cache_write"] += _int(mu.get("cacheCreationInputTokens"))
            if _num(mu.get("costUSD")) is not None:
                cost = (cost or 0.0) + float(mu["costUSD"])
    return t, cost


def _billed(ev: dict[str, Any]) -> tuple[dict[str, int] | None, str]:
    """Token totals from the result's modelUsage (every API call, as billed), else
    from its usage; None when it has neither. (The whole conversation's, on a CLI
    that reports a resumed one from its start.)"""
    totals = _model_usage(ev.get("modelUsage"))
    if totals is not None:
        return totals[0], "result.modelUsage"
    usage = ev.get("usage")
    if isinstance(usage, dict) and any(_int(usage.get(k)) for k in ("input_tokens", "output_tokens")):
        return {
            "input": _int(usage.get("input_tokens")),
            "output": _int(usage.get("output_tokens")),
            "cache_read": _int(usage.get("cache_read_input_tokens")),
            "cache_write": _int(usage.get("cache_creation_input_tokens")),
        }, "result.usage"
    return None, ""


def _num(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _result(ev: dict[str, Any]) -> list[norm.Event]:
    """The result line. A resumed conversation (a fix round): CLI 2.1.332 reports its
    cost and modelUsage from the conversation's start, and this process's own in
    model_usage_since_last_result, which is then the session's cost and tokens;
    2.1.197 reports the process's own in the first place."""
    errors = ev.get("errors")
    total_billed, total_source = _billed(ev)
    total_cost = _num(ev.get("total_cost_usd"))
    own = _model_usage(ev.get("model_usage_since_last_result"))
    billed, source, cost = total_billed, total_source, total_cost
    if own is not None and own[1] is not None:
        billed, source, cost = own[0], "result.model_usage_since_last_result", own[1]
    denials = ev.get("permission_denials")
    denied = tuple(norm.Denial(str(d.get("tool_name") or "?"), tool_summary(d.get("tool_input")))
                   for d in denials if isinstance(d, dict)) if isinstance(denials, list) else ()
    return [norm.Result(
        subtype=str(ev.get("subtype") or ""), is_error=bool(ev.get("is_error")), text=str(ev.get("result") or ""),
        cost_usd=cost, duration_ms=ev.get("duration_ms"), num_turns=ev.get("num_turns"),
        errors=tuple(str(e) for e in errors) if isinstance(errors, list) else (),
        api_error_status=ev.get("api_error_status"), terminal_reason=str(ev.get("terminal_reason") or ""),
        duration_api_ms=ev.get("duration_api_ms"), permission_denials=len(denials) if isinstance(denials, list) else 0,
        denials=denied, billed=billed, billed_source=source, cli_cost_usd=total_cost, cli_billed=total_billed,
        raw=ev,
    )]


def _rate_limit(ev: dict[str, Any]) -> list[norm.Event]:
    info = ev.get("rate_limit_info")
    if not isinstance(info, dict):
        return []
    resets = info.get("resetsAt")
    return [norm.RateLimit(str(info.get("status") or ""), str(info.get("rateLimitType") or ""),
                        float(resets) if isinstance(resets, (int, float)) else None, info)]


DECODERS: dict[str, Callable[[dict[str, Any]], list[norm.Event]]] = {
    "stream_event": _stream_event,
    "assistant": _assistant,
    "user": _user,
    "system": _system,
    "result": _result,
    "rate_limit_event": _rate_limit,
}


def decode(ev: dict[str, Any]) -> list[norm.Event]:
    """The normalized events of one line of the stream; none for a line of no interest."""
    decoder = DECODERS.get(str(ev.get("type")))
    return decoder(ev) if decoder is not None else []


def label(ev: dict[str, Any]) -> str:
    """The line's kind as a person reads it: "assistant", "system/init", "stream_event/message_start"."""
    etype = str(ev.get("type") or "")
    if etype == "stream_event":
        return f"stream_event/{_obj(ev.get('event')).get('type') or ''}"
    sub = ev.get("subtype")
    return f"{etype}/{sub}" if sub else etype
