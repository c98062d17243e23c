"""Rewrites the generated tables in docs/ from their one source (`make docs`):
docs/configuration.md from lib/config.schema, docs/verdicts.md from verdicts.py.
Tests fail while a table differs from its source."""

from __future__ import annotations

import re
import sys

from harness import config
from harness.pipeline import verdicts

DOCS = config.ROOT / "docs"
BLOCKS = {
    "configuration.md": ("<!-- config-table: generated from lib/config.schema -->\n", "<!-- /config-table -->",
                         config.markdown),
    "verdicts.md": ("<!-- verdict-table: generated -->\n", "<!-- /verdict-table -->", verdicts.markdown),
}


def rewrite(name: str) -> bool:
    """True when the file changed."""
    start, end, make = BLOCKS[name]
    path = DOCS / name
    text = path.read_text(encoding="utf-8")
    new, n = re.subn(re.escape(start) + r".*?" + re.escape(end), lambda _m: start + make() + end, text, flags=re.S)
    if n != 1:
        raise SystemExit(f"harness: {path}: the generated block is missing")
    if new != text:
        path.write_text(new, encoding="utf-8")
    return new != text


def main() -> int:
    for name in BLOCKS:
        print(f"{'rewrote' if rewrite(name) else 'unchanged'}: docs/{name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
