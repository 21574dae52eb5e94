"""Usage over the event log: API-side recorder -> usage topic -> ``consume_usage`` -> ledger,
exactly once by usage id, offsets committed after the ledger. Here on the embedded log and
SQLite; ``tests/integration/metering`` runs the same on Kafka (Tansu) and PostgreSQL."""

from __future__ import annotations

import asyncio
from pathlib import Path

from feedserver.metering.journal import Journal
from feedserver.metering.ledger import Ledger
from feedserver.metering.usage_topic import EventLogDestination, consume_usage
from feedserver.metering.writer import UsageRecorder
from feedserver.metrics import Metrics
from feedserver.storage.db import Database, SQLiteDatabase
from feedserver.storage.eventlog import EmbeddedEventLog, EventLog, Outgoing
from tests.unit.metering.conftest import FakePrincipal


async def usage_lands_once(events: EventLog, topic: str, db: Database, tmp_path: Path) -> None:
    ledger = Ledger(db)
    await events.create_topic(topic, 3)  # the deployment's init job creates it
    recorder = UsageRecorder(Journal(tmp_path / "j"), EventLogDestination(events, topic),
                             flush_seconds=0.01)
    await recorder.start()
    p = FakePrincipal()
    for i in range(20):
        recorder.record(p, feed="chunks", project="enwiki", response_id=f"r{i}", bytes_sent=100)
    # a retry of request r0 (same X-Request-Id) and a poison message
    recorder.record(p, feed="chunks", project="enwiki", response_id="r0", bytes_sent=100)
    await recorder.flush()
    await recorder.stop()
    assert list((tmp_path / "j").iterdir()) == []  # acknowledged by the log: released
    await events.append(topic, [Outgoing(key=None, value=b"{not a usage record")])

    metrics = Metrics()
    stats = await consume_usage(ledger, events, topic, "usage-test", idle_exit_seconds=2.0,
                                metrics=metrics)
    assert (stats.messages, stats.invalid) == (43, 1)
    assert stats.inserted == 40  # 20 requests + 20 bytes records; the retry collapsed
    counted = {r: metrics.registry.get_sample_value("feedserver_usage_records_total",
                                                    {"result": r})
               for r in ("inserted", "duplicate", "invalid")}
    assert counted == {"inserted": 40, "duplicate": 2, "invalid": 1}
    row = db.fetchone("SELECT SUM(quantity) FROM usage_ledger WHERE meter = 'bytes'")
    assert row == (2000,)
    again = await consume_usage(ledger, events, topic, "usage-test", idle_exit_seconds=1.0)
    assert again.messages == 0  # offsets were committed after the ledger commit
    assert ledger.verify().ok


async def test_usage_through_the_embedded_log_lands_once(tmp_path: Path) -> None:
    db = SQLiteDatabase(tmp_path / "feedserver.db")
    events = EmbeddedEventLog(db, poll_interval=0.05)
    try:
        await usage_lands_once(events, "usage", db, tmp_path)
    finally:
        await events.close()
        db.close()


async def test_consumer_waits_for_the_topic(tmp_path: Path) -> None:
    # Started before the topic exists (before the init job ran): idle, not an error.
    db = SQLiteDatabase(tmp_path / "feedserver.db")
    events = EmbeddedEventLog(db, poll_interval=0.05)
    try:
        stats = await asyncio.wait_for(consume_usage(
            Ledger(db), events, "not-yet", "g", idle_exit_seconds=0.3, poll_timeout=0.05), 10)
        assert stats.messages == 0
    finally:
        await events.close()
        db.close()
