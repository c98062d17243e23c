"""`export <id>`: a session as a readable markdown transcript.

Everything is written through one function, which applies Style.text(): session
text escaped on a terminal (or with --safe), the bytes as they are in a file or a
pipe (or with --raw). Turns are numbered as report.turn_id counts them.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TextIO

from harness import jsonio
from harness.report.session_report import SYNTHETIC_MODEL, Style, current_metrics, turn_id
from harness.report.sessions import Session
from harness.stream.jsonl import iter_events, obj

MAX_PROMPT_CHARS = 20_000
MAX_RESULT_CHARS = 4_000


def fence(text: str, lang: str = "") -> str:
    """A code block whose fence is longer than any run of backticks inside it."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    ticks = "`" * max(3, longest + 1)
    return f"{ticks}{lang}\n{text.rstrip()}\n{ticks}\n"


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + f"\n… ({len(text) - limit:,} more characters)"


Write = Callable[[str], Any]


def export(s: Session, out: TextIO, st: Style) -> int:
    def w(text: str) -> None:
        out.write(st.text(text))

    _header(s, current_metrics(s), w)
    try:
        prompt = s.file("input.txt").read_bytes().decode("utf-8", "replace")
    except FileNotFoundError:
        prompt = ""
    w("\n## Prompt\n\n" + fence(_cut(prompt, MAX_PROMPT_CHARS), "text"))
    w("\n## Transcript\n")
    turns: set[str] = set()
    for ev in iter_events(s.file("events.jsonl")):
        _event(ev, turns, w)
    return 0


def _header(s: Session, m: dict[str, Any], w: Write) -> None:
    w(f"# Session {s.id}\n\n")
    w(f"- **Item:** {s.meta.get('item_id')} (attempt {s.meta.get('attempt')}): {s.meta.get('title') or ''}\n")
    w(f"- **Verdict:** {m.get('verdict')}: {m.get('reason')}\n")
    w(f"- **Model:** {m.get('model')}\n- **Started:** {s.meta.get('started_at')} · wall {m.get('wall_s')} s\n")
    t = m.get("tokens") or {}
    w(f"- **Turns:** {m.get('turns')} · **cost:** ${m.get('cost_usd') or 0:.4f}"
      f"{' (estimated)' if m.get('cost_estimated') else ''} · **tokens:** in {t.get('input', 0)}, "
      f"out {t.get('output', 0)}, cache read {t.get('cache_read', 0)}, cache write {t.get('cache_write', 0)}\n")
    if s.meta.get("branch"):
        w(f"- **Branch:** {s.meta['branch']}\n")


def _heading(ev: dict[str, Any], turns: set[str], w: Write) -> None:
    """"### Turn N" when ev is a turn not seen yet; the CLI's own messages are no turn."""
    mid = turn_id(ev)
    if mid and mid not in turns:
        turns.add(mid)
        w(f"\n### Turn {len(turns)}\n\n")
    elif not mid and obj(ev.get("message")).get("model") == SYNTHETIC_MODEL:
        w("\n### From the CLI (not a turn of the model)\n\n")


def _event(ev: dict[str, Any], turns: set[str], w: Write) -> None:
    etype = ev.get("type")
    msg = obj(ev.get("message"))
    if etype == "assistant":
        _heading(ev, turns, w)
        for b in msg.get("content") or []:
            if not isinstance(b, dict):
                continue
            if b.get("type") == "text":
                w(str(b.get("text") or "").rstrip() + "\n\n")
            elif b.get("type") == "tool_use":
                w(f"**Tool call: {b.get('name')}** (`{b.get('id')}`)\n\n")
                w(fence(jsonio.dumps(b.get("input"), pretty=True).decode(), "json") + "\n")
    elif etype == "user" and isinstance(msg.get("content"), list):
        for b in msg["content"]:
            if isinstance(b, dict) and b.get("type") == "tool_result":
                body = b.get("content")
                if isinstance(body, list):
                    body = "\n".join(str(c.get("text", "")) for c in body if isinstance(c, dict))
                w(f"**Result{' (error)' if b.get('is_error') else ''}:**\n\n")
                w(fence(_cut(str(body or ""), MAX_RESULT_CHARS), "text") + "\n")
    elif etype == "system" and ev.get("subtype") == "api_retry":
        w(f"> API retry {ev.get('attempt')}: {ev.get('error_status') or 'connection'} {ev.get('error') or ''}\n\n")
    elif etype == "system" and ev.get("subtype") == "compact_boundary":
        w("> The context was compacted here.\n\n")
    elif etype == "result":
        w(f"\n## Result: {ev.get('subtype')}{' (error)' if ev.get('is_error') else ''}\n\n")
        if ev.get("result"):
            w(str(ev.get("result")).rstrip() + "\n")
