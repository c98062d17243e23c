"""``python -m harness <command> ...``: the helpers' command line (cli/)."""

from __future__ import annotations

import sys

from harness.cli import main, parser

__all__ = ["main", "parser"]

if __name__ == "__main__":
    sys.exit(main())
