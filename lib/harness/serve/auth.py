"""Who may ask the server what: the token, the dashboard's logins, the headers every
answer carries.

With SERVE_TOKEN set, every request but the login form and the static files (CSS
and scripts: no data) must carry the token, as `Authorization: Bearer <token>`, or a
login cookie. A login cookie is made by /login for a browser that gave the token:
its issue time and a random nonce, signed with a key this process drew at its start.
It holds nothing of the token (so a leaked cookie gives no way to guess it), ends
after LOGIN_MAX_AGE_S or at the server's restart, and /logout revokes it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from pathlib import Path

from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from harness import jsonio

LOGIN_MAX_AGE_S = 7 * 86400
OPEN_PATHS = ("/login",)
OPEN_PREFIX = "/static/"
SECURITY_HEADERS = {
    "content-security-policy": "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
}


class Logins:
    """The dashboard's login cookies: issued, checked, revoked."""

    def __init__(self, token: str | None, cookie: str, clock: Callable[[], float] = time.time) -> None:
        self.token, self.cookie, self.clock = token, cookie, clock
        self.key = secrets.token_bytes(32)
        self.revoked: set[str] = set()

    def _sign(self, body: str) -> str:
        return hmac.new(self.key, body.encode(), hashlib.sha256).hexdigest()

    def issue(self) -> str:
        body = f"{int(self.clock())}.{secrets.token_hex(12)}"
        return f"{body}.{self._sign(body)}"

    def valid(self, value: str) -> bool:
        issued, _, rest = value.partition(".")
        nonce, _, mac = rest.partition(".")
        if not (issued.isdigit() and nonce and mac) or value in self.revoked:
            return False
        if not hmac.compare_digest(mac.encode(), self._sign(f"{issued}.{nonce}").encode()):
            return False
        return 0 <= self.clock() - int(issued) < LOGIN_MAX_AGE_S

    def revoke(self, value: str) -> None:
        if self.valid(value):
            self.revoked.add(value)

    def is_token(self, given: str) -> bool:
        return bool(self.token) and hmac.compare_digest(given.encode(), (self.token or "").encode())

    def authorized(self, request: Request) -> bool:
        """The request carries the token: as a Bearer header, or as a login cookie."""
        scheme, _, value = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and self.is_token(value.strip()):
            return True
        return self.valid(request.cookies.get(self.cookie, ""))


def refused(state_dir: Path, request: Request, path: str, reason: str) -> None:
    """A refusal's audit line: the path and the peer, never what was given."""
    peer = request.client.host if request.client else "?"
    jsonio.audit(state_dir, "serve.refused", path=path[:200], peer=peer, reason=reason)


class TokenCheck:
    """Every request carries the token (Logins.authorized), or gets 401 and an audit
    line; a browser asking for a page is sent to /login instead. A plain ASGI
    middleware: it never buffers a streaming response."""

    def __init__(self, app: ASGIApp, logins: Logins, state_dir: Path) -> None:
        self.app, self.logins, self.state_dir = app, logins, state_dir

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS or scope["path"].startswith(OPEN_PREFIX):
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        if self.logins.authorized(request):
            await self.app(scope, receive, send)
            return
        given = request.headers.get("authorization") or request.cookies.get(self.logins.cookie)
        refused(self.state_dir, request, request.url.path, "wrong token" if given else "no token")
        response: Response
        if request.method == "GET" and "text/html" in request.headers.get("accept", ""):
            response = RedirectResponse("/login", status_code=303)
        else:
            response = PlainTextResponse("a token is required (Authorization: Bearer ...)\n", status_code=401,
                                         headers={"WWW-Authenticate": "Bearer"})
        await response(scope, receive, send)


class SecurityHeaders:
    """The same strict headers on every answer (pages, scripts, JSON, refusals):
    no inline script runs, nothing is framed, nothing is sniffed as another type."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                headers += [(k.encode(), v.encode()) for k, v in SECURITY_HEADERS.items() if k.encode() not in present]
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)
