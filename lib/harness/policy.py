"""What happens to an item after a verdict.

The action each verdict takes (succeed, quarantine, retry, requeue, pause) and
whether it costs an attempt are rows of the verdict table (verdicts.py); this
module turns them into the item's next state: retries wait
min(RETRY_CAP_S, RETRY_BASE_S * 2^(n-1)) with full jitter and end in quarantine once
the item has used max_attempts; a pause lasts until the usage limit's reset plus
jitter (pause.json). The circuit breaker (circuit.py) sees every verdict as well.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from . import verdicts

if TYPE_CHECKING:
    from .verdict import Verdict



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
    """The verdict table's action (verdicts.py); a retry that cannot help is a quarantine."""
    return str(verdicts.action(verdict, retryable))


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
