"""scripts/serve.sh: the harness's HTTP server (Starlette on uvicorn).

Why this stack: Starlette is a small, well-kept ASGI toolkit whose streaming
responses carry server-sent events without a framework around them; uvicorn runs it
in one process with asyncio, so a slow client costs a coroutine, not a thread.

Loopback by default. Any other address needs SERVE_TOKEN (the server refuses to
start without one); with a token configured every request must carry it, as
`Authorization: Bearer <token>`. A request without it, or with a wrong one, is
refused with 401, and the refusal goes to the audit log (the address, never the
token). The token comes from the environment (HARNESS_SERVE_TOKEN), never from
the command line (it would show in ps) and is never written anywhere.

    /metrics    Prometheus text format (serve/metrics.py)
    /events     the audit log as server-sent events, resumable (serve/feed.py)
    /healthz    "ok"
    /           the dashboard; /session/<id> a session's page (serve/dashboard.py)
    /api/...    the JSON the pages read, and the actions (POST, token only)
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import sqlite3
import sys
from collections.abc import AsyncIterator, Iterable, Iterator
from pathlib import Path

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from harness import jsonio
from harness.pipeline.policy import Policy
from harness.serve.auth import Logins, SecurityHeaders, TokenCheck
from harness.serve.dashboard import Dashboard
from harness.serve.feed import Feed
from harness.sidecar.model import proc_start
from harness.store import Store, open_store, queue

TOKEN_ENV = "HARNESS_SERVE_TOKEN"
GRACE_S = 2


class ServeError(queue.QueueError):
    """A server that must not start as configured (one line, exit 2)."""


def parse_addr(addr: str) -> tuple[str, int]:
    """host:port (an IPv6 host in brackets); the port must be given."""
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ServeError(f"SERVE_ADDR must be host:port, got {addr!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class FeedCollector(Collector):
    """This server's own feed: clients connected, clients dropped for falling behind."""

    def __init__(self, feed: Feed) -> None:
        self.feed = feed

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily("harness_feed_clients", "Clients following /events.", value=len(self.feed.clients))
        yield CounterMetricFamily("harness_feed_dropped_clients", "Feed clients dropped for falling behind.",
                                  value=self.feed.dropped)


def app(state_dir: Path, token: str | None, policy: Policy | None = None, heartbeat_s: float = 10.0,
        port: int = 0) -> Starlette:
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    from harness.serve.metrics import registry

    reg = registry(state_dir)

    def metrics(request: Request) -> Response:  # a plain def: Starlette runs it on a thread, off the event loop
        try:
            return Response(generate_latest(reg), media_type=CONTENT_TYPE_LATEST)
        except (queue.QueueError, OSError, sqlite3.Error) as exc:  # the store cannot be read now: one line
            return PlainTextResponse(f"the store cannot be read: {exc}\n", status_code=503)

    async def healthz(request: Request) -> Response:
        if not feed.healthy:
            return PlainTextResponse("the feed's tailer has stopped\n", status_code=503)
        return PlainTextResponse("ok\n")

    feed = Feed(state_dir / "events.jsonl")
    stores: list[Store] = []  # one connection, opened at the first look

    def live() -> Iterable[str]:
        if not stores:
            stores.append(open_store(state_dir))
        return stores[0].live().keys()

    feed.live = live
    reg.register(FeedCollector(feed))

    async def events(request: Request) -> Response:
        since = request.headers.get("last-event-id") or request.query_params.get("since")
        return StreamingResponse(feed.stream(since), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await feed.start()
        try:
            yield
        finally:
            await feed.stop()
            jsonio.audit(state_dir, "serve.stopped", pid=os.getpid())

    logins = Logins(token, f"harness_session_{port}")
    middleware = [Middleware(SecurityHeaders)]
    if token:
        middleware.append(Middleware(TokenCheck, logins=logins, state_dir=state_dir))
    else:  # loopback without a token: only loopback names, so that no web page can rebind a name to it
        middleware.append(Middleware(TrustedHostMiddleware, allowed_hosts=["127.0.0.1", "localhost", "[::1]", "::1"]))
    dashboard = Dashboard(state_dir, token, policy or Policy.from_pairs([]), heartbeat_s, logins, feed)
    routes = [Route("/metrics", metrics), Route("/healthz", healthz), Route("/events", events), *dashboard.routes()]
    application = Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
    application.state.feed = feed
    return application


def serve(state_dir: Path, addr: str, loop_pid: int = 0, loop_start: str = "", policy: Policy | None = None,
          heartbeat_s: float = 10.0) -> int:
    """Serves until SIGINT or SIGTERM, or (started by a loop) until that loop is gone."""
    import uvicorn

    host, port = parse_addr(addr)
    token = os.environ.get(TOKEN_ENV) or None
    if not is_loopback(host) and not token:
        raise ServeError(f"serving on {host} (not loopback) needs SERVE_TOKEN; refused")
    if token is not None and len(token) < 16:
        raise ServeError("SERVE_TOKEN must be at least 16 characters")
    jsonio.audit(state_dir, "serve.started", addr=f"{host}:{port}", token=bool(token), pid=os.getpid())
    application = app(state_dir, token, policy, heartbeat_s, port)
    server = uvicorn.Server(uvicorn.Config(application, host=host, port=port, log_level="warning", access_log=False,
                                           server_header=False, timeout_graceful_shutdown=GRACE_S))
    def stopping() -> bool:  # a stop ends the feed's streams first; a loop that is gone takes its server along
        if loop_pid and not server.should_exit:
            now = proc_start(loop_pid)
            if now is None or (loop_start and now != loop_start):
                print(f"harness: serve: loop {loop_pid} is gone; stopping", file=sys.stderr, flush=True)
                server.should_exit = True
        return bool(server.should_exit)

    application.state.feed.stopping = stopping
    server.run()  # uvicorn raises a stop's signal again once it has shut down: the lifespan says "stopped"
    return 0
