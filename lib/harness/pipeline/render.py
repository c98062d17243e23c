"""Bootstrap prompt rendering: {{NAME}} placeholders, replaced in one pass.

A value is never scanned again, so a title that holds "{{SESSION_ID}}" stays
literal. Unknown placeholders are left as they are.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from harness import jsonio

PLACEHOLDER_RE = re.compile(r"\{\{([A-Z][A-Z0-9_]*)\}\}")
KNOWN = ("SESSION_ID", "WORK_ITEM_ID", "TITLE", "PROMPT", "ATTEMPT", "PREVIOUS_ERROR", "WORKTREE", "BRANCH")


def render(template: str, values: dict[str, str]) -> str:
    return PLACEHOLDER_RE.sub(lambda m: values.get(m.group(1), m.group(0)), template)


def prepare(item: dict[str, Any], template_path: Path, out_dir: Path, extra: dict[str, str]) -> None:
    """Writes out_dir/prompt.md (the rendered bootstrap) and out_dir/input.txt (the
    item's prompt, byte for byte, for the agent's stdin)."""
    history = item.get("history") or []
    previous = ""
    if history:
        last = history[-1]
        previous = f"{last.get('verdict', '')}: {last.get('reason', '')}".strip(": ")
    values = {
        "WORK_ITEM_ID": str(item.get("id", "")),
        "TITLE": str(item.get("title", "")),
        "PROMPT": str(item.get("prompt", "")),
        "ATTEMPT": str(int(item.get("attempts", 0)) + 1),
        "PREVIOUS_ERROR": previous or "none",
    }
    values.update(extra)
    template = template_path.read_text(encoding="utf-8")
    jsonio.write_atomic(out_dir / "prompt.md", render(template, values).encode("utf-8", "surrogatepass"))
    jsonio.write_atomic(out_dir / "input.txt", str(item.get("prompt", "")).encode("utf-8", "surrogatepass"))
