"""`watch <id>`: a session's events as they arrive, rendered for a person (or --raw).

Follows events.jsonl by (inode, offset), woken by inotify (watchdog) or, without
it, by a short poll; ends when the session has ended and its file is read to the
end, then prints the receipt once the loop has written it. The inotify observer
starts only once the file is read to its end and the session is still live: an
ended session is read and left without it.

A "turn N" header marks each turn (report.turn_id); the result row counts them.
Session text is shown as report.Style.clean() makes it (escaped on a terminal).
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

from harness import jsonio
from harness.pipeline import receipt
from harness.report.session_report import Style, clip, secs, turn_id
from harness.report.sessions import Session
from harness.sidecar import proc_start
from harness.sidecar.live import tool_summary
from harness.stream.jsonl import obj, parse_line
from harness.stream.tailer import Tailer
from harness.stream.waker import Waker

POLL_S = 0.05
RECEIPT_WAIT_S = 5.0


class Renderer:
    def __init__(self, out: TextIO, st: Style, raw: bool) -> None:
        self.out, self.st, self.raw = out, st, raw
        self.col = 0  # characters written on the current line
        self.turns: set[str] = set()  # message ids of the turns seen (report.turn_id)
        self.streamed: set[str] = set()  # messages whose text arrived as deltas
        self.current = ""
        self.names: dict[str, str] = {}

    def write(self, text: str) -> None:
        if not text:
            return
        self.out.write(text)
        nl = text.rfind("\n")
        self.col = len(text) - nl - 1 if nl >= 0 else self.col + len(text)

    def newline(self) -> None:
        if self.col:
            self.write("\n")

    def say(self, text: str) -> None:
        self.newline()
        self.write(text + "\n")

    def line(self, raw_line: bytes) -> None:
        if self.raw:
            self.out.write(raw_line.decode("utf-8", "replace") + "\n")
            return
        ev = parse_line(raw_line)
        if ev is None:
            self.say(self.st.dim(f"? a line that is not JSON ({len(raw_line)} bytes)"))
            return
        ev = self.st.clean(ev)
        self._turn(ev)
        etype = ev.get("type")
        handler = {
            "stream_event": self._stream,
            "assistant": self._assistant,
            "user": self._user,
            "system": self._system,
            "result": self._result,
            "rate_limit_event": self._rate_limit,
        }.get(str(etype))
        if handler is not None:
            handler(ev)

    def _turn(self, ev: dict[str, Any]) -> None:
        """A header when ev starts a turn not seen yet."""
        mid = turn_id(ev)
        if not mid or mid in self.turns:
            return
        self.turns.add(mid)
        sub = " (subagent)" if ev.get("parent_tool_use_id") else ""
        self.say(self.st.dim(f"── turn {len(self.turns)}{sub} ──"))

    def _stream(self, ev: dict[str, Any]) -> None:
        inner = obj(ev.get("event"))
        itype = inner.get("type")
        if itype == "message_start":
            self.current = str(obj(inner.get("message")).get("id") or "")
        elif itype == "content_block_delta":
            delta = obj(inner.get("delta"))
            if delta.get("type") == "text_delta":
                self.streamed.add(self.current)
                self.write(str(delta.get("text") or ""))
            elif delta.get("type") == "thinking_delta":
                self.write(self.st.dim(str(delta.get("thinking") or "")))
        elif itype == "content_block_stop":
            self.newline()

    def _assistant(self, ev: dict[str, Any]) -> None:
        msg = obj(ev.get("message"))
        mid = str(msg.get("id") or "")
        for b in msg.get("content") or []:
            if not isinstance(b, dict):
                continue
            if b.get("type") == "text" and mid not in self.streamed:
                self.say(str(b.get("text") or ""))
            elif b.get("type") == "tool_use":
                name = str(b.get("name") or "?")
                self.names[str(b.get("id"))] = name
                self.say(f"{self.st.cyan('▶ ' + name)}  {clip(tool_summary(name, b.get('input')), 100)}")

    def _user(self, ev: dict[str, Any]) -> None:
        msg = obj(ev.get("message"))
        content = msg.get("content")
        if not isinstance(content, list):
            return
        for b in content:
            if not isinstance(b, dict) or b.get("type") != "tool_result":
                continue
            body = b.get("content")
            if isinstance(body, list):
                body = " ".join(str(c.get("text", "")) for c in body if isinstance(c, dict))
            text = str(body or "")
            lines = text.strip().splitlines()
            first = clip(lines[0], 90) if lines else ""
            more = f" (+{len(lines) - 1} lines)" if len(lines) > 1 else ""
            if b.get("is_error"):
                self.say(f"  {self.st.red('✗ error')} {first}{more}")
            else:
                self.say(f"  {self.st.green('✓')} {first}{more}")

    def _system(self, ev: dict[str, Any]) -> None:
        sub = ev.get("subtype")
        if sub == "init":
            self.say(self.st.dim(f"● session {ev.get('session_id')} · model {ev.get('model')} · {ev.get('cwd')}"))
        elif sub == "api_retry":
            self.say(self.st.yellow(f"! API retry {ev.get('attempt')}/{ev.get('max_retries')}: "
                                    f"{ev.get('error_status') or 'connection'} {ev.get('error') or ''} "
                                    f"(next in {secs((ev.get('retry_delay_ms') or 0) / 1000)})"))
        elif sub == "compact_boundary":
            self.say(self.st.dim("… context compacted"))
        elif sub == "task_started":
            self.say(self.st.dim(f"  … {ev.get('description') or 'tool'} running"))

    def _result(self, ev: dict[str, Any]) -> None:
        cost = ev.get("total_cost_usd")
        dur = ev.get("duration_ms")
        text = f"■ {ev.get('subtype')}" + (" (error)" if ev.get("is_error") else "")
        text += f" · {len(self.turns)} turns"
        if isinstance(cost, (int, float)):
            text += f" · ${cost:.4f}"
        if isinstance(dur, (int, float)):
            text += f" · {secs(dur / 1000)}"
        self.say(self.st.bold(text))
        if ev.get("is_error") and ev.get("result"):
            self.say(self.st.red(clip(ev.get("result"), 200)))

    def _rate_limit(self, ev: dict[str, Any]) -> None:
        info = obj(ev.get("rate_limit_info"))
        if info.get("status") != "allowed":
            self.say(self.st.yellow(f"! rate limit {info.get('status')} ({info.get('rateLimitType')})"))


def _ended(s: Session) -> bool:
    if s.file("exit_code").exists() or s.file("metrics.json").exists() or s.file("spawn_error").exists():
        return True
    try:
        pid, start = s.file("wrapper.pid").read_text().split()[:2]
    except (OSError, ValueError):
        return False
    return proc_start(int(pid)) != start


def _follow(s: Session, r: Renderer, tailer: Tailer, out: TextIO) -> None:
    """Renders the session's lines until it has ended and its file is read to the end."""
    waker: Waker | None = None
    watched = False
    try:
        while True:
            lines = tailer.read()
            for line in lines:
                r.line(line)
            out.flush()
            if lines:
                continue
            if _ended(s):
                for line in tailer.read() + tailer.flush():
                    r.line(line)
                return
            if waker is None:
                # live: from now on, woken by changes; the file is read once more
                # first, so that a write before the watch began is not waited for
                waker = Waker()
                watched = waker.watch("session", str(s.dir), ("events.jsonl", "exit_code"))
                continue
            waker.wait(1.0 if watched else POLL_S)
    finally:
        if waker is not None:
            waker.close()


def _receipt(s: Session, r: Renderer, st: Style) -> None:
    r.newline()
    deadline = time.monotonic() + RECEIPT_WAIT_S
    while not s.file("metrics.json").exists() and time.monotonic() < deadline:
        time.sleep(POLL_S)  # the loop writes it soon after the end; no event says when
    try:
        r.say(st.bold("receipt: ") + st.text(receipt.line(jsonio.read_json(s.file("metrics.json")))))
    except (OSError, ValueError):
        r.say(st.dim("(the session has ended; no receipt yet: is the loop running?)"))


def watch(s: Session, st: Style, raw: bool, out: TextIO = sys.stdout) -> int:
    r = Renderer(out, st, raw)
    tailer = Tailer(s.file("events.jsonl"))
    try:
        _follow(s, r, tailer, out)
    finally:
        tailer.close()
    if not raw:
        _receipt(s, r, st)
    out.flush()
    return 0
