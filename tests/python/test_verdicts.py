"""The verdict table (verdicts.py): every verdict has a row, and the policy, the
breaker, the reports and docs/verdicts.md all take every row."""

from __future__ import annotations

import io
import random
import re
from pathlib import Path

import pytest
from harness.pipeline import breaker as circuit
from harness.pipeline import policy, verdicts
from harness.pipeline.verdict import VERDICTS, Verdict
from harness.report.style import Style

DOCS = Path(__file__).resolve().parents[2] / "docs" / "verdicts.md"


@pytest.mark.parametrize("name", VERDICTS)
def test_every_verdict_has_a_policy_a_breaker_outcome_and_a_colour(name: str) -> None:
    row = verdicts.row(name)
    d = policy.decide(Verdict(name, "why"), 1, 3, policy.Policy(), 1_800_000_000.0, random.Random(1))
    assert d.action == row.action
    assert d.attempts == 1 + row.charged
    assert circuit.outcome(name, started=True) in ("failure", "success", "neutral")
    ansi = {"green": "\x1b[32m", "yellow": "\x1b[33m", "red": "\x1b[31m"}[row.colour]
    assert Style(io.StringIO(), True).verdict(name).startswith(ansi + name)


@pytest.mark.parametrize("name", [v for v in VERDICTS if verdicts.row(v).action == verdicts.Action.RETRY])
def test_a_retry_that_cannot_help_is_a_quarantine(name: str) -> None:
    d = policy.decide(Verdict(name, "why", retryable=False), 0, 3, policy.Policy(), 1_800_000_000.0, random.Random(1))
    assert (d.action, d.to_state) == ("quarantine", "quarantined")


def test_an_unknown_verdict_is_an_error_not_a_silent_default() -> None:
    with pytest.raises(verdicts.UnknownVerdictError, match="no row"):
        circuit.outcome("no_such_verdict", started=True)
    with pytest.raises(verdicts.UnknownVerdictError):
        policy.decide(Verdict("no_such_verdict", "why"), 0, 3, policy.Policy(), 0.0, random.Random(1))


def test_the_breaker_exceptions_come_from_the_table() -> None:
    assert circuit.outcome("crashed", started=False) == "failure"
    assert circuit.outcome("crashed", started=True) == "neutral"
    assert circuit.outcome("stalled", started=True, stall_phase="requesting") == "failure"
    assert circuit.outcome("stalled", started=True, stall_phase="in_tool") == "neutral"
    assert [v for v in VERDICTS if verdicts.row(v).opens_breaker] == ["usage_error", "auth_error"]


def test_docs_show_the_table_as_it_is() -> None:
    text = DOCS.read_text(encoding="utf-8")
    found = re.search(r"<!-- verdict-table: generated -->\n(.*?)<!-- /verdict-table -->", text, re.S)
    assert found, "docs/verdicts.md lost its generated verdict table"
    assert found.group(1) == verdicts.markdown(), "regenerate it: make docs"
