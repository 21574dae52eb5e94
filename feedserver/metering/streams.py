"""Per-customer caps on open realtime streams (a plan's ``max_streams``), shared by every
server process through the database.

A stream holds a *slot* (``stream_slots``) from before its response starts until its body ends.
Each slot names the server process that holds it (``instance``, a random id per process) and
each process keeps a *lease* (``stream_leases.expires``) it renews every third of
``lease_seconds``. Counting a customer's slots counts only those of live leases, and deletes
the rest: the slots of a process that died (``kill -9``, power loss) are free again at most
``lease_seconds`` later. No slot leaks, whatever ends the stream or the process.

Claims are serialised per customer (a lock row, ``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite
serialises every write transaction), so two processes cannot both take the last slot.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable

import anyio.to_thread

from feedserver.errors import FeedError, TooManyStreams
from feedserver.storage.db import Cursor, Database

log = logging.getLogger(__name__)

MIGRATION = (
    "CREATE TABLE stream_leases (instance TEXT PRIMARY KEY, expires {real} NOT NULL)",
    "CREATE TABLE stream_slots (slot TEXT PRIMARY KEY, customer_id TEXT NOT NULL, "
    "instance TEXT NOT NULL, opened {real} NOT NULL)",
    "CREATE INDEX stream_slots_customer ON stream_slots (customer_id)",
    "CREATE TABLE stream_slot_locks (customer_id TEXT PRIMARY KEY)",
)
RETRY_AFTER = 5  # seconds: a guess, streams end when their clients stop
_STALE_LEASES = 3600.0  # dead processes' lease rows are kept this long, then dropped


class StreamSlots:
    """The slots of ONE server process (its ``instance``). Methods block on the database."""

    def __init__(self, db: Database, *, lease_seconds: float = 30.0,
                 clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.lease_seconds = max(0.5, lease_seconds)
        self.clock = clock
        self.instance = uuid.uuid4().hex
        self._for_update = " FOR UPDATE" if db.dialect == "postgresql" else ""
        db.migrate("metering-0002-stream-slots", MIGRATION)

    def acquire(self, customer_id: str, limit: int) -> str:
        """Take one of ``limit`` slots for ``customer_id``; returns the slot id to release.
        Raises ``TooManyStreams`` (429) when all are held by live processes."""
        now = self.clock()
        slot = uuid.uuid4().hex
        with self.db.transaction() as cur:
            self._lease(cur, now)
            cur.execute("INSERT INTO stream_slot_locks (customer_id) VALUES (?) "
                        "ON CONFLICT (customer_id) DO NOTHING", (customer_id,))
            cur.execute("SELECT customer_id FROM stream_slot_locks WHERE customer_id = ?"
                        + self._for_update, (customer_id,))
            # Slots of processes whose lease ran out are free: their streams died with them.
            cur.execute("DELETE FROM stream_slots WHERE customer_id = ? AND instance NOT IN "
                        "(SELECT instance FROM stream_leases WHERE expires > ?)",
                        (customer_id, now))
            row = cur.execute("SELECT COUNT(*) FROM stream_slots WHERE customer_id = ?",
                              (customer_id,)).fetchone()
            held = int(row[0]) if row else 0
            if held < limit:
                cur.execute("INSERT INTO stream_slots (slot, customer_id, instance, opened) "
                            "VALUES (?, ?, ?, ?)", (slot, customer_id, self.instance, now))
        if held >= limit:
            raise TooManyStreams(
                f"your plan allows {limit} open stream(s) at once and {held} are open; "
                "close one or retry later", limit=limit, open=held, retry_after=RETRY_AFTER)
        return slot

    def release(self, slot: str) -> None:
        self.db.execute("DELETE FROM stream_slots WHERE slot = ?", (slot,))

    def held(self, customer_id: str) -> int:
        """Live slots of ``customer_id`` (all processes)."""
        row = self.db.fetchone(
            "SELECT COUNT(*) FROM stream_slots s JOIN stream_leases l ON s.instance = l.instance "
            "WHERE s.customer_id = ? AND l.expires > ?", (customer_id, self.clock()))
        return int(row[0]) if row else 0

    def renew(self) -> None:
        """Extend this process's lease (and drop the lease rows of long-dead processes)."""
        now = self.clock()
        with self.db.transaction() as cur:
            self._lease(cur, now)
            cur.execute("DELETE FROM stream_leases WHERE expires < ?", (now - _STALE_LEASES,))

    def close(self) -> None:
        """Clean shutdown: free this process's slots at once, without waiting for the lease."""
        with self.db.transaction() as cur:
            cur.execute("DELETE FROM stream_slots WHERE instance = ?", (self.instance,))
            cur.execute("DELETE FROM stream_leases WHERE instance = ?", (self.instance,))

    def _lease(self, cur: Cursor, now: float) -> None:
        cur.execute("INSERT INTO stream_leases (instance, expires) VALUES (?, ?) "
                "ON CONFLICT (instance) DO UPDATE SET expires = excluded.expires",
                (self.instance, now + self.lease_seconds))


async def keep_lease(slots: StreamSlots, stop: asyncio.Event) -> None:
    """Renew ``slots``' lease every third of its length until ``stop`` is set. A failed renewal
    is logged and retried at the next tick: the slots stay valid for the rest of the lease."""
    interval = slots.lease_seconds / 3
    while not stop.is_set():
        try:
            await anyio.to_thread.run_sync(slots.renew)
        except FeedError as exc:
            log.warning("stream slot lease renewal failed: %s", exc)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
