"""Realtime billing rule: every event is billed AT MOST ONCE per customer and view.

A stream counts an event (and its frame's bytes) once the server handed the frame's batch to
the socket. When a client drops, what sat in the socket buffers never reached it, and the
client resumes (``Last-Event-ID``, ``offsets``) from the position it did read: the resumed
stream delivers those events again. Billing them twice is the bug this module removes.

The rule: a stream bills the events it delivered, except those at positions that an earlier
stream of the same customer and view (format, filters, fields) already delivered (and so
billed). A stream that ends records the ranges it covered per partition (``realtime_billed``,
``[start, end)``, end = the position after its last delivered batch); a stream that ends later
does not bill its frames inside those ranges. Whichever of two overlapping streams ends
second skips the overlap, so both orders (resume after the server noticed the drop, or while
the first stream is still open) bill the union of what was delivered, once.

Why not "bill up to the position the client resumes from" (a credit for the unread tail)? The
client chooses that position: it can read a stream to its end, resume from its start to get the
tail credited, drop the new stream at once and go on with explicit offsets, so the tail would
never be paid. Here every delivered position is paid by the first stream to deliver it, and a
credit only exists as a re-delivery.

Bounds: a stream remembers the positions of its first and last frames (``EDGE_FRAMES``,
``EDGE_BYTES`` each: more than socket buffers hold). Overlaps come from resumes, so they sit at
those edges; a frame in the middle of a stream is always billed. What the last stream handed to
the socket before a client went away for good is billed (it was delivered to the socket). A
stream's ranges are forgotten after 24 hours. ``stream_seconds`` are never reduced.

Order of writes (no claim before the billing write): read the ranges, journal the final usage
record, THEN store this stream's ranges. A crash in between can only bill an overlap twice,
never leave an event billed zero times.
"""

from __future__ import annotations

import bisect
import hashlib
import struct
import time
from collections.abc import Callable, Iterator, Mapping, Sequence

import msgspec

from feedserver.storage.db import Database

EDGE_FRAMES = 16_384
EDGE_BYTES = 16 * 1024 * 1024  # more than the kernel's socket buffers (Linux: 6 + 4 MiB)
RETENTION_SECONDS = 24 * 3600.0
_FRAME = struct.Struct("<Hqi")  # partition, offset, frame bytes
MIGRATION = (
    "CREATE TABLE realtime_billed (stream_id TEXT PRIMARY KEY, customer_id TEXT NOT NULL, "
    "viewer TEXT NOT NULL, ended {real} NOT NULL, ranges TEXT NOT NULL)",
    "CREATE INDEX realtime_billed_view ON realtime_billed (customer_id, viewer)",
)
Ranges = dict[int, tuple[int, int]]  # partition -> [start, end) of offsets
_RANGES = msgspec.json.Decoder(dict[int, tuple[int, int]])


class Edges:
    """The positions and sizes of a stream's first and last frames (14 bytes a frame)."""

    def __init__(self, max_frames: int = EDGE_FRAMES, max_bytes: int = EDGE_BYTES) -> None:
        self.max_frames = max(1, max_frames)
        self.max_bytes = max(1, max_bytes)
        self._head = bytearray()
        self._head_frames = self._head_bytes = 0
        self._head_full = False
        self._tail = bytearray()
        self._start = 0
        self._tail_frames = self._tail_bytes = 0

    def add(self, partition: int, offset: int, size: int) -> None:
        frame = _FRAME.pack(partition, offset, size)
        if not self._head_full:
            if (self._head_frames < self.max_frames
                    and self._head_bytes + size <= self.max_bytes) or not self._head_frames:
                self._head += frame
                self._head_frames += 1
                self._head_bytes += size
                return
            self._head_full = True
        self._tail += frame
        self._tail_frames += 1
        self._tail_bytes += size
        while self._tail_frames > self.max_frames or (self._tail_bytes > self.max_bytes
                                                      and self._tail_frames > 1):
            _, _, dropped = _FRAME.unpack_from(self._tail, self._start)
            self._start += _FRAME.size
            self._tail_frames -= 1
            self._tail_bytes -= dropped
        if self._start > len(self._tail) // 2:
            del self._tail[: self._start]
            self._start = 0

    def frames(self) -> Iterator[tuple[int, int, int]]:
        """(partition, offset, bytes) of every remembered frame, head then tail, each once."""
        yield from _FRAME.iter_unpack(self._head)
        yield from _FRAME.iter_unpack(memoryview(self._tail)[self._start:])


class Covered:
    """Offsets already billed, per partition, from the ranges of ended streams."""

    def __init__(self, ranges: Sequence[Ranges] = ()) -> None:
        merged: dict[int, list[tuple[int, int]]] = {}
        for stream in ranges:
            for partition, (start, end) in stream.items():
                if end > start:
                    merged.setdefault(partition, []).append((start, end))
        self._starts: dict[int, list[int]] = {}
        self._ends: dict[int, list[int]] = {}
        for partition, spans in merged.items():
            spans.sort()
            starts: list[int] = []
            ends: list[int] = []
            for start, end in spans:
                if ends and start <= ends[-1]:
                    ends[-1] = max(ends[-1], end)
                else:
                    starts.append(start)
                    ends.append(end)
            self._starts[partition], self._ends[partition] = starts, ends

    def __contains__(self, position: tuple[int, int]) -> bool:
        partition, offset = position
        starts = self._starts.get(partition)
        if not starts:
            return False
        i = bisect.bisect_right(starts, offset) - 1
        return i >= 0 and offset < self._ends[partition][i]


def billable(events: int, size: int, edges: Edges, covered: Covered) -> tuple[int, int]:
    """Events and bytes a stream bills: what it delivered minus the frames (among those it
    remembers) at positions an earlier stream already billed."""
    for partition, offset, n in edges.frames():
        if (partition, offset) in covered:
            events -= 1
            size -= n
    return max(0, events), max(0, size)


def stream_ranges(start: Mapping[int, int], end: Mapping[int, int]) -> Ranges:
    """``[start, end)`` per partition: what a stream from ``start`` delivered up to ``end``."""
    return {p: (start.get(p, off), off) for p, off in end.items() if off > start.get(p, off)}


def view_key(*, ndjson: bool, filters: object, fields: Sequence[str]) -> str:
    """What makes two streams the same view: format, filters and fields."""
    return hashlib.sha256(msgspec.json.encode([ndjson, filters, list(fields)])).hexdigest()


class BilledRanges:
    """The database side: ranges of ended streams. Methods block (call in a worker thread)."""

    def __init__(self, db: Database, *, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.clock = clock
        db.migrate("metering-0003-realtime-billed", MIGRATION)

    def covered(self, customer_id: str, viewer: str) -> Covered:
        rows = self.db.fetchall(
            "SELECT ranges FROM realtime_billed WHERE customer_id = ? AND viewer = ? "
            "AND ended >= ?", (customer_id, viewer, self.clock() - RETENTION_SECONDS))
        return Covered([_RANGES.decode(str(r[0])) for r in rows])

    def ended(self, stream_id: str, customer_id: str, viewer: str, ranges: Ranges) -> None:
        """Record what an ended stream covered (AFTER its usage record is journaled)."""
        if not ranges:
            return
        now = self.clock()
        with self.db.transaction() as cur:
            cur.execute("DELETE FROM realtime_billed WHERE customer_id = ? AND ended < ?",
                        (customer_id, now - RETENTION_SECONDS))
            cur.execute(
                "INSERT INTO realtime_billed (stream_id, customer_id, viewer, ended, ranges) "
                "VALUES (?, ?, ?, ?, ?) ON CONFLICT (stream_id) DO NOTHING",
                (stream_id, customer_id, viewer, now, msgspec.json.encode(ranges).decode()))
