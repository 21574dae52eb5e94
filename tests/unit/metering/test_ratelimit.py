from __future__ import annotations

import pytest

from feedserver.metering.ledger import migrate
from feedserver.metering.ratelimit import DatabaseRateLimiter, LocalRateLimiter, RateLimiter
from feedserver.plans import RateLimit
from feedserver.storage.db import Database

POLICY = RateLimit(requests_per_second=10, burst=3)


@pytest.fixture(params=["local", "database"])
def limiter(request: pytest.FixtureRequest, db: Database) -> RateLimiter:
    if request.param == "local":
        return LocalRateLimiter()
    migrate(db)
    return DatabaseRateLimiter(db)


def test_burst_then_refill(limiter: RateLimiter) -> None:
    now = 1_000_000.0
    first = [limiter.hit("k", POLICY, now) for _ in range(4)]
    assert [d.allowed for d in first] == [True, True, True, False]
    assert [d.remaining for d in first[:3]] == [2, 1, 0]
    assert first[3].retry_after == pytest.approx(0.1)
    assert limiter.hit("k", POLICY, now + 0.1).allowed  # one token back after 1/r seconds
    assert not limiter.hit("k", POLICY, now + 0.1).allowed
    assert limiter.hit("other", POLICY, now).allowed  # buckets are independent
    again = limiter.hit("k", POLICY, now + 10)
    assert again.allowed and again.remaining == 2
