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
# a fix round's prompt (bootstrap/fix.md) knows these too
FIX_KNOWN = ("VERIFY_CMD", "VERIFY_EXIT", "VERIFY_OUTPUT", "FIX_ROUND", "FIX_ROUNDS", "FIX_WHY", "FIX_HINT")


def render(template: str, values: dict[str, str]) -> str:
    return PLACEHOLDER_RE.sub(lambda m: values.get(m.group(1), m.group(0)), template)


def prepare(item: dict[str, Any], template_path: Path, out_dir: Path, extra: dict[str, str],
            fix_template: Path | None = None) -> None:
    """Writes out_dir/prompt.md (the rendered bootstrap) and out_dir/input.txt (the
    item's prompt, byte for byte, for the agent's stdin; for a fix round, the fix
    template rendered with the failure: extra holds its VERIFY_* and FIX_* values)."""
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
    stdin = str(item.get("prompt", ""))
    if fix_template is not None:
        stdin = render(fix_template.read_text(encoding="utf-8"), values)
    jsonio.write_atomic(out_dir / "input.txt", stdin.encode("utf-8", "surrogatepass"))
