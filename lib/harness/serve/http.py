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
    /healthz    "ok"
"""

from __future__ import annotations

import hmac
import ipaddress
import os
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from harness import jsonio
from harness.store import queue

TOKEN_ENV = "HARNESS_SERVE_TOKEN"


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


class TokenCheck(BaseHTTPMiddleware):
    def __init__(self, app: Any, token: str, state_dir: Path) -> None:
        super().__init__(app)
        self.token = token.encode()
        self.state_dir = state_dir

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        given = request.headers.get("authorization", "")
        scheme, _, value = given.partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), self.token):
            return await call_next(request)
        peer = request.client.host if request.client else "?"
        jsonio.audit(self.state_dir, "serve.refused", path=request.url.path, peer=peer,
                     reason="wrong token" if given else "no token")
        return PlainTextResponse("a token is required (Authorization: Bearer ...)\n", status_code=401,
                                 headers={"WWW-Authenticate": "Bearer"})


def app(state_dir: Path, token: str | None) -> Starlette:
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    from harness.serve.metrics import registry

    reg = registry(state_dir)

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(reg), media_type=CONTENT_TYPE_LATEST)

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok\n")

    middleware = [Middleware(TokenCheck, token=token, state_dir=state_dir)] if token else []
    return Starlette(routes=[Route("/metrics", metrics), Route("/healthz", healthz)], middleware=middleware)


def serve(state_dir: Path, addr: str) -> int:
    import uvicorn

    host, port = parse_addr(addr)
    token = os.environ.get(TOKEN_ENV) or None
    if not is_loopback(host) and not token:
        raise ServeError(f"serving on {host} (not loopback) needs SERVE_TOKEN; refused")
    if token is not None and len(token) < 16:
        raise ServeError("SERVE_TOKEN must be at least 16 characters")
    jsonio.audit(state_dir, "serve.started", addr=f"{host}:{port}", token=bool(token), pid=os.getpid())
    uvicorn.run(app(state_dir, token), host=host, port=port, log_level="warning", access_log=False,
                server_header=False)
    jsonio.audit(state_dir, "serve.stopped", addr=f"{host}:{port}")
    return 0
