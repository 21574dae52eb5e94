"""The realtime stream's metering glue, per app: open-stream caps (plan ``max_streams``) and
the at-most-once billing of events (``metering/realtime_billing.py``).

``StreamSlots`` (with its lease keeper) and ``BilledRanges`` are created on first use (like
the realtime hub) on the app's database. Slots are closed with the app: a clean shutdown frees
this process's slots at once, a crash frees them when the lease runs out
(``stream_lease_seconds``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from contextlib import AsyncExitStack

import anyio
import anyio.to_thread
import msgspec
from litestar import Litestar

from feedserver.api.realtime_params import StreamParams
from feedserver.api.services import Principal, Services
from feedserver.errors import FeedError
from feedserver.metering.plans import plan_terms
from feedserver.metering.realtime_billing import BilledRanges, Covered, Ranges, view_key
from feedserver.metering.streams import StreamSlots, keep_lease

log = logging.getLogger(__name__)


async def _slots(app: Litestar, svc: Services) -> StreamSlots | None:
    slots: StreamSlots | None = app.state.get("stream_slots")
    if slots is not None or svc.db is None:
        return slots
    lock: asyncio.Lock = app.state.setdefault("stream_slots_lock", asyncio.Lock())
    async with lock:
        slots = app.state.get("stream_slots")
        if slots is None:
            db = svc.db
            seconds = svc.settings.stream_lease_seconds
            slots = await anyio.to_thread.run_sync(
                lambda: StreamSlots(db, lease_seconds=seconds))
            stop = asyncio.Event()
            task = asyncio.create_task(keep_lease(slots, stop), name="stream-slot-lease")
            opened = slots

            async def close() -> None:
                stop.set()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
                await anyio.to_thread.run_sync(opened.close)

            stack: AsyncExitStack | None = app.state.get("exit_stack")
            if stack is not None:
                stack.push_async_callback(close)
            else:  # an app started without our lifespan
                app.on_shutdown.append(close)
            app.state.stream_slots = slots
    return slots


async def claim_stream(app: Litestar, svc: Services, principal: Principal) -> str | None:
    """Take an open-stream slot when the plan caps streams (``TooManyStreams`` -> 429);
    returns the slot to ``release_stream``, None when there is no cap."""
    limit = plan_terms(principal.plan).max_streams
    if limit is None:
        return None
    slots = await _slots(app, svc)
    if slots is None:
        return None
    return await anyio.to_thread.run_sync(slots.acquire, principal.customer_id, limit)


async def release_stream(app: Litestar, slot: str | None) -> None:
    """Free the slot (shielded: runs while the stream's body is being closed)."""
    slots: StreamSlots | None = app.state.get("stream_slots")
    if slot is None or slots is None:
        return
    with anyio.CancelScope(shield=True):
        await anyio.to_thread.run_sync(slots.release, slot)


# --- at-most-once billing of events ------------------------------------------------------


def stream_view(params: StreamParams, *, ndjson: bool) -> str:
    """The view key of a stream: format, filters and fields."""
    return view_key(ndjson=ndjson, filters=msgspec.to_builtins(params.query.filters),
                    fields=params.query.fields)


async def _billed(app: Litestar, svc: Services) -> BilledRanges | None:
    if svc.db is None or not svc.settings.metering_enabled:
        return None
    billed: BilledRanges | None = app.state.get("billed_ranges")
    if billed is None:
        billed = await anyio.to_thread.run_sync(BilledRanges, svc.db)
        app.state.billed_ranges = billed
    return billed


async def already_billed(app: Litestar, svc: Services, customer_id: str,
                         viewer: str) -> Covered:
    """Positions earlier streams of this view billed (nothing when the store fails: then a
    re-delivery is billed again, never an event not at all)."""
    billed = await _billed(app, svc)
    if billed is None:
        return Covered()
    try:
        return await anyio.to_thread.run_sync(billed.covered, customer_id, viewer)
    except FeedError as exc:
        log.warning("realtime billing: cannot read billed ranges (%s); billing all", exc)
        return Covered()


async def mark_billed(app: Litestar, svc: Services, stream_id: str, customer_id: str,
                      viewer: str, ranges: Ranges) -> None:
    """Record the ranges a stream billed: AFTER its usage record is journaled."""
    billed = await _billed(app, svc)
    if billed is None:
        return
    try:
        await anyio.to_thread.run_sync(billed.ended, stream_id, customer_id, viewer, ranges)
    except FeedError as exc:  # a later resume bills the overlap again: never zero times
        log.warning("realtime billing: cannot record billed ranges (%s)", exc)
