"""The ``EventLog`` contract (``tests/contracts/eventlog.py``) on the embedded log, and the
partitioner both logs share, checked against aiokafka's own."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiokafka.partitioner import murmur2 as kafka_murmur2

from feedserver.storage.db import SQLiteDatabase
from feedserver.storage.eventlog import EmbeddedEventLog, EventLog, murmur2
from tests.contracts.eventlog import *  # noqa: F403 - the contract's tests run here


@pytest.fixture
async def log(tmp_path: Path) -> AsyncIterator[EventLog]:
    db = SQLiteDatabase(tmp_path / "log.db")
    event_log = EmbeddedEventLog(db, poll_interval=0.05)
    try:
        yield event_log
    finally:
        await event_log.close()
        db.close()


@pytest.mark.parametrize("data", [b"", b"a", b"ab", b"abc", b"abcd", b"enwiki/0/12345",
                                  bytes(range(256)), "ünïcode/14/9".encode()])
def test_murmur2_matches_kafka(data: bytes) -> None:
    expected = kafka_murmur2(data)
    assert murmur2(data) & 0xFFFFFFFF == expected & 0xFFFFFFFF
