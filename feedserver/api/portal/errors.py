"""Errors on portal pages are pages too: a signed-out visitor is sent to the login form (and
back afterwards), anything else is an HTML error page with the same status and message the API
would give as problem+json. Unexpected errors are logged and shown without internals."""

from __future__ import annotations

import logging
import math
from typing import Any
from urllib.parse import quote

from litestar import Request, Response
from litestar.exceptions import HTTPException
from litestar.response import Redirect

from feedserver.api.portal import urls
from feedserver.api.portal.context import LoginRequired
from feedserver.api.portal.render import page
from feedserver.api.portal.session import clear_session
from feedserver.errors import FeedError

log = logging.getLogger("feedserver.api.portal")
HEADINGS = {400: "That request was not understood", 401: "Please sign in",
            403: "Not allowed", 404: "Not found", 409: "Nothing to change",
            422: "Please check what you entered", 429: "Too many attempts",
            503: "Temporarily unavailable"}


def portal_error(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    if isinstance(exc, LoginRequired):
        path = str(request.scope.get("path", ""))
        target = urls.LOGIN
        if request.method == "GET" and path.startswith(urls.BASE + "/"):
            query = request.scope.get("query_string", b"").decode("latin-1")
            target += "?next=" + quote(path + (f"?{query}" if query else ""), safe="")
        elif request.cookies.get("fs_portal"):
            target += "?notice=expired"
        response: Response[Any] = Redirect(target, status_code=303)
        clear_session(request, response)
        return response
    if isinstance(exc, FeedError):
        status, detail = exc.status, exc.detail
        if status >= 500:
            log.error("%s on %s: %s", type(exc).__name__, request.scope.get("path"), detail)
    elif isinstance(exc, HTTPException):
        status = exc.status_code
        detail = "The form was incomplete or malformed." if status == 400 else str(exc.detail)
    else:
        log.exception("unexpected error on %s", request.scope.get("path"))
        status, detail = 500, "Something went wrong on our side; please try again later."
    heading = HEADINGS.get(status, "Something went wrong")
    response = page("error.html", status=status, title=heading, heading=heading,
                    detail=detail, code=status)
    retry = exc.extra.get("retry_after") if isinstance(exc, FeedError) else None
    if isinstance(retry, int | float):
        response.headers["Retry-After"] = str(max(1, math.ceil(retry)))
    return response
