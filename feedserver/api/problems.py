"""RFC 9457 problem+json for every error the API can return.

One handler maps (1) ``FeedError`` subclasses (their ``status``/``title``/``slug`` and the
JSON-safe parts of ``extra``), (2) litestar's own HTTP errors (404, 405, 413, validation) and
(3) anything unexpected (500, logged with a traceback, nothing internal in the body). The body
also carries WME's ``message`` (= ``detail``) so WME clients keep working.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec
from litestar import Request, Response
from litestar.exceptions import HTTPException, ValidationException
from litestar.openapi import ResponseSpec

from feedserver.errors import FeedError

PROBLEM_TYPE = "application/problem+json"
TYPE_BASE = "https://feedserver.dev/problems/"
log = logging.getLogger("feedserver.api")

_LITESTAR_SLUGS = {
    400: ("bad-request", "Bad request"),
    401: ("unauthorized", "Unauthorized"),
    403: ("forbidden", "Forbidden"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    413: ("payload-too-large", "Payload too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
    422: ("invalid-parameter", "Invalid parameter"),
    429: ("rate-limited", "Too many requests"),
}
_WWW_AUTHENTICATE = 'Bearer realm="feedserver", charset="UTF-8"'


class Problem(msgspec.Struct, kw_only=True):
    """RFC 9457 problem details (OpenAPI documentation of every error body). Errors may append
    their own JSON-safe fields (``identifier``, ``quota``, ``retry_after``...)."""

    type: str
    title: str
    status: int
    detail: str
    instance: str
    message: str  # = detail, for WME clients


_DESCRIPTIONS = {
    400: "Malformed request (bad JSON, hostile Range)", 401: "Missing or invalid credentials",
    403: "The plan does not cover this feed, project or namespace", 404: "Not found",
    406: "The format asked for (``format``) is not built for this resource",
    413: "Request body too large", 416: "Range not satisfiable",
    422: "Invalid parameter", 429: "Rate limit or monthly quota reached",
}


def problem_specs(*statuses: int) -> dict[int, ResponseSpec]:
    """OpenAPI ``responses`` for the given error statuses, all problem+json."""
    return {
        status: ResponseSpec(Problem, description=_DESCRIPTIONS.get(status, "Error"),
                             media_type=PROBLEM_TYPE, generate_examples=False)
        for status in statuses
    }


FEED_ERRORS = problem_specs(400, 401, 403, 404, 413, 422, 429)


def feed_responses(kind: Any, description: str) -> dict[int, ResponseSpec]:
    """OpenAPI ``responses`` of an entitled feed's JSON route: ``kind`` at 200, and the
    problems every such route may answer (403: outside the plan)."""
    return {**FEED_ERRORS, 200: ResponseSpec(kind, description=description,
                                             generate_examples=False)}


def _safe(value: object) -> bool:
    return isinstance(value, str | int | float | bool) and not (
        isinstance(value, str) and len(value) > 512
    )


def problem_body(status: int, slug: str, title: str, detail: str, instance: str,
                 extra: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": TYPE_BASE + slug, "title": title, "status": status, "detail": detail,
        "instance": instance, "message": detail,
    }
    for key, value in (extra or {}).items():
        if key not in body and _safe(value):
            body[key] = value
    return body


def problem_response(status: int, slug: str, title: str, detail: str, instance: str, *,
                     extra: dict[str, Any] | None = None,
                     headers: dict[str, str] | None = None) -> Response[dict[str, Any]]:
    return Response(
        problem_body(status, slug, title, detail, instance, extra),
        status_code=status, media_type=PROBLEM_TYPE, headers=headers or {},
    )


def _feed_error_headers(exc: FeedError) -> dict[str, str]:
    headers: dict[str, str] = {}
    if exc.status == 401:
        headers["WWW-Authenticate"] = _WWW_AUTHENTICATE
    if exc.status == 416 and isinstance(exc.extra.get("size"), int):
        headers["Content-Range"] = f"bytes */{exc.extra['size']}"
    retry = exc.extra.get("retry_after")
    if exc.status in (429, 503) and isinstance(retry, int | float):
        headers["Retry-After"] = str(max(1, int(retry + 0.999)))
    extra_headers = exc.extra.get("headers")
    if isinstance(extra_headers, dict):
        headers.update({str(k): str(v) for k, v in extra_headers.items()})
    return headers


def _instance(request: Request[Any, Any, Any]) -> str:
    # The path only: never echo a query string that may carry credentials.
    return str(request.scope.get("path", ""))[:512]


def handle_exception(request: Request[Any, Any, Any], exc: Exception) -> Response[Any]:
    """The app's single exception handler."""
    instance = _instance(request)
    if isinstance(exc, FeedError):
        if exc.status >= 500:
            log.error("%s on %s: %s", type(exc).__name__, instance, exc.detail)
        return problem_response(exc.status, exc.slug, exc.title, exc.detail, instance,
                                extra=exc.extra, headers=_feed_error_headers(exc))
    if isinstance(exc, HTTPException):
        # A typed parameter that does not validate is an invalid parameter (422), as ours are.
        status = 422 if isinstance(exc, ValidationException) else exc.status_code
        slug, title = _LITESTAR_SLUGS.get(status, ("http-error", "HTTP error"))
        detail = str(exc.detail) if exc.detail else title
        if isinstance(exc, ValidationException) and isinstance(exc.extra, list) and exc.extra:
            detail = "; ".join(
                f"{e.get('key', '')}: {e.get('message', '')}".strip(": ")
                for e in exc.extra if isinstance(e, dict)
            )[:1000] or detail
        headers = {k: v for k, v in (exc.headers or {}).items() if k.lower() == "allow"}
        if status == 401:
            headers["WWW-Authenticate"] = _WWW_AUTHENTICATE
        if status >= 500:
            log.error("HTTP %s on %s: %s", status, instance, detail, exc_info=exc)
            detail = "Internal error, please try again later."
        return problem_response(status, slug, title, detail, instance, headers=headers)
    log.exception("unexpected error on %s", instance)
    return problem_response(500, "internal", "Internal error",
                            "Internal error, please try again later.", instance)
