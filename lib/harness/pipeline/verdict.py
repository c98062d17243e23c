"""The verdict of a finished session, with its reason.

Order of trust: what the harness itself did to the session (kill.json: it stopped
the session for a stall, a timeout, an interrupt or a cancel), then the stream
(the result line, rate_limit_event, api_retry lines), then the exit status, then
stderr.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any

from harness.pipeline import verdicts
from harness.pipeline.record import SessionRecord
from harness.stream.events import Result
from harness.stream.facts import SessionFacts

VERDICTS = verdicts.VERDICTS  # the table in verdicts.py
USAGE_LIMIT_RE = re.compile(r"usage limit reached|hit your (usage )?limit|out of (extra )?usage", re.IGNORECASE)
RESET_EPOCH_RE = re.compile(r"\|(\d{10})\b")
# "API Error: 500 Internal server error..." -> "Internal server error...": the reason
# says "API error 500: " itself.
API_ERROR_PREFIX_RE = re.compile(r"^API Error:\s*(?:\d{3}\b\s*)?")
# The CLI refused the prompt before any request: 2.1.332 says "Prompt is too long"
# with terminal_reason blocking_limit and no API status.
PROMPT_REFUSED_RE = re.compile(r"^prompt is too long\b", re.IGNORECASE)
PROMPT_REFUSED_TERMINAL_REASONS = ("blocking_limit", "prompt_too_long")
# The CLI's argument parser (commander) refusing its command line: "error: unknown
# option '--x'", "error: option '--permission-mode <mode>' argument 'x' is invalid..."
USAGE_ERROR_RE = re.compile(r"^error: (?:unknown option|option |missing required argument|too many arguments|"
                            r"required option|unknown command)", re.MULTILINE)
MAX_REASON_CHARS = 400


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
    verdict = reason if reason in ("stalled", "timed_out", "interrupted") else "interrupted"
    return Verdict(verdict, _clip(detail or f"stopped by the harness ({reason})"), exit_code=code)


def _usage_limit(facts: SessionFacts, text: str) -> Verdict | None:
    rl = facts.rate_limit
    if rl and rl.status == "rejected":
        kind = rl.kind or "usage"
        at = rl.resets_at
        return Verdict("usage_limited", _clip(f"{kind} limit reached" + (f"; resets at {int(at)}" if at else "")), resets_at=at)
    if USAGE_LIMIT_RE.search(text):
        m = RESET_EPOCH_RE.search(text)
        at = float(m.group(1)) if m else None
        return Verdict("usage_limited", _clip(text), resets_at=at)
    return None


def _from_result(res: Result, facts: SessionFacts, code: int | None) -> Verdict:
    subtype = res.subtype
    text = res.text
    if not res.failed:
        return Verdict("succeeded", _clip(f"completed in {_turns(facts)}"), exit_code=code)
    if subtype == "error_max_turns":
        return Verdict("max_turns", f"reached the turn limit after {_turns(facts)}", exit_code=code)
    if subtype == "error_max_budget_usd":
        return Verdict("budget_exceeded", f"spent ${res.cost_usd or 0:.4f}, over the budget", exit_code=code)
    limited = _usage_limit(facts, text)
    if limited:
        limited.exit_code = code
        return limited
    status = res.api_error_status
    if status in (401, 403):
        return Verdict("auth_error", _clip(f"credentials rejected ({status}): {text}"), exit_code=code)
    if isinstance(status, int):
        words = API_ERROR_PREFIX_RE.sub("", text) or text
        if status in (408, 409, 429) or status >= 500:
            return Verdict("api_error", _clip(f"API error {status}: {words}"), exit_code=code)
        return Verdict("failed", _clip(f"API rejected the request ({status}): {words}"), retryable=False, exit_code=code)
    if PROMPT_REFUSED_RE.match(text) or res.terminal_reason in PROMPT_REFUSED_TERMINAL_REASONS:
        return Verdict("failed", _clip(f"the CLI refused the prompt: {text}"), retryable=False, exit_code=code)
    if text.startswith("API Error"):
        return Verdict("api_error", _clip(text), exit_code=code)
    if res.errors:
        text = "; ".join(res.errors)
    return Verdict("failed", _clip(f"{subtype}: {text}" if text else str(subtype)), exit_code=code)


def classify(rec: SessionRecord) -> Verdict:
    """The session's verdict: a pure function of its record."""
    code, facts = rec.exit_code, rec.facts
    if rec.kill is not None:
        stopped = _from_kill(rec.kill, facts, code)
        if stopped:
            return stopped
    if rec.spawn_error:
        return Verdict("spawn_failed", _clip(rec.spawn_error), exit_code=code)
    if facts.result:
        return _from_result(facts.result, facts, code)
    stderr = rec.stderr_tail
    limited = _usage_limit(facts, stderr)
    if limited:
        limited.exit_code = code
        return limited
    last_err = stderr.strip().splitlines()[-1] if stderr.strip() else ""
    if "input exceeds" in stderr:
        return Verdict("failed", _clip(f"the CLI refused the prompt: {last_err}"), retryable=False, exit_code=code)
    usage = USAGE_ERROR_RE.search(stderr) if facts.init is None else None
    if usage and code not in (None, 0) and code < 128:
        words = stderr[usage.start():].splitlines()[0]
        return Verdict("usage_error", _clip(f"the CLI refused its arguments: {words}"), exit_code=code)
    if code is None:
        return Verdict("crashed", "the agent ended without recording an exit status (killed with its wrapper?)")
    if code != 0 and code < 128 and facts.init is None:
        return Verdict("spawn_failed", _clip(f"the agent did not start (exit {code}): {last_err}"), exit_code=code)
    if code > 128:
        return Verdict("crashed", _clip(f"killed by signal {code - 128} with no result line {last_err}"), exit_code=code)
    return Verdict("crashed", _clip(f"exited {code} with no result line {last_err}"), exit_code=code)
