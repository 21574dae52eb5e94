"""``GET /v1/usage``: the JSON usage report (the web portal at ``/usage`` is
``feedserver.api.portal``).

The route authenticates with the API's ``principal`` dependency and reads the ledger in the
app's database; plans by customer come from the app's ``Metering`` (its directory) when it
runs one, else from ``customer_directory(db)``. Administrators (``Principal.is_admin``) see
every customer and may pick one with ``?customer=<id or name>``; anyone else sees only their
own customer. ``?month=YYYY-MM`` (UTC) defaults to the current month.
"""

from __future__ import annotations

from typing import Annotated

import anyio.to_thread
from litestar import Response, Router, get
from litestar.openapi import ResponseSpec
from litestar.params import Parameter

from feedserver.api.auth import PRINCIPAL, PrincipalDep
from feedserver.api.problems import problem_specs
from feedserver.api.protocols import Injected
from feedserver.errors import Forbidden
from feedserver.metering.customers import CustomerDirectory, customer_directory
from feedserver.metering.months import MONTH_PATTERN, month_of, parse_month
from feedserver.metering.records import utcnow
from feedserver.metering.reports import UsageReport, build_report, to_json
from feedserver.metering.service import Metering
from feedserver.storage.db import Database


@get("/v1/usage", dependencies=PRINCIPAL, responses={
    **problem_specs(400, 401, 403, 404, 422, 429, 503),
    200: ResponseSpec(UsageReport, description="Usage and invoice lines per customer",
                      generate_examples=False)})
async def usage_report(
    principal: PrincipalDep,
    db: Injected[Database],
    metering: Injected[Metering | None],
    month: Annotated[str | None, Parameter(
        pattern=MONTH_PATTERN, description="YYYY-MM (UTC); default: the current month")] = None,
    customer: Annotated[str | None, Parameter(
        max_length=255, description="admins only: a customer id or name")] = None,
) -> Response[bytes]:
    month = month or month_of(utcnow())
    parse_month(month)
    admin = principal.is_admin
    if not admin:
        if customer not in (None, principal.customer_id):
            raise Forbidden("customers may only read their own usage")
        customer = principal.customer_id

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


def router() -> Router:
    return Router("/", route_handlers=[usage_report])
