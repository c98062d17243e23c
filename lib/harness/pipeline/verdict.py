"""The verdict of a finished session, with its reason.

Order of trust: what the harness itself did to the session (kill.json: it stopped
the session for a stall, a timeout, an interrupt or a cancel), then the stream
(the result line, rate_limit_event, api_retry lines), then the exit status, then
stderr.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from harness.agents import Agent
from harness.pipeline import verdicts
from harness.pipeline.record import SessionRecord
from harness.stream.events import Result
from harness.stream.facts import SessionFacts

VERDICTS = verdicts.VERDICTS  # the table in verdicts.py
MAX_REASON_CHARS = 400
VERIFY_REASON_LINES = 5


@dataclass
class Verdict:
    verdict: str
    reason: str
    retryable: bool | None = None  # None: the verdict's policy decides
    resets_at: float | None = None
    exit_code: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _clip(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= MAX_REASON_CHARS else text[: MAX_REASON_CHARS - 1] + "…"


def _turns(facts: SessionFacts) -> str:
    """'N turns': a turn is one assistant message of the model (docs/file-formats.md)."""
    n = len(facts.messages)
    return f"{n} turn" if n == 1 else f"{n} turns"


def _from_kill(kill: dict[str, Any], facts: SessionFacts, code: int | None) -> Verdict | None:
    res = facts.result
    if res and not res.failed and code == 0:
        return None  # it finished on its own before the stop took effect
    reason = str(kill.get("reason") or "interrupted")
    detail = str(kill.get("detail") or "")
    verdict = reason if reason in ("stalled", "timed_out", "interrupted", "no_progress") else "interrupted"
    return Verdict(verdict, _clip(detail or f"stopped by the harness ({reason})"), exit_code=code)


def _usage_limit(facts: SessionFacts, text: str, agent: Agent) -> Verdict | None:
    rl = facts.rate_limit
    if rl and rl.status == "rejected":
        kind = rl.kind or "usage"
        at = rl.resets_at
        return Verdict("usage_limited", _clip(f"{kind} limit reached" + (f"; resets at {int(at)}" if at else "")), resets_at=at)
    limited, at = agent.usage_limit(text)
    if limited:
        return Verdict("usage_limited", _clip(text), resets_at=at)
    return None


def _from_result(res: Result, facts: SessionFacts, code: int | None, agent: Agent) -> Verdict:
    subtype = res.subtype
    text = res.text
    if not res.failed:
        return Verdict("succeeded", _clip(f"completed in {_turns(facts)}"), exit_code=code)
    if subtype == "error_max_turns":
        return Verdict("max_turns", f"reached the turn limit after {_turns(facts)}", exit_code=code)
    if subtype == "error_max_budget_usd":
        return Verdict("budget_exceeded", f"spent ${res.cost_usd or 0:.4f}, over the budget", exit_code=code)
    limited = _usage_limit(facts, text, agent)
    if limited:
        limited.exit_code = code
        return limited
    status = res.api_error_status
    reported, words = agent.api_error(text)
    if status in (401, 403):
        return Verdict("auth_error", _clip(f"credentials rejected ({status}): {text}"), exit_code=code)
    if isinstance(status, int):
        if status in (408, 409, 429) or status >= 500:
            return Verdict("api_error", _clip(f"API error {status}: {words}"), exit_code=code)
        return Verdict("failed", _clip(f"API rejected the request ({status}): {words}"), retryable=False, exit_code=code)
    if agent.prompt_refused(text, res.terminal_reason, ""):
        return Verdict("failed", _clip(f"the CLI refused the prompt: {text}"), retryable=False, exit_code=code)
    if reported:
        return Verdict("api_error", _clip(text), exit_code=code)
    if res.errors:
        text = "; ".join(res.errors)
    return Verdict("failed", _clip(f"{subtype}: {text}" if text else str(subtype)), exit_code=code)


def verify_output(tail: str, lines: int = VERIFY_REASON_LINES) -> str:
    """The last lines of the verify command's output, for a reason or a fix prompt."""
    kept = [line.rstrip() for line in tail.splitlines() if line.strip()][-lines:]
    return " | ".join(kept)


def _verified(rec: SessionRecord, v: Verdict) -> Verdict:
    """A succeeded session's verify: exit 0 keeps it succeeded; anything else (or no
    exit status: the command never finished) is verify_failed, with the exit status
    and the end of the command's output as the reason."""
    cmd = str((rec.verify or {}).get("cmd") or "")
    shown = " ".join(cmd.split())
    shown = shown if len(shown) <= 80 else shown[:79] + "…"
    code = rec.verify_exit
    if code == 0:
        return Verdict("succeeded", _clip(f"{v.reason}; verified by `{shown}`"), exit_code=v.exit_code)
    if rec.kill is not None:  # stopped while it verified: the stop's verdict
        stopped = _from_kill(rec.kill, rec.facts, None)
        if stopped is not None:
            stopped.exit_code = v.exit_code
            return stopped
    output = verify_output(rec.verify_tail)
    if code is None:
        why = "did not finish (the session's wrapper was killed?)"
    elif code in (124, 137):
        why = f"ran past its {float((rec.verify or {}).get('timeout_s') or 0):g}s limit and was stopped (exit {code})"
    else:
        why = f"exited {code}"
    return Verdict("verify_failed", _clip(f"verify `{shown}` {why}" + (f": {output}" if output else "")),
                   exit_code=v.exit_code)


def denied_tools(res: Result) -> list[str]:
    """The tools the agent's permissions refused, each once, in order."""
    return list(dict.fromkeys(d.tool for d in res.denials))


def _with_denials(v: Verdict, res: Result) -> Verdict:
    """A session whose tool calls were refused says which, whatever its verdict: the
    cause of a failure, or work that may be incomplete."""
    if not res.denials:
        return v
    shown = "; ".join(f"{d.tool}" + (f" `{d.input}`" if d.input else "") for d in res.denials[:3])
    more = f" and {len(res.denials) - 3} more" if len(res.denials) > 3 else ""
    v.reason = _clip(f"{v.reason} (permission denied: {shown}{more}; allow with ALLOWED_TOOLS "
                     f"or the item's allowed_tools: {','.join(denied_tools(res))})")
    return v


def classify(rec: SessionRecord) -> Verdict:
    """The session's verdict: a pure function of its record."""
    code, facts, agent = rec.exit_code, rec.facts, rec.agent
    if rec.kill is not None:
        stopped = _from_kill(rec.kill, facts, code)
        if stopped:
            return stopped
    if rec.spawn_error:
        return Verdict("spawn_failed", _clip(rec.spawn_error), exit_code=code)
    if facts.result:
        v = _from_result(facts.result, facts, code, agent)
        v = _verified(rec, v) if v.verdict == "succeeded" and rec.verify else v
        return _with_denials(v, facts.result)
    stderr = rec.stderr_tail
    limited = _usage_limit(facts, stderr, agent)
    if limited:
        limited.exit_code = code
        return limited
    last_err = stderr.strip().splitlines()[-1] if stderr.strip() else ""
    if agent.prompt_refused("", "", stderr):
        return Verdict("failed", _clip(f"the CLI refused the prompt: {last_err}"), retryable=False, exit_code=code)
    words = agent.argv_refused(stderr) if facts.init is None else ""
    if words and code not in (None, 0) and code < 128:
        return Verdict("usage_error", _clip(f"the CLI refused its arguments: {words}"), exit_code=code)
    if code is None:
        return Verdict("crashed", "the agent ended without recording an exit status (killed with its wrapper?)")
    if code != 0 and code < 128 and facts.init is None:
        return Verdict("spawn_failed", _clip(f"the agent did not start (exit {code}): {last_err}"), exit_code=code)
    if code > 128:
        return Verdict("crashed", _clip(f"killed by signal {code - 128} with no result line {last_err}"), exit_code=code)
    return Verdict("crashed", _clip(f"exited {code} with no result line {last_err}"), exit_code=code)
