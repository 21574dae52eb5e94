"""Two statically assigned members on a REAL Tansu broker: real and synthetic events on a
4-partition input topic, both members consuming at once, one killed mid-way and restarted
(through the CLI); the article topic holds every expected event identifier exactly once."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections import Counter
from pathlib import Path

import msgspec
import pytest

from feedserver.feeds.events.consumer import SOURCE_HEADER, EventConsumer
from feedserver.ingest.events import changes_from_json
from feedserver.models import Article
from feedserver.storage.db import SQLiteDatabase
from feedserver.storage.eventlog import Outgoing
from feedserver.storage.eventlog.kafka import KafkaEventLog
from tests.conftest import ROOT
from tests.integration.feeds.test_consumer_kafka import _articles, _env, _settings
from tests.unit.feeds.events.test_consumer_members import page_key, real_events, synthetic_events

pytestmark = pytest.mark.integration


async def test_two_members_kill_one_midway(kafka_broker: str, tmp_path: Path) -> None:
    settings = _settings(tmp_path, kafka_broker, "members")
    topic = settings.event_topics[0]
    events = [*real_events(), *synthetic_events(16)]
    expected = {c.article.event.identifier  # type: ignore[union-attr]
                for line in events for c in changes_from_json(line)}
    log = KafkaEventLog(kafka_broker)
    await log.create_topic(topic, 4)
    await log.append(topic, [Outgoing(key=page_key(v), value=v) for v in events])
    ends = await log.end_offsets(topic)
    owned0 = ends[0] + ends[2]
    assert owned0 > 2 and ends[1] + ends[3] > 0

    # Member 1: a CLI process of its own, running concurrently until caught up.
    member1 = subprocess.Popen(
        [sys.executable, "-m", "feedserver", "events", "consume", "--once", "--batch-size", "2",
         "--members", "2", "--member", "1"],
        cwd=ROOT, env=_env(settings), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    db = SQLiteDatabase(tmp_path / "feedserver.db")
    try:
        # Member 0 in this process, killed (task cancelled) once some of its events are done.
        consumer = EventConsumer.from_settings(settings, log, db, batch_size=2,
                                               member=0, members=2)
        consumer.poll_timeout = 0.5
        task = asyncio.create_task(consumer.run())
        for _ in range(600):
            if 0 < consumer.stats.totals.consumed < owned0 or task.done():
                break
            await asyncio.sleep(0.02)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert consumer.stats.totals.consumed < owned0  # really stopped mid-way
        # Restarted, as a CLI process, while member 1 may still be running.
        restarted = await asyncio.to_thread(
            subprocess.run,
            [sys.executable, "-m", "feedserver", "events", "consume", "--once",
             "--members", "2", "--member", "0"],
            cwd=ROOT, env=_env(settings), capture_output=True, text=True, timeout=60)
        assert restarted.returncode == 0, restarted.stderr
        out, err = await asyncio.to_thread(member1.communicate, timeout=60)
        assert member1.returncode == 0, err
        assert f"consumed {ends[1] + ends[3]} events" in out  # all of its own, nothing else
    finally:
        if member1.poll() is None:
            member1.kill()
            member1.wait(timeout=30)
        db.close()

    try:
        records = await _articles(log, settings.article_topic)
        sources = Counter(r.header(SOURCE_HEADER) for r in records)
        assert set(sources.values()) == {1}, sources.most_common(3)
        articles = [msgspec.json.decode(r.value, type=Article) for r in records]
        ids = Counter(a.event.identifier for a in articles if a.event)
        assert set(ids) == expected and set(ids.values()) == {1}
        parts = {int((h or b"").decode().split(":")[1]) for h in sources}
        assert parts == {0, 1, 2, 3}
        assert await log.committed(settings.consumer_group, topic) == ends
    finally:
        await log.close()
