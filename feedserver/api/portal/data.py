"""What a portal page reads from the database, in one blocking call (run off the event loop).

``load_month`` gathers a month's report (original, corrections, net, invoices), its daily totals
per feed, the correcting entries booked in it, customer names, and for finance the ledger's
chain head and last verification. Scoping to one customer happens HERE, in the queries, so a
customer's page cannot receive another customer's rows whatever the URL said.
"""

from __future__ import annotations

import msgspec

from feedserver.metering.customers import CustomerDirectory
from feedserver.metering.entries import LedgerRow
from feedserver.metering.ledger import ChainHead, Ledger
from feedserver.metering.reports import CustomerUsage, UsageReport, build_report
from feedserver.metering.rows import (
    DailyTotal,
    RowQuery,
    corrections_of,
    count_by_customer,
    daily_totals,
    select_rows,
)
from feedserver.metering.verification import Verification, last
from feedserver.storage.db import Database

MAX_CORRECTIONS_SHOWN = 500


class MonthData(msgspec.Struct, kw_only=True):
    month: str
    report: UsageReport
    daily: list[DailyTotal]
    corrections: list[LedgerRow]  # void, amend and credit rows booked in the month
    correction_counts: dict[str, int]  # customer id -> how many of those (all, never capped)
    customer_id: str | None = None
    feed: str | None = None
    head: ChainHead | None = None
    verification: Verification | None = None

    def customer(self) -> CustomerUsage | None:
        return self.report.customers[0] if self.report.customers else None


def load_month(db: Database, directory: CustomerDirectory, month: str, *,
               customer_id: str | None = None, feed: str | None = None,
               ledger: Ledger | None = None,
               corrections_limit: int | None = MAX_CORRECTIONS_SHOWN) -> MonthData:
    """``corrections_limit``: how many correcting rows to read (pages show the first ones;
    downloads pass ``None`` for all)."""
    report = build_report(db, month, customer_id=customer_id, terms_of=directory.terms,
                          name_of=directory.name)
    q = RowQuery(month=month, customer_id=customer_id, feed=feed)
    fixes = msgspec.structs.replace(q, feed=None, kinds=("void", "amend", "credit"))
    corrections = list(select_rows(db, fixes, limit=corrections_limit))
    if feed is not None:
        corrections = [r for r in corrections if r.feed == feed]
    data = MonthData(month=month, report=report, daily=daily_totals(db, q),
                     corrections=corrections, correction_counts=count_by_customer(db, fixes),
                     customer_id=customer_id, feed=feed)
    if ledger is not None:
        data.head = ledger.head()
        data.verification = last(db)
    return data


def load_day(db: Database, customer_id: str, feed: str, day: str, *,
             limit: int) -> tuple[list[LedgerRow], dict[str, list[LedgerRow]]]:
    """A customer's rows of one feed on one day (originals and corrections booked that day)
    and, for each original, every correction of it (booked any day)."""
    rows = list(select_rows(db, RowQuery(month=day[:7], customer_id=customer_id, feed=feed,
                                         day=day), limit=limit))
    return rows, corrections_of(db, [r.usage_id for r in rows if r.kind in ("usage", "late")])
