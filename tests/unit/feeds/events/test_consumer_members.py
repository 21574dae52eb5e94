"""Static membership on the embedded log: members split the input partitions, together they
produce every article exactly once, and each touches only its own offsets and checkpoints."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import msgspec
import pytest
from prometheus_client import CollectorRegistry

from feedserver.config import Settings
from feedserver.errors import InvalidParameter, StorageError
from feedserver.feeds.events.consumer import SOURCE_HEADER, EventConsumer
from feedserver.metrics import Metrics
from feedserver.models import Article
from feedserver.storage.db import SQLiteDatabase
from feedserver.storage.eventlog import (
    EmbeddedEventLog,
    EventLog,
    LogRecord,
    Outgoing,
    TopicPartition,
    read,
)
from tests.conftest import EVENTS
from tests.unit.feeds.events.conftest import INPUT

REAL = EVENTS / "page_change" / "mediawiki.page_change.v1__wikidata-query-rdf.jsonl"
SYNTHETIC = 40
BROKEN = b'{"not": "an event"'
# 13 real events (one move -> 2 articles) + synthetic edits of distinct pages.
EXPECTED_ARTICLES = 14 + SYNTHETIC


def real_events() -> list[bytes]:
    return [line for line in REAL.read_bytes().splitlines() if line.strip()]


def synthetic_events(count: int, *, first_page: int = 9_000_000) -> list[bytes]:
    """Edits of ``count`` distinct pages, derived from the first real event."""
    base = json.loads(real_events()[0])
    out = []
    for i in range(count):
        event = json.loads(json.dumps(base))
        page = first_page + i
        event["page"]["page_id"] = page
        event["page"]["page_title"] = f"File:Synthetic_{page}.jpg"
        event["revision"]["rev_id"] = 5_000_000_000 + page
        event["meta"]["id"] = str(uuid.uuid5(uuid.NAMESPACE_URL, f"synthetic/{page}"))
        out.append(json.dumps(event).encode())
    return out


def page_key(line: bytes) -> bytes | None:
    """Keyed by wiki and page, as Wikimedia does: one page's events stay in order."""
    try:
        event = json.loads(line)
        return f"{event['wiki_id']}/{event['page']['page_id']}".encode()
    except (ValueError, KeyError, TypeError):
        return None


def all_events() -> list[bytes]:
    real = real_events()
    return [*real[:6], BROKEN, *real[6:], *synthetic_events(SYNTHETIC)]


async def load(log: EventLog, partitions: int = 4) -> None:
    await log.create_topic(INPUT, partitions)
    await log.append(INPUT, [Outgoing(key=page_key(v), value=v) for v in all_events()])


@pytest.fixture
async def event_log(db: SQLiteDatabase) -> AsyncIterator[EmbeddedEventLog]:
    log = EmbeddedEventLog(db, poll_interval=0.05)
    await load(log)
    yield log
    await log.close()


def consumer(settings: Settings, log: EventLog, db: SQLiteDatabase, member: int,
             members: int = 2, **kw: object) -> EventConsumer:
    c = EventConsumer.from_settings(settings, log, db, member=member, members=members,
                                    **kw)  # type: ignore[arg-type]
    c.poll_timeout = 0.1
    return c


async def outputs(log: EventLog, topic: str) -> list[LogRecord]:
    start = {(topic, p): 0 for p in await log.end_offsets(topic)}
    return [r async for r in read(log, start, follow=False)]


def check_exactly_once(records: list[LogRecord]) -> None:
    sources = Counter(r.header(SOURCE_HEADER) for r in records)
    assert all(n == 1 for n in sources.values()), sources.most_common(3)
    articles = [msgspec.json.decode(r.value, type=Article) for r in records]
    ids = [a.event.identifier for a in articles if a.event]
    assert len(ids) == len(set(ids)) == EXPECTED_ARTICLES


def state_rows(db: SQLiteDatabase) -> list[tuple[object, ...]]:
    return db.fetchall("SELECT project, namespace, page_id, name, revision, changed_us,"
                       " deleted, article FROM article_state"
                       " ORDER BY project, namespace, page_id")


class FlakyCommits:
    """The real embedded log, except that commit number ``crash_at`` (0-based) fails: the
    process "dies" after producing a batch and before committing it."""

    def __init__(self, inner: EmbeddedEventLog, crash_at: int) -> None:
        self.inner = inner
        self.crash_at = crash_at
        self.commits = 0

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    async def commit(self, group: str, offsets: Mapping[TopicPartition, int]) -> None:
        self.commits += 1
        if self.commits - 1 == self.crash_at:
            raise StorageError("simulated crash before commit")
        await self.inner.commit(group, offsets)


async def test_two_members_equal_one(settings: Settings, event_log: EmbeddedEventLog,
                                     db: SQLiteDatabase, tmp_path: Path) -> None:
    metrics = [Metrics(CollectorRegistry()) for _ in range(2)]
    stats = await asyncio.gather(*(
        consumer(settings, event_log, db, m, batch_size=3, metrics=metrics[m]).run(once=True)
        for m in range(2)))
    assert all(s.totals.consumed > 0 for s in stats)
    assert sum(s.totals.consumed for s in stats) == len(all_events())
    assert sum(s.totals.dead_lettered for s in stats) == 1
    check_exactly_once(await outputs(event_log, settings.article_topic))
    ends = await event_log.end_offsets(INPUT)
    assert await event_log.committed(settings.consumer_group, INPUT) == ends
    for m in range(2):  # each member's lag covers its own partitions only
        assert metrics[m].registry.get_sample_value(
            "feedserver_consumer_lag", {"topic": INPUT}) == 0
    # The same input through ONE consumer (default membership) gives the same state.
    single_db = SQLiteDatabase(tmp_path / "single.db")
    single_log = EmbeddedEventLog(single_db, poll_interval=0.05)
    await load(single_log)
    one = EventConsumer.from_settings(settings, single_log, single_db, batch_size=3)
    one.poll_timeout = 0.1
    await one.run(once=True)
    assert state_rows(db) == state_rows(single_db)
    assert len(state_rows(db)) > SYNTHETIC
    assert sorted(r.value for r in await outputs(event_log, settings.article_topic)) == \
        sorted(r.value for r in await outputs(single_log, settings.article_topic))
    await single_log.close()


async def test_member_touches_only_its_own_offsets(settings: Settings,
                                                   event_log: EmbeddedEventLog,
                                                   db: SQLiteDatabase) -> None:
    group = settings.consumer_group
    await event_log.commit(group, {(INPUT, 1): 2, (INPUT, 3): 1})
    metrics = Metrics(CollectorRegistry())
    stats = await consumer(settings, event_log, db, 0, metrics=metrics).run(once=True)
    ends = await event_log.end_offsets(INPUT)
    assert stats.totals.consumed == ends[0] + ends[2]
    assert await event_log.committed(group, INPUT) == {0: ends[0], 1: 2, 2: ends[2], 3: 1}
    # Lag is member 0's alone: its partitions are done, whatever member 1 has left.
    assert metrics.registry.get_sample_value("feedserver_consumer_lag", {"topic": INPUT}) == 0
    produced = await outputs(event_log, settings.article_topic)
    sources = {(r.header(SOURCE_HEADER) or b"").decode().split(":")[1] for r in produced}
    assert sources == {"0", "2"}
    grps = {g for (g,) in db.fetchall("SELECT DISTINCT grp FROM consumer_checkpoints")}
    assert grps == {f"{group}#0/2"}


async def test_member_restarted_midway(settings: Settings, event_log: EmbeddedEventLog,
                                       db: SQLiteDatabase) -> None:
    group = settings.consumer_group
    first = await consumer(settings, event_log, db, 0, batch_size=2).run(max_events=4)
    assert first.totals.consumed == 4
    other = asyncio.create_task(consumer(settings, event_log, db, 1, batch_size=2).run(once=True))
    # Member 0 dies between produce and commit, then again after one more commit: the second
    # restart must still know the outputs of the first replay it has not committed yet.
    for crash_at, batch in ((0, 6), (1, 1)):
        flaky = FlakyCommits(event_log, crash_at)
        with pytest.raises(StorageError):
            await consumer(settings, flaky, db, 0,  # type: ignore[arg-type]
                           batch_size=batch).run(once=True, max_failures=1)
    rest = await consumer(settings, event_log, db, 0, batch_size=4).run(once=True)
    assert rest.totals.skipped > 0
    await other
    check_exactly_once(await outputs(event_log, settings.article_topic))
    assert await event_log.committed(group, INPUT) == await event_log.end_offsets(INPUT)


async def test_layout_change_after_a_crash(settings: Settings, event_log: EmbeddedEventLog,
                                           db: SQLiteDatabase) -> None:
    """One consumer dies with produced but uncommitted outputs; then two members take over
    (a new layout: no checkpoints of their own yet) and still produce nothing twice."""
    with pytest.raises(StorageError):
        await EventConsumer.from_settings(
            settings, FlakyCommits(event_log, 1), db,  # type: ignore[arg-type]
            batch_size=8).run(once=True, max_failures=1)
    assert len(await outputs(event_log, settings.article_topic)) > 0
    await asyncio.gather(*(consumer(settings, event_log, db, m, batch_size=5).run(once=True)
                           for m in range(2)))
    check_exactly_once(await outputs(event_log, settings.article_topic))


def test_member_out_of_range(settings: Settings, db: SQLiteDatabase) -> None:
    log = EmbeddedEventLog(db)
    for member, members in ((2, 2), (-1, 2), (0, 0)):
        with pytest.raises(InvalidParameter):
            EventConsumer.from_settings(settings, log, db, member=member, members=members)
