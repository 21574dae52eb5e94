"""Monthly usage reports and priced invoice lines, read from the ledger.

Customers are listed by name. Totals are per customer, meter, feed and UTC day of the month a
row is booked in, shown three ways: ``original`` (usage rows, late ones included),
``corrections`` (the changes of void and amend rows) and ``totals`` (the net: original +
corrections; what is billed). Pricing
(``price_lines``, pure) uses the customer's plan prices with ``Decimal`` arithmetic throughout:

* egress: ``bytes / 10**9`` (decimal GB, as cloud providers bill) x ``per_gb_egress``
* on-demand: ``lookups / 1000`` x ``per_1000_lookups`` (a lookup = one on-demand request)
* realtime: ``stream_seconds / 3600`` x ``per_stream_hour``
* the plan's ``monthly_base_fee``
* each credit, as a negative line

Each line's amount is rounded once, half-up, to the currency's minor unit (cents for most, none
for JPY/KRW); the invoice total is the sum of the rounded lines, so lines always add up. Each
line's ``key`` names the ledger rows behind it (``LINE_ROWS``), so a line can be traced to them.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal

import msgspec

from feedserver.metering.corrections import major_units
from feedserver.metering.entries import CORRECTION_KINDS
from feedserver.metering.ledger import ts_text
from feedserver.metering.months import month_bounds
from feedserver.metering.quotas import QuotaCounters
from feedserver.plans import QUOTAS, UNLIMITED, Plan
from feedserver.storage.db import Database

_ZERO_DECIMAL_CURRENCIES = frozenset({"JPY", "KRW", "VND", "CLP", "ISK"})
GB = Decimal(10**9)


class RowFilter(msgspec.Struct, frozen=True, kw_only=True):
    """Which ledger rows of a customer-month make up an invoice line."""

    meter: str
    feed: str | None = None


LINE_ROWS: dict[str, RowFilter] = {
    "egress": RowFilter(meter="bytes"),
    "ondemand": RowFilter(meter="requests", feed="ondemand"),
    "realtime": RowFilter(meter="stream_seconds"),
    "credit": RowFilter(meter="credit"),
}


class InvoiceLine(msgspec.Struct, kw_only=True):
    item: str
    quantity: Decimal
    unit: str
    unit_price: Decimal
    amount: Decimal
    key: str = ""  # base_fee, egress, ondemand, realtime, credit: see LINE_ROWS


class QuotaUse(msgspec.Struct, kw_only=True):
    quota: str
    used: int
    limit: int | None = None


class Credit(msgspec.Struct, kw_only=True):
    usage_id: str
    amount: Decimal
    currency: str
    reason: str
    actor: str
    ts: str


class CustomerUsage(msgspec.Struct, kw_only=True):
    customer_id: str
    plan: str
    currency: str
    totals: dict[str, int]  # net per meter: what is billed
    by_feed: dict[str, dict[str, int]]  # net
    days: dict[str, dict[str, int]]  # day -> meter -> net quantity
    quotas: list[QuotaUse]
    invoice: list[InvoiceLine]
    total: Decimal
    customer_name: str = ""
    original: dict[str, int] = msgspec.field(default_factory=dict)
    corrections: dict[str, int] = msgspec.field(default_factory=dict)
    day_corrections: dict[str, dict[str, int]] = msgspec.field(default_factory=dict)
    credits: list[Credit] = msgspec.field(default_factory=list)


class UsageReport(msgspec.Struct, kw_only=True):
    month: str
    generated_at: datetime
    customers: list[CustomerUsage]


def _round(amount: Decimal, currency: str) -> Decimal:
    exp = Decimal(1) if currency.upper() in _ZERO_DECIMAL_CURRENCIES else Decimal("0.01")
    return amount.quantize(exp, rounding=ROUND_HALF_UP)


def price_lines(terms: Plan, totals: dict[str, int], lookups: int,
                credits: list[Credit] | None = None) -> list[InvoiceLine]:
    """Invoice lines for one customer-month (pure)."""
    p = terms.prices
    cur = p.currency
    candidates = [
        ("base fee", Decimal(1), "month", p.monthly_base_fee, "base_fee"),
        ("egress", Decimal(totals.get("bytes", 0)) / GB, "GB", p.per_gb_egress, "egress"),
        ("on-demand lookups", Decimal(lookups) / 1000, "1000 lookups", p.per_1000_lookups,
         "ondemand"),
        ("realtime stream", Decimal(totals.get("stream_seconds", 0)) / 3600, "hour",
         p.per_stream_hour, "realtime"),
    ]
    lines = [
        InvoiceLine(item=item, quantity=qty, unit=unit, unit_price=price,
                    amount=_round(qty * price, cur), key=key)
        for item, qty, unit, price, key in candidates
        if price and (qty or item == "base fee")
    ]
    for credit in credits or ():
        lines.append(InvoiceLine(item=f"credit: {credit.reason}"[:120], quantity=Decimal(1),
                                 unit="credit", unit_price=-credit.amount,
                                 amount=-_round(credit.amount, cur), key="credit"))
    return lines


def _add(table: dict[str, int], key: str, n: int) -> None:
    table[key] = table.get(key, 0) + n


def build_report(
    db: Database,
    month: str,
    *,
    customer_id: str | None = None,
    terms_of: Callable[[str], Plan] | None = None,
    name_of: Callable[[str], str] | None = None,
    now: datetime | None = None,
) -> UsageReport:
    start, end = month_bounds(month)
    sql = (
        "SELECT customer_id, feed, meter, substr(ts, 1, 10), kind, SUM(quantity) "
        "FROM usage_ledger WHERE ts >= ? AND ts < ? AND kind <> 'credit'"
    )
    params: list[str] = [ts_text(start), ts_text(end)]
    if customer_id is not None:
        sql += " AND customer_id = ?"
        params.append(customer_id)
    sql += " GROUP BY customer_id, feed, meter, substr(ts, 1, 10), kind ORDER BY 1, 4, 2, 3"
    terms_of = terms_of or (lambda _c: UNLIMITED)
    used = QuotaCounters(db).all_used(month, customer_id)
    rows = db.fetchall(sql, params)
    credits = _credits(db, params[:2], customer_id)
    ids = sorted({str(r[0]) for r in rows} | set(used) | set(credits))
    terms_by_id = {c: terms_of(c) for c in ids}
    customers: dict[str, CustomerUsage] = {}
    for cust_id, terms in terms_by_id.items():
        customers[cust_id] = CustomerUsage(
            customer_id=cust_id, customer_name=name_of(cust_id) if name_of else cust_id,
            plan=terms.name, currency=terms.prices.currency, totals={}, by_feed={}, days={},
            quotas=[], invoice=[], total=Decimal(0), credits=credits.get(cust_id, []),
        )
    for cust, feed, meter, day, kind, qty in rows:
        c = customers[str(cust)]
        n = int(qty)
        _add(c.totals, meter, n)
        _add(c.by_feed.setdefault(feed, {}), meter, n)
        _add(c.days.setdefault(day, {}), meter, n)
        if kind in CORRECTION_KINDS:
            _add(c.corrections, meter, n)
            _add(c.day_corrections.setdefault(day, {}), meter, n)
        else:
            _add(c.original, meter, n)
    for c in customers.values():
        terms = terms_by_id[c.customer_id]
        counters = used.get(c.customer_id, {})
        c.quotas = [
            QuotaUse(quota=q, used=counters.get(q, 0), limit=terms.quotas.limit(q))
            for q in QUOTAS
            if counters.get(q) or terms.quotas.limit(q) is not None
        ]
        lookups = c.by_feed.get("ondemand", {}).get("requests", 0)
        c.invoice = price_lines(terms, c.totals, lookups, c.credits)
        c.total = sum((line.amount for line in c.invoice), Decimal(0))
    ordered = sorted(customers.values(), key=lambda c: (c.customer_name.lower(), c.customer_id))
    return UsageReport(month=month, generated_at=now or datetime.now(UTC), customers=ordered)


def _credits(db: Database, bounds: list[str], customer_id: str | None) -> dict[str, list[Credit]]:
    sql = ("SELECT customer_id, usage_id, quantity, resource, reason, actor, ts FROM usage_ledger"
           " WHERE ts >= ? AND ts < ? AND kind = 'credit'")
    params = list(bounds)
    if customer_id is not None:
        sql += " AND customer_id = ?"
        params.append(customer_id)
    out: dict[str, list[Credit]] = {}
    for cust, usage_id, qty, currency, reason, actor, ts in db.fetchall(sql + " ORDER BY seq",
                                                                         params):
        out.setdefault(str(cust), []).append(Credit(
            usage_id=str(usage_id), amount=major_units(int(qty), str(currency)),
            currency=str(currency), reason=str(reason), actor=str(actor), ts=str(ts)))
    return out


def plain(value: Decimal) -> str:
    """A decimal without trailing zeros and never in exponent form (``10``, not ``1E+1``)."""
    return format(value.normalize(), "f")


CSV_HEADER = ["kind", "month", "customer_id", "customer", "day_or_item", "meter_or_unit",
              "quantity", "unit_price", "amount", "currency"]


def to_csv(report: UsageReport) -> str:
    """One CSV, one header; ``kind`` says what a row is: ``usage`` (original quantity per day
    and meter), ``correction`` (the change corrections made that day), ``net`` (the month's
    billed quantity per meter), ``invoice`` (a priced line) and ``total``."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(CSV_HEADER)
    for c in report.customers:
        who = [report.month, c.customer_id, c.customer_name]
        for day, meters in sorted(c.days.items()):
            changes = c.day_corrections.get(day, {})
            for meter, qty in sorted(meters.items()):
                if meter in changes:
                    w.writerow(["usage", *who, day, meter, qty - changes[meter], "", "", ""])
                    w.writerow(["correction", *who, day, meter, changes[meter], "", "", ""])
                else:
                    w.writerow(["usage", *who, day, meter, qty, "", "", ""])
        for meter, qty in sorted(c.totals.items()):
            w.writerow(["net", *who, "", meter, qty, "", "", ""])
        for line in c.invoice:
            w.writerow(["invoice", *who, line.item, line.unit, plain(line.quantity),
                        line.unit_price, line.amount, c.currency])
        w.writerow(["total", *who, "", "", "", "", c.total, c.currency])
    return out.getvalue()


def to_json(report: UsageReport) -> bytes:
    return msgspec.json.encode(report)
