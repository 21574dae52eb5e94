from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest

from feedserver.metering.batch_rows import batch_rows, evidence_data
from feedserver.metering.ledger import Ledger
from feedserver.storage.db import Database
from tests.unit.metering.conftest import rec, response_line, response_of


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


# --- rows per batch (``append_batch``) ---------------------------------------------------------

def test_a_batch_is_booked_once_with_its_evidence(db: Database) -> None:
    # A batch delivered again (the appender's answer lost) adds nothing: its rows' ids and
    # its evidence's digest are the batch's own.
    ledger = Ledger(db)
    data = b"".join(response_line(i, bytes_sent=i + 1) for i in range(20))
    batch = batch_rows(data)
    assert ledger.append_batch(batch) == 2  # requests and bytes of one group
    assert ledger.append_batch(batch_rows(data)) == 0
    assert db.fetchall("SELECT meter, quantity FROM usage_ledger ORDER BY meter") == [
        ("bytes", sum(range(1, 21))), ("requests", 20)]
    stored = db.fetchall("SELECT digest, lines FROM usage_evidence")
    assert [(d, evidence_data(bytes(b))) for d, b in stored] == [
        (hashlib.sha256(data).hexdigest(), data)]
    used = db.fetchone("SELECT used FROM quota_usage WHERE meter = 'bytes'")
    assert used == (sum(range(1, 21)),)
    assert ledger.verify().ok


def test_a_replay_books_only_the_responses_no_batch_booked(db: Database) -> None:
    # The API process killed after a batch committed and before the journal released its
    # lines: at the next start the journal replays those responses as records. Exactly-once
    # means the replay books the responses no batch holds, and nothing of the others.
    ledger = Ledger(db)
    ledger.append_batch(batch_rows(b"".join(response_line(i) for i in range(10))))
    replay = [r for i in range(5, 15) for r in response_of(i)]
    assert ledger.append(replay) == 2 * 5  # responses 10..14: requests and bytes each
    assert ledger.append(replay) == 0
    assert db.fetchone("SELECT SUM(quantity) FROM usage_ledger WHERE meter = 'requests'") \
        == (15,)
    assert ledger.verify().ok


def test_a_replay_of_a_checkpoint_is_not_booked_beside_its_batch(db: Database) -> None:
    # A download's checkpoint (cumulative bytes, an earlier time) and its final line share
    # the response's usage ids; the final line went in a batch, the journal replays both.
    ledger = Ledger(db)
    start = datetime(2026, 11, 5, 12, tzinfo=UTC)
    ledger.append_batch(batch_rows(response_line(1, bytes_sent=500,
                                                 ts=start + timedelta(seconds=30))))
    checkpoint = response_of(1, bytes_sent=200, ts=start)
    assert ledger.append(checkpoint) == 0
    assert ledger.append(response_of(1, bytes_sent=500, ts=start + timedelta(seconds=30))) == 0
    assert ledger.count() == 2
