"""Reading ledger rows back: the rows of a customer-month, of an invoice line, of one day.

These are the rows behind every number a report shows, so finance can trace an invoice line or a
day's total to exactly the rows that make it up (``feedserver.metering.reports.LINE_ROWS``), and
``rows_csv`` writes them with every column, hashes included, for anyone to re-verify.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator

import msgspec

from feedserver.metering.entries import ALL_COLUMNS, SELECT, LedgerRow, from_db
from feedserver.metering.ledger import CORRECTED, ts_text
from feedserver.metering.months import month_bounds
from feedserver.storage.db import Database

PAGE = 1000


class RowQuery(msgspec.Struct, frozen=True, kw_only=True):
    """Which rows: always one month; optionally one customer, meter, feed, UTC day, kind."""

    month: str
    customer_id: str | None = None
    meter: str | None = None
    feed: str | None = None
    day: str | None = None  # YYYY-MM-DD inside ``month``
    kinds: tuple[str, ...] = ()
    after_seq: int = 0


def _where(q: RowQuery) -> tuple[str, list[object]]:
    start, end = month_bounds(q.month)
    lo, hi = ts_text(start), ts_text(end)
    if q.day is not None:
        lo, hi = max(lo, q.day), min(hi, q.day + "T99")  # "T99" sorts after every time of day
    sql = ["ts >= ?", "ts < ?", "seq > ?"]
    params: list[object] = [lo, hi, q.after_seq]
    for column, value in (("customer_id", q.customer_id), ("meter", q.meter),
                          ("feed", q.feed)):
        if value is not None:
            sql.append(f"{column} = ?")
            params.append(value)
    if q.kinds:
        sql.append(f"kind IN ({', '.join('?' * len(q.kinds))})")
        params.extend(q.kinds)
    return " AND ".join(sql), params


def select_rows(db: Database, q: RowQuery, *, limit: int | None = None) -> Iterator[LedgerRow]:
    """Matching rows in chain order, paged by ``seq`` (memory stays bounded)."""
    where, params = _where(q)
    after, left = q.after_seq, limit
    while left is None or left > 0:
        page = PAGE if left is None else min(PAGE, left)
        batch = db.fetchall(
            f"SELECT {SELECT} FROM usage_ledger WHERE {where} ORDER BY seq LIMIT {page}",
            [*params[:2], after, *params[3:]])
        for values in batch:
            yield from_db(values)
        if len(batch) < page:
            return
        after = int(batch[-1][0])
        if left is not None:
            left -= len(batch)


def corrections_of(db: Database, usage_ids: Iterable[str]) -> dict[str, list[LedgerRow]]:
    """The correcting rows of each original, in chain order (any month)."""
    ids = list(usage_ids)
    out: dict[str, list[LedgerRow]] = {}
    for i in range(0, len(ids), 400):
        part = ids[i : i + 400]
        marks = ", ".join("?" * len(part))
        for values in db.fetchall(f"SELECT {SELECT} FROM usage_ledger WHERE corrects IN "
                                  f"({marks}) AND {CORRECTED} ORDER BY seq", part):
            row = from_db(values)
            out.setdefault(row.corrects, []).append(row)
    return out


def rows_csv(rows: Iterable[LedgerRow]) -> str:
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    w.writerow(ALL_COLUMNS)
    for row in rows:
        values = msgspec.structs.asdict(row)  # field names are the column names
        w.writerow([values[c] for c in ALL_COLUMNS])
    return out.getvalue()


class DailyTotal(msgspec.Struct, frozen=True, kw_only=True):
    """One day's net quantity of one feed and meter, and the part of it corrections made."""

    day: str
    feed: str
    meter: str
    net: int
    corrections: int = 0


def daily_totals(db: Database, q: RowQuery) -> list[DailyTotal]:
    """Per UTC day, feed and meter (credits are money and left out)."""
    where, params = _where(q)
    rows = db.fetchall(
        "SELECT substr(ts, 1, 10), feed, meter, SUM(quantity), "
        "SUM(CASE WHEN kind IN ('void', 'amend') THEN quantity ELSE 0 END) "
        f"FROM usage_ledger WHERE {where} AND kind <> 'credit' "
        "GROUP BY substr(ts, 1, 10), feed, meter ORDER BY 1, 2, 3", params)
    return [DailyTotal(day=str(d), feed=str(f), meter=str(m), net=int(n), corrections=int(c))
            for d, f, m, n, c in rows]


def count_by_customer(db: Database, q: RowQuery) -> dict[str, int]:
    """How many matching rows each customer has."""
    where, params = _where(q)
    return {str(c): int(n) for c, n in db.fetchall(
        f"SELECT customer_id, COUNT(*) FROM usage_ledger WHERE {where} GROUP BY customer_id",
        params)}
