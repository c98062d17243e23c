"""Normalized stream events: what the harness reads from any agent's stream.

An agent (agents/) decodes each line of its own stream into these; the facts a
verdict and a receipt need (facts.py), the sidecar's live state (sidecar/live.py),
watch, export and the reports read nothing else. One line may give several events
(an assistant message with text and two tool calls gives three) or none.

Turn:       a message of the model begins or is seen whole (its id; the CLI's own
            messages are `synthetic` and no turn)
Usage:      tokens of a message ("" as message_id: the message being streamed)
TextDelta:  streamed text (kind "text", "thinking", "input" for tool input, "other")
BlockEnd:   a streamed content block ended; MessageEnd: a streamed message ended
Streaming:  any other sign of a response being streamed
Text:       a whole text block of a message
ToolStart:  a tool call (its id, name and input); ToolEnd: its result
Prompt:     a message to the model ended (tool results, or the harness's input): the
            model is asked next
Init, ApiRetry, RateLimit, Compaction, Status, TaskStarted, Result: as named;
Init and Result keep the agent's own record (`raw`) too, for a reader that needs
more than the harness does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Turn:
    message_id: str
    model: str = ""
    synthetic: bool = False
    subagent: bool = False
    streamed: bool = False  # seen as the start of a streamed message, not as the whole message


@dataclass(frozen=True, slots=True)
class Usage:
    message_id: str  # "": the message being streamed
    model: str = ""
    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0


@dataclass(frozen=True, slots=True)
class TextDelta:
    text: str
    kind: str = "text"  # text, thinking, input, other


@dataclass(frozen=True, slots=True)
class BlockEnd:
    pass


@dataclass(frozen=True, slots=True)
class MessageEnd:
    pass


@dataclass(frozen=True, slots=True)
class Streaming:
    what: str = ""


@dataclass(frozen=True, slots=True)
class Text:
    message_id: str
    text: str


@dataclass(frozen=True, slots=True)
class ToolStart:
    tool_id: str
    name: str
    input: Any = None
    message_id: str = ""


@dataclass(frozen=True, slots=True)
class ToolEnd:
    tool_id: str
    is_error: bool
    text: str  # the result's body, flattened to text
    at: str = ""  # the line's own timestamp (ISO), when it has one


@dataclass(frozen=True, slots=True)
class Prompt:
    pass


@dataclass(frozen=True, slots=True)
class Init:
    session_id: str = ""
    model: str = ""
    cwd: str = ""
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ApiRetry:
    status: str  # the HTTP status, or "connection"
    attempt: Any = None
    max_retries: Any = None
    error: str = ""
    delay_s: float = 0.0


@dataclass(frozen=True, slots=True)
class RateLimit:
    status: str
    kind: str = ""
    resets_at: float | None = None
    raw: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Compaction:
    pass


@dataclass(frozen=True, slots=True)
class Status:
    pass


@dataclass(frozen=True, slots=True)
class TaskStarted:
    description: str = ""


@dataclass(frozen=True, slots=True)
class Denial:
    """A tool call the agent's permissions refused: the tool and what it was asked to do."""

    tool: str
    input: str


@dataclass(frozen=True, slots=True)
class Result:
    subtype: str
    is_error: bool
    text: str = ""
    cost_usd: float | None = None  # this process's cost
    duration_ms: Any = None  # as the agent wrote it
    num_turns: Any = None
    errors: tuple[str, ...] = ()
    api_error_status: Any = None
    terminal_reason: str = ""
    duration_api_ms: Any = None
    permission_denials: int = 0
    denials: tuple[Denial, ...] = ()
    billed: dict[str, int] | None = None  # this process's tokens as billed: input, output, cache_read, cache_write
    billed_source: str = ""  # where the agent's result line gave them
    cli_cost_usd: float | None = None  # as the result line reports it (some CLIs: a resumed conversation's, from its start)
    cli_billed: dict[str, int] | None = None  # the tokens as it reports them
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def failed(self) -> bool:
        return self.is_error or self.subtype != "success"


Event = (Turn | Usage | TextDelta | BlockEnd | MessageEnd | Streaming | Text | ToolStart | ToolEnd | Prompt | Init
         | ApiRetry | RateLimit | Compaction | Status | TaskStarted | Result)
