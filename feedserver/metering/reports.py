"""Monthly usage reports and priced invoice lines, read from the ledger.

Totals are per customer, meter and UTC day. Pricing (``price_lines``, pure) uses the customer's
plan prices with ``Decimal`` arithmetic throughout:

* egress: ``bytes / 10**9`` (decimal GB, as cloud providers bill) x ``per_gb_egress``
* on-demand: ``lookups / 1000`` x ``per_1000_lookups`` (a lookup = one on-demand request)
* realtime: ``stream_seconds / 3600`` x ``per_stream_hour``
* the plan's ``monthly_base_fee``

Each line's amount is rounded once, half-up, to the currency's minor unit (cents for most, none
for JPY/KRW); the invoice total is the sum of the rounded lines, so lines always add up.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal

import msgspec

from feedserver.metering.ledger import ts_text
from feedserver.metering.months import month_bounds
from feedserver.metering.quotas import QuotaCounters
from feedserver.plans import QUOTAS, UNLIMITED, Plan
from feedserver.storage.db import Database

_ZERO_DECIMAL_CURRENCIES = frozenset({"JPY", "KRW", "VND", "CLP", "ISK"})
GB = Decimal(10**9)


class InvoiceLine(msgspec.Struct, kw_only=True):
    item: str
    quantity: Decimal
    unit: str
    unit_price: Decimal
    amount: Decimal


class QuotaUse(msgspec.Struct, kw_only=True):
    quota: str
    used: int
    limit: int | None = None


class CustomerUsage(msgspec.Struct, kw_only=True):
    customer_id: str
    plan: str
    currency: str
    totals: dict[str, int]
    by_feed: dict[str, dict[str, int]]
    days: dict[str, dict[str, int]]  # day -> meter -> quantity
    quotas: list[QuotaUse]
    invoice: list[InvoiceLine]
    total: Decimal


class UsageReport(msgspec.Struct, kw_only=True):
    month: str
    generated_at: datetime
    customers: list[CustomerUsage]


def _round(amount: Decimal, currency: str) -> Decimal:
    exp = Decimal(1) if currency.upper() in _ZERO_DECIMAL_CURRENCIES else Decimal("0.01")
    return amount.quantize(exp, rounding=ROUND_HALF_UP)


def price_lines(terms: Plan, totals: dict[str, int], lookups: int) -> list[InvoiceLine]:
    """Invoice lines for one customer-month (pure)."""
    p = terms.prices
    cur = p.currency
    candidates = [
        ("base fee", Decimal(1), "month", p.monthly_base_fee),
        ("egress", Decimal(totals.get("bytes", 0)) / GB, "GB", p.per_gb_egress),
        ("on-demand lookups", Decimal(lookups) / 1000, "1000 lookups", p.per_1000_lookups),
        ("realtime stream", Decimal(totals.get("stream_seconds", 0)) / 3600, "hour",
         p.per_stream_hour),
    ]
    return [
        InvoiceLine(item=item, quantity=qty, unit=unit, unit_price=price,
                    amount=_round(qty * price, cur))
        for item, qty, unit, price in candidates
        if price and (qty or item == "base fee")
    ]


def build_report(
    db: Database,
    month: str,
    *,
    customer_id: str | None = None,
    terms_of: Callable[[str], Plan] | None = None,
    now: datetime | None = None,
) -> UsageReport:
    start, end = month_bounds(month)
    sql = (
        "SELECT customer_id, feed, meter, substr(ts, 1, 10), SUM(quantity) FROM usage_ledger "
        "WHERE ts >= ? AND ts < ?"
    )
    params: list[str] = [ts_text(start), ts_text(end)]
    if customer_id is not None:
        sql += " AND customer_id = ?"
        params.append(customer_id)
    sql += " GROUP BY customer_id, feed, meter, substr(ts, 1, 10) ORDER BY 1, 4, 2, 3"
    terms_of = terms_of or (lambda _c: UNLIMITED)
    used = QuotaCounters(db).all_used(month, customer_id)
    customers: dict[str, CustomerUsage] = {}
    rows = db.fetchall(sql, params)
    terms_by_id = {c: terms_of(c) for c in sorted({str(r[0]) for r in rows} | set(used))}
    for cust_id, terms in terms_by_id.items():
        customers[cust_id] = CustomerUsage(
            customer_id=cust_id, plan=terms.name, currency=terms.prices.currency,
            totals={}, by_feed={}, days={}, quotas=[], invoice=[], total=Decimal(0),
        )
    for cust, feed, meter, day, qty in rows:
        c = customers[str(cust)]
        n = int(qty)
        c.totals[meter] = c.totals.get(meter, 0) + n
        feed_totals = c.by_feed.setdefault(feed, {})
        feed_totals[meter] = feed_totals.get(meter, 0) + n
        day_totals = c.days.setdefault(day, {})
        day_totals[meter] = day_totals.get(meter, 0) + n
    for c in customers.values():
        terms = terms_by_id[c.customer_id]
        counters = used.get(c.customer_id, {})
        c.quotas = [
            QuotaUse(quota=q, used=counters.get(q, 0), limit=terms.quotas.limit(q))
            for q in QUOTAS
            if counters.get(q) or terms.quotas.limit(q) is not None
        ]
        lookups = c.by_feed.get("ondemand", {}).get("requests", 0)
        c.invoice = price_lines(terms, c.totals, lookups)
        c.total = sum((line.amount for line in c.invoice), Decimal(0))
    return UsageReport(month=month, generated_at=now or datetime.now(UTC),
                       customers=list(customers.values()))


def to_csv(report: UsageReport) -> str:
    """Two sections in one CSV: daily usage rows, then invoice rows (``kind`` tells which)."""
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(["kind", "month", "customer_id", "day_or_item", "meter_or_unit", "quantity",
                "unit_price", "amount", "currency"])
    for c in report.customers:
        for day, meters in sorted(c.days.items()):
            for meter, qty in sorted(meters.items()):
                w.writerow(["usage", report.month, c.customer_id, day, meter, qty, "", "", ""])
        for line in c.invoice:
            w.writerow(["invoice", report.month, c.customer_id, line.item, line.unit,
                        line.quantity.normalize(), line.unit_price, line.amount, c.currency])
        w.writerow(["total", report.month, c.customer_id, "", "", "", "", c.total, c.currency])
    return out.getvalue()


def to_json(report: UsageReport) -> bytes:
    return msgspec.json.encode(report)
