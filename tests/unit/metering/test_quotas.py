from __future__ import annotations

from datetime import UTC, datetime

import pytest

from feedserver.errors import QuotaExceeded
from feedserver.metering.ledger import migrate
from feedserver.metering.quotas import QuotaCounters
from feedserver.storage.db import Database

NOW = datetime(2026, 11, 30, 23, 59, 30, tzinfo=UTC)


def test_consume_stops_at_the_limit_and_rolls_back(db: Database) -> None:
    migrate(db)
    q = QuotaCounters(db)
    assert [q.consume("acme", "2026-11", "ondemand_lookups", 2, NOW) for _ in range(2)] == [1, 2]
    with pytest.raises(QuotaExceeded) as info:
        q.consume("acme", "2026-11", "ondemand_lookups", 2, NOW)
    assert info.value.extra["retry_after"] == 30
    assert q.used("acme", "2026-11", "ondemand_lookups") == 2
    assert q.consume("acme", "2026-12", "ondemand_lookups", 2, NOW) == 1  # a new month


def test_a_claim_counts_once(db: Database) -> None:
    migrate(db)
    q = QuotaCounters(db)
    for _ in range(5):
        assert q.consume("acme", "2026-11", "chunk_downloads", 1, NOW, claim="dl-1") == 1
    with pytest.raises(QuotaExceeded):
        q.consume("acme", "2026-11", "chunk_downloads", 1, NOW, claim="dl-2")
    # the refused claim was rolled back: raising the limit later lets dl-2 count
    assert q.consume("acme", "2026-11", "chunk_downloads", 2, NOW, claim="dl-2") == 2
    assert q.all_used("2026-11") == {"acme": {"chunk_downloads": 2}}
