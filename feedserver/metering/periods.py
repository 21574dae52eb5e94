"""When a month closes for usage: the closed-month rule (pure, clock injected).

A calendar month ``M`` (UTC) stays *open* until ``end(M) + grace``. While it is open, a record
whose timestamp lies in ``M`` is booked in ``M``, even if it reaches the ledger late (a journal
replayed after a crash, a Kafka consumer catching up). Once ``M`` is *closed* its totals are
final: nothing is booked into it any more. A record of ``M`` that arrives after that is booked
in the month it arrives in, as a ``late`` row that keeps its own timestamp in ``original_ts``;
a correction of a row of a closed month is booked the same way (see ``corrections``).

``Periods(grace=None)`` never closes a month (tools that rebuild history, and tests that append
records with fixed dates).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from feedserver.errors import Conflict
from feedserver.metering.months import month_bounds, month_of

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


class Periods:
    """The closed-month rule with its grace period and clock."""

    def __init__(self, grace: timedelta | None, *, clock: Clock = utcnow) -> None:
        if grace is not None and grace < timedelta(0):
            raise ValueError("the usage grace period must be >= 0")
        self.grace = grace
        self.clock = clock

    @classmethod
    def hours(cls, grace_hours: float, *, clock: Clock = utcnow) -> Periods:
        return cls(timedelta(hours=grace_hours), clock=clock)

    def now(self) -> datetime:
        return self.clock()

    def closes_at(self, month: str) -> datetime | None:
        """When ``month`` closes (``None``: never)."""
        if self.grace is None:
            return None
        return month_bounds(month)[1] + self.grace

    def is_open(self, month: str, now: datetime | None = None) -> bool:
        closes = self.closes_at(month)
        return closes is None or (now or self.now()) < closes

    def require_open(self, month: str, now: datetime | None = None) -> None:
        if not self.is_open(month, now):
            raise Conflict(f"month {month} is closed: its totals are final; book the change in "
                           "the current month", month=month)

    def booking_ts(self, month: str, now: datetime) -> datetime:
        """A timestamp inside ``month`` (which must be open) and not after ``now``: where a
        change of that month is booked."""
        start, end = month_bounds(month)
        if now < start:
            raise Conflict(f"month {month} has not started yet", month=month)
        return min(now, end - timedelta(microseconds=1))


def current_month(now: datetime) -> str:
    return month_of(now)
