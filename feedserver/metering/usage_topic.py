"""Usage records over the event log (distributed mode): API processes append them to the usage
topic, one consumer writes them into the ledger. Like every other topic, through ``EventLog``.

``EventLogDestination`` is a writer ``Destination``: a batch is delivered once the event log
has acknowledged every record in it (``append`` is durable); only then is the local journal
released, so a crash before the acknowledgement replays the batch (the ledger drops the
duplicates by ``usage_id``). Records are keyed by customer, so one customer's records stay in
order on one partition.

``consume_usage`` reads the topic from the group's committed offsets (the start of every
partition the first time): each poll is appended to the ledger in one transaction and the
offsets are committed AFTER the database commit. A crash between the two redelivers the poll,
which the ledger ignores by ``usage_id``: exactly once in the ledger. Several consumers of one
group are safe for the same reason (each commits only what it appended). A message that is not
a usage record is logged and skipped (it can never become valid). Until the topic exists the
consumer waits, as an idle one.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import anyio.to_thread
import msgspec

from feedserver.errors import NotFound
from feedserver.metering.ledger import Ledger
from feedserver.metering.records import UsageRecord
from feedserver.metrics import Metrics
from feedserver.storage.eventlog import EventLog, LogReader, Outgoing, TopicPartition

log = logging.getLogger(__name__)
_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(UsageRecord)


class EventLogDestination:
    """Deliver usage batches to the usage topic of an ``EventLog`` (which the caller owns)."""

    def __init__(self, events: EventLog, topic: str) -> None:
        self.events = events
        self.topic = topic

    async def deliver(self, records: Sequence[UsageRecord]) -> None:
        await self.events.append(self.topic, [
            Outgoing(key=rec.customer_id.encode(), value=_encoder.encode(rec))
            for rec in records])

    async def close(self) -> None:
        return None


class ConsumeStats(msgspec.Struct, kw_only=True):
    messages: int = 0
    inserted: int = 0
    invalid: int = 0


async def _reader(events: EventLog, topic: str, group: str) -> LogReader | None:
    """A reader from the group's committed offsets, or None while the topic does not exist."""
    try:
        ends = await events.end_offsets(topic)
    except NotFound:
        return None
    committed = await events.committed(group, topic)
    return events.reader({(topic, p): committed.get(p, 0) for p in ends})


async def consume_usage(
    ledger: Ledger,
    events: EventLog,
    topic: str,
    group: str,
    *,
    stop: asyncio.Event | None = None,
    idle_exit_seconds: float | None = None,
    max_records: int = 1000,
    poll_timeout: float = 0.2,
    metrics: Metrics | None = None,
) -> ConsumeStats:
    """Consume until ``stop`` is set (or, with ``idle_exit_seconds``, until the topic is idle)."""
    stop = stop or asyncio.Event()
    stats = ConsumeStats()
    loop = asyncio.get_running_loop()
    idle_since = loop.time()
    reader: LogReader | None = None
    try:
        while not stop.is_set():
            if reader is None:
                reader = await _reader(events, topic, group)
            if reader is None:
                await asyncio.sleep(poll_timeout)
                polled = []
            else:
                polled = await reader.poll(max_records=max_records, timeout=poll_timeout)
            batch: list[UsageRecord] = []
            for msg in polled:
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
                    metrics.usage_records.labels("invalid").inc(len(polled) - len(batch))
                positions: dict[TopicPartition, int] = {}
                for msg in polled:
                    tp = (msg.topic, msg.partition)
                    positions[tp] = max(positions.get(tp, 0), msg.offset + 1)
                # After the ledger commit: at-least-once delivery + idempotent ledger.
                await events.commit(group, positions)
            elif idle_exit_seconds is not None and loop.time() - idle_since >= idle_exit_seconds:
                break
    finally:
        if reader is not None:
            await reader.close()
    return stats
