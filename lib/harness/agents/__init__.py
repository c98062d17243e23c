"""The agent seam: the one place an agent is picked by name ("claude" today).

    from harness.agents import agent_for
    argv = agent_for("claude").argv(binary, uuid, bootstrap, limits)
"""

from __future__ import annotations

from harness.agents.base import Agent, Limits, limits_for
from harness.agents.claude import Claude

AGENTS: dict[str, type[Claude]] = {"claude": Claude}

__all__ = ["AGENTS", "Agent", "Limits", "UnknownAgentError", "agent_for", "limits_for"]


class UnknownAgentError(ValueError):
    """An agent name no module here implements."""


def agent_for(name: str = "claude") -> Agent:
    try:
        return AGENTS[name]()
    except KeyError:
        raise UnknownAgentError(f"unknown agent {name!r} (one of: {', '.join(AGENTS)})") from None
