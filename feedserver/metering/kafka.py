"""Distributed usage path: API processes produce usage records to Kafka, one consumer writes them
into the PostgreSQL ledger. The only module of metering that imports aiokafka.

``KafkaDestination`` is a writer ``Destination``: a batch is delivered once every record in it
is acknowledged by the broker (``acks=all``); only then is the local journal released, so a crash
before the acknowledgement replays the batch (the ledger drops the duplicates by ``usage_id``).
Records are keyed by customer, so one customer's records stay in order on one partition.

``consume_usage`` reads the topic with auto-commit off: each poll is appended to the ledger in
one transaction and the offsets are committed AFTER the database commit. A crash between the two
redelivers the poll, which the ledger ignores by ``usage_id``: exactly once in the ledger. A
message that is not a usage record is logged and skipped (it can never become valid).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import anyio.to_thread
import msgspec
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError

from feedserver.errors import StorageError
from feedserver.metering.ledger import Ledger
from feedserver.metering.records import UsageRecord
from feedserver.metrics import Metrics

log = logging.getLogger(__name__)
_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(UsageRecord)


class KafkaDestination:
    def __init__(self, bootstrap_servers: str, topic: str) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        self._producer: AIOKafkaProducer | None = None

    async def _started(self) -> AIOKafkaProducer:
        if self._producer is None:
            producer = AIOKafkaProducer(
                bootstrap_servers=self.bootstrap_servers, acks="all", linger_ms=5,
                request_timeout_ms=30_000,
            )
            try:
                await producer.start()
            except KafkaError as exc:
                await producer.stop()
                raise StorageError(f"cannot reach Kafka at {self.bootstrap_servers}: {exc}") \
                    from exc
            self._producer = producer
        return self._producer

    async def deliver(self, records: Sequence[UsageRecord]) -> None:
        producer = await self._started()
        try:
            futures = [
                await producer.send(
                    self.topic, _encoder.encode(rec), key=rec.customer_id.encode()
                )
                for rec in records
            ]
            await asyncio.gather(*futures)
        except KafkaError as exc:
            raise StorageError(f"usage topic {self.topic!r}: {exc}") from exc

    async def close(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None


class ConsumeStats(msgspec.Struct, kw_only=True):
    messages: int = 0
    inserted: int = 0
    invalid: int = 0


async def consume_usage(
    ledger: Ledger,
    bootstrap_servers: str,
    topic: str,
    group_id: str,
    *,
    stop: asyncio.Event | None = None,
    idle_exit_seconds: float | None = None,
    max_records: int = 1000,
    metrics: Metrics | None = None,
) -> ConsumeStats:
    """Consume until ``stop`` is set (or, with ``idle_exit_seconds``, until the topic is idle)."""
    stop = stop or asyncio.Event()
    stats = ConsumeStats()
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=bootstrap_servers, group_id=group_id,
        enable_auto_commit=False, auto_offset_reset="earliest",
    )
    try:
        await consumer.start()
    except KafkaError as exc:
        await consumer.stop()
        raise StorageError(f"cannot reach Kafka at {bootstrap_servers}: {exc}") from exc
    loop = asyncio.get_running_loop()
    idle_since = loop.time()
    try:
        while not stop.is_set():
            polled = await consumer.getmany(timeout_ms=200, max_records=max_records)
            batch: list[UsageRecord] = []
            for messages in polled.values():
                for msg in messages:
                    stats.messages += 1
                    try:
                        batch.append(_decoder.decode(msg.value))
                    except msgspec.DecodeError as exc:
                        stats.invalid += 1
                        log.warning("skipping invalid usage message at %s/%s: %s",
                                    msg.partition, msg.offset, exc)
            if polled:
                idle_since = loop.time()
                inserted = await anyio.to_thread.run_sync(ledger.append, batch)
                stats.inserted += inserted
                if metrics is not None:
                    metrics.usage_records.labels("inserted").inc(inserted)
                    metrics.usage_records.labels("duplicate").inc(len(batch) - inserted)
                    metrics.usage_records.labels("invalid").inc(
                        sum(map(len, polled.values())) - len(batch))
                await consumer.commit()  # after the ledger commit: at-least-once + idempotent
            elif idle_exit_seconds is not None and loop.time() - idle_since >= idle_exit_seconds:
                break
    except KafkaError as exc:
        raise StorageError(f"usage topic {topic!r}: {exc}") from exc
    finally:
        await consumer.stop()
    return stats
