"""Writes a tree of synthetic Claude Code transcripts, shaped like the CLI's own.

    python gen_transcripts.py OUT_DIR [--sessions 2000] [--seed N]

OUT_DIR/projects/<project>/<uuid>.jsonl, one file per session, with what the CLI
writes there: queue operations, the user's prompt, attachments, and per turn one
assistant line per content block (thinking, text, tool_use: the same message id and
request id on each, the usage growing on the last), the tool's result in a user
line, now and then a file-history snapshot; every tenth session has a subagent's
file (<uuid>/subagents/agent-*.jsonl, isSidechain true) and some sidechain replays
of the parent's messages. About 50 KB a session, under 200,000 tokens per entry
and per kind (no long-context rates).
"""

from __future__ import annotations

import argparse
import random
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

MODELS = ("claude-opus-4-8", "claude-sonnet-4-5-20250929", "claude-haiku-4-5-20251001")
WORDS = ("the", "build", "passes", "now", "I", "will", "run", "tests", "fix", "error", "in", "file", "module", "`x`")
T0_MS = 1_796_000_000_000


def _iso(ms: int) -> str:
    s, ms = divmod(ms, 1000)
    return datetime.fromtimestamp(s, UTC).strftime("%Y-%m-%dT%H:%M:%S") + f".{ms:03d}Z"


def _text(rng: random.Random, n: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n))


class Session:
    """One session's lines; `ms` is its clock, moved on by every line."""

    def __init__(self, rng: random.Random, sid: str, cwd: str, model: str, ms: int) -> None:
        self.rng, self.sid, self.cwd, self.model, self.ms = rng, sid, cwd, model, ms
        self.parent: str | None = None

    def _base(self, kind: str, sidechain: bool = False) -> dict[str, Any]:
        self.ms += self.rng.randint(5, 900)
        me = str(uuid.UUID(int=self.rng.getrandbits(128)))
        line = {"parentUuid": self.parent, "isSidechain": sidechain, "userType": "external", "cwd": self.cwd,
                "sessionId": self.sid, "version": "2.1.197", "gitBranch": "main", "type": kind, "uuid": me,
                "timestamp": _iso(self.ms)}
        self.parent = me
        return line

    def prompt(self) -> dict[str, Any]:
        line = self._base("user")
        line["message"] = {"role": "user", "content": "Fix the failing test. " + _text(self.rng, 60)}
        return line

    def assistant(self, n: int, sidechain: bool = False) -> Iterator[dict[str, Any]]:
        """The lines of one API response: one per content block."""
        rng = self.rng
        mid, req = f"msg_{uuid.UUID(int=rng.getrandbits(128)).hex[:24]}", f"req_{rng.getrandbits(64):016x}"
        usage: dict[str, Any] = {"input_tokens": rng.randint(1, 60), "cache_creation_input_tokens": rng.randint(0, 9000),
                                 "cache_read_input_tokens": rng.randint(1000, 150_000), "output_tokens": 0,
                                 "service_tier": "standard"}
        usage["cache_creation"] = {"ephemeral_5m_input_tokens": usage["cache_creation_input_tokens"],
                                   "ephemeral_1h_input_tokens": 0}
        blocks: list[dict[str, Any]] = [{"type": "thinking", "thinking": _text(rng, 80), "signature": "x" * 200},
                                        {"type": "text", "text": _text(rng, rng.randint(20, 120))}]
        if n % 4 != 3:
            blocks.append({"type": "tool_use", "id": f"toolu_{rng.getrandbits(64):016x}", "name": "Bash",
                           "input": {"command": "pytest -q tests/" + _text(rng, 3), "description": "run tests"}})
        for i, block in enumerate(blocks):
            usage = dict(usage, output_tokens=rng.randint(1, 30) if i < len(blocks) - 1 else rng.randint(100, 3000))
            line = self._base("assistant", sidechain)
            line["requestId"] = req
            line["message"] = {"id": mid, "type": "message", "role": "assistant", "model": self.model,
                               "content": [block], "stop_reason": None, "stop_sequence": None, "usage": usage}
            yield line

    def tool_result(self) -> dict[str, Any]:
        line = self._base("user")
        out = "\n".join(_text(self.rng, 12) for _ in range(self.rng.randint(8, 40)))
        line["message"] = {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_x", "content": out}]}
        line["toolUseResult"] = {"stdout": out, "stderr": "", "interrupted": False}
        return line


def session_lines(rng: random.Random, sid: str, cwd: str, ms: int) -> tuple[list[bytes], list[bytes]]:
    """(the session's lines, its subagent's lines: none for most)."""
    s = Session(rng, sid, cwd, rng.choice(MODELS), ms)
    out = [{"type": "queue-operation", "operation": "enqueue", "timestamp": _iso(ms), "sessionId": sid}, s.prompt()]
    replays: list[dict[str, Any]] = []
    for n in range(rng.randint(4, 9)):
        lines = list(s.assistant(n))
        out += lines
        if rng.random() < 0.1:  # a sidechain replay of this response: new request id, same time
            replay = orjson.loads(orjson.dumps(lines[-1]))
            replay.update(isSidechain=True, requestId=f"req_{rng.getrandbits(64):016x}")
            replays.append(replay)
        out.append(s.tool_result())
        if n % 5 == 0:
            out.append({"type": "file-history-snapshot", "messageId": str(uuid.uuid4()),
                        "snapshot": {"trackedFileBackups": {}, "timestamp": _iso(s.ms)}})
    sub: list[dict[str, Any]] = []
    if rng.random() < 0.1:
        agent = Session(rng, sid, cwd, "claude-haiku-4-5-20251001", s.ms)
        for n in range(rng.randint(2, 5)):
            sub += list(agent.assistant(n, sidechain=True))
    return [orjson.dumps(x) + b"\n" for x in out], [orjson.dumps(x) + b"\n" for x in sub + replays]


def write(root: Path, sessions: int, seed: int = 16) -> int:
    """Writes the tree; its size in bytes."""
    rng = random.Random(seed)
    total = 0
    for k in range(sessions):
        project = f"-srv-repo-{k % 20:02d}"
        sid = str(uuid.UUID(int=rng.getrandbits(128)))
        main, sub = session_lines(rng, sid, f"/srv/repo-{k % 20:02d}", T0_MS + k * 600_000)
        d = root / "projects" / project
        d.mkdir(parents=True, exist_ok=True)
        data = b"".join(main)
        (d / f"{sid}.jsonl").write_bytes(data)
        total += len(data)
        if sub:
            (d / sid / "subagents").mkdir(parents=True)
            data = b"".join(sub)
            (d / sid / "subagents" / f"agent-{rng.getrandbits(32):08x}.jsonl").write_bytes(data)
            total += len(data)
    return total


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--sessions", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=16)
    args = ap.parse_args()
    print(write(Path(args.out), args.sessions, args.seed))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
