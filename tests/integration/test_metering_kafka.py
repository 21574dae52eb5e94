"""Distributed usage path on a real Tansu broker: API-side recorder -> Kafka usage topic ->
``consume_usage`` -> ledger, exactly once by usage id, offsets committed after the DB."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from feedserver.metering.journal import Journal
from feedserver.metering.kafka import KafkaDestination, consume_usage
from feedserver.metering.ledger import Ledger
from feedserver.metering.writer import UsageRecorder
from feedserver.metrics import Metrics
from feedserver.storage.db import PostgresDatabase
from tests.unit.metering.conftest import FakePrincipal

pytestmark = pytest.mark.integration


async def test_usage_through_kafka_lands_once(kafka_broker: str, kafka_topic: str,
                                              tmp_path: Path, fresh_postgres_url: str) -> None:
    database = PostgresDatabase(fresh_postgres_url, max_size=2)
    ledger = Ledger(database)
    recorder = UsageRecorder(Journal(tmp_path / "j"), KafkaDestination(kafka_broker, kafka_topic),
                             flush_seconds=0.01)
    await recorder.start()
    p = FakePrincipal()
    for i in range(20):
        recorder.record(p, feed="chunks", project="enwiki", response_id=f"r{i}", bytes_sent=100)
    # a retry of request r0 (same X-Request-Id) and a poison message
    recorder.record(p, feed="chunks", project="enwiki", response_id="r0", bytes_sent=100)
    await recorder.flush()
    await recorder.stop()
    assert list((tmp_path / "j").iterdir()) == []  # acknowledged by the broker: released
    producer = AIOKafkaProducer(bootstrap_servers=kafka_broker)
    await producer.start()
    try:
        await producer.send_and_wait(kafka_topic, b"{not a usage record")
    finally:
        await producer.stop()

    metrics = Metrics()
    stats = await consume_usage(ledger, kafka_broker, kafka_topic, "usage-test",
                                idle_exit_seconds=2.0, metrics=metrics)
    assert (stats.messages, stats.invalid) == (43, 1)
    assert stats.inserted == 40  # 20 requests + 20 bytes records; the retry collapsed
    counted = {r: metrics.registry.get_sample_value("feedserver_usage_records_total",
                                                    {"result": r})
               for r in ("inserted", "duplicate", "invalid")}
    assert counted == {"inserted": 40, "duplicate": 2, "invalid": 1}
    row = database.fetchone("SELECT SUM(quantity) FROM usage_ledger WHERE meter = 'bytes'")
    assert row == (2000,)
    again = await consume_usage(ledger, kafka_broker, kafka_topic, "usage-test",
                                idle_exit_seconds=1.0)
    assert again.messages == 0  # offsets were committed after the ledger commit
    assert ledger.verify().ok
    database.close()
