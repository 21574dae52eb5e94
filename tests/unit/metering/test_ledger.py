from __future__ import annotations

from datetime import UTC, datetime

import pytest

from feedserver.metering.ledger import Ledger
from feedserver.storage.db import Database
from tests.unit.metering.conftest import rec


def filled(db: Database, n: int = 5) -> Ledger:
    ledger = Ledger(db)
    assert ledger.append([rec(i, quantity=i + 1) for i in range(n)]) == n
    return ledger


def test_append_is_idempotent_and_feeds_the_bytes_counter(db: Database) -> None:
    ledger = filled(db)
    assert ledger.append([rec(0, quantity=1), rec(4, quantity=5), rec(9)]) == 1
    assert ledger.count() == 6
    used = db.fetchone("SELECT used FROM quota_usage WHERE customer_id='acme' AND meter='bytes'")
    assert used == (1 + 2 + 3 + 4 + 5 + 10,)
    assert ledger.verify().ok


def test_month_of_the_bytes_counter_is_the_utc_month(db: Database) -> None:
    ledger = Ledger(db)
    edge = datetime(2026, 11, 30, 23, 59, 59, 999999, tzinfo=UTC)
    ledger.append([rec(1, ts=edge), rec(2, ts=datetime(2026, 12, 1, tzinfo=UTC))])
    rows = db.fetchall("SELECT month, used FROM quota_usage ORDER BY month")
    assert rows == [("2026-11", 10), ("2026-12", 10)]


def test_verify_reports_an_edited_row(db: Database) -> None:
    ledger = filled(db)
    db.execute("UPDATE usage_ledger SET quantity = quantity + 1 WHERE seq = 3")
    result = ledger.verify()
    assert not result.ok and result.seq == 3 and "edited" in result.problem


def test_verify_reports_a_removed_row(db: Database) -> None:
    ledger = filled(db)
    db.execute("DELETE FROM usage_ledger WHERE seq = 2")
    result = ledger.verify()
    assert not result.ok and result.seq == 2 and "removed" in result.problem


def test_verify_reports_a_removed_tail(db: Database) -> None:
    ledger = filled(db)
    db.execute("DELETE FROM usage_ledger WHERE seq = 5")
    result = ledger.verify()
    assert not result.ok and "end" in result.problem


def test_verify_reports_reordered_rows(db: Database) -> None:
    ledger = filled(db)
    db.execute("UPDATE usage_ledger SET seq = 100 WHERE seq = 2")
    db.execute("UPDATE usage_ledger SET seq = 2 WHERE seq = 3")
    db.execute("UPDATE usage_ledger SET seq = 3 WHERE seq = 100")
    result = ledger.verify()
    assert not result.ok and result.seq == 2


@pytest.mark.parametrize("page", [1, 2, 1000])
def test_rows_pages_through_the_whole_chain(db: Database, page: int) -> None:
    ledger = filled(db, 7)
    assert [r.seq for r in ledger.rows(page=page)] == list(range(1, 8))


def test_a_failed_append_claims_nothing_so_the_retry_meters_once(db: Database) -> None:
    """The dedup (by usage id) happens in the transaction that writes the rows: a write that
    fails half-way leaves no id behind that would make its retry a no-op (metered zero times)."""
    ledger = Ledger(db)
    if db.dialect == "sqlite":
        db.execute("CREATE TRIGGER fail_big BEFORE INSERT ON usage_ledger "
                   "WHEN NEW.quantity = 666 BEGIN SELECT RAISE(ABORT, 'disk full'); END")
    else:
        db.execute("CREATE FUNCTION fail_big() RETURNS trigger AS $$ BEGIN "
                   "IF NEW.quantity = 666 THEN RAISE EXCEPTION 'disk full'; END IF; "
                   "RETURN NEW; END $$ LANGUAGE plpgsql")
        db.execute("CREATE TRIGGER fail_big BEFORE INSERT ON usage_ledger "
                   "FOR EACH ROW EXECUTE FUNCTION fail_big()")
    batch = [rec(1), rec(2, quantity=666), rec(3)]
    with pytest.raises(Exception, match="disk full"):
        ledger.append(batch)
    assert ledger.count() == 0
    db.execute("DROP TRIGGER fail_big" + ("" if db.dialect == "sqlite" else " ON usage_ledger"))
    assert ledger.append(batch) == 3
    assert ledger.append(batch) == 0
    used = db.fetchone("SELECT used FROM quota_usage WHERE customer_id='acme' AND meter='bytes'")
    assert used == (10 + 666 + 10,)
    assert ledger.verify().ok
