"""Session text on a terminal: control and format characters are shown, never obeyed;
the bytes stay as they are in a pipe or a file and with --raw."""

from __future__ import annotations

import io
from pathlib import Path

import orjson
import pytest
from harness.report import export, style, watch
from harness.report import session_report as report
from harness.report.sessions import Session
from harness.report.style import Style, visible, visible_tree

HOSTILE = "ok \u202eevil\u202c \x1b[2J\x1b]0;title\x07 zero\u200bwidth \ufeff\x7f\x9b\r."


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("plain text, tabs\tand\nnewlines stay", "plain text, tabs\tand\nnewlines stay"),
        ("é 中文 emoji 🎉 nbsp\u00a0", "é 中文 emoji 🎉 nbsp\u00a0"),
        ("\x1b[31mred", "\\x1b[31mred"),
        ("\x00\x08\x0b\x0c\r\x1f\x7f", "\\x00\\x08\\x0b\\x0c\\x0d\\x1f\\x7f"),
        ("\x80\x85\x9b\x9f", "\\x80\\x85\\x9b\\x9f"),
        ("a\u202eb\u202ac\u2066d\u2069", "a\\u202eb\\u202ac\\u2066d\\u2069"),
        ("\u200b\u200c\u200d\u200e\u200f\ufeff\u00ad\u2060", "\\u200b\\u200c\\u200d\\u200e\\u200f\\ufeff\\xad\\u2060"),
        ("line\u2028para\u2029", "line\\u2028para\\u2029"),
        ("tag \U000e0041\U000e007f", "tag \\U000e0041\\U000e007f"),
    ],
)
def test_visible_escapes_control_and_format_characters_only(raw: str, shown: str) -> None:
    assert visible(raw) == shown


def test_visible_leaves_no_hidden_character_in_any_code_point() -> None:
    import unicodedata

    every = "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF)
    out = visible(every)
    left = {ch for ch in out if unicodedata.category(ch) in style.HIDDEN_CATEGORIES} - {"\n", "\t"}
    assert not left


def test_visible_tree_escapes_keys_and_values_and_keeps_other_types() -> None:
    tree = {"a\u202e": ["x\x1b", 1, None, {"k": "\u200b"}], "n": 2.5, "b": True}
    assert visible_tree(tree) == {"a\\u202e": ["x\\x1b", 1, None, {"k": "\\u200b"}], "n": 2.5, "b": True}


def test_style_escapes_on_a_terminal_or_when_asked_never_when_raw() -> None:
    assert Style(Tty()).text(HOSTILE) == visible(HOSTILE)
    assert Style(io.StringIO()).text(HOSTILE) == HOSTILE
    assert Style(io.StringIO(), safe=True).clean({"t": HOSTILE}) == {"t": visible(HOSTILE)}
    assert Style(Tty(), safe=False).text(HOSTILE) == HOSTILE


def _session(tmp_path: Path, text: str) -> Session:
    d = tmp_path / "ses_hostile"
    d.mkdir()
    events = [
        {"type": "system", "subtype": "init", "model": "claude-x", "cwd": "/w"},
        {"type": "assistant", "message": {"id": "msg_1", "model": "claude-x", "content": [
            {"type": "text", "text": text},
            {"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {"command": text}}]}},
        {"type": "user", "message": {"content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": text}]}},
        {"type": "result", "subtype": "success", "num_turns": 1, "result": text, "total_cost_usd": 0.01},
    ]
    (d / "events.jsonl").write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in events))
    (d / "input.txt").write_text(text)
    (d / "exit_code").write_text("0\n")
    (d / "metrics.json").write_bytes(orjson.dumps({"session_id": d.name, "verdict": "succeeded", "reason": text}))
    return Session(d, {"item_id": "x", "title": text})


@pytest.mark.parametrize("safe", [True, False])
def test_watch_and_export_show_hostile_text_escaped_or_as_it_is(tmp_path: Path, safe: bool) -> None:
    s = _session(tmp_path, HOSTILE)
    for run in (lambda out, st: watch.watch(s, st, False, out), lambda out, st: export.export(s, out, st)):
        out = io.StringIO()
        run(out, Style(out, False, safe))
        text = out.getvalue()
        if safe:
            assert "\\u202eevil" in text and "\\x1b[2J" in text
            assert not any(ch in text for ch in "\u202e\u202c\x1b\x07\u200b\ufeff\x7f\x9b\r")
        else:
            assert "\u202eevil" in text and "\x1b[2J" in text


def test_summary_escapes_the_title_reason_and_last_text(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    s = _session(tmp_path, HOSTILE)
    report.cmd_summary(s, Style(io.StringIO(), False, True))
    out = capsys.readouterr().out
    assert out.count("\\u202eevil") >= 3  # the title, the reason, the last text
    assert "\u202e" not in out and "\x1b" not in out
