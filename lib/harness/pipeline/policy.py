"""What happens to an item after a verdict.

The action each verdict takes (succeed, quarantine, retry, requeue, pause) and
whether it costs an attempt are rows of the verdict table (verdicts.py); this
module turns them into the item's next state: retries wait
min(RETRY_CAP_S, RETRY_BASE_S * 2^(n-1)) with full jitter and end in quarantine once
the item has used max_attempts; a pause lasts until the usage limit's reset plus
jitter (pause.json). The circuit breaker (breaker.py) sees every verdict as well.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from harness import config
from harness.pipeline import verdicts

if TYPE_CHECKING:
    from harness.pipeline.verdict import Verdict



@dataclass
class Policy:
    """The configuration keys the helpers read: those of scope "helpers" in
    lib/config.schema, with the schema's defaults (a test keeps the two sets equal)."""

    MAX_ATTEMPTS: int = config.default("MAX_ATTEMPTS")
    RETRY_BASE_S: float = config.default("RETRY_BASE_S")
    RETRY_CAP_S: float = config.default("RETRY_CAP_S")
    USAGE_PAUSE_S: float = config.default("USAGE_PAUSE_S")
    PAUSE_JITTER_S: float = config.default("PAUSE_JITTER_S")
    CIRCUIT_FAILURES: int = config.default("CIRCUIT_FAILURES")
    CIRCUIT_WINDOW: int = config.default("CIRCUIT_WINDOW")
    CIRCUIT_FAILURE_RATE: float = config.default("CIRCUIT_FAILURE_RATE")
    CIRCUIT_OPEN_S: float = config.default("CIRCUIT_OPEN_S")
    CIRCUIT_OPEN_CAP_S: float = config.default("CIRCUIT_OPEN_CAP_S")
    CIRCUIT_STORM_RETRIES: int = config.default("CIRCUIT_STORM_RETRIES")
    MIN_FREE_MB: float = config.default("MIN_FREE_MB")
    MAX_LOAD: float = config.default("MAX_LOAD")
    MIN_FREE_MEM_MB: float = config.default("MIN_FREE_MEM_MB")
    AGING_S: float = config.default("AGING_S")
    BUDGET_USD_PER_DAY: float = config.default("BUDGET_USD_PER_DAY")
    STOP_AT_UTILIZATION: float = config.default("STOP_AT_UTILIZATION")
    BURN_USD: float = config.default("BURN_USD")
    BURN_TOKENS: int = config.default("BURN_TOKENS")
    BURN_TURNS: int = config.default("BURN_TURNS")
    JOBS: int = config.default("JOBS")
    JOBS_MIN: int = config.default("JOBS_MIN")
    JOBS_MAX: int = config.default("JOBS_MAX")
    GOVERNOR_STEP_S: float = config.default("GOVERNOR_STEP_S")
    GOVERNOR_WINDOW_S: float = config.default("GOVERNOR_WINDOW_S")
    GOVERNOR_STORM_SHARE: float = config.default("GOVERNOR_STORM_SHARE")
    # what a session is spawned with (start.py)
    CLAUDE_BIN: str = config.default("CLAUDE_BIN")
    BOOTSTRAP: str = config.default("BOOTSTRAP")
    FIX_PROMPT: str = config.default("FIX_PROMPT")
    MAX_TURNS: int = config.default("MAX_TURNS")
    MAX_BUDGET_USD: float = config.default("MAX_BUDGET_USD")
    MODEL: str = config.default("MODEL")
    ALLOWED_TOOLS: str = config.default("ALLOWED_TOOLS")
    PERMISSION_MODE: str = config.default("PERMISSION_MODE")
    SKIP_PERMISSIONS: str = config.default("SKIP_PERMISSIONS")
    SANDBOX: str = config.default("SANDBOX")
    REPO_DIR: str = config.default("REPO_DIR")
    BASE_REF: str = config.default("BASE_REF")
    SESSION_TIMEOUT_S: float = config.default("SESSION_TIMEOUT_S")
    KILL_GRACE_S: float = config.default("KILL_GRACE_S")
    VERIFY_CMD: str = config.default("VERIFY_CMD")
    VERIFY_TIMEOUT_S: float = config.default("VERIFY_TIMEOUT_S")
    FIX_ROUNDS: int = config.default("FIX_ROUNDS")
    INTEGRATE: str = config.default("INTEGRATE")
    TARGET_BRANCH: str = config.default("TARGET_BRANCH")
    PUSH_REMOTE: str = config.default("PUSH_REMOTE")

    @classmethod
    def from_pairs(cls, pairs: list[str] | None) -> Policy:
        """KEY=VALUE strings (the loop passes its resolved configuration: the keys of
        scope "helpers"); a key the schema does not know, or one the helpers do not
        read, is an error (config.UnknownKeyError), never silently dropped."""
        known = {f.name for f in fields(cls)}
        values: dict[str, Any] = {}
        for pair in pairs or []:
            key, _, value = pair.partition("=")
            if key not in known:
                config.key(key)  # unknown to the schema: raises
                raise config.UnknownKeyError(f"configuration key {key} is not one the helpers read (scope loop)")
            values[key] = config.convert(key, value)
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
    v: Verdict, attempts: int, max_attempts: int, policy: Policy, now: float, rng: random.Random, canceled: bool = False,
    fix_rounds: int = 0,
) -> Decision:
    """The item's next state after a session with verdict v; attempts is what it had
    used before, fix_rounds the fix rounds it had been given."""
    action = action_for(v.verdict, v.retryable)
    if canceled and v.verdict == "interrupted":
        return Decision("cancel", "canceled", attempts, v.reason)
    if action == "fix":
        if fix_rounds >= policy.FIX_ROUNDS:
            rounds = "no fix round" if policy.FIX_ROUNDS == 0 else f"{fix_rounds} fix round{'s' * (fix_rounds != 1)}"
            return Decision("quarantine", "quarantined", attempts, f"still failing after {rounds}: {v.reason}")
        return Decision("fix", "pending", attempts, v.reason, extra={"fix_round": fix_rounds + 1})
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
