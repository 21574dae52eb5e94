from __future__ import annotations

from pathlib import Path

import pytest

from feedserver.metering.hostbuckets import HostRateLimiter
from feedserver.metering.ledger import migrate
from feedserver.metering.ratelimit import (
    MAX_LEASE,
    DatabaseRateLimiter,
    LeasedRateLimiter,
    LocalRateLimiter,
    RateLimiter,
    lease_tokens,
)
from feedserver.plans import RateLimit
from feedserver.storage.db import Database

POLICY = RateLimit(requests_per_second=10, burst=3)


@pytest.fixture(params=["local", "database", "host", "leased", "leased-host"])
def limiter(request: pytest.FixtureRequest, db: Database, tmp_path: Path) -> RateLimiter:
    if request.param == "local":
        return LocalRateLimiter()
    if request.param == "host":
        return HostRateLimiter(tmp_path / "buckets")
    if request.param == "leased-host":
        # what the server uses on SQLite (POLICY's lease is one token: exact)
        return LeasedRateLimiter(HostRateLimiter(tmp_path / "buckets"), blocking=False)
    migrate(db)
    if request.param == "leased":
        # POLICY's lease is one token: a leased limiter then decides exactly as the database
        return LeasedRateLimiter(DatabaseRateLimiter(db))
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


def test_host_buckets_are_one_bucket_for_every_opener(tmp_path: Path) -> None:
    # Two openers of one file stand for two server processes (each maps the file and takes
    # its flock): they draw from ONE bucket, alternating or not.
    a, b = HostRateLimiter(tmp_path / "buckets"), HostRateLimiter(tmp_path / "buckets")
    now = 1_000_000.0
    allowed = [(a if i % 2 else b).hit("rate:acme", POLICY, now).allowed for i in range(8)]
    assert allowed.count(True) == POLICY.burst
    assert not a.hit("rate:acme", POLICY, now).allowed
    assert b.hit("rate:acme", POLICY, now + 0.1).allowed  # refilled for both
    a.close()
    b.close()


def test_host_buckets_reuse_the_slots_of_full_buckets(tmp_path: Path) -> None:
    # A table of 4 slots: a full bucket (its time in the past) is the same as no bucket, so
    # new customers take its slot and nothing live is forgotten.
    table = HostRateLimiter(tmp_path / "buckets", slots=4)
    now = 1_000_000.0
    for i in range(4):
        assert table.hit(f"rate:{i}", POLICY, now).allowed
    later = now + 10  # every bucket above is full again
    for i in range(4, 12):
        assert table.hit(f"rate:{i}", POLICY, later).remaining == POLICY.burst - 1
    for _ in range(POLICY.burst - 1):
        table.hit("rate:11", POLICY, later)
    assert not table.hit("rate:11", POLICY, later).allowed  # its state was kept
    table.close()


def test_a_different_layout_starts_every_bucket_full(tmp_path: Path) -> None:
    path = tmp_path / "buckets"
    path.write_bytes(b"not a bucket table")
    table = HostRateLimiter(path)
    assert table.hit("rate:acme", POLICY, 1_000_000.0).remaining == POLICY.burst - 1
    table.close()


def test_leases_spend_one_shared_bucket(db: Database) -> None:
    # A fast plan leases several tokens per database update; two processes (two limiters on
    # one database) still admit exactly the burst at one instant, whoever holds the leases.
    migrate(db)
    fast = RateLimit(requests_per_second=1000, burst=100)
    assert 1 < lease_tokens(fast) <= MAX_LEASE
    a, b = (LeasedRateLimiter(DatabaseRateLimiter(db)) for _ in range(2))
    now = 1_000_000.0
    allowed = [(a if i % 2 else b).hit("rate:acme", fast, now).allowed for i in range(150)]
    assert allowed.count(True) == fast.burst
    assert lease_tokens(RateLimit(requests_per_second=0.001, burst=10)) == 1


def test_leased_tokens_expire_unspent(db: Database) -> None:
    # A token leased and not spent within LEASE_SECONDS is never spent later: it cannot
    # stretch a window beyond rate x LEASE_SECONDS.
    migrate(db)
    fast = RateLimit(requests_per_second=1000, burst=100)
    limiter = LeasedRateLimiter(DatabaseRateLimiter(db))
    now = 1_000_000.0
    assert limiter.hit("rate:acme", fast, now).allowed
    assert limiter.try_hit("rate:acme", fast, now) is not None  # a leased token, no I/O
    assert limiter.try_hit("rate:acme", fast, now + 1.0) is None  # expired: ask the database


def test_leased_host_buckets_admit_exactly_the_burst_across_processes(tmp_path: Path) -> None:
    # The server's SQLite limiter: host buckets spent in leases. Two openers of one file stand
    # for two worker processes; at one instant they still admit exactly the burst, and
    # try_hit always decides (a file lock never blocks on I/O), so admission never hops.
    fast = RateLimit(requests_per_second=1000, burst=100)
    a, b = (LeasedRateLimiter(HostRateLimiter(tmp_path / "buckets"), blocking=False)
            for _ in range(2))
    now = 1_000_000.0
    decisions = [(a if i % 2 else b).try_hit("rate:acme", fast, now) for i in range(150)]
    assert all(d is not None for d in decisions)
    assert [d.allowed for d in decisions if d is not None].count(True) == fast.burst
    # A lease is one step of the shared bucket: the first hit took lease_tokens at once.
    assert a.hit("rate:acme", fast, now + 1.0).allowed
    assert a.try_hit("rate:acme", fast, now + 1.0) is not None
    assert b.hit("rate:acme", fast, now + 1.0).allowed
