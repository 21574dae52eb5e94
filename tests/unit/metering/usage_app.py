"""A minimal litestar app around the usage routes, for tests until ``create_app`` mounts them:
bearer tokens map to principals, FeedError maps to problem+json as the API edge does."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from litestar import Litestar, Request, Response
from litestar.middleware import ASGIMiddleware
from litestar.types import ASGIApp, Receive, Scope, Send

from feedserver.api.usage import ROUTES
from feedserver.errors import FeedError
from feedserver.metering.service import Metering


def problem(request: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    assert isinstance(exc, FeedError)
    return Response({"type": exc.slug, "title": exc.title, "status": exc.status,
                     "detail": exc.detail}, status_code=exc.status,
                    media_type="application/problem+json")


def usage_app(metering: Metering, tokens: Mapping[str, Any]) -> Litestar:
    class Bearer(ASGIMiddleware):
        async def handle(self, scope: Scope, receive: Receive, send: Send,
                         next_app: ASGIApp) -> None:
            auth = dict(scope.get("headers", [])).get(b"authorization", b"").decode()
            principal = tokens.get(auth.removeprefix("Bearer ").strip())
            if principal is not None:
                scope["user"] = principal
            await next_app(scope, receive, send)

    app = Litestar(route_handlers=list(ROUTES), middleware=[Bearer()],
                   exception_handlers={FeedError: problem})
    app.state.metering = metering
    return app
