"""The realtime stream over HTTP: ``GET|POST /v2/articles`` (WME §5).

SSE by default (``event: message`` / ``data: {article}``), NDJSON with
``Accept: application/x-ndjson``. Every Article carries ``event.partition`` / ``event.offset``.
Better than WME, each SSE frame has ``id: p:o,p:o,...``: the stream's whole resume position
(next offset per partition) after that event, so an ``EventSource`` reconnecting with
``Last-Event-ID`` resumes exactly. Heartbeats (SSE comment / empty NDJSON line) keep idle streams
alive through proxies and, in SSE, refresh the id when filtered-out records moved the position.

A stream ends with a final control message carrying ``offsets`` to resume from: SSE
``event: error``, NDJSON a line ``{"type": ".../problems/stream-closed", ...}``; ``reason`` is
``slow`` (the client fell more than ``realtime_max_subscriber_lag`` events behind) or
``shutdown``.

The fan-out ``Hub`` belongs to the app's ``Realtime`` service (``feeds.realtime.service``,
injected here): opened on the first stream over the app's event log, ended and closed by the
app's lifespan, where SIGTERM/SIGINT first end every stream with its final position, so a
graceful server shutdown does not wait for (or cut) the open streams.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import anyio
from litestar import Request, Router, route
from litestar.openapi import ResponseSpec
from litestar.response import Stream

from feedserver.api.auth import PRINCIPAL, PrincipalDep, entitle
from feedserver.api.parts_stream import PartsStream, Piece
from feedserver.api.problems import problem_specs
from feedserver.api.protocols import Injected
from feedserver.api.query import wants_ndjson
from feedserver.api.realtime_frames import FEED, View, closing_frame, position_id
from feedserver.api.realtime_metering import StreamMetering, stream_view
from feedserver.api.realtime_params import read_params, start_positions
from feedserver.api.services import Billing, request_id, response_id
from feedserver.feeds.realtime.hub import Batch, Positions, Subscription, SubscriptionClosed
from feedserver.feeds.realtime.items import Chunk
from feedserver.feeds.realtime.service import Realtime
from feedserver.metering.realtime_billing import Covered, Edges, billable, stream_ranges

READY_TIMEOUT = 10.0
PROGRESS_SECONDS = 60.0
SSE = "text/event-stream"
NDJSON = "application/x-ndjson"
log = logging.getLogger(__name__)


class Delivered:
    """What a stream handed to the socket so far: events, bytes, the positions of its first
    and last frames, and the position after its last delivered batch. It grows only once the
    server took a batch (the body generator resumes after its ``yield``), so a batch cut by a
    disconnect is not counted."""

    __slots__ = ("bytes", "edges", "end", "events")

    def __init__(self, start: Positions) -> None:
        self.events = 0
        self.bytes = 0
        self.edges = Edges()
        self.end: Positions = dict(start)


def _chunk(batch: Batch, view: View) -> tuple[Piece, int, list[Chunk]]:
    """What to write for ``batch`` (one ``bytes``, or the ticks' shared bytes objects as one
    piece: written in one ``writev``, never joined), its size and the chunks it is made of.
    Whole ticks are rendered once per view (memoised on the tick)."""
    if batch.ticks:
        chunks = [tick.memo(view.key, view.render_tick) for tick in batch.ticks]
    else:
        chunks = [view.render(batch.items, batch.start)]
    if len(chunks) == 1:
        data = chunks[0].data
        return data, len(data), chunks
    pieces = tuple(c.data for c in chunks if c.data)
    return pieces, sum(map(len, pieces)), chunks


async def _frames(sub: Subscription, view: View, *, heartbeat: float,
                  delivered: Delivered) -> AsyncIterator[Piece]:
    """The body; ``delivered`` is read by the caller's ``finally``.

    Everything waiting for the stream goes out in one write (one ASGI message, one socket
    send): a subscriber that keeps up writes once per hub tick, one that is behind takes
    several ticks at once (``BATCH_BYTES``, the ticks' shared bytes unjoined), so the cost
    per write is shared by more events exactly when the server is busy."""
    ndjson = view.ndjson
    sent_id = b""
    if not ndjson:
        sent_id = position_id(sub.positions)
        yield b": connected\nretry: 2000\nid: " + sent_id + b"\n\n"
    while True:
        try:
            batch = await sub.next_batch(heartbeat)
        except SubscriptionClosed as closed:
            yield closing_frame(closed.reason, closed.positions, ndjson=ndjson)
            return
        if batch is None:
            if ndjson:
                yield b"\n"
            else:
                now_id = position_id(sub.positions)
                yield b": heartbeat\n" + (b"id: " + now_id + b"\n" if now_id != sent_id else b"")\
                    + b"\n"
                sent_id = now_id
            continue
        data, size, chunks = _chunk(batch, view)
        if not size:
            continue  # nothing this view shows (positions moved: the next heartbeat says so)
        yield data
        delivered.bytes += size
        for chunk in chunks:
            if chunk.frames:
                delivered.events += chunk.frames
                delivered.edges.add_frames(chunk.marks, chunk.frames, len(chunk.data))
                sent_id = chunk.last_id or sent_id
        delivered.end = dict(sub.positions)


@route("/", http_method=["GET", "POST"], status_code=200, dependencies=PRINCIPAL,
       responses={**problem_specs(400, 401, 403, 413, 422, 429, 503),
                  200: ResponseSpec(None, media_type=SSE, description=(
                      "Article events as server-sent events, or NDJSON with Accept: "
                      "application/x-ndjson; endless until the client leaves"))})
async def articles(request: Request[Any, Any, Any], principal: PrincipalDep,
                   realtime: Injected[Realtime], billing: Injected[Billing],
                   stream_metering: Injected[StreamMetering]) -> Stream:
    entitle(principal, FEED)
    params = await read_params(request)
    hub = await realtime.hub()
    await hub.ready(READY_TIMEOUT)
    positions = await start_positions(params, hub.tail(), hub.log, hub.topic)
    headers = await billing.admit(principal, FEED)
    ndjson = wants_ndjson(request)
    rid, sid = request_id(request), response_id(request)
    heartbeat = realtime.heartbeat
    usage = billing.usage
    # Each event is billed at most once per customer and view: positions that earlier
    # streams of this view delivered (a resume) are delivered again, not billed again.
    view_id = stream_view(params, ndjson=ndjson)
    # Plan max_streams (429 when all are open); released when the body ends, by any path.
    slot = await stream_metering.claim(principal)
    sub = hub.subscribe(positions)
    view = View(principal, params.query, ndjson=ndjson, partitions=sub.partitions,
                view=view_id)
    stream = f"stream:{sid}"

    async def body() -> AsyncIterator[Piece]:
        delivered = Delivered(positions)
        started = time.monotonic()
        last_progress = started
        try:
            async for frame in _frames(sub, view, heartbeat=heartbeat, delivered=delivered):
                yield frame
                if time.monotonic() - last_progress >= PROGRESS_SECONDS:
                    last_progress = time.monotonic()
                    # Journal only, cumulative, re-deliveries included (a kill may bill them
                    # twice, never an event not at all).
                    usage.progress(principal, feed=FEED, project=None, response_id=sid,
                                   request_id=rid, resource=stream, bytes_sent=delivered.bytes,
                                   stream_events=delivered.events)
        finally:
            hub.detach(sub)
            with anyio.CancelScope(shield=True):
                # Read what earlier streams billed, journal this stream's record, THEN record
                # its ranges: no position is claimed before the write that bills it.
                covered = Covered()
                try:
                    covered = await stream_metering.already_billed(principal.customer_id,
                                                                   view_id)
                finally:
                    # Off the event loop: up to 32k frames per stream, and a reconnect storm
                    # ends hundreds of streams at once while the others stream on.
                    events, sent = await anyio.to_thread.run_sync(
                        billable, delivered.events, delivered.bytes, delivered.edges, covered)
                    usage.record(principal, feed=FEED, project=None, response_id=sid,
                                 request_id=rid, resource=stream, bytes_sent=sent,
                                 stream_seconds=round(time.monotonic() - started),
                                 stream_events=events)
                try:
                    await sub.close()
                finally:
                    await stream_metering.release(slot)
                await stream_metering.mark_billed(sid, principal.customer_id, view_id,
                                                  stream_ranges(positions, delivered.end))

    return PartsStream(body(), media_type=NDJSON if ndjson else SSE, headers={
        **headers, "Cache-Control": "no-cache", "Connection": "keep-alive",
        "X-Accel-Buffering": "no",
    })


def router() -> Router:
    return Router("/v2/articles", route_handlers=[articles])
