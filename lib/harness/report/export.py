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
from harness.report.session_report import current_metrics, session_events, turn_id
from harness.report.sessions import Session
from harness.report.style import Style
from harness.stream import events as norm

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
    for ev in session_events(s):
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


def _heading(ev: norm.Turn, turns: set[str], w: Write) -> None:
    """"### Turn N" when ev is a turn not seen yet; the CLI's own messages are no turn."""
    mid = turn_id(ev)
    if mid and mid not in turns:
        turns.add(mid)
        w(f"\n### Turn {len(turns)}\n\n")
    elif not mid and ev.synthetic:
        w("\n### From the CLI (not a turn of the model)\n\n")


def _event(ev: norm.Event, turns: set[str], w: Write) -> None:
    if isinstance(ev, norm.Turn) and not ev.streamed:
        _heading(ev, turns, w)
    elif isinstance(ev, norm.Text):
        w(ev.text.rstrip() + "\n\n")
    elif isinstance(ev, norm.ToolStart):
        w(f"**Tool call: {ev.name}** (`{ev.tool_id}`)\n\n")
        w(fence(jsonio.dumps(ev.input, pretty=True).decode(), "json") + "\n")
    elif isinstance(ev, norm.ToolEnd):
        w(f"**Result{' (error)' if ev.is_error else ''}:**\n\n")
        w(fence(_cut(ev.text, MAX_RESULT_CHARS), "text") + "\n")
    elif isinstance(ev, norm.ApiRetry):
        w(f"> API retry {ev.attempt}: {ev.status} {ev.error}\n\n")
    elif isinstance(ev, norm.Compaction):
        w("> The context was compacted here.\n\n")
    elif isinstance(ev, norm.Result):
        w(f"\n## Result: {ev.subtype}{' (error)' if ev.is_error else ''}\n\n")
        if ev.text:
            w(ev.text.rstrip() + "\n")
