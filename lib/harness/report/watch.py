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
from collections.abc import Callable
from typing import Any, TextIO

from harness import jsonio
from harness.agents import agent_for
from harness.pipeline import receipt
from harness.report.session_report import turn_id
from harness.report.sessions import Session
from harness.report.style import Style, clip, secs
from harness.sidecar import proc_start
from harness.stream import events as norm
from harness.stream.calls import tool_summary
from harness.stream.jsonl import parse_line
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
        self.verify_said = self.verify_done = False
        self.agent = agent_for()
        self.handlers: dict[type, Callable[[Any], None]] = {
            norm.Turn: self._turn,
            norm.TextDelta: self._delta,
            norm.BlockEnd: lambda _ev: self.newline(),
            norm.Text: self._text,
            norm.ToolStart: self._tool_start,
            norm.ToolEnd: self._tool_end,
            norm.Init: self._init,
            norm.ApiRetry: self._retry,
            norm.Compaction: lambda _ev: self.say(self.st.dim("… context compacted")),
            norm.TaskStarted: lambda ev: self.say(self.st.dim(f"  … {ev.description or 'tool'} running")),
            norm.Result: self._result,
            norm.RateLimit: self._rate_limit,
        }

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
        raw = parse_line(raw_line)
        if raw is None:
            self.say(self.st.dim(f"? a line that is not JSON ({len(raw_line)} bytes)"))
            return
        for ev in self.agent.decode(self.st.clean(raw)):
            handler = self.handlers.get(type(ev))
            if handler is not None:
                handler(ev)

    def _turn(self, ev: norm.Turn) -> None:
        """A header when ev starts a turn not seen yet (report.turn_id)."""
        if ev.streamed:
            self.current = ev.message_id
        mid = turn_id(ev)
        if not mid or mid in self.turns:
            return
        self.turns.add(mid)
        self.say(self.st.dim(f"── turn {len(self.turns)}{' (subagent)' if ev.subagent else ''} ──"))

    def _delta(self, ev: norm.TextDelta) -> None:
        if ev.kind == "text":
            self.streamed.add(self.current)
            self.write(ev.text)
        elif ev.kind == "thinking":
            self.write(self.st.dim(ev.text))

    def _text(self, ev: norm.Text) -> None:
        if ev.message_id not in self.streamed:
            self.say(ev.text)

    def _tool_start(self, ev: norm.ToolStart) -> None:
        self.say(f"{self.st.cyan('▶ ' + ev.name)}  {clip(tool_summary(ev.input), 100)}")

    def _tool_end(self, ev: norm.ToolEnd) -> None:
        lines = ev.text.strip().splitlines()
        first = clip(lines[0], 90) if lines else ""
        more = f" (+{len(lines) - 1} lines)" if len(lines) > 1 else ""
        if ev.is_error:
            self.say(f"  {self.st.red('✗ error')} {first}{more}")
        else:
            self.say(f"  {self.st.green('✓')} {first}{more}")

    def _init(self, ev: norm.Init) -> None:
        self.say(self.st.dim(f"● session {ev.session_id} · model {ev.model} · {ev.cwd}"))

    def _retry(self, ev: norm.ApiRetry) -> None:
        self.say(self.st.yellow(f"! API retry {ev.attempt}/{ev.max_retries}: {ev.status} {ev.error} "
                                f"(next in {secs(ev.delay_s)})"))

    def _result(self, ev: norm.Result) -> None:
        text = f"■ {ev.subtype}" + (" (error)" if ev.is_error else "")
        text += f" · {len(self.turns)} turns"
        if ev.cost_usd is not None:
            text += f" · ${ev.cost_usd:.4f}"
        if isinstance(ev.duration_ms, (int, float)):
            text += f" · {secs(ev.duration_ms / 1000)}"
        self.say(self.st.bold(text))
        if ev.is_error and ev.text:
            self.say(self.st.red(clip(ev.text, 200)))

    def verify(self, s: Session, ended: bool) -> None:
        """The verify command, once it has begun (its line), and once it has ended (how)."""
        began = self.verify_said or s.file("verify.pid").exists()
        if began and not self.verify_said:
            cmd = str((s.meta.get("verify") or {}).get("cmd") or "")
            self.say(self.st.dim(f"… verifying: {clip(self.st.text(cmd), 100)}"))
            self.verify_said = True
        if not (ended and began) or self.verify_done:
            return
        self.verify_done = True
        try:
            code = int(s.file("verify_exit").read_text().strip())
        except (OSError, ValueError):
            self.say(self.st.red("✗ verify did not finish"))
            return
        if code == 0:
            self.say(self.st.green("✓ verified"))
        else:
            self.say(self.st.red(f"✗ verify failed (exit {code}); its output: {s.file('verify.log')}"))

    def _rate_limit(self, ev: norm.RateLimit) -> None:
        if ev.status != "allowed":
            self.say(self.st.yellow(f"! rate limit {ev.status} ({ev.kind})"))


def ended(s: Session) -> bool:
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
            if ended(s):
                for line in tailer.read() + tailer.flush():
                    r.line(line)
                r.verify(s, ended=True)
                return
            r.verify(s, ended=False)
            if waker is None:
                # live: from now on, woken by changes; the file is read once more
                # first, so that a write before the watch began is not waited for
                waker = Waker()
                watched = waker.watch("session", str(s.dir), ("events.jsonl", "exit_code", "verify.pid"))
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
