"""The web dashboard: its pages, the JSON they read, a session's live transcript,
and the operator's actions (pause, resume, retry an item, cancel an item).

The pages are static files (serve/static/: HTML, CSS and plain JavaScript, no
build step) that read /api/state and follow /events; the charts are drawn by
uPlot, which `make setup` installs from npm into .tools/web (without it the page
says so where the charts would be). Every page is served with a Content-Security-
Policy that allows this server's own scripts only, and every piece of session or
item text reaches the page as JSON and is put into it as text (textContent),
never as HTML: a model's `<script>` is shown, not run.

The token (SERVE_TOKEN): a browser gives it once, on /login, and gets a cookie
that holds an HMAC of it (never the token itself), HttpOnly and SameSite=Strict.
An action needs the token (as that cookie or as `Authorization: Bearer`) and the
header `X-Harness-Action: 1` (which no other site's form can send); a server
without a token takes no actions at all (403, audited).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import io
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from harness import jsonio
from harness.pipeline.policy import Policy
from harness.report import sessions, watch
from harness.report.style import Style
from harness.serve import feed
from harness.sidecar.model import wake_loop
from harness.store import open_store, queue
from harness.stream.tailer import Tailer

STATIC = Path(__file__).parent / "static"
VENDOR = Path(__file__).resolve().parents[3] / ".tools" / "web" / "node_modules" / "uplot" / "dist"
SESSION_MAC = b"harness dashboard session v1"
TRANSCRIPT_POLL_S = 0.1
RECENT_EVENTS = 40
RECENT_BYTES = 256 * 1024
SERIES_HOURS = 24
FAILURES_SHOWN = 20
ACTION_BODY_MAX = 4096
STREAM_HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def session_mac(token: str) -> str:
    """The cookie's value: proof of the token without the token."""
    return hmac.new(token.encode(), SESSION_MAC, hashlib.sha256).hexdigest()


def has_token(request: Request, token: str, cookie: str) -> bool:
    """The request carries the token: as a Bearer header, or as the login cookie."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), token.encode()):
        return True
    given = request.cookies.get(cookie, "")
    return bool(given) and hmac.compare_digest(given.encode(), session_mac(token).encode())


def recent_events(path: Path, n: int = RECENT_EVENTS) -> tuple[list[Any], str | None]:
    """The log's last n events, and the feed id just past them (for /events?since=)."""
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            start = max(0, st.st_size - RECENT_BYTES)
            f.seek(start)
            data = f.read(st.st_size - start)
    except FileNotFoundError:
        return [], None
    whole = data[: data.rfind(b"\n") + 1]
    lines = whole.split(b"\n")[:-1]
    if start:
        lines = lines[1:]  # the first may be a part of a line
    out = []
    for line in lines[-n:]:
        try:
            ev = jsonio.loads(line)
        except ValueError:
            continue  # a torn or foreign line: the feed shows the rest
        if isinstance(ev, dict):
            out.append(ev)
    return out, f"{st.st_ino}:{start + len(whole)}"


def series(attempts: list[dict[str, Any]], now: float, hours: int = SERIES_HOURS) -> dict[str, list[float]]:
    """Sessions, successes and cost per hour over the last `hours`, by when each ended."""
    first = (int(now) // 3600 - hours + 1) * 3600
    out: dict[str, list[float]] = {"t": [float(first + 3600 * i) for i in range(hours)], "sessions": [0.0] * hours,
                                   "succeeded": [0.0] * hours, "cost_usd": [0.0] * hours}
    for a in attempts:
        ended = a.get("ended")
        if not isinstance(ended, (int, float)) or not first <= ended < first + 3600 * hours:
            continue
        i = int(ended - first) // 3600
        out["sessions"][i] += 1
        out["succeeded"][i] += a.get("verdict") == "succeeded"
        out["cost_usd"][i] = round(out["cost_usd"][i] + float(a.get("cost_usd") or 0), 6)
    return out


def failures(items: list[dict[str, Any]], attempts: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """What failed: the quarantined items (each with its last verdict and reason: the
    ones a person retries or cancels), and the latest sessions that did not succeed."""
    held = [{"item": i.get("id"), "title": i.get("title"), "verdict": i.get("last_verdict"),
             "reason": i.get("last_reason"), "attempts": i.get("attempts"), "updated_at": i.get("updated_at")}
            for i in items]
    held.sort(key=lambda r: str(r.get("updated_at") or ""), reverse=True)
    failed = [a for a in attempts if a.get("verdict") not in ("succeeded", None)]
    failed.sort(key=lambda a: float(a.get("ended") or 0), reverse=True)
    return {"items": held[:FAILURES_SHOWN],
            "sessions": [{"session": a.get("session_id"), "item": a.get("item_id"), "verdict": a.get("verdict"),
                          "ended": a.get("ended"), "attempt": a.get("attempt")} for a in failed[:FAILURES_SHOWN]]}


async def read_body(request: Request, limit: int = ACTION_BODY_MAX) -> bytes | None:
    """The request's body, or None when it is longer than limit (read no further)."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def sse(kind: str, data: Any) -> bytes:
    return b"event: %s\ndata: %s\n\n" % (kind.encode(), jsonio.dumps(data))


class Dashboard:
    def __init__(self, state_dir: Path, token: str | None, policy: Policy, heartbeat_s: float, cookie: str,
                 stopping: Callable[[], bool], clock: Callable[[], float] = time.time) -> None:
        self.state_dir, self.token, self.policy, self.heartbeat_s = state_dir, token, policy, heartbeat_s
        self.cookie, self.stopping, self.clock = cookie, stopping, clock

    def routes(self) -> list[BaseRoute]:
        page = self.page
        out: list[BaseRoute] = [
            Route("/", lambda r: page("index.html")),
            Route("/session/{sid}", lambda r: page("session.html")),
            Route("/login", lambda r: page("login.html")),
            Route("/login", self.login, methods=["POST"]),
            Route("/logout", self.logout, methods=["POST"]),
            Route("/api/state", self.state),
            Route("/api/sessions/{sid}", self.session),
            Route("/api/sessions/{sid}/transcript", self.transcript),
            Route("/api/items/{item}/{action}", self.act, methods=["POST"]),
            Route("/api/{action}", self.act, methods=["POST"]),
            Mount("/static", StaticFiles(directory=STATIC)),
        ]
        if VENDOR.is_dir():
            out.append(Mount("/vendor", StaticFiles(directory=VENDOR)))
        return out

    @staticmethod
    def page(name: str) -> Response:
        return FileResponse(STATIC / name, media_type="text/html", headers=SECURITY_HEADERS)

    async def login(self, request: Request) -> Response:
        """The login form's POST: the right token sets the cookie; a wrong one is audited."""
        body = await read_body(request) or b""
        given = (parse_qs(body.decode("utf-8", "replace")).get("token") or [""])[0]
        if not self.token:
            return PlainTextResponse("this server has no SERVE_TOKEN: it takes no actions\n", status_code=403)
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            self._refused(request, "/login", "wrong token" if given else "no token")
            return RedirectResponse("/login?wrong=1", status_code=303)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(self.cookie, session_mac(self.token), max_age=7 * 86400, httponly=True,
                            samesite="strict", secure=request.url.scheme == "https")
        return response

    async def logout(self, request: Request) -> Response:
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(self.cookie, httponly=True, samesite="strict")
        return response

    def _refused(self, request: Request, path: str, reason: str) -> None:
        peer = request.client.host if request.client else "?"
        jsonio.audit(self.state_dir, "serve.refused", path=path[:200], peer=peer, reason=reason)

    def state(self, request: Request) -> Response:
        """Everything the dashboard shows, as of now (a plain def: run on a thread)."""
        from harness.report import status

        now = self.clock()
        try:
            snap = status.collect(self.state_dir, self.policy, now, self.heartbeat_s)
            store = open_store(self.state_dir)
            attempts = store.attempts(since=now - SERIES_HOURS * 3600)
            snap["failures"] = failures(store.items(["quarantined"]), attempts)
        except (queue.QueueError, OSError, sqlite3.Error) as exc:
            return JSONResponse({"error": f"the store cannot be read: {exc}"}, status_code=503)
        snap["series"] = series(attempts, now)
        snap["events"], snap["feed_id"] = recent_events(self.state_dir / "events.jsonl")
        snap["actions"] = bool(self.token)
        snap["charts"] = VENDOR.is_dir()
        return JSONResponse(snap, headers={"Cache-Control": "no-store"})

    def _session(self, request: Request) -> sessions.Session | None:
        sid = str(request.path_params["sid"])
        if not sessions.SAFE_REF_RE.match(sid):
            return None
        s = sessions.load(self.state_dir, sid)
        return s if s.dir.is_dir() else None

    def session(self, request: Request) -> Response:
        s = self._session(request)
        if s is None:
            return JSONResponse({"error": "no such session"}, status_code=404)
        return JSONResponse({"session": s.id, "meta": s.meta, "status": s.status(), "heartbeat": s.heartbeat(),
                             "receipt": s.metrics()}, headers={"Cache-Control": "no-store"})

    async def transcript(self, request: Request) -> Response:
        s = self._session(request)
        if s is None:
            return JSONResponse({"error": "no such session"}, status_code=404)
        return StreamingResponse(self._follow(s), media_type="text/event-stream", headers=STREAM_HEADERS)

    async def _follow(self, s: sessions.Session) -> AsyncIterator[bytes]:
        """What `watch` shows, as `text` events, until the session has ended; then its
        receipt (`receipt`, null when the loop has not written one) and `end`."""
        buf = io.StringIO()
        r = watch.Renderer(buf, Style(buf, enabled=False, safe=True), raw=False)
        tailer = Tailer(s.file("events.jsonl"))
        quiet = time.monotonic()  # since the last line: a quiet stream gets a keep-alive comment
        try:
            yield b"retry: 2000\n\n"
            while not self.stopping():
                lines = tailer.read()
                ended = not lines and watch.ended(s)
                for line in lines + (tailer.flush() if ended else []):
                    r.line(line)
                r.verify(s, ended=ended)
                if buf.tell():
                    yield sse("text", buf.getvalue())
                    buf.seek(0)
                    buf.truncate()
                if ended:
                    yield sse("receipt", await self._receipt(s))
                    yield sse("end", None)
                    return
                if lines:
                    quiet = time.monotonic()
                elif time.monotonic() - quiet > feed.KEEPALIVE_S:
                    quiet = time.monotonic()
                    yield feed.KEEPALIVE
                await asyncio.sleep(0 if lines else TRANSCRIPT_POLL_S)
        finally:
            tailer.close()

    async def _receipt(self, s: sessions.Session) -> dict[str, Any] | None:
        deadline = time.monotonic() + watch.RECEIPT_WAIT_S
        while not s.file("metrics.json").exists() and time.monotonic() < deadline and not self.stopping():
            await asyncio.sleep(TRANSCRIPT_POLL_S)  # the loop writes it soon after the end; no event says when
        return s.metrics()

    async def act(self, request: Request) -> Response:
        action, item = str(request.path_params["action"]), request.path_params.get("item")
        where = f"{action} {item}" if item else action
        if not self.token:
            self._refused(request, request.url.path, "actions need SERVE_TOKEN")
            return JSONResponse({"error": "this server has no SERVE_TOKEN: it takes no actions"}, status_code=403)
        if request.headers.get("x-harness-action") != "1":
            self._refused(request, request.url.path, "no X-Harness-Action header")
            return JSONResponse({"error": "an action needs the header X-Harness-Action: 1"}, status_code=403)
        body = await read_body(request)
        if body is None:
            return JSONResponse({"error": f"the body must be at most {ACTION_BODY_MAX} bytes"}, status_code=413)
        try:
            args = jsonio.loads(body) if body.strip() else {}
        except ValueError:
            args = None
        if not isinstance(args, dict):
            return JSONResponse({"error": "the body must be a JSON object"}, status_code=400)
        try:
            message = await run_in_threadpool(self._do, action, item, args)
        except (queue.QueueError, ValueError) as exc:
            return JSONResponse({"error": str(exc).splitlines()[0] if str(exc) else type(exc).__name__},
                                status_code=409)
        peer = request.client.host if request.client else "?"
        jsonio.audit(self.state_dir, "serve.action", action=action, item=item, peer=peer, result=message)
        wake_loop(self.state_dir)
        return JSONResponse({"ok": True, "message": message, "action": where})

    def _do(self, action: str, item: str | None, args: dict[str, Any]) -> str:
        from harness.pipeline import gate

        if item is not None and action in ("retry", "cancel"):
            store = open_store(self.state_dir)
            return store.retry(item) if action == "retry" else store.cancel(item)
        if item is None and action == "pause":
            seconds = args.get("seconds", 3600)
            if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 1 <= seconds <= 30 * 86400:
                raise ValueError("pause: seconds must be a number from 1 to 2592000")
            reason = str(args.get("reason") or "paused from the dashboard")[:500]
            gate.write_pause(self.state_dir, self.clock() + seconds, reason, by="operator")
            return f"paused for {seconds:g}s: {reason}"
        if item is None and action == "resume":
            return "resumed: spawning allowed" if gate.clear_pause(self.state_dir, "dashboard") else "not paused"
        raise ValueError(f"no such action: {action}")
