"""``GET /v1/usage``: the JSON usage report (the web portal at ``/usage`` is
``feedserver.api.portal``).

The report route authenticates with the API's ``principal`` dependency and reads the ledger
through ``app.state.services.db``; plans by customer come from ``app.state.metering.directory``
when the app keeps its ``Metering`` there, else from ``customer_directory(db)``. Administrators
(``is_admin``) see every customer and may pick one with ``?customer=<id or name>``; anyone else
sees only their own customer. ``?month=YYYY-MM`` (UTC) defaults to the current month.
"""

from __future__ import annotations

from typing import Annotated, Any

import anyio.to_thread
from litestar import Request, Response, get
from litestar.di import NamedDependency
from litestar.openapi import ResponseSpec
from litestar.params import Parameter
from litestar.types import ControllerRouterHandler

from feedserver.api.auth import PRINCIPAL
from feedserver.api.problems import problem_specs
from feedserver.api.services import services_of
from feedserver.errors import Forbidden, Unavailable
from feedserver.metering.customers import CustomerDirectory, customer_directory
from feedserver.metering.plans import MONTH_PATTERN, month_of, parse_month
from feedserver.metering.records import utcnow
from feedserver.metering.reports import UsageReport, build_report, to_json


def is_admin(principal: Any) -> bool:
    groups = getattr(principal, "groups", None) or ()
    return bool(
        getattr(principal, "is_admin", False)
        or getattr(principal, "role", None) == "admin"
        or "admin" in groups
    )


@get("/v1/usage", dependencies=PRINCIPAL, responses={
    **problem_specs(400, 401, 403, 404, 422, 429, 503),
    200: ResponseSpec(UsageReport, description="Usage and invoice lines per customer",
                      generate_examples=False)})
async def usage_report(
    request: Request[Any, Any, Any],
    # Any: callers of the report only need ``is_admin`` / ``customer_id`` (tests inject a
    # minimal principal that the full Principal protocol check would reject).
    principal: NamedDependency[Any],
    month: Annotated[str | None, Parameter(
        pattern=MONTH_PATTERN, description="YYYY-MM (UTC); default: the current month")] = None,
    customer: Annotated[str | None, Parameter(
        max_length=255, description="admins only: a customer id or name")] = None,
) -> Response[bytes]:
    month = month or month_of(utcnow())
    parse_month(month)
    admin = is_admin(principal)
    if not admin:
        if customer not in (None, str(principal.customer_id)):
            raise Forbidden("customers may only read their own usage")
        customer = str(principal.customer_id)
    db = services_of(request).db
    if db is None:
        raise Unavailable("usage reports need the database")
    metering = getattr(request.app.state, "metering", None)

    def build() -> bytes:
        directory: CustomerDirectory = (
            metering.directory if metering is not None else customer_directory(db)
        )
        # an admin may name a customer; a customer's own id needs no lookup
        cid = directory.resolve(customer) if admin and customer else customer
        return to_json(build_report(db, month, customer_id=cid, terms_of=directory.terms,
                                    name_of=directory.name))

    body = await anyio.to_thread.run_sync(build)
    return Response(body, media_type="application/json",
                    headers={"Cache-Control": "no-store"})


ROUTES: tuple[ControllerRouterHandler, ...] = (usage_report,)
