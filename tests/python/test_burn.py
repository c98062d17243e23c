"""The burn detector (BURN_*): a live session that spends over BURN_TURNS turns
without a tool call that changes anything is found; one that writes is not."""

from __future__ import annotations

import json
from typing import Any

from harness.sidecar.live import Limits, LiveSession, changes_anything


def assistant(n: int, tool: str, tool_input: dict[str, Any]) -> bytes:
    return json.dumps({"type": "assistant", "message": {
        "id": f"msg_{n}", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
        "content": [{"type": "tool_use", "id": f"tu_{n}", "name": tool, "input": tool_input}],
        "usage": {"input_tokens": 1000, "output_tokens": 200, "cache_read_input_tokens": 0,
                  "cache_creation_input_tokens": 0}}}).encode()


def result_for(n: int) -> bytes:
    return json.dumps({"type": "user", "message": {"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": f"tu_{n}", "content": "ok", "is_error": False}]}}).encode()


def run(calls: list[tuple[str, dict[str, Any]]], turns: int = 5, usd: float = 0.0, tokens: int = 0) -> list[int]:
    """The turns at which the detector fires."""
    live = LiveSession("ses_x", Limits(300, 600))
    fired = []
    for n, (tool, tool_input) in enumerate(calls, 1):
        live.feed_line(assistant(n, tool, tool_input), float(n), float(n))
        live.feed_line(result_for(n), float(n), float(n))
        if live.burn(turns, usd, tokens) is not None:
            fired.append(n)
    return fired


def test_read_only_calls_past_the_turns_and_the_spend_are_found_with_their_evidence() -> None:
    reads = [("Read", {"file_path": f"/r/{n}.py"}) for n in range(8)] + [("Bash", {"command": "git log -3"})] * 4
    assert run(reads, turns=5, tokens=5000)[0] == 5  # 5 turns of 1,200 tokens: 6,000 > 5,000
    assert run(reads, turns=5, tokens=100_000) == []  # the spend stays under the limit
    assert run(reads, turns=20, tokens=1) == []  # fewer turns than BURN_TURNS
    assert run(reads, turns=5) == []  # no spend limit set: off
    live = LiveSession("ses_x", Limits(300, 600))
    for n, (tool, tool_input) in enumerate(reads[:6], 1):
        live.feed_line(assistant(n, tool, tool_input), float(n), float(n))
    ev = live.burn(5, 0.0, 5000)
    assert ev is not None and ev["turns_since_change"] == 6 and ev["tokens"] == 7200
    assert ev["tools_since"] == {"Read": 6} and ev["last_change_turn"] is None and ev["spent_usd"] > 0


def test_a_session_that_writes_edits_or_commits_is_never_found() -> None:
    writer = []
    for n in range(12):
        writer.append(("Read", {"file_path": "/r/a.py"}))
        writer.append([("Edit", {"file_path": "/r/a.py", "old_string": "a", "new_string": "b"}),
                       ("Bash", {"command": "git commit -qam step"}), ("Write", {"file_path": "/r/b", "content": "x"}),
                       ("Bash", {"command": "pytest -q > out.txt"})][n % 4])
    assert run(writer, turns=3, tokens=1) == []


def test_what_counts_as_a_change() -> None:
    assert changes_anything("Edit", {}) and changes_anything("Write", {}) and changes_anything("MultiEdit", {})
    for cmd in ("git commit -m x", "cd a && git add .", "echo x > f", "sed -i s/a/b/ f", "npm install", "make test",
                "mkdir -p d", "rm -rf build", "cat a | tee b"):
        assert changes_anything("Bash", {"command": cmd}), cmd
    for cmd in ("git log --oneline", "ls -la", "cat a.py", "grep -rn foo .", "git status", "pytest -q", "echo hi"):
        assert not changes_anything("Bash", {"command": cmd}), cmd
    assert not changes_anything("Read", {"file_path": "x"}) and not changes_anything("Grep", {"pattern": "x"})
