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
``EDGE_BYTES`` each: more than socket buffers hold), as whole runs of packed frame records
that streams of the same view share (``Edges.add_frames``). Overlaps come from resumes, so
they sit at those edges; a frame in the middle of a stream is always billed. What the last
stream handed to the socket before a client went away for good is billed (it was delivered to
the socket). A stream's ranges are forgotten after 24 hours. ``stream_seconds`` are never reduced.

Order of writes (no claim before the billing write): read the ranges, journal the final usage
record, THEN store this stream's ranges. A crash in between can only bill an overlap twice,
never leave an event billed zero times.
"""

from __future__ import annotations

import bisect
import hashlib
import struct
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence

import msgspec

from feedserver.storage.db import Database

EDGE_FRAMES = 16_384
EDGE_BYTES = 16 * 1024 * 1024  # more than the kernel's socket buffers (Linux: 6 + 4 MiB)
RETENTION_SECONDS = 24 * 3600.0
_FRAME = struct.Struct("<Hqi")  # partition, offset, frame bytes
_MAX_RUNS = 256  # runs kept by reference before they are joined into one
MIGRATION = (
    "CREATE TABLE realtime_billed (stream_id TEXT PRIMARY KEY, customer_id TEXT NOT NULL, "
    "viewer TEXT NOT NULL, ended {real} NOT NULL, ranges TEXT NOT NULL)",
    "CREATE INDEX realtime_billed_view ON realtime_billed (customer_id, viewer)",
)
Ranges = dict[int, tuple[int, int]]  # partition -> [start, end) of offsets
_RANGES = msgspec.json.Decoder(dict[int, tuple[int, int]])


def pack_frame(partition: int, offset: int, size: int) -> bytes:
    """One frame's record for ``Edges.add_frames`` (14 bytes)."""
    return _FRAME.pack(partition, offset, size)


class Edges:
    """The positions and sizes of a stream's first and last frames.

    Frames arrive in runs (``add_frames``: the packed records of a whole written batch, often
    one bytes object shared by every stream of the same view), and runs are kept by reference:
    a stream costs O(1) per batch, not per frame. ``frames()`` gives exactly what adding the
    frames one by one would keep: the head is the first frames within the bounds, the tail the
    longest suffix of the rest within them (one frame at least)."""

    def __init__(self, max_frames: int = EDGE_FRAMES, max_bytes: int = EDGE_BYTES) -> None:
        self.max_frames = max(1, max_frames)
        self.max_bytes = max(1, max_bytes)
        self._head: list[bytes] = []
        self._head_frames = self._head_bytes = 0
        self._head_full = False
        # Whole runs, oldest first: a superset of the tail, trimmed run by run.
        self._tail: deque[tuple[bytes, int, int]] = deque()
        self._tail_frames = self._tail_bytes = 0

    def add(self, partition: int, offset: int, size: int) -> None:
        self.add_frames(_FRAME.pack(partition, offset, size), 1, size)

    def add_frames(self, packed: bytes, frames: int, size: int) -> None:
        """``frames`` frames of ``size`` bytes in all, as packed by ``pack_frame`` (joined)."""
        if frames <= 0:
            return
        if not self._head_full:
            if (self._head_frames + frames <= self.max_frames
                    and self._head_bytes + size <= self.max_bytes):
                self._head.append(packed)
                self._head_frames += frames
                self._head_bytes += size
                if len(self._head) > _MAX_RUNS:
                    self._head = [b"".join(self._head)]
                return
            packed, frames, size = self._fill_head(packed)
            if not frames:
                return
        self._tail.append((packed, frames, size))
        self._tail_frames += frames
        self._tail_bytes += size
        while len(self._tail) > 1:
            _, first_frames, first_bytes = self._tail[0]
            # The kept suffix lies within the rest as soon as the rest alone reaches a bound.
            if (self._tail_frames - first_frames >= self.max_frames
                    or self._tail_bytes - first_bytes > self.max_bytes):
                self._tail.popleft()
                self._tail_frames -= first_frames
                self._tail_bytes -= first_bytes
            else:
                break
        if len(self._tail) > _MAX_RUNS:  # many small runs (a slow trickle): one exact run
            frames_kept = self._exact_tail()
            run = b"".join(_FRAME.pack(*f) for f in frames_kept)
            self._tail = deque([(run, len(frames_kept), sum(f[2] for f in frames_kept))])
            self._tail_frames, self._tail_bytes = self._tail[0][1], self._tail[0][2]

    def _fill_head(self, packed: bytes) -> tuple[bytes, int, int]:
        """Move the run's first frames into the head while they fit; the rest of the run."""
        taken = 0
        for _, _, n in _FRAME.iter_unpack(packed):
            if self._head_frames and (self._head_frames >= self.max_frames
                                      or self._head_bytes + n > self.max_bytes):
                self._head_full = True
                break
            self._head_frames += 1
            self._head_bytes += n
            taken += 1
        cut = taken * _FRAME.size
        if taken:
            self._head.append(packed[:cut])
        rest = packed[cut:]
        return rest, len(rest) // _FRAME.size, sum(n for _, _, n in _FRAME.iter_unpack(rest))

    def frames(self) -> Iterator[tuple[int, int, int]]:
        """(partition, offset, bytes) of every remembered frame, head then tail, each once."""
        for run in self._head:
            yield from _FRAME.iter_unpack(run)
        yield from self._exact_tail()

    def _exact_tail(self) -> list[tuple[int, int, int]]:
        tail = [frame for run, _, _ in self._tail for frame in _FRAME.iter_unpack(run)]
        total = sum(n for _, _, n in tail)
        first = 0
        while len(tail) - first > self.max_frames or (total > self.max_bytes
                                                       and len(tail) - first > 1):
            total -= tail[first][2]
            first += 1
        return tail[first:]


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

    def __bool__(self) -> bool:
        return bool(self._starts)

    def __contains__(self, position: tuple[int, int]) -> bool:
        partition, offset = position
        starts = self._starts.get(partition)
        if not starts:
            return False
        i = bisect.bisect_right(starts, offset) - 1
        return i >= 0 and offset < self._ends[partition][i]


def billable(events: int, size: int, edges: Edges, covered: Covered) -> tuple[int, int]:
    """Events and bytes a stream bills: what it delivered minus the frames (among those it
    remembers) at positions an earlier stream already billed. Up to ``2 * EDGE_FRAMES``
    frames to check: callers with many streams ending at once run it in a worker thread."""
    if not covered:  # nothing billed before (the usual case): no frame to look at
        return max(0, events), max(0, size)
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
