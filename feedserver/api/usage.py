"""``GET /v1/usage`` (JSON usage report) and ``GET /usage`` (the finance page).

Needs from the app: ``app.state.metering`` (a ``feedserver.metering.service.Metering``) and the
authenticated principal in ``scope["user"]`` (litestar auth middleware) or
``request.state.principal``. Administrators (``is_admin``, ``role == "admin"`` or ``"admin"`` in
``groups``) see every customer and may filter with ``?customer=``; anyone else sees only their
own customer. ``?month=YYYY-MM`` (UTC) defaults to the current month.
"""

from __future__ import annotations

from typing import Any

import anyio.to_thread
from litestar import Request, Response, get
from litestar.params import FromQuery
from litestar.types import ControllerRouterHandler

from feedserver.errors import Forbidden, Unauthorized
from feedserver.metering.page import USAGE_PAGE
from feedserver.metering.plans import month_of, parse_month
from feedserver.metering.records import utcnow
from feedserver.metering.reports import build_report, to_json
from feedserver.metering.service import Metering


def _principal(request: Request[Any, Any, Any]) -> Any:
    principal = request.scope.get("user") or getattr(request.state, "principal", None)
    if principal is None:
        raise Unauthorized("a bearer token is required")
    return principal


def is_admin(principal: Any) -> bool:
    groups = getattr(principal, "groups", None) or ()
    return bool(
        getattr(principal, "is_admin", False)
        or getattr(principal, "role", None) == "admin"
        or "admin" in groups
    )


@get("/v1/usage")
async def usage_report(
    request: Request[Any, Any, Any],
    month: FromQuery[str | None] = None,
    customer: FromQuery[str | None] = None,
) -> Response[bytes]:
    principal = _principal(request)
    month = month or month_of(utcnow())
    parse_month(month)
    admin = is_admin(principal)
    if not admin:
        if customer not in (None, str(principal.customer_id)):
            raise Forbidden("customers may only read their own usage")
        customer = str(principal.customer_id)
    metering: Metering = request.app.state.metering

    def build() -> bytes:
        directory = metering.directory
        # an admin may name a customer; a customer's own id needs no lookup
        cid = directory.resolve(customer) if admin and customer else customer
        return to_json(build_report(metering.db, month, customer_id=cid,
                                    terms_of=directory.terms))

    body = await anyio.to_thread.run_sync(build)
    return Response(body, media_type="application/json",
                    headers={"Cache-Control": "no-store"})


@get("/usage", include_in_schema=False)
async def usage_page() -> Response[str]:
    return Response(
        USAGE_PAGE, media_type="text/html; charset=utf-8",
        headers={
            "Content-Security-Policy": (
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; "
                "img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'"
            ),
            "Cache-Control": "no-store",
        },
    )


ROUTES: tuple[ControllerRouterHandler, ...] = (usage_report, usage_page)
