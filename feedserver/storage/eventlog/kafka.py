"""``EventLog`` on a Kafka-compatible broker (Apache Kafka, Tansu, Redpanda) with aiokafka.

aiokafka is imported only here (a test checks it); its errors become ``StorageError``
(``NotFound`` for a missing topic). The producer waits for ``acks=all`` so an appended record
is durable when ``append`` returns. Partitions are chosen with the same murmur2 partitioner as
the embedded log.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from aiokafka.structs import OffsetAndMetadata
from aiokafka.structs import TopicPartition as KafkaTP

from feedserver.errors import NotFound, StorageError
from feedserver.storage.eventlog.base import LogReader, LogRecord, Outgoing, TopicPartition
from feedserver.storage.eventlog.partitioner import partition_for

T = TypeVar("T")
REQUEST_TIMEOUT_MS = 30_000
METADATA_TIMEOUT = 30.0
FETCH_WAIT_MS = 20
CATCH_UP_FETCH_WAIT_MS = 500  # aiokafka's (and Kafka's) default fetch_max_wait_ms


async def _guard(what: str, awaitable: Awaitable[T]) -> T:
    try:
        return await awaitable
    except KafkaError as exc:
        raise StorageError(f"kafka {what} failed: {exc!r}") from exc
    except TimeoutError as exc:
        raise StorageError(f"kafka {what} timed out") from exc


async def _start_client(client: Any) -> None:
    """Start an aiokafka client; one that fails half-way is stopped, since it still holds
    sockets and tasks (and would be reported unclosed)."""
    try:
        await _guard("connect", client.start())
    except BaseException:
        with contextlib.suppress(Exception):
            await client.stop()
        raise


class KafkaEventLog:
    def __init__(self, bootstrap_servers: str, *, client_id: str = "feedserver",
                 batch_records: bool = False, fetch_wait_ms: int = FETCH_WAIT_MS,
                 catch_up_fetch_wait_ms: int = CATCH_UP_FETCH_WAIT_MS) -> None:
        self.bootstrap_servers = bootstrap_servers
        # How long the broker may hold a reader's fetch when it has nothing new. Apache Kafka
        # answers as soon as a record arrives; Tansu 0.6 holds every empty fetch this long
        # (the default 500 ms made realtime latency ~250 ms on average), so it is short.
        self.fetch_wait_ms = max(1, fetch_wait_ms)
        # Readers working through a backlog (``reader(..., catch_up=True)``) wait longer: with
        # the short wait, a reader slower than the broker (the realtime catch-up stream, which
        # stamps and writes what it reads) re-fetched the partitions it had nothing buffered
        # for every 20 ms, each fetch an empty or near-empty answer that costs Tansu about a
        # millisecond of CPU on a large topic (2-4x the fetch requests of a bare consumer for
        # the same records, +0.1-0.25 CPU-s of broker per 20,000 records). A fetch that finds
        # records returns at once whatever the wait.
        self.catch_up_fetch_wait_ms = max(1, catch_up_fetch_wait_ms)
        # Tansu 0.6 advances a partition's high watermark by one per produced batch, whatever
        # the batch holds; so by default each record is its own batch (awaited in order per
        # partition; partitions in parallel). On Apache Kafka, batch_records=True is faster.
        self.batch_records = batch_records
        self.client_id = client_id
        self._producer: AIOKafkaProducer | None = None
        self._meta: AIOKafkaConsumer | None = None
        self._groups: dict[str, AIOKafkaConsumer] = {}
        self._seek: AIOKafkaConsumer | None = None
        self._lock = asyncio.Lock()
        self._seek_lock = asyncio.Lock()
        self._round_robin = itertools.count()

    def _common(self) -> dict[str, Any]:
        return {"bootstrap_servers": self.bootstrap_servers, "client_id": self.client_id,
                "request_timeout_ms": REQUEST_TIMEOUT_MS}

    async def _get_producer(self) -> AIOKafkaProducer:
        async with self._lock:
            if self._producer is None:
                producer = AIOKafkaProducer(acks="all", **self._common())
                await _start_client(producer)
                self._producer = producer
            return self._producer

    async def _get_meta(self) -> AIOKafkaConsumer:
        async with self._lock:
            if self._meta is None:
                meta = AIOKafkaConsumer(enable_auto_commit=False, **self._common())
                await _start_client(meta)
                self._meta = meta
            return self._meta

    async def _get_group(self, group: str) -> AIOKafkaConsumer:
        async with self._lock:
            if group not in self._groups:
                consumer = AIOKafkaConsumer(group_id=group, enable_auto_commit=False,
                                            **self._common())
                await _start_client(consumer)
                self._groups[group] = consumer
            return self._groups[group]

    async def probe(self, timeout: float) -> None:
        """A short-lived client, so a restarted broker is seen at once."""
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap_servers,
                                    client_id=f"{self.client_id}-probe",
                                    request_timeout_ms=int(timeout * 1000))
        try:
            await _guard("connect", asyncio.wait_for(admin.start(), timeout))
            await _guard("metadata", asyncio.wait_for(admin.list_topics(), timeout))
        finally:
            with contextlib.suppress(Exception):
                await admin.close()

    async def create_topic(self, topic: str, partitions: int) -> None:
        admin = AIOKafkaAdminClient(**self._common())
        await _start_client(admin)
        try:
            response = await _guard("create topic", admin.create_topics(
                [NewTopic(topic, num_partitions=partitions, replication_factor=1)]))
            for _name, code, *_ in getattr(response, "topic_errors", []):
                if code not in (0, TopicAlreadyExistsError.errno):
                    raise StorageError(f"kafka create topic {topic!r} failed: error {code}")
        except TopicAlreadyExistsError:
            pass
        finally:
            await admin.close()

    async def partitions(self, topic: str) -> int:
        meta = await self._get_meta()
        found = await _guard("metadata", self._partitions_for(meta, topic))
        if not found:
            raise NotFound(f"topic {topic!r} does not exist", topic=topic)
        return len(found)

    @staticmethod
    async def _partitions_for(meta: AIOKafkaConsumer, topic: str) -> set[int]:
        # Fresh metadata: a topic created a moment ago by another client must be seen.
        await asyncio.wait_for(meta._client.force_metadata_update(), METADATA_TIMEOUT)
        parts = meta._client.cluster.partitions_for_topic(topic)
        return set(parts or ())

    async def append(self, topic: str, records: Sequence[Outgoing]) -> list[tuple[int, int]]:
        if not records:
            return []
        count = await self.partitions(topic)
        producer = await self._get_producer()
        by_partition: dict[int, list[int]] = {}
        for i, record in enumerate(records):
            if record.partition is not None:
                part = record.partition
            elif record.key is not None:
                part = partition_for(record.key, count)
            else:
                part = next(self._round_robin) % count
            by_partition.setdefault(part, []).append(i)
        out: list[tuple[int, int]] = [(-1, -1)] * len(records)

        async def send_partition(part: int, indexes: list[int]) -> None:
            pending = []
            for i in indexes:
                record = records[i]
                future = await producer.send(
                    topic, record.value, key=record.key, partition=part,
                    timestamp_ms=record.timestamp_ms, headers=list(record.headers) or None)
                if self.batch_records:
                    pending.append((i, future))
                else:
                    meta = await future
                    out[i] = (meta.partition, meta.offset)
            for i, future in pending:
                meta = await future
                out[i] = (meta.partition, meta.offset)

        await _guard("produce", asyncio.gather(
            *(send_partition(part, idx) for part, idx in by_partition.items())))
        return out

    def reader(self, positions: Mapping[TopicPartition, int], *,
               catch_up: bool = False) -> LogReader:
        return _KafkaReader(self, positions, fetch_wait_ms=(
            self.catch_up_fetch_wait_ms if catch_up else self.fetch_wait_ms))

    async def end_offsets(self, topic: str) -> dict[int, int]:
        meta = await self._get_meta()
        parts = await _guard("metadata", self._partitions_for(meta, topic))
        if not parts:
            raise NotFound(f"topic {topic!r} does not exist", topic=topic)
        ends = await _guard("end offsets", meta.end_offsets([KafkaTP(topic, p) for p in parts]))
        listed = {tp.partition: int(off) for tp, off in ends.items()}
        return await self._confirm_ends(topic, listed)

    async def _confirm_ends(self, topic: str, listed: dict[int, int]) -> dict[int, int]:
        """The high watermark a fetch reports, when it is above the listed end offset.

        Tansu 0.6 on S3 storage answers ListOffsets(latest) with a stale value while its fetch
        responses carry the true high watermark; on Apache Kafka both agree and this costs one
        short fetch."""
        async with self._seek_lock:
            seek = await self._seek_consumer()
            tps = [KafkaTP(topic, p) for p in listed]
            seek.assign(tps)
            for tp in tps:
                seek.seek(tp, listed[tp.partition])
            out = dict(listed)
            for _ in range(3):  # bounded: a fetch per try, each waiting at most fetch_max_wait
                await _guard("fetch", seek.getmany(*tps, timeout_ms=1000, max_records=1))
                marks = {tp: seek.highwater(tp) for tp in tps}
                for tp, mark in marks.items():
                    if mark is not None:
                        out[tp.partition] = max(out[tp.partition], int(mark))
                if all(mark is not None for mark in marks.values()):
                    break
            return out

    async def _seek_consumer(self) -> AIOKafkaConsumer:
        if self._seek is None:
            seek = AIOKafkaConsumer(enable_auto_commit=False, fetch_max_wait_ms=100,
                                    **self._common())
            await _start_client(seek)
            self._seek = seek
        return self._seek

    async def offsets_for_times(self, topic: str, timestamp_ms: int) -> dict[int, int]:
        ends = await self.end_offsets(topic)
        meta = await self._get_meta()
        found = await _guard("offsets for times", meta.offsets_for_times(
            {KafkaTP(topic, p): timestamp_ms for p in ends}))
        out = dict(ends)
        for tp, hit in found.items():
            lo = 0 if hit is None else int(hit.offset)
            out[tp.partition] = await self._first_at_or_after(tp, lo, ends[tp.partition],
                                                              timestamp_ms)
        return out

    async def _first_at_or_after(self, tp: KafkaTP, lo: int, hi: int, timestamp_ms: int) -> int:
        """Binary search in [lo, hi) for the first record with timestamp >= ``timestamp_ms``.

        Some brokers (Tansu 0.6) answer ListOffsets-by-time with the first offset whatever
        the time; Apache Kafka answers exactly, and then the first probe confirms it."""
        while lo < hi:
            mid = (lo + hi) // 2 if lo + 1 < hi else lo
            stamp = await self._timestamp_at(tp, mid)
            if stamp is None or stamp >= timestamp_ms:
                if mid == lo:
                    return lo
                hi = mid + 1 if stamp is None else mid
                if stamp is None:
                    return mid
            else:
                lo = mid + 1
        return lo

    async def _timestamp_at(self, tp: KafkaTP, offset: int) -> int | None:
        async with self._seek_lock:
            seek = await self._seek_consumer()
            seek.assign([tp])
            seek.seek(tp, offset)
            batch = await _guard("fetch", seek.getmany(tp, timeout_ms=5000, max_records=1))
            records = batch.get(tp, [])
            return int(records[0].timestamp) if records else None

    async def commit(self, group: str, offsets: Mapping[TopicPartition, int]) -> None:
        if not offsets:
            return
        consumer = await self._get_group(group)
        # aiokafka commits only for assigned partitions; paused, so nothing is fetched.
        wanted = {KafkaTP(t, p) for t, p in offsets} | set(consumer.assignment())
        if wanted != set(consumer.assignment()):
            consumer.assign(sorted(wanted))
            consumer.pause(*wanted)
        await _guard("commit", consumer.commit(
            {KafkaTP(t, p): OffsetAndMetadata(off, "") for (t, p), off in offsets.items()}))

    async def committed(self, group: str, topic: str) -> dict[int, int]:
        consumer = await self._get_group(group)
        meta = await self._get_meta()
        parts = await _guard("metadata", self._partitions_for(meta, topic))
        out: dict[int, int] = {}
        for p in sorted(parts):
            off = await _guard("fetch offsets", consumer.committed(KafkaTP(topic, p)))
            if off is not None and off >= 0:
                out[p] = int(off)
        return out

    async def close(self) -> None:
        clients: list[Any] = [*self._groups.values(), self._meta, self._seek, self._producer]
        self._groups, self._meta, self._seek, self._producer = {}, None, None, None
        for client in clients:
            if client is not None:
                # Already broken: nothing left to flush.
                with contextlib.suppress(KafkaError):
                    await client.stop()


class _KafkaReader:
    def __init__(self, log: KafkaEventLog, positions: Mapping[TopicPartition, int], *,
                 fetch_wait_ms: int) -> None:
        self._log = log
        self._fetch_wait_ms = fetch_wait_ms
        self._positions = dict(positions)
        self._consumer: AIOKafkaConsumer | None = None

    async def _start(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            consumer = AIOKafkaConsumer(enable_auto_commit=False, auto_offset_reset="earliest",
                                        fetch_max_wait_ms=self._fetch_wait_ms,
                                        **self._log._common())
            await _start_client(consumer)
            tps = [KafkaTP(t, p) for t, p in self._positions]
            consumer.assign(tps)
            for tp in tps:
                consumer.seek(tp, self._positions[(tp.topic, tp.partition)])
            self._consumer = consumer
        return self._consumer

    async def poll(self, *, max_records: int = 500, timeout: float = 1.0) -> list[LogRecord]:
        if not self._positions:
            await asyncio.sleep(timeout)
            return []
        consumer = await self._start()
        batches = await _guard("fetch", consumer.getmany(
            timeout_ms=int(timeout * 1000), max_records=max_records))
        out: list[LogRecord] = []
        for tp, messages in sorted(batches.items(), key=lambda kv: (kv[0].topic, kv[0].partition)):
            topic, partition = tp.topic, tp.partition
            out.extend(LogRecord(
                topic=topic, partition=partition, offset=m.offset, timestamp_ms=m.timestamp,
                key=m.key, value=m.value,
                headers=tuple((k, bytes(v)) for k, v in m.headers) if m.headers else ())
                for m in messages)
        return out

    async def close(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            with contextlib.suppress(KafkaError):
                await consumer.stop()
