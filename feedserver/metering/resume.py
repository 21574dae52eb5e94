"""Realtime billing up to what the client acknowledges by resuming.

A stream bills the events and bytes it handed to the server's socket. When a client drops
the connection, what was still in the socket buffers (and proxies) never reached it; when it
reconnects with ``Last-Event-ID`` (or explicit ``offsets``) it says exactly how far it read.
The rule: **a stream is billed up to the position its client resumes from.** Every frame the
earlier stream delivered beyond that position is credited (negative ``stream_events`` and
``bytes`` records); the new stream delivers, and bills, those events again.

* Each stream keeps the ``Tail`` of its last frames (partition, next offset, bytes), bounded
  (``TAIL_FRAMES`` frames, ``TAIL_BYTES`` bytes: more than socket buffers hold). At its end
  the tail is stored (``realtime_tails``) with the stream's start and end positions.
* A resume is stored too (``realtime_resumes``). It *continues* a stream of the same customer
  and the same view (format, partitions, filters, fields) when its position lies inside that
  stream's range, partition by partition (``start <= resume <= end``).
* Whichever of the two is written second finds the other and computes the credit: the
  stream's tail frames whose next offset is past the resume position. The first resume
  settles a stream: later resumes never credit it again.

Credits are idempotent (``usage_id = uuid5("realtime-credit", stream, meter)``) and are
journaled BEFORE the stream is marked settled: a crash in between repeats the same credit id,
which the ledger drops; it can never credit twice nor lose the credit and settle.

Bounds (documented): frames older than the tail are billed whatever the resume says; a stream
whose server was killed keeps its last checkpoint (it stored no tail); a client that never
resumes is billed for everything its stream handed to the socket.
"""

from __future__ import annotations

import hashlib
import struct
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime

import msgspec

from feedserver.metering.records import UsageRecord, derive_id
from feedserver.storage.db import Cursor, Database

TAIL_FRAMES = 32768
TAIL_BYTES = 16 * 1024 * 1024  # more than the kernel's socket buffers (Linux: 6 + 4 MiB)
RETENTION_SECONDS = 24 * 3600.0  # tails and resumes older than this are forgotten
_FRAME = struct.Struct("<Hqi")  # partition, next offset, frame bytes
MIGRATION = (
    "CREATE TABLE realtime_tails (stream_id TEXT PRIMARY KEY, customer_id TEXT NOT NULL, "
    "api_key_id TEXT NOT NULL, user_name TEXT NOT NULL, viewer TEXT NOT NULL, "
    "started {real} NOT NULL, ended {real} NOT NULL, start_positions TEXT NOT NULL, "
    "end_positions TEXT NOT NULL, frames {blob} NOT NULL, settled INTEGER NOT NULL)",
    "CREATE INDEX realtime_tails_view ON realtime_tails (customer_id, viewer)",
    "CREATE TABLE realtime_resumes (stream_id TEXT PRIMARY KEY, customer_id TEXT NOT NULL, "
    "viewer TEXT NOT NULL, at {real} NOT NULL, positions TEXT NOT NULL, "
    "request_id TEXT NOT NULL)",
    "CREATE INDEX realtime_resumes_view ON realtime_resumes (customer_id, viewer)",
)
_positions = msgspec.json.Decoder(dict[int, int])


class Tail:
    """The last frames one stream delivered, in a compact ring (14 bytes a frame)."""

    def __init__(self, max_frames: int = TAIL_FRAMES, max_bytes: int = TAIL_BYTES) -> None:
        self.max_frames = max(1, max_frames)
        self.max_bytes = max(1, max_bytes)
        self._buf = bytearray()
        self._start = 0
        self._frames = 0
        self._bytes = 0

    def add(self, partition: int, next_offset: int, size: int) -> None:
        self._buf += _FRAME.pack(partition, next_offset, size)
        self._frames += 1
        self._bytes += size
        while self._frames > self.max_frames or (self._bytes > self.max_bytes
                                                 and self._frames > 1):
            _, _, dropped = _FRAME.unpack_from(self._buf, self._start)
            self._start += _FRAME.size
            self._frames -= 1
            self._bytes -= dropped
        if self._start > len(self._buf) // 2:
            del self._buf[: self._start]
            self._start = 0

    def __len__(self) -> int:
        return self._frames

    def frames(self) -> bytes:
        return bytes(self._buf[self._start:])


def unread(frames: bytes, resume: Mapping[int, int]) -> tuple[int, int]:
    """Events and bytes of ``frames`` past ``resume`` (``{partition: next offset}``): what the
    client shows it never read. A partition ``resume`` does not name is not acknowledged."""
    events = size = 0
    for partition, next_offset, n in _FRAME.iter_unpack(frames):
        ack = resume.get(partition)
        if ack is not None and next_offset > ack:
            events += 1
            size += n
    return events, size


def continues(start: Mapping[int, int], end: Mapping[int, int],
              resume: Mapping[int, int]) -> bool:
    """Whether ``resume`` lies inside a stream that went from ``start`` to ``end``."""
    return bool(end) and set(resume) >= set(end) and all(
        start.get(p, 0) <= resume[p] <= off for p, off in end.items())


def view_key(*, ndjson: bool, partitions: Sequence[int], filters: object,
             fields: Sequence[str]) -> str:
    """What makes two streams the same view: format, partitions, filters and fields."""
    raw = msgspec.json.encode([ndjson, sorted(partitions), filters, list(fields)])
    return hashlib.sha256(raw).hexdigest()


class EndedStream(msgspec.Struct, frozen=True, kw_only=True):
    stream_id: str  # the server's response id of the stream
    customer_id: str
    api_key_id: str
    user: str
    viewer: str
    started: float
    start_positions: dict[int, int]
    end_positions: dict[int, int]


class Credit(msgspec.Struct, frozen=True, kw_only=True):
    stream_id: str
    customer_id: str
    api_key_id: str
    user: str
    events: int
    bytes: int
    request_id: str = ""  # the resuming request's correlation id

    def records(self, ts: datetime) -> list[UsageRecord]:
        """The negative usage records of this credit (none when nothing was unread)."""
        out = []
        for meter, quantity in (("stream_events", self.events), ("bytes", self.bytes)):
            if quantity:
                out.append(UsageRecord(
                    usage_id=derive_id("realtime-credit", self.stream_id, meter), ts=ts,
                    customer_id=self.customer_id, meter=meter,  # type: ignore[arg-type]
                    quantity=-quantity, feed="realtime", api_key_id=self.api_key_id,
                    user=self.user, request_id=self.request_id,
                    resource=f"stream:{self.stream_id}"))
        return out


class ResumeCredits:
    """The database side of the rule. Every method blocks (call it in a worker thread)."""

    def __init__(self, db: Database, *, clock: Callable[[], float] = time.time) -> None:
        self.db = db
        self.clock = clock
        db.migrate("metering-0003-realtime-resume", MIGRATION)

    def stream_ended(self, stream: EndedStream, tail: bytes) -> list[Credit]:
        """Store the tail; the credit when a resume already continued this stream."""
        now = self.clock()
        with self.db.transaction() as cur:
            self._forget(cur, stream.customer_id, now)
            cur.execute(
                "INSERT INTO realtime_tails (stream_id, customer_id, api_key_id, user_name, "
                "viewer, started, ended, start_positions, end_positions, frames, settled) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0) ON CONFLICT (stream_id) DO NOTHING",
                (stream.stream_id, stream.customer_id, stream.api_key_id, stream.user,
                 stream.viewer, stream.started, now, _text(stream.start_positions),
                 _text(stream.end_positions), tail))
            rows = cur.execute(
                "SELECT positions, request_id FROM realtime_resumes WHERE customer_id = ? "
                "AND viewer = ? AND at >= ? AND stream_id <> ? ORDER BY at",
                (stream.customer_id, stream.viewer, stream.started, stream.stream_id),
            ).fetchall()
        for positions, request_id in rows:
            resume = _positions.decode(positions)
            if continues(stream.start_positions, stream.end_positions, resume):
                events, size = unread(tail, resume)
                return [Credit(stream_id=stream.stream_id, customer_id=stream.customer_id,
                               api_key_id=stream.api_key_id, user=stream.user, events=events,
                               bytes=size, request_id=str(request_id))]
        return []

    def resumed(self, *, stream_id: str, customer_id: str, viewer: str,
                positions: Mapping[int, int], request_id: str = "") -> list[Credit]:
        """Store a resume; the credits of the (unsettled) streams it continues."""
        now = self.clock()
        with self.db.transaction() as cur:
            self._forget(cur, customer_id, now)
            cur.execute(
                "INSERT INTO realtime_resumes (stream_id, customer_id, viewer, at, positions, "
                "request_id) VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (stream_id) DO NOTHING",
                (stream_id, customer_id, viewer, now, _text(positions), request_id))
            rows = cur.execute(
                "SELECT stream_id, api_key_id, user_name, start_positions, end_positions, "
                "frames FROM realtime_tails WHERE customer_id = ? AND viewer = ? "
                "AND settled = 0 ORDER BY ended", (customer_id, viewer)).fetchall()
        credits = []
        for sid, key, user, start, end, frames in rows:
            if continues(_positions.decode(start), _positions.decode(end), positions):
                events, size = unread(bytes(frames), positions)
                credits.append(Credit(stream_id=str(sid), customer_id=customer_id,
                                      api_key_id=str(key), user=str(user), events=events,
                                      bytes=size, request_id=request_id))
        return credits

    def settle(self, credits: Sequence[Credit]) -> None:
        """Mark the credited streams settled: call AFTER their records are journaled."""
        for credit in credits:
            self.db.execute("UPDATE realtime_tails SET settled = 1 WHERE stream_id = ?",
                            (credit.stream_id,))

    def _forget(self, cur: Cursor, customer_id: str, now: float) -> None:
        old = now - RETENTION_SECONDS
        cur.execute("DELETE FROM realtime_tails WHERE customer_id = ? AND ended < ?",
                    (customer_id, old))
        cur.execute("DELETE FROM realtime_resumes WHERE customer_id = ? AND at < ?",
                    (customer_id, old))


def _text(positions: Mapping[int, int]) -> str:
    return msgspec.json.encode({str(p): o for p, o in sorted(positions.items())}).decode()
