"""Month arithmetic in UTC: bounds, seconds to the month's end, month names."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from feedserver.errors import InvalidParameter
from feedserver.metering.months import month_bounds, parse_month, seconds_to_month_end

NOW = datetime(2026, 11, 30, 23, 59, 30, tzinfo=UTC)


def test_month_bounds_are_exact_utc() -> None:
    assert month_bounds("2026-12") == (datetime(2026, 12, 1, tzinfo=UTC),
                                       datetime(2027, 1, 1, tzinfo=UTC))
    assert seconds_to_month_end(NOW) == 30
    for bad in ("2026-13", "2026-1", "26-11", "2026-11-01"):
        with pytest.raises(InvalidParameter):
            parse_month(bad)
