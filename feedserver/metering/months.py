"""Month arithmetic for quotas and reports: exact, in UTC (``YYYY-MM`` month names)."""

from __future__ import annotations

import calendar
import re
from datetime import UTC, datetime

from feedserver.errors import InvalidParameter

_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


def month_of(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime("%Y-%m")


def parse_month(month: str) -> tuple[int, int]:
    m = _MONTH.match(month)
    if not m:
        raise InvalidParameter(f"month must be YYYY-MM, got {month!r}", parameter="month")
    return int(m.group(1)), int(m.group(2))


def month_bounds(month: str) -> tuple[datetime, datetime]:
    """[start, end) of a calendar month in UTC."""
    year, mon = parse_month(month)
    start = datetime(year, mon, 1, tzinfo=UTC)
    end = datetime(year + (mon == 12), mon % 12 + 1, 1, tzinfo=UTC)
    return start, end


def month_days(month: str) -> int:
    year, mon = parse_month(month)
    return calendar.monthrange(year, mon)[1]


def seconds_to_month_end(now: datetime) -> float:
    return (month_bounds(month_of(now))[1] - now).total_seconds()
