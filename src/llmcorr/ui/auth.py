"""Who may use the dashboard. Without a token (loopback only) anyone on this machine may, but only through a
localhost Host header and never from another site's form or frame; with a token every request must carry it."""

from __future__ import annotations

import ipaddress
import secrets
from urllib.parse import urlencode, urlsplit

from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

COOKIE = "llmcorr_ui_token"
SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
# on every response that passes SameOrigin: never inside another site's frame (a framed page could be clicked on
# unawares), and never a file's type guessed from its content
GUARD_HEADERS = [
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", b"frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"),
]


class TokenAuth:
    """Every request needs the token: `Authorization: Bearer T`, the HttpOnly cookie, or `?token=T` once (which
    sets the cookie and, for a page, redirects to the same address without the token)."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token

    def _matches(self, given: str | None) -> bool:
        return given is not None and secrets.compare_digest(given.encode(), self.token.encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        header = request.headers.get("authorization", "")
        bearer = header[7:].strip() if header[:7].lower() == "bearer " else None
        if self._matches(bearer) or self._matches(request.cookies.get(COOKIE)):
            await self.app(scope, receive, send)
            return
        if self._matches(request.query_params.get("token")):
            if request.method == "GET":
                rest = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
                response: Response = RedirectResponse(str(request.url.replace(query=urlencode(rest))), 303)
                _set_cookie(response, self.token)
                await response(scope, receive, send)
                return

            async def send_with_cookie(message: Message) -> None:
                if message["type"] == "http.response.start":
                    cookie = Response()
                    _set_cookie(cookie, self.token)
                    cookies = [(k, v) for k, v in cookie.raw_headers if k.lower() == b"set-cookie"]
                    message["headers"] = [*message.get("headers", []), *cookies]  # not its own Content-Length
                await send(message)

            await self.app(scope, receive, send_with_cookie)
            return
        response = PlainTextResponse(
            "401 Unauthorized: this dashboard needs its token; open the address `llmcorr ui` printed (…/?token=…)\n",
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )
        await response(scope, receive, send)


def _set_cookie(response: Response, token: str) -> None:
    response.set_cookie(COOKIE, token, httponly=True, samesite="strict", path="/")


def _cross_site(request: Request) -> bool:
    """Sent by another site's page: its Origin (else its Referer) names another host than the one addressed, or,
    with neither, the browser says so (Sec-Fetch-Site). A client that is not a browser sends none of them."""
    host = request.headers.get("host", "").lower()
    source = request.headers.get("origin") or request.headers.get("referer")
    if source is not None:
        return urlsplit(source).netloc.lower() != host  # "Origin: null" (a sandboxed or file: page) too
    return request.headers.get("sec-fetch-site", "") in ("cross-site", "same-site")


class SameOrigin:
    """Refuse a change (POST…) sent by another site's page (CSRF), and keep pages out of other sites' frames."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if scope["method"] not in SAFE_METHODS and _cross_site(Request(scope)):
            response = PlainTextResponse("403 Forbidden: a change sent from another site's page\n", 403)
            await response(scope, receive, send)
            return

        async def send_guarded(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *GUARD_HEADERS]
            await send(message)

        await self.app(scope, receive, send_guarded)


def _loopback_client(scope: Scope) -> bool:
    """The request comes from this machine (a loopback address, or a Unix socket)."""
    client = scope.get("client")
    if not client:
        return True
    try:
        address = ipaddress.ip_address(client[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


class LocalOnly:
    """Without a token, answer only requests from this machine (401 for any other client, should the server listen
    beyond loopback) addressed to it by a loopback name: a page elsewhere whose domain was pointed at 127.0.0.1 (DNS
    rebinding) is refused."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            host = urlsplit("//" + Request(scope).headers.get("host", "")).hostname
            if not _loopback_client(scope):
                response: Response = PlainTextResponse(
                    "401 Unauthorized: this dashboard has no token, so it answers only on this machine; start it "
                    "with --token to share it\n",
                    status_code=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
                await response(scope, receive, send)
                return
            if host not in LOCAL_HOSTS:
                response = PlainTextResponse(
                    "400 Bad Request: without a token this dashboard answers only to 127.0.0.1 or localhost\n", 400
                )
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)
