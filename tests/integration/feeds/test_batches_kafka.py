"""Hourly batches built from a REAL Kafka broker (Tansu): ``offsets_for_times`` and the
readers give the same hour as the embedded log (records at chosen timestamps, 3 partitions,
a record of the next hour excluded)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import msgspec

from feedserver.config import Settings
from feedserver.feeds.batches import hours
from feedserver.feeds.batches.build import build_hour
from feedserver.feeds.batches.store import read_batch
from feedserver.storage.blobs import FilesystemBlobStore
from feedserver.storage.eventlog import Outgoing
from feedserver.storage.eventlog.kafka import KafkaEventLog
from tests.unit.api.conftest import make_articles

H = datetime(2026, 3, 1, 10, tzinfo=UTC)


async def test_build_hour_from_kafka(kafka_broker: str, kafka_topic: str,
                                     tmp_path: Path) -> None:
    settings = Settings(data_dir=str(tmp_path), article_topic=kafka_topic)
    blobs = FilesystemBlobStore(tmp_path / "blobs")
    articles = make_articles("enwiki", "en", 0, 20)
    log = KafkaEventLog(kafka_broker)
    try:
        await log.create_topic(kafka_topic, 3)
        records = [Outgoing(key=f"enwiki/0/{a.identifier}".encode(),
                            value=msgspec.json.encode(a),
                            timestamp_ms=hours.start_ms(H) + a.identifier * 1000)
                   for a in articles]
        # Page 1 again, in the next hour: not part of hour 10.
        records.append(Outgoing(key=b"enwiki/0/1", value=b'{"next": "hour"}',
                                timestamp_ms=hours.end_ms(H) + 10))
        await log.append(kafka_topic, records)
        index = await build_hour(log, blobs, settings, H,
                                 clock=lambda: hours.end_ms(H) + hours.DEFAULT_GRACE_MS)
        assert [(b.identifier, b.article_count) for b in index.batches] == [
            ("enwiki_namespace_0", 20)]
    finally:
        await log.close()
    m = read_batch(blobs, H, "enwiki_namespace_0")
    assert m.date_modified == datetime.fromtimestamp(
        (hours.start_ms(H) + 20_000) / 1000, tz=UTC)
