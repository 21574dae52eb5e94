"""On-demand lookup units leased a few at a time (``quota_leases``): the quota is never
exceeded, whatever the number of processes, and unspent units go back when a server stops."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest

from feedserver.errors import QuotaExceeded
from feedserver.metering.ledger import migrate
from feedserver.metering.quota_leases import MAX_UNITS, QuotaLeases, units_for
from feedserver.metering.quotas import QuotaCounters
from feedserver.plans import QuotaName
from feedserver.storage.db import Database

NOW = datetime(2026, 11, 5, 12, tzinfo=UTC)
MONTH = "2026-11"


def test_three_processes_never_exceed_the_quota(db: Database) -> None:
    # Three QuotaLeases on one database stand for three server processes: each leases units
    # ahead, yet exactly the limit is served and the counter never passes it.
    migrate(db)
    processes = [QuotaLeases(QuotaCounters(db)) for _ in range(3)]
    served = 0
    for i in range(2_000):
        try:
            processes[i % 3].spend("acme", MONTH, "ondemand_lookups", 1_000, NOW)
            served += 1
        except QuotaExceeded:
            pass
    assert served == 1_000
    assert QuotaCounters(db).used("acme", MONTH, "ondemand_lookups") == 1_000


def test_units_are_spent_in_memory_and_given_back(db: Database) -> None:
    migrate(db)
    counters = QuotaCounters(db)
    leases = QuotaLeases(counters)
    assert leases.try_spend("acme", MONTH, "ondemand_lookups") is None  # nothing held yet
    leases.spend("acme", MONTH, "ondemand_lookups", 10_000, NOW)  # the first lease: one unit
    leases.spend("acme", MONTH, "ondemand_lookups", 10_000, NOW)  # then a larger one
    held = counters.used("acme", MONTH, "ondemand_lookups")
    assert held > 2  # leased ahead
    assert leases.try_spend("acme", MONTH, "ondemand_lookups") == 3  # no database
    assert leases.give_back() == held - 3
    assert counters.used("acme", MONTH, "ondemand_lookups") == 3  # exactly what was served


def test_lease_sizes_shrink_near_the_limit() -> None:
    assert units_for(None, 0) == MAX_UNITS
    assert units_for(1_000_000, 0) == MAX_UNITS
    assert units_for(1_000, 990) == 1  # 10 left: one by one
    assert units_for(1_000, 500) == 31


def test_a_lease_is_refused_only_when_nothing_is_left(db: Database) -> None:
    migrate(db)
    counters = QuotaCounters(db)
    assert counters.lease("acme", MONTH, "ondemand_lookups", 5, NOW, 64) == (5, 5)
    with pytest.raises(QuotaExceeded):
        counters.lease("acme", MONTH, "ondemand_lookups", 5, NOW, 1)
    assert counters.lease("acme", MONTH, "ondemand_lookups", None, NOW, 64) == (64, 69)


def test_units_spent_from_threads_are_each_spent_once(db: Database) -> None:
    # Spending takes no lock (``next`` on the lease is atomic): four threads spending one
    # lease, and the give-back after them, account for every leased unit exactly once.
    import threading

    migrate(db)
    counters = QuotaCounters(db)
    leases = QuotaLeases(counters)
    leases.spend("acme", MONTH, "ondemand_lookups", None, NOW)  # a first lease of one
    first = leases.spend("acme", MONTH, "ondemand_lookups", None, NOW)  # then MAX_UNITS
    seen: list[int] = []

    def spender() -> None:
        for _ in range(MAX_UNITS):
            used = leases.try_spend("acme", MONTH, "ondemand_lookups")
            if used is not None:
                seen.append(used)

    threads = [threading.Thread(target=spender) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(seen) == list(range(first + 1, first + MAX_UNITS))  # each unit once
    assert leases.give_back() == 0
    assert counters.used("acme", MONTH, "ondemand_lookups") == first + MAX_UNITS - 1


class SlowCounters(QuotaCounters):
    """The real counters, each lease taking a round trip's time, so threads overlap."""

    def lease(self, customer_id: str, month: str, quota: QuotaName, limit: int | None,
              now: datetime, want: int) -> tuple[int, int]:
        time.sleep(0.05)
        return super().lease(customer_id, month, quota, limit, now, want)


def test_threads_meeting_on_a_spent_lease_lose_no_units(db: Database) -> None:
    # Eight lookups of one process find its lease spent at once (eight worker threads): one
    # leases, the others spend what it leased. Each used to lease too, and each lease stored
    # replaced the one before it: those units stayed counted, never spent nor given back,
    # so the customer lost them from the month's quota.
    migrate(db)
    counters = SlowCounters(db)
    leases = QuotaLeases(counters)
    leases.spend("acme", MONTH, "ondemand_lookups", None, NOW)  # a lease (of one), spent
    start = threading.Barrier(8)

    def lookup() -> int:
        start.wait(timeout=10)
        return leases.spend("acme", MONTH, "ondemand_lookups", None, NOW)

    with ThreadPoolExecutor(8) as pool:
        used = list(pool.map(lambda _: lookup(), range(8)))
    assert sorted(used) == list(range(2, 10))  # each lookup its own unit
    leases.give_back()
    assert counters.used("acme", MONTH, "ondemand_lookups") == 9  # what was served
