"""The web dashboard: its pages, the JSON they read, a session's live transcript,
and the operator's actions (pause, resume, retry an item, cancel an item).

The pages are static files (serve/static/: HTML, CSS and plain JavaScript, no
build step) that read /api/state and follow /events; the charts are drawn by
uPlot, which `make setup` installs from npm into .tools/web (without it the page
says so where the charts would be). Every page is served with a Content-Security-
Policy that allows this server's own scripts only, and every piece of session or
item text reaches the page as JSON and is put into it as text (textContent),
never as HTML: a model's `<script>` is shown, not run.

The token (SERVE_TOKEN): a browser gives it once, on /login, and gets a login
cookie (serve/auth.py: signed, holding nothing of the token), HttpOnly and
SameSite=Strict. An action needs the token (as that cookie or as `Authorization:
Bearer`) and the header `X-Harness-Action: 1` (which no other site's form can
send); a server without a token takes no actions at all (403, audited).

/api/state is computed once for every page that asks within a second (they ask
after every audit event), unless the audit log has grown since: a page never gets
a snapshot older than the last event it has seen, and the store is read once.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import threading
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
from harness.report import sessions
from harness.serve import feed, transcript
from harness.serve.auth import LOGIN_MAX_AGE_S, Logins, refused
from harness.sidecar.model import wake_loop
from harness.store import StoreUnavailableError, open_store, queue

STATIC = Path(__file__).parent / "static"  # scripts and CSS: served to anyone (no data in them)
PAGES = Path(__file__).parent / "pages"  # the HTML: behind the token
VENDOR = Path(__file__).resolve().parents[3] / ".tools" / "web" / "node_modules" / "uplot" / "dist"
STATE_TTL_S = 1.0  # how long one /api/state snapshot serves every page that asks
TRANSCRIPTS_MAX = 32  # transcript streams at once; more are refused (503)
RECENT_EVENTS = 40
RECENT_BYTES = 256 * 1024
SERIES_HOURS = 24
FAILURES_SHOWN = 20
ACTIONS = {("retry", False), ("cancel", False), ("pause", True), ("resume", True)}  # (action, without an item)
ACTION_BODY_MAX = 4096
STREAM_HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}


def recent_events(path: Path, n: int = RECENT_EVENTS, upto: tuple[int, int] | None = None) -> tuple[list[Any], str | None]:
    """The log's last n events, and the feed id just past them (for /events?since=);
    with upto (the feed's inode and position), none past where the feed has read, so
    that the page gets every later line from the feed, and none twice."""
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            size = upto[1] if upto is not None and upto[0] == st.st_ino and upto[1] <= st.st_size else st.st_size
            start = max(0, size - RECENT_BYTES)
            f.seek(start)
            data = f.read(size - start)
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


class Dashboard:
    def __init__(self, state_dir: Path, token: str | None, policy: Policy, heartbeat_s: float, logins: Logins,
                 live_feed: feed.Feed, clock: Callable[[], float] = time.time) -> None:
        self.state_dir, self.token, self.policy, self.heartbeat_s = state_dir, token, policy, heartbeat_s
        self.logins, self.feed, self.clock = logins, live_feed, clock
        self.snapshot: tuple[float, dict[str, Any]] | None = None
        self.snapshot_lock = threading.Lock()
        self.transcripts = 0

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
        return FileResponse(PAGES / name, media_type="text/html", headers={"Cache-Control": "no-store"})

    async def login(self, request: Request) -> Response:
        """The login form's POST: the right token sets a login cookie; a wrong one is audited."""
        body = await read_body(request) or b""
        given = (parse_qs(body.decode("utf-8", "replace")).get("token") or [""])[0]
        if not self.token:
            return PlainTextResponse("this server has no SERVE_TOKEN: it takes no actions\n", status_code=403)
        if not self.logins.is_token(given):
            refused(self.state_dir, request, "/login", "wrong token" if given else "no token")
            return RedirectResponse("/login?wrong=1", status_code=303)
        response = RedirectResponse("/", status_code=303)
        response.set_cookie(self.logins.cookie, self.logins.issue(), max_age=LOGIN_MAX_AGE_S, httponly=True,
                            samesite="strict", secure=request.url.scheme == "https")
        return response

    async def logout(self, request: Request) -> Response:
        self.logins.revoke(request.cookies.get(self.logins.cookie, ""))
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(self.logins.cookie, httponly=True, samesite="strict")
        return response

    def state(self, request: Request) -> Response:
        """Everything the dashboard shows (a plain def: run on a thread), computed at
        most once per STATE_TTL_S; one computation at a time."""
        with self.snapshot_lock:
            now, taken = self.clock(), time.monotonic()
            if self.snapshot is None or taken - self.snapshot[0] >= STATE_TTL_S or self.snapshot[0] < self.feed.last_line_at:
                try:
                    self.snapshot = (taken, self._collect(now))
                except (queue.QueueError, OSError, sqlite3.Error) as exc:
                    return JSONResponse({"error": f"the store cannot be read: {exc}"}, status_code=503)
            snap = self.snapshot[1]
        # now: the server's clock as it answers (the page's ages); at: when the snapshot was taken
        return JSONResponse({**snap, "now": self.clock()}, headers={"Cache-Control": "no-store"})

    def _collect(self, now: float) -> dict[str, Any]:
        from harness.report import status

        snap = status.collect(self.state_dir, self.policy, now, self.heartbeat_s)
        store = open_store(self.state_dir)
        attempts = store.attempts(since=now - SERIES_HOURS * 3600)
        snap["failures"] = failures(store.items(["quarantined"]), attempts)
        snap["series"] = series(attempts, now)
        snap["events"], snap["feed_id"] = recent_events(self.state_dir / "events.jsonl", upto=self.feed.position())
        snap["actions"] = bool(self.token)
        snap["charts"] = VENDOR.is_dir()
        return snap

    def _session(self, request: Request) -> sessions.Session | None:
        sid = str(request.path_params["sid"])
        if not sessions.SAFE_REF_RE.fullmatch(sid):
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
        if self.transcripts >= TRANSCRIPTS_MAX:
            return JSONResponse({"error": f"{TRANSCRIPTS_MAX} transcripts are being followed already"},
                                status_code=503)
        return StreamingResponse(self._counted(transcript.follow(s, self.feed.stopping)),
                                 media_type="text/event-stream", headers=STREAM_HEADERS)

    async def _counted(self, stream: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        self.transcripts += 1
        try:
            async for chunk in stream:
                yield chunk
        finally:
            self.transcripts -= 1

    async def act(self, request: Request) -> Response:
        action, item = str(request.path_params["action"]), request.path_params.get("item")
        if not self.token:
            refused(self.state_dir, request, request.url.path, "actions need SERVE_TOKEN")
            return JSONResponse({"error": "this server has no SERVE_TOKEN: it takes no actions"}, status_code=403)
        if request.headers.get("x-harness-action") != "1":
            refused(self.state_dir, request, request.url.path, "no X-Harness-Action header")
            return JSONResponse({"error": "an action needs the header X-Harness-Action: 1"}, status_code=403)
        if (action, item is None) not in ACTIONS:
            return JSONResponse({"error": f"no such action: {request.url.path[:200]}"}, status_code=404)
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
            self.snapshot = None  # the next /api/state shows what the action changed
        except (StoreUnavailableError, OSError, sqlite3.Error) as exc:
            return JSONResponse({"error": f"the store cannot be written: {one_line(exc)}"}, status_code=503)
        except (queue.QueueError, ValueError) as exc:
            return JSONResponse({"error": one_line(exc)}, status_code=409)
        return JSONResponse({"ok": True, "message": message + self._audited(request, action, item, message),
                             "action": f"{action} {item}" if item else action})

    def _audited(self, request: Request, action: str, item: str | None, message: str) -> str:
        """The action's audit line, and the loop woken; a line that cannot be written
        is said on stderr and in the answer (the action itself is done)."""
        peer = request.client.host if request.client else "?"
        try:
            jsonio.audit(self.state_dir, "serve.action", action=action, item=item, peer=peer, result=message)
        except OSError as exc:
            print(f"harness: serve: the audit line of {action} was not written: {exc}", file=sys.stderr, flush=True)
            return f" (its audit line was not written: {one_line(exc)})"
        finally:
            wake_loop(self.state_dir)
        return ""

    def _do(self, action: str, item: str | None, args: dict[str, Any]) -> str:
        from harness.pipeline import gate

        if item is not None:
            store = open_store(self.state_dir)
            return store.retry(item) if action == "retry" else store.cancel(item)
        if action == "pause":
            seconds = args.get("seconds", 3600)
            if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 1 <= seconds <= 30 * 86400:
                raise ValueError("pause: seconds must be a number from 1 to 2592000")
            reason = str(args.get("reason") or "paused from the dashboard")[:500]
            gate.write_pause(self.state_dir, self.clock() + seconds, reason, by="operator")
            return f"paused for {seconds:g}s: {reason}"
        return "resumed: spawning allowed" if gate.clear_pause(self.state_dir, "operator") else "not paused"


def one_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
