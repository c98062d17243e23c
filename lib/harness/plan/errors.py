"""The planning errors: a refused plan or repository (exit 2, like every refused
request: the CLI maps QueueError), and a failed planning session (exit 1)."""

from __future__ import annotations

from harness.store.queue import QueueError


class PlanError(QueueError):
    """A refused plan: malformed, unknown dependencies, a cycle; one line for a person."""


class RepoError(PlanError):
    """The repository cannot be read (missing, not a directory)."""


class SessionError(Exception):
    """The planning session failed: the CLI could not run, the API failed, time ran out."""
