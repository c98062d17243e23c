"""What happens after a verdict: one policy per verdict, in one place.

    verdict                           action
    succeeded                         succeed     -> succeeded/, the attempt counted
    max_turns, budget_exceeded        quarantine  at once (a retry would hit the same limit)
    usage_limited                     pause       -> pending, no attempt counted; spawning paused
                                                  until the reset time plus jitter (pause.json)
    interrupted                       requeue     -> pending, no attempt counted (canceled/ when
                                                  an operator canceled it)
    auth_error                        requeue     -> pending, no attempt counted; the circuit
                                                  breaker opens at once (circuit.py)
    any other, retryable              retry       -> pending after min(cap, base * 2^(n-1)) with
                                                  full jitter, counting an attempt; quarantine
                                                  once the item has used max_attempts
    any other, not retryable          quarantine  at once (an API 4xx other than 401/403/408/
                                                  409/429, a prompt the CLI refuses)

The circuit breaker (circuit.py) sees every verdict as well; this module only
decides the item's fate.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .verdict import Verdict

QUARANTINE_AT_ONCE = ("max_turns", "budget_exceeded")
NO_ATTEMPT = ("usage_limited", "interrupted", "auth_error")


@dataclass
class Policy:
    """The configuration keys the helpers read (docs/configuration.md): the policy,
    the breaker, the claim gate and what a session is spawned with."""

    MAX_ATTEMPTS: int = 3
    RETRY_BASE_S: float = 30.0
    RETRY_CAP_S: float = 1800.0
    USAGE_PAUSE_S: float = 300.0
    PAUSE_JITTER_S: float = 60.0
    CIRCUIT_FAILURES: int = 3
    CIRCUIT_WINDOW: int = 10
    CIRCUIT_FAILURE_RATE: float = 0.5
    CIRCUIT_OPEN_S: float = 60.0
    CIRCUIT_OPEN_CAP_S: float = 1800.0
    CIRCUIT_STORM_RETRIES: int = 5
    MIN_FREE_MB: float = 100.0
    MAX_LOAD: float = 0.0
    MIN_FREE_MEM_MB: float = 0.0
    AGING_S: float = 3600.0
    # what a session is spawned with (start.py)
    CLAUDE_BIN: str = "claude"
    BOOTSTRAP: str = ""
    MAX_TURNS: int = 50
    MAX_BUDGET_USD: float = 5.0
    MODEL: str = ""
    ALLOWED_TOOLS: str = ""
    PERMISSION_MODE: str = ""
    SKIP_PERMISSIONS: str = "false"
    REPO_DIR: str = ""
    BASE_REF: str = "HEAD"
    SESSION_TIMEOUT_S: float = 3600.0

    @classmethod
    def from_pairs(cls, pairs: list[str] | None) -> Policy:
        """KEY=VALUE strings (the loop passes its resolved configuration); unknown keys are ignored."""
        known = {f.name: f.type for f in fields(cls)}
        values: dict[str, Any] = {}
        for pair in pairs or []:
            key, _, value = pair.partition("=")
            if key not in known:
                continue
            kind = known[key]
            values[key] = int(float(value)) if kind == "int" else float(value) if kind == "float" else value
        return cls(**values)


@dataclass
class Decision:
    action: str  # succeed, quarantine, pause, requeue, retry, cancel
    to_state: str
    attempts: int
    reason: str
    not_before: str | None = None
    delay_s: float = 0.0
    pause_until: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def action_for(verdict: str, retryable: bool | None) -> str:
    if verdict == "succeeded":
        return "succeed"
    if verdict in QUARANTINE_AT_ONCE:
        return "quarantine"
    if verdict == "usage_limited":
        return "pause"
    if verdict in NO_ATTEMPT:
        return "requeue"
    return "quarantine" if retryable is False else "retry"


def backoff_s(attempt: int, policy: Policy, rng: random.Random) -> float:
    """Full jitter: uniform in [0, min(cap, base * 2^(attempt-1))]."""
    ceiling = min(policy.RETRY_CAP_S, policy.RETRY_BASE_S * 2 ** max(0, attempt - 1))
    return rng.uniform(0.0, ceiling)


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def decide(
    v: Verdict, attempts: int, max_attempts: int, policy: Policy, now: float, rng: random.Random, canceled: bool = False
) -> Decision:
    """The item's next state after a session with verdict v; attempts is what it had used before."""
    action = action_for(v.verdict, v.retryable)
    if canceled and v.verdict == "interrupted":
        return Decision("cancel", "canceled", attempts, v.reason)
    if action == "succeed":
        return Decision(action, "succeeded", attempts + 1, v.reason)
    if action == "quarantine":
        return Decision(action, "quarantined", attempts + 1, v.reason)
    if action == "pause":
        resets = v.resets_at if v.resets_at and v.resets_at > now else now + policy.USAGE_PAUSE_S
        until = resets + rng.uniform(0.0, policy.PAUSE_JITTER_S)
        return Decision(action, "pending", attempts, v.reason, pause_until=round(until, 3))
    if action == "requeue":
        return Decision(action, "pending", attempts, v.reason)
    used = attempts + 1
    if used >= max_attempts:
        noun = "attempt" if used == 1 else "attempts"
        return Decision("quarantine", "quarantined", used, f"{v.reason} (gave up after {used} {noun})")
    delay = backoff_s(used, policy, rng)
    return Decision(action, "pending", used, v.reason, not_before=iso(now + delay), delay_s=round(delay, 3))
