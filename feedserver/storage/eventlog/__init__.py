"""Event log: the ``EventLog`` protocol (``base``), topics in the database (``embedded``) and
Kafka (``kafka``, the only module that imports aiokafka), chosen by ``open_event_log``.

The protocol, its records, the reading helpers and the embedded log are re-exported here, so
callers import ``feedserver.storage.eventlog`` and never an implementation module.
"""

from __future__ import annotations

from feedserver.config import Settings
from feedserver.storage.db import Database
from feedserver.storage.eventlog.base import (
    EventLog,
    Headers,
    LogReader,
    LogRecord,
    Outgoing,
    TopicPartition,
    now_ms,
)
from feedserver.storage.eventlog.embedded import EmbeddedEventLog
from feedserver.storage.eventlog.partitioner import murmur2, partition_for
from feedserver.storage.eventlog.reading import read, start_positions

__all__ = ["EmbeddedEventLog", "EventLog", "Headers", "LogReader", "LogRecord", "Outgoing",
           "TopicPartition", "murmur2", "now_ms", "open_event_log", "partition_for", "read",
           "start_positions"]


def open_event_log(settings: Settings, db: Database) -> EventLog:
    """Kafka when ``kafka_bootstrap_servers`` is set, else the embedded log in ``db``.
    Opening connects nothing: Kafka clients start on first use."""
    if settings.kafka_bootstrap_servers:
        # Imported here so embedded deployments never load aiokafka.
        from feedserver.storage.eventlog.kafka import KafkaEventLog

        return KafkaEventLog(settings.kafka_bootstrap_servers,
                             fetch_wait_ms=settings.kafka_fetch_wait_ms,
                             catch_up_fetch_wait_ms=settings.kafka_catch_up_fetch_wait_ms)
    return EmbeddedEventLog(db, poll_interval=settings.eventlog_poll_seconds)
