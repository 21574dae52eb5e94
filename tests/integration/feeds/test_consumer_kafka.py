"""The consumer on a REAL Tansu broker: produce the real events, consume, kill the consumer
mid-way (cancel its task, and a killed subprocess), restart the broker, restart the consumer;
the article topic must hold each expected event exactly once and the state store be right."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

import msgspec
import pytest

from feedserver.config import Settings, load_settings
from feedserver.feeds.events.consumer import SOURCE_HEADER, EventConsumer
from feedserver.feeds.events.state import StateStore
from feedserver.models import Article
from feedserver.storage.db import SQLiteDatabase
from feedserver.storage.eventlog import LogRecord, read
from feedserver.storage.eventlog.kafka import KafkaEventLog
from tests.conftest import EVENTS, ROOT
from tests.fixtures.kafka import TansuBroker

pytestmark = pytest.mark.integration

REAL = EVENTS / "page_change" / "mediawiki.page_change.v1__wikidata-query-rdf.jsonl"
EXPECTED = 14  # 13 events, the move gives two articles


def _settings(tmp_path: Path, bootstrap: str, suffix: str) -> Settings:
    return load_settings(
        env={}, data_dir=str(tmp_path), kafka_bootstrap_servers=bootstrap,
        event_topics=[f"in-{suffix}"], article_topic=f"articles-{suffix}",
        dead_letter_topic=f"dlq-{suffix}", consumer_group=f"g-{suffix}", article_partitions=3,
    )


def _env(settings: Settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEEDSERVER_")}
    env.update({
        "FEEDSERVER_DATA_DIR": settings.data_dir,
        "FEEDSERVER_KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers or "",
        "FEEDSERVER_EVENT_TOPICS": ",".join(settings.event_topics),
        "FEEDSERVER_ARTICLE_TOPIC": settings.article_topic,
        "FEEDSERVER_DEAD_LETTER_TOPIC": settings.dead_letter_topic,
        "FEEDSERVER_CONSUMER_GROUP": settings.consumer_group,
        "FEEDSERVER_ARTICLE_PARTITIONS": str(settings.article_partitions),
    })
    return env


def _cli(settings: Settings, *args: str, timeout: float = 120) -> str:
    done = subprocess.run([sys.executable, "-m", "feedserver", "events", *args], cwd=ROOT,
                          env=_env(settings), capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr
    return done.stdout


async def _articles(log: KafkaEventLog, topic: str) -> list[LogRecord]:
    start = {(topic, p): 0 for p in await log.end_offsets(topic)}
    return [r async for r in read(log, start, follow=False, poll_timeout=2.0)]


def _assert_exactly_once(records: list[LogRecord]) -> None:
    sources = Counter(r.header(SOURCE_HEADER) for r in records)
    assert len(sources) == EXPECTED and set(sources.values()) == {1}, sources
    ids = {msgspec.json.decode(r.value, type=Article).event.identifier  # type: ignore[union-attr]
           for r in records}
    assert len(ids) == EXPECTED


def _assert_state(settings: Settings) -> None:
    db = SQLiteDatabase(Path(settings.data_dir) / "feedserver.db")
    try:
        state = StateStore(db)
        page = state.get_stored("testwikidatawiki", 0, 330275)
        assert page and not page.deleted and page.revision == 686140
        moved = state.get("commonswiki", 6, 49988679)
        assert moved and moved.name == "File:Jacobaea vulgaris - Jakobs-Kreuzkraut.jpg"
        assert len(db.fetchall("SELECT 1 FROM article_state")) == 7
    finally:
        db.close()


async def test_cancel_midway_restart_broker_and_resume(restartable_kafka: TansuBroker,
                                                       tmp_path: Path) -> None:
    settings = _settings(tmp_path, restartable_kafka.bootstrap, "a")
    out = await asyncio.to_thread(_cli, settings, "load", str(REAL), "--partitions", "2")
    assert "appended 13 events" in out

    db = SQLiteDatabase(tmp_path / "feedserver.db")
    log = KafkaEventLog(restartable_kafka.bootstrap)
    consumer = EventConsumer.from_settings(settings, log, db, batch_size=3)
    consumer.poll_timeout = 0.5
    # Kill the consumer mid-way: cancel its task once some, not all, events are done.
    task = asyncio.create_task(consumer.run())
    for _ in range(600):
        if 0 < consumer.stats.totals.consumed < 13 or task.done():
            break
        await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert consumer.stats.totals.consumed < 13  # really stopped mid-way
    await log.close()

    # Restart the broker (its S3 storage keeps topics, records and group offsets).
    await asyncio.to_thread(restartable_kafka.stop)
    await asyncio.to_thread(restartable_kafka.start)

    # Resume in a subprocess, and kill that one mid-way too (SIGKILL, no cleanup).
    proc = subprocess.Popen(
        [sys.executable, "-m", "feedserver", "events", "consume", "--batch-size", "2"],
        cwd=ROOT, env=_env(settings), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        await asyncio.sleep(3.0)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)

    # Finally run to completion.
    out = await asyncio.to_thread(_cli, settings, "consume", "--once")
    assert "consumed" in out
    log = KafkaEventLog(restartable_kafka.bootstrap)
    try:
        records = await _articles(log, settings.article_topic)
        _assert_exactly_once(records)
        committed = await log.committed(settings.consumer_group, settings.event_topics[0])
        assert committed == await log.end_offsets(settings.event_topics[0])
    finally:
        await log.close()
    db.close()
    _assert_state(settings)


async def test_dead_letters_go_to_the_topic(kafka_broker: str, tmp_path: Path) -> None:
    settings = _settings(tmp_path, kafka_broker, "b")
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(REAL.read_bytes().splitlines()[0] + b"\n{broken\n")
    await asyncio.to_thread(_cli, settings, "load", str(bad))
    out = await asyncio.to_thread(_cli, settings, "consume", "--once")
    assert "1 dead-lettered" in out
    log = KafkaEventLog(kafka_broker)
    try:
        start = {(settings.dead_letter_topic, 0): 0}
        dead = [r async for r in read(log, start, follow=False)]
        assert [r.value for r in dead] == [b"{broken"]
        assert (dead[0].header("feedserver-reason") or b"").startswith(b"malformed event JSON")
    finally:
        await log.close()
