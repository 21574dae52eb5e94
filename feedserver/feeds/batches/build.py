"""Build hourly batches from the article topic of the event log (embedded or Kafka).

For one hour: every partition is read from the first offset stamped at or after the hour's
start (``offsets_for_times``) up to the end offsets captured when the build began, stopping
early once a record is stamped past ``end + grace``. Records stamped inside the hour are
folded into "latest per article" as they stream by (``files.keep_latest``), so memory
holds one record per article changed in the hour, never the whole hour. The hour is
published only if every partition's reader passed it (``hours``); otherwise the build
raises ``Conflict`` and publishes nothing.

``build_pending`` builds every complete hour not yet built within retention (and expires old
ones); ``seal_periodically`` runs it on a timer inside ``feedserver events consume`` so the
embedded single-machine setup needs no cron. Two builders of one hour at once are harmless:
identical input gives identical keys and bytes, and the pointer is written last by either.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime

from feedserver.config import Settings
from feedserver.errors import Conflict, FeedError, InvalidParameter, NotFound
from feedserver.feeds.batches import hours
from feedserver.feeds.batches.files import Picked, batch_files, keep_latest
from feedserver.feeds.batches.store import HourIndex, built_hours, expire, publish
from feedserver.models import ArticleKey
from feedserver.storage.blobs import BlobStore
from feedserver.storage.eventlog import EventLog, TopicPartition, now_ms

log = logging.getLogger(__name__)

POLL_BATCH = 500
POLL_TIMEOUT = 1.0
# Empty polls in a row before a reader that has not reached its captured end gives up.
MAX_IDLE_POLLS = 10
SEAL_INTERVAL = 60.0

Clock = Callable[[], int]


async def _read_hour(event_log: EventLog, topic: str, hour: datetime, *, grace_ms: int,
                     clock: Clock) -> tuple[dict[ArticleKey, Picked], dict[int, bool]]:
    start, end = hours.start_ms(hour), hours.end_ms(hour)
    captured = clock()
    ends = await event_log.end_offsets(topic)
    firsts = await event_log.offsets_for_times(topic, start)
    todo: dict[TopicPartition, int] = {(topic, p): firsts[p] for p in ends if firsts[p] < ends[p]}
    last_ts: dict[int, int] = {}
    at_end = {p: (topic, p) not in todo for p in ends}
    picked: dict[ArticleKey, Picked] = {}
    if todo:
        reader = event_log.reader(todo)
        remaining = set(todo)
        idle = 0
        try:
            while remaining and idle < MAX_IDLE_POLLS:
                batch = await reader.poll(max_records=POLL_BATCH, timeout=POLL_TIMEOUT)
                idle = 0 if batch else idle + 1
                for record in batch:
                    tp = (record.topic, record.partition)
                    if tp not in remaining or record.offset >= ends[record.partition]:
                        continue
                    last_ts[record.partition] = record.timestamp_ms
                    keep_latest(picked, record, start, end)
                    if record.offset == ends[record.partition] - 1:
                        at_end[record.partition] = True
                        remaining.discard(tp)
                    elif record.timestamp_ms >= end + grace_ms:
                        remaining.discard(tp)
        finally:
            await reader.close()
    passed = {p: hours.partition_passed(hour, last_timestamp_ms=last_ts.get(p),
                                        at_end=at_end[p], captured_ms=captured,
                                        grace_ms=grace_ms)
              for p in ends}
    return picked, passed


async def build_hour(event_log: EventLog, blobs: BlobStore, settings: Settings,
                     hour: datetime, *, grace_ms: int = hours.DEFAULT_GRACE_MS,
                     clock: Clock = now_ms) -> HourIndex:
    """Build and publish one hour; ``Conflict`` (nothing published) if it is not complete."""
    now = clock()
    if hour < hours.retention_cutoff(now, settings.batch_retention_hours):
        raise InvalidParameter(
            f"hour {hours.label(hour)} is older than the batch retention "
            f"({settings.batch_retention_hours} h)")
    if not hours.is_over(hour, now, grace_ms):
        raise Conflict(f"hour {hours.label(hour)} is not over yet: batches are built only "
                       f"for complete hours (plus {grace_ms // 1000} s grace)")
    topic = settings.article_topic
    try:
        await event_log.partitions(topic)
    except NotFound:
        raise NotFound(f"article topic {topic!r} does not exist yet: run "
                       "'feedserver events consume' first", topic=topic) from None
    picked, passed = await _read_hour(event_log, topic, hour, grace_ms=grace_ms, clock=clock)
    if not hours.hour_complete(hour, passed, clock(), grace_ms):
        late = sorted(p for p, ok in passed.items() if not ok)
        raise Conflict(f"hour {hours.label(hour)} is not complete: partitions {late} of "
                       f"{topic} were not read past it")
    files = batch_files(picked.values(), chunk_size=settings.chunk_size,
                        level=settings.zstd_level,
                        wme_level=settings.wme_gzip_level if settings.wme_archives else None)
    index = await asyncio.to_thread(publish, blobs, hour, files)
    log.info("batch hour %s published: %d batches, %d articles", hours.label(hour),
             len(index.batches), sum(b.article_count for b in index.batches))
    return index


async def _earliest(event_log: EventLog, topic: str, since_ms: int) -> datetime | None:
    """The hour of the oldest record stamped at or after ``since_ms`` (None: none)."""
    ends = await event_log.end_offsets(topic)
    firsts = await event_log.offsets_for_times(topic, since_ms)
    todo = {(topic, p): firsts[p] for p in ends if firsts[p] < ends[p]}
    if not todo:
        return None
    reader = event_log.reader(todo)
    seen: dict[int, int] = {}
    try:
        for _ in range(MAX_IDLE_POLLS):
            for record in await reader.poll(max_records=POLL_BATCH, timeout=POLL_TIMEOUT):
                seen.setdefault(record.partition, record.timestamp_ms)
            if len(seen) == len(todo):
                break
    finally:
        await reader.close()
    return hours.hour_of(min(seen.values())) if seen else None


async def build_pending(event_log: EventLog, blobs: BlobStore, settings: Settings, *,
                        grace_ms: int = hours.DEFAULT_GRACE_MS,
                        clock: Clock = now_ms) -> list[HourIndex]:
    """Expire hours past retention, then build every complete hour not yet built (oldest
    first; stops at the first hour that is not complete)."""
    now = clock()
    cutoff = hours.retention_cutoff(now, settings.batch_retention_hours)
    await asyncio.to_thread(expire, blobs, cutoff)
    built = await asyncio.to_thread(built_hours, blobs)
    if not hours.pending_hours(now, settings.batch_retention_hours, built, earliest=cutoff,
                               grace_ms=grace_ms):
        return []  # the usual case between two hours: no need to touch the log
    try:
        await event_log.partitions(settings.article_topic)
    except NotFound:
        return []  # nothing was ever consumed
    earliest = await _earliest(event_log, settings.article_topic, hours.start_ms(cutoff))
    out = []
    for hour in hours.pending_hours(now, settings.batch_retention_hours, built,
                                    earliest=earliest, grace_ms=grace_ms):
        try:
            out.append(await build_hour(event_log, blobs, settings, hour, grace_ms=grace_ms,
                                        clock=clock))
        except Conflict as exc:
            log.info("batch hour %s not sealed yet: %s", hours.label(hour), exc.detail)
            break
    return out


async def seal_periodically(event_log: EventLog, blobs: BlobStore, settings: Settings,
                            stop: asyncio.Event, *, interval: float = SEAL_INTERVAL) -> None:
    """Run ``build_pending`` every ``interval`` seconds until ``stop`` is set; failures are
    logged and retried at the next tick (the consumer keeps running)."""
    while not stop.is_set():
        try:
            await build_pending(event_log, blobs, settings)
        except FeedError as exc:
            log.error("sealing batch hours failed (retrying in %.0f s): %s", interval,
                      exc.detail)
        except Exception:  # a background duty must not take the consumer down with it
            log.exception("sealing batch hours failed (retrying in %.0f s)", interval)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), interval)
