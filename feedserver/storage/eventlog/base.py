"""The event log protocol: partitioned, append-only topics of records, like Kafka.

Positions are ``(topic, partition) -> next offset to read``; offsets start at 0 and are dense
per partition. Consumer-group offsets are "next offset to read", as in Kafka.

Every method raises only feedserver errors: ``NotFound`` for a topic that does not exist,
``StorageError`` when the backend fails (broker unreachable, timeout, database error),
``Conflict`` where noted. ``ValueError`` marks a caller's bug (an impossible partition).
Vendor exceptions (aiokafka, sqlite3, psycopg) are translated inside the implementations.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Protocol

import msgspec

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
        when none is available; an empty list on timeout. Raises ``StorageError``."""

    async def close(self) -> None: ...


class EventLog(Protocol):
    async def create_topic(self, topic: str, partitions: int) -> None:
        """Create the topic if missing (an existing topic keeps its partition count).
        Raises ``StorageError``; ``ValueError`` for fewer than one partition."""

    async def partitions(self, topic: str) -> int:
        """Partition count. Raises ``NotFound`` (no such topic), ``StorageError``."""

    async def append(self, topic: str, records: Sequence[Outgoing]) -> list[tuple[int, int]]:
        """Append records durably (acknowledged); ``(partition, offset)`` of each, in order.
        Raises ``NotFound`` (no such topic), ``StorageError``; ``ValueError`` for a record's
        partition out of range."""

    def reader(self, positions: Mapping[TopicPartition, int], *,
               catch_up: bool = False) -> LogReader:
        """A reader starting at ``positions`` (no I/O until its first ``poll``).

        ``catch_up``: the reader works through a backlog (a bounded read, a stream from an
        old offset) rather than following the live end, so it need not learn of a new record
        within milliseconds; a backend may then wait longer at the broker per empty fetch
        (cheaper for the broker). Which records it returns does not change."""

    async def end_offsets(self, topic: str) -> dict[int, int]:
        """Per partition, the offset the next appended record will get.
        Raises ``NotFound`` (no such topic), ``StorageError``."""

    async def offsets_for_times(self, topic: str, timestamp_ms: int) -> dict[int, int]:
        """Per partition, the first offset whose timestamp is >= ``timestamp_ms`` (the end
        offset when there is none). Raises ``NotFound`` (no such topic), ``StorageError``."""

    async def commit(self, group: str, offsets: Mapping[TopicPartition, int]) -> None:
        """Store the group's next-to-read offsets. Raises ``StorageError``."""

    async def committed(self, group: str, topic: str) -> dict[int, int]:
        """The group's committed offsets for ``topic`` (partitions never committed are
        absent). Raises ``StorageError``."""

    async def probe(self, timeout: float) -> None:
        """Return once the log answers (readiness checks); raises ``StorageError`` when it
        does not within ``timeout`` seconds."""

    async def close(self) -> None: ...


def now_ms() -> int:
    return time.time_ns() // 1_000_000
