"""The harness's Python side, which owns all data: the store (store/), the agent
and its stream (agents/, stream/), the sidecar (sidecar/), the pipeline a work item
goes through (pipeline/), the reports (report/), the loop's helper (serve/) and the
command line (cli/). Run as ``python -m harness``; docs/development.md maps it."""

from __future__ import annotations

__version__ = "0.1.0"
