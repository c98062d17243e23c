"""The planning session: the real CLI, read-only, asked for a plan through --json-schema.

    claude -p --output-format stream-json --verbose --session-id <uuid>
      --json-schema <model.SCHEMA> --tools Read,Grep,Glob --allowedTools Read,Grep,Glob
      --permission-mode dontAsk --append-system-prompt-file bootstrap/plan.md
      [--max-turns N] [--max-budget-usd X] [--model M]

runs in the repository with the goal on stdin. `--tools` leaves the model nothing
but the three reading tools (no Bash, no Write, no Edit); `dontAsk` denies anything
else outright. (`--permission-mode plan` is not used: it tells the model to write
its plan to a file with Write.)

How the answer comes back (Claude Code 2.1.197 and 2.1.332 alike, seen against
tests/fakeapi): the CLI offers the model a tool `StructuredOutput` whose input
schema is the --json-schema; the model calls it, the CLI checks the input against
the schema and either answers the call with an error ("Output does not match
required schema: /items/1: must have required property 'prompt'") or ends the
session, its result line carrying the input as `structured_output` (and as JSON
text in `result`). A model that does not call it is told once to, then the result
has no `structured_output`. The session's stream, prompt and stderr stay in the
plan's directory (state/plans/<run>/).
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import subprocess
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from harness import jsonio
from harness.agents import agent_for
from harness.plan import model
from harness.plan.errors import SessionError
from harness.stream import events as norm
from harness.stream.calls import tool_summary

READ_ONLY_TOOLS = "Read,Grep,Glob"
STRUCTURED_TOOL = "StructuredOutput"  # the tool Claude Code offers for --json-schema
STRUCTURED_KEY = "structured_output"  # where its result line carries the answer
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGKILL)  # the CLI writes its result on SIGINT


@dataclass(frozen=True)
class Settings:
    binary: str
    bootstrap: Path
    model: str = ""
    max_turns: int = 0  # 0: the CLI's own
    max_budget_usd: float = 0.0  # 0: none
    timeout_s: float = 3600.0
    kill_grace_s: float = 10.0


@dataclass
class Outcome:
    """What the session gave: the answer (None: no structured answer), and why not."""

    answer: Any = None
    session_id: str = ""
    cost_usd: float | None = None
    schema_error: str = ""  # the CLI's last refusal of an answer that did not fit the schema
    last_words: str = ""  # the model's last text


def argv(s: Settings, session_uuid: str) -> list[str]:
    out = [s.binary, "-p", "--output-format", "stream-json", "--verbose", "--session-id", session_uuid,
           "--json-schema", json.dumps(model.SCHEMA, separators=(",", ":")),
           "--tools", READ_ONLY_TOOLS, "--allowedTools", READ_ONLY_TOOLS, "--permission-mode", "dontAsk",
           "--append-system-prompt-file", str(s.bootstrap)]
    if s.max_turns:
        out += ["--max-turns", str(s.max_turns)]
    if s.max_budget_usd:
        out += ["--max-budget-usd", f"{s.max_budget_usd:g}"]
    if s.model:
        out += ["--model", s.model]
    return out


def _stop(proc: subprocess.Popen[bytes], grace_s: float) -> None:
    """Stops the CLI's process group in steps: SIGINT, SIGTERM, SIGKILL."""
    for sig in STOP_SIGNALS:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=grace_s)
            break
        except subprocess.TimeoutExpired:
            continue
    proc.wait()


class _Reader:
    """The stream, line by line as it arrives: kept in events.jsonl, decoded, and each
    tool call told to `progress`."""

    def __init__(self, out: IO[bytes], progress: Callable[[str], None] | None) -> None:
        self.out, self.progress, self.buf = out, progress, b""
        self.agent = agent_for("claude")
        self.outcome = Outcome()
        self.result: norm.Result | None = None
        self.structured_calls: set[str] = set()

    def feed(self, chunk: bytes) -> None:
        self.out.write(chunk)
        self.buf += chunk
        if b"\n" not in chunk:  # a long line (the result, with the whole plan) in many chunks
            return
        *lines, self.buf = self.buf.split(b"\n")
        for line in lines:
            self._line(line)

    def _line(self, line: bytes) -> None:
        try:
            doc = jsonio.loads(line)
        except ValueError:
            return
        if not isinstance(doc, dict):
            return
        for ev in self.agent.decode(doc):
            if isinstance(ev, norm.ToolStart):
                if ev.name == STRUCTURED_TOOL:
                    self.structured_calls.add(ev.tool_id)
                elif self.progress:
                    self.progress(f"{ev.name} {tool_summary(ev.input)}".rstrip())
            elif isinstance(ev, norm.ToolEnd) and ev.tool_id in self.structured_calls and ev.is_error:
                self.outcome.schema_error = ev.text.strip()
            elif isinstance(ev, norm.Text) and ev.text.strip():
                self.outcome.last_words = ev.text.strip()
            elif isinstance(ev, norm.Init):
                self.outcome.session_id = ev.session_id
            elif isinstance(ev, norm.Result):
                self.result = ev

    def finish(self) -> Outcome:
        if self.buf:
            self._line(self.buf)
        o, r = self.outcome, self.result
        if r is not None:
            o.cost_usd = r.cost_usd
            o.answer = r.raw.get(STRUCTURED_KEY)
        return o


def _pump(proc: subprocess.Popen[bytes], reader: _Reader, deadline: float) -> bool:
    """Reads the CLI's stdout until it closes (True) or the deadline passes (False)."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if not sel.select(timeout=min(left, 1.0)):
                continue
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return True
            reader.feed(chunk)


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # SIGTERM as Ctrl-C: the CLI is stopped on the way out


def _spawn(s: Settings, repo: Path, workdir: Path, stdin: IO[bytes], err: IO[bytes]) -> subprocess.Popen[bytes]:
    tmp = str(workdir / "tmp")
    env = {**os.environ, "TMPDIR": tmp, "CLAUDE_CODE_TMPDIR": tmp}
    try:  # its own process group: stopped as a whole, and a Ctrl-C reaches it only through _stop
        return subprocess.Popen(argv(s, str(uuid.uuid4())), cwd=repo, stdin=stdin, stdout=subprocess.PIPE,
                                stderr=err, env=env, start_new_session=True)
    except OSError as exc:
        raise SessionError(f"cannot run the CLI {s.binary}: {exc.strerror} (set CLAUDE_BIN, or run make setup)") from None


def run(s: Settings, repo: Path, workdir: Path, goal: str,
        progress: Callable[[str], None] | None = None) -> Outcome:
    """Runs the session in repo with the goal on stdin; its files go to workdir. A
    SIGTERM or Ctrl-C stops the CLI too, then goes on as KeyboardInterrupt."""
    (workdir / "tmp").mkdir(parents=True, exist_ok=True)
    (workdir / "prompt.md").write_text(goal, encoding="utf-8")
    before = signal.signal(signal.SIGTERM, _interrupted)
    try:
        with open(workdir / "prompt.md", "rb") as stdin, open(workdir / "events.jsonl", "wb") as out, \
                open(workdir / "stderr.log", "wb") as err:
            proc = _spawn(s, repo, workdir, stdin, err)
            reader = _Reader(out, progress)
            try:
                in_time = _pump(proc, reader, time.monotonic() + s.timeout_s)
                if in_time:  # its stdout closed: it is on its way out
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        proc.wait(timeout=s.kill_grace_s)
            finally:
                if proc.poll() is None:
                    _stop(proc, s.kill_grace_s)
                assert proc.stdout is not None
                proc.stdout.close()
    finally:
        signal.signal(signal.SIGTERM, before)
    if not in_time:
        raise SessionError(f"the planning session ran past --timeout {s.timeout_s:g} s and was stopped "
                           f"(its stream: {workdir / 'events.jsonl'})")
    return _checked(reader, proc.returncode, workdir)


def _checked(reader: _Reader, rc: int, workdir: Path) -> Outcome:
    outcome = reader.finish()
    r = reader.result
    if r is None:
        tail = (workdir / "stderr.log").read_text(encoding="utf-8", errors="replace").strip().splitlines()
        raise SessionError(f"the planning session ended without a result (exit {rc})"
                           + (f": {tail[-1][:300]}" if tail else f"; its stream: {workdir / 'events.jsonl'}"))
    if r.failed and outcome.answer is None:
        why = (r.errors[0] if r.errors else r.text).strip().splitlines()
        raise SessionError(f"the planning session failed ({r.subtype or 'error'}"
                           + (f", API status {r.api_error_status}" if r.api_error_status else "") + ")"
                           + (f": {why[0][:300]}" if why else ""))
    return outcome
