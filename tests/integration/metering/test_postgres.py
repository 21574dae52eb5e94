"""The ledger, quotas and rate limits under concurrency on a real PostgreSQL server: several
writers (as several API processes would be) still build one linear, verifiable chain."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest

from feedserver.errors import QuotaExceeded
from feedserver.metering.ledger import Ledger, migrate
from feedserver.metering.quotas import QuotaCounters
from feedserver.metering.ratelimit import DatabaseRateLimiter
from feedserver.plans import RateLimit
from feedserver.storage.db.postgres import PostgresDatabase
from tests.unit.metering.conftest import rec

pytestmark = pytest.mark.integration
NOW = datetime(2026, 11, 10, tzinfo=UTC)


def test_concurrent_writers_build_one_chain(fresh_postgres_url: str) -> None:
    writers = [PostgresDatabase(fresh_postgres_url, max_size=2) for _ in range(4)]
    try:
        ledgers = [Ledger(db) for db in writers]

        def write(w: int) -> int:
            n = 0
            for batch in range(10):
                # overlapping ids between writers: each must land exactly once
                n += ledgers[w].append([rec(batch * 10 + i + (w % 2) * 5) for i in range(10)])
            return n

        with ThreadPoolExecutor(4) as pool:
            inserted = sum(pool.map(write, range(4)))
        assert inserted == ledgers[0].count() == 105
        result = ledgers[0].verify()
        assert result.ok and result.rows == 105
    finally:
        for db in writers:
            db.close()


def test_quota_holds_under_concurrency(fresh_postgres_url: str) -> None:
    dbs = [PostgresDatabase(fresh_postgres_url, max_size=2) for _ in range(3)]
    try:
        migrate(dbs[0])

        def hammer(i: int) -> int:
            ok = 0
            for _ in range(20):
                try:
                    QuotaCounters(dbs[i % 3]).consume("acme", "2026-11", "ondemand_lookups",
                                                      37, NOW)
                    ok += 1
                except QuotaExceeded:
                    pass
            return ok

        with ThreadPoolExecutor(6) as pool:
            assert sum(pool.map(hammer, range(6))) == 37
        assert QuotaCounters(dbs[0]).used("acme", "2026-11", "ondemand_lookups") == 37
    finally:
        for db in dbs:
            db.close()


def test_rate_limit_is_shared_between_replicas(fresh_postgres_url: str) -> None:
    a, b = (PostgresDatabase(fresh_postgres_url, max_size=2) for _ in range(2))
    try:
        migrate(a)
        replicas = [DatabaseRateLimiter(a), DatabaseRateLimiter(b)]
        policy = RateLimit(requests_per_second=1, burst=5)
        now = 2_000_000_000.0

        def hit(i: int) -> bool:
            return replicas[i % 2].hit("rate:acme", policy, now).allowed

        with ThreadPoolExecutor(4) as pool:
            assert sum(pool.map(hit, range(12))) == 5
    finally:
        a.close()
        b.close()
