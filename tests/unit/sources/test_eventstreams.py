"""The EventStreams follower against a real loopback SSE server replaying the real events, into
a real embedded event log: exactly once across dropped connections, filters, bad frames,
throttling, error pages and silent servers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import pytest

from feedserver.errors import InvalidParameter, UpstreamError
from feedserver.metrics import Metrics
from feedserver.sources.eventstreams import EventStreamsClient
from feedserver.sources.follow import POSITION_HEADER, follow, stored_position
from feedserver.storage.db import SQLiteDatabase
from feedserver.storage.eventlog import EmbeddedEventLog, LogRecord, Outgoing, read
from tests.conftest import EVENTS
from tests.fixtures.eventstreams import (
    PAGE_CHANGE,
    RECENTCHANGE,
    StreamFailure,
    distinct,
    real_frames,
    serve_eventstreams,
)

UA = "feedserver-tests/1 (https://example.org; ops@example.org)"
TOPIC = "input"
STREAMS = [RECENTCHANGE, PAGE_CHANGE]
TIMEOUT = 60.0


class Log:
    def __init__(self, path: Path) -> None:
        self.db = SQLiteDatabase(path)
        self.log = EmbeddedEventLog(self.db)

    async def records(self, topic: str = TOPIC) -> list[LogRecord]:
        ends = await self.log.end_offsets(topic)
        return [r async for r in read(self.log, {(topic, p): 0 for p in ends}, follow=False)]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Log]:
    store = Log(tmp_path / "follow.db")
    try:
        yield store
    finally:
        await store.log.close()
        store.db.close()


async def run_follow(store: Log, url: str, count: int, **kw: object) -> object:
    return await asyncio.wait_for(follow(
        store.log, store.db, url=url, streams=STREAMS, topic=TOPIC, user_agent=UA,
        batch_seconds=0.05, backoff=0.05, max_events=count, **kw), TIMEOUT)  # type: ignore[arg-type]


async def test_exactly_once_across_dropped_connections(store: Log) -> None:
    frames = real_frames(EVENTS, 1200)
    want = distinct(frames)
    metrics = Metrics()
    with serve_eventstreams(frames, drop_every=70, retry_ms=10) as server:
        stats = await run_follow(store, server.url, len(want), metrics=metrics,
                                 dead_letter_topic="dead")
    records = await store.records()
    assert [r.value.decode() for r in records] == want
    # Every connection after the first resumed with the last id it had received.
    assert len(server.requests) >= 1200 // 70
    assert all(r.last_event_id for r in server.requests[1:])
    assert {r.user_agent for r in server.requests} == {UA}
    assert all(r.path == f"/v2/stream/{','.join(STREAMS)}" for r in server.requests)
    # Each record names its own position and its meta.id.
    assert records[-1].header(POSITION_HEADER) is not None
    assert records[0].key == json.loads(want[0])["meta"]["id"].encode()
    sample = metrics.registry.get_sample_value
    assert sample("feedserver_eventstreams_events_total", {"result": "appended"}) == len(want)
    assert sample("feedserver_eventstreams_reconnects_total", {"cause": "network"}) >= 1
    assert stats.reconnects >= 1200 // 70  # type: ignore[attr-defined]


async def test_timestamp_positions_resend_that_millisecond_and_dedup_drops_it(
        store: Log) -> None:
    frames = real_frames(EVENTS, 600)
    want = distinct(frames)
    with serve_eventstreams(frames, drop_every=50, id_mode="timestamp") as server:
        stats = await run_follow(store, server.url, len(want))
    assert [r.value.decode() for r in await store.records()] == want
    assert stats.duplicates > 0  # type: ignore[attr-defined]
    assert all('"timestamp"' in (r.last_event_id or "") for r in server.requests[1:])


async def test_restart_resumes_where_the_stored_events_end(store: Log) -> None:
    frames = real_frames(EVENTS, 500)
    want = distinct(frames)
    with serve_eventstreams(frames, drop_every=1000) as server:
        await run_follow(store, server.url, 100, batch_size=20)
        first = len(await store.records())
        assert 100 <= first < len(want)
        await run_follow(store, server.url, len(want) - first)
    assert [r.value.decode() for r in await store.records()] == want
    assert server.requests[1].last_event_id  # the second process resumed, not restarted


class Killed(Exception):
    pass


class CrashAfterAppend(EmbeddedEventLog):
    """An event log whose ``crash_at``-th append is stored and then the process "dies": the
    exact moment between an append and the position write."""

    crash_at = 3

    async def append(self, topic: str, records: Sequence[Outgoing]) -> list[tuple[int, int]]:
        out = await super().append(topic, records)
        if topic == TOPIC:
            self.crash_at -= 1
            if self.crash_at == 0:
                raise Killed("right after the append")
        return out


async def test_a_kill_between_append_and_position_write_resumes_from_the_header(
        store: Log) -> None:
    frames = real_frames(EVENTS, 300)
    want = distinct(frames)
    crashing = CrashAfterAppend(store.db)
    with serve_eventstreams(frames, drop_every=1000) as server:
        with pytest.raises(Killed):
            await asyncio.wait_for(follow(
                crashing, store.db, url=server.url, streams=STREAMS, topic=TOPIC,
                user_agent=UA, batch_size=10, batch_seconds=0.05), TIMEOUT)
        records = await store.records()
        row = store.db.fetchone("SELECT topic_end FROM eventstreams_positions")
        assert row is not None and row[0] < len(records)  # the position write was lost
        # The next start resumes after the last stored record (its header), not at the stale
        # stored position, so nothing is stored twice.
        stored = await stored_position(store.log, store.db, TOPIC, TOPIC)
        assert stored == records[-1].header(POSITION_HEADER).decode()  # type: ignore[union-attr]
        await run_follow(store, server.url, len(want) - len(records))
    assert [r.value.decode() for r in await store.records()] == want


async def test_wiki_filter_and_since(store: Log) -> None:
    frames = real_frames(EVENTS, 400)
    since = frames[200].timestamp_ms
    later = [f for f in frames if f.timestamp_ms >= since]
    want = distinct(later, {"testwikidatawiki"})
    metrics = Metrics()
    with serve_eventstreams(frames, drop_every=1000) as server:
        stats = await run_follow(store, server.url, len(want), wikis=["testwikidatawiki"],
                                 since=str(since), metrics=metrics)
    assert [r.value.decode() for r in await store.records()] == want
    assert server.requests[0].since == str(since) and server.requests[0].last_event_id is None
    assert stats.other_wiki > 0  # type: ignore[attr-defined]
    assert metrics.registry.get_sample_value(
        "feedserver_eventstreams_events_total", {"result": "other_wiki"}) == stats.other_wiki  # type: ignore[attr-defined]


async def test_bad_frames_are_dead_lettered_with_counts_never_raised(store: Log) -> None:
    frames = real_frames(EVENTS, 200)
    want = distinct(frames)
    bad = {10: ["bad_id", "not_json"], 50: ["unknown_schema", "error_event"],
           90: ["bad_envelope"]}
    metrics = Metrics()
    with serve_eventstreams(frames, drop_every=1000, bad=bad) as server:  # type: ignore[arg-type]
        stats = await run_follow(store, server.url, len(want), metrics=metrics,
                                 dead_letter_topic="dead")
    assert [r.value.decode() for r in await store.records()] == want
    dead = await store.records("dead")
    assert stats.dead_lettered == len(dead) == 5  # type: ignore[attr-defined]
    reasons = sorted(r.header("feedserver-reason").decode().split(":")[0]  # type: ignore[union-attr]
                     for r in dead)
    assert reasons == ["frame", "frame", "json", "schema", "unsupported"]
    sample = metrics.registry.get_sample_value
    assert sample("feedserver_eventstreams_dead_lettered_total", {"reason": "frame"}) == 2


class Sleeps:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


async def first_batches(client: EventStreamsClient, n: int) -> int:
    count = 0
    async for batch in client.batches():
        count += len(batch.events)
        if count >= n:
            break
    return count


async def test_throttling_error_pages_and_silent_servers_are_retried() -> None:
    frames = real_frames(EVENTS, 60)
    failures = [StreamFailure("429", "7"), StreamFailure("html"), StreamFailure("html503", "3"),
                StreamFailure("hang")]
    metrics = Metrics()
    sleeps = Sleeps()
    with serve_eventstreams(frames, failures=failures, hang_seconds=3.0) as server:
        client = EventStreamsClient(server.url, STREAMS, user_agent=UA, timeout=0.5,
                                    batch_seconds=0.05, metrics=metrics, sleep=sleeps)
        try:
            got = await asyncio.wait_for(first_batches(client, 20), TIMEOUT)
        finally:
            await client.close()
    assert got >= 20 and len(server.requests) == 5
    # The waits honour Retry-After (429: 7 s, 503: 3 s); never less.
    assert sleeps.waits[0] >= 7 and sleeps.waits[2] >= 3
    sample = metrics.registry.get_sample_value
    for cause, n in (("rate_limited", 1), ("html", 2), ("timeout", 1)):
        assert sample("feedserver_eventstreams_reconnects_total", {"cause": cause}) == n


async def test_failures_in_a_row_and_configuration_errors_raise() -> None:
    frames = real_frames(EVENTS, 10)
    with serve_eventstreams(frames, failures=[StreamFailure("html503")] * 5) as server:
        client = EventStreamsClient(server.url, STREAMS, user_agent=UA, max_failures=2,
                                    sleep=Sleeps())
        try:
            with pytest.raises(UpstreamError, match="3 failed connections in a row"):
                await asyncio.wait_for(first_batches(client, 1), TIMEOUT)
        finally:
            await client.close()
    with serve_eventstreams(frames, failures=[StreamFailure("404")]) as server:
        client = EventStreamsClient(server.url, STREAMS, user_agent=UA, sleep=Sleeps())
        try:
            with pytest.raises(UpstreamError, match="HTTP 404"):
                await asyncio.wait_for(first_batches(client, 1), TIMEOUT)
        finally:
            await client.close()
    with pytest.raises(InvalidParameter):
        EventStreamsClient("http://127.0.0.1:1", ["../admin"], user_agent=UA)
    client = EventStreamsClient("http://127.0.0.1:1", STREAMS, user_agent=UA)
    try:
        with pytest.raises(InvalidParameter, match="since"):
            await first_batches_since(client, "yesterday")
    finally:
        await client.close()


async def first_batches_since(client: EventStreamsClient, since: str) -> None:
    async for _ in client.batches(since=since):
        break


async def test_stop_ends_an_idle_follow(store: Log) -> None:
    frames = real_frames(EVENTS, 30)
    stop = asyncio.Event()
    await store.log.create_topic(TOPIC, 1)  # so the test can poll it before follow starts
    with serve_eventstreams(frames, idle_close=30.0) as server:
        task = asyncio.create_task(follow(store.log, store.db, url=server.url,
                                          streams=STREAMS, topic=TOPIC, user_agent=UA,
                                          batch_seconds=0.05, stop=stop))
        for _ in range(400):  # bounded wait until caught up
            if len(await store.records()) == len(distinct(frames)):
                break
            await asyncio.sleep(0.05)
        stop.set()
        await asyncio.wait_for(task, TIMEOUT)
    assert len(await store.records()) == len(distinct(frames))


async def test_an_event_resent_under_the_last_position_still_reaches_the_log(
        store: Log) -> None:
    # Resuming by timestamp re-sends that millisecond: a new event can arrive under the very
    # position the last batch ended on. One event per batch makes that batch hold only it; it
    # must be appended even though the position did not move (it used to be dropped, and the
    # dedup set then kept it from ever coming back).
    frames = real_frames(EVENTS, 120)
    want = distinct(frames)
    # Every 7 frames a drop: some resume lands inside a millisecond with a new event left.
    with serve_eventstreams(frames, drop_every=7, id_mode="timestamp") as server:
        await run_follow(store, server.url, len(want), batch_size=1)
    assert [r.value.decode() for r in await store.records()] == want
