"""``follow``: EventStreams -> the input topic, exactly once across reconnects and kills.

Each batch of events is appended to partition 0 of ``topic`` (one partition keeps the stream's
order for the consumer), every record carrying in its ``feedserver-eventstreams-id`` header the
SSE id of its own event, and its ``meta.id`` as key. Only after the append returned (durable,
acknowledged) is the batch's position stored in the database: ``eventstreams_positions`` holds
``(name, position, topic_end)``, the topic's end offset right after that append.

Where to resume, at start:

- if the topic still ends at ``topic_end``, the stored position (it may be past the last
  record: frames of other wikis or dead letters also move it);
- if the topic ends beyond it (killed between the append and the position write), the header
  of the last record there: the exact SSE id of the last event stored.

So every event before the resume point is stored and none after it: EventStreams resumes after
a ``Last-Event-ID`` exactly. When it resumes by timestamp instead (ids carrying timestamps,
``since``), it re-sends the events of that millisecond; the ``meta.id`` of the last
``dedup_window`` records, read back at start, drop them.

Storage failures are not retried here: they end ``follow`` with the error, and the restart
recovers as above. Dead letters go to ``dead_letter_topic`` (at least once: a kill after that
append and before the position write sends them again).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence

import httpx

from feedserver.errors import StorageError
from feedserver.metrics import Metrics
from feedserver.sources.eventstreams import (
    Batch,
    DeadLetter,
    EventStreamsClient,
    StreamStats,
    valid_position,
)
from feedserver.storage.db import Database
from feedserver.storage.eventlog import EventLog, LogRecord, Outgoing, now_ms

log = logging.getLogger(__name__)

POSITION_HEADER = "feedserver-eventstreams-id"
REASON_HEADER = "feedserver-reason"
PARTITION = 0
MIGRATION = (
    "CREATE TABLE IF NOT EXISTS eventstreams_positions (name TEXT PRIMARY KEY,"
    " position TEXT NOT NULL, topic_end BIGINT NOT NULL, updated_ms BIGINT NOT NULL)",
)
_SCAN = 200  # records read per step when looking back for the last position header
_EMPTY_POLLS = 6  # empty polls (5 s each) before reading back is given up


async def stored_position(event_log: EventLog, db: Database, name: str, topic: str
                          ) -> str | None:
    """Where a follower named ``name`` writing ``topic`` resumes (see the module doc)."""
    await asyncio.to_thread(db.migrate, "sources.follow.1", MIGRATION)
    row = await asyncio.to_thread(
        db.fetchone, "SELECT position, topic_end FROM eventstreams_positions WHERE name = ?",
        (name,))
    end = (await event_log.end_offsets(topic)).get(PARTITION, 0)
    floor = int(row[1]) if row else 0
    if row is not None and end <= floor:
        return str(row[0])
    # Records appended after the last position write: the newest header wins.
    high = end
    while high > floor:
        low = max(floor, high - _SCAN)
        records = await _read(event_log, topic, low, high)
        for record in reversed(records):
            header = record.header(POSITION_HEADER)
            if header is not None and valid_position(header.decode(errors="replace")):
                return header.decode()
        high = low
    return str(row[0]) if row is not None else None


async def stored_event_ids(event_log: EventLog, topic: str, window: int) -> list[str]:
    """The ``meta.id`` keys of the last ``window`` records of ``topic``."""
    end = (await event_log.end_offsets(topic)).get(PARTITION, 0)
    # Best effort: the dedup memory only guards against re-sent milliseconds.
    records = await _read(event_log, topic, max(0, end - window), end, strict=False)
    return [r.key.decode(errors="replace") for r in records if r.key]


async def _read(event_log: EventLog, topic: str, low: int, high: int, *, strict: bool = True
                ) -> list[LogRecord]:
    """Records ``[low, high)`` of partition 0. When they cannot all be read: ``StorageError``
    if ``strict`` (a guessed position would store events twice or lose them), else those read.
    """
    out: list[LogRecord] = []
    reader = event_log.reader({(topic, PARTITION): low})
    empty = 0
    try:
        while low < high:
            records = await reader.poll(max_records=min(500, high - low), timeout=5.0)
            if not records:
                empty += 1
                if empty >= _EMPTY_POLLS:
                    if not strict:
                        break
                    raise StorageError(f"cannot read {topic} offsets {low}..{high - 1} back")
                continue
            empty = 0
            out.extend(r for r in records if r.offset < high)
            low = records[-1].offset + 1
    finally:
        await reader.close()
    return out


async def follow(
    event_log: EventLog,
    db: Database,
    *,
    url: str,
    streams: Sequence[str],
    topic: str,
    user_agent: str,
    wikis: Sequence[str] = (),
    since: str | None = None,
    name: str | None = None,
    dead_letter_topic: str | None = None,
    metrics: Metrics | None = None,
    batch_size: int = 500,
    batch_seconds: float = 1.0,
    timeout: float = 60.0,
    backoff: float = 1.0,
    max_failures: int | None = None,
    dedup_window: int = 10_000,
    max_events: int | None = None,
    stop: asyncio.Event | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> StreamStats:
    """Follow ``streams`` at ``url`` into ``topic`` until ``stop`` is set (or ``max_events``
    were appended, or ``max_failures`` connections failed in a row: ``UpstreamError``).
    ``since`` applies only when nothing was stored yet. ``name`` (default: the topic) keys the
    stored position, so followers of different streams into different topics can coexist."""
    name = name or topic
    await event_log.create_topic(topic, 1)
    if dead_letter_topic:
        await event_log.create_topic(dead_letter_topic, 1)

    async def dead_letter(letter: DeadLetter) -> None:
        if dead_letter_topic:
            await event_log.append(dead_letter_topic, [Outgoing(
                key=None, value=letter.raw, partition=0, timestamp_ms=now_ms(),
                headers=((REASON_HEADER, f"{letter.reason}: {letter.detail}".encode()),
                         (POSITION_HEADER, (letter.position or "").encode())))])

    position = await stored_position(event_log, db, name, topic)
    client = EventStreamsClient(url, streams, user_agent=user_agent, wikis=wikis,
                                batch_size=batch_size, batch_seconds=batch_seconds,
                                timeout=timeout, backoff=backoff,
                                max_failures=max_failures,
                                dedup_window=dedup_window, dead_letter=dead_letter,
                                metrics=metrics, transport=transport)
    client.remember(await stored_event_ids(event_log, topic, dedup_window))
    end = (await event_log.end_offsets(topic)).get(PARTITION, 0)
    log.info("following %s from %s", client.url, position or (f"since {since}" if since
                                                             else "now"))
    appended = 0

    async def run() -> None:
        nonlocal end, appended
        if max_events is not None and max_events <= 0:
            return
        async for batch in client.batches(position=position, since=since):
            end = await _append(event_log, topic, batch, end)
            # Only now, with the events durable, does the position move.
            await asyncio.to_thread(
                db.execute,
                "INSERT INTO eventstreams_positions (name, position, topic_end, updated_ms) "
                "VALUES (?, ?, ?, ?) ON CONFLICT (name) DO UPDATE SET position = "
                "excluded.position, topic_end = excluded.topic_end, updated_ms = "
                "excluded.updated_ms", (name, batch.position, end, now_ms()))
            appended += len(batch.events)
            if metrics and batch.events:
                metrics.eventstreams_events.labels("appended").inc(len(batch.events))
                last = batch.events[-1].dt
                if last is not None:
                    metrics.eventstreams_last_event.set(last.timestamp())
            if max_events is not None and appended >= max_events:
                return

    task = asyncio.create_task(run())
    waiter = asyncio.create_task(stop.wait()) if stop is not None else None
    try:
        await asyncio.wait([t for t in (task, waiter) if t is not None],
                           return_when=asyncio.FIRST_COMPLETED)
        if task.done():
            task.result()  # raises what the loop raised
    finally:
        for t in (task, waiter):
            if t is not None and not t.done():
                t.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await t
        await client.close()
    return client.stats


async def _append(event_log: EventLog, topic: str, batch: Batch, end: int) -> int:
    if not batch.events:
        return end
    stamp = now_ms()
    positions = await event_log.append(topic, [
        Outgoing(key=e.event_id.encode(), value=e.raw,
                 partition=PARTITION, timestamp_ms=stamp,
                 headers=((POSITION_HEADER, e.position.encode()),))
        for e in batch.events])
    return max(end, positions[-1][1] + 1)
