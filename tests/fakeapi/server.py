#!/usr/bin/env python3
"""Scripted Anthropic Messages API on loopback, for end-to-end tests of the harness.

The real Claude Code CLI talks to it through ANTHROPIC_BASE_URL. Each request picks
a scenario from a marker in its messages, ``[[fake:NAME key=value ...]]`` (the last
marker found in user text wins), or from ``--scenario`` when there is none. A
scenario is stateless: the step it plays is the number of assistant messages
since the message that holds its marker, so retries and side requests get
coherent answers, and a resumed conversation (a fix round) plays a new scenario
from its first step.

Scenarios (see SCENARIOS below): answer, plan, bash, write_commit, endless, big,
slowtool, flood, hang, err400, err401, err403, err429, err500, err529.

With ``--max-inflight K`` it answers 429 (rate_limit_error) to a request that
arrives while K are in flight already, as an account's concurrency limit does.

Like the real API, it refuses a request for a model it does not serve (404, any
name that does not start with ``claude-``) and a prompt over its context window
(400 "prompt is too long", the window from ``--context-tokens``, tokens estimated
as body bytes / 4).

Every request is logged as one JSON line (``--log``); ``--bodies DIR`` also keeps
each raw request body as DIR/<n>.json so tests can assert what the model received.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

BYTES_PER_TOKEN = 4
MARKER_RE = re.compile(r"\[\[fake:([a-z0-9_]+)((?:\s+[a-z_]+=[^\s\]]+)*)\s*\]\]")
DEFAULT_USAGE: dict[str, int] = {
    "input_tokens": 50,
    "cache_creation_input_tokens": 1000,
    "cache_read_input_tokens": 2000,
    "output_tokens": 1,
}
ERRORS: dict[str, tuple[int, str, str]] = {
    "err400": (400, "invalid_request_error", "messages.0.content: bad request (fake)"),
    "err401": (401, "authentication_error", "invalid x-api-key"),
    "err403": (403, "permission_error", "forbidden (fake)"),
    "err429": (429, "rate_limit_error", "Number of request tokens has exceeded your per-minute rate limit"),
    "err500": (500, "api_error", "Internal server error"),
    "err529": (529, "overloaded_error", "Overloaded"),
}


@dataclass
class Turn:
    """One scripted assistant message: text and/or one tool call, and its usage."""

    text: str = ""
    tool: tuple[str, dict[str, Any]] | None = None
    usage: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_USAGE))
    output_tokens: int = 20


@dataclass
class Request:
    """What a scenario needs to know about the request it answers."""

    step: int
    params: dict[str, str]
    tool_results: list[str]


def _text_of(content: Any) -> list[str]:
    if isinstance(content, str):
        return [content]
    out: list[str] = []
    if isinstance(content, list):
        for block in content:
            if not isinstance(block, dict):
                continue
            if block.get("type") == "text":
                out.append(str(block.get("text", "")))
            elif block.get("type") == "tool_result":
                out.extend(_text_of(block.get("content")))
    return out


def _tool_results(messages: list[Any]) -> list[str]:
    results: list[str] = []
    for msg in messages:
        if isinstance(msg, dict) and msg.get("role") == "user" and isinstance(msg.get("content"), list):
            for block in msg["content"]:
                if isinstance(block, dict) and block.get("type") == "tool_result":
                    results.append("\n".join(_text_of(block.get("content"))))
    return results


def pick_scenario(body: dict[str, Any], default: str) -> tuple[str, dict[str, str], int]:
    """The last [[fake:...]] marker in the user messages: its scenario, its parameters
    and the index of the message holding it (0 without a marker)."""
    found: tuple[str, dict[str, str], int] | None = None
    for index, msg in enumerate(body.get("messages") or []):
        if not isinstance(msg, dict) or msg.get("role") != "user":
            continue
        for text in _text_of(msg.get("content")):
            for m in MARKER_RE.finditer(text):
                params = dict(p.split("=", 1) for p in m.group(2).split())
                found = (m.group(1), params, index)
    return found or (default, {}, 0)


def _bash(cmd: str, desc: str = "run a command") -> tuple[str, dict[str, Any]]:
    return ("Bash", {"command": cmd, "description": desc})


USAGE_PARAMS = {"in": "input_tokens", "cr": "cache_read_input_tokens", "cw": "cache_creation_input_tokens"}


def sc_answer(req: Request) -> Turn:
    """A plain answer; in=, out=, cr=, cw= set its usage (input, output, cache read,
    cache write tokens), so a test can ask the CLI to price a known mix."""
    turn = Turn(text=req.params.get("text", "Done."))
    for key, field_name in USAGE_PARAMS.items():
        if req.params.get(key, "").isdigit():
            turn.usage[field_name] = int(req.params[key])
    if req.params.get("out", "").isdigit():
        turn.output_tokens = int(req.params["out"])
    return turn


def sc_bash(req: Request) -> Turn:
    if req.step == 0:
        return Turn(text="I'll run a command.", tool=_bash("echo hi > out.txt && cat out.txt", "write file"))
    return Turn(text="Done.")


def sc_write_commit(req: Request) -> Turn:
    """pwd, then Write hello.txt there (absolute path from pwd's output), then git commit."""
    name = req.params.get("file", "hello.txt")
    if req.step == 0:
        return Turn(text="Let me look around.", tool=_bash("pwd", "print working directory"))
    if req.step == 1:
        cwd = (req.tool_results[-1] if req.tool_results else "").strip().splitlines()[0:1]
        path = os.path.join(cwd[0] if cwd else "/nonexistent", name)
        return Turn(text="Writing the file.", tool=("Write", {"file_path": path, "content": "hello from the scripted model\n"}))
    if req.step == 2:
        return Turn(
            text="Committing.",
            tool=_bash(
                f"git add {name} && git -c user.name=agent -c user.email=agent@example.invalid "
                f"commit -q -m 'Add {name}' && git log --oneline -1",
                "commit",
            ),
        )
    return Turn(text="Done: wrote and committed " + name + ".")


def sc_escape(req: Request) -> Turn:
    """Tries to leave its worktree: reads ~/.ssh/id_rsa, writes the file outside=, deletes
    the .git of the checkout repo=, plants a verify command in its session directory,
    points its worktree's .git elsewhere, lists the harness's database in state=; then
    does its job (writes hello.txt in its working directory and commits it). Each
    step's result comes back as it is."""
    outside, repo = req.params.get("outside", "/nonexistent/x"), req.params.get("repo", "/nonexistent")
    state = req.params.get("state", "/nonexistent")
    steps = [("cat ~/.ssh/id_rsa", "read a key"), (f"echo escaped > {outside} && echo wrote", "write outside"),
             (f"rm -rf {repo}/.git && echo deleted", "delete the checkout's history"),
             ("printf 'sh\\0-c\\0touch /tmp/pwned\\0' > \"$TMPDIR/../../verify.argv\" && echo planted",
              "plant a command the harness runs"),
             ("echo 'gitdir: /tmp' > .git && echo redirected", "point git elsewhere"),
             (f"ls {state}/harness.db && echo listed", "look at the harness's database"),
             ("echo hello > hello.txt && git add hello.txt && git -c user.name=agent -c user.email=agent@example.invalid "
              "commit -q -m 'Add hello.txt' && git log --oneline -1", "commit")]
    if req.step < len(steps):
        return Turn(text=f"Step {req.step}.", tool=_bash(*steps[req.step]))
    return Turn(text="Done.")


def sc_endless(req: Request) -> Turn:
    return Turn(text=f"Step {req.step}.", tool=_bash(f"echo step {req.step}", "one more step"))


def sc_big(req: Request) -> Turn:
    big = {"input_tokens": 10000, "cache_creation_input_tokens": 1000, "cache_read_input_tokens": 2000, "output_tokens": 1}
    if req.step == 0:
        return Turn(
            text="I'll run a command.",
            tool=_bash("echo hi > out.txt && cat out.txt", "write file"),
            usage=big,
            output_tokens=2000,
        )
    return Turn(text="Done.", usage=big, output_tokens=2000)


def sc_slowtool(req: Request) -> Turn:
    seconds = req.params.get("seconds", "5")
    if not re.fullmatch(r"[0-9]+(\.[0-9]+)?", seconds):
        seconds = "5"
    if req.step == 0:
        return Turn(text="A slow command.", tool=_bash(f"sleep {seconds} && echo slept", "slow command"))
    return Turn(text="Done.")


def sc_flood(req: Request) -> Turn:
    """A long answer: size= characters of text (default 200000), to fill a small disk."""
    size = req.params.get("size", "200000")
    n = int(size) if size.isdigit() else 200000
    return Turn(text=("All work and no play. " * (n // 22 + 1))[:n])


def _plan_items(variant: str) -> list[dict[str, Any]]:
    """A plan for tests/python/fixtures/plan/shop, the way `plan.sh` asks for one
    (lib/harness/plan/model.py); a variant breaks it in one way."""
    def item(item_id: str, title: str, files: list[str], size: int, deps: list[str], **more: Any) -> dict[str, Any]:
        prompt = f"{title}. Keep the change small and add a test. [[fake:answer text=Done:{item_id}]]"
        return {"id": item_id, "title": title, "prompt": prompt, "files": files, "size": size, "depends_on": deps, **more}

    items = [
        item("models", "Add an email field to User", ["app/models.py"], 3, []),
        item("api", "Log in by email", ["app/api.py", "tests/login_check.py"], 5, []),
        item("cli", "Add a login command", ["app/cli.py"], 2, []),
        item("web", "Show the email in the web client", ["web/src/client.ts"], 2, ["api"],
             verify="test -f web/src/client.ts"),
        item("docs", "Document login by email", ["docs/login.md"], 1, ["cli"]),
    ]
    if variant == "cycle":
        items[2]["depends_on"] = ["docs"]
    elif variant == "unknown":
        items[3]["depends_on"] = ["api", "ghost"]
    elif variant == "malformed":
        del items[1]["prompt"]
        items[2]["size"] = "big"
    return items


def sc_plan(req: Request) -> Turn:
    """A planning session (--json-schema): looks around with Glob, then answers through
    the StructuredOutput tool the CLI offers for the schema. variant= ok (default),
    cycle, unknown, malformed (fails the schema), prose (never calls the tool)."""
    variant = req.params.get("variant", "ok")
    if req.step == 0:
        return Turn(text="Let me look at the code.", tool=("Glob", {"pattern": "**/*.py"}))
    if req.step == 1 and variant != "prose":
        plan = {"summary": "Log in by email, end to end.", "items": _plan_items(variant)}
        return Turn(text="Here is the plan.", tool=("StructuredOutput", plan))
    return Turn(text="The plan is above." if variant != "prose" else "I would start with the models, then the API.")


SCENARIOS = {
    "answer": sc_answer,
    "plan": sc_plan,
    "bash": sc_bash,
    "write_commit": sc_write_commit,
    "escape": sc_escape,
    "endless": sc_endless,
    "big": sc_big,
    "slowtool": sc_slowtool,
    "flood": sc_flood,
}


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr: tuple[str, int], args: argparse.Namespace) -> None:
        super().__init__(addr, Handler)
        self.args = args
        self.counter = 0
        self.inflight = 0
        self.lock = threading.Lock()
        self.stopping = threading.Event()

    def enter(self) -> bool:
        """One more request in flight; False (and not counted) when that is over --max-inflight."""
        with self.lock:
            if 0 < self.args.max_inflight <= self.inflight:
                return False
            self.inflight += 1
            return True

    def leave(self) -> None:
        with self.lock:
            self.inflight -= 1

    def next_number(self) -> int:
        with self.lock:
            self.counter += 1
            return self.counter

    def record(self, entry: dict[str, Any]) -> None:
        if not self.args.log:
            return
        line = json.dumps(entry, separators=(",", ":")) + "\n"
        with self.lock, open(self.args.log, "a", encoding="utf-8") as fh:
            fh.write(line)


class Handler(BaseHTTPRequestHandler):
    server: Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        if self.server.args.verbose:
            sys.stderr.write("fakeapi: " + (format % args) + "\n")

    def _send_json(self, status: int, obj: Any) -> None:
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.send_header("request-id", "req_fake")
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._send_json(404, {"type": "error", "error": {"type": "not_found_error", "message": "not found"}})

    def do_HEAD(self) -> None:
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()

    def do_POST(self) -> None:
        n = self.server.next_number()
        length = int(self.headers.get("content-length") or 0)
        raw = self.rfile.read(length) if length else b""
        if self.server.args.bodies:
            with open(os.path.join(self.server.args.bodies, f"{n}.json"), "wb") as fh:
                fh.write(raw)
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = {}
        path = self.path.split("?", 1)[0]
        entry: dict[str, Any] = {
            "n": n,
            "ts": round(time.time(), 3),
            "path": self.path,
            "model": body.get("model"),
            "stream": body.get("stream"),
            "msgs": len(body.get("messages") or []),
            "max_tokens": body.get("max_tokens"),
            "body_bytes": len(raw),
            "body_sha256": hashlib.sha256(raw).hexdigest(),
        }
        if path.endswith("/count_tokens"):
            entry["status"] = 200
            self.server.record(entry)
            self._send_json(200, {"input_tokens": 100})
            return
        if not path.endswith("/v1/messages"):
            entry["status"] = 404
            self.server.record(entry)
            self._send_json(404, {"type": "error", "error": {"type": "not_found_error", "message": "not found"}})
            return
        if not self.server.enter():
            # --max-inflight: more requests in flight than the account may have, as a
            # per-account concurrency limit answers (the CLI retries it: api_retry 429)
            entry["status"] = 429
            entry["inflight_refused"] = True
            self.server.record(entry)
            self._send_json(429, {"type": "error", "error": {"type": "rate_limit_error",
                                                             "message": "Too many requests in flight (fake)"}})
            return
        try:
            self._messages(entry, body, raw)
        finally:
            self.server.leave()

    def _messages(self, entry: dict[str, Any], body: dict[str, Any], raw: bytes) -> None:
        n = int(entry["n"])
        refusal = self._refusal(body, len(raw))
        if refusal:
            status, etype, message = refusal
            entry["status"] = status
            self.server.record(entry)
            self._send_json(status, {"type": "error", "error": {"type": etype, "message": message}})
            return
        name, params, since = pick_scenario(body, self.server.args.scenario)
        messages = body.get("messages") or []
        step = sum(1 for m in messages[since:] if isinstance(m, dict) and m.get("role") == "assistant")
        entry.update(scenario=name, step=step)
        delay_s = float(params.get("delay", "0") or 0)
        if delay_s > 0:
            self.server.stopping.wait(min(delay_s, 600.0))
        if name in ERRORS:
            status, etype, message = ERRORS[name]
            entry["status"] = status
            self.server.record(entry)
            self._send_json(status, {"type": "error", "error": {"type": etype, "message": message}})
            return
        if name == "hang":
            entry["status"] = "hang"
            self.server.record(entry)
            self._hang(n)
            return
        if not body.get("tools"):
            # A side request (the CLI's title generator and the like): plain text, no tools.
            turn = Turn(text="Scripted session")
            entry["side"] = True
        else:
            turn = SCENARIOS.get(name, sc_answer)(Request(step=step, params=params, tool_results=_tool_results(messages)))
        entry["status"] = 200
        self.server.record(entry)
        if body.get("stream"):
            self._stream(n, body, turn)
        else:
            self._send_json(200, self._message(n, body, turn, final=True))

    def _refusal(self, body: dict[str, Any], size: int) -> tuple[int, str, str] | None:
        """What the real API refuses whatever the scenario: an unknown model, a prompt
        longer than the context window."""
        model = str(body.get("model") or "")
        if not model.startswith("claude-"):
            return 404, "not_found_error", f"model: {model}"
        tokens, window = size // BYTES_PER_TOKEN, self.server.args.context_tokens
        if tokens > window:
            return 400, "invalid_request_error", f"prompt is too long: {tokens} tokens > {window} maximum"
        return None

    def _message(self, n: int, body: dict[str, Any], turn: Turn, final: bool) -> dict[str, Any]:
        content: list[dict[str, Any]] = []
        if turn.text:
            content.append({"type": "text", "text": turn.text})
        if turn.tool and final:
            content.append({"type": "tool_use", "id": f"toolu_fake{n:04d}", "name": turn.tool[0], "input": turn.tool[1]})
        usage: dict[str, Any] = dict(turn.usage)
        if final:
            usage["output_tokens"] = turn.output_tokens
        # the split of the cache writes, as the API sends it: the CLI copies it into its
        # transcript, where ccusage-style counting reads the cache writes from it
        usage["cache_creation"] = {"ephemeral_5m_input_tokens": usage.get("cache_creation_input_tokens", 0),
                                   "ephemeral_1h_input_tokens": 0}
        return {
            "id": f"msg_fake{n:04d}",
            "type": "message",
            "role": "assistant",
            "model": body.get("model") or "claude-fake",
            "content": content if final else [],
            "stop_reason": ("tool_use" if turn.tool else "end_turn") if final else None,
            "stop_sequence": None,
            "usage": usage,
        }

    def _start_sse(self) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/event-stream")
        self.send_header("cache-control", "no-cache")
        self.send_header("request-id", "req_fake")
        self.send_header("connection", "close")
        self.end_headers()
        self.close_connection = True

    def _event(self, etype: str, data: dict[str, Any]) -> None:
        self.wfile.write(f"event: {etype}\ndata: {json.dumps(data)}\n\n".encode())
        self.wfile.flush()

    def _stream(self, n: int, body: dict[str, Any], turn: Turn) -> None:
        self._start_sse()
        try:
            self._event("message_start", {"type": "message_start", "message": self._message(n, body, turn, final=False)})
            index = 0
            if turn.text:
                self._event(
                    "content_block_start",
                    {"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}},
                )
                self._event(
                    "content_block_delta",
                    {"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": turn.text}},
                )
                self._event("content_block_stop", {"type": "content_block_stop", "index": index})
                index += 1
            if turn.tool:
                name, tool_input = turn.tool
                block = {"type": "tool_use", "id": f"toolu_fake{n:04d}", "name": name, "input": {}}
                self._event("content_block_start", {"type": "content_block_start", "index": index, "content_block": block})
                delta = {"type": "input_json_delta", "partial_json": json.dumps(tool_input)}
                self._event("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})
                self._event("content_block_stop", {"type": "content_block_stop", "index": index})
            stop = "tool_use" if turn.tool else "end_turn"
            self._event(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop, "stop_sequence": None},
                    "usage": {"output_tokens": turn.output_tokens},
                },
            )
            self._event("message_stop", {"type": "message_stop"})
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _hang(self, n: int) -> None:
        """Starts a message, sends one text delta, then says nothing until the server stops."""
        self._start_sse()
        try:
            self._event("message_start", {"type": "message_start", "message": self._message(n, {}, Turn(text="x"), final=False)})
            self._event(
                "content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
            )
            self._event(
                "content_block_delta",
                {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Thinking about it"}},
            )
        except (BrokenPipeError, ConnectionResetError):
            return
        self.server.stopping.wait()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Scripted Anthropic Messages API for tests (loopback only).")
    ap.add_argument("--port", type=int, default=0, help="port to listen on; 0 picks a free one")
    ap.add_argument("--port-file", help="write the bound port here (atomically) once listening")
    ap.add_argument("--scenario", default="answer", help="scenario when a request has no marker")
    ap.add_argument("--log", help="append one JSON line per request here")
    ap.add_argument("--bodies", help="keep each raw request body as DIR/<n>.json")
    ap.add_argument("--context-tokens", type=int, default=1_000_000,
                    help="refuse a request over this many tokens (body bytes / 4) as too long")
    ap.add_argument("--max-inflight", type=int, default=0,
                    help="answer 429 to a request while this many are in flight already (0: no limit)")
    ap.add_argument("--verbose", action="store_true")
    args = ap.parse_args(argv)
    if args.scenario not in SCENARIOS and args.scenario not in ERRORS and args.scenario != "hang":
        ap.error(f"unknown scenario: {args.scenario}")
    server = Server(("127.0.0.1", args.port), args)

    def stop(_sig: int, _frame: Any) -> None:
        server.stopping.set()
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    if args.port_file:
        tmp = args.port_file + ".tmp"
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(f"{server.server_address[1]}\n")
        os.replace(tmp, args.port_file)
    server.serve_forever(poll_interval=0.2)
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
