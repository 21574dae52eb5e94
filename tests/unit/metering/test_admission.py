from __future__ import annotations

import asyncio
import tempfile
import time
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feedserver.errors import QuotaExceeded, RateLimited
from feedserver.metering.admission import Admission, Admitter
from feedserver.metering.hostbuckets import HostRateLimiter
from feedserver.metering.ledger import Ledger
from feedserver.metering.quotas import QuotaCounters
from feedserver.metering.ratelimit import (
    DatabaseRateLimiter,
    LeasedRateLimiter,
    LocalRateLimiter,
    RateDecision,
)
from feedserver.plans import Plan, Quotas, RateLimit
from feedserver.storage.db import Database, SQLiteDatabase
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


class CountingAdmitter(Admitter):
    """Counts the decisions taken in a worker thread (``_admit``: a hop)."""

    hops = 0

    def _admit(self, req: Any, decision: RateDecision | None, bytes_checked: bool = False
               ) -> Admission:
        self.hops += 1
        time.sleep(0.05)  # the bucket's step: a database round trip
        return super()._admit(req, decision, bytes_checked)


async def test_requests_that_find_the_lease_spent_wait_for_one_step(db: Database) -> None:
    # On PostgreSQL a request that finds its process's rate-limit lease spent steps the shared
    # bucket in a worker thread. The others arriving meanwhile wait for that one step and
    # spend what it leased, on the event loop: one hop, not one per request (the distributed
    # bench lost most of its metering overhead to those hops).
    Ledger(db)
    fast = Plan(name="fast", rate_limit=RateLimit(requests_per_second=10_000, burst=10_000))
    a = CountingAdmitter(QuotaCounters(db), LeasedRateLimiter(DatabaseRateLimiter(db)),
                         clock=lambda: NOW)
    p = FakePrincipal(plan=fast)
    admitted = await asyncio.gather(*(a.admit(p, "metadata") for _ in range(8)))
    assert a.hops == 1
    # each spent its own token of the one lease: the bucket's count falls by one each time
    left = [int(x.headers["RateLimit"].split("r=")[1].split(";")[0]) for x in admitted]
    assert left == list(range(left[0], left[0] - 8, -1))
    assert left[0] >= 10_000 - 2  # the bucket was full (floating point may cost one)


async def test_lookups_that_find_the_units_spent_wait_for_one_lease(db: Database) -> None:
    # The same for on-demand lookup units: lookups arriving while one request leases units
    # in a worker thread wait for that lease and spend from it, one hop instead of eight.
    Ledger(db)
    plan = Plan(name="lookups", quotas=Quotas(ondemand_lookups=10_000),
                rate_limit=RateLimit(requests_per_second=0, burst=0))
    a = CountingAdmitter(QuotaCounters(db), LocalRateLimiter(), clock=lambda: NOW)
    p = FakePrincipal(plan=plan)
    await a.admit(p, "ondemand", "enwiki")  # the first lease is one unit: spent
    admitted = await asyncio.gather(*(a.admit(p, "ondemand", "enwiki") for _ in range(8)))
    assert a.hops == 2
    assert sorted(x.quota_used for x in admitted) == list(range(2, 10))
    a.release()  # the units leased and not spent go back: the counter holds what was served
    assert QuotaCounters(db).used("acme", "2026-11", "ondemand_lookups") == 9


async def test_requests_that_find_the_bytes_figure_stale_wait_for_one_read(
        db: Database) -> None:
    # A byte-serving feed checks the monthly bytes quota from a figure read at most once a
    # second; the requests arriving while one reads it in a worker thread wait for that read
    # and decide on the event loop, one hop instead of one each (the bench's eight clients
    # each hopped at every refresh). They still see the fresh figure, never the stale one.
    a = CountingAdmitter(QuotaCounters(db), LocalRateLimiter(), clock=lambda: NOW)
    Ledger(db)
    p = FakePrincipal(plan=PLAN)
    await asyncio.gather(*(a.admit(p, "diffs", "enwiki") for _ in range(8)))
    assert a.hops == 1
    Ledger(db).append([rec(1, quantity=100, ts=datetime.fromtimestamp(NOW, UTC))])
    a.forget_bytes()
    refused = await asyncio.gather(*(a.admit(p, "diffs", "enwiki") for _ in range(8)),
                                   return_exceptions=True)
    assert a.hops == 2
    assert all(isinstance(x, QuotaExceeded) for x in refused)


FAST = Plan(name="fast", quotas=Quotas(bytes=100),
            rate_limit=RateLimit(requests_per_second=10_000, burst=10_000))


@settings(max_examples=40, deadline=None)
@given(plan=st.sampled_from([PLAN, FAST, Plan(name="free")]),
       steps=st.lists(st.tuples(st.sampled_from([0.0, 0.001, 0.03, 0.2, 1.5, 3600.0]),
                                st.sampled_from(["snapshots", "chunks", "metadata",
                                                 "ondemand"])),
                      min_size=1, max_size=80))
def test_at_once_answers_every_request_as_admit_does(plan: Plan,
                                                     steps: list[tuple[float, str]]) -> None:
    # Metadata answers ask ``at_once`` first and await ``admit`` only when it answers None:
    # twin admitters on twin host buckets, one asked that way and one through ``admit``
    # alone, must give every request the same RateLimit fields (so the same tokens spent,
    # leases stepped, bytes figure read, refusals), through lease expiries, bytes-cache
    # refreshes, a day and a month ending (3600 s from 23:00 on 30 November), quota-consuming
    # lookups (``at_once`` must leave them to ``admit``) and a plan without limits.
    clock = [NOW]
    with tempfile.TemporaryDirectory() as tmp:
        dbs = [SQLiteDatabase(f"{tmp}/{name}.sqlite") for name in ("fast", "slow")]
        buckets = [HostRateLimiter(f"{db.path}-ratelimit") for db in dbs]
        for db in dbs:
            Ledger(db)
        fast, slow = (Admitter(QuotaCounters(db), LeasedRateLimiter(b, blocking=False),
                               clock=lambda: clock[0]) for db, b in zip(dbs, buckets, strict=True))
        p = FakePrincipal(plan=plan)

        async def answer(a: Admitter, feed: Any, first: bool) -> list[Any] | str:
            fields = a.at_once(p, feed) if first else None
            if fields is not None:
                return fields
            try:
                return (await a.admit(p, feed, "enwiki")).fields
            except (RateLimited, QuotaExceeded) as refused:
                return type(refused).__name__

        async def run() -> None:
            for dt, feed in steps:
                clock[0] += dt
                assert await answer(fast, feed, True) == await answer(slow, feed, False)
        try:
            asyncio.run(run())
        finally:
            for b, db in zip(buckets, dbs, strict=True):
                b.close()
                db.close()


async def test_at_once_leaves_what_memory_cannot_decide_to_admit(db: Database) -> None:
    # None, never a guess, whenever admit would do more than spend a leased token: the
    # customer's terms not made yet, a quota-consuming lookup, no lease (the database's
    # bucket), a stale bytes figure.
    Ledger(db)
    a = Admitter(QuotaCounters(db), LeasedRateLimiter(DatabaseRateLimiter(db)),
                 clock=lambda: NOW)
    p = FakePrincipal(plan=PLAN)
    assert a.at_once(p, "snapshots") is None  # no terms yet
    await a.admit(p, "snapshots")  # makes them, reads bytes, leases tokens
    assert a.at_once(p, "ondemand") is None
    fields = a.at_once(p, "snapshots")
    assert fields is not None and fields[0] == a.terms(p, NOW).policies[None]
    a.forget_bytes()
    assert a.at_once(p, "snapshots") is None
    unleased = Admitter(QuotaCounters(db), DatabaseRateLimiter(db), clock=lambda: NOW)
    await unleased.admit(p, "snapshots")
    assert unleased.at_once(p, "snapshots") is None  # every request a round trip
