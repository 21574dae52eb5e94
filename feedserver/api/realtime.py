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
from typing import Any, Final

import anyio
import msgspec
from litestar import Request, Router, route
from litestar.openapi import ResponseSpec
from litestar.response import Stream

from feedserver.accounts.models import Principal
from feedserver.api.auth import PRINCIPAL, PrincipalDep, allowed, entitle
from feedserver.api.problems import TYPE_BASE, problem_specs
from feedserver.api.protocols import Injected
from feedserver.api.query import Query, matches, project, wants_ndjson
from feedserver.api.realtime_metering import StreamMetering, stream_view
from feedserver.api.realtime_params import read_params, start_positions
from feedserver.api.services import Billing, request_id, response_id
from feedserver.feeds.realtime.hub import Positions, Subscription, SubscriptionClosed
from feedserver.feeds.realtime.items import StreamItem
from feedserver.feeds.realtime.service import Realtime
from feedserver.metering.realtime_billing import Covered, Edges, billable, stream_ranges

FEED: Final = "realtime"
READY_TIMEOUT = 10.0
PROGRESS_SECONDS = 60.0
COALESCE_BYTES = 64 * 1024
SSE = "text/event-stream"
NDJSON = "application/x-ndjson"
_ENCODER = msgspec.json.Encoder()
log = logging.getLogger(__name__)


# --- framing ------------------------------------------------------------------------------


def position_id(positions: Positions) -> bytes:
    return ",".join(f"{p}:{o}" for p, o in sorted(positions.items())).encode()


def closing_message(reason: str, positions: Positions) -> dict[str, Any]:
    detail = ("the client fell too far behind; resume with these offsets" if reason == "slow"
              else "the server is shutting down; resume with these offsets")
    return {"type": TYPE_BASE + "stream-closed", "title": "Stream closed",
            "status": 503, "detail": detail, "reason": reason,
            "offsets": {str(p): o for p, o in sorted(positions.items())}}


class _Viewer:
    """Per stream: plan projects/namespaces, filters and fields; memoised per project+ns."""

    def __init__(self, principal: Principal, params_query: Query) -> None:
        self.principal = principal
        self.filters = params_query.filters
        self.fields = params_query.fields
        self._allowed: dict[tuple[str | None, int | None], bool] = {}

    def render(self, item: StreamItem) -> bytes | None:
        if not item.valid:
            return None
        key = (item.project, item.namespace)
        ok = self._allowed.get(key)
        if ok is None:
            ok = self._allowed[key] = item.project is not None and allowed(
                self.principal, FEED, item.project, item.namespace)
        if not ok:
            return None
        if not (self.filters or self.fields):
            return item.raw  # the common case: no dict needed (``item.data`` is decoded lazily)
        data = item.data
        if data is None or (self.filters and not matches(data, self.filters)):
            return None
        return _ENCODER.encode(project(data, self.fields)) if self.fields else item.raw


def _frame(item: StreamItem, sub: Subscription, viewer: _Viewer, *, ndjson: bool
           ) -> tuple[bytes, bytes] | None:
    """The wire frame of ``item`` and (SSE) its id; None when the viewer does not see it."""
    body = viewer.render(item)
    if body is None:
        return None
    if ndjson:
        return body + b"\n", b""
    ident = position_id(sub.positions)
    return b"id: " + ident + b"\nevent: message\ndata: " + body + b"\n\n", ident


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


async def _frames(sub: Subscription, viewer: _Viewer, *, ndjson: bool, heartbeat: float,
                  delivered: Delivered) -> AsyncIterator[bytes]:
    """The body; ``delivered`` is read by the caller's ``finally``.

    Items already waiting (a catch-up poll, a burst in the live buffer) go out together, up to
    ``COALESCE_BYTES`` per write: one ASGI message and one socket send per batch rather than
    per event, which is most of the server's cost per event."""
    sent_id = b""
    if not ndjson:
        sent_id = position_id(sub.positions)
        yield b": connected\nretry: 2000\nid: " + sent_id + b"\n\n"
    while True:
        try:
            item = await sub.next(heartbeat)
        except SubscriptionClosed as closed:
            yield _closing(closed, ndjson=ndjson)
            return
        if item is None:
            if ndjson:
                yield b"\n"
            else:
                now_id = position_id(sub.positions)
                yield b": heartbeat\n" + (b"id: " + now_id + b"\n" if now_id != sent_id else b"")\
                    + b"\n"
                sent_id = now_id
            continue
        batch: list[bytes] = []
        where: list[tuple[int, int]] = []
        size = 0
        closing: bytes | None = None
        while item is not None:
            framed = _frame(item, sub, viewer, ndjson=ndjson)
            if framed is not None:
                frame, ident = framed
                sent_id = ident or sent_id
                batch.append(frame)
                where.append((item.partition, item.offset))
                size += len(frame)
                if size >= COALESCE_BYTES:
                    break
            try:
                item = await sub.next(0)  # only what is already there
            except SubscriptionClosed as closed:
                closing = _closing(closed, ndjson=ndjson)
                break
        if batch:
            yield b"".join(batch)
            delivered.events += len(batch)
            delivered.bytes += size
            delivered.end.update(sub.positions)
            for frame, (partition, offset) in zip(batch, where, strict=True):
                delivered.edges.add(partition, offset, len(frame))
        if closing is not None:
            yield closing
            return


def _closing(closed: SubscriptionClosed, *, ndjson: bool) -> bytes:
    message = _ENCODER.encode(closing_message(closed.reason, closed.positions))
    if ndjson:
        return message + b"\n"
    return b"id: " + position_id(closed.positions) + b"\nevent: error\ndata: " + message + b"\n\n"


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
    viewer = _Viewer(principal, params.query)
    ndjson = wants_ndjson(request)
    rid, sid = request_id(request), response_id(request)
    heartbeat = realtime.heartbeat
    usage = billing.usage
    # Each event is billed at most once per customer and view: positions that earlier
    # streams of this view delivered (a resume) are delivered again, not billed again.
    view = stream_view(params, ndjson=ndjson)
    # Plan max_streams (429 when all are open); released when the body ends, by any path.
    slot = await stream_metering.claim(principal)
    sub = hub.subscribe(positions)
    stream = f"stream:{sid}"

    async def body() -> AsyncIterator[bytes]:
        delivered = Delivered(positions)
        started = time.monotonic()
        last_progress = started
        try:
            async for frame in _frames(sub, viewer, ndjson=ndjson, heartbeat=heartbeat,
                                       delivered=delivered):
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
                    covered = await stream_metering.already_billed(principal.customer_id, view)
                finally:
                    events, sent = billable(delivered.events, delivered.bytes,
                                            delivered.edges, covered)
                    usage.record(principal, feed=FEED, project=None, response_id=sid,
                                 request_id=rid, resource=stream, bytes_sent=sent,
                                 stream_seconds=round(time.monotonic() - started),
                                 stream_events=events)
                try:
                    await sub.close()
                finally:
                    await stream_metering.release(slot)
                await stream_metering.mark_billed(sid, principal.customer_id, view,
                                                  stream_ranges(positions, delivered.end))

    return Stream(body(), media_type=NDJSON if ndjson else SSE, headers={
        **headers, "Cache-Control": "no-cache", "Connection": "keep-alive",
        "X-Accel-Buffering": "no",
    })


def router() -> Router:
    return Router("/v2/articles", route_handlers=[articles])
