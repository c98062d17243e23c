"""The agent seam (lib/harness/agents/): Claude Code's command lines and prices."""

from __future__ import annotations

from pathlib import Path

import pytest
from harness.agents import Limits, UnknownAgentError, agent_for, limits_for

BOOT = Path("/s/prompt.md")


def test_a_new_session_and_a_resumed_one_differ_only_in_how_they_name_the_conversation() -> None:
    a = agent_for("claude")
    limits = Limits(max_turns=40, max_budget_usd=2.5, model="claude-opus-5-5", allowed_tools="Bash,Read",
                    permission_mode="acceptEdits", skip_permissions=True)
    new = a.argv("/bin/claude", "u-1", BOOT, limits)
    assert new == ["/bin/claude", "-p", "--output-format", "stream-json", "--verbose", "--include-partial-messages",
                   "--session-id", "u-1", "--append-system-prompt-file", "/s/prompt.md", "--max-turns", "40",
                   "--max-budget-usd", "2.5", "--model", "claude-opus-5-5", "--allowedTools", "Bash,Read",
                   "--permission-mode", "acceptEdits", "--dangerously-skip-permissions"]
    resumed = a.resume_argv("/bin/claude", "u-1", BOOT, limits)
    assert resumed[resumed.index("--resume") + 1] == "u-1" and "--session-id" not in resumed
    assert [x for x in resumed if x != "--resume"] == [x for x in new if x != "--session-id"]


def test_zero_limits_and_empty_values_add_no_flags() -> None:
    argv = agent_for().argv("claude", "u", BOOT, Limits())
    assert argv[-2:] == ["--append-system-prompt-file", "/s/prompt.md"]


def test_an_items_limits_win_over_the_configurations() -> None:
    got = limits_for({"max_turns": 7, "model": "", "allowed_tools": None}, 50, 5.0, "claude-sonnet-5", "Bash",
                     "", False)
    assert (got.max_turns, got.max_budget_usd, got.model, got.allowed_tools) == (7, 5.0, "claude-sonnet-5", "Bash")


def test_an_unknown_agent_is_refused() -> None:
    with pytest.raises(UnknownAgentError, match="unknown agent 'codex'"):
        agent_for("codex")
