from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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


_customers = itertools.count()


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(limit=st.one_of(st.none(), st.integers(1, 200)),
       wants=st.lists(st.integers(0, 80), min_size=1, max_size=12))
def test_leases_grant_what_is_left_never_more(db: Database, limit: int | None,
                                               wants: list[int]) -> None:
    # ``lease`` tries its one-statement path first (the counter has room for all it wants) and
    # falls back to the transaction (no counter yet, or less room than wanted). Whichever
    # answers, each grant is what is wanted or what is left, at least one, and the counter is
    # never past the limit: the quota's promise.
    migrate(db)
    q = QuotaCounters(db)
    customer = f"c{next(_customers)}"  # a counter of its own per example
    used = 0
    for want in wants:
        room = None if limit is None else limit - used
        if room == 0:
            with pytest.raises(QuotaExceeded):
                q.lease(customer, "2026-11", "ondemand_lookups", limit, NOW, want)
            continue
        grant, after = q.lease(customer, "2026-11", "ondemand_lookups", limit, NOW, want)
        expected = max(1, want) if room is None else min(max(1, want), room)
        assert (grant, after) == (expected, used + expected)
        used = after
    assert q.used(customer, "2026-11", "ondemand_lookups") == used
