"""The EventStreams follower into a REAL Kafka (Tansu): the position headers and the read-back at
start work on the broker too. Dropped connections, a crash right after an append (before the
position write), a restart: every real event stored exactly once, in order."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest

from feedserver.sources.follow import POSITION_HEADER, follow, stored_position
from feedserver.storage.db import SQLiteDatabase
from feedserver.storage.eventlog import LogRecord, Outgoing, read
from feedserver.storage.eventlog.kafka import KafkaEventLog
from tests.conftest import EVENTS
from tests.fixtures.eventstreams import (
    PAGE_CHANGE,
    RECENTCHANGE,
    distinct,
    real_frames,
    serve_eventstreams,
)

pytestmark = pytest.mark.integration

UA = "feedserver-tests/1 (ops@example.org)"
TIMEOUT = 120.0


class Killed(Exception):
    pass


class CrashingKafka(KafkaEventLog):
    """Stores the ``crash_at``-th append to the input topic, then "dies" before the position
    write that would follow it."""

    def __init__(self, bootstrap: str, topic: str, crash_at: int) -> None:
        super().__init__(bootstrap)
        self.topic = topic
        self.crash_at = crash_at

    async def append(self, topic: str, records: Sequence[Outgoing]) -> list[tuple[int, int]]:
        out = await super().append(topic, records)
        if topic == self.topic:
            self.crash_at -= 1
            if self.crash_at == 0:
                raise Killed
        return out


async def records(log: KafkaEventLog, topic: str) -> list[LogRecord]:
    ends = await log.end_offsets(topic)
    return [r async for r in read(log, {(topic, p): 0 for p in ends}, follow=False)]


async def test_follow_into_kafka_exactly_once(kafka_broker: str, kafka_topic: str,
                                              tmp_path: Path) -> None:
    frames = real_frames(EVENTS, 700)
    want = distinct(frames)
    db = SQLiteDatabase(tmp_path / "positions.db")
    crashing = CrashingKafka(kafka_broker, kafka_topic, crash_at=4)
    log = KafkaEventLog(kafka_broker)
    common = dict(url="", streams=[RECENTCHANGE, PAGE_CHANGE], topic=kafka_topic,
                  user_agent=UA, batch_size=40, batch_seconds=0.05, backoff=0.05)
    try:
        with serve_eventstreams(frames, drop_every=90) as server:
            common["url"] = server.url
            with pytest.raises(Killed):
                await asyncio.wait_for(follow(crashing, db, **common), TIMEOUT)  # type: ignore[arg-type]
            stored = await records(log, kafka_topic)
            row = db.fetchone("SELECT topic_end FROM eventstreams_positions")
            assert row is not None and row[0] < len(stored)  # the position write was lost
            header = stored[-1].header(POSITION_HEADER)
            assert header is not None
            assert await stored_position(log, db, kafka_topic, kafka_topic) == header.decode()
            await asyncio.wait_for(follow(log, db, max_events=len(want) - len(stored),
                                          **common), TIMEOUT)  # type: ignore[arg-type]
        assert [r.value.decode() for r in await records(log, kafka_topic)] == want
    finally:
        await crashing.close()
        await log.close()
        db.close()
