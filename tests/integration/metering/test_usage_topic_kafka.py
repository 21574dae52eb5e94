"""Usage over the event log on a real Tansu broker into a real PostgreSQL ledger: the same
exactly-once check as ``tests/unit/metering/test_usage_topic.py``."""

from __future__ import annotations

from pathlib import Path

import pytest

from feedserver.storage.db.postgres import PostgresDatabase
from feedserver.storage.eventlog.kafka import KafkaEventLog
from tests.unit.metering.test_usage_topic import usage_lands_once

pytestmark = pytest.mark.integration


async def test_usage_through_kafka_lands_once(kafka_broker: str, kafka_topic: str,
                                              tmp_path: Path, fresh_postgres_url: str) -> None:
    database = PostgresDatabase(fresh_postgres_url, max_size=2)
    events = KafkaEventLog(kafka_broker)
    try:
        await usage_lands_once(events, kafka_topic, database, tmp_path)
    finally:
        await events.close()
        database.close()
