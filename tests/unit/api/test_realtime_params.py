"""``/v2/articles`` parameters: WME's validation rules and start positions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest

from feedserver.api.query import Filter
from feedserver.api.realtime_params import (
    StreamBody,
    body_from_params,
    check,
    parse_last_event_id,
    start_positions,
)
from feedserver.errors import BadRequest, InvalidParameter
from feedserver.storage.db import SQLiteDatabase
from feedserver.storage.eventlog import EmbeddedEventLog, Outgoing

NOW = datetime(2025, 6, 1, 12, tzinfo=UTC)


def test_parts_and_since_conflict() -> None:
    with pytest.raises(InvalidParameter, match="not since"):
        check(StreamBody(parts=[0], since=NOW - timedelta(hours=1)), now=NOW)


def test_partition_with_offset_and_time_conflict() -> None:
    with pytest.raises(InvalidParameter, match="both an offset and a time"):
        check(StreamBody(offsets={"3": 10}, since_per_partition={"3": NOW}), now=NOW)


@pytest.mark.parametrize("body", [
    StreamBody(parts=[10]), StreamBody(parts=[-1]), StreamBody(parts=[]),
    StreamBody(offsets={"x": 1}), StreamBody(offsets={"1": -5}),
    StreamBody(since=NOW + timedelta(minutes=1)),
    StreamBody(since_per_partition={"0": NOW + timedelta(seconds=5)}),
])
def test_invalid_parameters_are_422(body: StreamBody) -> None:
    with pytest.raises(InvalidParameter):
        check(body, now=NOW)


@pytest.mark.parametrize("body", [
    StreamBody(fields=["nope"]), StreamBody(fields=["version"]),  # an object needs "version.*"
    StreamBody(fields=["name.*"]), StreamBody(filters=[Filter(field="nope", value=1)]),
    StreamBody(filters=[Filter(field="event", value=1)]),
])
def test_unknown_or_object_paths_are_422(body: StreamBody) -> None:
    """WME checks fields and filters against the Article schema; a typo must not silently
    stream ``{}`` for every event."""
    with pytest.raises(InvalidParameter):
        check(body, now=NOW)


def test_body_keys_wme_ignores() -> None:
    """The SDK's Request sends ``limit`` to the stream too; WME ignores it, so do we."""
    body = msgspec.json.decode(b'{"limit": 3, "parts": [0], "fields": ["name", "version.*"]}',
                               type=StreamBody)
    params = check(body, now=NOW)
    assert params.parts == [0] and params.query.fields == ["name", "version.*"]


def test_get_parameters() -> None:
    body = body_from_params({"parts": ["0,2", "5"], "offsets": ['{"1": 4}'],
                             "since_per_partition": ['{"2": "2025-06-01T10:00:00Z"}'],
                             "fields": ["name,event.*"]})
    params = check(body, now=NOW)
    assert params.parts == [0, 2, 5]
    assert params.offsets == {1: 4}
    assert params.since_per_partition == {2: datetime(2025, 6, 1, 10, tzinfo=UTC)}
    assert params.query.fields == ["name", "event.*"]
    with pytest.raises(BadRequest):
        body_from_params({"offsets": ["{nope"]})
    with pytest.raises(InvalidParameter):
        body_from_params({"since": ["yesterday"]})


def test_last_event_id() -> None:
    assert parse_last_event_id("0:12, 3:7") == {0: 12, 3: 7}
    assert parse_last_event_id(None) == {}
    for bad in ("0-12", "a:1", "1:", "1:-2"):
        with pytest.raises(InvalidParameter):
            parse_last_event_id(bad)


async def test_start_positions(tmp_path: Path) -> None:
    log = EmbeddedEventLog(SQLiteDatabase(tmp_path / "log.db"))
    await log.create_topic("t", 10)
    base = int(NOW.timestamp() * 1000)
    await log.append("t", [Outgoing(key=None, value=b"{}", partition=p, timestamp_ms=base + i)
                           for p in range(10) for i in range(0, 5000, 1000)])
    tail = await log.end_offsets("t")
    assert tail == dict.fromkeys(range(10), 5)
    # parts 1 and 2 of 10 partitions are partitions 1 and 2; keys of others are dropped
    params = check(StreamBody(parts=[1, 2], offsets={"1": 3, "7": 0},
                              since_per_partition={"2": NOW + timedelta(seconds=2)}),
                   now=NOW + timedelta(hours=1))
    assert await start_positions(params, tail, log, "t") == {1: 3, 2: 2}
    params = check(StreamBody(since=NOW + timedelta(seconds=3), offsets={"0": 1}),
                   "4:0", now=NOW + timedelta(hours=1))
    positions = await start_positions(params, tail, log, "t")
    assert positions[0] == 1 and positions[4] == 0 and positions[9] == 3
    assert await start_positions(check(StreamBody()), tail, log, "t") == tail
    await log.close()
