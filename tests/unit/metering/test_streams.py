"""Open-stream slots (plan ``max_streams``): shared through the database, never leaked."""

from __future__ import annotations

import pytest

from feedserver.errors import TooManyStreams
from feedserver.metering.streams import StreamSlots
from feedserver.storage.db import Database


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_cap_is_per_customer_and_across_processes(db: Database) -> None:
    clock = Clock()
    # Two server processes: two instances on one database.
    a = StreamSlots(db, lease_seconds=30, clock=clock)
    b = StreamSlots(db, lease_seconds=30, clock=clock)
    first = a.acquire("acme", 2)
    b.acquire("acme", 2)
    with pytest.raises(TooManyStreams) as refused:
        a.acquire("acme", 2)
    assert refused.value.status == 429 and refused.value.extra["open"] == 2
    b.acquire("globex", 2)  # another customer has slots of its own
    a.release(first)
    a.acquire("acme", 2)
    assert a.held("acme") == 2 and a.held("globex") == 1


def test_slots_of_a_dead_process_come_back_after_its_lease(db: Database) -> None:
    clock = Clock()
    dead = StreamSlots(db, lease_seconds=30, clock=clock)
    live = StreamSlots(db, lease_seconds=30, clock=clock)
    dead.acquire("acme", 1)
    clock.now += 20
    live.renew()
    with pytest.raises(TooManyStreams):
        live.acquire("acme", 1)  # the lease of ``dead`` still runs
    clock.now += 11  # ``dead`` never renewed (killed): its lease is over
    live.acquire("acme", 1)
    assert live.held("acme") == 1


def test_a_renewing_process_keeps_its_slots(db: Database) -> None:
    clock = Clock()
    holder = StreamSlots(db, lease_seconds=30, clock=clock)
    other = StreamSlots(db, lease_seconds=30, clock=clock)
    holder.acquire("acme", 1)
    for _ in range(5):
        clock.now += 25
        holder.renew()
        with pytest.raises(TooManyStreams):
            other.acquire("acme", 1)


def test_clean_close_frees_at_once(db: Database) -> None:
    clock = Clock()
    closing = StreamSlots(db, lease_seconds=30, clock=clock)
    closing.acquire("acme", 1)
    closing.close()
    StreamSlots(db, lease_seconds=30, clock=clock).acquire("acme", 1)
