"""``EventLog`` in database tables: the embedded default (no broker needed).

Topics, records and group offsets live in three tables of the ``Database`` (SQLite by
default, PostgreSQL works too). Readers in this process wake as soon as a record is appended;
readers in other processes poll. Database errors arrive already translated by the
``Database`` (``StorageError``, ``Conflict``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Mapping, Sequence

import msgspec

from feedserver.errors import Conflict, NotFound, StorageError
from feedserver.storage.db import Database
from feedserver.storage.eventlog.base import LogReader, LogRecord, Outgoing, TopicPartition, now_ms
from feedserver.storage.eventlog.partitioner import partition_for

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

    def __init__(self, db: Database, *, poll_interval: float = 0.05) -> None:
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

    def reader(self, positions: Mapping[TopicPartition, int], *,
               catch_up: bool = False) -> LogReader:
        del catch_up  # a database query per poll: nothing held at a broker
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

    async def probe(self, timeout: float) -> None:
        try:
            await asyncio.wait_for(asyncio.to_thread(
                self.db.fetchone, "SELECT COUNT(*) FROM eventlog_topics"), timeout)
        except TimeoutError as exc:
            raise StorageError(f"event log: no answer within {timeout:g}s") from exc

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
