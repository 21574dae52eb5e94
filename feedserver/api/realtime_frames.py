"""Wire frames of the realtime stream (pure: no I/O).

A stream's ``View`` (format, partitions, plan entitlements, filters, fields) renders items into
one ``Chunk``: the frames to write, joined, plus a 14-byte billing mark per frame. Streams
with equal views render a hub tick identically, so the hub memoises each tick's chunk per
``View.key`` (``Tick.memo``) and every such stream writes the same bytes object: rendering is
per view and record, and a stream's own work per written batch does not grow with the
records in it.

NDJSON: ``{article}\\n``. SSE: ``id: p:o,...\\nevent: message\\ndata: {article}\\n\\n``, where
the id is the stream's whole resume position after that event (next offset per partition).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

import msgspec

from feedserver.accounts.models import Principal
from feedserver.api.auth import allowed
from feedserver.api.problems import TYPE_BASE
from feedserver.api.query import Query, matches, project
from feedserver.feeds.realtime.hub import Positions, Tick
from feedserver.feeds.realtime.items import Chunk, StreamItem
from feedserver.metering.realtime_billing import pack_frame

FEED: Final = "realtime"
_ENCODER = msgspec.json.Encoder()


def position_id(positions: Positions) -> bytes:
    return ",".join(f"{p}:{o}" for p, o in sorted(positions.items())).encode()


def closing_message(reason: str, positions: Positions) -> dict[str, Any]:
    detail = ("the client fell too far behind; resume with these offsets" if reason == "slow"
              else "the server is shutting down; resume with these offsets")
    return {"type": TYPE_BASE + "stream-closed", "title": "Stream closed",
            "status": 503, "detail": detail, "reason": reason,
            "offsets": {str(p): o for p, o in sorted(positions.items())}}


def closing_frame(reason: str, positions: Positions, *, ndjson: bool) -> bytes:
    message = _ENCODER.encode(closing_message(reason, positions))
    if ndjson:
        return message + b"\n"
    return b"id: " + position_id(positions) + b"\nevent: error\ndata: " + message + b"\n\n"


class _RunningId:
    """The SSE id while positions advance one record at a time: one partition's text changes
    per record, the rest is reused."""

    def __init__(self, start: Positions) -> None:
        self._order = {p: i for i, p in enumerate(sorted(start))}
        self._parts = [f"{p}:{start[p]}" for p in sorted(start)]

    def advance(self, partition: int, offset: int) -> None:
        self._parts[self._order[partition]] = f"{partition}:{offset}"

    def value(self) -> bytes:
        return ",".join(self._parts).encode()


class View:
    """How one stream renders items. ``key`` is equal for streams that render alike."""

    def __init__(self, principal: Principal, query: Query, *, ndjson: bool,
                 partitions: Iterable[int], view: str) -> None:
        self.principal = principal
        self.filters = query.filters
        self.fields = query.fields
        self.ndjson = ndjson
        self.partitions = frozenset(partitions)
        # ``view`` (format, filters, fields) is the billing view key; the plan's entitlements
        # decide what is visible; the partitions what the SSE ids name.
        self.key = (view, self.partitions, principal.plan.entitlements)
        self._allowed: dict[tuple[str | None, int | None], bool] = {}

    def body(self, item: StreamItem) -> bytes | None:
        """The article's bytes for this view; None when the view does not show it."""
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

    def render_tick(self, tick: Tick) -> Chunk:
        return self.render(tick.items, tick.start)

    def render(self, items: Iterable[StreamItem], start: Positions) -> Chunk:
        """The frames of ``items`` (those of this view's partitions), the positions being
        ``start`` before the first."""
        parts: list[bytes] = []
        marks: list[bytes] = []
        partitions = self.partitions
        if self.ndjson:
            for item in items:
                if item.partition not in partitions:
                    continue
                body = self.body(item)
                if body is not None:
                    parts.append(body)
                    parts.append(b"\n")
                    marks.append(pack_frame(item.partition, item.offset, len(body) + 1))
            return Chunk(b"".join(parts), len(marks), b"".join(marks))
        running = _RunningId({p: start[p] for p in partitions if p in start})
        last_id = b""
        for item in items:
            if item.partition not in partitions:
                continue
            running.advance(item.partition, item.offset + 1)
            body = self.body(item)
            if body is None:
                continue
            last_id = running.value()
            frame = b"id: " + last_id + b"\nevent: message\ndata: " + body + b"\n\n"
            parts.append(frame)
            marks.append(pack_frame(item.partition, item.offset, len(frame)))
        return Chunk(b"".join(parts), len(marks), b"".join(marks), last_id)
