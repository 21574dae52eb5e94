from __future__ import annotations

from datetime import UTC, datetime

import pytest

from feedserver.errors import QuotaExceeded, RateLimited
from feedserver.metering.admission import Admitter
from feedserver.metering.ledger import Ledger
from feedserver.metering.quotas import QuotaCounters
from feedserver.metering.ratelimit import DatabaseRateLimiter, LocalRateLimiter
from feedserver.plans import Plan, Quotas, RateLimit
from feedserver.storage.db import Database
from tests.unit.metering.conftest import FakePrincipal, rec

NOW = datetime(2026, 11, 30, 23, 0, tzinfo=UTC).timestamp()
PLAN = Plan(
    name="default",
    quotas=Quotas(snapshot_downloads=1, chunk_downloads=2, ondemand_lookups=3, bytes=100),
    rate_limit=RateLimit(requests_per_second=100, burst=100),
)


def admitter(db: Database, *, shared: bool = False, clock: float = NOW) -> Admitter:
    Ledger(db)
    limiter = DatabaseRateLimiter(db) if shared else LocalRateLimiter()
    return Admitter(QuotaCounters(db), limiter, clock=lambda: clock)


@pytest.mark.parametrize("shared", [False, True])
async def test_headers_and_quota_policy(db: Database, shared: bool) -> None:
    a = admitter(db, shared=shared)
    ok = await a.admit(FakePrincipal(plan=PLAN), "ondemand", "enwiki")
    assert ok.headers["RateLimit-Policy"] == (
        '"default";q=100;w=1, "ondemand_lookups";q=3;w=2592000'
    )
    assert ok.headers["RateLimit"] == '"default";r=99;t=1, "ondemand_lookups";r=2;t=3600'


async def test_downloads_count_once_per_version_and_day(db: Database) -> None:
    a = admitter(db)
    p = FakePrincipal(plan=PLAN)
    for _ in range(3):  # three parallel Range requests
        adm = await a.admit(p, "snapshots", "enwiki", resource="enwiki_namespace_0@7",
                            download=True)
        assert adm.quota_used == 1
    await a.admit(p, "snapshots", "enwiki", resource="enwiki_namespace_0@7")  # HEAD: free
    with pytest.raises(QuotaExceeded):
        await a.admit(p, "snapshots", "enwiki", resource="enwiki_namespace_0@8", download=True)
    await a.admit(p, "metadata", "enwiki")  # metadata stays free


async def test_bytes_quota_refuses_once_reached(db: Database) -> None:
    a = admitter(db)
    p = FakePrincipal(plan=PLAN)
    await a.admit(p, "diffs", "enwiki")
    Ledger(db).append([rec(1, quantity=100, ts=datetime.fromtimestamp(NOW, UTC))])
    a.forget_bytes()
    with pytest.raises(QuotaExceeded) as info:
        await a.admit(p, "diffs", "enwiki")
    assert info.value.extra["quota"] == "bytes"
    assert info.value.extra["retry_after"] == 3600
    await a.admit(p, "realtime", "enwiki")  # not a byte-quota feed


async def test_rate_limited_carries_retry_after_and_headers(db: Database) -> None:
    a = admitter(db)
    p = FakePrincipal(plan=Plan(name="default",
                                rate_limit=RateLimit(requests_per_second=1, burst=2)))
    await a.admit(p, "metadata")
    await a.admit(p, "metadata")
    with pytest.raises(RateLimited) as info:
        await a.admit(p, "metadata")
    assert info.value.extra["retry_after"] == 1
    assert "RateLimit" in info.value.extra["headers"]  # type: ignore[operator]


async def test_no_plan_means_unlimited(db: Database) -> None:
    a = admitter(db)
    adm = await a.admit(FakePrincipal(), "ondemand")
    assert adm.headers == {} and adm.quota_used == 1
