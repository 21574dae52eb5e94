"""Building hourly batches from an embedded event log with records at chosen timestamps,
and from real page_change events run through the real consumer."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import msgspec
import pytest
import zstandard

from feedserver.config import Settings
from feedserver.errors import Conflict, InvalidParameter, NotFound
from feedserver.feeds.batches import hours
from feedserver.feeds.batches.build import build_hour, build_pending
from feedserver.feeds.batches.store import built_hours, index_key, read_batch, read_hour
from feedserver.feeds.events.consumer import EventConsumer
from feedserver.ingest.events import changes_from_json
from feedserver.storage.blobs import FilesystemBlobStore
from feedserver.storage.db import SQLiteDatabase
from feedserver.storage.eventlog import EmbeddedEventLog, Outgoing, now_ms
from tests.conftest import EVENTS

REAL = EVENTS / "page_change" / "mediawiki.page_change.v1__wikidata-query-rdf.jsonl"
H = datetime(2026, 3, 1, 10, tzinfo=UTC)
START, END = hours.start_ms(H), hours.end_ms(H)
AFTER = END + hours.DEFAULT_GRACE_MS


class World:
    def __init__(self, tmp: Path) -> None:
        self.settings = Settings(data_dir=str(tmp), article_partitions=2, chunk_size=2048)
        self.db = SQLiteDatabase(tmp / "feedserver.db")
        self.log = EmbeddedEventLog(self.db, poll_interval=0.05)
        self.blobs = FilesystemBlobStore(tmp / "blobs")
        self.topic = self.settings.article_topic


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    w = World(tmp_path)
    await w.log.create_topic(w.topic, 2)
    yield w
    w.db.close()


def real_articles() -> list[Outgoing]:
    out = []
    for line in REAL.read_bytes().splitlines():
        for change in changes_from_json(line):
            k = change.key
            out.append(Outgoing(key=f"{k.project}/{k.namespace}/{k.identifier}".encode(),
                                value=msgspec.json.encode(change.article)))
    return out


def at(ts: int, records: list[Outgoing]) -> list[Outgoing]:
    return [Outgoing(key=r.key, value=r.value, timestamp_ms=ts) for r in records]


def unzstd(data: bytes) -> list[bytes]:
    with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(data),
                                                    read_across_frames=True) as r:
        return r.read().splitlines()


def download(w: World, hour: datetime, identifier: str) -> bytes:
    m = read_batch(w.blobs, hour, identifier)
    return b"".join(w.blobs.get_bytes(c.key) for c in m.chunks)


async def test_build_hour_from_chosen_timestamps(world: World) -> None:
    arts = real_articles()
    first, rest = arts[:5], arts[5:]
    await world.log.append(world.topic, at(START - 1000, first))  # hour 09
    await world.log.append(world.topic, at(START + 1000, first))  # again in hour 10
    await world.log.append(world.topic, at(START + 2000, rest))
    await world.log.append(world.topic, at(END + 5, first[:1]))  # hour 11
    index = await build_hour(world.log, world.blobs, world.settings, H, clock=lambda: AFTER)
    assert (index.date, index.hour) == ("2026-03-01", "10")
    # Every article of the hour once, its latest version; hour 11's record excluded.
    keys = {r.key for r in arts}
    assert sum(b.article_count for b in index.batches) == len(keys)
    for b in index.batches:
        assert b.identifier.endswith("_namespace_" + str(b.namespace.identifier))
        lines = unzstd(download(world, H, b.identifier))
        assert len(lines) == b.article_count
        assert b.sha256 and b.chunks and b.size.value == sum(c.size for c in b.chunks)


async def test_rebuild_is_byte_identical(world: World) -> None:
    await world.log.append(world.topic, at(START + 10, real_articles()))
    a = await build_hour(world.log, world.blobs, world.settings, H, clock=lambda: AFTER)
    before = world.blobs.get_bytes(index_key(H))
    keys = sorted(world.blobs.list("batches/"))
    b = await build_hour(world.log, world.blobs, world.settings, H, clock=lambda: AFTER)
    assert a == b and sorted(world.blobs.list("batches/")) == keys
    assert world.blobs.get_bytes(index_key(H)) == before


async def test_incomplete_hour_is_never_published(world: World) -> None:
    await world.log.append(world.topic, at(START + 10, real_articles()))
    with pytest.raises(Conflict):  # not over yet
        await build_hour(world.log, world.blobs, world.settings, H, clock=lambda: END + 1000)
    # Over by the wall clock, but the end was captured before the grace ran out and
    # nothing later was read: a late append may still come.
    times = iter([AFTER, AFTER - 1, AFTER])
    with pytest.raises(Conflict):
        await build_hour(world.log, world.blobs, world.settings, H, clock=lambda: next(times))
    assert list(world.blobs.list("batches/")) == []


async def test_retention_and_bad_hours(world: World) -> None:
    now = AFTER + 72 * hours.HOUR_MS
    with pytest.raises(InvalidParameter):
        await build_hour(world.log, world.blobs, world.settings, H, clock=lambda: now)
    await world.log.append(world.topic, at(START + 10, real_articles()[:2]))
    await build_hour(world.log, world.blobs, world.settings, H, clock=lambda: AFTER)
    # Hours after it: built (empty) by build_pending; hour 10 expires 48 h later.
    built = await build_pending(world.log, world.blobs, world.settings,
                                clock=lambda: AFTER + 3 * hours.HOUR_MS)
    assert [(i.hour, len(i.batches)) for i in built] == [("11", 0), ("12", 0), ("13", 0)]
    assert await build_pending(world.log, world.blobs, world.settings,
                               clock=lambda: AFTER + 3 * hours.HOUR_MS) == []
    await build_pending(world.log, world.blobs, world.settings,
                        clock=lambda: AFTER + 49 * hours.HOUR_MS)
    assert H not in built_hours(world.blobs)
    assert not [k for k in world.blobs.list("batches/2026-03-01/10/")]
    with pytest.raises(NotFound):
        read_hour(world.blobs, H)


async def test_missing_topic(tmp_path: Path) -> None:
    w = World(tmp_path)
    try:
        with pytest.raises(NotFound):
            await build_hour(w.log, w.blobs, w.settings, H, clock=lambda: AFTER)
        assert await build_pending(w.log, w.blobs, w.settings, clock=lambda: AFTER) == []
    finally:
        w.db.close()


async def test_real_events_through_the_consumer(world: World) -> None:
    input_topic = world.settings.event_topics[0]
    await world.log.create_topic(input_topic, 1)
    lines = [line for line in REAL.read_bytes().splitlines() if line.strip()]
    await world.log.append(input_topic, [Outgoing(key=None, value=v) for v in lines])
    consumer = EventConsumer.from_settings(world.settings, world.log, world.db)
    consumer.poll_timeout = 0.1
    await consumer.run(once=True, max_failures=1)
    later = now_ms() + 2 * hours.HOUR_MS
    built = await build_pending(world.log, world.blobs, world.settings, clock=lambda: later)
    assert built and sum(b.article_count for i in built for b in i.batches) > 0
    for i in built:
        for b in i.batches:
            for line in unzstd(download(world, datetime.fromisoformat(
                    f"{i.date}T{i.hour}:00+00:00"), b.identifier)):
                assert msgspec.json.decode(line)["is_part_of"]["identifier"] == \
                    b.is_part_of.identifier
