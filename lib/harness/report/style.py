"""How reports show things to a person: colour, escaped session text, short forms
of text, times and durations."""

from __future__ import annotations

import os
import re
import sys
import unicodedata
from datetime import UTC, datetime
from typing import Any, TextIO, TypeVar, cast

from harness import jsonio
from harness.pipeline import verdicts

# Text taken from a session (the model's words, tool inputs and results, titles,
# reasons) may hold characters that drive a terminal or disguise what a person
# reads: C0 controls but \n and \t, DEL and C1 (category Cc), format characters
# such as bidi overrides and zero-width ones (Cf), line and paragraph separators
# (Zl, Zp) and lone surrogates (Cs). visible() shows each as an escape.
HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs"})
_MAYBE_HIDDEN_RE = re.compile(r"[^\t\n\x20-\x7e]+")
_T = TypeVar("_T")


def _escape(ch: str) -> str:
    if unicodedata.category(ch) not in HIDDEN_CATEGORIES:
        return ch
    n = ord(ch)
    return f"\\x{n:02x}" if n < 0x100 else f"\\u{n:04x}" if n < 0x10000 else f"\\U{n:08x}"


def visible(text: str) -> str:
    """text with each control or format character written as an escape: ESC as
    \\x1b, U+202E as \\u202e; newlines, tabs and printable characters unchanged."""
    return _MAYBE_HIDDEN_RE.sub(lambda m: "".join(map(_escape, m.group())), text)


def visible_tree(value: _T) -> _T:
    """value (a JSON-like tree) with visible() applied to every string in it, keys included."""
    if isinstance(value, str):
        return cast(_T, visible(value))
    if isinstance(value, dict):
        return cast(_T, {visible_tree(k): visible_tree(v) for k, v in value.items()})
    if isinstance(value, list):
        return cast(_T, [visible_tree(v) for v in value])
    return value


class Style:
    """ANSI colour on a terminal, never with NO_COLOR or --no-color; and session
    text made visible (see visible()) when safe: by default on a terminal."""

    def __init__(self, out: TextIO, enabled: bool | None = None, safe: bool | None = None) -> None:
        if enabled is None:
            enabled = out.isatty() and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb"
        self.on = enabled
        self.safe = out.isatty() if safe is None else safe

    def text(self, t: str) -> str:
        """Session text as it may be shown: escaped when safe, else as it is."""
        return visible(t) if self.safe else t

    def clean(self, value: _T) -> _T:
        """A tree of session data (an event, metrics, meta) as it may be shown."""
        return visible_tree(value) if self.safe else value

    def _wrap(self, code: str, text: str) -> str:
        return f"\033[{code}m{text}\033[0m" if self.on else text

    def bold(self, t: str) -> str:
        return self._wrap("1", t)

    def dim(self, t: str) -> str:
        return self._wrap("2", t)

    def red(self, t: str) -> str:
        return self._wrap("31", t)

    def green(self, t: str) -> str:
        return self._wrap("32", t)

    def yellow(self, t: str) -> str:
        return self._wrap("33", t)

    def cyan(self, t: str) -> str:
        return self._wrap("36", t)

    def verdict(self, v: str) -> str:
        """A verdict in its colour from the verdict table; a live or ended session's
        status in cyan; anything else in red."""
        row = verdicts.TABLE.get(v)
        if row is not None:
            return {verdicts.Colour.GREEN: self.green, verdicts.Colour.YELLOW: self.yellow}.get(row.colour, self.red)(v)
        return self.cyan(v) if v.startswith("live") or v == "ended" else self.red(v)


def clip(text: Any, width: int) -> str:
    s = " ".join(str(text if text is not None else "").split())
    return s if len(s) <= width else s[: width - 1] + "…"


def iso(epoch: Any) -> str:
    if not isinstance(epoch, (int, float)) or epoch <= 0:
        return "?"
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S")


def secs(value: Any) -> str:
    if not isinstance(value, (int, float)):
        return "?"
    if value >= 3600:
        return f"{value / 3600:.1f}h"
    if value >= 60:
        return f"{value / 60:.1f}m"
    return f"{value:.1f}s"


def out_json(value: Any) -> None:
    sys.stdout.buffer.write(jsonio.dumps(value, pretty=True) + b"\n")


