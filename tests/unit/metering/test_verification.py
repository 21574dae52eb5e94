from __future__ import annotations

from datetime import UTC, datetime

from feedserver.metering.ledger import Ledger
from feedserver.metering.verification import last, verify_and_record
from feedserver.storage.db import Database
from tests.unit.metering.conftest import rec

WHEN = datetime(2026, 11, 5, tzinfo=UTC)


def test_each_run_is_kept_with_the_head_it_checked(db: Database) -> None:
    ledger = Ledger(db)
    assert last(db) is None
    ledger.append([rec(i) for i in range(3)])
    ok = verify_and_record(ledger, source="cli", when=WHEN)
    assert (ok.ok, ok.rows, ok.head_seq, ok.head_hash) == (
        True, 3, 3, ledger.head().row_hash)
    db.execute("UPDATE usage_ledger SET quantity = 99 WHERE seq = 2")
    bad = verify_and_record(ledger, source="portal:finance", when=WHEN)
    assert (bad.ok, bad.bad_seq) == (False, 2)
    assert last(db) == bad
