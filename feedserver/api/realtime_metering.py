"""The realtime stream's metering glue, per app: open-stream caps (plan ``max_streams``).

``StreamSlots`` and its lease keeper are created on first use (like the realtime hub) on the
app's database and closed with the app: a clean shutdown frees this process's slots at once, a
crash frees them when the lease runs out (``stream_lease_seconds``).
"""

from __future__ import annotations

import asyncio
import contextlib
from contextlib import AsyncExitStack

import anyio
import anyio.to_thread
from litestar import Litestar

from feedserver.api.services import Principal, Services
from feedserver.metering.plans import plan_terms
from feedserver.metering.streams import StreamSlots, keep_lease


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
