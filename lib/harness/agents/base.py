"""The Agent protocol: what the harness needs to know about a coding agent's CLI.

An agent builds the command line of a new session and of a resumed one (a fix
round goes on the same conversation), and prices the tokens its models use. The
harness picks it in one place (agents/__init__.py, by name); Claude Code
(claude.py, claude_stream.py) is the first. The agent also decodes its own stream,
line by line, into normalized events (stream/events.py): the facts, the sidecar,
watch, export and the reports read those only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from harness.stream.events import Event


@dataclass(frozen=True)
class Limits:
    """What one session may use; the item's values win over the configuration's."""

    max_turns: float = 0  # 0: the CLI's own
    max_budget_usd: float = 0  # 0: none
    model: str = ""
    allowed_tools: str = ""
    permission_mode: str = ""
    skip_permissions: bool = False


class Agent(Protocol):
    name: str

    def argv(self, binary: str, session_uuid: str, bootstrap: Path, limits: Limits) -> list[str]:
        """A new session, whose id is session_uuid."""
        ...

    def resume_argv(self, binary: str, session_uuid: str, bootstrap: Path, limits: Limits) -> list[str]:
        """A new turn of the conversation session_uuid (a fix round)."""
        ...

    def price_per_mtok(self, model: str) -> tuple[float, float, float, float]:
        """USD per million tokens: input, output, cache read, cache write."""
        ...

    def decode(self, line: dict[str, Any]) -> list[Event]:
        """The normalized events of one line of the agent's stream."""
        ...

    def label(self, line: dict[str, Any]) -> str:
        """A line's kind as a person reads it ("system/init")."""
        ...

    # --- the words of the agent's own messages that a verdict reads ------

    def usage_limit(self, text: str) -> tuple[bool, float | None]:
        """Whether text says the account's usage limit is reached; when it resets (epoch), if it says."""
        ...

    def api_error(self, text: str) -> tuple[bool, str]:
        """Whether text is the agent's report of an API error; its words without the agent's prefix."""
        ...

    def prompt_refused(self, text: str, terminal_reason: str, stderr: str) -> bool:
        """Whether the agent refused the prompt itself (too long, too big) before any request."""
        ...

    def argv_refused(self, stderr: str) -> str:
        """The agent's refusal of its own command line (an unknown option), or ""."""
        ...

    def is_delta(self, line: bytes) -> bool:
        """Whether an unparsed line is a streamed text delta, the most frequent kind:
        the sidecar counts those without parsing them."""
        ...


def limits_for(item: dict[str, Any], max_turns: float, max_budget_usd: float, model: str, allowed_tools: str,
               permission_mode: str, skip_permissions: bool) -> Limits:
    """The item's limits over the configuration's (an absent or empty field keeps the configuration's)."""
    def pick(key: str, default: Any) -> Any:
        value = item.get(key)
        return default if value is None or value == "" else value

    return Limits(pick("max_turns", max_turns), pick("max_budget_usd", max_budget_usd), str(pick("model", model)),
                  str(pick("allowed_tools", allowed_tools)), permission_mode, skip_permissions)
