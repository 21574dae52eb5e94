"""The realtime fan-out hub on the embedded event log: tail, catch-up join without loss or
duplicates, laggards served from the shared ring (never from a reader of their own), slow
subscribers cut with a resumable position, shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import msgspec
import pytest

from feedserver.feeds.realtime.hub import (
    MAX_LINGER_SECONDS,
    WAKEUPS_PER_SECOND,
    Hub,
    Subscription,
    SubscriptionClosed,
    partitions_of_parts,
)
from feedserver.feeds.realtime.items import StreamItem, to_item
from feedserver.storage.db import SQLiteDatabase
from feedserver.storage.eventlog import (
    EmbeddedEventLog,
    LogReader,
    LogRecord,
    Outgoing,
    TopicPartition,
)

TOPIC = "articles"
PARTS = 4


def article(i: int) -> bytes:
    return msgspec.json.encode({
        "name": f"Page {i}", "identifier": i, "namespace": {"identifier": 0},
        "is_part_of": {"identifier": "enwiki"},
        "event": {"identifier": f"ev-{i}", "type": "update"},
    })


@pytest.fixture
async def log(tmp_path: Path) -> AsyncIterator[EmbeddedEventLog]:
    event_log = EmbeddedEventLog(SQLiteDatabase(tmp_path / "log.db"), poll_interval=0.02)
    await event_log.create_topic(TOPIC, PARTS)
    yield event_log
    await event_log.close()


async def produce(log: EmbeddedEventLog, start: int, count: int) -> None:
    await log.append(TOPIC, [Outgoing(key=f"enwiki/0/{i}".encode(), value=article(i))
                             for i in range(start, start + count)])


async def make_hub(log: EmbeddedEventLog, max_lag: int = 1000, batch: int = 50) -> Hub:
    hub = Hub(log, TOPIC, partitions=PARTS, max_lag=max_lag, poll_timeout=0.05, batch=batch)
    await hub.start()
    await hub.ready(5)
    return hub


async def collect(sub: Subscription, count: int, timeout: float = 10.0) -> list[StreamItem]:
    got: list[StreamItem] = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while len(got) < count and loop.time() < deadline:
        batch = await sub.next_batch(0.2)
        if batch is not None:
            got.extend(batch)
    return got


def ids(items: list[StreamItem]) -> list[int]:
    return [int(i.data["identifier"]) for i in items if i.data is not None]


def test_parts_map_like_wme() -> None:
    assert partitions_of_parts([0], 50) == [0, 1, 2, 3, 4]
    assert partitions_of_parts([9], 50) == [45, 46, 47, 48, 49]
    assert partitions_of_parts([3, 7], 10) == [3, 7]
    assert partitions_of_parts(range(10), 3) == [0, 1, 2]
    assert partitions_of_parts([1], 3) == []


def test_item_carries_partition_and_offset() -> None:
    item = to_item(LogRecord(topic=TOPIC, partition=2, offset=7, timestamp_ms=1, key=None,
                             value=article(1)))
    decoded = msgspec.json.decode(item.raw)
    assert decoded["event"]["partition"] == 2 and decoded["event"]["offset"] == 7
    assert (item.project, item.namespace) == ("enwiki", 0)
    bad = to_item(LogRecord(topic=TOPIC, partition=0, offset=1, timestamp_ms=1, key=None,
                            value=b"{not json"))
    assert bad.data is None


async def test_linger_grows_with_subscribers_within_bounds(log: EmbeddedEventLog) -> None:
    # The reader's wait after a tick bounds the wake-ups (one write each) per second: linger
    # with few subscribers, longer with many, never longer than MAX_LINGER_SECONDS (the
    # latency it may add). No hub task needed: it is a function of the subscriber count.
    hub = Hub(log, TOPIC, partitions=PARTS, linger=0.005)
    hub.next = {p: 0 for p in range(PARTS)}
    assert hub.pause == 0.005
    subs = [hub.subscribe(hub.tail()) for _ in range(WAKEUPS_PER_SECOND // 50)]
    assert hub.pause == pytest.approx(len(subs) / WAKEUPS_PER_SECOND) and hub.pause > 0.005
    subs += [hub.subscribe(hub.tail()) for _ in range(WAKEUPS_PER_SECOND)]
    assert hub.pause == MAX_LINGER_SECONDS
    for sub in subs:
        hub.detach(sub)
    assert hub.pause == 0.005


async def test_tail_subscriber_gets_only_new_records(log: EmbeddedEventLog) -> None:
    await produce(log, 0, 10)
    hub = await make_hub(log)
    try:
        sub = hub.subscribe(hub.tail())
        await produce(log, 10, 20)
        got = await collect(sub, 20)
        assert sorted(ids(got)) == list(range(10, 30))
        assert sum(sub.positions.values()) == 30
    finally:
        await hub.close()


async def test_catch_up_joins_live_without_loss_or_duplicates(log: EmbeddedEventLog) -> None:
    await produce(log, 0, 300)
    hub = await make_hub(log, max_lag=40)
    try:
        sub = hub.subscribe(dict.fromkeys(range(PARTS), 0))

        async def writer() -> None:
            for n in range(300, 600, 30):
                await produce(log, n, 30)
                await asyncio.sleep(0.01)

        task = asyncio.create_task(writer())
        got = await collect(sub, 600, timeout=30)
        await task
        positions = [(i.partition, i.offset) for i in got]
        assert len(positions) == len(set(positions)) == 600
        assert sorted(ids(got)) == list(range(600))
        for p in range(PARTS):  # offset order per partition
            offs = [i.offset for i in got if i.partition == p]
            assert offs == sorted(offs) == list(range(len(offs)))
    finally:
        await hub.close()


class RecordingLog(EmbeddedEventLog):
    """The embedded log, noting how each reader was asked for."""

    def __init__(self, path: Path) -> None:
        super().__init__(SQLiteDatabase(path), poll_interval=0.02)
        self.kinds: list[bool] = []

    def reader(self, positions: Mapping[TopicPartition, int], *,
               catch_up: bool = False) -> LogReader:
        self.kinds.append(catch_up)
        return super().reader(positions, catch_up=catch_up)


async def test_only_the_catch_up_reader_is_a_catch_up_read(tmp_path: Path) -> None:
    # The live reader must keep the short broker wait (it bounds live latency); a subscriber
    # reading a backlog asks for a catch-up reader, which a broker may hold longer per empty
    # fetch (issue 16: with the live wait, a slow catch-up re-fetched drained partitions
    # every 20 ms and cost the broker more than a plain consumer).
    event_log = RecordingLog(tmp_path / "log.db")
    await event_log.create_topic(TOPIC, PARTS)
    await produce(event_log, 0, 100)
    hub = await make_hub(event_log)
    try:
        sub = hub.subscribe(dict.fromkeys(range(PARTS), 0))
        assert len(await collect(sub, 100)) == 100
        assert event_log.kinds[0] is False  # the hub's one live reader
        assert event_log.kinds[1:] == [True]  # the subscriber's catch-up reader
    finally:
        await hub.close()
        await event_log.close()


async def test_slow_subscriber_is_cut_and_resumes(log: EmbeddedEventLog) -> None:
    hub = await make_hub(log, max_lag=30, batch=5)
    try:
        fast = hub.subscribe(hub.tail())
        slow = hub.subscribe(hub.tail())
        first = (await asyncio.gather(collect(fast, 1, 0.5), produce(log, 0, 5)))[0]
        assert first
        slow_got = await collect(slow, 2)  # reads a little, then stops reading
        await produce(log, 5, 100)
        fast_got = first + await collect(fast, 105 - len(first))
        assert sorted(ids(fast_got)) == list(range(105))
        with pytest.raises(SubscriptionClosed) as cut:
            await collect(slow, 1000, timeout=5)
        assert cut.value.reason == "slow"
        assert hub.cut == 1 and hub.subscribers == 1
        resume = hub.subscribe(cut.value.positions)
        rest = await collect(resume, 105 - len(slow_got))
        assert sorted(ids(slow_got) + ids(rest)) == list(range(105))
    finally:
        await hub.close()


async def test_a_laggard_reads_the_ring_not_the_log(log: EmbeddedEventLog) -> None:
    hub = await make_hub(log, max_lag=1000)
    try:
        subs = [hub.subscribe(hub.tail()) for _ in range(5)]
        for n in range(0, 200, 20):  # bursts while nobody reads
            await produce(log, n, 20)
            await asyncio.sleep(0.02)
        for sub in subs:
            got = await collect(sub, 200)
            assert sorted(ids(got)) == list(range(200))
        # Behind by up to 200 records each, none opened a reader of its own or was cut.
        assert hub.readers == 0 and hub.cut == 0
        await produce(log, 200, 3)  # live again
        assert sorted(ids(await collect(subs[0], 3))) == [200, 201, 202]
    finally:
        await hub.close()


async def test_join_from_inside_the_ring_is_exact(log: EmbeddedEventLog) -> None:
    hub = await make_hub(log, max_lag=1000, batch=7)
    try:
        first = hub.subscribe(hub.tail())
        await produce(log, 0, 100)
        got = await collect(first, 100)
        # Resume from positions in the middle of ticks (every 13th record delivered):
        # the ring serves the rest, skipping what was delivered, then whole ticks.
        for cut_at in range(0, 100, 13):
            positions = dict.fromkeys(range(PARTS), 0)
            for item in got[:cut_at]:
                positions[item.partition] = item.offset + 1
            resumed = hub.subscribe(positions)
            assert not resumed.catching_up
            rest = await collect(resumed, 100 - cut_at)
            assert sorted(ids(got[:cut_at]) + ids(rest)) == list(range(100))
        assert hub.readers == 0
    finally:
        await hub.close()


async def test_close_ends_streams_with_positions(log: EmbeddedEventLog) -> None:
    hub = await make_hub(log)
    sub = hub.subscribe(hub.tail())
    await produce(log, 0, 3)
    assert len(await collect(sub, 3)) == 3
    await hub.close()
    with pytest.raises(SubscriptionClosed) as closed:
        await sub.next_batch(1)
    assert closed.value.reason == "shutdown"
    assert sum(closed.value.positions.values()) == 3
