"""Corrections are appended, chained and netted; closed months never change."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from feedserver.errors import Conflict, InvalidParameter, NotFound
from feedserver.metering.corrections import Correction, correct, minor_units
from feedserver.metering.ledger import Ledger
from feedserver.metering.periods import Periods
from feedserver.metering.reports import build_report, to_csv
from feedserver.storage.db import Database
from tests.unit.metering.conftest import rec

NOV5 = datetime(2026, 11, 5, 12, tzinfo=UTC)


class Clock:
    """A settable clock: the closed-month rule depends on 'now', which tests must pin."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def ledger_at(db: Database, now: datetime, grace_hours: int = 72) -> tuple[Ledger, Clock]:
    clock = Clock(now)
    return Ledger(db, periods=Periods.hours(grace_hours, clock=clock)), clock


def void(usage_id: str, **extra: object) -> Correction:
    return Correction(kind="void", usage_id=usage_id, reason="test traffic", actor="finance",
                      **extra)  # type: ignore[arg-type]


def test_void_nets_to_zero_and_keeps_the_chain(db: Database) -> None:
    ledger, _ = ledger_at(db, NOV5 + timedelta(days=1))
    ledger.append([rec(1, quantity=500), rec(2, quantity=7)])
    original = rec(1).usage_id
    row = correct(ledger, void(original))
    assert (row.kind, row.corrects, row.quantity, row.ts) == (
        "void", original, -500, ledger.get(original).ts)  # type: ignore[union-attr]
    assert ledger.verify().ok
    report = build_report(db, "2026-11")
    acme = report.customers[0]
    assert (acme.original, acme.corrections, acme.totals) == (
        {"bytes": 507}, {"bytes": -500}, {"bytes": 7})
    assert "correction,2026-11,acme,acme,2026-11-05,bytes,-500" in to_csv(report)
    # the ledger's bytes counter follows the net
    assert db.fetchone("SELECT used FROM quota_usage WHERE meter = 'bytes'") == (7,)
    with pytest.raises(Conflict, match="already void"):
        correct(ledger, void(original))


def test_amend_sets_the_net_and_repeats_are_idempotent_by_key(db: Database) -> None:
    ledger, _ = ledger_at(db, NOV5)
    ledger.append([rec(1, quantity=500)])
    uid = rec(1).usage_id
    amend = Correction(kind="amend", usage_id=uid, quantity=120, reason="overcounted",
                       actor="finance", key="form-1")
    first = correct(ledger, amend)
    assert first.quantity == -380
    # the same form submitted again: the same row, nothing appended
    assert correct(ledger, amend) == first
    assert ledger.count() == 2
    second = correct(ledger, Correction(kind="amend", usage_id=uid, quantity=600,
                                        reason="undercounted after all", actor="finance"))
    assert second.quantity == 480  # from a net of 120 to 600
    assert build_report(db, "2026-11").customers[0].totals == {"bytes": 600}
    assert ledger.verify().ok


def test_a_correction_of_a_closed_month_is_booked_now(db: Database) -> None:
    ledger, clock = ledger_at(db, NOV5)
    ledger.append([rec(1, quantity=500)])
    clock.now = datetime(2026, 12, 4, 0, 0, 1, tzinfo=UTC)  # Nov closed at Dec 4 00:00
    row = correct(ledger, void(rec(1).usage_id))
    assert row.ts.startswith("2026-12-04") and row.original_ts.startswith("2026-11-05")
    # November's totals are final; December carries the change
    assert build_report(db, "2026-11").customers[0].totals == {"bytes": 500}
    december = build_report(db, "2026-12").customers[0]
    assert (december.original, december.corrections, december.totals) == (
        {}, {"bytes": -500}, {"bytes": -500})


def test_credit_lands_as_a_negative_invoice_line(db: Database) -> None:
    ledger, _ = ledger_at(db, NOV5)
    ledger.append([rec(1, quantity=10)])
    row = correct(ledger, Correction(kind="credit", customer_id="acme", amount="12.50",
                                     currency="EUR", reason="outage on Nov 3", actor="finance"))
    assert (row.meter, row.quantity, row.resource, row.corrects) == ("credit", 1250, "EUR", "")
    acme = build_report(db, "2026-11").customers[0]
    assert [(ln.key, ln.amount) for ln in acme.invoice] == [("credit", -12.5)]
    assert acme.totals == {"bytes": 10}  # a credit is money, never usage
    with pytest.raises(Conflict, match="closed"):
        correct(ledger, Correction(kind="credit", customer_id="acme", amount="1",
                                   currency="EUR", reason="too late", actor="finance",
                                   month="2026-09"))
    assert ledger.verify().ok


@pytest.mark.parametrize(("correction", "error"), [
    (Correction(kind="void", usage_id="nope", reason="why not", actor="a"), NotFound),
    (Correction(kind="void", usage_id="x", reason="", actor="a"), InvalidParameter),
    (Correction(kind="amend", usage_id="x", reason="reason", actor="a"), InvalidParameter),
    (Correction(kind="amend", usage_id="x", quantity=-1, reason="reason", actor="a"),
     InvalidParameter),
    (Correction(kind="credit", customer_id="acme", currency="USD", amount="1.001",
                reason="reason", actor="a"), InvalidParameter),
    (Correction(kind="credit", customer_id="acme", currency="USD", amount="-5",
                reason="reason", actor="a"), InvalidParameter),
    (Correction(kind="credit", customer_id="acme", currency="USD", amount="NaN",
                reason="reason", actor="a"), InvalidParameter),
])
def test_bad_corrections_are_typed_errors(db: Database, correction: Correction,
                                          error: type[Exception]) -> None:
    ledger, _ = ledger_at(db, NOV5)
    with pytest.raises(error):
        correct(ledger, correction)
    assert ledger.count() == 0


def test_a_correction_cannot_be_corrected(db: Database) -> None:
    ledger, _ = ledger_at(db, NOV5)
    ledger.append([rec(1)])
    row = correct(ledger, void(rec(1).usage_id))
    with pytest.raises(Conflict, match="void entry"):
        correct(ledger, void(row.usage_id))


def test_minor_units() -> None:
    assert minor_units("12.5", "USD") == 1250
    assert minor_units("1000", "JPY") == 1000
    with pytest.raises(InvalidParameter):
        minor_units("10.5", "JPY")


def test_verify_catches_an_edited_correction(db: Database) -> None:
    ledger, _ = ledger_at(db, NOV5)
    ledger.append([rec(1, quantity=500)])
    row = correct(ledger, void(rec(1).usage_id))
    # Turning the void back into plain usage (or changing its reason) breaks its hash.
    db.execute("UPDATE usage_ledger SET kind = 'usage' WHERE seq = ?", (row.seq,))
    assert not ledger.verify().ok
    db.execute("UPDATE usage_ledger SET kind = 'void', reason = 'x' WHERE seq = ?", (row.seq,))
    result = ledger.verify()
    assert not result.ok and "edited" in result.problem
