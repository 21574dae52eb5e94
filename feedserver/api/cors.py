"""CORS as WME sends it (gin-contrib/cors with all origins, GET/POST/OPTIONS/HEAD, any header).

``settings.cors_allow_origins`` decides: ``["*"]`` (the default, as WME) answers every origin
with ``Access-Control-Allow-Origin: *``; a list of origins echoes an origin on it (with
``Vary: Origin``); an empty list turns CORS off. Only requests with an ``Origin`` header get
CORS headers. A preflight (``OPTIONS`` with ``Access-Control-Request-Method``) is answered
here with 204, before authentication, as WME's middleware does.

``cors_headers`` is pure; ``cors_middleware`` wraps an ASGI app. ``build_app`` wraps the whole
application once (``FeedApp``), so every answer carries the headers, 404s and 405s of unknown
paths included, except the web portal's pages (``/usage``...): a same-origin app signed in
with a session cookie, which CORS gives nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from litestar.enums import ScopeType
from litestar.types import (
    ASGIApp,
    HTTPResponseBodyEvent,
    HTTPResponseStartEvent,
    Message,
    Receive,
    Scope,
    Send,
)

METHODS = "GET,POST,OPTIONS,HEAD"
Headers = list[tuple[bytes, bytes]]


def cors_headers(allowed: Sequence[str], origin: str | None, *, preflight: bool,
                 request_headers: str | None = None) -> Headers:
    """The CORS response headers for a request from ``origin`` (none when not allowed)."""
    if not origin or not allowed:
        return []
    if "*" in allowed:
        out: Headers = [(b"access-control-allow-origin", b"*")]
    elif origin in allowed:
        out = [(b"access-control-allow-origin", origin.encode("latin-1")),
               (b"vary", b"Origin")]
    else:
        return []
    if preflight:
        out.append((b"access-control-allow-methods", METHODS.encode()))
        # WME allows "*"; a browser sending credentials needs the names echoed instead.
        out.append((b"access-control-allow-headers",
                    (request_headers or "*").encode("latin-1")))
    return out


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def _excluded(path: str, prefixes: Sequence[str]) -> bool:
    return any(path == p or path.startswith(p + "/") for p in prefixes)


def cors_middleware(allowed: Sequence[str], *, exclude: Sequence[str] = ()
                    ) -> Callable[[ASGIApp], ASGIApp]:
    """ASGI middleware adding ``cors_headers`` for the ``allowed`` origins
    (``settings.cors_allow_origins``) to every answer, except under the ``exclude`` path
    prefixes."""

    def wrap(app: ASGIApp) -> ASGIApp:
        async def middleware(scope: Scope, receive: Receive, send: Send) -> None:
            origin = _header(scope, b"origin") if scope["type"] == ScopeType.HTTP else None
            if origin is None or _excluded(str(scope.get("path", "")), exclude):
                await app(scope, receive, send)
                return
            wanted = _header(scope, b"access-control-request-method")
            if scope.get("method") == "OPTIONS" and wanted is not None:
                headers = cors_headers(allowed, origin, preflight=True,
                                       request_headers=_header(
                                           scope, b"access-control-request-headers"))
                if headers:
                    start: HTTPResponseStartEvent = {
                        "type": "http.response.start", "status": 204,
                        "headers": [*headers, (b"content-length", b"0")]}
                    await send(start)
                    body: HTTPResponseBodyEvent = {"type": "http.response.body",
                                                   "body": b"", "more_body": False}
                    await send(body)
                    return
            extra = cors_headers(allowed, origin, preflight=False)

            async def send_with_cors(message: Message) -> None:
                if message["type"] == "http.response.start" and extra:
                    message = {**message, "headers": [*message.get("headers", ()), *extra]}
                await send(message)

            await app(scope, receive, send_with_cors)

        return middleware

    return wrap
