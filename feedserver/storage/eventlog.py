"""Event log: partitioned, append-only topics of records, like Kafka.

``EventLog`` is the protocol; ``EmbeddedEventLog`` (here) keeps topics in a database table
(SQLite by default; no broker needed) and ``KafkaEventLog`` (``eventlog_kafka``) talks to a
Kafka-compatible broker. Both pick the partition of a keyed record with Kafka's default
partitioner (murmur2 of the key, positive, modulo the partition count), so a key lands on the
same partition whichever backend wrote it.

Positions are ``(topic, partition) -> next offset to read``; offsets start at 0 and are dense
per partition. Consumer-group offsets are "next offset to read", as in Kafka.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Protocol

import msgspec

from feedserver.config import Settings
from feedserver.errors import Conflict, NotFound
from feedserver.storage.db import Database

Headers = tuple[tuple[str, bytes], ...]
TopicPartition = tuple[str, int]


class LogRecord(msgspec.Struct, frozen=True, kw_only=True):
    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes
    headers: Headers = ()

    def header(self, name: str) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None


class Outgoing(msgspec.Struct, frozen=True, kw_only=True):
    """A record to append; ``partition`` None means "by key" (or round robin without key)."""

    key: bytes | None
    value: bytes
    headers: Headers = ()
    partition: int | None = None
    timestamp_ms: int | None = None


class LogReader(Protocol):
    async def poll(self, *, max_records: int = 500, timeout: float = 1.0) -> list[LogRecord]:
        """The next records (in offset order per partition), waiting up to ``timeout`` seconds
        when none is available; an empty list on timeout."""

    async def close(self) -> None: ...


class EventLog(Protocol):
    async def create_topic(self, topic: str, partitions: int) -> None:
        """Create the topic if missing (an existing topic keeps its partition count)."""

    async def partitions(self, topic: str) -> int:
        """Partition count; ``NotFound`` if the topic does not exist."""

    async def append(self, topic: str, records: Sequence[Outgoing]) -> list[tuple[int, int]]:
        """Append records durably (acknowledged); ``(partition, offset)`` of each, in order."""

    def reader(self, positions: Mapping[TopicPartition, int]) -> LogReader: ...

    async def end_offsets(self, topic: str) -> dict[int, int]:
        """Per partition, the offset the next appended record will get."""

    async def offsets_for_times(self, topic: str, timestamp_ms: int) -> dict[int, int]:
        """Per partition, the first offset whose timestamp is >= ``timestamp_ms`` (the end
        offset when there is none)."""

    async def commit(self, group: str, offsets: Mapping[TopicPartition, int]) -> None:
        """Store the group's next-to-read offsets."""

    async def committed(self, group: str, topic: str) -> dict[int, int]:
        """The group's committed offsets for ``topic`` (partitions never committed are absent)."""

    async def close(self) -> None: ...


# --- Kafka's default partitioner -------------------------------------------------------------


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (``org.apache.kafka.common.utils.Utils.murmur2``), as a signed 32-bit
    int like Java's."""
    length = len(data)
    m, r, mask = 0x5BD1E995, 24, 0xFFFFFFFF
    h = (0x9747B28C ^ length) & mask
    end = length - length % 4
    for i in range(0, end, 4):
        k = int.from_bytes(data[i:i + 4], "little")
        k = (k * m) & mask
        k ^= k >> r
        k = (k * m) & mask
        h = (h * m) & mask
        h ^= k
    rest = length % 4
    if rest == 3:
        h ^= data[end + 2] << 16
    if rest >= 2:
        h ^= data[end + 1] << 8
    if rest >= 1:
        h ^= data[end]
        h = (h * m) & mask
    h ^= h >> 13
    h = (h * m) & mask
    h ^= h >> 15
    return h - (1 << 32) if h & 0x80000000 else h


def partition_for(key: bytes, partitions: int) -> int:
    """Kafka's default partition of a keyed record."""
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def now_ms() -> int:
    return time.time_ns() // 1_000_000


# --- reading helpers (any backend) -----------------------------------------------------------


async def start_positions(
    log: EventLog,
    topic: str,
    *,
    offsets: Mapping[int, int] | None = None,
    since_ms: int | None = None,
    partitions: Sequence[int] | None = None,
) -> dict[TopicPartition, int]:
    """Where to start reading ``topic``: explicit offsets (inclusive), a time, or the tail."""
    ends = await log.end_offsets(topic)
    chosen = sorted(ends) if partitions is None else [p for p in partitions if p in ends]
    by_time = await log.offsets_for_times(topic, since_ms) if since_ms is not None else {}
    positions: dict[TopicPartition, int] = {}
    for p in chosen:
        if offsets is not None and p in offsets:
            positions[(topic, p)] = max(0, min(offsets[p], ends[p]))
        elif since_ms is not None:
            positions[(topic, p)] = by_time[p]
        else:
            positions[(topic, p)] = ends[p]
    return positions


async def read(
    log: EventLog,
    positions: Mapping[TopicPartition, int],
    *,
    follow: bool = True,
    poll_timeout: float = 1.0,
    batch: int = 500,
) -> AsyncIterator[LogRecord]:
    """Records from ``positions`` on. With ``follow`` False, stop at the end offsets seen at the
    start (bounded read); otherwise wait for new records forever."""
    stop: dict[TopicPartition, int] = {}
    if not follow:
        for topic in {t for t, _ in positions}:
            for p, end in (await log.end_offsets(topic)).items():
                if (topic, p) in positions and positions[(topic, p)] < end:
                    stop[(topic, p)] = end
        if not stop:
            return
    reader = log.reader({tp: off for tp, off in positions.items() if follow or tp in stop})
    try:
        while True:
            for record in await reader.poll(max_records=batch, timeout=poll_timeout):
                tp = (record.topic, record.partition)
                if not follow:
                    if tp not in stop or record.offset >= stop[tp]:
                        continue
                    if record.offset == stop[tp] - 1:
                        del stop[tp]
                yield record
            if not follow and not stop:
                return
    finally:
        await reader.close()


# --- embedded implementation -----------------------------------------------------------------

_HEADERS = msgspec.msgpack.Encoder()
_HEADERS_DECODER = msgspec.msgpack.Decoder(list[tuple[str, bytes]])

MIGRATION = (
    "CREATE TABLE IF NOT EXISTS eventlog_topics"
    " (topic TEXT PRIMARY KEY, partitions INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS eventlog_records (topic TEXT NOT NULL, part INTEGER NOT NULL,"
    " pos BIGINT NOT NULL, timestamp_ms BIGINT NOT NULL, rkey {blob}, value {blob} NOT NULL,"
    " headers {blob}, PRIMARY KEY (topic, part, pos))",
    "CREATE INDEX IF NOT EXISTS eventlog_records_time"
    " ON eventlog_records (topic, part, timestamp_ms)",
    "CREATE TABLE IF NOT EXISTS eventlog_offsets (grp TEXT NOT NULL, topic TEXT NOT NULL,"
    " part INTEGER NOT NULL, pos BIGINT NOT NULL, PRIMARY KEY (grp, topic, part))",
)
_APPEND_RETRIES = 8


class EmbeddedEventLog:
    """Topics in a database table. Readers in this process wake as soon as a record is
    appended; readers in other processes poll every ``poll_interval`` seconds."""

    def __init__(self, db: Database, *, poll_interval: float = 0.2) -> None:
        self.db = db
        self.poll_interval = poll_interval
        db.migrate("storage.eventlog.1", MIGRATION)
        self._appended = asyncio.Event()
        self._round_robin = itertools.count()

    def _notify(self) -> None:
        self._appended.set()
        self._appended = asyncio.Event()

    async def create_topic(self, topic: str, partitions: int) -> None:
        if partitions < 1:
            raise ValueError("a topic needs at least one partition")
        sql = ("INSERT INTO eventlog_topics (topic, partitions) VALUES (?, ?) "
               "ON CONFLICT (topic) DO NOTHING")
        await asyncio.to_thread(self.db.execute, sql, (topic, partitions))

    async def partitions(self, topic: str) -> int:
        row = await asyncio.to_thread(
            self.db.fetchone, "SELECT partitions FROM eventlog_topics WHERE topic = ?", (topic,))
        if row is None:
            raise NotFound(f"topic {topic!r} does not exist", topic=topic)
        return int(row[0])

    async def append(self, topic: str, records: Sequence[Outgoing]) -> list[tuple[int, int]]:
        if not records:
            return []
        count = await self.partitions(topic)
        targets = [self._target(r, count) for r in records]
        for attempt in range(_APPEND_RETRIES):
            try:
                result = await asyncio.to_thread(self._append_sync, topic, records, targets)
                break
            except Conflict:
                # Concurrent appender (PostgreSQL) took the same offset: take the next ones.
                if attempt == _APPEND_RETRIES - 1:
                    raise
                await asyncio.sleep(0.01 * (attempt + 1))
        self._notify()
        return result

    def _target(self, record: Outgoing, count: int) -> int:
        if record.partition is not None:
            if not 0 <= record.partition < count:
                raise ValueError(f"partition {record.partition} out of range 0..{count - 1}")
            return record.partition
        if record.key is not None:
            return partition_for(record.key, count)
        return next(self._round_robin) % count

    def _append_sync(self, topic: str, records: Sequence[Outgoing],
                     targets: list[int]) -> list[tuple[int, int]]:
        out: list[tuple[int, int]] = []
        with self.db.transaction() as cur:
            next_pos: dict[int, int] = {}
            for record, part in zip(records, targets, strict=True):
                if part not in next_pos:
                    row = cur.execute(
                        "SELECT COALESCE(MAX(pos) + 1, 0) FROM eventlog_records "
                        "WHERE topic = ? AND part = ?", (topic, part)).fetchone()
                    next_pos[part] = int(row[0]) if row is not None else 0
                pos = next_pos[part]
                next_pos[part] = pos + 1
                cur.execute(
                    "INSERT INTO eventlog_records (topic, part, pos, timestamp_ms, rkey, value,"
                    " headers) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (topic, part, pos, record.timestamp_ms or now_ms(), record.key, record.value,
                     _HEADERS.encode(list(record.headers)) if record.headers else None),
                )
                out.append((part, pos))
        return out

    def reader(self, positions: Mapping[TopicPartition, int]) -> LogReader:
        return _EmbeddedReader(self, positions)

    async def end_offsets(self, topic: str) -> dict[int, int]:
        count = await self.partitions(topic)
        rows = await asyncio.to_thread(
            self.db.fetchall,
            "SELECT part, MAX(pos) + 1 FROM eventlog_records WHERE topic = ? GROUP BY part",
            (topic,))
        ends = {p: 0 for p in range(count)}
        ends.update({int(p): int(end) for p, end in rows})
        return ends

    async def offsets_for_times(self, topic: str, timestamp_ms: int) -> dict[int, int]:
        ends = await self.end_offsets(topic)
        rows = await asyncio.to_thread(
            self.db.fetchall,
            "SELECT part, MIN(pos) FROM eventlog_records WHERE topic = ? AND timestamp_ms >= ? "
            "GROUP BY part", (topic, timestamp_ms))
        ends.update({int(p): int(pos) for p, pos in rows})
        return ends

    async def commit(self, group: str, offsets: Mapping[TopicPartition, int]) -> None:
        rows = [(group, t, p, off) for (t, p), off in offsets.items()]
        await asyncio.to_thread(
            self.db.executemany,
            "INSERT INTO eventlog_offsets (grp, topic, part, pos) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (grp, topic, part) DO UPDATE SET pos = excluded.pos", rows)

    async def committed(self, group: str, topic: str) -> dict[int, int]:
        rows = await asyncio.to_thread(
            self.db.fetchall,
            "SELECT part, pos FROM eventlog_offsets WHERE grp = ? AND topic = ?", (group, topic))
        return {int(p): int(pos) for p, pos in rows}

    async def close(self) -> None:
        self._notify()

    # Used by readers.
    def _fetch_sync(self, positions: Mapping[TopicPartition, int], max_records: int,
                    rotate: int = 0) -> list[LogRecord]:
        out: list[LogRecord] = []
        # A fair share per partition, and a rotating first partition, so one busy partition
        # cannot starve the others.
        share = max(1, max_records // max(1, len(positions)))
        order = sorted(positions.items())
        if order:
            k = rotate % len(order)
            order = order[k:] + order[:k]
        for (topic, part), pos in order:
            if len(out) >= max_records:
                break
            rows = self.db.fetchall(
                "SELECT pos, timestamp_ms, rkey, value, headers FROM eventlog_records "
                "WHERE topic = ? AND part = ? AND pos >= ? ORDER BY pos LIMIT ?",
                (topic, part, pos, min(share, max_records - len(out))))
            out.extend(
                LogRecord(topic=topic, partition=part, offset=int(r[0]), timestamp_ms=int(r[1]),
                          key=None if r[2] is None else bytes(r[2]), value=bytes(r[3]),
                          headers=tuple(_HEADERS_DECODER.decode(bytes(r[4]))) if r[4] else ())
                for r in rows)
        return out


class _EmbeddedReader:
    def __init__(self, log: EmbeddedEventLog, positions: Mapping[TopicPartition, int]) -> None:
        self._log = log
        self._positions = dict(positions)
        self._polls = 0

    async def poll(self, *, max_records: int = 500, timeout: float = 1.0) -> list[LogRecord]:
        deadline = time.monotonic() + max(0.0, timeout)
        while True:
            woken = self._log._appended  # grab before reading, so no append is missed
            self._polls += 1
            records = await asyncio.to_thread(self._log._fetch_sync, self._positions, max_records,
                                              self._polls)
            if records:
                for record in records:
                    self._positions[(record.topic, record.partition)] = record.offset + 1
                return records
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(woken.wait(), min(remaining, self._log.poll_interval))

    async def close(self) -> None:
        self._positions.clear()


def open_event_log(settings: Settings, db: Database) -> EventLog:
    """Kafka when ``kafka_bootstrap_servers`` is set, else the embedded log in ``db``."""
    if settings.kafka_bootstrap_servers:
        from feedserver.storage.eventlog_kafka import KafkaEventLog

        return KafkaEventLog(settings.kafka_bootstrap_servers)
    return EmbeddedEventLog(db)
