"""CSV and JSON downloads of every portal table, the full report and the ledger rows.

``/usage/finance/download/<table>.<csv|json>?month=&customer=&feed=&day=&line=`` (admins) and
``/usage/account/download/<table>.<csv|json>?month=&feed=&day=&line=`` (the viewer's own
customer, whatever the query says). A table's download is built by the same function as the table
on the page, so the two always agree. ``report`` is byte for byte what ``feedserver usage report``
prints; ``rows`` are ledger rows with every column (``line=egress`` etc.: exactly the rows behind
that invoice line).
"""

from __future__ import annotations

from functools import partial
from typing import Any, Literal

import anyio.to_thread
import msgspec
from litestar import Response, get

from feedserver.api.portal import tables, views
from feedserver.api.portal.context import (
    ADMIN,
    VIEWER,
    Portal,
    PortalDep,
    ViewerDep,
)
from feedserver.api.portal.data import load_month
from feedserver.api.portal.params import Query, Segment, day_param, feed_param, month_param
from feedserver.api.portal.views import Scope
from feedserver.errors import InvalidParameter, NotFound
from feedserver.metering.reports import LINE_ROWS, to_csv, to_json
from feedserver.metering.rows import RowQuery, rows_csv, select_rows

Format = Literal["csv", "json"]
TABLES = ("customers", "feeds", "feed-days", "invoice", "quotas", "corrections", "rows",
          "report")
CUSTOMER_TABLES = frozenset({"feeds", "feed-days", "invoice", "quotas"})


class Want(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    format: Format
    month: str
    customer_id: str | None
    feed: str | None = None
    day: str | None = None
    line: str | None = None


def _split(filename: str) -> tuple[str, Format]:
    name, _, ext = filename.rpartition(".")
    if name not in TABLES or ext not in ("csv", "json"):
        raise NotFound(f"no download {filename!r}")
    return name, "csv" if ext == "csv" else "json"


def build(portal: Portal, scope: Scope, want: Want) -> bytes:
    """The download's bytes (blocking: runs in a worker thread)."""
    if want.name == "rows":
        return _rows(portal, want)
    directory = portal.directory_of()
    if want.customer_id is not None:
        directory.resolve(want.customer_id)
    if want.name in CUSTOMER_TABLES and want.customer_id is None:
        raise InvalidParameter(f"the {want.name} table needs a customer", parameter="customer")
    if want.name == "feed-days" and want.feed is None:
        raise InvalidParameter("the feed-days table needs a feed", parameter="feed")
    data = load_month(portal.db, directory, want.month, customer_id=want.customer_id,
                      feed=want.feed if want.name == "feed-days" else None,
                      corrections_limit=None)
    if want.name == "report":
        return to_csv(data.report).encode() if want.format == "csv" else to_json(data.report)
    c = data.customer()
    table = {
        "customers": lambda: views.customers_table(data),
        "feeds": lambda: views.feeds_table(c, data, scope),
        "feed-days": lambda: views.feed_days_table(data, scope),
        "invoice": lambda: views.invoice_table(c, data, scope),
        "quotas": lambda: views.quotas_table(c, data, scope),
        "corrections": lambda: views.corrections_table(data, scope),
    }[want.name]()
    return tables.to_csv(table).encode() if want.format == "csv" else tables.to_json(table)


def _rows(portal: Portal, want: Want) -> bytes:
    q = RowQuery(month=want.month, customer_id=want.customer_id, feed=want.feed, day=want.day)
    if want.line is not None:
        rule = LINE_ROWS.get(want.line)
        if rule is None:
            raise InvalidParameter(f"no invoice line {want.line!r}", parameter="line")
        q = msgspec.structs.replace(q, meter=rule.meter, feed=rule.feed)
    rows = select_rows(portal.db, q)
    return rows_csv(rows).encode() if want.format == "csv" else msgspec.json.encode(list(rows))


def _response(data: bytes, want: Want, scope: Scope) -> Response[bytes]:
    parts = ["feedserver", want.month, want.name]
    parts += [p for p in (want.customer_id if scope == "finance" else None, want.feed, want.day,
                          want.line) if p]
    filename = "-".join(parts) + "." + want.format
    media = "text/csv; charset=utf-8" if want.format == "csv" else "application/json"
    return Response(data, media_type=media,
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


def _want(portal: Portal, filename: str, customer: str | None, month: str | None,
          feed: str | None, day: str | None, line: str | None) -> Want:
    name, format_ = _split(filename)
    return Want(name=name, format=format_,
                month=day_param(day)[:7] if day else month_param(month,
                                                                 portal.ledger.periods.now()),
                customer_id=customer or None, feed=feed_param(feed) if feed else None,
                day=day or None, line=line or None)


@get("/finance/download/{filename:str}", dependencies=ADMIN)
async def finance_download(
    portal: PortalDep, admin: ViewerDep, filename: Segment,
    month: Query = None, customer: Query = None,
    feed: Query = None, day: Query = None,
    line: Query = None,
) -> Response[bytes]:
    del admin  # the dependency is the check
    want = _want(portal, filename, customer, month, feed, day, line)
    data = await anyio.to_thread.run_sync(partial(build, portal, "finance", want))
    return _response(data, want, "finance")


@get("/account/download/{filename:str}", dependencies=VIEWER)
async def account_download(
    portal: PortalDep, viewer: ViewerDep, filename: Segment,
    month: Query = None, feed: Query = None,
    day: Query = None, line: Query = None,
    customer: Query = None,
) -> Response[Any]:
    del customer  # never taken from the URL: always the viewer's own customer
    want = _want(portal, filename, viewer.customer_id, month, feed, day, line)
    if want.name == "customers":
        raise NotFound("no download 'customers' here")
    data = await anyio.to_thread.run_sync(partial(build, portal, "account", want))
    return _response(data, want, "account")


ROUTES = (finance_download, account_download)
