"""The verdict table: every way a session can end, and what follows from it.

One row per verdict. The policy (what happens to the item), the circuit breaker
(how it counts the session), the reports (the colour a verdict is shown in) and
docs/verdicts.md all read this table; a verdict without a row is an error, not a
silent default (tests/python/test_verdicts.py iterates them all).

    verdict          action      attempt   breaker                       colour
    succeeded        succeed     charged   success                       green
    failed           retry       charged   success (the API answered)    red
    max_turns        quarantine  charged   success                       red
    budget_exceeded  quarantine  charged   success                       red
    verify_failed    fix         free      success                       red
    integrate_failed fix         free      neutral (no session)          red
    stalled          retry       charged   neutral; failure while        red
                                           waiting on the API
    timed_out        retry       charged   neutral                       red
    no_progress      quarantine  charged   neutral                       red
    crashed          retry       charged   neutral; failure before init  red
    api_error        retry       charged   failure                       red
    spawn_failed     retry       charged   failure                       red
    usage_error      quarantine  charged   neutral, opens it at once     red
    auth_error       requeue     free      failure, opens it at once     red
    usage_limited    pause       free      neutral                       yellow
    interrupted      requeue     free      neutral                       yellow

A retry whose verdict says it is not retryable (an API 400, a prompt or command
line the CLI refuses) is quarantined at once instead. A fix round resumes the same
conversation with the verify command's failure (FIX_ROUNDS of them; then the item
is quarantined); it counts toward FIX_ROUNDS, not the item's attempts.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Action(StrEnum):
    """What the policy does with the item (policy.decide)."""

    SUCCEED = "succeed"  # -> succeeded
    QUARANTINE = "quarantine"  # -> quarantined at once
    RETRY = "retry"  # -> pending after a backoff; quarantined after MAX_ATTEMPTS
    REQUEUE = "requeue"  # -> pending at once, no attempt charged
    PAUSE = "pause"  # -> pending, no attempt charged; spawning paused until the reset
    FIX = "fix"  # -> pending at once for a fix round (the conversation resumed); quarantined after FIX_ROUNDS


class Outcome(StrEnum):
    """How the circuit breaker counts a session (breaker.py)."""

    FAILURE = "failure"  # the API itself failed
    SUCCESS = "success"  # the API answered
    NEUTRAL = "neutral"  # says nothing about the API


class Colour(StrEnum):
    GREEN = "green"
    YELLOW = "yellow"
    RED = "red"


@dataclass(frozen=True)
class Row:
    verdict: str
    action: Action
    charged: bool  # the session counts as one of the item's attempts
    outcome: Outcome
    colour: Colour
    meaning: str
    outcome_before_init: Outcome | None = None  # when the agent never reached system/init
    outcome_api_wait: Outcome | None = None  # a stall while waiting on the API
    opens_breaker: bool = False  # opens the breaker at once: a person must act
    fix: str = ""  # what that person does (said when the loop halts on it)


ROWS = (
    Row("succeeded", Action.SUCCEED, True, Outcome.SUCCESS, Colour.GREEN, "the agent said it completed the task"),
    Row("failed", Action.RETRY, True, Outcome.SUCCESS, Colour.RED,
        "the agent or the API reported an error; refusals no retry can change are quarantined at once"),
    Row("max_turns", Action.QUARANTINE, True, Outcome.SUCCESS, Colour.RED, "the turn limit was reached"),
    Row("budget_exceeded", Action.QUARANTINE, True, Outcome.SUCCESS, Colour.RED, "the budget was spent"),
    Row("verify_failed", Action.FIX, False, Outcome.SUCCESS, Colour.RED,
        "the agent said it completed the task, but the verify command failed"),
    Row("integrate_failed", Action.FIX, False, Outcome.NEUTRAL, Colour.RED,
        "the merge queue's verdict, no session's: the branch conflicts with the target, or fails its check merged"),
    Row("stalled", Action.RETRY, True, Outcome.NEUTRAL, Colour.RED, "silent past its limit; stopped by the harness",
        outcome_api_wait=Outcome.FAILURE),
    Row("timed_out", Action.RETRY, True, Outcome.NEUTRAL, Colour.RED, "past its wall-clock limit; stopped"),
    Row("no_progress", Action.QUARANTINE, True, Outcome.NEUTRAL, Colour.RED,
        "spent past BURN_USD or BURN_TOKENS over BURN_TURNS turns without a write, an edit or a commit; stopped"),
    Row("crashed", Action.RETRY, True, Outcome.NEUTRAL, Colour.RED, "the agent ended without a result line",
        outcome_before_init=Outcome.FAILURE),
    Row("api_error", Action.RETRY, True, Outcome.FAILURE, Colour.RED, "the API failed (429, 5xx, connection)"),
    Row("spawn_failed", Action.RETRY, True, Outcome.FAILURE, Colour.RED, "the agent could not be started"),
    Row("usage_error", Action.QUARANTINE, True, Outcome.NEUTRAL, Colour.RED,
        "the CLI refused its command line; every next session would be refused alike", opens_breaker=True,
        fix="the CLI refused its arguments: fix the configuration"),
    Row("auth_error", Action.REQUEUE, False, Outcome.FAILURE, Colour.RED, "the API rejected the credentials",
        opens_breaker=True, fix="the credentials are wrong: fix them"),
    Row("usage_limited", Action.PAUSE, False, Outcome.NEUTRAL, Colour.YELLOW, "a usage limit; spawning pauses"),
    Row("interrupted", Action.REQUEUE, False, Outcome.NEUTRAL, Colour.YELLOW, "stopped by a signal, STOP or a cancel"),
)
TABLE: dict[str, Row] = {row.verdict: row for row in ROWS}
VERDICTS: tuple[str, ...] = tuple(TABLE)


class UnknownVerdictError(ValueError):
    """A verdict the table has no row for."""


def row(verdict: str) -> Row:
    try:
        return TABLE[verdict]
    except KeyError:
        raise UnknownVerdictError(f"unknown verdict {verdict!r}: lib/harness/pipeline/verdicts.py has no row for it") from None


def action(verdict: str, retryable: bool | None) -> Action:
    """What happens to the item; a retry that cannot help is a quarantine."""
    act = row(verdict).action
    return Action.QUARANTINE if act is Action.RETRY and retryable is False else act


def outcome(verdict: str, started: bool, stall_phase: str | None = None, api_wait_phases: tuple[str, ...] = ()) -> Outcome:
    """How the breaker counts the session."""
    r = row(verdict)
    if not started and r.outcome_before_init is not None:
        return r.outcome_before_init
    if stall_phase in api_wait_phases and r.outcome_api_wait is not None:
        return r.outcome_api_wait
    return r.outcome


def markdown() -> str:
    """The table as docs/verdicts.md shows it (tests/python/test_verdicts.py keeps them equal)."""
    letter = {Outcome.FAILURE: "F", Outcome.SUCCESS: "S", Outcome.NEUTRAL: "-"}

    def breaker(r: Row) -> str:
        text = letter[r.outcome]
        if r.opens_breaker:
            text += ", opens it at once"
        if r.outcome_before_init is not None:
            text += f" ({letter[r.outcome_before_init]} before system/init)"
        if r.outcome_api_wait is not None:
            text += f" ({letter[r.outcome_api_wait]} while waiting on the API)"
        return text

    lines = ["| verdict | action | attempt | breaker | colour | meaning |", "|---|---|---|---|---|---|"]
    for r in ROWS:
        lines.append(f"| {r.verdict} | {r.action} | {'charged' if r.charged else 'free'} | {breaker(r)} | {r.colour} "
                     f"| {r.meaning} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown(), end="")
