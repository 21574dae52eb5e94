"""Consumer end-to-end on the embedded event log: real events in, articles out exactly once."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import msgspec
import pytest
from prometheus_client import CollectorRegistry

from feedserver.config import Settings
from feedserver.errors import StorageError
from feedserver.feeds.events.consumer import SOURCE_HEADER, EventConsumer
from feedserver.ingest.events import changes_from_json, with_body
from feedserver.metrics import Metrics
from feedserver.models import Article
from feedserver.sources.mediawiki import ActionApiClient
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
from tests.fixtures.action_api import serve_action_api
from tests.unit.feeds.events.conftest import INPUT

REAL = EVENTS / "page_change" / "mediawiki.page_change.v1__wikidata-query-rdf.jsonl"
EXAMPLE = EVENTS / "schema_examples" / "mediawiki.page_change.v1__schema-1.3.0-examples.jsonl"
# 13 real events (one move -> 2 articles) + the schema example.
EXPECTED_ARTICLES = 15


def _events() -> list[bytes]:
    lines = [line for line in REAL.read_bytes().splitlines() if line.strip()]
    example = EXAMPLE.read_bytes().strip()
    # One broken line in the middle: it must be dead-lettered, not block the rest.
    return [*lines[:6], b'{"not": "an event"', *lines[6:], example]


@pytest.fixture
async def event_log(db: SQLiteDatabase) -> AsyncIterator[EmbeddedEventLog]:
    log = EmbeddedEventLog(db, poll_interval=0.05)
    await log.create_topic(INPUT, 2)
    await log.append(INPUT, [Outgoing(key=str(i % 5).encode(), value=v)
                             for i, v in enumerate(_events())])
    yield log
    await log.close()


def _consumer(settings: Settings, log: EventLog, db: SQLiteDatabase, **kw: object
              ) -> EventConsumer:
    consumer = EventConsumer.from_settings(settings, log, db, **kw)  # type: ignore[arg-type]
    consumer.poll_timeout = 0.1
    return consumer


async def _outputs(log: EventLog, topic: str) -> list[LogRecord]:
    start = {(topic, p): 0 for p in await log.end_offsets(topic)}
    return [r async for r in read(log, start, follow=False)]


def _check_exactly_once(records: list[LogRecord]) -> list[Article]:
    sources = Counter(r.header(SOURCE_HEADER) for r in records)
    assert all(n == 1 for n in sources.values()), sources.most_common(3)
    articles = [msgspec.json.decode(r.value, type=Article) for r in records]
    ids = [a.event.identifier for a in articles if a.event]
    assert len(ids) == len(set(ids)) == EXPECTED_ARTICLES
    return articles


async def test_consume_everything(settings: Settings, event_log: EmbeddedEventLog,
                                  db: SQLiteDatabase) -> None:
    metrics = Metrics(CollectorRegistry())
    consumer = _consumer(settings, event_log, db, metrics=metrics, batch_size=4)
    stats = await consumer.run(once=True)
    assert stats.totals.consumed == 15 and stats.totals.dead_lettered == 1
    articles = _check_exactly_once(await _outputs(event_log, settings.article_topic))
    # Key -> partition with Kafka's partitioner; same page always on the same partition.
    records = await _outputs(event_log, settings.article_topic)
    by_key: dict[bytes | None, set[int]] = {}
    for r in records:
        by_key.setdefault(r.key, set()).add(r.partition)
    assert all(len(parts) == 1 for parts in by_key.values())
    assert Counter(a.event.type for a in articles if a.event) == {
        "update": 11, "delete": 3, "visibility-change": 1}
    # State: the page whose lifecycle is in the stream ends undeleted at revision 686140.
    page = consumer.state.get_stored("testwikidatawiki", 0, 330275)
    assert page and not page.deleted and page.revision == 686140
    dead = db.fetchall("SELECT reason, raw FROM dead_letters")
    assert dead == [("json", b'{"not": "an event"')]
    assert await event_log.committed(settings.consumer_group, INPUT) == \
        await event_log.end_offsets(INPUT)
    reg = metrics.registry
    assert reg.get_sample_value("feedserver_events_consumed_total", {"topic": INPUT}) == 15
    assert reg.get_sample_value("feedserver_articles_produced_total") == EXPECTED_ARTICLES
    assert reg.get_sample_value("feedserver_consumer_lag", {"topic": INPUT}) == 0
    # Running again finds nothing to do.
    again = await _consumer(settings, event_log, db).run(once=True)
    assert again.totals.consumed == 0


async def test_stop_midway_and_restart(settings: Settings, event_log: EmbeddedEventLog,
                                       db: SQLiteDatabase) -> None:
    first = await _consumer(settings, event_log, db, batch_size=2).run(max_events=5)
    assert first.totals.consumed == 5
    rest = await _consumer(settings, event_log, db, batch_size=3).run(once=True)
    assert rest.totals.consumed == 10
    _check_exactly_once(await _outputs(event_log, settings.article_topic))


class CrashingCommits:
    """The real embedded log, except that commits fail ``crashes`` times: the process "dies"
    after producing and before committing."""

    def __init__(self, inner: EmbeddedEventLog, crashes: int) -> None:
        self.inner = inner
        self.crashes = crashes

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    async def commit(self, group: str, offsets: Mapping[TopicPartition, int]) -> None:
        if self.crashes > 0:
            self.crashes -= 1
            raise StorageError("simulated crash before commit")
        await self.inner.commit(group, offsets)


async def test_crash_between_produce_and_commit(settings: Settings,
                                                event_log: EmbeddedEventLog,
                                                db: SQLiteDatabase) -> None:
    crashing = CrashingCommits(event_log, crashes=1)
    with pytest.raises(StorageError):
        await _consumer(settings, crashing, db, batch_size=6).run(  # type: ignore[arg-type]
            once=True, max_failures=1)
    produced = len(await _outputs(event_log, settings.article_topic))
    assert produced > 0
    assert await event_log.committed(settings.consumer_group, INPUT) == {}
    # Also lose the checkpoint table's content: the marks must then come from a full scan.
    db.execute("DELETE FROM consumer_checkpoints")
    restarted = _consumer(settings, event_log, db, batch_size=6)
    stats = await restarted.run(once=True)
    assert stats.totals.skipped == produced
    _check_exactly_once(await _outputs(event_log, settings.article_topic))


async def test_in_process_retry_after_failure(settings: Settings, event_log: EmbeddedEventLog,
                                              db: SQLiteDatabase) -> None:
    crashing = CrashingCommits(event_log, crashes=2)
    consumer = _consumer(settings, crashing, db, batch_size=5)  # type: ignore[arg-type]
    stats = await consumer.run(once=True, retry_delay=0.01)
    assert stats.totals.skipped > 0
    _check_exactly_once(await _outputs(event_log, settings.article_topic))


async def test_bodies_from_the_action_api_and_state(settings: Settings, db: SQLiteDatabase,
                                                    tmp_path: Path) -> None:
    log = EmbeddedEventLog(db, poll_interval=0.05)
    edit = json.loads(REAL.read_bytes().splitlines()[0])
    await log.create_topic(INPUT, 1)
    text = "A fruit.\n{{Information|x=1}}\n[[Category:Iris foetidissima (fruit)]]"
    # The wiki knows the edited revision (its page and text); the event carries no text.
    known = with_body(changes_from_json(json.dumps(edit))[0].article, text)
    vis = dict(edit, page_change_kind="visibility_change", dt="2024-10-08T00:00:00Z",
               meta=dict(edit["meta"], id="00000000-0000-4000-8000-000000000001"))
    await log.append(INPUT, [Outgoing(key=b"k", value=json.dumps(e).encode())
                             for e in (edit, vis)])
    with serve_action_api([known]) as api:
        client = ActionApiClient(api.url, user_agent="feedserver-tests/1 (ops@example.org)")
        try:
            await _consumer(settings, log, db, content=client).run(once=True)
        finally:
            await client.close()
    first, second = [msgspec.json.decode(r.value, type=Article)
                     for r in await _outputs(log, settings.article_topic)]
    assert first.article_body and first.article_body.wikitext == text
    assert [c.name for c in first.categories or []] == ["Category:Iris foetidissima (fruit)"]
    # The visibility change re-used the stored body of the same revision: one request only,
    # which also asked for the parent revision (its size), in the same batch.
    assert second.article_body and second.article_body.wikitext == text
    (request,) = api.revision_requests()
    assert request.params["revids"] == f"{edit['revision']['rev_parent_id']}|934984984"
    await log.close()


async def test_revision_hidden_since_its_event_becomes_the_visibility_record(
        settings: Settings, db: SQLiteDatabase) -> None:
    """The wiki, asked at fetch time, says the revision's text and editor were deleted since
    the (visible) edit event: the article goes out without them and says so, once, with no
    error and no refetch loop."""
    log = EmbeddedEventLog(db, poll_interval=0.05)
    edit = json.loads(REAL.read_bytes().splitlines()[0])
    await log.create_topic(INPUT, 1)
    await log.append(INPUT, [Outgoing(key=b"k", value=json.dumps(edit).encode())])
    known = with_body(changes_from_json(json.dumps(edit))[0].article, "secret text")
    with serve_action_api([known]) as api:
        api.hidden[934984984] = (True, True, False)
        client = ActionApiClient(api.url, user_agent="feedserver-tests/1 (ops@example.org)")
        try:
            stats = await _consumer(settings, log, db, content=client).run(once=True)
        finally:
            await client.close()
    assert stats.totals.produced == 1 and stats.totals.dead_lettered == 0
    (article,) = [msgspec.json.decode(r.value, type=Article)
                  for r in await _outputs(log, settings.article_topic)]
    assert article.article_body is None and article.version is not None
    assert article.version.editor is None and article.version.comment is not None
    assert article.visibility is not None
    assert (article.visibility.text, article.visibility.editor,
            article.visibility.comment) == (False, False, True)
    assert b"secret text" not in (await _outputs(log, settings.article_topic))[0].value
    await log.close()
