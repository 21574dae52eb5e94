"""One contract for every ``EventLog``: the embedded (SQLite) log (``tests/unit/storage``)
and Kafka on a real Tansu (``tests/integration/storage``). A test module joins by defining a
``log`` fixture and importing everything from here."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from feedserver.errors import NotFound
from feedserver.storage.eventlog import (
    EventLog,
    Outgoing,
    now_ms,
    partition_for,
    read,
    start_positions,
)


def _topic() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


async def test_append_partitions_by_key_and_reads_back(log: EventLog) -> None:
    topic = _topic()
    await log.create_topic(topic, 4)
    await log.create_topic(topic, 8)  # existing topic keeps its partitions
    assert await log.partitions(topic) == 4
    keys = [f"enwiki/0/{i}".encode() for i in range(20)]
    positions = await log.append(topic, [
        Outgoing(key=k, value=b"v" + k, headers=(("src", b"x"),)) for k in keys])
    for key, (part, _) in zip(keys, positions, strict=True):
        assert part == partition_for(key, 4)
    ends = await log.end_offsets(topic)
    assert sum(ends.values()) == 20 and set(ends) == {0, 1, 2, 3}
    start = {(topic, p): 0 for p in range(4)}
    got = [r async for r in read(log, start, follow=False, poll_timeout=2.0)]
    assert sorted(r.key for r in got if r.key) == sorted(keys)
    assert all(r.value == b"v" + (r.key or b"") and r.header("src") == b"x" for r in got)
    for p in range(4):  # dense offsets, in order, per partition
        offs = [r.offset for r in got if r.partition == p]
        assert offs == list(range(ends[p]))


async def test_explicit_partition_and_unknown_topic(log: EventLog) -> None:
    topic = _topic()
    await log.create_topic(topic, 2)
    assert await log.append(topic, [Outgoing(key=None, value=b"x", partition=1)]) == [(1, 0)]
    with pytest.raises(NotFound):
        await log.partitions(_topic())


async def test_offsets_for_times(log: EventLog) -> None:
    topic = _topic()
    await log.create_topic(topic, 1)
    base = now_ms() - 10_000
    await log.append(topic, [Outgoing(key=b"k", value=str(i).encode(), timestamp_ms=base + i * 1000)
                             for i in range(5)])
    assert (await log.offsets_for_times(topic, base + 2500)) == {0: 3}
    assert (await log.offsets_for_times(topic, base + 99_000)) == {0: 5}
    start = await start_positions(log, topic, since_ms=base + 1000)
    assert [r.value async for r in read(log, start, follow=False)] == [b"1", b"2", b"3", b"4"]
    tail = await start_positions(log, topic)
    assert tail == {(topic, 0): 5}
    assert [r async for r in read(log, tail, follow=False)] == []
    explicit = await start_positions(log, topic, offsets={0: 4})
    assert [r.value async for r in read(log, explicit, follow=False)] == [b"4"]


async def test_follow_wakes_on_append(log: EventLog) -> None:
    topic = _topic()
    await log.create_topic(topic, 1)
    reader = log.reader({(topic, 0): 0})
    try:
        assert await reader.poll(timeout=0.1) == []
        poll = asyncio.create_task(reader.poll(timeout=20.0))
        await asyncio.sleep(0.05)
        await log.append(topic, [Outgoing(key=b"k", value=b"late")])
        records = await asyncio.wait_for(poll, 30.0)
        assert [r.value for r in records] == [b"late"]
    finally:
        await reader.close()


async def test_catch_up_reader_reads_the_same_records(log: EventLog) -> None:
    # A catch-up reader may wait longer at the broker per empty fetch (cheaper for it); WHAT
    # it returns must not change: every record in offset order per partition, and a record
    # appended after it reached the end (its wait is longer, not endless).
    topic = _topic()
    await log.create_topic(topic, 2)
    await log.append(topic, [Outgoing(key=None, value=str(i).encode(), partition=i % 2)
                             for i in range(10)])
    reader = log.reader({(topic, 0): 1, (topic, 1): 0}, catch_up=True)
    try:
        got: list[tuple[int, int, bytes]] = []
        for _ in range(50):  # bounded: a few polls suffice
            got += [(r.partition, r.offset, r.value) for r in await reader.poll(timeout=1.0)]
            if len(got) >= 9:
                break
        assert sorted(got) == sorted((i % 2, i // 2, str(i).encode()) for i in range(1, 10))
        await log.append(topic, [Outgoing(key=None, value=b"late", partition=0)])
        late: list[bytes] = []
        for _ in range(20):
            late += [r.value for r in await reader.poll(timeout=1.0)]
            if late:
                break
        assert late == [b"late"]
    finally:
        await reader.close()


async def test_group_offsets(log: EventLog) -> None:
    topic, group = _topic(), f"g-{uuid.uuid4().hex[:8]}"
    await log.create_topic(topic, 3)
    assert await log.committed(group, topic) == {}
    await log.commit(group, {(topic, 0): 5, (topic, 2): 1})
    await log.commit(group, {(topic, 0): 7})
    assert await log.committed(group, topic) == {0: 7, 2: 1}
    assert await log.committed(f"other-{group}", topic) == {}


async def test_probe_answers(log: EventLog) -> None:
    await log.probe(10.0)
