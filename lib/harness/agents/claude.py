"""Claude Code (npm @anthropic-ai/claude-code), the first agent.

A session is `claude -p --output-format stream-json --verbose
--include-partial-messages --session-id <uuid>`; a fix round resumes the same
conversation with `--resume <uuid>`. Tested with CLI 2.1.197 (pinned) through
2.1.332 (README, tests/python/fixtures/reference-2.1.332/NOTES.md).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from harness.agents import claude_stream
from harness.agents.base import Limits
from harness.stream.events import Event

NAME = "claude"

# USD per million tokens: input, output, cache read, cache write (5 minutes), by
# model id prefix; the longest prefix wins. The claude-*-5* rows are what CLI 2.1.332
# itself charges for them (its result line's modelUsage.costUSD, measured per token
# kind against tests/fakeapi); the others are the published list prices. A model
# none of them names falls back to its family, then to the newest CLI's default.
MODEL_PRICES_PER_MTOK: dict[str, tuple[float, float, float, float]] = {
    "claude-opus-5-5": (4.0, 20.0, 0.2, 5.0),
    "claude-opus-5": (5.0, 25.0, 0.5, 6.25),
    "claude-opus-4-8": (5.0, 25.0, 0.5, 6.25),
    "claude-opus-4-7": (5.0, 25.0, 0.5, 6.25),
    "claude-opus-4-6": (5.0, 25.0, 0.5, 6.25),
    "claude-opus-4-5": (5.0, 25.0, 0.5, 6.25),
    "claude-opus-4": (15.0, 75.0, 1.5, 18.75),
    "claude-sonnet-5-5": (2.0, 10.0, 0.1, 2.5),
    "claude-sonnet-5": (2.0, 10.0, 0.2, 2.5),
    "claude-sonnet-4": (3.0, 15.0, 0.3, 3.75),
    "claude-haiku-5-5": (0.5, 0.5, 0.05, 0.625),
    "claude-haiku-4-5": (1.0, 5.0, 0.1, 1.25),
    "claude-haiku-3-5": (0.8, 4.0, 0.08, 1.0),
}
FAMILY_PRICES_PER_MTOK: dict[str, tuple[float, float, float, float]] = {
    "opus": (5.0, 25.0, 0.5, 6.25),
    "sonnet": (3.0, 15.0, 0.3, 3.75),
    "haiku": (1.0, 5.0, 0.1, 1.25),
}
DEFAULT_PRICED_MODEL = "claude-opus-5-5"

# The words of the CLI's own messages that a verdict reads (agents/base.py, Agent):
USAGE_LIMIT_RE = re.compile(r"usage limit reached|hit your (usage )?limit|out of (extra )?usage", re.IGNORECASE)
RESET_EPOCH_RE = re.compile(r"\|(\d{10})\b")
# "API Error: 500 Internal server error..." -> "Internal server error...": the reason
# says "API error 500: " itself.
API_ERROR_PREFIX_RE = re.compile(r"^API Error:\s*(?:\d{3}\b\s*)?")
# The CLI refused the prompt before any request: 2.1.332 says "Prompt is too long"
# with terminal_reason blocking_limit and no API status; stdin over 10 MB is
# "Error: piped stdin input exceeds 10MB" on stderr.
PROMPT_REFUSED_RE = re.compile(r"^prompt is too long\b", re.IGNORECASE)
PROMPT_REFUSED_TERMINAL_REASONS = ("blocking_limit", "prompt_too_long")
STDERR_PROMPT_REFUSED = "input exceeds"
# The CLI's argument parser (commander) refusing its command line: "error: unknown
# option '--x'", "error: option '--permission-mode <mode>' argument 'x' is invalid..."
USAGE_ERROR_RE = re.compile(r"^error: (?:unknown option|option |missing required argument|too many arguments|"
                            r"required option|unknown command)", re.MULTILINE)


def _number(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


class Claude:
    name = NAME

    def _flags(self, limits: Limits, bootstrap: Path) -> list[str]:
        argv = ["--append-system-prompt-file", str(bootstrap)]
        if float(limits.max_turns) != 0:
            argv += ["--max-turns", _number(limits.max_turns)]
        if float(limits.max_budget_usd) != 0:
            argv += ["--max-budget-usd", _number(limits.max_budget_usd)]
        if limits.model:
            argv += ["--model", limits.model]
        if limits.allowed_tools:
            argv += ["--allowedTools", limits.allowed_tools]
        if limits.permission_mode:
            argv += ["--permission-mode", limits.permission_mode]
        if limits.skip_permissions:
            argv.append("--dangerously-skip-permissions")
        return argv

    def argv(self, binary: str, session_uuid: str, bootstrap: Path, limits: Limits) -> list[str]:
        return [binary, "-p", "--output-format", "stream-json", "--verbose", "--include-partial-messages",
                "--session-id", session_uuid, *self._flags(limits, bootstrap)]

    def resume_argv(self, binary: str, session_uuid: str, bootstrap: Path, limits: Limits) -> list[str]:
        return [binary, "-p", "--output-format", "stream-json", "--verbose", "--include-partial-messages",
                "--resume", session_uuid, *self._flags(limits, bootstrap)]

    def price_per_mtok(self, model: str) -> tuple[float, float, float, float]:
        """For a model id as the stream names it ("claude-opus-4-8", "claude-opus-4-8[1m]",
        "claude-haiku-4-5-20251001")."""
        name = model.lower().split("[", 1)[0]
        best = max((prefix for prefix in MODEL_PRICES_PER_MTOK if name.startswith(prefix)), key=len, default="")
        if best:
            return MODEL_PRICES_PER_MTOK[best]
        for family, price in FAMILY_PRICES_PER_MTOK.items():
            if family in name:
                return price
        return MODEL_PRICES_PER_MTOK[DEFAULT_PRICED_MODEL]

    def decode(self, line: dict[str, Any]) -> list[Event]:
        return claude_stream.decode(line)

    def label(self, line: dict[str, Any]) -> str:
        return claude_stream.label(line)

    def is_delta(self, line: bytes) -> bool:
        return line.startswith(claude_stream.DELTA_PREFIX)

    def usage_limit(self, text: str) -> tuple[bool, float | None]:
        m = USAGE_LIMIT_RE.search(text)
        if not m:
            return False, None
        at = RESET_EPOCH_RE.search(text)
        return True, float(at.group(1)) if at else None

    def api_error(self, text: str) -> tuple[bool, str]:
        return text.startswith("API Error"), API_ERROR_PREFIX_RE.sub("", text) or text

    def prompt_refused(self, text: str, terminal_reason: str, stderr: str) -> bool:
        return (bool(PROMPT_REFUSED_RE.match(text)) or terminal_reason in PROMPT_REFUSED_TERMINAL_REASONS
                or STDERR_PROMPT_REFUSED in stderr)

    def argv_refused(self, stderr: str) -> str:
        m = USAGE_ERROR_RE.search(stderr)
        return stderr[m.start():].splitlines()[0] if m else ""
