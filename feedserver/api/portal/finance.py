"""Finance pages (administrators): the month's customers, drill-down customer -> feed -> day,
invoice previews, corrections and the ledger's integrity.

Reads run in a worker thread (``anyio.to_thread``); every page is one ``load_month`` or
``load_day``. Corrections are POSTed forms that append to the ledger
(``feedserver.metering.corrections``) and redirect back (303) with a notice.
"""

from __future__ import annotations

import secrets
from functools import partial
from typing import Annotated, Any

import anyio.to_thread
import msgspec
from litestar import get, post
from litestar.enums import RequestEncodingType
from litestar.params import Body
from litestar.response import Redirect, Template

from feedserver.api.portal import fmt, urls, views
from feedserver.api.portal.context import ADMIN, AnyRequest, Portal, PortalDep, ViewerDep
from feedserver.api.portal.data import MonthData, load_day, load_month
from feedserver.api.portal.params import (
    CorrectionForm,
    MonthForm,
    Query,
    Segment,
    day_param,
    feed_param,
    local_path,
    month_param,
    whole_number,
)
from feedserver.api.portal.render import page
from feedserver.api.portal.session import check_csrf
from feedserver.errors import InvalidParameter
from feedserver.metering.batch_rows import evidence_digest
from feedserver.metering.corrections import Correction, correct
from feedserver.metering.entries import ORIGINAL_KINDS, LedgerRow
from feedserver.metering.evidence import batch_records
from feedserver.metering.ledger import ts_text
from feedserver.metering.records import UsageRecord
from feedserver.metering.verification import verify_and_record

FORM = Body(media_type=RequestEncodingType.URL_ENCODED)
DAY_ROWS = 500
NOTICES = {
    "void": "Row voided: a correcting entry was appended to the ledger.",
    "amend": "Row amended: a correcting entry was appended to the ledger.",
    "credit": "Credit issued: a credit entry was appended to the ledger.",
    "verify-ok": "The hash chain verified: every row is intact.",
    "verify-failed": "Verification FAILED: see the problem below.",
}


class DayRow(msgspec.Struct, frozen=True, kw_only=True):
    row: LedgerRow
    meter_label: str
    quantity: str
    net_text: str
    correctable: bool
    batch: str = ""  # a batch row: its batch's digest
    batch_url: str = ""  # and the page of the responses it sums


def _month_context(portal: Portal, data: MonthData) -> dict[str, Any]:
    prev_month, next_month = views.adjacent_months(data.month)
    closes = portal.ledger.periods.closes_at(data.month)
    return {
        "month": data.month, "month_label": views.month_label(data.month),
        "prev_month": prev_month, "next_month": next_month,
        "month_open": portal.ledger.periods.is_open(data.month),
        "closes_at": closes.strftime("%Y-%m-%d %H:%M UTC") if closes else "never",
        "section": "finance",
    }


def _notice(notice: str | None) -> str | None:
    return NOTICES.get(notice or "")


async def _load(portal: Portal, month: str, *, customer_id: str | None = None,
                feed: str | None = None) -> MonthData:
    directory = await anyio.to_thread.run_sync(portal.directory_of)
    return await anyio.to_thread.run_sync(partial(
        load_month, portal.db, directory, month, ledger=portal.ledger, customer_id=customer_id,
        feed=feed))


@get("/finance", dependencies=ADMIN)
async def overview(portal: PortalDep, admin: ViewerDep, month: Query = None,
                   notice: Query = None) -> Template:
    month = month_param(month, portal.ledger.periods.now())
    data = await _load(portal, month)
    bytes_chart, requests_chart = views.daily_charts(data)
    names = {c.customer_id: c.customer_name for c in data.report.customers}
    return page(
        "finance.html", title=f"Finance · {month}", viewer=admin, notice=_notice(notice),
        tiles=views.overview_tiles(data), bytes_chart=bytes_chart,
        requests_chart=requests_chart, customers=views.customers_table(data),
        corrections=views.corrections_table(data, "finance", lambda c: names.get(c, c)),
        head=data.head, verification=data.verification,
        report_url=urls.download("finance", "report", month=month),
        rows_url=urls.download("finance", "rows", month=month),
        **_month_context(portal, data))


async def _customer_name(portal: Portal, customer_id: str) -> str:
    directory = await anyio.to_thread.run_sync(portal.directory_of)
    directory.resolve(customer_id)  # NotFound for an id nobody has
    return directory.name(customer_id)


@get("/finance/customers/{customer_id:str}", dependencies=ADMIN)
async def customer_page(portal: PortalDep, admin: ViewerDep, customer_id: Segment,
                        month: Query = None, notice: Query = None) -> Template:
    month = month_param(month, portal.ledger.periods.now())
    name = await _customer_name(portal, customer_id)
    data = await _load(portal, month, customer_id=customer_id)
    c = data.customer()
    directory = await anyio.to_thread.run_sync(portal.directory_of)
    currency = c.currency if c else directory.terms(customer_id).prices.currency
    bytes_chart, requests_chart = views.daily_charts(data)
    path = urls.customer(customer_id, month)
    return page(
        "customer.html", title=f"{name} · {month}", viewer=admin, notice=_notice(notice),
        customer_id=customer_id, customer_name=name, currency=currency,
        tiles=views.customer_tiles(c, currency), bytes_chart=bytes_chart,
        requests_chart=requests_chart, feeds=views.feeds_table(c, data, "finance"),
        invoice=views.invoice_table(c, data, "finance"),
        quotas=views.quotas_table(c, data, "finance"),
        corrections=views.corrections_table(data, "finance"),
        finance_url=urls.finance(month), page_path=path.split("?")[0], return_to=path,
        form_key=secrets.token_hex(8), **_month_context(portal, data))


@get("/finance/customers/{customer_id:str}/feeds/{feed:str}", dependencies=ADMIN)
async def feed_page(portal: PortalDep, admin: ViewerDep, customer_id: Segment, feed: Segment,
                    month: Query = None) -> Template:
    month = month_param(month, portal.ledger.periods.now())
    feed = feed_param(feed)
    name = await _customer_name(portal, customer_id)
    data = await _load(portal, month, customer_id=customer_id, feed=feed)
    bytes_chart, requests_chart = views.daily_charts(data)
    path = urls.feed(customer_id, feed, month)
    return page(
        "feed.html", title=f"{name} · {feed} · {month}", viewer=admin, customer_name=name,
        feed=feed, bytes_chart=bytes_chart, requests_chart=requests_chart,
        days=views.feed_days_table(data, "finance"),
        corrections=views.corrections_table(data, "finance"),
        finance_url=urls.finance(month), customer_url=urls.customer(customer_id, month),
        page_path=path.split("?")[0], **_month_context(portal, data))


def _day_rows(rows: list[LedgerRow], fixes: dict[str, list[LedgerRow]]) -> list[DayRow]:
    out = []
    for r in rows:
        net = r.quantity + sum(f.quantity for f in fixes.get(r.usage_id, []))
        corrected = r.kind in ORIGINAL_KINDS and r.usage_id in fixes
        batch = evidence_digest(r.request_id)
        out.append(DayRow(
            row=r, meter_label=fmt.meter_label(r.meter), quantity=fmt.quantity(r.meter,
                                                                                r.quantity),
            net_text=fmt.quantity(r.meter, net) if corrected else "",
            correctable=r.kind in ORIGINAL_KINDS and net != 0,
            batch=batch, batch_url=urls.batch(batch) if batch else ""))
    return out


@get("/finance/customers/{customer_id:str}/feeds/{feed:str}/days/{day:str}",
     dependencies=ADMIN)
async def day_page(portal: PortalDep, admin: ViewerDep, customer_id: Segment, feed: Segment,
                   day: Segment, notice: Query = None) -> Template:
    feed, day = feed_param(feed), day_param(day)
    month = day[:7]
    name = await _customer_name(portal, customer_id)
    rows, fixes = await anyio.to_thread.run_sync(partial(
        load_day, portal.db, customer_id, feed, day, limit=DAY_ROWS))
    return page(
        "day.html", title=f"{name} · {feed} · {day}", viewer=admin, notice=_notice(notice),
        section="finance", customer_name=name, feed=feed, day=day,
        rows=_day_rows(rows, fixes), truncated=len(rows) >= DAY_ROWS, shown=len(rows),
        month_open=portal.ledger.periods.is_open(month),
        rows_url=urls.download("finance", "rows", month=month, customer=customer_id, feed=feed,
                               day=day),
        finance_url=urls.finance(month), customer_url=urls.customer(customer_id, month),
        feed_url=urls.feed(customer_id, feed, month),
        return_to=urls.day(customer_id, feed, day), form_key=secrets.token_hex(8))


class BatchRow(msgspec.Struct, frozen=True, kw_only=True):
    """One record of one response in a batch's evidence, as the batch page shows it."""

    record: UsageRecord
    time: str
    meter_label: str
    quantity: str


@get("/finance/batches/{digest:str}", dependencies=ADMIN)
async def batch_page(portal: PortalDep, admin: ViewerDep, digest: Segment) -> Template:
    """The responses a batch's ledger rows sum (``ledger_granularity = "batch"``), from its
    evidence, checked against its digest: finance's per-request view of a batch row."""
    digest, records = await anyio.to_thread.run_sync(batch_records, portal.ledger, digest)
    rows = [BatchRow(record=r, time=ts_text(r.ts), meter_label=fmt.meter_label(r.meter),
                     quantity=fmt.quantity(r.meter, r.quantity)) for r in records[:DAY_ROWS]]
    responses = sum(r.meter == "requests" for r in records)  # one per response
    return page("batch.html", title=f"Batch {digest[:12]}", viewer=admin, section="finance",
                digest=digest, rows=rows, records=len(records), responses=responses,
                truncated=len(records) > DAY_ROWS, finance_url=urls.finance(""))


@post("/finance/corrections", dependencies=ADMIN, status_code=303)
async def corrections(request: AnyRequest, portal: PortalDep, admin: ViewerDep,
                      data: Annotated[CorrectionForm, FORM]) -> Redirect:
    check_csrf(request, admin.csrf, data.csrf)
    if data.kind not in ("void", "amend", "credit"):
        raise InvalidParameter("kind must be void, amend or credit", parameter="kind")
    currency = ""
    if data.kind == "credit":
        directory = await anyio.to_thread.run_sync(portal.directory_of)
        directory.resolve(data.customer_id)
        currency = directory.terms(data.customer_id).prices.currency
    correction = Correction(
        kind=data.kind,  # type: ignore[arg-type]  # checked just above
        reason=data.reason, actor=admin.username, usage_id=data.usage_id,
        quantity=whole_number(data.quantity, "quantity") if data.kind == "amend" else None,
        customer_id=data.customer_id, amount=data.amount, currency=currency,
        month=data.month, key=data.key)
    await anyio.to_thread.run_sync(correct, portal.ledger, correction)
    back = local_path(data.return_to, default=urls.FINANCE, prefix=urls.FINANCE)
    return Redirect(f"{back}{'&' if '?' in back else '?'}notice={data.kind}", status_code=303)


@post("/finance/verify", dependencies=ADMIN, status_code=303)
async def verify(request: AnyRequest, portal: PortalDep, admin: ViewerDep,
                 data: Annotated[MonthForm, FORM]) -> Redirect:
    check_csrf(request, admin.csrf, data.csrf)
    month = month_param(data.month, portal.ledger.periods.now())
    result = await anyio.to_thread.run_sync(partial(
        verify_and_record, portal.ledger, source=f"portal:{admin.username}",
        when=portal.ledger.periods.now()))
    outcome = "verify-ok" if result.ok else "verify-failed"
    return Redirect(f"{urls.finance(month)}&notice={outcome}#ledger", status_code=303)


ROUTES = (overview, customer_page, feed_page, day_page, batch_page, corrections, verify)
