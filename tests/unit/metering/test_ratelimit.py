from __future__ import annotations

import math
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from feedserver.metering.hostbuckets import HostRateLimiter
from feedserver.metering.ledger import migrate
from feedserver.metering.ratelimit import (
    FIRST_LEASE,
    LEASE_SECONDS,
    MAX_LEASE,
    DatabaseRateLimiter,
    LeasedRateLimiter,
    LocalRateLimiter,
    RateDecision,
    RateLimiter,
    lease_tokens,
)
from feedserver.plans import RateLimit
from feedserver.storage.db import Database, SQLiteDatabase

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


class CountingBucket:
    """The real database bucket, counting its steps and the tokens each asked for; ``pause``
    holds each step that long (a database round trip), so concurrent callers overlap."""

    def __init__(self, db: Database, pause: float = 0.0) -> None:
        self.inner = DatabaseRateLimiter(db)
        self.asked: list[int] = []
        self.pause = pause

    def take(self, bucket: str, policy: RateLimit, now: float,
             tokens: int) -> tuple[int, RateDecision]:
        self.asked.append(tokens)
        time.sleep(self.pause)
        return self.inner.take(bucket, policy, now, tokens)


BUSY = RateLimit(requests_per_second=100_000, burst=100_000)  # leases up to MAX_LEASE


def test_leases_follow_what_the_process_spends(db: Database) -> None:
    # A lease that runs dry within its time asks for twice as many next time; one that
    # expires with tokens left asks for what was spent and a quarter more. A busy process
    # then steps the shared bucket about once per lease time, whatever its rate (it stepped
    # once per 64 requests, its leases' fixed size, in the distributed bench).
    migrate(db)
    bucket = CountingBucket(db)
    limiter = LeasedRateLimiter(bucket)
    now = 1_000_000.0
    for _ in range(FIRST_LEASE):  # the first lease, spent at one instant
        assert limiter.hit("rate:acme", BUSY, now).allowed
    for _ in range(40):  # dry within its time: the next step asks for twice as many
        assert limiter.hit("rate:acme", BUSY, now + LEASE_SECONDS / 2).allowed
    assert bucket.asked == [FIRST_LEASE, 2 * FIRST_LEASE]
    # That lease (127 tokens after its step's own request) expires with 39 of them spent:
    # the next step asks for those and a quarter more.
    assert limiter.hit("rate:acme", BUSY, now + 2 * LEASE_SECONDS).allowed
    assert bucket.asked[2] == 39 + 39 // 4
    assert lease_tokens(BUSY) == MAX_LEASE
    assert all(n <= MAX_LEASE for n in bucket.asked)


def test_leases_held_through_a_quiet_spell_add_nothing_to_the_next_burst(db: Database) -> None:
    # Two processes lease, then serve nothing for 0.3 s while the bucket fills up again. Their
    # leased tokens expired 50 ms after their steps, so the burst that follows is the bucket's
    # own; had a lease outlived LEASE_SECONDS, each process would add what it held to it.
    migrate(db)
    policy = RateLimit(requests_per_second=1000, burst=200)
    a, b = (LeasedRateLimiter(DatabaseRateLimiter(db)) for _ in range(2))
    now = 1_000_000.0
    assert a.hit("rate:acme", policy, now).allowed and b.hit("rate:acme", policy, now).allowed
    later = now + 0.3
    allowed = sum((a if i % 2 else b).hit("rate:acme", policy, later).allowed
                  for i in range(400))
    assert allowed == policy.burst
    # What two leases held through the spell would have added exceeds the bound of any window
    # (LEASE_SECONDS' worth): this case tells a lease outliving its time from one that does not.
    assert 2 * (lease_tokens(policy) - 1) > policy.requests_per_second * LEASE_SECONDS


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 1),
                          st.one_of(st.integers(0, 3), st.sampled_from([30, 100]))),
                min_size=1, max_size=300))
def test_any_mix_of_leases_never_admits_more_than_the_bucket(
        steps: list[tuple[int, int]]) -> None:
    # Two processes (two limiters on one database bucket) whose leases grow and shrink as
    # they spend, at times advancing by 0-3 ms, with quiet spells of 30 and 100 ms between
    # (leases expire, the bucket fills up again): every token they admit came out of the one
    # bucket, so together they never admit more than it held and refilled. And as each token
    # is spent within LEASE_SECONDS of the step that took it, no window of their admissions
    # holds more than an exact bucket admits in it and LEASE_SECONDS' worth more: the bound
    # docs/metering.md states for leases ("Quotas and rate limits").
    policy = RateLimit(requests_per_second=1000, burst=200)
    rate = policy.requests_per_second
    with tempfile.TemporaryDirectory() as tmp:
        db = SQLiteDatabase(Path(tmp) / "db.sqlite")
        try:
            migrate(db)
            limiters = [LeasedRateLimiter(DatabaseRateLimiter(db)) for _ in range(2)]
            now, admitted = 1_000_000.0, []
            for which, ms in steps:
                now += ms / 1000
                if limiters[which].hit("rate:acme", policy, now).allowed:
                    admitted.append(now)
            elapsed = now - 1_000_000.0
            assert len(admitted) <= policy.burst + math.floor(elapsed * rate)
            for i, first in enumerate(admitted):  # every window [first, last]
                for j in range(i, len(admitted)):
                    window = admitted[j] - first
                    assert j - i + 1 <= policy.burst + rate * (window + LEASE_SECONDS) + 1
        finally:
            db.close()


def test_one_step_for_the_threads_that_found_the_lease_spent(db: Database) -> None:
    # Eight worker threads find no lease at once while the bucket's step takes a round trip:
    # one steps, the other seven wait for it and spend what it leased (each used to step
    # the database itself, and each step dropped the lease the one before had taken).
    migrate(db)
    bucket = CountingBucket(db, pause=0.05)
    limiter = LeasedRateLimiter(bucket)
    start = threading.Barrier(8)

    def hit() -> bool:
        start.wait(timeout=10)
        return limiter.hit("rate:acme", BUSY, 1_000_000.0).allowed

    with ThreadPoolExecutor(8) as pool:
        assert all(pool.map(lambda _: hit(), range(8)))
    assert bucket.asked == [FIRST_LEASE]


def test_a_database_bucket_whose_row_is_gone_starts_full(db: Database) -> None:
    # On PostgreSQL the buckets' table is UNLOGGED (a step's commit waits for no WAL flush): a
    # crash of the database empties it. A bucket without its row starts full again: the
    # customer may burst once more, and nothing refuses or fails.
    migrate(db)
    limiter = DatabaseRateLimiter(db)
    now = 1000.0
    assert all(limiter.hit("rate:acme", POLICY, now).allowed for _ in range(POLICY.burst))
    assert not limiter.hit("rate:acme", POLICY, now).allowed
    db.execute("DELETE FROM rate_limit_state")
    decision = limiter.hit("rate:acme", POLICY, now)
    assert decision.allowed and decision.remaining == POLICY.burst - 1
