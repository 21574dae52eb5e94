"""The realtime stream's metering, per app: open-stream caps (plan ``max_streams``) and the
at-most-once billing of events (``metering/realtime_billing.py``).

``StreamMetering`` is created in the app's lifespan (``api/app.py``) and closed with it. Its
``StreamSlots`` (with the lease keeper task) are opened on the first capped stream, on the
app's database: a clean shutdown frees this process's slots at once, a crash frees them when
the lease runs out (``stream_lease_seconds``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import anyio
import anyio.to_thread
import msgspec

from feedserver.accounts.models import Principal
from feedserver.api.realtime_params import StreamParams
from feedserver.config import Settings
from feedserver.errors import FeedError
from feedserver.metering.realtime_billing import BilledRanges, Covered, Ranges, view_key
from feedserver.metering.streams import StreamSlots, keep_lease
from feedserver.storage.db import Database

log = logging.getLogger(__name__)


def stream_view(params: StreamParams, *, ndjson: bool) -> str:
    """The view key of a stream: format, filters and fields."""
    return view_key(ndjson=ndjson, filters=msgspec.to_builtins(params.query.filters),
                    fields=params.query.fields)


class StreamMetering:
    """Open-stream slots and billed ranges of one app's streams."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.lease_seconds = settings.stream_lease_seconds
        self.billing_enabled = settings.metering_enabled
        self._slots: StreamSlots | None = None
        self._stop = asyncio.Event()
        self._lease: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self._billed: BilledRanges | None = None

    async def _open_slots(self) -> StreamSlots:
        async with self._lock:
            if self._slots is None:
                seconds = self.lease_seconds
                self._slots = await anyio.to_thread.run_sync(
                    lambda: StreamSlots(self.db, lease_seconds=seconds))
                self._lease = asyncio.create_task(keep_lease(self._slots, self._stop),
                                                  name="stream-slot-lease")
            return self._slots

    async def claim(self, principal: Principal) -> str | None:
        """Take an open-stream slot when the plan caps streams (``TooManyStreams`` -> 429);
        returns the slot to ``release``, None when there is no cap."""
        limit = principal.plan.max_streams
        if limit is None:
            return None
        slots = await self._open_slots()
        return await anyio.to_thread.run_sync(slots.acquire, principal.customer_id, limit)

    async def release(self, slot: str | None) -> None:
        """Free the slot (shielded: runs while the stream's body is being closed)."""
        slots = self._slots
        if slot is None or slots is None:
            return
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(slots.release, slot)

    async def _billed_ranges(self) -> BilledRanges | None:
        if not self.billing_enabled:
            return None
        if self._billed is None:
            self._billed = await anyio.to_thread.run_sync(BilledRanges, self.db)
        return self._billed

    async def already_billed(self, customer_id: str, viewer: str) -> Covered:
        """Positions earlier streams of this view billed (nothing when the store fails: then
        a re-delivery is billed again, never an event not at all)."""
        billed = await self._billed_ranges()
        if billed is None:
            return Covered()
        try:
            return await anyio.to_thread.run_sync(billed.covered, customer_id, viewer)
        except FeedError as exc:
            log.warning("realtime billing: cannot read billed ranges (%s); billing all", exc)
            return Covered()

    async def mark_billed(self, stream_id: str, customer_id: str, viewer: str,
                          ranges: Ranges) -> None:
        """Record the ranges a stream billed: AFTER its usage record is journaled."""
        billed = await self._billed_ranges()
        if billed is None:
            return
        try:
            await anyio.to_thread.run_sync(billed.ended, stream_id, customer_id, viewer, ranges)
        except FeedError as exc:  # a later resume bills the overlap again: never zero times
            log.warning("realtime billing: cannot record billed ranges (%s)", exc)

    async def close(self) -> None:
        self._stop.set()
        task, self._lease = self._lease, None
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        slots, self._slots = self._slots, None
        if slots is not None:
            await anyio.to_thread.run_sync(slots.close)
