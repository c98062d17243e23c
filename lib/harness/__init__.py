"""Monitoring helpers of the Claude Code harness: queue items, prompt rendering,
stream-json parsing, verdicts and receipts. Run as ``python -m harness``."""

from __future__ import annotations

__version__ = "0.1.0"
