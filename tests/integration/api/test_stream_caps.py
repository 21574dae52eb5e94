"""Issue 11, item 10: a plan's ``max_streams`` caps a customer's open realtime streams.

Tested against ``feedserver serve --workers 2`` (two real uvicorn processes: the cap is shared
through the database, on SQLite and PostgreSQL). The third stream is a 429 problem; closing a
stream frees its slot; after a ``kill -9`` of the server the dead process's slots come back
once its lease (``stream_lease_seconds``) runs out, so nothing leaks.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import httpx
import pytest

from feedserver.plans import Plan
from feedserver.storage.db import SQLiteDatabase
from feedserver.storage.db.postgres import PostgresDatabase
from tests.fixtures.serve_proc import ServerProcess, customer_env

pytestmark = pytest.mark.integration

MAX = 2
LEASE = "2"
PLAN = Plan(name="two-streams", feeds=["realtime"], max_streams=MAX)


@pytest.fixture(params=["sqlite", "postgresql"])
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[dict[str, str], str]]:
    yield customer_env(request, tmp_path, PLAN, stream_lease_seconds=LEASE)


@asynccontextmanager
async def stream(url: str, key: str) -> AsyncIterator[httpx.Response]:
    """One SSE stream on its own connection, open until the context exits."""
    async with httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(30.0)) as client, \
            client.stream("GET", "/v2/articles",
                          headers={"Authorization": f"Bearer {key}"}) as resp:
        # Keep the body iterator referenced while the stream is open: a collected one
        # would close the response, and the connection with it.
        body = resp.aiter_raw()
        if resp.status_code == 200:
            # The first frame says the subscription exists (so its slot is held).
            first = await asyncio.wait_for(anext(body), 30)
            assert first.startswith(b": connected")
        else:
            await resp.aread()
        yield resp
        del body


def _slot_rows(env: dict[str, str]) -> int:
    url = env.get("FEEDSERVER_DATABASE_URL")
    db = (PostgresDatabase(url, max_size=1) if url
          else SQLiteDatabase(Path(env["FEEDSERVER_DATA_DIR"]) / "feedserver.db"))
    try:
        row = db.fetchone("SELECT COUNT(*) FROM stream_slots")
        return int(row[0]) if row else 0
    finally:
        db.close()


async def _refused(url: str, key: str) -> httpx.Response:
    async with stream(url, key) as resp:
        return resp


async def _until_open(url: str, key: str, stack: AsyncExitStack, timeout: float) -> float:
    """Open a stream, retrying 429s, within ``timeout`` seconds; returns the seconds waited."""
    start = time.monotonic()
    while True:
        resp = await stack.enter_async_context(stream(url, key))
        if resp.status_code == 200:
            return time.monotonic() - start
        assert resp.status_code == 429, resp.text
        assert time.monotonic() - start < timeout, "the slot never came back"
        await asyncio.sleep(0.25)


async def test_max_streams_is_shared_by_workers_and_survives_a_kill(
        world: tuple[dict[str, str], str]) -> None:
    env, key = world
    server = ServerProcess(env, workers=2).start()
    try:
        async with AsyncExitStack() as stack:
            # Each stream on a fresh connection: the two workers both serve some.
            for _ in range(MAX):
                assert (await stack.enter_async_context(stream(server.url, key))
                        ).status_code == 200
            for _ in range(4):
                refused = await _refused(server.url, key)
                assert refused.status_code == 429
                assert refused.headers["content-type"] == "application/problem+json"
                problem = refused.json()
                assert problem["type"].endswith("/too-many-streams")
                assert problem["limit"] == MAX and problem["open"] == MAX
                assert int(refused.headers["retry-after"]) >= 1
        # Both streams are closed now: their slots are released (give the servers a moment
        # to notice the disconnects).
        async with AsyncExitStack() as stack:
            for _ in range(MAX):
                await _until_open(server.url, key, stack, timeout=30)
            # kill -9 with both slots held: nothing releases them but the lease.
            server.kill()
        # The kill released nothing: both slots are still recorded, held by a dead process.
        assert _slot_rows(env) == MAX
        server = ServerProcess(env, workers=2, port=server.port).start()
        async with AsyncExitStack() as stack:
            await _until_open(server.url, key, stack, timeout=60)
            await _until_open(server.url, key, stack, timeout=60)
            assert (await _refused(server.url, key)).status_code == 429
    finally:
        server.kill()
