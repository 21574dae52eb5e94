"""The realtime stream's metering glue, per app: open-stream caps (plan ``max_streams``) and
billing up to the position a client acknowledges by resuming (``metering/resume.py``).

``StreamSlots`` (with its lease keeper) and ``ResumeCredits`` are created on first use (like
the realtime hub) on the app's database. Slots are closed with the app: a clean shutdown frees
this process's slots at once, a crash frees them when the lease runs out
(``stream_lease_seconds``).
"""

from __future__ import annotations

import asyncio
import contextlib
from contextlib import AsyncExitStack

import anyio
import anyio.to_thread
import msgspec
from litestar import Litestar

from feedserver.api.realtime_params import StreamParams
from feedserver.api.services import Principal, Services
from feedserver.feeds.realtime import Positions
from feedserver.metering.plans import plan_terms
from feedserver.metering.records import utcnow
from feedserver.metering.resume import Credit, EndedStream, ResumeCredits, Tail, view_key
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


# --- billing up to the acknowledged position -----------------------------------------------


def stream_view(params: StreamParams, positions: Positions, *, ndjson: bool) -> str:
    """The view key of a stream: format, partitions, filters and fields."""
    return view_key(ndjson=ndjson, partitions=list(positions),
                    filters=msgspec.to_builtins(params.query.filters),
                    fields=params.query.fields)


def acknowledged(params: StreamParams, positions: Positions) -> Positions | None:
    """The position a resuming client acknowledges: only when it names EVERY partition of the
    stream (``Last-Event-ID`` or ``offsets``); a start by time or at the tail acknowledges
    nothing."""
    named = set(params.last_event_id) | set(params.offsets)
    if not positions or not set(positions) <= named:
        return None
    return dict(positions)


async def _credits(app: Litestar, svc: Services) -> ResumeCredits | None:
    if svc.db is None or not svc.settings.metering_enabled:
        return None
    credits: ResumeCredits | None = app.state.get("resume_credits")
    if credits is None:
        db = svc.db
        credits = await anyio.to_thread.run_sync(ResumeCredits, db)
        app.state.resume_credits = credits
    return credits


async def _book(svc: Services, store: ResumeCredits, credits: list[Credit]) -> None:
    """Journal the credits, THEN settle their streams (a crash in between repeats the same
    credit ids, which the ledger drops)."""
    if not credits:
        return
    ts = utcnow()
    for credit in credits:
        svc.usage.adjust(credit.records(ts))
    await anyio.to_thread.run_sync(store.settle, credits)


async def on_resume(app: Litestar, svc: Services, principal: Principal, *, stream_id: str,
                    viewer: str, positions: Positions | None, request_id: str) -> None:
    """A stream starts from an acknowledged position: credit what earlier streams of the same
    view delivered past it."""
    store = await _credits(app, svc)
    if store is None or positions is None:
        return
    credits = await anyio.to_thread.run_sync(lambda: store.resumed(
        stream_id=stream_id, customer_id=principal.customer_id, viewer=viewer,
        positions=positions, request_id=request_id))
    await _book(svc, store, credits)


async def on_stream_end(app: Litestar, svc: Services, stream: EndedStream, tail: Tail) -> None:
    """Keep the stream's tail for a later resume; credit it now if one came already.
    Shielded: runs while the stream's body is being closed."""
    with anyio.CancelScope(shield=True):
        store = await _credits(app, svc)
        if store is None or not len(tail):
            return
        credits = await anyio.to_thread.run_sync(store.stream_ended, stream, tail.frames())
        await _book(svc, store, credits)
