"""Page content from a month's data (pure): summary tiles, tables and charts.

Each table is built once and serves both the page and its CSV/JSON download. ``scope`` is
``finance`` (links drill down, every customer) or ``account`` (the caller's own customer, no
links into finance pages).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Literal

import msgspec

from feedserver.api.portal import fmt, urls
from feedserver.api.portal.charts import Chart, stacked_bars
from feedserver.api.portal.data import MonthData
from feedserver.api.portal.tables import Cell, Column, Table, cell
from feedserver.metering.corrections import major_units
from feedserver.metering.entries import LedgerRow
from feedserver.metering.months import month_bounds, month_days
from feedserver.metering.reports import CustomerUsage

Scope = Literal["finance", "account"]
QUOTA_LABELS = {"snapshot_downloads": "Snapshot downloads", "chunk_downloads": "Chunk downloads",
                "bytes": "Bytes", "ondemand_lookups": "On-demand lookups"}
MUTED_DASH = "\u2014"
METER_ORDER = ("requests", "bytes", "articles", "stream_seconds", "stream_events", "downloads")
# Display order of feeds (and their colour slots in charts): downloads first.
FEED_ORDER = ("snapshots", "chunks", "diffs", "batches", "ondemand", "realtime", "metadata",
              "auth")


class Tile(msgspec.Struct, frozen=True, kw_only=True):
    label: str
    value: str
    sub: str = ""


def days_of(month: str) -> list[str]:
    return [f"{month}-{d:02d}" for d in range(1, month_days(month) + 1)]


def adjacent_months(month: str) -> tuple[str, str]:
    start, end = month_bounds(month)
    year, mon = start.year, start.month
    prev = f"{year - (mon == 1)}-{(mon - 2) % 12 + 1:02d}"
    return prev, end.strftime("%Y-%m")


def month_label(month: str) -> str:
    return month_bounds(month)[0].strftime("%B %Y")


def _feeds(names: Sequence[str]) -> list[str]:
    present = set(names)
    return [f for f in FEED_ORDER if f in present] + sorted(present - set(FEED_ORDER))


def _meters(tables: Sequence[dict[str, int]]) -> list[str]:
    present = {m for t in tables for m in t} | {"requests"}
    return [m for m in METER_ORDER if m in present] + sorted(present - set(METER_ORDER))


def _qty(meter: str, n: int, *, sub: str = "", tone: str = "") -> Cell:
    return Cell(text=fmt.quantity(meter, n), values=(n,), sub=sub,
                tone=tone or ("" if n else "muted"),
                title=f"{fmt.count(n)} B" if meter == "bytes" and n >= 1000 else "")


def _right(label: str, *keys: str) -> Column:
    return Column(label=label, keys=keys, align="right")


def _totals_by_currency(customers: Sequence[CustomerUsage]) -> str:
    sums: dict[str, Decimal] = {}
    for c in customers:
        sums[c.currency] = sums.get(c.currency, Decimal(0)) + c.total
    return " + ".join(fmt.money(v, k) for k, v in sorted(sums.items())) or fmt.money(0)


# --- tiles -------------------------------------------------------------------------------------
def overview_tiles(data: MonthData) -> list[Tile]:
    customers = data.report.customers
    total_bytes = sum(c.totals.get("bytes", 0) for c in customers)
    requests = sum(c.totals.get("requests", 0) for c in customers)
    entries = sum(data.correction_counts.values())
    return [
        Tile(label="Customers", value=fmt.count(len(customers)), sub="with usage this month"),
        Tile(label="Delivered", value=fmt.nbytes(total_bytes), sub="net of corrections"),
        Tile(label="Requests", value=fmt.count(requests)),
        Tile(label="Invoiced", value=_totals_by_currency(customers), sub="preview, from plans"),
        Tile(label="Corrections", value=fmt.count(entries), sub="void, amend and credit"),
    ]


def customer_tiles(c: CustomerUsage | None, currency: str = "USD") -> list[Tile]:
    if c is None:
        return [Tile(label="Delivered", value=fmt.nbytes(0)),
                Tile(label="Requests", value=fmt.count(0)),
                Tile(label="Invoice preview", value=fmt.money(0, currency))]
    tiles = [
        Tile(label="Delivered", value=fmt.nbytes(c.totals.get("bytes", 0)),
             sub=_correction_note("bytes", c)),
        Tile(label="Requests", value=fmt.count(c.totals.get("requests", 0)),
             sub=_correction_note("requests", c)),
    ]
    if c.totals.get("stream_seconds"):
        tiles.append(Tile(label="Realtime streaming",
                          value=fmt.hours(c.totals["stream_seconds"]) + " h"))
    tiles.append(Tile(label="Invoice preview", value=fmt.money(c.total, c.currency),
                      sub=f"plan {c.plan}"))
    return tiles


def _correction_note(meter: str, c: CustomerUsage) -> str:
    change = c.corrections.get(meter, 0)
    if not change:
        return ""
    return (f"{fmt.quantity(meter, c.original.get(meter, 0))} original, "
            f"{fmt.quantity(meter, change)} corrected")


# --- tables ------------------------------------------------------------------------------------
def customers_table(data: MonthData) -> Table:
    customers = data.report.customers
    feeds = _feeds([f for c in customers for f in c.by_feed])
    entries = data.correction_counts
    columns = [Column(label="Customer", keys=("customer_id", "customer")),
               Column(label="Plan", keys=("plan",))]
    columns += [_right(f, f"{f}_bytes", f"{f}_requests") for f in feeds]
    columns += [_right("Corrections", "corrections"), _right("Invoice", "total", "currency")]
    rows: list[list[Cell]] = []
    for c in customers:
        row = [cell(c.customer_name, c.customer_id, c.customer_name,
                    href=urls.customer(c.customer_id, data.month)),
               cell(c.plan, c.plan)]
        for f in feeds:
            use = c.by_feed.get(f, {})
            b, r = use.get("bytes", 0), use.get("requests", 0)
            row.append(Cell(text=fmt.nbytes(b) if use else MUTED_DASH, values=(b, r),
                            sub=f"{fmt.count(r)} requests" if r else "",
                            tone="" if use else "muted"))
        n = entries.get(c.customer_id, 0)
        row.append(Cell(text=fmt.count(n) if n else MUTED_DASH, values=(n,),
                        tone="" if n else "muted"))
        row.append(cell(fmt.money(c.total, c.currency), str(c.total), c.currency))
        rows.append(row)
    footer = [Cell(text="Total"), Cell(text="")]
    for f in feeds:
        b = sum(c.by_feed.get(f, {}).get("bytes", 0) for c in customers)
        r = sum(c.by_feed.get(f, {}).get("requests", 0) for c in customers)
        footer.append(Cell(text=fmt.nbytes(b), sub=f"{fmt.count(r)} requests" if r else ""))
    footer += [Cell(text=fmt.count(sum(entries.values()))),
               Cell(text=_totals_by_currency(customers))]
    return Table(name="customers", title="Customers", columns=columns, rows=rows,
                 footer=footer if rows else [],
                 download=urls.download("finance", "customers", month=data.month),
                 note="Per feed: bytes delivered, requests beneath; net of corrections.")


def feeds_table(c: CustomerUsage | None, data: MonthData, scope: Scope) -> Table:
    by_feed = c.by_feed if c else {}
    meters = _meters(list(by_feed.values()))
    columns = [Column(label="Feed", keys=("feed",))]
    columns += [_right(fmt.meter_label(m), m) for m in meters]
    rows = []
    for f in _feeds(list(by_feed)):
        href = urls.feed(c.customer_id, f, data.month) if c and scope == "finance" else ""
        rows.append([cell(f, f, href=href)]
                    + [_qty(m, by_feed[f].get(m, 0)) for m in meters])
    footer: list[Cell] = []
    if c and rows:
        footer = [Cell(text="Net total")]
        for m in meters:
            change = c.corrections.get(m, 0)
            footer.append(Cell(text=fmt.quantity(m, c.totals.get(m, 0)),
                               sub=f"{fmt.quantity(m, change)} corrected" if change else ""))
    customer = c.customer_id if c and scope == "finance" else None
    return Table(name="feeds", title="Usage by feed", columns=columns, rows=rows, footer=footer,
                 download=urls.download(scope, "feeds", month=data.month, customer=customer))


def feed_days_table(data: MonthData, scope: Scope) -> Table:
    assert data.feed is not None
    by_day: dict[str, dict[str, tuple[int, int]]] = {}
    for t in data.daily:
        by_day.setdefault(t.day, {})[t.meter] = (t.net, t.corrections)
    meters = _meters([{m: 0 for m in d} for d in by_day.values()])
    columns = [Column(label="Day", keys=("day",))]
    columns += [_right(fmt.meter_label(m), m, f"{m}_corrected") for m in meters]
    rows = []
    for day, use in sorted(by_day.items()):
        href = (urls.day(data.customer_id, data.feed, day)
                if scope == "finance" and data.customer_id else "")
        row = [cell(day, day, href=href)]
        for m in meters:
            net, change = use.get(m, (0, 0))
            row.append(Cell(text=fmt.quantity(m, net), values=(net, change),
                            sub=f"{fmt.quantity(m, change)} corrected" if change else "",
                            tone="bad" if change else ""))
        rows.append(row)
    return Table(name="feed-days", title=f"{data.feed} by day", columns=columns, rows=rows,
                 download=urls.download(scope, "feed-days", month=data.month,
                                        customer=data.customer_id if scope == "finance" else None,
                                        feed=data.feed))


def invoice_table(c: CustomerUsage | None, data: MonthData, scope: Scope) -> Table:
    columns = [Column(label="Item", keys=("item", "line")), _right("Quantity", "quantity", "unit"),
               _right("Unit price", "unit_price"), _right("Amount", "amount", "currency"),
               Column(label="Ledger rows", keys=())]
    rows: list[list[Cell]] = []
    customer = c.customer_id if c and scope == "finance" else None
    for line in c.invoice if c else []:
        traced = line.key and line.key != "base_fee"
        link = (urls.with_ext(urls.download(scope, "rows", month=data.month, customer=customer,
                                            line=line.key), "csv") if traced else "")
        rows.append([
            cell(line.item, line.item, line.key),
            cell(fmt.decimal_quantity(line.unit, line.quantity), str(line.quantity), line.unit),
            cell(fmt.money(line.unit_price, c.currency if c else "") + f" / {line.unit}",
                 str(line.unit_price)),
            cell(fmt.money(line.amount, c.currency if c else ""), str(line.amount),
                 c.currency if c else ""),
            Cell(text="rows (CSV)" if traced else MUTED_DASH, href=link,
                 tone="" if traced else "muted"),
        ])
    footer = ([Cell(text="Total"), Cell(text=""), Cell(text=""),
               Cell(text=fmt.money(c.total, c.currency)), Cell(text="")] if c and rows else [])
    return Table(name="invoice", title="Invoice preview", columns=columns, rows=rows,
                 footer=footer, empty="No charges this month.",
                 download=urls.download(scope, "invoice", month=data.month, customer=customer),
                 note="From the plan's prices; each line links to exactly the ledger rows "
                      "behind it (originals and corrections, which add up to its quantity).")


def corrections_table(data: MonthData, scope: Scope,
                      name_of: Callable[[str], str] | None = None) -> Table:
    columns = [Column(label="Booked", keys=("ts",))]
    if scope == "finance" and data.customer_id is None:
        columns.append(Column(label="Customer", keys=("customer_id",)))
    columns += [Column(label="Kind", keys=("kind",)), Column(label="Of row", keys=("corrects",)),
                _right("Change", "meter", "quantity"), Column(label="Reason", keys=("reason",)),
                Column(label="By", keys=("actor",))]
    rows = []
    for r in data.corrections:
        row = [cell(r.ts[:16].replace("T", " "), r.ts)]
        if scope == "finance" and data.customer_id is None:
            row.append(cell(name_of(r.customer_id) if name_of else r.customer_id, r.customer_id,
                            href=urls.customer(r.customer_id, data.month)))
        href = (urls.day(r.customer_id, r.feed, r.original_ts[:10])
                if scope == "finance" and r.corrects else "")
        row += [cell(r.kind, r.kind),
                cell(fmt.short(r.corrects) if r.corrects else MUTED_DASH, r.corrects,
                     title=r.corrects, href=href),
                _change(r),
                cell(r.reason, r.reason), cell(r.actor, r.actor)]
        rows.append(row)
    total = sum(data.correction_counts.values())
    note = (f"The first {fmt.count(len(rows))} of {fmt.count(total)}; the download has all."
            if len(rows) < total and data.feed is None else "")
    return Table(name="corrections", title="Corrections", columns=columns, rows=rows,
                 empty="No corrections this month.", note=note,
                 download=urls.download(scope, "corrections", month=data.month,
                                        customer=data.customer_id if scope == "finance" else None))


def _change(r: LedgerRow) -> Cell:
    if r.kind == "credit":
        amount = major_units(r.quantity, r.resource)
        return Cell(text=f"{fmt.money(-amount, r.resource)}", values=(r.meter, r.quantity),
                    sub="credit", tone="bad")
    text = fmt.quantity(r.meter, r.quantity)
    return Cell(text=("+" if r.quantity > 0 else "") + text, values=(r.meter, r.quantity),
                sub=fmt.meter_label(r.meter).lower(), tone="bad" if r.quantity < 0 else "")


def quotas_table(c: CustomerUsage | None, data: MonthData, scope: Scope) -> Table:
    columns = [Column(label="Quota", keys=("quota",)), _right("Used", "used"),
               _right("Limit", "limit"), _right("Left", "left")]
    rows = []
    for q in c.quotas if c else []:
        show = fmt.nbytes if q.quota == "bytes" else fmt.count
        left = None if q.limit is None else max(0, q.limit - q.used)
        share = "" if not q.limit else f"{min(100, round(100 * q.used / q.limit))}% used"
        rows.append([
            cell(QUOTA_LABELS.get(q.quota, q.quota), q.quota),
            Cell(text=show(q.used), values=(q.used,), sub=share,
                 tone="bad" if q.limit is not None and left == 0 else ""),
            cell("unlimited" if q.limit is None else show(q.limit), q.limit),
            cell(MUTED_DASH if left is None else show(left), left),
        ])
    customer = c.customer_id if c and scope == "finance" else None
    return Table(name="quotas", title="Quotas this month", columns=columns, rows=rows,
                 empty="No quotas on this plan.",
                 download=urls.download(scope, "quotas", month=data.month, customer=customer))


# --- charts ------------------------------------------------------------------------------------
def daily_charts(data: MonthData) -> tuple[Chart, Chart]:
    bytes_by: dict[str, dict[str, int]] = {}
    requests_by: dict[str, dict[str, int]] = {}
    for t in data.daily:
        target = bytes_by if t.meter == "bytes" else requests_by if t.meter == "requests" else None
        if target is not None:
            series = target.setdefault(t.feed, {})
            series[t.day] = series.get(t.day, 0) + t.net
    days = days_of(data.month)
    return (stacked_bars("Bytes per day, by feed", days, bytes_by, fmt.nbytes, order=FEED_ORDER),
            stacked_bars("Requests per day, by feed", days, requests_by, fmt.count,
                         order=FEED_ORDER))
