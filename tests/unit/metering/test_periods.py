"""The closed-month rule: late records land in their month while it is open, else now."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from feedserver.metering.ledger import Ledger
from feedserver.metering.periods import Periods
from feedserver.metering.reports import build_report
from feedserver.storage.db import Database
from tests.unit.metering.conftest import rec
from tests.unit.metering.test_corrections import Clock

OCT31 = datetime(2026, 10, 31, 23, 59, 59, tzinfo=UTC)


def test_open_until_the_grace_period_ends() -> None:
    periods = Periods(timedelta(hours=72))
    nov_end = datetime(2026, 12, 1, tzinfo=UTC)
    assert periods.is_open("2026-11", nov_end + timedelta(hours=71, minutes=59))
    assert not periods.is_open("2026-11", nov_end + timedelta(hours=72))
    assert Periods(None).is_open("1999-01", nov_end)


def test_a_replayed_journal_lands_in_its_month_while_it_is_open(db: Database) -> None:
    # A server crashed on Oct 31; its journal is replayed on Nov 2, inside the grace period.
    clock = Clock(datetime(2026, 11, 2, 9, tzinfo=UTC))
    ledger = Ledger(db, periods=Periods.hours(72, clock=clock))
    assert ledger.append([rec(1, ts=OCT31, quantity=40)]) == 1
    assert build_report(db, "2026-10").customers[0].totals == {"bytes": 40}
    assert build_report(db, "2026-11").customers == []


def test_after_the_month_closed_it_is_booked_now_as_a_late_row(db: Database) -> None:
    clock = Clock(datetime(2026, 11, 3, 0, 0, 0, tzinfo=UTC))  # Oct closed at Nov 3 23:59:59
    ledger = Ledger(db, periods=Periods.hours(48, clock=clock))
    ledger.append([rec(1, ts=OCT31, quantity=40)])
    row = ledger.get(rec(1).usage_id)
    assert row is not None
    assert (row.kind, row.ts[:10], row.original_ts[:10], row.actor) == (
        "late", "2026-11-03", "2026-10-31", "ledger")
    assert build_report(db, "2026-10").customers == []  # October's totals stay final
    assert build_report(db, "2026-11").customers[0].totals == {"bytes": 40}
    # the quota counter of the month it is booked in carries the bytes
    assert db.fetchall("SELECT month, used FROM quota_usage") == [("2026-11", 40)]
    # replaying the same journal again appends nothing: the usage id is the key
    assert ledger.append([rec(1, ts=OCT31, quantity=40)]) == 0
    assert ledger.verify().ok
