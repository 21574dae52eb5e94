"""The ``EventLog`` contract (``tests/contracts/eventlog.py``) on Kafka: a real Tansu broker."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from feedserver.storage.eventlog import EventLog
from feedserver.storage.eventlog.kafka import KafkaEventLog
from tests.contracts.eventlog import *  # noqa: F403 - the contract's tests run here

pytestmark = pytest.mark.integration


@pytest.fixture
async def log(kafka_broker: str) -> AsyncIterator[EventLog]:
    event_log = KafkaEventLog(kafka_broker)
    try:
        yield event_log
    finally:
        await event_log.close()
