"""Writes a realistic Claude Code stream-json file of a given size.

The mix follows what the CLI prints with --include-partial-messages: per turn a
system/status line, message_start, content blocks made of many
content_block_delta lines (text, and tool input for tool turns), one assistant
line per content block, message_delta with usage, message_stop, and for tool
turns a user line with the tool_result. Deltas are the overwhelming majority of
lines, as in a real session. It ends with a result line.

    python gen_stream.py OUT SIZE_BYTES [--seed N]
"""

from __future__ import annotations

import argparse
import random
import uuid
from collections.abc import Iterator

import orjson

SID = "8f1e2851-5462-42e2-97f2-5ebe08065c22"
WORDS = ("the", "build", "passes", "now", "I", "will", "run", "tests", "fix", "error", "in", "file", "module", "`x`")
TOOLS = ("Bash", "Read", "Edit", "Write", "Grep")


def _line(obj: dict[str, object]) -> bytes:
    return orjson.dumps(obj) + b"\n"


def _se(event: dict[str, object]) -> bytes:
    return _line(
        {"type": "stream_event", "event": event, "session_id": SID, "parent_tool_use_id": None, "uuid": str(uuid.uuid4())}
    )


def turn(rng: random.Random, n: int, with_tool: bool) -> Iterator[bytes]:
    mid = f"msg_bench{n:07d}"
    usage = {"input_tokens": 50, "cache_creation_input_tokens": 1000, "cache_read_input_tokens": 2000 + n, "output_tokens": 1}
    base = {"id": mid, "type": "message", "role": "assistant", "model": "claude-opus-4-8", "content": [], "usage": usage}
    yield _line({"type": "system", "subtype": "status", "status": "requesting", "uuid": str(uuid.uuid4()), "session_id": SID})
    yield _se({"type": "message_start", "message": base})
    yield _se({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
    words = []
    for _ in range(rng.randint(150, 400)):
        w = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 8))) + " "
        words.append(w)
        yield _se({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": w}})
    msg = dict(base, content=[{"type": "text", "text": "".join(words)}])
    yield _line({"type": "assistant", "message": msg, "parent_tool_use_id": None, "session_id": SID, "uuid": str(uuid.uuid4())})
    yield _se({"type": "content_block_stop", "index": 0})
    if with_tool:
        tid = f"toolu_bench{n:07d}"
        name = rng.choice(TOOLS)
        start = {"type": "tool_use", "id": tid, "name": name, "input": {}}
        yield _se({"type": "content_block_start", "index": 1, "content_block": start})
        for part in ('{"command": ', '"make test', ' -j2"}'):
            yield _se({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": part}})
        block = {"type": "tool_use", "id": tid, "name": name, "input": {"command": "make test -j2"}}
        yield _line({"type": "assistant", "message": dict(base, content=[block]), "parent_tool_use_id": None, "session_id": SID,
                     "uuid": str(uuid.uuid4())})
        yield _se({"type": "content_block_stop", "index": 1})
    yield _se({"type": "message_delta", "delta": {"stop_reason": "tool_use" if with_tool else "end_turn"},
               "usage": {"output_tokens": 400}})
    yield _se({"type": "message_stop"})
    if with_tool:
        err = rng.random() < 0.1
        yield _line({"type": "user", "message": {"role": "user", "content": [
            {"tool_use_id": f"toolu_bench{n:07d}", "type": "tool_result", "content": "ok\n" * 20, "is_error": err}]},
            "parent_tool_use_id": None, "session_id": SID, "uuid": str(uuid.uuid4()),
            "timestamp": "2026-11-21T15:32:40.227Z", "tool_use_result": {"stdout": "ok\n" * 20, "stderr": ""}})


def result(turns: int) -> bytes:
    return _line({"type": "result", "subtype": "success", "is_error": False, "duration_ms": 1000 * turns,
                  "duration_api_ms": 800 * turns, "num_turns": turns, "result": "Done.", "session_id": SID,
                  "total_cost_usd": 0.01 * turns,
                  "usage": {"input_tokens": 50 * turns, "output_tokens": 400 * turns, "cache_read_input_tokens": 2000 * turns,
                            "cache_creation_input_tokens": 1000 * turns},
                  "modelUsage": {"claude-opus-4-8": {"inputTokens": 50 * turns, "outputTokens": 400 * turns,
                                                     "cacheReadInputTokens": 2000 * turns,
                                                     "cacheCreationInputTokens": 1000 * turns, "costUSD": 0.01 * turns}},
                  "permission_denials": [], "uuid": str(uuid.uuid4())})


def write(path: str, size_bytes: int, seed: int = 7) -> int:
    """Writes about size_bytes of stream-json to path; returns the number of turns."""
    rng = random.Random(seed)
    written = 0
    n = 0
    with open(path, "wb") as fh:
        fh.write(_line({"type": "system", "subtype": "init", "cwd": "/tmp/w", "session_id": SID, "tools": list(TOOLS),
                        "model": "claude-opus-4-8", "permissionMode": "default", "uuid": str(uuid.uuid4())}))
        buf: list[bytes] = []
        while written < size_bytes:
            n += 1
            for line in turn(rng, n, with_tool=rng.random() < 0.6):
                buf.append(line)
                written += len(line)
            if len(buf) > 4096:
                fh.write(b"".join(buf))
                buf.clear()
        fh.write(b"".join(buf))
        fh.write(result(n))
    return n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("size_bytes", type=int)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    print(write(args.out, args.size_bytes, args.seed))


if __name__ == "__main__":
    main()
