"""recentchange beside page_change on the consumer's input: the same change model, dead-letter
rules and exactly-once outputs, with pages and text from a loopback Action API answering from
real dump revisions."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from feedserver.config import Settings, load_settings
from feedserver.errors import InvalidParameter
from feedserver.feeds.events.consumer import EventConsumer
from feedserver.metrics import Metrics
from feedserver.models import Article
from feedserver.sources.mediawiki import ActionApiClient
from feedserver.storage.db import SQLiteDatabase
from feedserver.storage.eventlog import EmbeddedEventLog, EventLog, Outgoing, read
from tests.conftest import DUMPS, EVENTS
from tests.fixtures.action_api import ActionApi, load_articles, serve_action_api
from tests.fixtures.recentchange import edit_of, log_event, real_page_changes
from tests.unit.feeds.events.test_consumer import CrashingCommits

INPUT = "feedserver.eventstreams"
UA = "feedserver-tests/1 (ops@example.org)"


@pytest.fixture(scope="module")
def articles() -> list[Article]:
    return load_articles(DUMPS, ["pywikibot/pair-0.10.xml", "pywikibot/article-pear-0.10.xml"])


@pytest.fixture
def api(articles: list[Article]) -> Iterator[ActionApi]:
    with serve_action_api(articles) as server:
        yield server


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings(env={}, data_dir=str(tmp_path), event_topics=[INPUT],
                         article_partitions=3)


def _inputs(articles: list[Article]) -> list[dict[str, Any] | bytes]:
    pear = next(a for a in articles if a.name == "Pear")
    others = [a for a in articles if a.name != "Pear"]
    unknown = msgspec.structs.replace(pear, version=msgspec.structs.replace(
        pear.version, identifier=999_999_999))
    edit = next(pc for pc in real_page_changes(EVENTS) if pc["page_change_kind"] == "edit")
    return [
        *(edit_of(a, rcid=10 + i) for i, a in enumerate(others)),  # 2 updates
        edit_of(pear, rcid=20),  # update, text from the API
        {"$schema": "/mediawiki/recentchange/1.0.1", "type": "categorize", "title": "Pear",
         "meta": {"id": "c1", "dt": "2024-10-07T19:33:46Z", "stream": "mediawiki.recentchange"},
         "wiki": "enwiki"},  # nothing
        edit,  # a real page_change edit: update (text unknown to this wiki: none)
        b"<html>not json</html>",  # dead letter: json
        {"$schema": "/mediawiki/recentchange/1.0.1", "meta": {"id": 5}, "wiki": "EN"},  # schema
        {"$schema": "/mediawiki/revision/score/1.0.0", "meta": {"id": "x"}},  # unsupported
        edit_of(unknown, rcid=21),  # unresolved: the wiki has no such revision
        # Pear deleted: found by title in the state store (an earlier batch stored it).
        log_event(title="Pear", namespace=0, log_type="delete", log_action="delete", rcid=22),
    ]


async def _articles(log: EventLog, topic: str) -> list[Article]:
    start = {(topic, p): 0 for p in await log.end_offsets(topic)}
    return [msgspec.json.decode(r.value, type=Article)
            async for r in read(log, start, follow=False)]


async def test_recentchange_and_page_change_exactly_once_across_a_crash(
        settings: Settings, tmp_path: Path, api: ActionApi, articles: list[Article]) -> None:
    db = SQLiteDatabase(tmp_path / "feedserver.db")
    log = EmbeddedEventLog(db, poll_interval=0.05)
    await log.create_topic(INPUT, 1)
    await log.append(INPUT, [Outgoing(key=None, value=v if isinstance(v, bytes)
                                      else json.dumps(v).encode())
                             for v in _inputs(articles)])
    metrics = Metrics()
    client = ActionApiClient(api.url, user_agent=UA)
    try:
        # The first run "dies" after producing its first batch and before committing it: the
        # restart replays that batch and must not produce its articles again.
        crashing = CrashingCommits(log, crashes=1)
        first = EventConsumer.from_settings(settings, crashing, db,  # type: ignore[arg-type]
                                            content=client, batch_size=4)
        first.poll_timeout = 0.1
        with pytest.raises(Exception, match="simulated crash"):
            await first.run(once=True, max_failures=1)
        consumer = EventConsumer.from_settings(settings, log, db, content=client,
                                               metrics=metrics, batch_size=4)
        consumer.poll_timeout = 0.1
        stats = await consumer.run(once=True)
    finally:
        await client.close()
    assert stats.totals.skipped > 0
    got = await _articles(log, settings.article_topic)
    ids = [a.event.identifier for a in got if a.event]
    assert len(ids) == len(set(ids)) == 5
    assert Counter((a.name, a.event.type) for a in got if a.event) == Counter({
        ("Çullu, Agdam", "update"): 1, ("Talk:Çullu, Agdam", "update"): 1,
        ("Pear", "update"): 1, ("Pear", "delete"): 1,
        (next(a.name for a in got if a.is_part_of.identifier != "enwiki"), "update"): 1})
    pear = next(a for a in got if a.name == "Pear" and a.event and a.event.type == "update")
    want = next(a for a in articles if a.name == "Pear")
    assert pear.identifier == want.identifier and pear.article_body == want.article_body
    dead = db.fetchall("SELECT reason FROM dead_letters ORDER BY pos")
    assert [r[0] for r in dead] == ["json", "schema", "unsupported"]
    assert metrics.registry.get_sample_value("feedserver_events_unresolved_total") == 1
    # Revisions are asked many per request, never one request per revision.
    asked = [len(r.params["revids"].split("|")) for r in api.revision_requests()
             if "revids" in r.params]
    assert max(asked) > 1
    await log.close()
    db.close()


async def test_recentchange_without_an_action_api_stops_instead_of_retrying(
        settings: Settings, tmp_path: Path, articles: list[Article]) -> None:
    """A configuration error is not an outage: retrying it for ever would hide it."""
    db = SQLiteDatabase(tmp_path / "feedserver.db")
    log = EmbeddedEventLog(db, poll_interval=0.05)
    await log.create_topic(INPUT, 1)
    await log.append(INPUT, [Outgoing(key=None, value=json.dumps(edit_of(articles[0])).encode())])
    consumer = EventConsumer.from_settings(settings, log, db)
    consumer.poll_timeout = 0.1
    with pytest.raises(InvalidParameter, match="CONTENT_SOURCE_URL"):
        await asyncio.wait_for(consumer.run(once=True, retry_delay=0.01), 60)
    # Nothing was committed: once configured, the consumer starts from that event.
    assert await log.committed(settings.consumer_group, INPUT) == {}
    await log.close()
    db.close()
