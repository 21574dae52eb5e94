"""``/v2/articles`` over a real uvicorn on 127.0.0.1 with the embedded event log: SSE and NDJSON,
resume by Last-Event-ID and by offsets, plan project filtering, fields, validation, metering,
a slow client cut with its position, and shutdown ending streams with a final position."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from feedserver.config import Settings
from feedserver.feeds.events.consumer import EventConsumer
from feedserver.ingest.events import changes_from_json
from feedserver.storage.db import SQLiteDatabase
from feedserver.storage.eventlog import EmbeddedEventLog, Outgoing
from tests.fixtures.usage import RecordingSink
from tests.integration.realtime_harness import (
    Keys,
    StreamClient,
    encode,
    make_accounts,
    real_events,
    serve,
    settings_for,
    synthetic_events,
)

pytestmark = pytest.mark.integration
SOURCE = "mediawiki.page_change.v1"


class World:
    def __init__(self, tmp_path: Path, **overrides: object) -> None:
        self.settings: Settings = settings_for(tmp_path, event_topics=[SOURCE], **overrides)
        self.db = SQLiteDatabase(tmp_path / "feedserver.db")
        self.log = EmbeddedEventLog(self.db, poll_interval=0.02)
        # The server runs its own event loop: it gets its own log object on the same file.
        self.server_log = EmbeddedEventLog(SQLiteDatabase(tmp_path / "feedserver.db"),
                                           poll_interval=0.02)
        self.accounts, self.keys = make_accounts(self.db, self.settings)
        self.consumer = EventConsumer.from_settings(self.settings, self.log, self.db)

    async def publish(self, raw: list[bytes]) -> None:
        await self.log.create_topic(SOURCE, 1)
        await self.log.append(SOURCE, [Outgoing(key=None, value=v) for v in raw])
        await self.consumer.run(once=True)


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    w = World(tmp_path)
    await w.consumer.start()
    yield w
    await w.log.close()


def expected_ids(raw: list[bytes]) -> list[str]:
    out = []
    for value in raw:
        for change in changes_from_json(value):
            assert change.article.event is not None
            out.append(change.article.event.identifier)
    return out


def ids(client: StreamClient) -> list[str]:
    return [m["event"]["identifier"] for m in client.received]


async def test_sse_resume_with_last_event_id_and_plan_filter(world: World) -> None:
    raw = encode(real_events())
    keys: Keys = world.keys
    sink = RecordingSink()
    with serve(world.settings, world.db, world.accounts, events=world.server_log,
               usage=sink) as srv:
        async with httpx.AsyncClient() as http:
            full = StreamClient(srv.url, keys.everything, body={"offsets": {"0": 0, "1": 0,
                                                                            "2": 0, "3": 0}})
            commons = StreamClient(srv.url, keys.commons_only,
                                   body={"since": "2000-01-01T00:00:00Z",
                                         "fields": ["name", "event.*", "is_part_of.*"]})
            await world.publish(raw[:6])
            # First connection: take 3 events, then drop the connection.
            async for kind, _ in full.messages(http, stop_after=10):
                if kind == "message" and len(full.received) == 3:
                    break
            await world.publish(raw[6:])
            # Reconnect with only Last-Event-ID (as an EventSource would).
            full.body = {}
            full.positions = {}
            await full.read_until(http, len(expected_ids(raw)), timeout=20)
            await commons.read_until(http, 3, timeout=20)
    assert sorted(ids(full)) == sorted(expected_ids(raw))
    assert full.connections >= 2
    pairs = [(m["event"]["partition"], m["event"]["offset"]) for m in full.received]
    assert len(pairs) == len(set(pairs))
    assert {m["is_part_of"]["identifier"] for m in commons.received} == {"commonswiki"}
    assert all(set(m) == {"name", "event", "is_part_of"} for m in commons.received)
    usage = [r for r in sink.records if r["feed"] == "realtime"]
    assert usage and sum(r["stream_events"] for r in usage if r["customer_id"]) >= len(ids(full))


async def test_ndjson_parts_and_validation(world: World) -> None:
    raw = encode(synthetic_events(60))
    await world.publish(raw)
    with serve(world.settings, world.db, world.accounts, events=world.server_log) as srv:
        async with httpx.AsyncClient() as http:
            # parts 0..4 of 4 partitions: partitions 0 and 1 (q * 10 // 4 in parts)
            client = StreamClient(srv.url, world.keys.everything, ndjson=True,
                                  body={"parts": [0, 1, 2, 3, 4],
                                        "offsets": {"0": 0, "1": 0, "3": 0}})
            ends = await world.log.end_offsets(world.settings.article_topic)
            want = ends[0] + ends[1]
            await client.read_until(http, want, timeout=20)
            assert {m["event"]["partition"] for m in client.received} == {0, 1}
            assert len(client.received) == want
            headers = {"Authorization": f"Bearer {world.keys.everything}"}
            for body in ({"parts": [1], "since": "2024-01-01T00:00:00Z"},
                         {"offsets": {"1": 2},
                          "since_per_partition": {"1": "2024-01-01T00:00:00Z"}},
                         {"since": "2999-01-01T00:00:00Z"}, {"parts": [10]}):
                resp = await http.post(f"{srv.url}/v2/articles", json=body, headers=headers)
                assert resp.status_code == 422, body
                assert resp.headers["content-type"].startswith("application/problem+json")
            resp = await http.get(f"{srv.url}/v2/articles",
                                  headers={"Authorization": f"Bearer {world.keys.no_realtime}"})
            assert resp.status_code == 403
            assert (await http.get(f"{srv.url}/v2/articles")).status_code == 401


async def test_slow_client_is_cut_with_position_and_shutdown_ends_streams(
        tmp_path: Path) -> None:
    w = World(tmp_path, realtime_max_subscriber_lag=20)
    await w.consumer.start()
    try:
        with serve(w.settings, w.db, w.accounts, events=w.server_log) as srv:
            async with httpx.AsyncClient() as http:
                slow = StreamClient(srv.url, w.keys.everything)
                raw = encode(synthetic_events(300, body_bytes=40_000))
                stream = slow.messages(http, stop_after=60)
                kind, _ = await anext(stream)  # connected and subscribed (at the tail)
                assert kind == "heartbeat"
                await w.publish(raw)
                await asyncio.sleep(1.0)  # the server fills the socket, then the buffer
                kinds = [k async for k, _ in stream]
                assert kinds[-1] == "error"
                assert slow.closings[-1]["reason"] == "slow"
                got = len(slow.received)
                assert got < 300
                await slow.read_until(http, 300, timeout=30)
                assert sorted(ids(slow)) == sorted(expected_ids(raw))

                # Shutdown: an open stream gets a final position before the server stops.
                idle = StreamClient(srv.url, w.keys.everything, ndjson=True)
                stream = idle.messages(http, stop_after=30)
                await anext(stream)  # first heartbeat: subscribed
                hub = srv.hub
                srv.call(hub.end_streams)
                rest = [k async for k, _ in stream]
                assert rest[-1] == "error" and idle.closings[-1]["reason"] == "shutdown"
                assert sum(idle.closings[-1]["offsets"].values()) == sum(
                    (await w.log.end_offsets(w.settings.article_topic)).values())
    finally:
        await w.log.close()
