"""Month arithmetic for quotas and reports: exact, in UTC (``YYYY-MM`` month names)."""

from __future__ import annotations

import calendar
import functools
import re
from datetime import UTC, datetime

from feedserver.errors import InvalidParameter

# ASCII digits only, and a year whose month and next month are real dates: "9999-12" would end
# in year 10000 and "0000-01" start in year 0 (both once a 500 of /v1/usage).
# The OpenAPI pattern of ``?month=``: years 1970-9998 (as parse_month checks), months 01-12.
MONTH_PATTERN = (r"^(19[7-9][0-9]|[2-8][0-9]{3}|9[0-8][0-9]{2}|99[0-8][0-9]|999[0-8])"
                 r"-(0[1-9]|1[0-2])$")
_MONTH = re.compile(r"^([0-9]{4})-(0[1-9]|1[0-2])\Z")
MIN_YEAR, MAX_YEAR = 1970, 9998


def month_of(ts: datetime) -> str:
    if ts.tzinfo is not UTC:
        ts = ts.astimezone(UTC)
    return f"{ts.year:04d}-{ts.month:02d}"  # strftime costs microseconds (admission runs this)


def parse_month(month: str) -> tuple[int, int]:
    m = _MONTH.match(month)
    if not m or not MIN_YEAR <= int(m.group(1)) <= MAX_YEAR:
        raise InvalidParameter(
            f"month must be YYYY-MM with a year {MIN_YEAR}-{MAX_YEAR}, got {month[:20]!r}",
            parameter="month")
    return int(m.group(1)), int(m.group(2))


@functools.lru_cache(maxsize=64)
def month_bounds(month: str) -> tuple[datetime, datetime]:
    """[start, end) of a calendar month in UTC (memoised: admission asks for every request)."""
    year, mon = parse_month(month)
    start = datetime(year, mon, 1, tzinfo=UTC)
    end = datetime(year + (mon == 12), mon % 12 + 1, 1, tzinfo=UTC)
    return start, end


def month_days(month: str) -> int:
    year, mon = parse_month(month)
    return calendar.monthrange(year, mon)[1]


def seconds_to_month_end(now: datetime) -> float:
    return (month_bounds(month_of(now))[1] - now).total_seconds()
